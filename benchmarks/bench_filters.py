"""Benchmark: how well the model-free checks catch planted defects in engine captures.

Renders captures with planted defects (ground truth in defects.json), cuts 16-frame clips inside
shots (from segments.json), labels a clip defective when it overlaps a defect span (and
*materially* wrong when one of those frames has over 1 % of its pixels wrong, by the engine's
per-frame ``frame_wrong``), scores every clip with the checks, then reports per check the recall
of the clips with each defect and the share of clean clips it drops, and all checks together.
Thresholds are chosen on some seeds (``--tune-seeds``: together, so that all checks drop at most
``--max-clean-drop`` of their clean clips while catching as many defective ones as they can; or
with ``--per-check`` each alone at that share; never below a check's floor in ``FLOORS``) and
reported on others (``--seeds``, pooled; ``--per-seed`` for each).  Renders and scores are kept in
``--work`` (scores keyed by the scoring code and config, so a change of either scores again);
``--score-only`` fills that cache, e.g. in two processes at once.  ``wrong_nearfar`` (a wrong far
plane in the metadata) is not measured: it maps disparity affinely for OpenGL and Direct3D
buffers, so no relative check, nor the depth model's score (aligned in disparity), can see it.

    .venv/bin/python benchmarks/bench_filters.py --seeds 125-129,133-136,200-215
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

#: The planted defects measured, and the check designed for each (others may catch it too).
DEFECT_CHECK = {"misaligned": "edge_misalignment", "depth_lag": "depth_lag", "frozen_depth": "frozen_depth",
                "hud": "static_overlay"}
CLIP_LEN = 16
MIN_AFFECTED = 4
#: A defective clip is *materially* wrong when one of its defective frames has more than this share
#: of pixels wrong (depth more than 5 % off, or drawn over by the HUD: ``frame_wrong`` in defects.json).
MATERIAL = 0.01
#: Lowest threshold per check, whatever the tuning seeds allow: the engine's depth and poses are
#: exact, real captures' are not (depth in centimetres or float16, poses from a tracker), and a
#: pose check tuned to exact data would drop them all.
FLOORS = {"pose_misfit": 0.005}


def clip_spans(cap_dir: Path) -> list[tuple[int, int, dict[str, dict]]]:
    """The 16-frame clips cut inside the shots of a capture (``segments.json``): first and last
    frame, and per defect type overlapping it (``defects.json``) the frames it affects and the
    largest share of pixels wrong among them."""
    segments = json.loads((cap_dir / "segments.json").read_text())
    defects = [d for d in json.loads((cap_dir / "defects.json").read_text()) if d["type"] != "wrong_nearfar"]
    out = []
    for seg in segments:
        if seg["type"] != "shot":
            continue
        for a in range(seg["first_frame"], seg["last_frame"] + 1 - CLIP_LEN + 1, CLIP_LEN):
            b = a + CLIP_LEN - 1
            labels: dict[str, dict] = {}
            for d in defects:
                lo, hi = max(a, d["first_frame"]), min(b, d["last_frame"])
                if hi < lo:
                    continue
                wrong = d["params"].get("frame_wrong")  # per frame of the span; older renders lack it
                share = max(wrong[lo - d["first_frame"] : hi - d["first_frame"] + 1]) if wrong else 1.0
                lab = labels.setdefault(d["type"], {"frames": 0, "wrong": 0.0})
                lab["frames"] += hi - lo + 1
                lab["wrong"] = max(lab["wrong"], share)
            out.append((a, b, labels))
    return out


def clips_of(cap_dir: Path) -> list[Clip]:
    cap = DavCapture(cap_dir)
    infos = [f for f in cap.frames()]
    out = []
    for a, b, _ in clip_spans(cap_dir):
        frames = [cap.read_frame(infos[i]) for i in range(a, b + 1)]
        poses = [f.info.cam_to_world for f in frames]
        out.append(Clip(
            clip_id=make_clip_id(cap.id, a, CLIP_LEN), capture=cap.id, frame_indices=list(range(a, b + 1)),
            fps=cap.fps, height=cap.height, width=cap.width, rgb=[f.rgb_bytes for f in frames], rgb_ext="png",
            depth=np.stack([f.depth for f in frames]), K=np.stack([f.info.K for f in frames]),
            cam_to_world=None if any(p is None for p in poses) else np.stack(poses),
            rgb_small=np.stack([f.rgb_small for f in frames])))
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


Row = tuple[dict, dict]
"""One clip: its scores, and its labels (defect type -> frames affected and share wrong; {} = clean)."""


def score_set(seed: int, n: int, frames: int, work: Path) -> list[Row]:
    """Renders seed ``seed`` (once) and scores its clips; the scores are cached beside the captures
    (the labels are read from the ground truth each time)."""
    root = work / f"seed{seed}"
    done = root / ".rendered"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)  # a render cut off half-way
        cfg = RenderConfig(scenes=n, frames=frames, seed=seed, defects=tuple(DEFECT_CHECK), defect_rate=0.6)
        render_captures(root, cfg, progress=True)
        done.write_text(json.dumps({"scenes": n, "frames": frames}))
    caps = sorted(p for p in root.iterdir() if p.is_dir())
    labels = [lab for cap_dir in caps for _, _, lab in clip_spans(cap_dir)]
    cache = root / f".scores-{CODE_KEY}.json"
    if cache.exists():
        scores = json.loads(cache.read_text())
    else:
        stage = ScoringStage(ScoringConfig())
        scores = [stage._checks(clip) for cap_dir in caps for clip in clips_of(cap_dir)]
        cache.write_text(json.dumps(scores))
    assert len(scores) == len(labels), f"seed {seed}: {len(scores)} scores for {len(labels)} clips"
    return list(zip(scores, labels))


def _value(scores: dict, check: str) -> float:
    """A stored score; a null or NaN one (the check could not run) never drops a clip."""
    v = scores.get(check)
    return float("-inf") if v is None or np.isnan(v) else float(v)


def flagged(scores: dict, thresholds: dict[str, float]) -> list[str]:
    return [c for c, t in thresholds.items() if _value(scores, c) > t]


def round_up(t: float, digits: int = 4) -> float:
    """``t`` to ``digits`` significant digits, never below it: a threshold rounded down would drop
    the clean clip whose score it was set at."""
    if t <= 0:
        return max(t, 0.0)
    x = float(f"{t:.{digits}g}")
    if x < t:
        x = float(f"{x + 10.0 ** (np.floor(np.log10(t)) - digits + 1):.{digits}g}")
    return x


def tune(rows: list[Row], check: str, max_clean_drop: float) -> float:
    """The lowest threshold (most recall) that drops at most ``max_clean_drop`` of the clean tuning
    clips, and not below the check's :data:`FLOORS`."""
    clean = sorted((_value(s, check) for s, lab in rows if not lab), reverse=True)
    k = int(np.floor(max_clean_drop * len(clean)))  # clean clips it may drop: those above the threshold
    best = clean[k] if k < len(clean) else 0.0
    return max(round_up(best), FLOORS.get(check, 0.0))


