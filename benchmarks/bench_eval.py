"""Benchmark of the evaluation: (1) the official code's protocol next to the project's on the same
fixture, switch by switch; (2) seconds per frame of ``dav-train eval`` on a CPU with the tiny model.

(1) A ScanNet++ copy (tests/eval_fixtures.py, iPhone layout) of two clips (12 and 6 frames,
96 x 128) of a camera sliding sideways past a box 1.5 m away in front of a wall 4 m away, so that
the box hides part of the wall differently in every frame.  Two predictions are scored: the exact
disparity, and the exact disparity with a per-frame scale flicker, a shift, noise and blur (as a
model's output).  The official numbers come from benchmarks/official_protocol.py, a separate
re-implementation of the authors' ``eval_utils.py``; the project's from dav_builder.evaluation.

(2) The tiny model (random weights: speed does not depend on training) predicts and the paper's
protocol scores a 16-frame clip at 192 x 256.

    .venv/bin/python benchmarks/bench_eval.py [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

import eval_fixtures as fx  # noqa: E402
from official_protocol import official_scores  # noqa: E402

from dav_builder.evaluation.protocol import PRESETS, aggregate, score_clip, valid_mask  # noqa: E402
from dav_builder.evaluation.readers import open_benchmark  # noqa: E402
from dav_builder.model.metrics import evaluate_clip  # noqa: E402

SLIDE = 0.04
"""Metres the camera slides to the right per frame."""


def box_depth(t: int, h: int, w: int) -> np.ndarray:
    K = fx.scene_K(h, w)
    xs = (np.arange(w) - K[0, 2]) / K[0, 0]
    ys = (np.arange(h) - K[1, 2]) / K[1, 1]
    X = SLIDE * t + xs[None, :] * 1.5                  # where each ray meets the box's plane
    Y = np.broadcast_to(ys[:, None] * 1.5, (h, w))
    on_box = (X > -0.35) & (X < 0.15) & (Y > -0.25) & (Y < 0.3)
    return np.where(on_box, 1.5, 4.0).astype(np.float32)


def slide_pose(t: int) -> np.ndarray:
    p = np.eye(4)
    p[0, 3] = SLIDE * t
    return p


def predictions(seq, kind: str, seed: int) -> np.ndarray:
    disp = 1.0 / seq.depth
    if kind == "exact":
        return disp.astype(np.float32)
    rng = np.random.default_rng(seed)
    t = np.arange(len(disp))[:, None, None]
    out = disp * (1 + 0.15 * np.sin(1.3 * t)) + 0.02 * np.sin(t) + rng.normal(0, 0.01 * disp.mean(), disp.shape)
    return np.stack([cv2.GaussianBlur(f.astype(np.float32), (5, 5), 1.0) for f in out])


def compare(root: Path) -> list[dict]:
    fx.write_scannetpp(root, scenes=("box_a", "box_b"), n=(12, 6), rgb_hw=(96, 128), depth_hw=(96, 128),
                       depth_fn=box_depth, pose_fn=slide_pose)
    reader = open_benchmark("scannetpp", root, frames=0)
    info = reader.info
    seqs = [reader.load(i) for i in reader.items()]
    rows = []
    for kind in ("exact", "flicker+noise+blur"):
        preds = [predictions(s, kind, k) for k, s in enumerate(seqs)]
        masks = [valid_mask(s.depth, s.valid, info.min_depth, info.max_depth) for s in seqs]
        clips = [(p, s.depth, m, s.K, s.cam_to_world) for p, s, m in zip(preds, seqs, masks)]

        def project(proto):
            sc = [score_clip(s.name, p, s.depth, m, proto, info.min_depth, info.max_depth, s.K, s.cam_to_world)
                  for p, s, m in zip(preds, seqs, masks)]
            return aggregate(sc, proto.average).to_dict()

        rng = (info.min_depth, info.max_depth)
        paper = PRESETS["paper"]
        rows.append({"prediction": kind, "switch": "fit=frame (tae official)",
                     "official": official_scores(clips, rng, temporal_fit=False),
                     "project": project(paper.with_(fit="frame"))})
        rows.append({"prediction": kind, "switch": "fit=sequence (paper preset)",
                     "official": official_scores(clips, rng, temporal_fit=True), "project": project(paper)})
        rows.append({"prediction": kind, "switch": "tae=zbuffer", "official": None,
                     "project": project(paper.with_(tae="zbuffer"))})
        rows.append({"prediction": kind, "switch": "average=clip", "official": None,
                     "project": project(paper.with_(average="clip"))})
        rows.append({"prediction": kind, "switch": "caps=gt", "official": None,
                     "project": project(paper.with_(caps="gt"))})
        before = [evaluate_clip(p, s.depth, s.K, s.cam_to_world, max_depth=info.max_depth) for p, s in zip(preds, seqs)]
        rows.append({"prediction": kind, "switch": "before (model.metrics.evaluate_clip, per-clip means)",
                     "official": None, "project": {k: float(np.mean([getattr(b, k) for b in before]))
                                                   for k in ("abs_rel", "delta1", "tae")}})
    return rows


def timing(repeats: int) -> dict:
    import torch

    from dav_builder.evaluation.runner import predict_sequence
    from dav_builder.evaluation.sample import EvalSequence
    from dav_builder.model.config import ModelConfig
    from dav_builder.model.predictor import VideoDepthPredictor
    from dav_builder.model.video_depth import DepthAnyVideo

    torch.manual_seed(0)
    model = DepthAnyVideo.build(ModelConfig())
    h, w, n = 192, 256, 16
    depth = np.stack([fx.scene_depth(t, h, w) for t in range(n)])
    seq = EvalSequence("t", np.stack([fx.scene_rgb(t, h, w) for t in range(n)]), depth, np.ones(depth.shape, bool),
                       np.stack([fx.scene_K(h, w)] * n), np.stack([fx.scene_pose(t) for t in range(n)]))
    out = {}
    for steps, ens in ((1, 1), (3, 1), (1, 3)):
        pred = VideoDepthPredictor(model, "cpu", steps=steps, ensemble=ens)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            disp = predict_sequence(pred, seq, 256)
            score_clip("t", disp, depth, np.ones(depth.shape, bool), PRESETS["paper"], 1e-3, 10.0, seq.K,
                       seq.cam_to_world)
            times.append((time.perf_counter() - t0) / n)
        out[f"predict+score steps={steps} ensemble={ens}"] = [round(min(times), 4), round(max(times), 4)]
    disp = 1 / depth
    for tae in ("none", "official", "zbuffer"):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            score_clip("t", disp, depth, np.ones(depth.shape, bool), PRESETS["paper"].with_(tae=tae), 1e-3, 10.0,
                       seq.K, seq.cam_to_world)
            times.append((time.perf_counter() - t0) / n)
        out[f"score only, tae={tae}"] = [round(min(times), 4), round(max(times), 4)]
    return out


def fmt(v):
    return "-" if v is None else f"{v:.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = compare(Path(tmp) / "scannetpp")
    print("| prediction | switch | official AbsRel | project AbsRel | official δ1 | project δ1 | official TAE | project TAE |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        o, p = r["official"] or {}, r["project"]
        print(f"| {r['prediction']} | {r['switch']} | {fmt(o.get('abs_rel'))} | {fmt(p['abs_rel'])} | "
              f"{fmt(o.get('delta1'))} | {fmt(p['delta1'])} | {fmt(o.get('tae'))} | {fmt(p['tae'])} |")
    t = timing(args.repeats)
    print(f"\nseconds per frame (min, max of {args.repeats}), {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs:")
    for k, v in t.items():
        print(f"  {k}: {v[0]:.4f} - {v[1]:.4f}")
    if args.json:
        args.json.write_text(json.dumps({"compare": rows, "timing": t}, indent=1))


if __name__ == "__main__":
    main()
