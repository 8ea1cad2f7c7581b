"""Benchmark: how well the model-free checks catch planted defects in engine captures that
they were not tuned on.

Renders captures with planted defects (ground truth in defects.json, scene features in
shots.json), cuts 16-frame clips inside shots (from segments.json), and labels each clip: clean
when it touches no defect; defective when one of the defect's frames in it has more than
``MATERIAL`` of its pixels wrong (by the engine's per-frame ``frame_wrong``: depth more than 5 %
off the true render, or drawn over in RGB); clips that touch a defect which left every frame
right (a lag under a still camera, frozen depth's first frame) count as neither, and are counted
apart.  Every clip is scored with the checks; thresholds are chosen on the tuning group
(``--tune-families`` x ``--tune-variants`` x ``--tune-seeds``: together, so that all checks drop
at most ``--max-clean-drop`` of the clean clips while catching as many defective ones as they can;
or with ``--per-check`` each alone; never below a check's floor in ``FLOORS``) and reported on the
held-back group: other *scene families* (``--families``: e.g. fog to the far plane, tiled mazes),
defect *variants* never seen in tuning (``--variants``: e.g. a rotating minimap, subtitles, a
pistol drawn without depth, a shadow map as the depth buffer) and other seeds (``--seeds``).
Figures per defect kind and variant, and per scene feature (fog, repeated textures, indoor or
outdoor, camera style, a weapon drawn with depth).  Renders and scores are kept in ``--work``
(scores keyed by the scoring code and config, so a change of either scores again);
``--score-only`` fills that cache, e.g. in two processes at once.  ``wrong_nearfar`` (a wrong far
plane in the metadata) is not measured: it maps disparity affinely for OpenGL and Direct3D
buffers, so no relative check, nor the depth model's score (aligned in disparity), can see it.

    .venv/bin/python benchmarks/bench_filters.py --captures 6 --frames 160
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

from dav_builder.capture.base import FrameError
from dav_builder.capture.dav import DavCapture
from dav_builder.clip import Clip, make_clip_id
from dav_builder.filters import checks as checks_module
from dav_builder.filters import stage as stage_module
from dav_builder.filters import learned as learned_module
from dav_builder.filters import parallax as parallax_module
from dav_builder.filters.config import ScoringConfig
from dav_builder.filters.stage import CHECKS, MODEL_FREE, ScoringStage
from dav_builder import render as render_module
from dav_builder.render.engine import RenderConfig, parse_variants, render_captures

#: The planted defects measured, and the check designed for each (others may catch it too).
DEFECT_CHECK = {"misaligned": "edge_misalignment", "depth_lag": "depth_lag", "frozen_depth": "frozen_depth",
                "hud": "static_overlay", "weapon": "content_motion", "wrong_buffer": "depth_jump"}
CLIP_LEN = 16
MIN_AFFECTED = 4
#: A clip is defective when one of its defective frames has more than this share of pixels wrong
#: (depth more than 5 % off, or drawn over in RGB: ``frame_wrong`` in defects.json); a clip that
#: touches a defect with no frame that wrong is neither clean nor defective.
MATERIAL = 0.002
#: A clip that touches no defect but has a frame with more than ``BLOCKED_SHARE`` of its pixels
#: within ``BLOCKED_M`` of the camera is **blocked**: the engine has no collision, so a fast camera
#: in a maze can go into a wall, or a moving object through the camera, and the view is one
#: surface at arm's length (a game's camera does not go there; a first-person weapon covers about
#: 1.5 % of the view at that distance).  Such a clip is no good training clip, so it is not counted
#: as clean: it is reported apart, with the share of them the checks drop.  Decided from the
#: captures' depth alone (for a clip without a defect it is the true depth), never from a check.
BLOCKED_M = 0.3
BLOCKED_SHARE = 0.5
#: Lowest threshold per check, whatever the tuning clips allow: the engine's depth and poses are
#: exact, real captures' are not (depth in centimetres or float16, poses from a tracker), and a
#: pose check tuned to exact data would drop them all.
FLOORS = {"pose_misfit": 0.005}

TUNE_FAMILIES = "classic,haze_town,checker_rooms,fps_arena"
HOLDOUT_FAMILIES = "fog_fields,tiled_maze,cloud_hills"
TUNE_VARIANTS = "lag1,shift,eye,full,statusbar,crosshair,held,rifle,rear,topdown"
HOLDOUT_VARIANTS = "all"


def clip_spans(cap_dir: Path) -> list[tuple[int, int, dict[str, dict], dict]]:
    """The 16-frame clips cut inside the shots of a capture (``segments.json``): first and last
    frame, per defect type overlapping it (``defects.json``) the frames it affects, the largest
    share of pixels wrong among them and its variants, and the scene features of its shot
    (``shots.json``)."""
    segments = json.loads((cap_dir / "segments.json").read_text())
    defects = [d for d in json.loads((cap_dir / "defects.json").read_text()) if d["type"] != "wrong_nearfar"]
    shots_file = cap_dir / "shots.json"
    shots = json.loads(shots_file.read_text()) if shots_file.exists() else []
    out = []
    for seg in segments:
        if seg["type"] != "shot":
            continue
        feat = dict(shots[seg["shot"]]) if seg["shot"] < len(shots) else {}
        for a in range(seg["first_frame"], seg["last_frame"] + 1 - CLIP_LEN + 1, CLIP_LEN):
            b = a + CLIP_LEN - 1
            labels: dict[str, dict] = {}
            for d in defects:
                lo, hi = max(a, d["first_frame"]), min(b, d["last_frame"])
                if hi < lo:
                    continue
                wrong = d["params"].get("frame_wrong")  # per frame of the span; older renders lack it
                share = max(wrong[lo - d["first_frame"] : hi - d["first_frame"] + 1]) if wrong else 1.0
                lab = labels.setdefault(d["type"], {"frames": 0, "wrong": 0.0, "variants": []})
                lab["frames"] += hi - lo + 1
                lab["wrong"] = max(lab["wrong"], share)
                lab["variants"].append(d["params"].get("variant", ""))
            out.append((a, b, labels, feat))
    return out


def clips_of(cap_dir: Path) -> list[Clip | None]:
    """The clips of :func:`clip_spans`; None for a clip with a frame the reader refuses (a wrong
    depth buffer with no valid pixel: dav-build drops such frames too)."""
    cap = DavCapture(cap_dir)
    infos = [f for f in cap.frames()]
    out: list[Clip | None] = []
    for a, b, _, _ in clip_spans(cap_dir):
        try:
            frames = [cap.read_frame(infos[i]) for i in range(a, b + 1)]
        except FrameError:
            out.append(None)
            continue
        poses = [f.info.cam_to_world for f in frames]
        out.append(Clip(
            clip_id=make_clip_id(cap.id, a, CLIP_LEN), capture=cap.id, frame_indices=list(range(a, b + 1)),
            fps=cap.fps, height=cap.height, width=cap.width, rgb=[f.rgb_bytes for f in frames], rgb_ext="png",
            depth=np.stack([f.depth for f in frames]), K=np.stack([f.info.K for f in frames]),
            cam_to_world=None if any(p is None for p in poses) else np.stack(poses),
            rgb_small=np.stack([f.rgb_small for f in frames])))
    return out


def _code_key() -> str:
    """Changes whenever the scoring code or its defaults other than thresholds do, so cached scores
    are never stale."""
    cfg = ScoringConfig()
    for name in MODEL_FREE:  # thresholds decide, they do not change scores: not in the key
        getattr(cfg, name).threshold = 0.0
    cfg.learned_defect = None  # type: ignore[assignment]  # scored apart (learned_scores), keyed by its weights
    h = hashlib.sha256(repr(cfg).encode())
    for mod in (checks_module, stage_module, parallax_module):
        h.update(Path(mod.__file__).read_bytes())
    return h.hexdigest()[:16]


#: Taken once, right after the imports: the key names the code this process runs, even if the
#: files change on disk while it scores.
CODE_KEY = _code_key()


Row = tuple[dict, dict, dict]
"""One clip: its scores, its labels (defect type -> frames affected, share wrong, variants; {} =
clean) and its shot's scene features."""


