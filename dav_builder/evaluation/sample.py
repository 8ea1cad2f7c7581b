"""What a benchmark reader hands to the evaluation: typed clips, and the small I/O helpers they share."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np


class ReaderError(ValueError):
    """A benchmark's files are missing or malformed (the message names the file and the problem)."""

    def __init__(self, path: str | Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)


@dataclass(frozen=True)
class BenchmarkInfo:
    """A data set's fixed evaluation facts."""

    name: str
    title: str
    kind: str
    """``image`` (every clip is one frame) or ``video``."""
    min_depth: float
    max_depth: float
    """The fixed depth caps: ground truth outside is not scored, predictions are clipped into it."""
    source: str
    """Where the files come from and in which layout."""
    crop: str = "none"
    """The evaluation region, in words."""


@dataclass
class EvalSequence:
    """One clip of a benchmark: RGB at its own resolution, ground truth at its own (often lower)."""

    name: str
    rgb: np.ndarray
    """(T, H, W, 3) uint8."""
    depth: np.ndarray
    """(T, h, w) float32 metres (planar z); 0, inf or NaN where unknown."""
    valid: np.ndarray
    """(T, h, w) bool: the reader's own mask (the data set's validity mask and evaluation crop)."""
    K: np.ndarray | None = None
    """(T, 3, 3) intrinsics at the ground truth's resolution (OpenCV: pixel centre j at j)."""
    cam_to_world: np.ndarray | None = None
    """(T, 4, 4) camera-to-world in OpenCV axes (x right, y down, z forward); None without poses."""
    frame_indices: list[int] = field(default_factory=list)

    def __post_init__(self):
        t = len(self.rgb)
        if self.rgb.ndim != 4 or self.depth.shape[0] != t or self.valid.shape != self.depth.shape:
            raise ValueError(f"{self.name}: rgb {self.rgb.shape}, depth {self.depth.shape} and mask "
                             f"{self.valid.shape} do not fit together")
        if not self.frame_indices:
            self.frame_indices = list(range(t))


def read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ReaderError(path, "missing or not a readable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_png16(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ReaderError(path, "missing or not a readable PNG")
    if img.dtype != np.uint16 or img.ndim != 2:
        raise ReaderError(path, f"expected a single-channel 16-bit PNG, got {img.dtype} {img.shape}")
    return img


def windows(n: int, frames: int, stride: int = 1, start: int = 0, max_clips: int = 1) -> list[list[int]]:
    """Index lists of clips of ``frames`` frames (every ``stride``-th) from ``start``; 0 frames = all."""
    stride = max(1, stride)
    idx = list(range(start, n, stride))
    if frames <= 0 or len(idx) <= frames:
        return [idx] if idx else []
    out = [idx[i:i + frames] for i in range(0, len(idx) - frames + 1, frames)]
    return out[:max_clips] if max_clips > 0 else out


def sort_numeric(paths: list[Path]) -> list[Path]:
    def key(p: Path):
        digits = "".join(ch for ch in p.stem if ch.isdigit())
        return (int(digits) if digits else math.inf, p.name)
    return sorted(paths, key=key)


def crop_mask(shape: tuple[int, int], top: float, bottom: float, left: float, right: float) -> np.ndarray:
    """A mask that is True inside rows [top*h, bottom*h) and columns [left*w, right*w) (fractions)."""
    h, w = shape
    m = np.zeros((h, w), bool)
    m[int(top * h):int(bottom * h), int(left * w):int(right * w)] = True
    return m
