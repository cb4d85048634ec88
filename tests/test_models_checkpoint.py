"""Checkpoints: bit-identical round trips, refusal of pickles, mismatched files and out-of-bounds specs, the
registry."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from geosr.errors import InputError, InputNotFoundError, ModelFileError, OptionError
from geosr.models import checkpoint, registry
from geosr.models.checkpoint import SPEC_KEY, load_checkpoint, make_spec, read_spec, save_checkpoint
from geosr.models.configs import CONFIGS, PAPER, ArchConfig, get_config
from geosr.models.diffusion import DiffusionSuperResolver
from geosr.models.edm import build_denoiser
from geosr.models.interface import SuperResolver
from geosr.models.spec_bounds import ARCH_BOUNDS, MAX_WEIGHTS, check_spec, count_weights
from geosr.models.style import fit_flow
from geosr.models.unet import ChangeAwareUNet, make_condition

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
        # safe_open is not a mapping: it has keys() but no __iter__ or __contains__
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
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

    def diverged(t):  # a NaN weight loaded, and every output was one flat value written as valid pixels, exit 0
        t[key] = t[key].clone()
        t[key].view(-1)[0] = float("nan")

    with pytest.raises(ModelFileError, match=r"sft_sem\.gamma\.0\.weight.*not finite"):
        load_checkpoint(_rewrite(good, tmp_path / "nan.safetensors", edit=diverged))
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


def test_a_backbone_spec_with_an_unknown_architecture_key_is_refused(tmp_path):
    """A backbone checkpoint whose spec named keys this geosr does not know (a newer network's ``activation``)
    ran as the network it knows, silently, where a diffusion spec is refused (found in review)."""
    from geosr.models.backbone_checkpoint import load_backbone

    lite = registry.bundled_checkpoints()["lite"]
    spec = read_spec(lite)
    spec["arch"]["activation"] = "gelu"
    with pytest.raises(ModelFileError, match=r"bad backbone architecture in its spec \(unknown architecture keys: "
                                             r"activation\)"):
        load_backbone(_rewrite(lite, tmp_path / "newer.safetensors", metadata={SPEC_KEY: json.dumps(spec)}))
    load_backbone(lite)  # its own spec, "kind" and all, loads


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
    # a URL was "model file https:/host/m.safetensors does not exist" (its // folded; found in review)
    for url in ("https://example.invalid/m.safetensors", "s3://bucket/m.safetensors", "/vsicurl/http://h/m"):
        with pytest.raises(OptionError, match=f"^model {url}: is a URL or a GDAL virtual path, and geosr loads "
                                              "checkpoints from local files only"):
            registry.load_model(url)
    # classical names unchanged
    assert registry.load_model("bicubic").name == "bicubic"
    # their device checked as every model's ("gpu", or cuda where there is none, were taken; found in review)
    with pytest.raises(OptionError, match=r"^device 'gpu': use auto, cpu, cuda or cuda:N"):
        registry.load_model("bicubic", device="gpu")
    assert [m.name for m in registry.available_models()] == ["bicubic", "lanczos", "reference-paste"]

    path = save_checkpoint(tmp_path / "mine.safetensors", model, _spec(model))
    sr = registry.load_model(str(path), device="cpu")
    assert isinstance(sr, DiffusionSuperResolver) and isinstance(sr, SuperResolver)
    import numpy as np  # NumPy's yes/no as Python's (np.True_ was "not one of box, bicubic"; found in review)

    said = registry.load_model(str(path), device="cpu", lr_consistency=np.True_, reference_detail=np.False_).describe()
    assert said["lr_consistency"].startswith("back-projection") and "reference_detail" not in said
    assert sr.name == "mine" and sr.scales == (4, 8) and sr.bands == 3
    # a training run's own checkpoints ran as "model" and "best", whichever run: named by their run's folder too
    (tmp_path / "second_x8").mkdir()
    run_model = save_checkpoint(tmp_path / "second_x8" / "model.safetensors", model, _spec(model))
    assert registry.load_model(str(run_model), device="cpu").name == "second_x8/model"

    # a file named as a model (a run's weights copied to x/default.safetensors) ran as "default", the bundled
    # model's name, in its tags, STAC item and summary (found in review): named by its folder too
    for stem in ("bicubic", "default"):
        (tmp_path / "x").mkdir(exist_ok=True)
        copy = save_checkpoint(tmp_path / "x" / f"{stem}.safetensors", model, _spec(model))
        assert registry.load_model(str(copy), device="cpu").name == f"x/{stem}"
    save_checkpoint(empty / "default.safetensors", model, _spec(model))
    sr = registry.load_model("default", device="auto")
    assert sr.name == "default"
    assert registry.load_model(str(empty / "default.safetensors"), device="cpu").name == "default"  # its own file
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


# -- spec bounds: a crafted spec is refused before anything is built from it ----------------------------------

def _crafted(path: Path, arch: dict | None = None, **fields) -> Path:
    """A tiny safetensors file whose spec is the tiny config's with ``arch`` and ``fields`` changed, written the
    way :func:`save_checkpoint` writes it (one placeholder tensor: the spec must be refused before any is read)."""
    from types import SimpleNamespace

    from safetensors.torch import save_file

    spec = make_spec(SimpleNamespace(cfg=get_config("tiny")))
    spec["arch"].update(arch or {})
    spec.update(fields)
    save_file({"a": torch.zeros(1)}, str(path), metadata={SPEC_KEY: json.dumps(spec, sort_keys=True)})
    assert path.stat().st_size < 20_000
    return path


@pytest.fixture
def nothing_built(monkeypatch):
    """Fail the test if any network is constructed (on any device, the meta device included)."""

    def boom(*a, **k):
        raise AssertionError("a network was built from a spec that should have been refused")

    monkeypatch.setattr(ChangeAwareUNet, "__init__", boom)
    monkeypatch.setattr(checkpoint, "build_denoiser", boom)


def test_crafted_block_count_is_refused_before_building(tmp_path, nothing_built):
    path = _crafted(tmp_path / "crafted.safetensors", {"blocks_per_level": 300_000})
    expected = f"{path}: spec field 'arch.blocks_per_level' is 300000; geosr accepts at most 64"
    for load in (read_spec, load_checkpoint, lambda p: registry.load_model(str(p))):
        with pytest.raises(ModelFileError) as info:
            load(path)
        assert str(info.value) == expected


@pytest.mark.parametrize(
    "arch, fields, field, problem",
    [
        ({"base_channels": 1_000_000}, {}, "arch.base_channels", "is 1000000; geosr accepts at most 1024"),
        ({"channel_mult": [1, 2, 100_000]}, {}, "arch.channel_mult", "is 100000; geosr accepts at most 16"),
        ({"channel_mult": [1] * 50}, {}, "arch.channel_mult", "geosr accepts a list of at most 8 entries"),
        ({"channel_mult": []}, {}, "arch.channel_mult", "is empty"),
        ({"blocks_per_level": 64}, {}, "arch.blocks_per_level", "with 3 levels; geosr accepts at most 128 blocks"),
        ({"blocks_per_level": -3}, {}, "arch.blocks_per_level", "is -3; geosr accepts at least 1"),
        ({"blocks_per_level": "4"}, {}, "arch.blocks_per_level", 'is "4", not an integer'),
        ({"blocks_per_level": 2.0}, {}, "arch.blocks_per_level", "is 2.0, not an integer"),
        ({"blocks_per_level": True}, {}, "arch.blocks_per_level", "is true, not an integer"),
        ({"blocks_per_level": None}, {}, "arch.blocks_per_level", "is null, not an integer"),
        ({"n_change_classes": 10**9}, {}, "arch.n_change_classes", "geosr accepts at most 256"),
        ({"n_bands": 0}, {}, "arch.n_bands", "is 0; geosr accepts at least 1"),
        ({"head_channels": 1}, {}, "arch.head_channels", "is 1; geosr accepts at least 8"),
        ({"emb_channels": 10**6}, {}, "arch.emb_channels", "geosr accepts at most 8192"),
        ({"flow_layers": 100_000}, {}, "arch.flow_layers", "geosr accepts at most 64"),
        ({"upsampler_blocks": 100_000}, {}, "arch.upsampler_blocks", "geosr accepts at most 64"),
        ({"attn_levels": [0, 7]}, {}, "arch.attn_levels", "is 7; geosr accepts at most 2"),
        ({"noise_channels": 33}, {}, "arch.noise_channels", "is odd"),
        ({"style": "yes"}, {}, "arch.style", "geosr accepts true or false"),
        ({"sigma_data": float("nan")}, {}, "arch.sigma_data", "not a finite number"),
        ({"base_channels": 1024, "channel_mult": [4, 4, 4], "blocks_per_level": 4}, {}, "arch",
         "G weights; geosr accepts at most 2 G"),
        ({}, {"scales": [1000]}, "scales", "holds 1000; geosr supports whole scales from 2 to 16"),
        ({}, {"scales": [8.0]}, "scales", "holds 8.0"),
        ({}, {"scales": 8}, "scales", "is 8; geosr accepts a list"),
        ({}, {"halo": 10**6}, "halo", "geosr accepts at most 64"),
        ({}, {"bands": -1}, "bands", "is -1; geosr accepts at least 1"),
        ({}, {"inference": {"steps": 10**9}}, "inference.steps", "geosr accepts integers from 1 to 1000"),
        # (found in review: these were internal errors, or taken: "sideways" ran, "off" turned back-projection on)
        ({}, {"tiling": "big"}, "tiling", 'is "big", not an object'),
        ({}, {"tiling": {"window_hr": "x"}}, "tiling.window_hr", 'is "x", not an integer'),
        ({}, {"tiling": {"overlap_share": 1.5}}, "tiling.overlap_share", "from 0 to below 1"),
        ({}, {"memory_per_hr_pixel": "x"}, "memory_per_hr_pixel", "a number of bytes above 0"),
        ({"name": ["a"]}, {}, "arch.name", "a text of at most 200 characters"),
        ({}, {"name": ["a"]}, "name", "a text of at most 200 characters"),
        ({}, {"inference": {"lr_consistency": "sideways"}}, "inference.lr_consistency", "geosr accepts true, false"),
        ({}, {"inference": {"lr_consistency": {"operator": "x"}}}, "inference.lr_consistency", "'bicubic' or"),
        ({}, {"inference": {"reference_detail": {"sigma": 1e9}}}, "inference.reference_detail.sigma", "at most 64"),
        ({}, {"inference": "fast"}, "inference", "not an object"),
        ({}, {"inference": {"lr_consistency": {"operator": "box", "iterations": 10**6}}},
         "inference.lr_consistency.iterations", "geosr accepts integers from 0 to 100"),
        ({}, {"inference": {"lr_consistency": {"iterations": "6"}}}, "inference.lr_consistency.iterations", '"6"'),
        ({}, {"inference": {"reference_detail": "on"}}, "inference.reference_detail", "true, false or an object"),
        # (found in review, session 55: an internal error when upscale compared them with the scene's bands)
        ({}, {"band_names": 5}, "band_names", "is 5; geosr accepts a list"),
        ({}, {"band_names": ["red", 7]}, "band_names", "holds 7; geosr accepts band names as texts"),
    ],
)
def test_spec_out_of_bounds_or_of_the_wrong_type_is_refused(tmp_path, nothing_built, arch, fields, field, problem):
    path = _crafted(tmp_path / "crafted.safetensors", arch, **fields)
    with pytest.raises(ModelFileError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: spec field {field!r} ") and problem in message, message
    assert "\n" not in message and len(message) - len(str(path)) < 160  # one short sentence after the path


def _named_archs() -> list[ArchConfig]:
    """Every named config and every bundled diffusion model's (an LR-space backbone has its own bounds)."""
    specs = [read_spec(p) for p in registry.bundled_checkpoints().values()]
    bundled = [get_config(s["arch"]) for s in specs if s["arch"].get("kind") != "backbone"]
    assert bundled, "geosr ships a default model"
    return [*CONFIGS.values(), *bundled]


def _real_archs() -> list[ArchConfig]:
    """The named ones and variants that switch on the optional parts."""
    return [
        *_named_archs(),
        get_config("tiny", n_map_classes=5, upsampler_channels=40, upsampler_blocks=3, noise_channels=18),
        get_config("small", style=False, n_map_classes=9, patch=4, attn_levels=(0, 1, 2, 3), emb_channels=100),
        get_config("paper", style=True, flow_layers=3, flow_hidden=17, guidance_channels=7, n_bands=5),
    ]


def test_every_real_config_is_within_the_bounds_and_its_size_is_counted_exactly(tmp_path):
    for cfg in _real_archs():
        spec = make_spec(build_denoiser(cfg, device="meta"), scales=[2, 4, 8, 16], inference={"steps": 256})
        check_spec(spec, "real.safetensors")
        built = build_denoiser(cfg, device="meta").state_dict().values()
        assert count_weights(cfg.to_dict()) == sum(t.numel() for t in built), cfg.name
    assert count_weights(PAPER.to_dict()) * 10 < MAX_WEIGHTS  # the paper size (~117 M) with a wide margin
    for name, (low, high) in ARCH_BOUNDS.items():  # the real sizes are at most a quarter of the bounds
        if name != "patch":  # 1, 2 or 4, all of them real
            assert all(low <= getattr(c, name) <= max(high // 4, low) for c in _named_archs()), name


def test_cli_refuses_a_crafted_model_with_exit_2_and_writes_nothing(tmp_path, nothing_built):
    from typer.testing import CliRunner

    from conftest import make_raster, smooth_field
    from geosr.cli.app import app

    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 20, 24) * 255).astype("uint8"))
    model = _crafted(tmp_path / "crafted.safetensors", {"blocks_per_level": 300_000})
    before = {p.name: p.stat().st_size for p in tmp_path.iterdir()}
    argv = ["upscale", str(lr), "-x", "8", "-o", str(tmp_path / "out.tif"), "--model", str(model)]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, (result.exit_code, result.output, result.stderr)
    message = result.stderr.strip()
    assert "\n" not in message and message.startswith("geosr: error:"), message
    assert "crafted.safetensors: spec field 'arch.blocks_per_level' is 300000" in message, message
    assert {p.name: p.stat().st_size for p in tmp_path.iterdir()} == before, "nothing may be written"


