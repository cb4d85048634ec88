"""Model names -> super-resolvers: the classical back-ends, bundled checkpoints and local paths.

Bundled checkpoints are the ``*.safetensors`` files in ``geosr/weights/`` (the name is the file stem);
``default`` resolves to ``geosr/weights/default.safetensors`` when geosr ships one. Anything else that
looks like a path is loaded with :func:`geosr.models.checkpoint.load_checkpoint` (safetensors only).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from geosr.config import LR_CONSISTENCY_MODES, SamplerConfig, is_bool
from geosr.errors import GeoSRError, InputNotFoundError, ModelFileError, OptionError, names_too_long_are_input_errors
from geosr.models.classical import KernelUpsampler, ReferencePaste
from geosr.models.interface import SuperResolver, samples

if TYPE_CHECKING:
    import torch

    from geosr.config import SamplerConfig

CLASSICAL: dict[str, Callable[[], SuperResolver]] = {
    "bicubic": lambda: KernelUpsampler("bicubic"),
    "lanczos": lambda: KernelUpsampler("lanczos"),
    "reference-paste": ReferencePaste,
}

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_NAME = "default"


@dataclass(frozen=True)
class ModelInfo:
    """One entry of ``geosr models``."""

    name: str
    kind: str
    description: str
    scales: tuple[int, ...] = ()  # empty: any scale
    inputs: tuple[str, ...] = ()  # the conditioning inputs it uses besides the LR (ref, cd, map, style)
    bands: int | None = None  # how many LR bands it takes (None: any number)
    licences: str | None = None  # the terms of its weights and training data, as its spec records them
    file: str | None = None  # the checkpoint a model given by its path was read from (describe_model)
    training: dict | None = None  # what that checkpoint's training run recorded (its spec's ``training``)

    def to_dict(self) -> dict:
        """As ``geosr models --json`` gives it; an unreadable file's scales, inputs and bands null: unknown, not
        "any scale, nothing besides the LR, any bands" (found in review)."""
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}
        if self.kind == "unreadable":
            out.update(scales=None, inputs=None, bands=None)
        return out


def bundled_checkpoints(weights_dir: Path | None = None) -> dict[str, Path]:
    """Name -> path of every checkpoint shipped in ``geosr/weights``."""
    folder = weights_dir or WEIGHTS_DIR
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.safetensors"))}


def _bundled_info(name: str, path: Path) -> ModelInfo:
    """What ``geosr models`` says of a bundled checkpoint: kind, description, scales and conditioning inputs, from
    its spec read once (nothing is built); a broken file is described as such, never breaks the listing."""
    from geosr.models.checkpoint import read_spec

    try:
        spec = read_spec(path)
    except Exception as exc:  # noqa: BLE001 - a broken bundled file must not break `geosr models`
        # (its own kind: as a "diffusion" model of no scales and no bands it read as one that takes any; review)
        return ModelInfo(name, "unreadable", f"unreadable checkpoint ({exc})")
    return _spec_info(name, spec)


def _spec_info(name: str, spec: dict) -> ModelInfo:
    """A checkpoint's entry from its spec (read and checked by :func:`~geosr.models.checkpoint.read_spec`)."""
    arch = spec["arch"]
    scales = tuple(int(s) for s in spec.get("scales", ()))
    training = spec.get("training") if isinstance(spec.get("training"), dict) else {}
    terms = training.get("licences")
    licences = terms if isinstance(terms, str) and terms else None
    bands = spec.get("bands", arch.get("n_bands"))
    bands = int(bands) if bands is not None else None
    listed = ", ".join(f"x{s}" for s in scales) or "any scale"
    if arch.get("kind") == "backbone":  # its own inputs: none; the reference's detail when the spec turns it on
        inputs = ("ref", "cd") if spec.get("inference", {}).get("reference_detail") else ()
        told = ", told the LR's sharpness" if arch.get("code_dims") else ""
        return ModelInfo(name, "backbone",
                         f"LR-space network ({arch.get('name', 'custom')}, no sampling{told}), {listed}",
                         scales, inputs, bands, licences)
    inputs = ("ref", "cd") + (("map",) if arch.get("n_map_classes") else ()) + (("style",) if arch.get("style") else ())
    return ModelInfo(name, "diffusion", f"diffusion model, {arch.get('name', 'custom')} architecture, {listed}",
                     scales, inputs, bands, licences)