def _render_key() -> str:
    """Changes whenever the renderer's code does, so that captures rendered by an older engine are
    never scored as if the current one had made them."""
    h = hashlib.sha256()
    for path in sorted(Path(render_module.__file__).parent.glob("*.py")):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()[:10]


RENDER_KEY = _render_key()


def group_key(families: str, variants: str, n: int, frames: int) -> str:
    """Names a rendered seed's folder: the group, its size and the renderer's code."""
    return hashlib.sha256(f"{families}|{variants}|{n}|{frames}|{RENDER_KEY}".encode()).hexdigest()[:10]


def score_set(seed: int, n: int, frames: int, work: Path, families: str = TUNE_FAMILIES,
              variants: str = TUNE_VARIANTS, render_only: bool = False, weights: Path | None = None,
              votes: int = 1) -> list[Row]:
    """Renders seed ``seed`` of a group of scene families and defect variants (once) and scores its
    clips; the scores are cached beside the captures (labels are read from the ground truth each
    time).  With ``weights``, the learned check's score (``votes``-th largest frame score) too."""
    root = work / f"{group_key(families, variants, n, frames)}-seed{seed}"
    done = root / ".rendered"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)  # a render cut off half-way
        cfg = RenderConfig(scenes=n, frames=frames, seed=seed, defects=tuple(DEFECT_CHECK), defect_rate=0.6,
                           families=tuple(families.split(",")), variants=parse_variants(variants))
        render_captures(root, cfg, progress=True)
        done.write_text(json.dumps({"scenes": n, "frames": frames, "families": families, "variants": variants}))
    if render_only:
        return []
    caps = sorted(p for p in root.iterdir() if p.is_dir())
    spans = [(lab, feat) for cap_dir in caps for _, _, lab, feat in clip_spans(cap_dir)]
    near = near_shares(root, caps)
    spans = [(lab, {**feat, "near_share": share}) for (lab, feat), share in zip(spans, near)]
    cache = root / f".scores-{CODE_KEY}.json"
    if cache.exists():
        scores = json.loads(cache.read_text())
    else:
        stage = ScoringStage(ScoringConfig())
        scores = [None if clip is None else stage._checks(clip) for cap_dir in caps for clip in clips_of(cap_dir)]
        cache.write_text(json.dumps(scores))
    assert len(scores) == len(spans), f"seed {seed}: {len(scores)} scores for {len(spans)} clips"
    if weights is not None:
        fs = learned_scores(seed, n, frames, work, weights, families, variants)
        scores = [None if s is None else {**s, "learned_defect": checks_module.kth_largest(f, votes)}
                  for s, f in zip(scores, fs)]
    return [(s, lab, feat) for s, (lab, feat) in zip(scores, spans) if s is not None]


