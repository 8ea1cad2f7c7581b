"""The evaluation protocol as switches, and the paper's as a named preset.

A prediction is affine-invariant disparity.  Per clip (a video, or one image):

1. **valid pixels**: ground truth finite and inside the data set's depth range, and inside the
   data set's evaluation crop (the reader's mask);
2. **alignment** (``fit``): least-squares scale and shift of the prediction onto the ground truth's
   disparity ``1 / depth``, either one fit for the whole clip (``sequence``: temporal flicker stays
   visible) or one per frame (``frame``);
3. **depth**: ``1 / max(disparity, 1e-6)`` clipped to the depth caps (``caps``): the data set's
   fixed range (``dataset``) or the clip's own ground-truth range (``gt``);
4. **metrics** per frame: AbsRel ``mean(|d - d*| / d*)`` and delta1 ``share(max(d/d*, d*/d) < 1.25)``;
   TAE per clip (:mod:`dav_builder.evaluation.tae`, ``official`` or ``zbuffer`` form);
5. **averaging** (``average``) over a data set: every frame counts once (``frame``; clips weigh by
   their length, TAE too) or every clip counts once (``clip``: per-clip means, then their mean).

The ``paper`` preset is what the authors' released evaluation computes (sequence fit, fixed caps,
frame averaging, official TAE).  All functions are pure numpy.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from dav_builder.evaluation.tae import tae as tae_of

FITS = ("sequence", "frame")
AVERAGES = ("frame", "clip")
CAPS = ("dataset", "gt")
TAES = ("official", "zbuffer", "none")


@dataclass(frozen=True)
class Protocol:
    fit: str = "sequence"
    """``sequence``: one scale and shift per clip; ``frame``: one per frame."""
    average: str = "frame"
    """``frame``: every frame of the data set counts once; ``clip``: every clip counts once."""
    caps: str = "dataset"
    """``dataset``: the data set's fixed depth range; ``gt``: each clip's ground-truth min and max."""
    tae: str = "official"
    """``official`` (as the released code computes it), ``zbuffer`` (occlusion-aware) or ``none``."""

    def __post_init__(self):
        for name, allowed in (("fit", FITS), ("average", AVERAGES), ("caps", CAPS), ("tae", TAES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"protocol {name} must be one of {allowed}, got {getattr(self, name)!r}")

    def with_(self, **changes) -> "Protocol":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PRESETS: dict[str, Protocol] = {
    "paper": Protocol("sequence", "frame", "dataset", "official"),
    "zbuffer": Protocol("sequence", "frame", "dataset", "zbuffer"),
    "per-frame": Protocol("frame", "frame", "dataset", "official"),
    "dav": Protocol("sequence", "clip", "gt", "zbuffer"),
}
"""``paper``: the authors' released evaluation; ``zbuffer``: the same with occlusion-aware TAE;
``per-frame``: one alignment per frame (image-depth numbers on videos); ``dav``: the default for a
dav-build dataset (``dav-train eval RUN DATASET``), whose clips mix scenes of any scale, so each
clip's own ground-truth range caps it and every clip counts once (as that command always did),
with the occlusion-aware TAE."""


def protocol_from(name_or_spec: str) -> Protocol:
    """``paper`` or ``paper,fit=frame,tae=zbuffer`` (a preset, then switches)."""
    parts = [p.strip() for p in name_or_spec.split(",") if p.strip()]
    if not parts or "=" in parts[0]:
        parts.insert(0, "paper")
    if parts[0] not in PRESETS:
        raise ValueError(f"unknown protocol preset {parts[0]!r}; known: {sorted(PRESETS)}")
    proto = PRESETS[parts[0]]
    changes = {}
    for p in parts[1:]:
        key, _, value = p.partition("=")
        if key not in ("fit", "average", "caps", "tae") or not value:
            raise ValueError(f"protocol switch {p!r}: expected fit=, average=, caps= or tae=")
        changes[key] = value
    return proto.with_(**changes)


def fit_scale_shift(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Least-squares ``(s, t)`` of ``s * pred + t ~ target`` (1-D arrays; (1, 0) under two points)."""
    p, g = pred.astype(np.float64).ravel(), target.astype(np.float64).ravel()
    if p.size < 2:
        return 1.0, 0.0
    a = np.stack([p, np.ones_like(p)], 1)
    (s, t), *_ = np.linalg.lstsq(a, g, rcond=None)
    return float(s), float(t)