def available_models() -> list[ModelInfo]:
    """Every model name ``--model`` accepts without a path, with the scales and conditioning inputs it uses."""
    models = [
        ModelInfo("bicubic", "classical", "bicubic interpolation of the LR (Keys a=-0.5)"),
        ModelInfo("lanczos", "classical", "Lanczos-3 interpolation of the LR"),
        ModelInfo("reference-paste", "classical",
                  "harmonized reference where unchanged, bicubic where changed (needs --ref)", inputs=("ref", "cd")),
    ]
    bundled = [_bundled_info(name, path) for name, path in bundled_checkpoints().items()]
    return models + bundled + _composite_infos(bundled)


def _composite_infos(bundled: list[ModelInfo]) -> list[ModelInfo]:
    """``DIFFUSION+BACKBONE`` for every bundled residual diffusion model and LR-space backbone sharing a scale."""
    from geosr.models.checkpoint import read_spec

    def residual(info: ModelInfo) -> bool:
        try:
            return bool(read_spec(bundled_checkpoints()[info.name])["arch"].get("residual"))
        except Exception:  # noqa: BLE001 - described as unreadable in its own entry
            return False

    out = []
    for d in (i for i in bundled if i.kind == "diffusion" and residual(i)):
        for b in (i for i in bundled if i.kind == "backbone"):
            scales = tuple(s for s in b.scales if not d.scales or s in d.scales)
            if scales and (d.bands is None or b.bands is None or d.bands == b.bands):
                out.append(_composite_info(f"{d.name}+{b.name}", d, b, scales))
    return out


def _composite_info(name: str, d: ModelInfo, b: ModelInfo, scales: tuple[int, ...]) -> ModelInfo:
    """The entry of diffusion model ``d`` sampling on backbone ``b`` at the ``scales`` they share."""
    return ModelInfo(name, "diffusion on backbone",
                     f"{d.name}'s denoiser sampling detail on {b.name}'s prediction (steps 0: {b.name}'s prediction, "
                     "back-projected), " + ", ".join(f"x{s}" for s in scales),
                     scales, d.inputs, d.bands, " / ".join(t for t in (d.licences, b.licences) if t) or None)


def describe_model(spec: str | os.PathLike[str]) -> ModelInfo:
    """One model as ``geosr models MODEL`` describes it: a listed name's entry; a checkpoint file (a training run's
    ``model.safetensors``) from its spec, with its path and what its training recorded (:attr:`ModelInfo.training`);
    ``DIFFUSION+BACKBONE`` from its two. Raises what loading it would (unknown name, missing or unreadable file,
    two models that do not pair), so a model described here is one ``--model`` accepts as far as its spec says."""
    from geosr.models.checkpoint import read_spec

    if not isinstance(spec, (str, os.PathLike)):
        raise OptionError(f"model {spec!r}: give a model's name or a checkpoint's path", param="model")
    spec = os.fspath(spec)
    listed = {m.name: m for m in available_models()}
    if spec in listed:
        return listed[spec]
    if is_composite(spec):  # checked as loading checks it, then described from its two parts
        _check_pairing(spec)
        d, b = (describe_model(p) for p in composite_parts(spec))
        shared = tuple(s for s in b.scales if not d.scales or s in d.scales)
        return replace(_composite_info("+".join(_part_name(p) for p in composite_parts(spec)), d, b, shared),
                       file=" + ".join(x for x in (d.file or d.name, b.file or b.name)),
                       training={"diffusion": d.training, "backbone": b.training}
                       if d.training or b.training else None)
    path = resolve_checkpoint(spec)
    model_spec = read_spec(path)  # (a run's folder: "is not a file", and where its weights are)
    info = _spec_info(file_model_name(path), model_spec)
    own = _own_backbone(spec) if model_spec.get("backbone") else None  # (a missing one refused as loading does)
    if own:  # it samples on the backbone its spec names, as --model runs it: described as the pair, checked so
        _check_pairing(spec)
        b = describe_model(own)
        info = _composite_info(info.name, info, b, tuple(s for s in b.scales if not info.scales or s in info.scales))
    training = model_spec.get("training")
    return replace(info, file=str(path), training=training if isinstance(training, dict) else None)


