"""The maintenance scripts refuse arguments that would replace shipped weights or train from nothing (found in
review): usage errors (exit 2) before anything is read or written."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("args, said", [
    (("--leave-out", "levir"), "--out is needed with --leave-out"),  # it replaced the bundled cue
    (("--scales", "8"), "--out is needed"),
    (("--leave-out", "levirr", "--out", "x.json"), "--leave-out levirr: no such data set group (the groups: dsifn, "
                                                   "landsat, levir)"),  # a typo left nothing out
])
def test_fit_change_cue_keeps_the_bundled_cue_and_knows_its_groups(tmp_path, args, said):
    cue = ROOT / "geosr" / "weights" / "change_cue.json"
    before = hashlib.sha256(cue.read_bytes()).hexdigest()
    done = _script("fit_change_cue.py", *args, cwd=tmp_path)
    assert done.returncode == 2 and said in done.stderr, done.stderr
    assert hashlib.sha256(cue.read_bytes()).hexdigest() == before and not (tmp_path / "x.json").exists()


def test_train_default_s_later_stages_need_the_earlier_stage(tmp_path):
    """`--stage prior` without `--init` trained a random denoiser (exit 0); `refine` failed with "freeze: no
    parameter ... starts with 'net.upsampler'"."""
    for stage in ("prior", "refine"):
        done = _script("train_default.py", "--stage", stage, "--out", str(tmp_path / "run"), cwd=tmp_path)
        assert done.returncode == 2 and f"--stage {stage} continues an earlier stage: give --init" in done.stderr
    assert not (tmp_path / "run").exists()