def test_a_loaded_model_wrapped_for_consistency_or_reference_detail_can_be_copied(trained_tiny):
    """copy.copy and a pickle round trip of a loaded model (as Dask or multiprocessing would send it) recursed
    without end: the wrappers asked their missing `inner` of themselves."""
    import copy

    from geosr.models.consistency import LRConsistent
    from geosr.models.reference_detail import ReferenceDetail

    for cls in (LRConsistent, ReferenceDetail):
        assert cls.__getattr__  # both forward unknown names to the wrapped model
        bare = cls.__new__(cls)  # what copy and unpickling build before they fill it
        with pytest.raises(AttributeError):
            bare.inner  # noqa: B018
        assert copy.copy(bare) is not bare
    # a whole loaded model, both wrappers around a network: copied and sent through a pickle, it computes the same
    import pickle

    from geosr.models.interface import ConditionBatch

    sr = registry.load_model("lite", lr_consistency="box", reference_detail=True)
    assert isinstance(sr, LRConsistent) and isinstance(sr.inner, ReferenceDetail)
    torch.manual_seed(0)
    lr, hr = torch.rand(1, 3, 12, 12) * 2 - 1, (1, 1, 48, 48)
    batch = ConditionBatch(lr=lr, lr_valid=torch.ones(1, 1, 12, 12), ref=torch.rand(1, 3, 48, 48) * 2 - 1,
                           ref_valid=torch.ones(hr), change=torch.zeros(hr, dtype=torch.long), changed=torch.zeros(hr),
                           map=None, offsets=torch.tensor([[0, 0]]), scale=4, halo=0)
    expected = sr(batch, seed=0)
    for other in (copy.copy(sr), pickle.loads(pickle.dumps(sr))):
        assert other.name == sr.name and other.operator == "box" and torch.equal(other(batch, seed=0), expected)