def _check_pairing(spec: str) -> None:
    """Refuse ``DIFFUSION+BACKBONE`` as :func:`load_model` would (on the CPU; the weights are small)."""
    load_model(spec, device="cpu")


def _model_names() -> set[str]:
    return set(CLASSICAL) | set(bundled_checkpoints()) | {DEFAULT_NAME}


def is_model_name(spec: str) -> bool:
    """Whether ``spec`` is a model's name (a classical back-end, a bundled model, or two of them joined as
    DIFFUSION+BACKBONE), which wins over a file of that name."""
    names = _model_names()
    return spec in names or ("+" in spec and all(p in names for p in spec.rsplit("+", 1)))


def composite_parts(spec: str, exists: Callable[[str], bool] | None = None) -> tuple[str, str]:
    """The two models of ``DIFFUSION+BACKBONE``: split at the first ``+`` whose two sides each name a model or an
    existing file (``exists``: whether a path names one; default: from the working folder), since a path may hold
    a ``+`` (``default+runs/x4+x8/model.safetensors``); else at the last."""
    found = exists or (lambda p: Path(p).expanduser().exists())
    names = _model_names()
    for i, ch in enumerate(spec):
        a, b = spec[:i], spec[i + 1:]
        if ch == "+" and a and b and all(q in names or found(q) for q in (a, b)):
            return a, b
    a, _, b = spec.rpartition("+")
    return a, b


def model_files(spec: str, _depth: int = 0) -> list[Path]:
    """Every local file the model ``spec`` reads: its checkpoint (a bundled one too), a composite's two, the backbone
    a checkpoint samples on (its spec's ``backbone``); no output may be one of them. None for a classical back-end,
    or a spec that does not resolve (loading it names the problem)."""
    if spec in CLASSICAL or _depth > 2:  # (a spec naming itself as its backbone: no loop)
        return []
    try:
        if is_composite(spec):
            return [f for part in composite_parts(spec) for f in model_files(part, _depth + 1)]
        path = resolve_checkpoint(spec)
        own = _own_backbone(spec)
    except (GeoSRError, OSError, ValueError, KeyError):
        return []
    return [path, *(model_files(own, _depth + 1) if own else [])]


CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".bin", ".pkl")


def looks_like_path(spec: str) -> bool:
    """Whether a model ``spec`` names a file rather than a model (a path, a checkpoint's suffix, an existing file)."""
    return os.sep in spec or "/" in spec or spec.endswith(CHECKPOINT_SUFFIXES) or Path(spec).exists()


# The file names a training run gives its checkpoints: named by their run's folder too
RUN_CHECKPOINTS = ("model", "best")


def file_model_name(path: Path) -> str:
    """The name a checkpoint file runs under (outputs' tags, ``--json``): its stem, with its folder's name for
    a training run's own (``second_x8/model``, not ``model``) and for a file whose stem is a model's name (a
    run's weights copied to ``x/default.safetensors`` were recorded as the bundled ``default``; found in review),
    unless it is that bundled model's own file."""
    resolved = path.resolve()
    own = bundled_checkpoints().get(path.stem)
    clash = is_model_name(path.stem) and not (own is not None and own.resolve() == resolved)
    return f"{resolved.parent.name}/{path.stem}" if path.stem in RUN_CHECKPOINTS or clash else path.stem


def _part_name(part: str) -> str:
    """A model's name, or the name a checkpoint file runs under (:func:`file_model_name`)."""
    if part in CLASSICAL or part in bundled_checkpoints():
        return part
    return file_model_name(Path(part).expanduser())


