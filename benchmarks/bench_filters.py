"""Benchmark: how well the model-free checks catch planted defects in engine captures.

Renders captures with planted defects (ground truth in defects.json), cuts 16-frame clips inside
shots (from segments.json), labels a clip defective when it overlaps a defect span, scores every
clip with the checks, then reports per check the recall of clips with that defect and the share
of clean clips it drops.  Thresholds are chosen on one seed (``--tune-seed``) and reported on
others (``--seeds``, each seed and pooled).  ``wrong_nearfar`` (a capture-wide metadata error) changes the metres but
not the image structure, so no model-free check can see it; it is reported as not covered.

    .venv/bin/python benchmarks/bench_filters.py --captures 10 --frames 128 --seeds 101,102,103
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from dav_builder.capture.dav import DavCapture
from dav_builder.clip import Clip, make_clip_id
from dav_builder.filters.config import ScoringConfig
from dav_builder.filters.stage import CHECKS, ScoringStage
from dav_builder.render.engine import RenderConfig, render_captures

DEFECT_CHECK = {"misaligned": "edge_misalignment", "depth_lag": "depth_lag", "frozen_depth": "frozen_depth",
                "hud": "static_overlay"}
CLIP_LEN = 16
MIN_AFFECTED = 4


def clips_of(cap_dir: Path) -> list[tuple[Clip, dict[str, int]]]:
    cap = DavCapture(cap_dir)
    infos = [f for f in cap.frames()]
    segments = json.loads((cap_dir / "segments.json").read_text())
    defects = [d for d in json.loads((cap_dir / "defects.json").read_text()) if d["type"] != "wrong_nearfar"]
    out = []
    for seg in segments:
        if seg["type"] != "shot":
            continue
        for a in range(seg["first_frame"], seg["last_frame"] + 1 - CLIP_LEN + 1, CLIP_LEN):
            b = a + CLIP_LEN - 1
            frames = [cap.read_frame(infos[i]) for i in range(a, b + 1)]
            labels = {}  # defect type -> frames of the clip it affects
            for d in defects:
                n = min(b, d["last_frame"]) - max(a, d["first_frame"]) + 1
                if n > 0:
                    labels[d["type"]] = labels.get(d["type"], 0) + n
            poses = [f.info.cam_to_world for f in frames]
            clip = Clip(
                clip_id=make_clip_id(cap.id, a, CLIP_LEN), capture=cap.id, frame_indices=list(range(a, b + 1)),
                fps=cap.fps, height=cap.height, width=cap.width, rgb=[f.rgb_bytes for f in frames], rgb_ext="png",
                depth=np.stack([f.depth for f in frames]), K=np.stack([f.info.K for f in frames]),
                cam_to_world=None if any(p is None for p in poses) else np.stack(poses),
                rgb_small=np.stack([f.rgb_small for f in frames]))
            out.append((clip, labels))
    return out


def score_set(seed: int, n: int, frames: int, work: Path) -> list[tuple[dict, dict[str, int]]]:
    root = work / f"seed{seed}"
    if not (root / "capture000" / "capture.json").exists():
        cfg = RenderConfig(scenes=n, frames=frames, seed=seed, defects=tuple(DEFECT_CHECK), defect_rate=0.6)
        render_captures(root, cfg, progress=True)
    stage = ScoringStage(ScoringConfig())
    rows = []
    for cap_dir in sorted(root.iterdir()):
        for clip, labels in clips_of(cap_dir):
            rows.append((stage._checks(clip), labels))
    return rows


def rates(rows, check: str, threshold: float, defect: str) -> tuple[float, float]:
    pos = [s[check] for s, lab in rows if defect in lab]
    clean = [s[check] for s, lab in rows if not lab]
    recall = float(np.mean([v > threshold for v in pos])) if pos else float("nan")
    fdr = float(np.mean([v > threshold for v in clean])) if clean else float("nan")
    return recall, fdr


def tune(rows, check: str, defect: str, max_clean_drop: float = 0.05) -> float:
    """The lowest threshold (most recall) that drops at most ``max_clean_drop`` of the clean tuning clips."""
    values = sorted({float(f"{s[check]:.4g}") for s, _ in rows}, reverse=True)
    best = values[0] if values else 0.0
    for t in values:
        _, f = rates(rows, check, t, defect)
        if f > max_clean_drop:
            break
        best = t
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captures", type=int, default=12)
    ap.add_argument("--frames", type=int, default=128)
    ap.add_argument("--seeds", default="101", help="comma-separated seeds to report on (pooled too)")
    ap.add_argument("--tune-seed", type=int, default=100)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "dav-bench-filters")
    args = ap.parse_args()
    seeds = [int(x) for x in args.seeds.split(",") if x]
    t0 = time.perf_counter()
    tune_rows = score_set(args.tune_seed, args.captures, args.frames, args.work)
    per_seed = {seed: score_set(seed, args.captures, args.frames, args.work) for seed in seeds}
    print(f"machine: {platform.machine()}, python {platform.python_version()}; {time.perf_counter() - t0:.0f} s")
    chosen = {check: tune(tune_rows, check, defect) for defect, check in DEFECT_CHECK.items()}
    groups = [(str(seed), rows) for seed, rows in per_seed.items()]
    if len(seeds) > 1:
        groups.append(("pooled", [r for rows in per_seed.values() for r in rows]))
    for name, test_rows in groups:
        print(f"\n== seed {name}: {len(test_rows)} clips, {sum(1 for _, lab in test_rows if not lab)} clean")
        print(f"{'defect':14s} {'check':18s} {'threshold':>9s} {'recall':>7s} {'clean dropped':>13s} {'n':>4s}")
        for defect, check in DEFECT_CHECK.items():
            r, f = rates(test_rows, check, chosen[check], defect)
            n = sum(1 for _, lab in test_rows if defect in lab)
            print(f"{defect:14s} {check:18s} {chosen[check]:9.4g} {r:7.1%} {f:13.1%} {n:4d}")
        # all checks together with the chosen thresholds
        flagged = [(any(s[c] > chosen[c] for c in CHECKS), lab) for s, lab in test_rows]
        bad = [f for f, lab in flagged if lab]
        clean = [f for f, lab in flagged if not lab]
        print(f"all checks: {np.mean(bad):.1%} ({sum(bad)} of {len(bad)}) defective clips caught, "
              f"{np.mean(clean):.1%} ({sum(clean)} of {len(clean)}) clean clips dropped")
        heavy = [f for f, lab in flagged if lab and max(lab.values()) >= MIN_AFFECTED]
        print(f"  of which clips with at least {MIN_AFFECTED} of {CLIP_LEN} frames affected: {np.mean(heavy):.1%} of "
              f"{len(heavy)} caught (the others touch a defect for 1 to {MIN_AFFECTED - 1} frames)")
    print("thresholds: " + json.dumps(chosen))


if __name__ == "__main__":
    main()
