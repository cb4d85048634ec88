"""Choosing the torch device (geosr.models.device)."""

from __future__ import annotations

import pytest
import torch

from geosr.errors import OptionError
from geosr.models.device import resolve_device


def test_a_cuda_index_beyond_the_machine_s_devices_is_one_sentence(monkeypatch):
    """`--device cuda:3` on a one-GPU machine passed, and the run failed at its first tensor with torch's
    "invalid device ordinal" as an internal error: it is refused naming the devices there are."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0") and resolve_device("cuda") == torch.device("cuda")
    with pytest.raises(OptionError, match=r"device cuda:3: this machine has 1 CUDA device \(cuda:0\)"):
        resolve_device("cuda:3")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("CUDA:1") == torch.device("cuda:1")
    with pytest.raises(OptionError, match=r"has 2 CUDA devices \(cuda:0 to cuda:1\)"):
        resolve_device("cuda:2")
    # names torch refuses ("Invalid device string", an internal error; found in review) are refused as names
    for name in ("cuda:01", "cuda:00", "cuda:\u0661", "cuda:\u00b2", "cuda:", "cuda:-1"):
        with pytest.raises(OptionError, match="use auto, cpu, cuda or cuda:N"):
            resolve_device(name)
    from geosr.pipeline.batch.run import RunSettings

    with pytest.raises(OptionError, match="use auto, cpu, cuda or cuda:N"):
        RunSettings(device="cuda:01")
    from geosr.config import DeviceConfig  # (took any name when built, unlike the other configs; review)

    for name in ("tpu", "cuda:01"):
        with pytest.raises(OptionError, match=f"^device '{name}': use auto, cpu, cuda or cuda:N"):
            DeviceConfig(device=name)
    # stored as used and recorded (" cuda " was kept with its spaces)
    assert DeviceConfig(device=" CUDA:1 ").device == "cuda:1" and RunSettings(device=" CPU").device == "cpu"


def test_cuda_without_a_device_and_unknown_names_are_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device(None) == torch.device("cpu")
    with pytest.raises(OptionError, match="no CUDA device is available here"):
        resolve_device("cuda:0")
    with pytest.raises(OptionError, match="use auto, cpu, cuda or cuda:N"):
        resolve_device("tpu")


def test_a_seed_beyond_64_bits_is_refused_rather_than_wrapped():
    """The noise hashes a seed's 64 bits, so `--seed 18446744073709551616` (2**64) wrote seed 0's bytes under
    another recorded seed; training failed at torch.manual_seed with an internal error. Both are one sentence."""
    from geosr.config import MAX_SEED, SamplerConfig
    from geosr.training.config import TrainConfig

    assert SamplerConfig(seed=MAX_SEED).seed == MAX_SEED and TrainConfig(seed=MAX_SEED).seed == MAX_SEED
    with pytest.raises(OptionError, match="seed must be a whole number from 0 to 18446744073709551615, not 1844"):
        SamplerConfig(seed=MAX_SEED + 1)
    with pytest.raises(OptionError, match="`seed` must be at most 18446744073709551615"):
        TrainConfig(seed=MAX_SEED + 1)