def tune_jointly(rows: list[Row], checks: tuple[str, ...], max_clean_drop: float) -> dict[str, float]:
    """Thresholds chosen together: all checks together drop at most ``max_clean_drop`` of the clean
    tuning clips, and catch as many defective ones as they can.  Greedy: starting from thresholds
    that drop no clean clip, repeatedly lower the one threshold, to whichever lower value does
    best, that catches the most defective clips not yet caught per clean clip it newly drops (a
    clean clip another check already drops costs nothing), while the budget lasts.  A check's
    threshold never goes below its floor (:data:`FLOORS`)."""
    clean = [s for s, lab in rows if not lab]
    bad = [s for s, lab in rows if lab]
    values = {c: np.array([_value(s, c) for s in clean]) for c in checks}
    bad_values = {c: np.array([_value(s, c) for s in bad]) for c in checks}
    # each check's candidate thresholds: its clean scores above its floor, then the floor
    steps = {c: sorted({float(v) for v in values[c] if v > FLOORS.get(c, 0.0)}, reverse=True) + [FLOORS.get(c, 0.0)]
             for c in checks}
    thr = {c: steps[c][0] for c in checks}
    budget = int(np.floor(max_clean_drop * len(clean)))
    while True:
        dropped = np.any([values[c] > thr[c] for c in checks], axis=0)
        caught = np.any([bad_values[c] > thr[c] for c in checks], axis=0)
        best, best_key = None, (0.0, 0)
        for c in checks:
            cand = np.array([t for t in steps[c] if t < thr[c]])
            if cand.size == 0:
                continue
            # clean and defective clips each candidate would newly flag, all candidates at once
            cost = ((values[c][None, :] > cand[:, None]) & ~dropped).sum(1)
            gain = ((bad_values[c][None, :] > cand[:, None]) & ~caught).sum(1)
            for t, g, k in zip(cand, gain, cost):
                if g <= 0 or dropped.sum() + k > budget:
                    continue
                key = (float("inf") if k == 0 else g / k, int(g))
                if key > best_key:
                    best, best_key = (c, float(t)), key
        if best is None:
            return {c: round_up(t) for c, t in thr.items()}
        thr[best[0]] = best[1]


