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
