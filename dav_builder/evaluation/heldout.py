"""Evaluation during training: AbsRel, delta1 and TAE of the model on a few held-out clips.

The clips (the ``eval_clips`` longest validation clips, ties by id, so that video clips and TAE are
in; their first ``eval_frames`` frames) and
the noise (seed 0) are fixed, so successive evaluations of one run form a comparable curve.  The
protocol is the paper's alignment (one least-squares fit in disparity per clip, frames averaged)
with each clip's own depth range as caps (a dav-build dataset has no fixed range) and the
occlusion-aware TAE where the clip has poses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dav_builder.evaluation.protocol import Protocol, aggregate, score_clip, valid_mask

PROTOCOL = Protocol(fit="sequence", average="frame", caps="gt", tae="zbuffer")


@dataclass
class HeldOutClip:
    name: str
    rgb: np.ndarray
    depth: np.ndarray
    frame_indices: list[int]
    K: np.ndarray | None
    cam_to_world: np.ndarray | None


def load_heldout(dataset: Path, clips: list, n_clips: int, n_frames: int) -> list[HeldOutClip]:
    """Read the held-out clips once (at the start of training)."""
    from dav_builder.model.data import ClipReader

    reader = ClipReader(Path(dataset))
    out = []
    for ref in sorted(clips, key=lambda c: (-c.num_frames, c.clip_id))[:n_clips]:
        frames = list(range(min(ref.num_frames, n_frames) if n_frames > 0 else ref.num_frames))
        f = reader.read(ref, frames)
        K, T = f.meta.get("K"), f.meta.get("cam_to_world")
        K = np.asarray(K, np.float64)[frames] if K is not None and len(K) >= len(frames) else None
        T = np.asarray(T, np.float64)[frames] if T is not None and len(T) >= len(frames) else None
        out.append(HeldOutClip(ref.clip_id, f.rgb, f.depth, f.frame_indices, K, T))
    return out


def evaluate_heldout(predictor, clips: list[HeldOutClip]) -> dict[str, float]:
    """``{"eval_abs_rel", "eval_delta1"[, "eval_tae"]}`` of ``predictor`` (uint8 frames -> disparity)."""
    scores = []
    for c in clips:
        disp = predictor(c.rgb, c.frame_indices, seed=0)
        v = valid_mask(c.depth, None, 1e-6, np.inf)
        if v.sum() < 2:
            continue
        scores.append(score_clip(c.name, disp, c.depth, v, PROTOCOL, 1e-6, np.inf, c.K, c.cam_to_world))
    s = aggregate(scores, PROTOCOL.average)
    out = {"eval_abs_rel": s.abs_rel, "eval_delta1": s.delta1, "eval_tae": s.tae}
    return {k: round(v, 6) for k, v in out.items() if v is not None}
