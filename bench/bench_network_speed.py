"""The backbone networks alone, on CUDA or the CPU: seconds per output megapixel at x4, against RLFN's.

    python bench/bench_network_speed.py --reference-dir DIR [--device cuda] [--side 512] [--reps 7] [BACKBONE ...]

Times RLFN (public weights converted by ``scripts/convert_safmn.py`` into ``--reference-dir``), the `soft` expert of
the bundled ``lite`` and each BACKBONE checkpoint (e.g. a larger variant from ``scripts/train_backbone.py
--grow-blocks``) on one SIDE² noise LR (channels-last, batch 1), in fp32 and with bf16 autocast: medians of
``--reps`` interleaved runs after a warm-up, and the ratio to RLFN's in the same run. What the whole ``geosr upscale``
costs is ``bench/bench_backbone.py --parts cli`` (CPU) and ``bench/bench_cuda.py`` (CUDA). Needs no GDAL, so it runs
on a lent GPU machine from a checkout.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_nets import load_reference  # noqa: E402

from geosr.models.backbone_checkpoint import load_backbone  # noqa: E402
from geosr.models.registry import resolve_checkpoint  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("backbones", nargs="*", type=Path)
    ap.add_argument("--reference-dir", type=Path, required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--side", type=int, default=512, help="LR side in pixels")
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    dev = torch.device(args.device)
    nets: dict[str, torch.nn.Module] = {"rlfn": load_reference("rlfn", args.reference_dir)}
    lite, _ = load_backbone(resolve_checkpoint("lite"))
    nets["lite soft"] = lite.experts[lite.names.index("soft")] if hasattr(lite, "experts") else lite
    for p in args.backbones:
        nets[str(p)], _ = load_backbone(p)
    for net in nets.values():
        net.to(dev).eval().to(memory_format=torch.channels_last)
    x = torch.rand(1, 3, args.side, args.side, device=dev).contiguous(memory_format=torch.channels_last)
    x_model = (x * 2 - 1).contiguous(memory_format=torch.channels_last)  # geosr's backbones take model space
    mp = (4 * args.side) ** 2 / 1e6

    def run(name: str, net: torch.nn.Module, bf16: bool) -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            net(x) if name == "rlfn" else net(x_model, 4)  # RLFN takes [0, 1]
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    for bf16 in (False, True):
        times: dict[str, list[float]] = {k: [] for k in nets}
        for rep in range(args.reps + 1):  # interleaved; the first round warms up
            for k, net in nets.items():
                seconds = run(k, net, bf16)
                if rep:
                    times[k].append(seconds)
        base = statistics.median(times["rlfn"])
        for k, v in times.items():
            weights = sum(p.numel() for p in nets[k].parameters()) / 1e6
            print(f"{'bf16' if bf16 else 'fp32'} {k:40s} {weights:.3f} M weights  {statistics.median(v) / mp:.5f} "
                  f"s per output MP  ratio to RLFN {statistics.median(v) / base:.2f}", flush=True)
    if dev.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


if __name__ == "__main__":
    from geosr.errors import GeoSRError

    try:
        main()
    except (GeoSRError, FileNotFoundError) as exc:  # bad input: one sentence and exit 2, as the CLI's
        print(f"bench_network_speed: {exc}", file=sys.stderr)
        sys.exit(2)
