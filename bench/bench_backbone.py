"""The LR-space backbone against bicubic and the public efficient-SR networks, under four degradations.

    python bench/bench_backbone.py --backbone ckpt.safetensors [--reference-dir DIR] [--scales 4] [--json out.json]
    python bench/bench_backbone.py --parts speed --backbone ckpt.safetensors [--threads 1]

Parts:
  quality  PSNR-Y (BT.601, ``scale`` pixels of border shaved) gain over bicubic of every network on the
           held-out images of ../shared/data (``scripts/shared_data.json``'s held-out split, the targets), the LR
           made by each of ``geosr.training.sensor_degradations.NAMED``. SAFMN and RLFN (x4 only) run from their
           public weights converted by ``scripts/convert_safmn.py`` into ``--reference-dir``; skipped without it.
  speed    seconds per output megapixel of each network on one 256 x 256 LR image, interleaved, medians of
           ``--reps`` runs, and the ratio to RLFN's (on this machine, same threads). The backbone runs as geosr runs
           it on a CPU (channels-last tensors, fused inference convolutions); SAFMN and RLFN as published, on
           channels-last tensors too (their faster layout here; until 2026-12-02 they ran in the default one).
  shapes   the same for untrained backbones of smaller shapes (channels x blocks) on one 304² LR window, with RLFN's.
  cli      the same for the whole ``geosr upscale -x 4 --model BACKBONE`` on a 512 x 512 LR GeoTIFF (another side:
           ``--cli-side``), against bicubic through the CLI and RLFN's bare network on the whole image: uniform
           noise, and a real held-out image when ../shared/data has one that large; with ``--previous MODEL``
           that model through the CLI too (e.g. the shipped weights beside a candidate). Each rep starts one model
           later than the one before, so that no model is always timed right after the same one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))

from geosr.models.backbone_checkpoint import load_backbone  # noqa: E402
from geosr.models.resample import upsample  # noqa: E402
from geosr.training.metrics import psnr_y  # noqa: E402
from geosr.training.sensor_degradations import NAMED, degrade_named  # noqa: E402


def heldout_images(limit_side: int = 512) -> list[tuple[str, torch.Tensor]]:
    """(name, (3, H, W) [0, 1]) of the held-out targets, central crops of at most ``limit_side``."""
    from shared_data import shared_data_pairs

    out = []
    for p in shared_data_pairs(split="heldout"):
        t = p.target[:3].clamp(0, 1)
        h, w = t.shape[-2:]
        s = min(limit_side, h, w) // 16 * 16
        y, x = (h - s) // 2, (w - s) // 2
        out.append((p.name, t[:, y : y + s, x : x + s].contiguous()))
    return out


def networks(backbone: Path | None, reference_dir: Path | None, scale: int) -> dict:
    """name -> f(lr01 (1, 3, h, w)) -> sr01, for the networks available at ``scale``."""
    nets: dict = {"bicubic": lambda lr: upsample(lr, scale, "bicubic")}
    if backbone is not None:
        from geosr.models.consistency import back_project

        net, _ = load_backbone(backbone)
        net = net.eval().to(memory_format=torch.channels_last)  # as geosr runs it on a CPU (backbone_sr)
        if scale in net.cfg.scales:
            def fwd(lr: torch.Tensor, net: torch.nn.Module = net) -> torch.Tensor:
                return net(lr.contiguous(memory_format=torch.channels_last) * 2 - 1, scale)

            nets["backbone"] = lambda lr, fwd=fwd: (fwd(lr) + 1) / 2
            for op in ("box", "bicubic"):  # with LR-consistency by back-projection (geosr's --lr-consistency)
                nets[f"backbone+bp-{op}"] = lambda lr, fwd=fwd, op=op: (back_project(
                    fwd(lr), lr * 2 - 1, scale, operator=op) + 1) / 2
    if reference_dir is not None and scale == 4:
        from reference_nets import load_reference

        for name in ("safmn", "rlfn"):
            if (reference_dir / f"{name}_x4.safetensors").exists():
                # channels-last, as geosr runs its own network: 0.6x their time in the default layout on 2 threads
                ref = load_reference(name, reference_dir).to(memory_format=torch.channels_last)
                nets[name] = lambda lr, ref=ref: ref(lr.contiguous(memory_format=torch.channels_last))
    return nets


@torch.inference_mode()
def run_quality(backbone: Path | None, reference_dir: Path | None, scales: list[int]) -> dict:
    images = heldout_images()
    table: dict = {}
    for scale in scales:
        nets = networks(backbone, reference_dir, scale)
        for kind in NAMED:
            rows: dict[str, list[float]] = {n: [] for n in nets}
            for _, hr in images:
                lr = degrade_named(hr, scale, kind)[None]
                lr = (lr * 255).round() / 255  # stored as 8 bits, as every evaluation does
                crop = (slice(None), slice(scale, -scale), slice(scale, -scale))
                for name, f in nets.items():
                    sr = f(lr)[0].clamp(0, 1)
                    rows[name].append(psnr_y(sr[crop], hr[crop]))
            base = statistics.fmean(rows["bicubic"])
            table[f"x{scale} {kind}"] = {n: round(statistics.fmean(v) - base, 3) for n, v in rows.items()} | {
                "bicubic_psnr_y": round(base, 3)}
            print(f"x{scale} {kind:13s}", "  ".join(f"{n} {table[f'x{scale} {kind}'][n]:+.3f}" for n in nets),
                  f"(bicubic {base:.2f} dB, {len(images)} images)", flush=True)
    return table


def run_cli_speed(backbone: Path, reference_dir: Path | None, reps: int, side: int = 512,
                  previous: Path | None = None) -> dict:
    """Seconds per output megapixel of the whole ``geosr upscale -x 4 --model BACKBONE`` (read, windows, model,
    blending, COG) against bicubic through the same CLI and RLFN's bare network on the same image, interleaved.
    Two images: uniform noise (which no compressor shrinks: the COG's worst case) and, when ../shared/data is
    there, a real one (the first held-out image's central crop, 8 bits)."""
    import numpy as np

    images = {"noise": (np.random.default_rng(0).random((3, side, side)) * 200 + 20).astype(np.uint8)}
    try:
        real = heldout_images(side)[0][1]
        if min(real.shape[-2:]) >= side:
            images["real"] = (real * 255).round().to(torch.uint8).numpy()
    except Exception:  # no ../shared/data: the noise image only
        pass
    out = {name: _cli_speed(backbone, reference_dir, reps, arr, previous) for name, arr in images.items()}
    print("whole CLI, s per output MP:", out, flush=True)
    return out


def _cli_speed(backbone: Path, reference_dir: Path | None, reps: int, arr, previous: Path | None = None) -> dict:
    import tempfile

    import numpy as np
    import rasterio
    from affine import Affine

    from geosr import upscale

    nets = {k: v for k, v in networks(None, reference_dir, 4).items() if k == "rlfn"}
    times: dict[str, list[float]] = {"geosr-cli": [], "bicubic-cli": [], **({"previous-cli": []} if previous else {}),
                                     **{n: [] for n in nets}}
    side = arr.shape[-1]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "lr.tif"
        with rasterio.open(src, "w", driver="GTiff", width=side, height=arr.shape[-2], count=3, dtype="uint8",
                           crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 5000000)) as dst:
            dst.write(arr)
        lr = torch.from_numpy(arr.astype(np.float32) / 255)[None]
        names = list(times)
        for rep in range(reps):  # interleaved, each rep starting one later: none always follows the same one
            for name in names[rep % len(names):] + names[:rep % len(names)]:
                t0 = time.perf_counter()
                if name == "geosr-cli":
                    upscale(src, output=Path(tmp) / "o.tif", scale=4, model=str(backbone), overwrite=True)
                elif name == "previous-cli":
                    upscale(src, output=Path(tmp) / "p.tif", scale=4, model=str(previous), overwrite=True)
                elif name == "bicubic-cli":
                    upscale(src, output=Path(tmp) / "b.tif", scale=4, model="bicubic", overwrite=True)
                else:
                    with torch.inference_mode():
                        nets[name](lr)
                times[name].append(time.perf_counter() - t0)
    mp = arr.shape[-2] * arr.shape[-1] * 16 / 1e6
    out = {n: round(statistics.median(v) / mp, 3) for n, v in times.items() if v}
    if "rlfn" in out:
        out["geosr-cli_to_rlfn"] = round(out["geosr-cli"] / out["rlfn"], 3)
        if "previous-cli" in out:
            out["previous-cli_to_rlfn"] = round(out["previous-cli"] / out["rlfn"], 3)
    return out


@torch.inference_mode()
def run_speed(backbone: Path | None, reference_dir: Path | None, reps: int, side: int = 256) -> dict:
    nets = {k: v for k, v in networks(backbone, reference_dir, 4).items() if k != "bicubic"}
    lr = torch.rand(1, 3, side, side)
    times: dict[str, list[float]] = {n: [] for n in nets}
    for _ in range(reps):  # interleaved: the machine's load changes every network alike
        for name, f in nets.items():
            t0 = time.perf_counter()
            f(lr)
            times[name].append(time.perf_counter() - t0)
    mp = (side * 4) ** 2 / 1e6
    out = {n: round(statistics.median(v) / mp, 3) for n, v in times.items()}
    if "rlfn" in out:
        out |= {f"{n}_to_rlfn": round(out[n] / out["rlfn"], 3) for n in nets}
    print("s per output MP:", out, flush=True)
    return out


SHAPES = {"36x8": (36, 8, 2.0), "36x8-ffn1.33": (36, 8, 4 / 3), "32x8": (32, 8, 2.0), "32x8-ffn1.5": (32, 8, 1.5),
          "32x6": (32, 6, 2.0), "48x6": (48, 6, 2.0)}  # channels x blocks (-expansion): lite's shape and smaller ones


@torch.inference_mode()
def run_shapes(reference_dir: Path | None, reps: int, side: int = 304) -> dict:
    """Seconds per output MP of untrained backbones of other shapes (what a network shaped for the CPU would cost),
    on one ``side``² LR window as the pipeline runs it, beside RLFN's, interleaved."""
    from geosr.models.backbone import BackboneConfig, build_backbone

    nets = {}
    for name, (dim, blocks, ffn) in SHAPES.items():
        net = build_backbone(BackboneConfig(dim=dim, blocks=blocks, ffn=ffn, scales=(4,))).eval()
        net = net.to(memory_format=torch.channels_last)
        nets[name] = lambda lr, net=net: net(lr, 4)
    nets.update({k: v for k, v in networks(None, reference_dir, 4).items() if k == "rlfn"})
    lr = torch.rand(1, 3, side, side).contiguous(memory_format=torch.channels_last)
    times: dict[str, list[float]] = {n: [] for n in nets}
    for _ in range(reps):
        for name, f in nets.items():
            t0 = time.perf_counter()
            f(lr)
            times[name].append(time.perf_counter() - t0)
    out = {n: round(statistics.median(v) / ((side * 4) ** 2 / 1e6), 3) for n, v in times.items()}
    print(f"s per output MP on a {side}² LR window:", out, flush=True)
    return out


PARTS = ("quality", "speed", "shapes", "cli")  # what --parts may name


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="quality")
    ap.add_argument("--backbone", type=Path)
    ap.add_argument("--reference-dir", type=Path)
    ap.add_argument("--scales", default="4")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--cli-side", type=int, default=512, help="LR side of the images the `cli` part runs on")
    ap.add_argument("--previous", type=Path, help="the `cli` part also runs this model (e.g. the shipped one)")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result: dict = {"threads": torch.get_num_threads()}
    parts = args.parts.split(",")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:  # (a typo measured nothing and wrote an all but empty JSON; found in review)
        ap.error(f"--parts: unknown {', '.join(unknown)} (the parts: {', '.join(PARTS)})")
    if args.backbone is None and {"speed", "cli"} & set(parts):  # ("unknown model 'None'")
        ap.error("--parts speed and cli measure a backbone: give --backbone")
    if "quality" in parts:
        result["quality"] = run_quality(args.backbone, args.reference_dir, [int(s) for s in args.scales.split(",")])
    if "speed" in parts:
        result["speed"] = run_speed(args.backbone, args.reference_dir, args.reps)
    if "shapes" in parts:
        result["shapes"] = run_shapes(args.reference_dir, args.reps)
    if "cli" in parts:
        result["cli"] = run_cli_speed(args.backbone, args.reference_dir, args.reps, args.cli_side,
                                      args.previous)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
