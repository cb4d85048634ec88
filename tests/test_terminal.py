"""The command line on a terminal (a pseudo-terminal): the progress display and the messages around it."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import make_raster, smooth_field

pytestmark = pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")


def _on_a_terminal(args: list[str], cwd: Path, timeout: float = 120.0) -> tuple[int, str]:
    """Run ``python -m geosr ARGS`` with a pseudo-terminal as its stdin, stdout and stderr: its exit code and all it
    wrote (killed, and the test failed, past ``timeout`` seconds)."""
    main, other = os.openpty()
    env = {**os.environ, "COLUMNS": "100", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "geosr", *args], stdin=other, stdout=other, stderr=other,
                            cwd=cwd, env=env, close_fds=True)
    os.close(other)
    said, end = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([main], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(main, 65536)
                except OSError:  # the other end closed (Linux: EIO)
                    break
                if not chunk:
                    break
                said += chunk
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            pytest.fail(f"geosr {' '.join(args)} did not finish in {timeout} s on a terminal: {said[-500:]!r}")
        return proc.wait(timeout=30), said.decode("utf-8", "replace")
    finally:
        os.close(main)


def test_upscale_on_a_terminal_shows_its_progress_and_finishes(tmp_path):
    """The streams that leave out URLs' passwords wrote, during the progress display, to the display's own proxy of
    stderr, which wrote back to them: the run hung on a terminal, and only there (found before release)."""
    make_raster(tmp_path / "lr.tif", (smooth_field(3, 40, 40, seed=3) * 255).astype(np.uint8))
    code, said = _on_a_terminal(["upscale", "lr.tif", "-x", "2", "-m", "bicubic", "-o", "out.tif"], tmp_path)
    assert code == 0, said
    assert "wrote out.tif" in said and "1/1" in said, said
    assert (tmp_path / "out.tif").is_file()


def test_a_url_s_password_is_left_out_on_a_terminal_and_in_usage_errors(tmp_path):
    """Styled on a terminal, a URL follows the escape code's final letter ("\\x1b[1mhttp://u:pw@..."), which the
    search took for part of a word: `geosr info URL` showed the password there alone; a usage error printed it
    everywhere (found in review)."""
    from tests.range_server import serving

    (tmp_path / "www").mkdir()
    make_raster(tmp_path / "www" / "lr.tif", (smooth_field(3, 24, 24, seed=4) * 255).astype(np.uint8))
    with serving(tmp_path / "www") as url:
        signed = url.replace("http://", "http://u:s3cret@")
        code, said = _on_a_terminal(["info", f"{signed}/lr.tif"], tmp_path)
        assert code == 0 and f"{url}/lr.tif" in said and "s3cret" not in said, said
        code, said = _on_a_terminal(["upscale", f"{signed}/lr.tif", f"{signed}/b.tif", "-x", "2"], tmp_path)
        assert code == 2 and f"({url}/b.tif)" in said and "s3cret" not in said, said


@pytest.mark.parametrize("closed", ["stdout", "stderr"])
def test_a_closed_output_stream_is_no_failure(tmp_path, closed):
    """With stdout or stderr closed (`>&-`), every command failed: exit 1 and no output (the streams that leave out
    URLs' passwords asked None whether it was a terminal; found in review)."""
    make_raster(tmp_path / "lr.tif", (smooth_field(3, 24, 24, seed=5) * 255).astype(np.uint8))
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, closed: subprocess.DEVNULL}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    code = ("import os, sys, runpy; os.close({fd}); sys.argv = ['geosr', 'upscale', 'lr.tif', '-x', '2', '-m', "
            "'bicubic', '-o', 'out.tif']; sys.{name} = None; runpy.run_module('geosr', run_name='__main__')")
    run = subprocess.run([sys.executable, "-c", code.format(fd=1 if closed == "stdout" else 2, name=closed)],
                         cwd=tmp_path, env=env, timeout=300, **streams)
    assert run.returncode == 0, (run.stdout, run.stderr)
    assert (tmp_path / "out.tif").is_file()


def test_progress_of_slow_steps_has_an_eta():
    """Found by review: steps of 40 s (a training run on a CPU) never got an ETA: rich estimates the speed from the
    last 30 s of updates, which held at most one."""
    from geosr.cli.common import ProgressView

    clock = [0.0]
    with ProgressView(enabled=True) as view:
        view.update("train", 0, 30)
        assert view._bar is not None
        view._bar.get_time = lambda: clock[0]
        for step in range(1, 4):
            clock[0] += 40.0
            view.update("train", step, 30)
        task = view._bar.tasks[0]
        assert task.time_remaining is not None and abs(task.time_remaining - 27 * 40) < 1, task.time_remaining