@pytest.mark.parametrize("setting, operator", [("off", None), (False, None), ("bicubic", "bicubic"), (True, "box"),
                                               ({"operator": "bicubic"}, "bicubic"), ("box", "box")])
def test_a_spec_s_lr_consistency_given_as_text_is_read_as_written(setting, operator):
    """A spec (a training config's `inference`) saying `lr_consistency = "off"` turned back-projection on (box):
    any text counted as true."""
    assert registry.lr_consistency_operator(None, setting) == operator
    assert registry.lr_consistency_operator("off", setting) is None
    assert registry.lr_consistency_operator(True, setting) == (operator or "box")


def test_an_unknown_lr_consistency_names_its_parameter():
    """load_model's refusal had no parameter, so the command line could not name the flag; upscale's and
    evaluate's said the same refusal in two wordings."""
    from geosr.config import SamplerConfig
    from geosr.errors import OptionError

    for make in (lambda: registry.load_model("bicubic", lr_consistency="maybe"),
                 lambda: SamplerConfig(lr_consistency="maybe")):
        with pytest.raises(OptionError, match=r"^lr_consistency 'maybe': choose one of off, box, bicubic") as info:
            make()
        assert info.value.param == "lr_consistency"


def _with_inference(src: Path, dst: Path, inference: dict) -> Path:
    """A copy of the checkpoint ``src`` whose spec's ``inference`` is ``inference``."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(src), "pt") as fh:
        meta = fh.metadata()
    spec = json.loads(meta[SPEC_KEY])
    spec["inference"] = inference
    save_file(load_file(str(src)), str(dst), metadata={**meta, SPEC_KEY: json.dumps(spec)})
    return dst


def test_a_spec_s_back_projection_rounds_are_run_and_null_settings_read_as_absent(tmp_path):
    """`{"operator": ..., "iterations": N}` was accepted and N silently ignored; `"lr_consistency": null` and
    `"reference_detail": null` (JSON's "not set", read as off before the bounds check) were refused."""
    from geosr.models.consistency import ITERATIONS, LRConsistent
    from geosr.models.reference_detail import ReferenceDetail

    src = registry.bundled_checkpoints()["lite"]
    rounds = _with_inference(src, tmp_path / "rounds.safetensors",
                             {"lr_consistency": {"operator": "bicubic", "iterations": 3}})
    sr = registry.load_model(str(rounds))
    assert isinstance(sr, LRConsistent) and (sr.operator, sr.iterations) == ("bicubic", 3)
    assert registry.load_model(str(rounds), lr_consistency=True).iterations == 3  # on: the spec's operator, rounds
    other = registry.load_model(str(rounds), lr_consistency="box")  # another operator runs its own count
    assert (other.operator, other.iterations) == ("box", ITERATIONS["box"])
    unset = _with_inference(src, tmp_path / "null.safetensors", {"lr_consistency": None, "reference_detail": None})
    plain = registry.load_model(str(unset))
    assert not isinstance(plain, (LRConsistent, ReferenceDetail))


def test_a_training_config_whose_inference_the_loader_would_refuse_is_refused_before_training():
    """A config's `inference` went into the checkpoint unchecked: a run trained for its whole length and wrote a
    model that every load then refused (or misread)."""
    from geosr.errors import OptionError
    from geosr.training.config import TrainConfig

    with pytest.raises(OptionError, match=r"`inference.lr_consistency` is \"sideways\""):
        TrainConfig(inference={"lr_consistency": "sideways"})
    with pytest.raises(OptionError, match=r"`inference.steps` is 0"):
        TrainConfig(inference={"steps": 0})
    assert TrainConfig(inference={"lr_consistency": "off", "steps": 4}).inference["lr_consistency"] == "off"


def test_the_checksum_recorded_is_of_the_weights_loaded(tmp_path, monkeypatch):
    """A training run replaces its model.safetensors as it saves: an upscale of it that read the weights of one save
    and hashed the file of the next recorded that hash beside other weights (17 of 40 loads in a race; found in
    review). A file replaced between the two is read again."""
    import shutil

    from safetensors.torch import load_file

    lite = registry.bundled_checkpoints()["lite"]
    path = tmp_path / "model.safetensors"
    shutil.copy(lite, path)
    newer = _rewrite(lite, tmp_path / "newer.safetensors", edit=lambda t: [v.add_(0.01) for v in t.values()
                                                                            if v.is_floating_point()])
    real = registry.file_sha256
    calls = []

    def saved_meanwhile(p):
        if not calls:  # the run saves between the read and the hash, once
            os.replace(shutil.copy(newer, tmp_path / "part"), path)
        calls.append(p)
        return real(p)

    monkeypatch.setattr(registry, "file_sha256", saved_meanwhile)
    sr = registry.load_model(str(path), device="cpu")
    assert sr.checksum == real(newer)
    loaded, saved = sr.net.state_dict(), load_file(str(newer))
    assert set(saved) <= set(loaded) and all(torch.equal(loaded[k], v) for k, v in saved.items())


def test_a_spec_s_records_and_bands_are_checked_and_a_broken_bundled_file_listed_as_unreadable(tmp_path,
                                                                                               monkeypatch):
    """A bundled checkpoint whose spec `training` was a text broke `geosr models` and every "unknown model" error
    (an AttributeError, exit 1); a diffusion spec whose `bands` was not its network's loaded, listed with the spec's
    count; an unreadable bundled file was listed as a diffusion model of any scale and bands (found in review)."""
    from typer.testing import CliRunner

    from geosr.cli.app import app

    default = registry.bundled_checkpoints()["default"]
    spec = read_spec(default)
    with pytest.raises(ModelFileError, match=r"training.*is \"x\", not an object"):
        read_spec(_rewrite(default, tmp_path / "t.safetensors",
                           metadata={SPEC_KEY: json.dumps({**spec, "training": "x"})}))
    with pytest.raises(ModelFileError, match=r"bands.*is 5, and its network \(arch.n_bands\) takes 3"):
        load_checkpoint(_rewrite(default, tmp_path / "b.safetensors", metadata={SPEC_KEY: json.dumps({**spec,
                                                                                                    "bands": 5})}))
    weights = tmp_path / "weights"
    weights.mkdir()
    _rewrite(default, weights / "broken.safetensors", metadata={SPEC_KEY: json.dumps({**spec, "training": "x"})})
    monkeypatch.setattr(registry, "WEIGHTS_DIR", weights)
    listed = {m.name: m for m in registry.available_models()}
    assert listed["broken"].kind == "unreadable" and "not an object" in listed["broken"].description
    with pytest.raises(InputError, match="unknown model 'typo'"):
        registry.load_model("typo")
    res = CliRunner().invoke(app, ["models"])
    assert res.exit_code == 0 and "unreadable" in res.output, res.output
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in res.output.splitlines() if "│" in line]
    row = next(r for r in rows if r[0] == "broken")
    assert row[1:5] == ["unreadable", "-", "-", "-"], row  # its inputs unknown too: not "nothing"
    res = CliRunner().invoke(app, ["models", "--json"])
    entry = next(m for m in json.loads(res.output)["models"] if m["name"] == "broken")
    assert (entry["scales"], entry["inputs"], entry["bands"]) == (None, None, None), entry  # unknown, not "any"


