"""An in-memory Capture for splitter tests: frames are described by small records, not files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from dav_builder.capture.base import Capture, FrameError, FrameInfo


@dataclass
class FakeFrame:
    index: int
    colour: tuple[int, int, int] = (120, 120, 120)
    depth: float = 5.0
    pose_z: float = 0.0
    broken: str | None = None
    """None, "metadata" (yielded as FrameError) or "file" (read fails)."""
    frozen_like: int | None = None
    """Reuse the depth pattern of this earlier frame bit for bit."""


class MemoryCapture(Capture):
    def __init__(self, frames: list[FakeFrame], capture_id: str = "mem", size: tuple[int, int] = (24, 32), fps=10.0):
        self.id = capture_id
        self.root = Path("/nonexistent")
        self.reader = "memory"
        self.fps = fps
        self.height, self.width = size
        self._frames = frames

    def frames(self) -> Iterator[FrameInfo | FrameError]:
        K = np.array([[20.0, 0, 15.5], [0, 20.0, 11.5], [0, 0, 1]])
        for f in self._frames:
            if f.broken == "metadata":
                yield FrameError(f"frames.jsonl:{f.index + 1}", "malformed JSON", index=f.index)
                continue
            pose = np.eye(4)
            pose[2, 3] = f.pose_z
            yield FrameInfo(f.index, f.index / self.fps, f"rgb/{f.index}.png", f"depth/{f.index}.npy", K, pose,
                            extra={"fake": f})

    def read_rgb_bytes(self, frame: FrameInfo) -> tuple[bytes, str]:
        f: FakeFrame = frame.extra["fake"]
        if f.broken == "file":
            raise FrameError(frame.rgb, "file is truncated", index=f.index)
        img = np.zeros((self.height, self.width, 3), np.uint8)
        img[:] = f.colour
        img[:, (f.index * 3) % self.width] = 255 - np.array(f.colour, np.uint8)  # a moving line
        ok, buf = cv2.imencode(".png", img[..., ::-1])
        return buf.tobytes(), "png"

    def read_depth(self, frame: FrameInfo) -> np.ndarray:
        f: FakeFrame = frame.extra["fake"]
        seed = f.frozen_like if f.frozen_like is not None else f.index
        d = np.full((self.height, self.width), f.depth, np.float32)
        d += np.random.default_rng(seed).random(d.shape, dtype=np.float32) * 0.01
        return d
