"""What the public data set readers share: a capture made of per-frame file records.

A reader lists its frames (cheap: file names and small text files), and supplies one function
that turns a depth file into planar metres.  RGB files are returned as their own bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from dav_builder.capture.base import Capture, CaptureError, FrameError, FrameInfo, NoDepthError
from dav_builder.capture.imageio import MAX_PIXELS, check_image, file_problem, image_size, read_bytes
from dav_builder.capture.validate import K_problem, fps_problem, index_problem, pose_problem


@dataclass(frozen=True)
class FrameFiles:
    index: int
    rgb: Path
    depth: Path
    K: np.ndarray | None
    cam_to_world: np.ndarray | None = None
    problem: str | None = None
    """Why the frame cannot be used (its metadata file is missing or malformed), or None."""


DepthLoader = Callable[[Path, FrameFiles], np.ndarray]


class SequenceCapture(Capture):
    """A capture from a list of :class:`FrameFiles` and a depth loader returning metres.

    The depth loader returns planar metres with 0 (or a non-finite value) where invalid; this
    class checks size and validity and names the file in every error.
    """

    def __init__(self, root: Path, capture_id: str, reader: str, fps: float, frames: list[FrameFiles],
                 load_depth: DepthLoader, min_valid_fraction: float = 0.01):
        self.root = Path(root)
        self.id = capture_id
        self.reader = reader
        self.fps = float(fps)
        self._frames = frames
        self._load_depth = load_depth
        self.min_valid_fraction = min_valid_fraction
        if not frames:
            raise CaptureError(root, f"{reader}: no frames found")
        problem = fps_problem(self.fps)
        if problem:
            raise CaptureError(root, f"{reader}: {problem} (reader option fps)")
        try:
            self.width, self.height, _ = image_size(read_bytes(frames[0].rgb), frames[0].rgb)
        except FrameError as exc:
            raise CaptureError(frames[0].rgb, f"first RGB frame unreadable: {exc.problem}") from None

    def frames(self) -> Iterator[FrameInfo | FrameError]:
        last = -1
        for f in self._frames:
            problem = frame_problem(f)
            if problem is None and f.index <= last:
                problem = f"frame number {f.index} does not increase (previous {last})"
            if problem:
                yield FrameError(f.rgb, problem, f.index if index_problem(f.index) is None and f.index > last else None)
                continue
            last = f.index
            yield FrameInfo(f.index, f.index / self.fps, str(f.rgb), str(f.depth), f.K, f.cam_to_world,
                            extra={"files": f})

    def read_rgb_bytes(self, frame: FrameInfo) -> tuple[bytes, str]:
        data = read_bytes(Path(frame.rgb))
        return data, check_image(data, frame.rgb, (self.height, self.width), MAX_PIXELS)

    def read_depth(self, frame: FrameInfo) -> np.ndarray:
        return checked_depth(Path(frame.depth), frame.index, lambda p: self._load_depth(p, frame.extra["files"]),
                             self.height, self.width, self.min_valid_fraction)


def frame_problem(f: FrameFiles) -> str | None:
    """Why a reader's frame record cannot be used (index, intrinsics, pose), or None."""
    if f.problem:
        return f.problem
    if f.K is None:
        return "no intrinsics"
    return (index_problem(f.index) or K_problem(f.K)
            or (pose_problem(f.cam_to_world) if f.cam_to_world is not None else None))


def frame_number(name: str, pattern: re.Pattern[str]) -> int | None:
    """The frame number that ``pattern``'s first group captures in file ``name``, or None for a
    file that is not a frame (a stray file: notes, thumbnails, editor backups are ignored)."""
    m = pattern.fullmatch(name)
    return int(m.group(1)) if m else None


def numbered(files, pattern: re.Pattern[str]) -> list[tuple[int, Path]]:
    """(frame number, path) of the files whose name matches ``pattern``, by frame number."""
    out = [(n, Path(p)) for p in files if (n := frame_number(Path(p).name, pattern)) is not None]
    return sorted(out, key=lambda t: (t[0], t[1].name))


def checked_depth(path: Path, index: int, load, height: int, width: int, min_valid_fraction: float) -> np.ndarray:
    """Load planar metres with ``load(path)`` and check size and validity; errors name ``path``."""
    problem = file_problem(path)
    if problem:
        raise FrameError(path, problem, index)
    try:
        z = np.asarray(load(path), dtype=np.float32)
    except FrameError:
        raise
    except Exception as exc:  # a reader's decoder failing on a corrupt file
        raise FrameError(path, f"depth cannot be decoded: {exc}", index) from None
    if z.shape != (height, width):
        raise FrameError(path, f"depth is {z.shape[1]}x{z.shape[0]} but the RGB frames are {width}x{height}", index)
    z = np.where(np.isfinite(z) & (z > 0), z, 0.0).astype(np.float32)
    valid = float((z > 0).mean())
    if valid < min_valid_fraction:
        raise NoDepthError(path, f"no valid depth: {valid:.1%} of pixels valid", index)
    return z


def invert_pose(world_to_cam: np.ndarray) -> np.ndarray:
    """Camera-to-world from a rigid world-to-camera 4x4."""
    R, t = world_to_cam[:3, :3], world_to_cam[:3, 3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ t
    return out


def pinhole(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def fov_intrinsics(width: int, height: int, hfov_deg: float = 60.0) -> np.ndarray:
    """A pinhole guess from a horizontal field of view (square pixels, centred principal point)."""
    fx = (width / 2) / np.tan(np.radians(hfov_deg) / 2)
    return pinhole(fx, fx, (width - 1) / 2, (height - 1) / 2)


def quat_to_matrix(qx: float, qy: float, qz: float, qw: float) -> np.ndarray:
    q = np.array([qw, qx, qy, qz], dtype=np.float64)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