def test_models_describes_a_checkpoint_file_and_info_points_there(tmp_path, trained_tiny):
    """`geosr models PATH` said "Got unexpected extra argument" and `geosr info model.safetensors` "not a raster GDAL
    can read": a trained checkpoint could not be described short of reading its spec by hand."""
    import shutil

    from typer.testing import CliRunner

    from geosr.cli.app import app
    from geosr.models.registry import bundled_checkpoints

    runner = CliRunner()
    model, _ = trained_tiny
    run = tmp_path / "run_x8"
    run.mkdir()
    spec = _spec(model)
    spec["training"] = {"data": ["synthetic: 2 pairs from tiles"], "steps": 7, "seconds": 12.0, "device": "cpu",
                        "validation": {"psnr_y_gain_db": 0.4}}
    path = save_checkpoint(run / "model.safetensors", model, spec)
    r = runner.invoke(app, ["models", str(path), "--json"])
    assert r.exit_code == 0, r.output
    (got,) = json.loads(r.output)["models"]
    assert got["name"] == "run_x8/model" and got["kind"] == "diffusion" and got["scales"] == [4, 8]
    assert got["bands"] == 3 and got["inputs"] == ["ref", "cd", "map", "style"] and got["file"] == str(path)
    assert got["training"]["steps"] == 7 and got["training"]["validation"] == {"psnr_y_gain_db": 0.4}
    import geosr

    assert geosr.describe_model(path).to_dict() == got  # the Python API's, a path object taken as a path
    text = " ".join(runner.invoke(app, ["models", str(path)]).output.split())
    assert "run_x8/model: trained 7 steps in 12 s (cpu)" in text
    assert "run_x8/model: data: synthetic: 2 pairs from tiles" in text and "psnr_y_gain_db 0.4" in text
    # a backbone file, a name and both of them as DIFFUSION+BACKBONE, in the order given
    lite = shutil.copy(bundled_checkpoints()["lite"], tmp_path / "mine.safetensors")
    r = runner.invoke(app, ["models", "bicubic", str(lite), f"default+{lite}", "--json"])
    assert r.exit_code == 0, r.output
    bic, back, both = json.loads(r.output)["models"]
    assert bic["name"] == "bicubic" and bic["file"] is None and bic["scales"] == []
    assert back["name"] == "mine" and back["kind"] == "backbone" and back["scales"] == [2, 4, 8, 16]
    assert both["name"] == "default+mine" and both["kind"] == "diffusion on backbone"
    assert both["file"] == f"default + {lite}" and both["training"]["backbone"]["licences"]
    # what cannot be described is refused as --model refuses it: exit 2, one line, the file named
    for bad, said in ((str(run), f"model file {run} is not a file (a training run's weights are {path})"),
                      ("nonsense", "unknown model 'nonsense'"),
                      (str(tmp_path / "nope.safetensors"), "does not exist"),
                      (f"{lite}+default", "takes a diffusion model, then an LR-space backbone")):
        r = runner.invoke(app, ["models", bad])
        assert r.exit_code == 2 and said in " ".join(r.output.split()), (bad, r.output)
    # a diffusion checkpoint whose spec names the backbone it samples on is described as that pair, and refused
    # as --model refuses it (it was listed, exit 0, with a backbone missing or sharing no scale; found in review)
    spec_of = read_spec(bundled_checkpoints()["default"])

    def own(name: str, backbone: str, scales: list[int]) -> Path:
        return _rewrite(bundled_checkpoints()["default"], tmp_path / name, metadata={
            SPEC_KEY: json.dumps({**spec_of, "backbone": backbone, "scales": scales})})

    paired = own("paired.safetensors", "mine.safetensors", [4, 8, 16])
    r = runner.invoke(app, ["models", str(paired), "--json"])
    assert r.exit_code == 0, r.output
    (got,) = json.loads(r.output)["models"]
    assert got["kind"] == "diffusion on backbone" and got["scales"] == [4, 8, 16] and got["file"] == str(paired)
    assert "sampling detail on mine's prediction" in got["description"] and "SAFMN" in got["licences"]
    for name, backbone, scales, said in (("lost.safetensors", "gone.safetensors", [4], "does not exist"),
                                         ("apart.safetensors", "mine.safetensors", [3], "share no scale")):
        r = runner.invoke(app, ["models", str(own(name, backbone, scales))])
        assert r.exit_code == 2 and said in " ".join(r.output.split()), r.output
    r = runner.invoke(app, ["info", str(path)])
    assert r.exit_code == 2
    assert f"{path}: is a model checkpoint (safetensors), not a raster; `geosr models {path}` describes it" in \
        " ".join(r.output.split())
    (tmp_path / "junk.safetensors").write_bytes(bytes(range(100)))  # not laid out as one: not called a model
    r = runner.invoke(app, ["info", str(tmp_path / "junk.safetensors")])
    assert r.exit_code == 2 and "not a raster GDAL can read" in r.output