def is_material(lab: dict) -> bool:
    return any(v["wrong"] > MATERIAL for v in lab.values())


def report(name: str, rows: list[Row], chosen: dict[str, float]) -> None:
    """Prints one group's figures."""
    clean = [s for s, lab in rows if not lab]
    bad = [(s, lab) for s, lab in rows if lab]
    print(f"\n== {name}: {len(rows)} clips, {len(clean)} clean")
    print(f"{'check':18s} {'threshold':>9s} " + " ".join(f"{d:>12s}" for d in DEFECT_CHECK) + f" {'clean dropped':>13s}")
    for check, t in chosen.items():
        cells = []
        for d in DEFECT_CHECK:
            pos = [s for s, lab in bad if d in lab]
            cells.append(f"{np.mean([_value(s, check) > t for s in pos]):12.1%}" if pos else f"{'-':>12s}")
        print(f"{check:18s} {t:9.4g} " + " ".join(cells) + f" {np.mean([_value(s, check) > t for s in clean]):13.1%}")
    n = {d: sum(1 for _, lab in bad if d in lab) for d in DEFECT_CHECK}
    print(f"{'clips with it':28s} " + " ".join(f"{n[d]:12d}" for d in DEFECT_CHECK))
    hit = [bool(flagged(s, chosen)) for s, _ in bad]
    fa = [bool(flagged(s, chosen)) for s in clean]
    heavy = [bool(flagged(s, chosen)) for s, lab in bad if max(v["frames"] for v in lab.values()) >= MIN_AFFECTED]
    material = [bool(flagged(s, chosen)) for s, lab in bad if is_material(lab)]
    print(f"all checks: {np.mean(hit):.1%} ({sum(hit)} of {len(hit)}) defective clips caught, "
          f"{np.mean(fa):.1%} ({sum(fa)} of {len(fa)}) clean clips dropped")
    print(f"  clips with at least {MIN_AFFECTED} of {CLIP_LEN} frames affected: {np.mean(heavy):.1%} of {len(heavy)} caught")
    print(f"  materially wrong clips (a frame with over {MATERIAL:.0%} of its pixels wrong): "
          f"{np.mean(material):.1%} of {len(material)} caught")
    misses: dict[str, int] = {}
    for (s, lab), h in zip(bad, hit):
        if not h:
            for d, v in lab.items():
                key = (f"{d}, {'1-3' if v['frames'] < MIN_AFFECTED else '4+'} frames, "
                       f"{'material' if v['wrong'] > MATERIAL else 'not material'}")
                misses[key] = misses.get(key, 0) + 1
    if misses:
        print("  missed: " + "; ".join(f"{k}: {v}" for k, v in sorted(misses.items())))


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
    ap.add_argument("--seeds", default="125-129,133-136,200-215",
                    help="seeds to report on (pooled; --per-seed for each): 1,2,5 or 1-5")
    ap.add_argument("--tune-seeds", default="100-123,130-132,140-150,160-170,180-190",
                    help="seeds the thresholds are chosen on (the defaults in dav_builder/filters/config.py)")
    ap.add_argument("--max-clean-drop", type=float, default=0.03,
                    help="share of clean tuning clips all checks together may drop (thresholds chosen jointly)")
    ap.add_argument("--per-check", action="store_true",
                    help="instead, choose each check's threshold alone: each may drop --max-clean-drop")
    ap.add_argument("--score-only", action="store_true",
                    help="render and score (cached) the seeds given, print nothing else")
    ap.add_argument("--per-seed", action="store_true", help="also report every seed on its own")
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
    if args.per_check:
        chosen = {check: tune(tune_rows, check, args.max_clean_drop) for check in CHECKS}
    else:
        chosen = tune_jointly(tune_rows, CHECKS, args.max_clean_drop)
    groups = [(f"tuning seeds {args.tune_seeds}", tune_rows)]
    if args.per_seed:
        groups += [(f"seed {seed}", rows) for seed, rows in per_seed.items()]
    groups.append((f"seeds {args.seeds}" + (" pooled" if len(seeds) > 1 else ""),
                   [r for rows in per_seed.values() for r in rows]))
    for name, test_rows in groups:
        report(name, test_rows, chosen)
    print("\nthresholds: " + json.dumps(chosen))


if __name__ == "__main__":
    main()