def resolve_checkpoint(spec: str) -> Path:
    """The checkpoint file a model name or path stands for."""
    bundled = bundled_checkpoints()
    if spec in bundled:
        return bundled[spec]
    if spec == DEFAULT_NAME:
        raise OptionError(
            "no default model is bundled with this geosr yet: pass `model` with the path of a geosr checkpoint "
            "(.safetensors) or a classical back-end (bicubic, lanczos, reference-paste)"
        )
    if re.match(r"^(/vsi[a-z0-9_]+/|[a-z][a-z0-9+.-]*://)", spec, re.IGNORECASE):  # ("https:/host/..." said it)
        raise OptionError(f"model {spec}: is a URL or a GDAL virtual path, and geosr loads checkpoints from local "
                          "files only: download it, then give its path", param="model")
    if looks_like_path(spec):
        path = Path(spec).expanduser()
        try:
            there = path.exists()
        except OSError as exc:  # (in a folder this user may not enter: an internal error, exit 1; found in review)
            raise ModelFileError(f"model file {path} cannot be read ({(exc.strerror or str(exc)).lower()})") \
                from None
        if not there:
            raise InputNotFoundError(f"model file {path} does not exist")
        return path
    names = ", ".join(m.name for m in available_models())
    raise OptionError(f"unknown model {spec!r}: use one of {names}, or the path of a geosr checkpoint")


@names_too_long_are_input_errors
def load_model(
    spec: str,
    *,
    device: "str | torch.device" = "cpu",
    sampler: "SamplerConfig | None" = None,
    style: "str | torch.Tensor | None" = None,
    lr_consistency: bool | str | None = None,
    reference_detail: bool | None = None,
) -> SuperResolver:
    """Resolve a model name or path to a ready super-resolver on ``device`` (``auto``: cuda if present).

    Classical back-ends ignore ``sampler``, ``style``, ``lr_consistency`` and ``reference_detail``. Those two
    None take ``sampler``'s setting, then the checkpoint's ``inference`` entry. ``lr_consistency`` makes the
    output agree with the LR by back-projection (:mod:`geosr.models.consistency`): True with the operator the
    checkpoint names (else box), "box" / "bicubic" with that one, False / "off" not at all.
    ``reference_detail`` True adds the reference's matching detail first (:mod:`geosr.models.reference_detail`).
    For diffusion models ``sampler`` picks the preset, steps and overlap fusion (the seed is each run's own:
    ``upscale(seed=...)``), and ``style`` is None /
    "none", "sample" or a style image tensor (1, bands, h, w) in model space.
    """
    if isinstance(spec, os.PathLike):  # a checkpoint's path as a pathlib.Path
        spec = os.fspath(spec)
    if not isinstance(spec, str):
        raise OptionError(f"model {spec!r}: give a model's name (`geosr models`) or a checkpoint's path",
                          param="model")
    if not spec.strip():  # ("model file . is not a file": the working folder; upscale's words)
        raise OptionError("model is empty; give a value or leave it out", param="model")
    import torch

    if device is not None and not isinstance(device, (str, torch.device)):  # (None: auto, as resolve_device has it)
        raise OptionError(f"device {device!r}: give auto, cpu, cuda or cuda:N", param="device")
    # NumPy's yes/no as Python's, as the rest of the API takes them (np.True_ was "not one of box, bicubic"; review)
    reference_detail = bool(reference_detail) if is_bool(reference_detail) else reference_detail
    lr_consistency = bool(lr_consistency) if is_bool(lr_consistency) else lr_consistency
    if reference_detail is not None and not isinstance(reference_detail, bool):
        raise OptionError(f"reference_detail {reference_detail!r}: give True, False or None", param="reference_detail")
    if isinstance(sampler, str):  # a preset's name
        sampler = SamplerConfig(preset=sampler)
    elif sampler is not None and not isinstance(sampler, SamplerConfig):
        raise OptionError(f"sampler {sampler!r}: give a SamplerConfig or a preset's name", param="sampler")
    if lr_consistency is None and sampler is not None:
        lr_consistency = sampler.lr_consistency
    if lr_consistency not in (None, True, False, *LR_CONSISTENCY_MODES):
        raise OptionError(f"lr_consistency {lr_consistency!r}: choose one of {', '.join(LR_CONSISTENCY_MODES)}, True "
                          "or False", param="lr_consistency")
    if spec in CLASSICAL:  # (its device checked too: "cuda" where there is none was taken; found in review)
        from geosr.models.device import resolve_device

        resolve_device(device)
        return CLASSICAL[spec]()
    sr = _load(spec, device, sampler, style, lr_consistency, reference_detail)
    with contextlib.suppress(AttributeError):  # how it runs: settings given again beside it must agree
        sr.loaded_with = _runs_with(sr, sampler)  # type: ignore[attr-defined]  # (unapplied_settings)
    return sr