def align(pred_disp: np.ndarray, gt_depth: np.ndarray, valid: np.ndarray, fit: str) -> np.ndarray:
    """Prediction (T, H, W) fitted to ``1 / gt`` on ``valid``: one fit per clip or per frame."""
    out = pred_disp.astype(np.float64).copy()
    if fit == "sequence":
        s, t = fit_scale_shift(pred_disp[valid], 1.0 / np.clip(gt_depth[valid], 1e-6, None))
        return out * s + t
    if fit == "frame":
        for k in range(len(out)):
            v = valid[k]
            s, t = fit_scale_shift(pred_disp[k][v], 1.0 / np.clip(gt_depth[k][v], 1e-6, None))
            out[k] = out[k] * s + t
        return out
    raise ValueError(f"fit must be one of {FITS}, got {fit!r}")


def to_depth(disp: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip(1.0 / np.clip(disp, 1e-6, None), lo, hi)


def abs_rel(pred: np.ndarray, gt: np.ndarray) -> float:
    return float(np.mean(np.abs(gt - pred) / gt))


def delta1(pred: np.ndarray, gt: np.ndarray) -> float:
    return float(np.mean(np.maximum(gt / pred, pred / gt) < 1.25))


@dataclass
class ClipScores:
    """The scores of one clip; per-frame lists hold None for frames without valid ground truth."""

    name: str
    abs_rel: list[float | None]
    delta1: list[float | None]
    tae: float | None
    frames: int

    def mean(self, key: str) -> float | None:
        vals = [v for v in getattr(self, key) if v is not None]
        return float(np.mean(vals)) if vals else None


def valid_mask(gt_depth: np.ndarray, reader_mask: np.ndarray | None, min_depth: float, max_depth: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        v = np.isfinite(gt_depth) & (gt_depth > min_depth) & (gt_depth <= max_depth)
    return v if reader_mask is None else v & reader_mask


def score_clip(name: str, pred_disp: np.ndarray, gt_depth: np.ndarray, valid: np.ndarray, protocol: Protocol,
               min_depth: float, max_depth: float, K: np.ndarray | None = None,
               cam_to_world: np.ndarray | None = None) -> ClipScores:
    """Scores of one clip: prediction (T, H, W) disparity, ground truth (T, H, W) metres, ``valid``
    the pixels to score (see :func:`valid_mask`), caps ``[min_depth, max_depth]``."""
    if pred_disp.shape != gt_depth.shape or valid.shape != gt_depth.shape:
        raise ValueError(f"{name}: prediction {pred_disp.shape}, ground truth {gt_depth.shape} and mask "
                         f"{valid.shape} differ in shape")
    if valid.sum() < 2:
        raise ValueError(f"{name}: no valid ground truth in the depth range [{min_depth}, {max_depth}]")
    lo, hi = min_depth, max_depth
    if protocol.caps == "gt":
        lo, hi = float(gt_depth[valid].min()), float(gt_depth[valid].max())
    depth = to_depth(align(pred_disp, gt_depth, valid, protocol.fit), lo, hi)
    ar: list[float | None] = []
    d1: list[float | None] = []
    for k in range(len(depth)):
        v = valid[k]
        ok = bool(v.any())
        ar.append(abs_rel(depth[k][v], gt_depth[k][v].astype(np.float64)) if ok else None)
        d1.append(delta1(depth[k][v], gt_depth[k][v].astype(np.float64)) if ok else None)
    t = None
    if protocol.tae != "none" and K is not None and cam_to_world is not None and len(depth) > 1:
        t = tae_of(depth, valid, K, cam_to_world, protocol.tae)
    return ClipScores(name, ar, d1, t, len(depth))


@dataclass
class Summary:
    abs_rel: float | None
    delta1: float | None
    tae: float | None
    clips: int
    frames: int
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"abs_rel": self.abs_rel, "delta1": self.delta1, "tae": self.tae, "clips": self.clips,
                "frames": self.frames, **self.extra}


def _mean(vals: list[float], weights: list[float] | None = None) -> float | None:
    pairs = [(v, w) for v, w in zip(vals, weights or [1.0] * len(vals)) if v is not None and math.isfinite(v)]
    if not pairs:
        return None
    return float(sum(v * w for v, w in pairs) / sum(w for _, w in pairs))


def aggregate(clips: list[ClipScores], average: str) -> Summary:
    """Data-set means: every frame once (TAE weighted by clip length, as the official code), or every clip once."""
    if average == "frame":
        ar = _mean([v for c in clips for v in c.abs_rel])
        d1 = _mean([v for c in clips for v in c.delta1])
        t = _mean([c.tae for c in clips], [c.frames for c in clips])
    elif average == "clip":
        ar = _mean([c.mean("abs_rel") for c in clips])
        d1 = _mean([c.mean("delta1") for c in clips])
        t = _mean([c.tae for c in clips])
    else:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
    return Summary(ar, d1, t, len(clips), sum(c.frames for c in clips))
