"""The one payload that travels from capture to shard: :class:`Clip`.

Every stage of ``dav-build`` (splitting, scoring, writing) takes and returns clips; none of them
knows about Ray.  A clip is either *loaded* (frames and depth in memory, ready to score and write)
or *unwritable* (``frames`` empty and ``reason`` set: too short, unreadable frames, a capture that
could not be opened); both kinds end as one row of ``manifest.parquet``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Namespace of clip ids: ``uuid5(NAMESPACE, "<capture>:<first>:<count>")`` is stable across runs.
CLIP_NAMESPACE = uuid.UUID("5b0c7a4e-3d1f-4f53-9a57-2f1d0a6c8e11")


def make_clip_id(capture: str, first_frame: int, num_frames: int) -> str:
    """A stable WebDataset key (hex, no dots) for frames ``first_frame..`` of ``capture``."""
    return uuid.uuid5(CLIP_NAMESPACE, f"{capture}:{first_frame}:{num_frames}").hex


def bucket_name(height: int, width: int, num_frames: int) -> str:
    """The shard group of a clip, e.g. ``352x640-16f``."""
    return f"{height}x{width}-{num_frames}f"


def failed_checks_of(keep: bool, reason: str | None, failed: list[str]) -> list[str]:
    """The ``failed_checks`` stored for a clip: every check it failed, or, for a clip dropped for
    another reason (not written: unreadable, too short...), that reason's name alone; so a dropped
    clip's ``reason`` always starts with ``failed_checks[0]``."""
    if failed:
        return list(failed)
    return [] if keep or not reason else [reason.split(":", 1)[0]]


@dataclass
class Clip:
    """A run of consecutive frames of one capture, with everything needed to score and write it."""

    clip_id: str
    capture: str
    """The capture's id (its path relative to the input root, or the reader's id)."""
    frame_indices: list[int]
    """The frames' indices in the capture: their temporal positions (may have gaps)."""
    fps: float
    height: int
    width: int
    rgb: list[bytes] = field(default_factory=list)
    """Encoded RGB images, one per frame, copied to the shard as they are."""
    rgb_ext: str = "png"
    depth: np.ndarray | None = None
    """Planar metres, float32 (T, H, W), 0 where invalid."""
    K: np.ndarray | None = None
    """Intrinsics, float64 (T, 3, 3)."""
    cam_to_world: np.ndarray | None = None
    """Poses, float64 (T, 4, 4), or None when the capture has none."""
    rgb_small: np.ndarray | None = None
    """Reduced RGB frames (T, h, w, 3) uint8, kept from scene detection for cheap model-free checks."""
    scores: dict[str, float | None] = field(default_factory=dict)
    """Every score computed for the clip; stored in the manifest and the shard's json."""
    keep: bool = True
    reason: str | None = None
    """Why the clip was dropped or not written; None when kept."""
    failed_checks: list[str] = field(default_factory=list)
    """Every check or rule the clip failed (``reason`` names the first); empty when kept."""
    bucket: str | None = None
    shard: str | None = None
    errors: dict[str, str] = field(default_factory=dict)
    """Non-fatal problems met while making the clip (file -> problem)."""
    depth_npy: list[bytes] | None = None
    """The depth frames encoded as the shard stores them (float16 ``.npy``), set by
    :func:`dav_builder.shards.tario.pack_depth` in the worker once nothing reads ``depth`` any more:
    half the bytes to ship to the writer, and the writer only copies."""
    rgb_fine: np.ndarray | None = None
    """RGB frames (T, h, w, 3) uint8 of up to ``scoring.pair_side``, kept from reading for the
    checks that need more detail than ``rgb_small`` (no second decode); dropped after scoring."""

    @property
    def first_frame(self) -> int:
        return self.frame_indices[0] if self.frame_indices else -1

    @property
    def num_frames(self) -> int:
        return len(self.frame_indices)

    @property
    def loaded(self) -> bool:
        """True when the clip holds frames that can be scored and written."""
        return bool(self.rgb) and (self.depth is not None or self.depth_npy is not None)

    def drop(self, reason: str) -> None:
        """Mark the clip as dropped, keeping the first reason given."""
        self.keep = False
        if self.reason is None:
            self.reason = reason

    def metadata(self) -> dict[str, Any]:
        """The ``<key>.json`` member of the shard (see DATASET_FORMAT.md)."""
        return {
            "clip_id": self.clip_id,
            "capture": self.capture,
            "frame_indices": [int(i) for i in self.frame_indices],
            "fps": float(self.fps),
            "height": int(self.height),
            "width": int(self.width),
            "K": None if self.K is None else np.asarray(self.K, dtype=float).tolist(),
            "cam_to_world": None
            if self.cam_to_world is None
            else np.asarray(self.cam_to_world, dtype=float).tolist(),
            "scores": {k: (None if v is None else float(v)) for k, v in self.scores.items()},
            "keep": bool(self.keep),
            "reason": self.reason,
            "failed_checks": failed_checks_of(self.keep, self.reason, self.failed_checks),
        }
