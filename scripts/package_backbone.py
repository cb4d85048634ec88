"""Package a trained backbone run as a bundled geosr model (``geosr/weights/<name>.safetensors`` + its ``.json``).

    python scripts/package_backbone.py --checkpoint runs/backbone/model.safetensors --name lite \
        [--bench bench.json] [--reference-detail] [--lr-consistency box|bicubic|off]
    python scripts/package_backbone.py --stamp-licences [--name lite]   # LICENCES into the bundled spec, tensors kept

The spec gets the model's name, how it runs by default (``inference``: reference detail, LR-consistency), where
its weights come from and what it saw (``training``), the benchmark's numbers (``metrics``; ``--bench``: the
``--json`` of ``bench/bench_backbone.py``) and the golden gains on the bundled sample that
``tests/test_lite_model.py`` holds the shipped weights to (``sample_gain_db``, measured here on the packaged file).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from geosr.models.backbone_checkpoint import load_backbone, save_backbone

WEIGHTS = Path(__file__).resolve().parents[1] / "geosr" / "weights"
SOURCES = [
    "initial weights: SAFMN (NTIRE 2023 ESR, x4, DIV2K + Flickr2K), github.com/sunny2109/SAFMN, Apache-2.0",
    "fine-tuning: RSSCN7 (github.com/palewithout/RSSCN7; 2,800 Google Earth images; licence not stated, "
    "training only), every 100th image held out for validation",
    "fine-tuning: the training split of ../shared/data (scripts/shared_data.json; LEVIR-CD, DSIFN-CD, Landsat "
    "Nanjing; research licences, training only)",
]

# the terms of the weights and of what they were trained on, as `geosr models` shows them (the spec's licences)
LICENCES = ("Weights: for non-commercial research only, as part of the fine-tuning data is. Initial weights: SAFMN "
            "(Apache-2.0; trained on DIV2K and Flickr2K, academic research use). Fine-tuning data (none of it copied "
            "into geosr): RSSCN7 (licence not stated; training only); LEVIR-CD (academic use; Google Earth imagery) "
            "through the UCD-SCM copy (non-commercial research only) and the BIT_CD copy (BSD-2); DSIFN-CD "
            "(non-commercial research only) through the ChangeFormer copy (MIT); Landsat TM Nanjing 2000/2002 "
            "(Landsat public domain; repo MIT)")


def stamp_licences(name: str) -> Path:
    """Write LICENCES into the bundled model ``name``'s spec and its ``.json``, its tensors unchanged."""
    path = WEIGHTS / f"{name}.safetensors"
    net, spec = load_backbone(path)
    spec["training"] = {**spec.get("training", {}), "licences": LICENCES}
    return save_backbone(net, path, sidecar=True, **spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--stamp-licences", action="store_true",
                    help="write LICENCES into the bundled model's spec (its weights unchanged) and stop")
    ap.add_argument("--name", default="lite")
    ap.add_argument("--bench", type=Path)
    ap.add_argument("--reference-detail", action="store_true")
    ap.add_argument("--lr-consistency", default="off", choices=("off", "box", "bicubic"))
    args = ap.parse_args()
    if args.stamp_licences:
        print(f"stamped {stamp_licences(args.name)}")
        return
    if args.checkpoint is None:
        ap.error("--checkpoint is required (or --stamp-licences)")
    net, spec = load_backbone(args.checkpoint)
    inference: dict = {"reference_detail": {"sigma": 8.0} if args.reference_detail else False,
                       "lr_consistency": False if args.lr_consistency == "off" else {"operator": args.lr_consistency}}
    training = {**spec.get("training", {}), "sources": SOURCES, "licences": LICENCES,
                "degradations": "blind mix: antialiased bicubic, bicubic without antialiasing, box, Gaussian PSF "
                                "(sigma 0.3-0.7 LR px, sub-pixel shifts), noise, JPEG "
                                "(geosr.training.sensor_degradations)"}
    if "experts" in training:  # scripts/combine_experts.py: each expert's own degradations, mixed per scene
        training["degradations"] = "; ".join(
            f"{name}: {', '.join(e.get('config', {}).get('kinds') or ['the blind mix above'])}"
            for name, e in training["experts"].items()) + (" (" + training["degradations"] + "), mixed per scene by "
                                                           "the sharpness code (geosr.models.backbone_experts)")
        if "config" in training:  # the expert backbone itself trained on (scripts/train_backbone.py --init EXPERTS)
            kinds = training["config"].get("kinds") or ["the blind mix"]
            training["degradations"] += (f"; then trained together for {training.get('steps', '?')} steps on "
                                         f"{', '.join(kinds)}, each crop routed to the experts its code mixes")
    metrics: dict = {}
    if args.bench:
        bench = json.loads(args.bench.read_text())
        metrics["benchmark"] = ("python bench/bench_backbone.py (held-out images of ../shared/data, 5; "
                                f"{bench['threads']} threads)")
        if "quality" in bench:
            metrics["heldout_gain_db_over_bicubic"] = bench["quality"]
        speed = {**bench.get("speed", {}), **{f"cli_{k}": v for k, v in bench.get("cli", {}).items()}}
        if speed:
            metrics[f"speed_s_per_output_mp_{bench['threads']}_threads"] = speed
    # the scales it was trained for, as its run claimed them (not every head of its network; found in review)
    fields = dict(name=args.name, sidecar=True, inference=inference, training=training,
                  scales=spec.get("scales", list(net.cfg.scales)))
    out = save_backbone(net, WEIGHTS / f"{args.name}.safetensors", **fields, metrics=metrics)
    metrics["sample_gain_db"] = sample_gains(out)
    metrics["sample_note"] = ("PSNR-Y gain over bicubic on the bundled Landsat sample (x16: its 2x2 average against "
                              "the 30 m truth)")
    save_backbone(net, out, **fields, metrics=metrics)
    print(f"wrote {out}: sample gains {metrics['sample_gain_db']}")


def sample_gains(model: Path) -> dict[str, float]:
    """PSNR-Y gain over bicubic of ``model`` on the bundled sample at x2, x4, x8, x16 (:func:`sample_gain`)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return {str(s): round(sample_gain(str(model), s, Path(tmp)), 3) for s in (2, 4, 8, 16)}


def sample_gain(model: str, scale: int, tmp: Path) -> float:
    """PSNR-Y gain over bicubic of ``model`` on the bundled sample at ``scale``, against the 30 m truth brought to
    the output grid (2 x 2 average; x16's output averaged onto the truth). The golden test measures the same."""
    import numpy as np
    import rasterio
    import torch
    import torch.nn.functional as F

    from geosr import upscale
    from geosr.sample_scene import sample_paths
    from geosr.training.metrics import psnr_y

    def read(path: Path) -> torch.Tensor:
        with rasterio.open(path) as ds:
            return torch.from_numpy(ds.read().astype(np.float32) / 255)

    p = sample_paths()
    truth = read(p["truth"])  # 30 m: the LR (240 m) x8
    sr = {m: read(upscale(p["lr"], output=tmp / f"{i}_{scale}.tif", scale=scale, model=m, overwrite=True).output)
          for i, m in enumerate((model, "bicubic"))}
    if scale <= 8:
        f = 8 // scale
        target = F.avg_pool2d(truth[None], f)[0] if f > 1 else truth
    else:
        target, sr = truth, {m: F.avg_pool2d(v[None], 2)[0] for m, v in sr.items()}
    return psnr_y(sr[model], target) - psnr_y(sr["bicubic"], target)

if __name__ == "__main__":
    main()
