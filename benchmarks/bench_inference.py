"""Benchmark: inference seconds per frame (1, 2, 3 Euler steps) and the memory of one window.

The model is the tiny preset (random weights: the speed of the architecture at tiny width, not of
SVD) with a video window of 32 frames.  Each measurement runs in a fresh process so that the peak
resident memory (``ru_maxrss``) belongs to that window alone; on CUDA the peak allocated GPU memory
is reported as well.

    .venv/bin/python benchmarks/bench_inference.py
    .venv/bin/python benchmarks/bench_inference.py --height 128 --width 224 --frames 32 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time


def one(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from dav_builder.model.config import ModelConfig
    from dav_builder.model.predictor import VideoDepthPredictor
    from dav_builder.model.video_depth import DepthAnyVideo

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = DepthAnyVideo.build(ModelConfig(window=32))
    pred = VideoDepthPredictor(model, device=args.device, steps=args.steps)
    rgb = (np.random.default_rng(0).random((args.frames, args.height, args.width, 3)) * 255).astype(np.uint8)
    pred(rgb[:2])  # warm-up (first-call allocations, lazy inits)
    if pred.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        pred(rgb, seed=1)
        if pred.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"steps": args.steps, "frames": args.frames, "size": f"{args.height}x{args.width}",
           "s_per_frame": [round(t / args.frames, 4) for t in times], "peak_rss_mib": round(peak / 1024, 1),
           "rss_growth_mib": round((peak - before) / 1024, 1), "device": pred.device}
    if pred.device.startswith("cuda"):
        out["cuda_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--height", type=int, default=128)
    ap.add_argument("--width", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default=None)
    ap.add_argument("--steps", type=int, default=0, help="one setting (internal); 0 = 1, 2 and 3 in fresh processes")
    args = ap.parse_args()
    if args.steps:
        print(json.dumps(one(args)))
        return
    print(f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"{args.frames} frames of {args.height}x{args.width}, {args.threads} thread(s)")
    for steps in (1, 2, 3):
        cmd = [sys.executable, __file__, "--steps", str(steps)] + [
            f"--{k}={v}" for k, v in vars(args).items() if k != "steps" and v is not None]
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        spf = res["s_per_frame"]
        print(f"steps {steps}: {statistics.median(spf):.4f} s/frame (runs {min(spf):.4f}-{max(spf):.4f}), "
              f"peak RSS {res['peak_rss_mib']} MiB (+{res['rss_growth_mib']} MiB for the window)"
              + (f", CUDA peak {res['cuda_peak_mib']} MiB" if "cuda_peak_mib" in res else ""))


if __name__ == "__main__":
    main()
