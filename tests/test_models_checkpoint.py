"""Checkpoints: bit-identical round trips, refusal of pickles and mismatched files, the registry."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from geosr.errors import InputNotFoundError, ModelFileError, OptionError
from geosr.models import registry
from geosr.models.checkpoint import SPEC_KEY, load_checkpoint, make_spec, read_spec, save_checkpoint
from geosr.models.diffusion import DiffusionSuperResolver
from geosr.models.edm import build_denoiser
from geosr.models.interface import SuperResolver
from geosr.models.style import fit_flow
from geosr.models.unet import make_condition


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def trained_tiny():
    """A tiny model whose every buffer differs from a fresh one (BN statistics, fitted flow)."""
    torch.manual_seed(0)
    model = build_denoiser("tiny", n_map_classes=3)
    model.train()
    h = 16
    cond = make_condition(
        torch.randn(2, 3, h, h), torch.randn(2, 3, h, h), torch.ones(2, 1, h, h),
        torch.randint(0, 2, (2, 1, h, h)), n_change_classes=2,
        map_ids=torch.randint(0, 3, (2, 1, h, h)), n_map_classes=3,
    )
    with torch.no_grad():
        model(torch.randn(2, 3, h, h), torch.tensor([0.5, 1.0]), cond)  # updates BN running stats
    fit_flow(model.net.style_flow, torch.rand(50, 32) + 0.1, steps=3)
    return model.eval(), cond


def _spec(model):
    return make_spec(
        model,
        name="unit-test",
        scales=[4, 8],
        band_names=["B4", "B3", "B2"],
        change_classes={"0": "unchanged", "1": "changed"},
        map_classes={"0": "background", "1": "building", "2": "road"},
        normalization={"kind": "robust-stretch"},
        training={"data": "synthetic", "steps": 0},
        metrics={"psnr": None},
    )


def test_round_trip_is_bit_identical(tmp_path, trained_tiny):
    model, cond = trained_tiny
    path = save_checkpoint(tmp_path / "m.safetensors", model, _spec(model))
    assert path.exists() and path.with_suffix(".json").exists()
    loaded, spec = load_checkpoint(path)
    assert spec["scales"] == [4, 8] and spec["arch"] == model.cfg.to_dict()
    assert json.loads(path.with_suffix(".json").read_text()) == spec
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x, torch.tensor([0.3, 2.0]), cond), loaded(x, torch.tensor([0.3, 2.0]), cond))
    assert loaded.net.style_flow.is_fitted
    assert read_spec(path)["name"] == "unit-test"


def test_loading_never_unpickles(tmp_path, trained_tiny, monkeypatch):
    model, _ = trained_tiny
    path = save_checkpoint(tmp_path / "m.safetensors", model, _spec(model), sidecar=False)

    def boom(*a, **k):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(torch, "load", boom)
    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    load_checkpoint(path)


def test_pickles_are_refused(tmp_path, trained_tiny, monkeypatch):
    model, _ = trained_tiny
    zipped = tmp_path / "model.pt"
    torch.save(model.state_dict(), zipped)
    raw = tmp_path / "model.safetensors"  # the extension does not matter, the bytes do
    raw.write_bytes(pickle.dumps({"weights": [1, 2, 3]}, protocol=2))
    old = tmp_path / "model0.ckpt"
    old.write_bytes(pickle.dumps({"a": 1}, protocol=0))

    def boom(*a, **k):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(torch, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    with pytest.raises(ModelFileError, match="zip archive"):
        load_checkpoint(zipped)
    with pytest.raises(ModelFileError, match="pickle"):
        load_checkpoint(raw)
    with pytest.raises(ModelFileError, match="pickle"):
        load_checkpoint(old)
    text = tmp_path / "notes.safetensors"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match="not a safetensors file"):
        load_checkpoint(text)
    with pytest.raises(InputNotFoundError):
        load_checkpoint(tmp_path / "missing.safetensors")


def _rewrite(src: Path, dst: Path, *, edit=None, metadata=None):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if edit:
        edit(tensors)
    save_file(tensors, str(dst), metadata=meta if metadata is None else metadata)
    return dst


def test_mismatches_are_refused(tmp_path, trained_tiny):
    model, _ = trained_tiny
    good = save_checkpoint(tmp_path / "good.safetensors", model, _spec(model), sidecar=False)
    key = "net.decoder.0.sft_sem.gamma.0.weight"

    def reshape(t):
        t[key] = t[key][:, :-1].contiguous()

    with pytest.raises(ModelFileError, match=r"sft_sem\.gamma\.0\.weight.*shape"):
        load_checkpoint(_rewrite(good, tmp_path / "shape.safetensors", edit=reshape))

    def retype(t):
        t[key] = t[key].half()

    with pytest.raises(ModelFileError, match="dtype"):
        load_checkpoint(_rewrite(good, tmp_path / "dtype.safetensors", edit=retype))

    def drop(t):
        del t[key]

    with pytest.raises(ModelFileError, match="lacks the tensor"):
        load_checkpoint(_rewrite(good, tmp_path / "missing.safetensors", edit=drop))

    def extra(t):
        t["net.extra.weight"] = torch.zeros(2)

    with pytest.raises(ModelFileError, match="does not have"):
        load_checkpoint(_rewrite(good, tmp_path / "extra.safetensors", edit=extra))

    with pytest.raises(ModelFileError, match="no geosr spec"):
        load_checkpoint(_rewrite(good, tmp_path / "nospec.safetensors", metadata={"other": "x"}))
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_checkpoint(_rewrite(good, tmp_path / "badjson.safetensors", metadata={SPEC_KEY: "{"}))
    spec = _spec(model)
    spec["format"] = "other/9"
    with pytest.raises(ModelFileError, match="format"):
        load_checkpoint(_rewrite(good, tmp_path / "fmt.safetensors", metadata={SPEC_KEY: json.dumps(spec)}))
    spec = _spec(model)
    spec["arch"]["wings"] = 2
    with pytest.raises(ModelFileError, match="bad architecture"):
        load_checkpoint(_rewrite(good, tmp_path / "arch.safetensors", metadata={SPEC_KEY: json.dumps(spec)}))
    # a spec that claims another architecture than the tensors
    spec = _spec(model)
    spec["arch"]["guidance_channels"] = 8
    with pytest.raises(ModelFileError, match="shape"):
        load_checkpoint(_rewrite(good, tmp_path / "lying.safetensors", metadata={SPEC_KEY: json.dumps(spec)}))


@pytest.mark.parametrize("low_byte", [b"\x80", b"("])
def test_header_length_that_looks_like_a_pickle_is_accepted(tmp_path, low_byte):
    """A safetensors header length whose low byte is 0x80 or "(" must not be taken for a pickle."""
    from safetensors.torch import save_file

    model = build_denoiser("tiny", n_map_classes=0, style=False, device="meta")
    spec = make_spec(model)
    probe = tmp_path / "probe.safetensors"
    for pad in range(0, 2100):
        spec["training"] = {"note": "x" * pad}
        save_file({"a": torch.zeros(1)}, str(probe), metadata={SPEC_KEY: json.dumps(spec)})
        if probe.read_bytes()[:1] == low_byte:
            break
    else:
        pytest.fail(f"no header length with low byte {low_byte!r} found")
    assert read_spec(probe)["training"]["note"] == "x" * pad


def test_registry_default_and_paths(tmp_path, trained_tiny, monkeypatch):
    model, _ = trained_tiny
    empty = tmp_path / "weights"
    empty.mkdir()
    monkeypatch.setattr(registry, "WEIGHTS_DIR", empty)
    with pytest.raises(OptionError, match="no default model is bundled"):
        registry.load_model("default")
    with pytest.raises(OptionError, match="unknown model"):
        registry.load_model("nonsense")
    with pytest.raises(InputNotFoundError):
        registry.load_model(str(tmp_path / "nope.safetensors"))
    # classical names unchanged
    assert registry.load_model("bicubic").name == "bicubic"
    assert [m.name for m in registry.available_models()] == ["bicubic", "lanczos", "reference-paste"]

    path = save_checkpoint(tmp_path / "mine.safetensors", model, _spec(model))
    sr = registry.load_model(str(path), device="cpu")
    assert isinstance(sr, DiffusionSuperResolver) and isinstance(sr, SuperResolver)
    assert sr.name == "mine" and sr.scales == (4, 8) and sr.bands == 3

    save_checkpoint(empty / "default.safetensors", model, _spec(model))
    sr = registry.load_model("default", device="auto")
    assert sr.name == "default"
    names = {m.name: m for m in registry.available_models()}
    assert names["default"].kind == "diffusion" and "tiny" in names["default"].description


def test_residual_flag_round_trips_and_older_specs_default_to_plain(tmp_path):
    torch.manual_seed(0)
    model = build_denoiser("tiny", residual=True, sigma_data=0.4).eval()
    loaded, spec = load_checkpoint(save_checkpoint(tmp_path / "r.safetensors", model, _spec(model)))
    assert spec["arch"]["residual"] is True and loaded.residual and loaded.sigma_data == 0.4
    # a spec written before the residual option existed has neither key: a plain (non-residual) model
    arch = dict(spec["arch"])
    del arch["residual"], arch["sigma_data"]
    old = build_denoiser(arch)
    assert not old.residual and old.sigma_data == 0.5