def near_shares(root: Path, caps: list[Path]) -> list[float]:
    """Per clip of :func:`clip_spans` (in order), the largest share of a frame's pixels within
    :data:`BLOCKED_M` of the camera, from the capture's depth; cached beside the captures."""
    cache = root / f".near-{BLOCKED_M}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    out: list[float] = []
    for cap_dir in caps:
        cap = DavCapture(cap_dir)
        infos = {f.index: f for f in cap.frames() if not isinstance(f, FrameError)}
        share: dict[int, float] = {}
        for a, b, _, _ in clip_spans(cap_dir):
            for i in range(a, b + 1):
                if i not in share:
                    try:
                        d = cap.read_depth(infos[i])
                        share[i] = float(((d > 0) & (d < BLOCKED_M)).mean())
                    except (FrameError, KeyError):
                        share[i] = 0.0  # a frame the reader refuses (a planted wrong buffer)
            out.append(round(max(share[i] for i in range(a, b + 1)), 4))
    cache.write_text(json.dumps(out))
    return out


def is_blocked(row: Row) -> bool:
    """A clip touching no defect whose view is blocked (see :data:`BLOCKED_M`)."""
    return not row[1] and row[2].get("near_share", 0.0) > BLOCKED_SHARE


def learned_key(weights: Path) -> str:
    """Names the learned check's weights and code: its cached frame scores are never stale."""
    h = hashlib.sha256(Path(weights).read_bytes())
    h.update(Path(weights).with_suffix(".json").read_bytes())
    for mod in (learned_module, stage_module):
        h.update(Path(mod.__file__).read_bytes())
    return h.hexdigest()[:16]


