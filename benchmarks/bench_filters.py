"""Benchmark: how well the model-free checks catch planted defects in engine captures.

Renders captures with planted defects (ground truth in defects.json), cuts 16-frame clips inside
shots (from segments.json), labels a clip defective when it overlaps a defect span, scores every
clip with the checks, then reports per check the recall of clips with that defect and the share
of clean clips it drops.  Thresholds are chosen on some seeds (``--tune-seeds``: per check the
lowest that drops at most ``--max-clean-drop`` of their clean clips, so that the four together
stay near 4 x that) and reported on others (``--seeds``, each seed and pooled).  Renders and
scores are kept in ``--work`` (scores keyed by the scoring code and config, so a change of
either scores again); ``--score-only`` fills that cache, e.g. in two processes at once.
``wrong_nearfar`` (a capture-wide metadata error) changes the metres but not the image
structure, so no model-free check can see it; it is reported as not covered.

    .venv/bin/python benchmarks/bench_filters.py --captures 10 --frames 128 --tune-seeds 100-113 --seeds 114-123
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from dav_builder.capture.dav import DavCapture
from dav_builder.clip import Clip, make_clip_id
from dav_builder.filters import checks as checks_module
from dav_builder.filters import stage as stage_module
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


def _code_key() -> str:
    """Changes whenever the scoring code or its defaults do, so cached scores are never stale."""
    h = hashlib.sha256(repr(ScoringConfig()).encode())
    for mod in (checks_module, stage_module):
        h.update(Path(mod.__file__).read_bytes())
    return h.hexdigest()[:16]


#: Taken once, right after the imports: the key names the code this process runs, even if the
#: files change on disk while it scores.
CODE_KEY = _code_key()


def score_set(seed: int, n: int, frames: int, work: Path) -> list[tuple[dict, dict[str, int]]]:
    """Renders seed ``seed`` (once) and scores its clips; the scores are cached beside the captures."""
    root = work / f"seed{seed}"
    done = root / ".rendered"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)  # a render cut off half-way
        cfg = RenderConfig(scenes=n, frames=frames, seed=seed, defects=tuple(DEFECT_CHECK), defect_rate=0.6)
        render_captures(root, cfg, progress=True)
        done.write_text(json.dumps({"scenes": n, "frames": frames}))
    cache = root / f".scores-{CODE_KEY}.json"
    if cache.exists():
        return [(s, lab) for s, lab in json.loads(cache.read_text())]
    stage = ScoringStage(ScoringConfig())
    rows = []
    for cap_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for clip, labels in clips_of(cap_dir):
            rows.append((stage._checks(clip), labels))
    cache.write_text(json.dumps(rows))
    return rows


def rates(rows, check: str, threshold: float, defect: str) -> tuple[float, float]:
    pos = [s[check] for s, lab in rows if defect in lab]
    clean = [s[check] for s, lab in rows if not lab]
    recall = float(np.mean([v > threshold for v in pos])) if pos else float("nan")
    fdr = float(np.mean([v > threshold for v in clean])) if clean else float("nan")
    return recall, fdr


def tune(rows, check: str, defect: str, max_clean_drop: float) -> float:
    """The lowest threshold (most recall) that drops at most ``max_clean_drop`` of the clean tuning clips."""
    values = sorted({float(f"{s[check]:.4g}") for s, _ in rows}, reverse=True)
    best = values[0] if values else 0.0
    for t in values:
        _, f = rates(rows, check, t, defect)
        if f > max_clean_drop:
            break
        best = t
    return best


def parse_seeds(text: str) -> list[int]:
    """``1,2,5`` or ``1-5`` (or both: ``1-3,7``)."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if "-" in part:
            a, b = part.split("-")
            out += list(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captures", type=int, default=10)
    ap.add_argument("--frames", type=int, default=128)
    ap.add_argument("--seeds", default="114-123", help="seeds to report on (pooled too): 1,2,5 or 1-5")
    ap.add_argument("--tune-seeds", default="100-113", help="seeds the thresholds are chosen on")
    ap.add_argument("--max-clean-drop", type=float, default=0.01,
                    help="share of clean tuning clips each check may drop")
    ap.add_argument("--score-only", action="store_true",
                    help="render and score (cached) the seeds given, print nothing else")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "dav-bench-filters")
    args = ap.parse_args()
    seeds, tune_seeds = parse_seeds(args.seeds), parse_seeds(args.tune_seeds)
    if set(seeds) & set(tune_seeds):
        ap.error(f"seeds {sorted(set(seeds) & set(tune_seeds))} are both tuned on and reported on")
    t0 = time.perf_counter()
    if args.score_only:
        for seed in tune_seeds + seeds:
            score_set(seed, args.captures, args.frames, args.work)
        print(f"scored seeds {args.tune_seeds} and {args.seeds} in {time.perf_counter() - t0:.0f} s")
        return
    tune_rows = [r for seed in tune_seeds for r in score_set(seed, args.captures, args.frames, args.work)]
    per_seed = {seed: score_set(seed, args.captures, args.frames, args.work) for seed in seeds}
    print(f"machine: {platform.machine()}, python {platform.python_version()}; {time.perf_counter() - t0:.0f} s")
    chosen = {check: tune(tune_rows, check, defect, args.max_clean_drop) for defect, check in DEFECT_CHECK.items()}
    groups = [(f"tuning seeds {args.tune_seeds}", tune_rows)]
    groups += [(f"seed {seed}", rows) for seed, rows in per_seed.items()]
    if len(seeds) > 1:
        groups.append((f"seeds {args.seeds} pooled", [r for rows in per_seed.values() for r in rows]))
    for name, test_rows in groups:
        print(f"\n== {name}: {len(test_rows)} clips, {sum(1 for _, lab in test_rows if not lab)} clean")
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
