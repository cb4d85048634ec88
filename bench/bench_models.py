"""Benchmarks of the diffusion models (kept short: a few repetitions).

    python bench/bench_models.py                       # everything, CPU, paper at 512^2 skipped
    python bench/bench_models.py --parts forward --configs tiny,small --sizes 128,256,512
    python bench/bench_models.py --parts compare,seam --device cuda --run-paper-sampler

Parts:
  forward  seconds per network evaluation (NFE) and peak memory, per config and window size; each
           measurement runs in its own process so its peak memory is its own (CPU: peak RSS and its rise
           during the forward; CUDA: max allocated)
  nfe      network evaluations per sampler preset
  compare  seconds per 256^2 window, geosr's default config + default sampler against the paper config +
           the paper's sampler (256 Heun steps with churn, 511 NFE). On CPU the paper sampler is
           extrapolated from one measured NFE (hours per window); --run-paper-sampler runs it for real.
  seam     seam score (squared gradient across window cuts over the squared gradient elsewhere; 1 = no
           seam) of a row of overlapping windows, with and without overlap fusion, for a tiny model
           trained for a few hundred steps on real imagery (../shared/data LEVIR-CD when present,
           synthetic fields otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geosr.config import SamplerConfig  # noqa: E402
from geosr.models.configs import CONFIGS, DEFAULT_CONFIG  # noqa: E402
from geosr.models.diffusion import DiffusionSuperResolver  # noqa: E402
from geosr.models.edm import build_denoiser, edm_loss  # noqa: E402
from geosr.models.interface import ConditionBatch  # noqa: E402
from geosr.models.resample import upsample  # noqa: E402
from geosr.models.unet import make_condition  # noqa: E402
from geosr.sampling.fusion import mosaic, seam_score  # noqa: E402
from geosr.sampling.schedules import PRESETS  # noqa: E402

MAP_CLASSES = {"tiny": 8, "small": 8, "paper": 0}
DATA = ROOT.parent / "shared" / "data" / "levir_cd" / "bitcd_samples"


def say(text: str) -> None:
    print(text, flush=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _inputs(cfg, size: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    cond = make_condition(
        torch.rand(1, cfg.n_bands, size, size, generator=g) * 2 - 1,
        torch.rand(1, cfg.n_bands, size, size, generator=g) * 2 - 1,
        torch.ones(1, 1, size, size),
        torch.randint(0, cfg.n_change_classes, (1, 1, size, size), generator=g),
        n_change_classes=cfg.n_change_classes,
        map_ids=torch.randint(0, cfg.n_map_classes, (1, 1, size, size), generator=g) if cfg.n_map_classes else None,
        n_map_classes=cfg.n_map_classes,
    )
    x = torch.randn(1, cfg.n_bands, size, size, generator=g)
    fmt = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    cond = cond.map_fn(lambda t: t.to(device).contiguous(memory_format=fmt))
    return x.to(device).contiguous(memory_format=fmt), cond


def forward_child(config: str, size: int, reps: int, device_name: str) -> dict:
    """One measurement (run in a fresh process)."""
    import psutil

    device = torch.device(device_name)
    model = build_denoiser(config, n_map_classes=MAP_CLASSES.get(config, 0)).eval().to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    x, cond = _inputs(model.cfg, size, device)
    if device.type == "cuda":
        autocast = torch.autocast("cuda", dtype=torch.bfloat16)
    else:
        autocast = torch.autocast("cpu", enabled=False)
    rss_before = psutil.Process().memory_info().rss
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    with torch.inference_mode(), autocast:
        t0 = time.perf_counter()
        prepared = model.prepare(cond)
        _sync(device)
        t_prep = time.perf_counter() - t0
        cpu_times = []
        for _ in range(reps):
            t0, c0 = time.perf_counter(), time.process_time()
            model(x, torch.ones(1, device=device), prepared=prepared)
            _sync(device)
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
    out = {
        "config": config,
        "size": size,
        "device": device_name,
        "threads": torch.get_num_threads(),
        "reps": reps,
        "first_s": times[0],
        "nfe_s": statistics.median(times[1:]) if len(times) > 1 else times[0],
        "nfe_cpu_s": statistics.median(cpu_times[1:]) if len(cpu_times) > 1 else cpu_times[0],
        "guidance_s": t_prep,
    }
    if device.type == "cuda":
        out["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        out["peak_rss_mb"] = peak / 2**20
        out["forward_rise_mb"] = max(0, peak - rss_before) / 2**20
    return out


def run_forward(configs, sizes, reps, device, skip_paper_512) -> list[dict]:
    rows = []
    for config in configs:
        for size in sizes:
            if config == "paper" and size >= 512 and skip_paper_512:
                rows.append({"config": config, "size": size, "skipped": "too slow on CPU (about 6 minutes per NFE)"})
                say(f"forward {config} {size}: skipped")
                continue
            n = 1 if (config == "paper" and device == "cpu" and size >= 256) else reps
            threads = str(torch.get_num_threads())
            cmd = [sys.executable, __file__, "--_child", config, str(size), str(n), device, threads]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            row = json.loads(res.stdout.strip().splitlines()[-1])
            rows.append(row)
            mem = row.get("peak_mb") or row.get("peak_rss_mb")
            say(
                f"forward {config} {size}: {row['nfe_s']:.3f} s/NFE (cpu {row['nfe_cpu_s']:.3f} s, "
                f"first {row['first_s']:.3f} s), "
                f"guidance {row['guidance_s']:.3f} s, peak {mem:.0f} MB"
            )
    return rows


def run_nfe() -> dict:
    out = {name: {"steps": p.steps, "nfe": p.nfe, "churn": p.churn, "start": p.start} for name, p in PRESETS.items()}
    for name, row in out.items():
        say(f"nfe {name}: {row['nfe']} ({row['steps']} Heun steps, churn {row['churn']}, start {row['start']})")
    return out


def _window_batch(cfg, size: int, scale: int = 8) -> ConditionBatch:
    g = torch.Generator().manual_seed(0)
    h = size // scale
    return ConditionBatch(
        lr=torch.rand(1, cfg.n_bands, h, h, generator=g) * 2 - 1,
        lr_valid=torch.ones(1, 1, h, h),
        ref=torch.rand(1, cfg.n_bands, size, size, generator=g) * 2 - 1,
        ref_valid=torch.ones(1, 1, size, size),
        change=torch.randint(0, cfg.n_change_classes, (1, 1, size, size), generator=g),
        changed=torch.zeros(1, 1, size, size),
        map=torch.randint(0, cfg.n_map_classes, (1, 1, size, size), generator=g) if cfg.n_map_classes else None,
        offsets=torch.zeros(1, 2, dtype=torch.long),
        scale=scale,
        halo=0,
        n_change_classes=cfg.n_change_classes,
        n_map_classes=cfg.n_map_classes,
    )


def run_compare(device: str, forward_rows: list[dict], run_paper: bool, configs=None) -> dict:
    size = 256
    out = {"size": size, "device": device}
    for config in configs or list(dict.fromkeys([DEFAULT_CONFIG, "tiny", "small"])):
        model = build_denoiser(config, n_map_classes=MAP_CLASSES.get(config, 0))
        sr = DiffusionSuperResolver(model, {}, sampler=SamplerConfig(preset="default"), device=device)
        batch = _window_batch(model.cfg, size)
        sr(_window_batch(model.cfg, 64), seed=0)  # warm-up
        t0 = time.perf_counter()
        sr(batch, seed=0)
        _sync(torch.device(device))
        out[f"{config}+default"] = {"seconds": time.perf_counter() - t0, "nfe": sr.nfe(), "measured": True}
        secs = out[f"{config}+default"]["seconds"]
        say(f"compare {config} + default sampler ({sr.nfe()} NFE): {secs:.2f} s per {size}^2 window")
    paper_nfe = PRESETS["paper"].nfe
    if run_paper:
        model = build_denoiser("paper")
        sr = DiffusionSuperResolver(model, {}, sampler=SamplerConfig(preset="paper"), device=device)
        batch = _window_batch(model.cfg, size)
        t0 = time.perf_counter()
        sr(batch, seed=0)
        _sync(torch.device(device))
        out["paper+paper"] = {"seconds": time.perf_counter() - t0, "nfe": paper_nfe, "measured": True}
    else:
        measured = [r for r in forward_rows if r.get("config") == "paper" and r.get("size") == size and "nfe_s" in r]
        row = measured[0] if measured else None
        if row is None:
            row = forward_child("paper", size, 1, device)
        secs = row["guidance_s"] + paper_nfe * row["nfe_s"]
        out["paper+paper"] = {"seconds": secs, "nfe": paper_nfe, "measured": False, "nfe_s": row["nfe_s"]}
    p = out["paper+paper"]
    how = "measured" if p["measured"] else f"extrapolated: {paper_nfe} x {p['nfe_s']:.1f} s per NFE"
    say(f"compare paper + paper sampler ({paper_nfe} NFE): {p['seconds']:.0f} s per {size}^2 window ({how})")
    for key, row in out.items():
        if isinstance(row, dict) and key != "paper+paper" and "seconds" in row:
            row["paper_over_this"] = p["seconds"] / row["seconds"]
            say(f"compare ratio paper+paper / {key}: {row['paper_over_this']:.0f}x")
    return out


# -- seams -------------------------------------------------------------------------------------------------
def _images() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(HR, Ref, change) triples in model space: LEVIR-CD pairs when present, synthetic fields otherwise."""
    triples = []
    if DATA.is_dir():
        import numpy as np
        from PIL import Image

        for b in sorted((DATA / "B").glob("*.png")):
            a, lab = DATA / "A" / b.name, DATA / "label" / b.name
            if not (a.exists() and lab.exists()):
                continue
            def rgb(path: Path) -> torch.Tensor:
                arr = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
                return torch.from_numpy(arr).permute(2, 0, 1) / 127.5 - 1

            hr, ref = rgb(b), rgb(a)
            ch = torch.from_numpy((np.asarray(Image.open(lab).convert("L")) > 127).astype(np.int64))[None]
            triples.append((hr, ref, ch))
    if not triples:
        g = torch.Generator().manual_seed(0)
        yy, xx = torch.meshgrid(torch.linspace(0, 1, 256), torch.linspace(0, 1, 256), indexing="ij")
        for _ in range(6):
            f = torch.rand(3, 4, generator=g) * 30 + 2
            bands = [torch.sin(f[c, 0] * xx + f[c, 1] * yy) * torch.cos(f[c, 2] * xx - f[c, 3] * yy) for c in range(3)]
            hr = torch.stack(bands) * 0.8
            triples.append((hr, hr.roll(3, -1), torch.zeros(1, 256, 256, dtype=torch.long)))
    return triples