def _runs_with(sr: SuperResolver, sampler: "SamplerConfig | None") -> dict[str, Any]:
    """The sampling settings ``sr`` applies, as its ``describe()`` records them (the checkpoint's own where none
    was asked): preset, steps (None: it does not sample), overlap fusion, reference detail, LR-consistency."""
    said = sr.describe() if hasattr(sr, "describe") else {}
    run = said.get("sampler") if isinstance(said.get("sampler"), dict) else {}
    consistency = str(said.get("lr_consistency") or "")
    operator = next((op for op in ("bicubic", "box") if f"({op})" in consistency), "off" if not consistency else None)
    sampling = samples(sr)  # (a model that does not sample: the sampler's settings are a warning's, not refused)
    asked = sampler.steps if sampler is not None else None
    return {"preset": (sampler.preset if sampler else "default") if sampling else None,
            # a diffusion model on a backbone at 0 steps describes no sampler: the backbone's prediction alone
            "steps": (run.get("steps", asked if asked is not None else 0)) if sampling else None,
            "fuse_overlaps": bool(said.get("fuse_overlaps", False)) if sampling else None,
            "reference_detail": "reference_detail" in said, "lr_consistency": operator}


def unapplied_settings(model: Any, given: dict[str, Any]) -> list[str]:
    """The sampling settings in ``given`` (those set: ``preset``, ``steps``, ``fuse_overlaps``,
    ``reference_detail``, ``lr_consistency``) that a model object would not apply: it runs as :func:`load_model`
    made it, though an output would record them (found in review). None of them for a model geosr did not load,
    nor those that agree with how it runs (``steps`` 1 beside the default model's one step)."""
    runs = getattr(model, "loaded_with", None)
    if not isinstance(runs, dict):
        return []
    out = []
    for name, value in given.items():
        have = runs.get(name)
        if have is None:  # not a setting of this model (a backbone's sampler: upscale warns of it)
            continue
        if name == "lr_consistency":
            want = "off" if value in (False, "off") else None if value is True else value
            wrong = have == "off" if want is None else want != have
        else:
            wrong = value != have
        if wrong:
            out.append(name)
    return out


def refuse_unapplied(model: Any, given: dict[str, Any], named: dict[str, str] | None = None) -> None:
    """Raise an OptionError naming the settings in ``given`` that ``model`` would not apply
    (:func:`unapplied_settings`); ``named``: how the caller's options name them (``preset``: ``sampler``)."""
    names = [(named or {}).get(n, n) for n in unapplied_settings(model, given)]
    if names:
        raise OptionError(f"{', '.join(names)}: model {getattr(model, 'name', 'given')} was loaded with other "
                          f"settings and runs with those; give {'it' if len(names) == 1 else 'them'} to load_model, "
                          "or give the model by its name", param=names[0])


def _load(spec: str, device: "str | torch.device", sampler: "SamplerConfig | None", style: "str | torch.Tensor | None",
          lr_consistency: bool | str | None, reference_detail: bool | None) -> SuperResolver:
    """:func:`load_model` of a learned model, its arguments checked."""
    from geosr.models.device import resolve_device

    dev = resolve_device(device)
    sr: SuperResolver
    own = None if is_composite(spec) else _own_backbone(spec)
    if is_composite(spec) or own:  # a denoiser trained on a backbone's prediction samples on it
        parts = (spec, own) if own else composite_parts(spec)
        # named as a plain checkpoint is, whatever the path's spelling (it wrote the path as typed, absolute too,
        # and refused a resume of ./m/x for m/x; found in review)
        named = _part_name(spec) if own else "+".join(_part_name(p) for p in parts)
        sr, model_spec = _load_residual_sampler(f"{spec}+{own}" if own else spec, parts, dev, sampler, style,
                                                name=named)
    else:
        sr, model_spec = _load_checkpoint_model(spec, dev, sampler, style)
    inference = model_spec.get("inference", {})
    if reference_detail is None and sampler is not None:
        reference_detail = sampler.reference_detail
    if reference_detail is None:  # the checkpoint's own recommendation (geosr's default model: on)
        reference_detail = bool(inference.get("reference_detail", False))
    if reference_detail:
        from geosr.models.reference_detail import DEFAULT_SIGMA, ReferenceDetail

        setting = inference.get("reference_detail")
        sigma = float(setting.get("sigma", DEFAULT_SIGMA)) if isinstance(setting, dict) else DEFAULT_SIGMA
        sr = ReferenceDetail(sr, sigma=sigma)
    setting = inference.get("lr_consistency", False)
    operator = lr_consistency_operator(lr_consistency, setting)
    if operator is None:
        return sr
    from geosr.models.consistency import LRConsistent

    own = isinstance(setting, dict) and setting.get("operator", "box") == operator  # its rounds serve its operator
    return LRConsistent(sr, operator=operator, iterations=setting.get("iterations") if own else None)


