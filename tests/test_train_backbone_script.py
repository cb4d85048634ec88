"""``scripts/train_backbone.py`` (the backbone's trainer for a lent GPU): bad input is one sentence, exit 2, and
nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "train_backbone.py"), "--no-shared-data", *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


@pytest.mark.parametrize("case", ["no-images", "corrupt", "missing-folder", "expert-without-init", "unknown-expert",
                                  "validate-every-0", "out-is-a-file"])
def test_bad_input_is_one_sentence_exit_2_and_nothing_written(tmp_path, case):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    (imgs / ("bad.png" if case == "corrupt" else "ok.txt")).write_bytes(b"not an image")
    if case != "corrupt":
        from PIL import Image

        for name in ("a.png", "b.png"):  # the first validates, the second trains
            Image.new("RGB", (120, 120), (90, 120, 60)).save(imgs / name)
    out = tmp_path / "run"
    lite = str(ROOT / "geosr" / "weights" / "lite.safetensors")
    args = {
        "no-images": ["--out", str(out)],
        "corrupt": ["--images", str(imgs), "--init", lite, "--out", str(out)],
        "missing-folder": ["--images", str(tmp_path / "nope"), "--init", lite, "--out", str(out)],
        "expert-without-init": ["--images", str(imgs), "--expert", "soft", "--out", str(out)],
        "unknown-expert": ["--images", str(imgs), "--init", lite, "--expert", "bogus", "--out", str(out)],
        "validate-every-0": ["--images", str(imgs), "--init", lite, "--validate-every", "0", "--out", str(out)],
        "out-is-a-file": ["--images", str(imgs), "--init", lite, "--out", str(tmp_path / "imgs" / "a.png")],
    }[case]
    res = _run(*args, "--steps", "2")
    assert res.returncode == 2, res.stderr
    last = res.stderr.strip().splitlines()[-1]  # argparse's usage may come before it
    assert "Traceback" not in res.stderr and last.startswith("train_backbone"), res.stderr
    assert not out.exists()
    if case == "corrupt":
        assert "bad.png" in res.stderr
    if case == "unknown-expert":
        assert "no expert 'bogus' (experts: soft, aliasing)" in res.stderr