def _train_tiny(triples, steps: int, scale: int, seed: int = 0):
    torch.manual_seed(seed)
    model = build_denoiser("tiny", n_map_classes=0, style=False, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    crop, b = 64, 4
    losses = []
    for _ in range(steps):
        hr, ref, ch = [], [], []
        for _ in range(b):
            i = int(torch.randint(len(triples), (1,), generator=g))
            H, W = triples[i][0].shape[-2:]
            r, c = (int(torch.randint(0, n - crop + 1, (1,), generator=g)) for n in (H, W))
            hr.append(triples[i][0][:, r : r + crop, c : c + crop])
            ref.append(triples[i][1][:, r : r + crop, c : c + crop])
            ch.append(triples[i][2][:, r : r + crop, c : c + crop])
        hr, ref, ch = torch.stack(hr), torch.stack(ref), torch.stack(ch)
        lr = torch.nn.functional.avg_pool2d(hr, scale)
        cond = make_condition(upsample(lr, scale), ref, torch.ones(b, 1, crop, crop), ch, n_change_classes=2)
        loss = edm_loss(model, hr, cond, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return model.eval(), losses


def run_seam(
    steps: int, n_images: int, sampler_steps: int, overlaps: list[int], model_path: Path | None, scale: int = 8
) -> dict:
    from geosr.models.checkpoint import load_checkpoint, save_checkpoint

    win = 128
    triples = _images()
    if model_path is not None and model_path.exists():
        model, spec = load_checkpoint(model_path)
        train_s, steps = None, spec.get("training", {}).get("steps")
        say(f"seam: tiny model from {model_path} ({steps} training steps)")
    else:
        t0 = time.perf_counter()
        model, losses = _train_tiny(triples[n_images:] or triples, steps, scale)
        train_s = time.perf_counter() - t0
        first, last = statistics.mean(losses[:20]), statistics.mean(losses[-20:])
        say(f"seam: trained tiny for {steps} steps in {train_s:.0f} s (loss {first:.3f} -> {last:.3f})")
        if model_path is not None:
            save_checkpoint(model_path, model, {"training": {"steps": steps, "data": "bench seam"}}, sidecar=False)
    results = {"train_steps": steps, "train_s": train_s, "sampler_steps": sampler_steps, "by_overlap": {}}
    for overlap in overlaps:
        full_width = min(t[0].shape[-1] for t in triples[:n_images])
        offsets_cols = list(range(0, full_width - win + 1, win - overlap))[:3]
        width = offsets_cols[-1] + win
        n_win = len(offsets_cols)
        offsets = torch.tensor([[0, c] for c in offsets_cols])
        scores: dict[str, list[float]] = {"ground truth": [], "no fusion": [], "fusion": []}
        disagreement: dict[str, list[float]] = {"no fusion": [], "fusion": []}
        for hr, ref, ch in triples[:n_images]:
            hr, ref, ch = hr[:, :win, :width], ref[:, :win, :width], ch[:, :win, :width]
            cut = lambda t, starts=offsets_cols: torch.stack([t[:, :, c : c + win] for c in starts])  # noqa: E731
            lr = torch.nn.functional.avg_pool2d(hr[None], scale)[0]
            lr_w = torch.stack([lr[:, :, c // scale : (c + win) // scale] for c in offsets_cols])
            batch = ConditionBatch(
                lr=lr_w,
                lr_valid=torch.ones(n_win, 1, win // scale, win // scale),
                ref=cut(ref),
                ref_valid=torch.ones(n_win, 1, win, win),
                change=cut(ch),
                changed=cut(ch).float(),
                map=None,
                offsets=offsets,
                scale=scale,
                halo=0,
                n_change_classes=model.cfg.n_change_classes,
                n_map_classes=0,
            )
            gt, rows, cols = mosaic(cut(hr), offsets)
            scores["ground truth"].append(seam_score(gt, rows, cols))
            for label, fuse in (("no fusion", False), ("fusion", True)):
                sr = DiffusionSuperResolver(model, {}, sampler=SamplerConfig(steps=sampler_steps, fuse_overlaps=fuse))
                out = sr(batch, seed=0)
                img, rows, cols = mosaic(out, offsets)
                scores[label].append(seam_score(img, rows, cols))
                diffs = [out[i, :, :, win - overlap :] - out[i + 1, :, :, :overlap] for i in range(n_win - 1)]
                disagreement[label].append(float(torch.cat([d.flatten() for d in diffs]).pow(2).mean().sqrt()))
        row = {
            "windows": f"{n_win} x {win}^2 at x{scale}, overlap {overlap} px, hard cut in the middle of each overlap",
            "seam_score": {k: statistics.mean(v) for k, v in scores.items()},
            "seam_score_per_image": scores,
            "overlap_rms_disagreement": {k: statistics.mean(v) for k, v in disagreement.items()},
        }
        results["by_overlap"][overlap] = row
        for k, v in row["seam_score"].items():
            per = ", ".join(f"{s:.2f}" for s in scores[k])
            say(f"seam overlap {overlap}: score {k}: {v:.2f} (per image {per})")
        for k, v in row["overlap_rms_disagreement"].items():
            say(f"seam overlap {overlap}: RMS disagreement of neighbouring windows in their overlap, {k}: {v:.4f}")
    return results


PARTS = ("forward", "nfe", "compare", "seam")  # what --parts may name


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_child":
        config, size, reps, device = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
        torch.set_num_threads(int(sys.argv[6]))
        print(json.dumps(forward_child(config, size, reps, device)))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="forward,nfe,compare,seam")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--sizes", default="128,256,512")
    ap.add_argument("--reps", type=int, default=3, help="timed forwards per measurement (the first is reported apart)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--full", action="store_true", help="also run the paper config at 512^2 on CPU")
    ap.add_argument("--run-paper-sampler", action="store_true", help="run the 511-NFE paper sampler, not extrapolate")
    ap.add_argument("--seam-steps", type=int, default=200, help="training steps of the tiny model for the seam part")
    ap.add_argument("--seam-images", type=int, default=3)
    ap.add_argument("--seam-sampler-steps", type=int, default=12)
    ap.add_argument("--seam-overlaps", default="16,64", help="overlaps (HR px) of the 128^2 windows")
    ap.add_argument("--seam-scale", type=int, default=8)
    ap.add_argument("--seam-model", type=Path, help="load the seam part's tiny model from here, or save it here")
    ap.add_argument("--threads", type=int, help="torch threads (1 gives steadier numbers on a shared machine)")
    ap.add_argument("--json", type=Path, help="write all results here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    parts = set(args.parts.split(","))
    unknown = sorted(parts - set(PARTS))
    if unknown:  # (a typo measured nothing and wrote an all but empty JSON; found in review)
        ap.error(f"--parts: unknown {', '.join(unknown)} (the parts: {', '.join(PARTS)})")
    results: dict = {"device": args.device, "threads": torch.get_num_threads(), "torch": torch.__version__}
    forward_rows: list[dict] = []
    if "forward" in parts:
        sizes = [int(s) for s in args.sizes.split(",")]
        skip = args.device == "cpu" and not args.full
        forward_rows = run_forward(args.configs.split(","), sizes, max(2, args.reps + 1), args.device, skip)
        results["forward"] = forward_rows
    if "nfe" in parts:
        results["nfe"] = run_nfe()
    if "compare" in parts:
        results["compare"] = run_compare(args.device, forward_rows, args.run_paper_sampler)
    if "seam" in parts:
        overlaps = [int(o) for o in args.seam_overlaps.split(",")]
        results["seam"] = run_seam(
            args.seam_steps, args.seam_images, args.seam_sampler_steps, overlaps, args.seam_model, args.seam_scale
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