def is_composite(spec: str) -> bool:
    """Whether ``spec`` names a diffusion model sampling on a backbone (``DIFFUSION+BACKBONE``, e.g.
    ``default+lite``) rather than one model (a file whose name holds a ``+`` is one model, unless the text is two
    models' names: a name wins over a file, as in :func:`is_model_name`)."""
    if "+" in spec and is_model_name(spec):
        return True
    return "+" in spec and spec not in CLASSICAL and not Path(spec).expanduser().exists()


def _load_checkpoint_model(spec: str, dev: "torch.device", sampler: "SamplerConfig | None",
                           style: "str | torch.Tensor | None") -> tuple[SuperResolver, dict]:
    """A bundled or local checkpoint as a super-resolver, and its spec (no reference detail, no LR-consistency)."""
    from geosr.models.backbone_checkpoint import is_backbone_spec
    from geosr.models.checkpoint import load_checkpoint, read_spec
    from geosr.models.diffusion import DiffusionSuperResolver

    path = resolve_checkpoint(spec)
    name = file_model_name(path) if spec == str(path) or looks_like_path(spec) else spec
    sr: SuperResolver
    for _ in range(3):  # the file read, and hashed, unchanged between: a training run replaces its model.safetensors
        # as it saves, and the hash of the next save was recorded beside the weights of the last (found in review)
        before = _identity(path)
        if is_backbone_spec(read_spec(path)):
            from geosr.models.backbone_checkpoint import load_backbone
            from geosr.models.backbone_sr import BackboneSuperResolver

            net, model_spec = load_backbone(path, device=dev)
            sr = BackboneSuperResolver(net, model_spec, device=dev, name=name)
        else:
            model, model_spec = load_checkpoint(path, device=dev)
            sr = DiffusionSuperResolver(model, model_spec, sampler=sampler, device=dev, style=style, name=name)
        sr.checksum = file_sha256(path)  # in the output's tags and resume fingerprint: the weights, not the name
        if _identity(path) == before:
            return sr, model_spec
    raise ModelFileError(f"model file {path} changed each time it was read (a training run saving it?); run again "
                         "once it is written")


def _identity(path: Path) -> tuple[int, ...]:
    """What tells one file at ``path`` from another written there (replaced, or rewritten in place)."""
    st = path.stat()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _own_backbone(spec: str) -> str | None:
    """The backbone a diffusion checkpoint was trained on (its spec's ``backbone``), if any: a bundled name, or a
    file, which a relative path names from the checkpoint's folder (as training records it), else, as checkpoints
    written before session 53 recorded it, from the working folder."""
    from geosr.models.checkpoint import read_spec

    path = resolve_checkpoint(spec)
    own = read_spec(path).get("backbone")
    if not own:
        return None
    own = str(own)
    if not looks_like_path(own) and own not in bundled_checkpoints():  # else "unknown model 'x'", from nowhere
        raise OptionError(f"model {spec}: the backbone it samples on, {own!r} (its spec's backbone), is no bundled "
                          "model; give the model whose spec names it beside that backbone's file")
    if own in bundled_checkpoints() or Path(own).expanduser().is_absolute():
        return own
    beside = Path(os.path.normpath(path.resolve().parent / own))
    if beside.exists():
        return str(beside)
    if Path(own).exists():
        return own
    raise InputNotFoundError(f"model {spec}: the backbone it samples on, {beside} (its spec's backbone {own!r}, "
                             "from the model's folder), does not exist; put that file there")