def learned_scores(seed: int, n: int, frames: int, work: Path, weights: Path, families: str = TUNE_FAMILIES,
                   variants: str = TUNE_VARIANTS) -> list[list[float] | None]:
    """The learned check's per-frame probabilities of every clip of a rendered seed (in the order
    of :func:`clip_spans`; None for a clip the reader refuses), cached beside the captures."""
    root = work / f"{group_key(families, variants, n, frames)}-seed{seed}"
    cache = root / f".learned-{learned_key(weights)}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    import torch

    torch.set_num_threads(1)
    cfg = ScoringConfig()
    cfg.learned_defect.enabled, cfg.learned_defect.weights = True, str(weights)
    stage = ScoringStage(cfg)
    stage.setup()  # loads the weights: not counted per clip
    caps = sorted(p for p in root.iterdir() if p.is_dir())
    out: list[list[float] | None] = []
    spent, n_clips = 0.0, 0
    for cap_dir in caps:
        for clip in clips_of(cap_dir):
            if clip is None:
                out.append(None)
                continue
            t0 = time.perf_counter()
            out.append([round(float(x), 5) for x in stage.learned_frame_scores(clip)])
            spent, n_clips = spent + time.perf_counter() - t0, n_clips + 1
    print(f"seed {seed}: learned check on {n_clips} clips of {CLIP_LEN} frames: "
          f"{1000 * spent / max(1, n_clips):.1f} ms per clip (one thread: torch.set_num_threads(1))")
    cache.write_text(json.dumps(out))
    return out


#: Set by ``--count-blocked-as-clean``: the definition of the measurements before 6 December, 18:30.
COUNT_BLOCKED = False


def material(rows: list[Row]) -> list[Row]:
    """The clips that are clean (a blocked view is not: :data:`BLOCKED_M`) or materially defective
    (see :data:`MATERIAL`)."""
    return [r for r in rows if (not r[1] and (COUNT_BLOCKED or not is_blocked(r))) or (r[1] and is_material(r[1]))]


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
    clean = sorted((_value(s, check) for s, lab, _ in rows if not lab), reverse=True)
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
    clean = [s for s, lab, _ in rows if not lab]
    bad = [s for s, lab, _ in rows if lab]
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


def feature_tags(feat: dict) -> list[str]:
    """The scene features a clip's shot has, as report rows."""
    tags = [feat.get("layout", "?"), f"camera {feat.get('camera', 'normal')}"]
    tags.append("fog" if feat.get("fog") is not None else "no fog")
    if feat.get("fog") is not None and feat["fog"] < 100:
        tags.append("thick fog (under 100 m)")
    tags.append("repeated textures" if feat.get("periodic") else "no repeated textures")
    if feat.get("clouds") is not None:
        tags.append("clouds in the sky")
    if feat.get("weapon"):
        tags.append("weapon drawn with depth")
    tags.append(f"family {feat.get('family', 'classic')}")
    return tags


