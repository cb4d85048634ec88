"""Convert the public x4 weights of SAFMN and RLFN (``sunny2109/SAFMN``, Apache-2.0) to safetensors, once.

    python scripts/convert_safmn.py --safmn team15_SAFMN.pth --rlfn team00_rlfn.pth --out ~/.cache/geosr/reference
        [--images DIR]

Writes, into ``--out``:

- ``safmn_x4.safetensors`` and ``rlfn_x4.safetensors``: the two networks' state dicts as they are, for the
  backbone benchmark's reference points (``bench/reference_nets.py``);
- ``backbone_init.safetensors``: a geosr backbone checkpoint (:mod:`geosr.models.backbone`) whose weights start
  from SAFMN's. SAFMN's GRN layer (a per-channel gain that depends on the whole image's energy per channel) is
  folded into the backbone's head with the gain's mean over ``--images`` (every ``*.png``/``*.jpg``/``*.tif``
  there, at most 64, degraded x4 with antialiased bicubic); without images the gain's neutral value 1 is used.

The ``.pth`` files are read with ``torch.load(weights_only=True)``, which refuses anything but tensors; this
script is the only place geosr reads them. Source and licence: docs/model-card.md and NOTICE.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from geosr.models.backbone import BackboneConfig, build_backbone
from geosr.models.backbone_checkpoint import save_backbone
from geosr.training.sensor_degradations import degrade_named

SOURCE = "https://github.com/sunny2109/SAFMN (NTIRE2023_ESR/model_zoo/team15_SAFMN.pth, Apache-2.0)"


def _state(path: Path) -> dict[str, torch.Tensor]:
    sd = torch.load(path, map_location="cpu", weights_only=True)
    sd = sd.get("params", sd) if isinstance(sd, dict) else sd
    return {k: v.float().contiguous() for k, v in sd.items()}


def _images(folder: Path | None, limit: int = 64) -> list[torch.Tensor]:
    if folder is None:
        return []
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif"))[:limit]
    out = []
    for p in paths:
        arr = np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255.0
        out.append(torch.from_numpy(arr).permute(2, 0, 1))
    return out


def grn_gain(safmn: dict[str, torch.Tensor], images: list[torch.Tensor]) -> torch.Tensor:
    """SAFMN's GRN factor Nx per channel (energy over mean energy), averaged over the images' x4 LRs; 1 without."""
    if not images:
        return torch.ones(safmn["to_feat.bias"].shape[0])
    ratios = []
    for hr in images:
        lr = degrade_named(hr, 4, "bicubic")[None]
        f = torch.nn.functional.conv2d(lr, safmn["to_feat.weight"], safmn["to_feat.bias"], padding=1)
        g = f.pow(2).sum(dim=(2, 3)).sqrt()[0]
        ratios.append(g / (g.mean() + 1e-6))
    return torch.stack(ratios).mean(0)


def backbone_from_safmn(safmn: dict[str, torch.Tensor], gain: torch.Tensor, cfg: BackboneConfig) -> torch.nn.Module:
    """A backbone with SAFMN's weights: head = to_feat with GRN folded in, blocks as they are, tail x4 = to_img."""
    net = build_backbone(cfg)
    scale = 1 + safmn["norm.gamma"].flatten() * gain
    mapped = {
        "head.weight": safmn["to_feat.weight"] * scale[:, None, None, None],
        "head.bias": safmn["to_feat.bias"] * scale + safmn["norm.beta"].flatten(),
        "tails.4.weight": safmn["to_img.0.weight"],
        "tails.4.bias": safmn["to_img.0.bias"],
    }
    for i in range(cfg.blocks):
        for j in range(cfg.levels):
            mapped[f"body.{i}.modulation.mfr.{j}.weight"] = safmn[f"feats.{i}.safm.mfr.{j}.weight"]
        mapped[f"body.{i}.modulation.aggr.weight"] = safmn[f"feats.{i}.safm.aggr.weight"]
        mapped[f"body.{i}.mixer.expand.weight"] = safmn[f"feats.{i}.ccm.ccm.0.weight"]
        mapped[f"body.{i}.mixer.reduce.weight"] = safmn[f"feats.{i}.ccm.ccm.2.weight"]
    missing = net.load_state_dict(mapped, strict=False)
    untouched = [k for k in missing.missing_keys if not k.startswith("tails.")]
    if untouched or missing.unexpected_keys:
        raise SystemExit(f"SAFMN's weights do not match the backbone: {untouched or missing.unexpected_keys}")
    return net


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--safmn", type=Path, required=True)
    ap.add_argument("--rlfn", type=Path)
    ap.add_argument("--images", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    safmn = _state(args.safmn)
    save_file(safmn, str(args.out / "safmn_x4.safetensors"), metadata={"source": SOURCE})
    if args.rlfn:
        source = SOURCE.replace("NTIRE2023_ESR/model_zoo/team15_SAFMN", "NTIRE2024_ESR/model_zoo/team00_rlfn")
        save_file(_state(args.rlfn), str(args.out / "rlfn_x4.safetensors"), metadata={"source": source})
    gain = grn_gain(safmn, _images(args.images))
    net = backbone_from_safmn(safmn, gain, BackboneConfig())
    save_backbone(net, args.out / "backbone_init.safetensors", name="backbone-init",
                  training={"init": SOURCE, "grn_gain": [round(float(g), 5) for g in gain]})
    print(f"wrote {args.out} (GRN gain mean {float(gain.mean()):.3f}, "
          f"range {float(gain.min()):.3f}-{float(gain.max()):.3f})")


if __name__ == "__main__":
    from geosr.errors import GeoSRError

    try:
        main()
    except (GeoSRError, FileNotFoundError) as exc:  # bad input: one sentence and exit 2, as the CLI's
        print(f"convert_safmn: {exc}", file=sys.stderr)
        sys.exit(2)
