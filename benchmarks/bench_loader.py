"""Benchmark: does the trainer's data loader keep up with the model?

Measures (1) the loader alone: micro-batches per second read from the shards (random access,
frame dropout, decode, resize, normalise) with 0, 1 and 2 worker processes, and (2) training
steps per second of the tiny preset on the same batches.  The loader keeps up when its batches
per second exceed the trainer's steps per second (x grad_accum).

    .venv/bin/python benchmarks/bench_loader.py                 # builds the demo dataset first
    .venv/bin/python benchmarks/bench_loader.py --dataset demo-out/dataset --batches 60
    .venv/bin/python benchmarks/bench_loader.py --captures WORK/captures --depth-codec npy   # bench_build's captures
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from dav_builder.model.config import load_run_config
from dav_builder.model.data import MicroBatches, kept_clips, loader, split_train_val
from dav_builder.model.sampler import BucketBatchPlan


def demo_dataset(root: Path, codec: str = "npz", captures: Path | None = None) -> Path:
    """The demo dataset, or a dataset of ``captures`` with every clip kept (model-free checks
    off: the benchmark's own captures, e.g. bench_build.py's, need not pass them)."""
    from dav_builder.filters.stage import CHECKS
    from dav_builder.pipeline.build import build_dataset
    from dav_builder.pipeline.config import load_config
    from dav_builder.render.engine import RenderConfig, render_captures

    over: dict = {"run": {"executor": "local"}, "shards": {"depth_codec": codec}}
    if captures is None:
        captures = root / "captures"
        render_captures(captures, RenderConfig(scenes=3, frames=96, seed=0), progress=False)
    else:
        over["scoring"] = {name: {"enabled": False} for name in CHECKS}
    build_dataset([captures], root / "dataset", load_config(overrides=over), progress=False, say=lambda s: None)
    return root / "dataset"


def loader_rate(dataset: Path, cfg, workers: int, batches: int, multiple: int) -> float:
    tc = cfg.train
    train, _ = split_train_val(kept_clips(dataset), tc.val_fraction)
    plan = BucketBatchPlan(train, tc.batch_sizes, tc.batch_size, tc.seed)
    ds = MicroBatches(dataset, plan, tc.sample_frames, tc.max_frame_stride, tc.scale, multiple, tc.seed, batches + 4)
    it = iter(loader(ds, 0, workers))
    for _ in range(min(4, workers * 2 + 1)):  # warm-up: worker start, shard indexing
        next(it)
    t0, n = time.perf_counter(), 0
    for _ in it:
        n += 1
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, default=None)
    ap.add_argument("--captures", type=Path, default=None,
                    help="build the dataset from these captures (all clips kept) instead of the demo")
    ap.add_argument("--depth-codec", default="npz", choices=["npz", "npy"], help="codec of the dataset built here")
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--scale", type=float, default=None, help="train.scale (default: the tiny preset's)")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    dataset = args.dataset or demo_dataset(Path(tmp.name), args.depth_codec, args.captures)
    over = {"train": {"max_steps": args.steps, "num_workers": 1, "val_every": 0, "checkpoint_every": 10**6}}
    if args.scale is not None:
        over["train"]["scale"] = args.scale
    cfg = load_run_config(preset="tiny", overrides=over)
    from dav_builder.model.video_depth import DepthAnyVideo

    multiple = DepthAnyVideo.build(cfg.model).spatial_multiple
    report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
                         f"{torch.__version__}, threads {torch.get_num_threads()}",
              "batch_size": cfg.train.batch_size, "sample_frames": cfg.train.sample_frames, "scale": cfg.train.scale}
    for w in (0, 1, 2):
        report[f"loader_batches_per_s_{w}_workers"] = round(loader_rate(dataset, cfg, w, args.batches, multiple), 2)
    from dav_builder.model.train import train

    run = Path(tmp.name) / "run"
    t0 = time.perf_counter()
    result = train(dataset, run, cfg, progress=False, echo=lambda s: None)
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()][2:]  # skip warm-up steps
    report["train_steps_per_s"] = round(len(recs) / sum(r["step_s"] for r in recs), 2)
    report["train_data_wait_share"] = round(sum(r["data_s"] for r in recs) / sum(r["step_s"] for r in recs), 3)
    report["train_wall_s"] = round(time.perf_counter() - t0, 1)
    report["final_loss"] = result.losses[-1]
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