def _load_residual_sampler(spec: str, parts: tuple[str, str], dev: "torch.device", sampler: "SamplerConfig | None",
                           style: "str | torch.Tensor | None", name: str | None = None) -> tuple[SuperResolver, dict]:
    """``DIFFUSION+BACKBONE`` (``spec``, as messages name it; ``parts``: the two): the diffusion model sampling
    detail on the backbone's prediction (:mod:`geosr.models.residual_sampler`; ``steps`` 0: the prediction alone),
    with the diffusion model's spec."""
    from dataclasses import replace

    from geosr.models.backbone_sr import BackboneSuperResolver
    from geosr.models.diffusion import DiffusionSuperResolver
    from geosr.models.residual_sampler import ResidualSampler

    diffusion_name, backbone_name = parts
    known = [n in bundled_checkpoints() or n in CLASSICAL or Path(n).expanduser().exists()
             for n in (diffusion_name, backbone_name)]
    if spec.endswith(CHECKPOINT_SUFFIXES) and not all(known):
        if any(known):  # one side a model: the other is the file missing ("model file default+x.safetensors")
            missing, role = (diffusion_name, "diffusion model") if not known[0] else (backbone_name, "backbone")
            raise InputNotFoundError(f"model {spec}: its {role} file {Path(missing).expanduser()} does not exist "
                                     "(nor a model file of the whole name)")
        raise InputNotFoundError(f"model file {Path(spec).expanduser()} does not exist")  # not "file ../m/x"
    if "+" in diffusion_name and not Path(diffusion_name).expanduser().exists():  # else "unknown model 'a+b'"
        raise OptionError(f"model {spec}: DIFFUSION+BACKBONE names two models (e.g. default+lite), not "
                          f"{spec.count('+') + 1}")
    if not diffusion_name.strip() or not backbone_name.strip():  # else "model file . is not a file"
        raise OptionError(f"model {spec}: DIFFUSION+BACKBONE names two models, a diffusion model and an LR-space "
                          "backbone (e.g. default+lite); one is missing")
    classical = next((n for n in (diffusion_name, backbone_name) if n in CLASSICAL), None)
    if classical is not None:  # else "unknown model 'bicubic'", which `geosr models` lists
        raise OptionError(f"model {spec}: DIFFUSION+BACKBONE takes a diffusion model, then an LR-space backbone "
                          f"(`geosr models` lists each kind); {classical} is a classical back-end, neither")
    steps = sampler.steps if sampler is not None else None
    own = replace(sampler, steps=None) if sampler is not None and steps == 0 else sampler
    diffusion, model_spec = _load_checkpoint_model(diffusion_name, dev, own, None if steps == 0 else style)
    backbone, _ = _load_checkpoint_model(backbone_name, dev, None, None)
    if not isinstance(diffusion, DiffusionSuperResolver) or not isinstance(backbone, BackboneSuperResolver):
        raise OptionError(f"model {spec}: DIFFUSION+BACKBONE takes a diffusion model, then an LR-space backbone "
                          f"(`geosr models` lists each kind), not {diffusion_name} and {backbone_name}")
    if not diffusion.denoiser.residual:
        raise OptionError(f"model {spec}: {diffusion_name} denoises whole images, not the detail on a base "
                          "(a residual model), so it cannot sample on a backbone")
    sr = ResidualSampler(diffusion, backbone, steps=0 if steps == 0 else None, name=name or spec)
    if not sr.scales:
        raise OptionError(f"model {spec}: {diffusion_name} and {backbone_name} share no scale")
    sr.checksum = f"{diffusion.checksum}+{backbone.checksum}"
    return sr, model_spec


def file_sha256(path: Path) -> str:
    """``sha256:<hex>`` of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def lr_consistency_operator(choice: bool | str | None, setting: bool | str | dict) -> str | None:
    """The back-projection operator ``choice`` asks for (None: none), given the checkpoint's ``setting``
    (``true``, ``false``, null, ``"off"``, an operator's name or ``{"operator": ..., "iterations": ...}``; geosr's
    default model: ``true``, i.e. box)."""
    if isinstance(setting, dict):
        own: str | None = setting.get("operator", "box")
    elif isinstance(setting, str):
        own = None if setting == "off" else setting
    else:
        own = "box" if setting else None
    if choice is None:
        return own
    if choice is True:
        return own or "box"  # the spec's operator holds when the switch comes from outside too
    return None if choice is False or choice == "off" else choice