def report(name: str, rows: list[Row], chosen: dict[str, float], tuned_variants: set[str] | None = None) -> dict:
    """Prints one group's figures; returns the headline numbers."""
    blocked = [] if COUNT_BLOCKED else [s for s, lab, f in rows if is_blocked((s, lab, f))]
    skipped = len(rows) - len(material(rows)) - len(blocked)
    rows = material(rows)
    clean = [s for s, lab, _ in rows if not lab]
    bad = [(s, lab) for s, lab, _ in rows if lab]
    print(f"\n== {name}: {len(rows)} clips, {len(clean)} clean "
          f"({skipped} more touch a defect that left every frame right: not counted)")
    if blocked:
        print(f"   {len(blocked)} more touch no defect but have their view blocked (a frame over "
              f"{BLOCKED_SHARE:.0%} within {BLOCKED_M} m): not counted as clean; the checks drop "
              f"{np.mean([bool(flagged(s, chosen)) for s in blocked]):.1%} of them")
    kinds = [d for d in DEFECT_CHECK if any(d in lab for _, lab in bad)]
    print(f"{'check':18s} {'threshold':>9s} " + " ".join(f"{d[:12]:>12s}" for d in kinds) + f" {'clean dropped':>13s}")
    for check, t in chosen.items():
        cells = []
        for d in kinds:
            pos = [s for s, lab in bad if d in lab]
            cells.append(f"{np.mean([_value(s, check) > t for s in pos]):12.1%}" if pos else f"{'-':>12s}")
        cl = f"{np.mean([_value(s, check) > t for s in clean]):13.1%}" if clean else f"{'-':>13s}"
        print(f"{check:18s} {t:9.4g} " + " ".join(cells) + " " + cl)
    hit = [bool(flagged(s, chosen)) for s, _ in bad]
    fa = [bool(flagged(s, chosen)) for s in clean]
    print("\nper defect kind and variant (* = variant never in the tuning group):")
    for d in kinds:
        pos = [(s, lab) for s, lab in bad if d in lab]
        print(f"  {d:14s} {np.mean([bool(flagged(s, chosen)) for s, _ in pos]):6.1%} of {len(pos)}")
        for v in sorted({v for _, lab in pos for v in lab[d]["variants"]}):
            pv = [s for s, lab in pos if v in lab[d]["variants"]]
            short = [s for s, lab in pos if v in lab[d]["variants"] and lab[d]["frames"] < MIN_AFFECTED]
            star = "*" if tuned_variants is not None and v not in tuned_variants else " "
            print(f"    {v + star:12s} {np.mean([bool(flagged(s, chosen)) for s in pv]):6.1%} of {len(pv):4d}"
                  + (f"   (1-3 frames in the clip: {np.mean([bool(flagged(s, chosen)) for s in short]):.1%} of {len(short)})"
                     if short else ""))
    print("\nper scene feature: defective caught | clean dropped")
    tags = sorted({t for _, _, f in rows for t in feature_tags(f)})
    for tag in tags:
        b = [bool(flagged(s, chosen)) for s, lab, f in rows if lab and tag in feature_tags(f)]
        c = [bool(flagged(s, chosen)) for s, lab, f in rows if not lab and tag in feature_tags(f)]
        print(f"  {tag:28s} " + (f"{np.mean(b):6.1%} of {len(b):4d}" if b else f"{'-':>14s}") + " | "
              + (f"{np.mean(c):6.1%} of {len(c):4d}" if c else "-"))
    print(f"\nall checks: {np.mean(hit):.1%} ({sum(hit)} of {len(hit)}) defective clips caught, "
          f"{np.mean(fa):.1%} ({sum(fa)} of {len(fa)}) clean clips dropped")
    drops: dict[str, int] = {}
    for s in clean:
        for c in flagged(s, chosen):
            drops[c] = drops.get(c, 0) + 1
    if drops:
        print("  clean drops by check: " + ", ".join(f"{k} {v}" for k, v in sorted(drops.items())))
    misses: dict[str, int] = {}
    for (s, lab), h in zip(bad, hit):
        if not h:
            for d, v in lab.items():
                key = f"{d}/{'+'.join(sorted(set(v['variants'])))}, {'1-3' if v['frames'] < MIN_AFFECTED else '4+'} frames"
                misses[key] = misses.get(key, 0) + 1
    if misses:
        print("  missed: " + "; ".join(f"{k}: {v}" for k, v in sorted(misses.items())))
    return {"caught": float(np.mean(hit)) if hit else 0.0, "clean_dropped": float(np.mean(fa)) if fa else 0.0}


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
    ap.add_argument("--captures", type=int, default=6, help="captures per seed (cycling over the group's families)")
    ap.add_argument("--frames", type=int, default=160)
    ap.add_argument("--seeds", default="400-403", help="held-back seeds to report on: 1,2,5 or 1-5")
    ap.add_argument("--families", default=HOLDOUT_FAMILIES, help="held-back scene families")
    ap.add_argument("--variants", default=HOLDOUT_VARIANTS, help="defect variants of the held-back group ('all' or names)")
    ap.add_argument("--tune-seeds", default="300-307",
                    help="seeds the thresholds are chosen on (the defaults in dav_builder/filters/config.py)")
    ap.add_argument("--tune-families", default=TUNE_FAMILIES)
    ap.add_argument("--tune-variants", default=TUNE_VARIANTS)
    ap.add_argument("--max-clean-drop", type=float, default=0.03,
                    help="share of clean tuning clips all checks together may drop (thresholds chosen jointly)")
    ap.add_argument("--per-check", action="store_true",
                    help="instead, choose each check's threshold alone: each may drop --max-clean-drop")
    ap.add_argument("--frozen", action="store_true",
                    help="report with the thresholds in dav_builder/filters/config.py instead of choosing them")
    ap.add_argument("--no-holdout", action="store_true", help="report the tuning group only (while designing)")
    ap.add_argument("--score-only", action="store_true",
                    help="render and score (cached) the seeds given, print nothing else")
    ap.add_argument("--render-only", action="store_true", help="with --score-only: render, do not score")
    ap.add_argument("--count-blocked-as-clean", action="store_true",
                    help="count clips with a blocked view as clean (the definition before 6 December, 18:30)")
    ap.add_argument("--per-seed", action="store_true", help="also report every held-back seed on its own")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "dav-bench-filters")
    ap.add_argument("--learned", default=str(learned_module.SHIPPED_WEIGHTS),
                    help="weights of the learned check to report alongside ('none': the hand-made checks only)")
    ap.add_argument("--learned-votes", type=int, default=ScoringConfig().learned_defect.votes,
                    help="a clip's learned score is its N-th largest frame score")
    args = ap.parse_args()
    global COUNT_BLOCKED
    COUNT_BLOCKED = args.count_blocked_as_clean
    seeds, tune_seeds = parse_seeds(args.seeds), parse_seeds(args.tune_seeds)
    if set(seeds) & set(tune_seeds):
        ap.error(f"seeds {sorted(set(seeds) & set(tune_seeds))} are both tuned on and reported on")
    if set(args.families.split(",")) & set(args.tune_families.split(",")):
        ap.error("a scene family is both tuned on and reported on")
    weights = None if args.learned == "none" or args.render_only else Path(args.learned)
    if weights is not None and not weights.is_file():
        ap.error(f"{weights}: no learned check weights (train them: benchmarks/train_learned_check.py), or --learned none")
    t0 = time.perf_counter()
    tune_group = dict(families=args.tune_families, variants=args.tune_variants)
    held_group = dict(families=args.families, variants=args.variants)
    learned = dict(weights=weights, votes=args.learned_votes)
    if args.score_only:
        for seed in tune_seeds:
            score_set(seed, args.captures, args.frames, args.work, **tune_group, render_only=args.render_only,
                      **learned)
        if not args.no_holdout:
            for seed in seeds:
                score_set(seed, args.captures, args.frames, args.work, **held_group, render_only=args.render_only,
                          **learned)
        print(f"scored in {time.perf_counter() - t0:.0f} s")
        return
    tune_rows = [r for seed in tune_seeds
                 for r in score_set(seed, args.captures, args.frames, args.work, **tune_group, **learned)]
    print(f"machine: {platform.machine()}, python {platform.python_version()}; {time.perf_counter() - t0:.0f} s")
    cfg = ScoringConfig()
    sets: dict[str, dict[str, float]] = {}
    if args.frozen:
        sets["hand-made checks"] = {c: getattr(cfg, c).threshold for c in MODEL_FREE if getattr(cfg, c).enabled}
    elif args.per_check:
        sets["hand-made checks"] = {check: tune(material(tune_rows), check, args.max_clean_drop) for check in MODEL_FREE}
    else:
        sets["hand-made checks"] = tune_jointly(material(tune_rows), MODEL_FREE, args.max_clean_drop)
    if weights is not None:
        sets["learned check alone"] = ({"learned_defect": cfg.learned_defect.threshold} if args.frozen else
                                       {"learned_defect": tune(material(tune_rows), "learned_defect", args.max_clean_drop)})
        # always chosen on the tuning group (deterministic: frozen with the tuning data)
        sets["hand-made and learned together"] = tune_jointly(material(tune_rows), CHECKS, args.max_clean_drop)
        if args.frozen:  # what a user gets turning it on: every shipped threshold as it is
            sets["shipped thresholds, learned on"] = {c: getattr(cfg, c).threshold for c in CHECKS
                                                      if getattr(cfg, c).enabled or c == "learned_defect"}
    tuned = set(parse_variants(args.tune_variants) and
                [v for vs in parse_variants(args.tune_variants).values() for v in vs])  # type: ignore[union-attr]
    per_seed = {}
    if not args.no_holdout:
        per_seed = {seed: score_set(seed, args.captures, args.frames, args.work, **held_group, **learned)
                    for seed in seeds}
    summary = []
    for label, chosen in sets.items():
        print(f"\n\n######## {label}")
        t = report(f"tuning group: families {args.tune_families}, seeds {args.tune_seeds}", tune_rows, chosen, tuned)
        h = None
        if per_seed:
            if args.per_seed:
                for seed, rows in per_seed.items():
                    report(f"held-back seed {seed}", rows, chosen, tuned)
            h = report(f"HELD BACK: families {args.families}, variants {args.variants}, seeds {args.seeds}",
                       [r for rows in per_seed.values() for r in rows], chosen, tuned)
        print("\nthresholds: " + json.dumps(chosen))
        summary.append((label, t, h))
    print("\n== summary (defective clips caught / clean clips dropped)")
    for label, t, h in summary:
        print(f"  {label:32s} tuning {t['caught']:6.1%} / {t['clean_dropped']:5.1%}"
              + (f"   held back {h['caught']:6.1%} / {h['clean_dropped']:5.1%}" if h else ""))


if __name__ == "__main__":
    main()