def test_an_unreadable_model_file_is_refused_in_one_sentence(tmp_path, monkeypatch):
    """A checkpoint the user may not read (mode 000, another user's) was an internal error (exit 1) in `geosr models`,
    `upscale -m` and `train --init`; docs/cli.md promises exit 2 (found in review)."""
    import errno
    import shutil

    from typer.testing import CliRunner

    from conftest import make_raster
    from geosr.cli.app import app

    model = tmp_path / "m.safetensors"
    shutil.copy(registry.resolve_checkpoint("lite"), model)
    opened = Path.open

    def denied(self, *args, **kwargs):  # mode 000 (as root, as CI may run, a mode of 000 does not deny)
        if self.name == model.name:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return opened(self, *args, **kwargs)

    lr = make_raster(tmp_path / "lr.tif", torch.zeros(3, 16, 16).numpy().astype("uint8"))
    stat = Path.stat

    def hidden(self, *args, **kwargs):  # in a folder this user may not enter: even its existence is unknown
        if self.name == model.name:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return stat(self, *args, **kwargs)

    for method, patched in (("open", denied), ("stat", hidden)):
        with monkeypatch.context() as mp:
            mp.setattr(Path, method, patched)
            for argv in (["models", str(model)], ["upscale", str(lr), "-x", "4", "-m", str(model), "-o",
                                                  str(tmp_path / "o.tif")]):
                result = CliRunner().invoke(app, argv)
                assert result.exit_code == 2, (method, result.exit_code, result.output)
                assert result.stderr.strip() == f"geosr: error: model file {model} cannot be read (permission denied)"
    assert not (tmp_path / "o.tif").exists()
