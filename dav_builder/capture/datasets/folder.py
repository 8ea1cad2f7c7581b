"""Plain inputs: an image folder or a video file, with a matching depth folder.

``<dir>/rgb/*.png|jpg`` (or ``<dir>/video.mp4`` / any ``.mp4 .avi .mkv .mov`` in ``<dir>``) and
``<dir>/depth/`` holding one file per frame, matched by file stem (for a video: by the frame number in
the depth file's name, its last run of digits, ``depth_first_index`` (reader option, default 0) being
the video's first frame; a frame without a depth file is that frame's error, never a shift of the
later frames; depth files without a number are ignored): ``.npy`` (float metres),
``.exr`` (float metres) or 16-bit ``.png`` (``depth_scale`` metres per unit, default 0.001).
Optional ``<dir>/intrinsics.txt`` (``fx fy cx cy``); otherwise a 60 degree horizontal field of
view is assumed.  No poses.  Reader options (``reader_options``): ``fps`` (default 30, or the
video's), ``depth_scale``, ``hfov_deg``.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from dav_builder.capture.base import Capture, CaptureError, FrameError, FrameInfo
from dav_builder.capture.datasets.common import (FrameFiles, SequenceCapture, checked_depth, fov_intrinsics, numbered,
                                                 pinhole)
from dav_builder.capture.validate import K_problem, fps_problem, size_problem
from dav_builder.capture.discover import Layout, register
from dav_builder.capture.imageio import encode_png, read_depth_file

NAME = "folder"
VIDEO_EXT = (".mp4", ".avi", ".mkv", ".mov")
DEPTH_EXT = (".npy", ".exr", ".png")
#: A depth file's frame number: the last run of digits in its name (``000123.npy``, ``depth_17.png``).
DEPTH_NUMBER = re.compile(r".*?(\d+)\D*\.(?:npy|exr|png)", re.IGNORECASE)


def _videos(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.suffix.lower() in VIDEO_EXT) if d.is_dir() else []


def find(root: Path) -> list[Path]:
    root = Path(root)
    cands = [root] + [p for p in root.rglob("*") if p.is_dir()]
    return sorted(d for d in cands if (d / "depth").is_dir() and not (d / "capture.json").exists()
                  and ((d / "rgb").is_dir() or _videos(d)))


def _depth_files(d: Path) -> list[Path]:
    return sorted(p for p in (d / "depth").iterdir() if p.suffix.lower() in DEPTH_EXT)


def _loader(scale: float):
    def load(p: Path, f) -> np.ndarray:
        if p.suffix.lower() == ".npy":
            d = np.load(p, allow_pickle=False)
            if d.ndim != 2:
                raise FrameError(p, f"depth must be 2-D, got {d.shape}")
            return d.astype(np.float32)
        if p.suffix.lower() == ".exr":
            import OpenEXR

            with OpenEXR.File(str(p)) as exr:
                h, w = next(iter(exr.channels().values())).pixels.shape[:2]
            return read_depth_file(p, "exr", h, w)
        d = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if d is None or d.dtype != np.uint16:
            raise FrameError(p, "depth PNG must be 16-bit greyscale")
        return d.astype(np.float32) * scale
    return load


def _K(d: Path, w: int, h: int, hfov: float) -> np.ndarray:
    f = d / "intrinsics.txt"
    if f.is_file():
        try:
            vals = [float(v) for v in f.read_text().split()]
        except (ValueError, UnicodeDecodeError):
            raise CaptureError(f, "expected 'fx fy cx cy' as numbers") from None
        if len(vals) != 4:
            raise CaptureError(f, "expected 'fx fy cx cy'")
        K = pinhole(*vals)
        problem = K_problem(K)
        if problem:
            raise CaptureError(f, problem)
        return K
    return fov_intrinsics(w, h, hfov)


class VideoCapture(Capture):
    """Frames decoded from a video file (PNG-encoded for the shards), depth from a folder."""

    concurrent_reads = False  # one decoder, read in order

    reader = NAME

    def __init__(self, path: Path, video: Path, capture_id: str, opts: dict):
        self.root, self.id, self.video = Path(path), capture_id, video
        cap = cv2.VideoCapture(str(video))
        if not cap.isOpened():
            raise CaptureError(video, "video cannot be opened")
        self.width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.fps = float(opts.get("fps") or cap.get(cv2.CAP_PROP_FPS) or 30.0)
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        cap.release()
        problem = fps_problem(self.fps) or size_problem(self.width, self.height)
        if problem:
            raise CaptureError(video, f"{problem} (read from the video; reader option fps overrides the rate)")
        first = int(opts.get("depth_first_index", 0))
        self.depths = {n - first: p for n, p in numbered(_depth_files(self.root), DEPTH_NUMBER) if n >= first}
        if not self.depths:
            raise CaptureError(self.root / "depth", "no depth files with a frame number in their name")
        # the container's frame count is an estimate: frames past the last depth file still get a row
        self.count = max(max(self.depths) + 1, int(count) if np.isfinite(count) and 0 < count < 1e8 else 0)
        self.K = _K(self.root, self.width, self.height, float(opts.get("hfov_deg", 60.0)))
        self._load = _loader(float(opts.get("depth_scale", 0.001)))
        self._cap = None
        self._pos = 0

    def frames(self):
        ext = next(iter(self.depths.values())).suffix
        for i in range(self.count):
            dep = self.depths.get(i, self.root / "depth" / f"(no depth file for frame {i}){ext}")
            yield FrameInfo(i, i / self.fps, f"{self.video}#{i}", str(dep), self.K, None)

    def read_rgb_bytes(self, frame: FrameInfo) -> tuple[bytes, str]:
        if self._cap is None or frame.index < self._pos:  # sequential reads; seek back only when asked
            self._cap = cv2.VideoCapture(str(self.video))
            self._pos = 0
        while self._pos < frame.index:
            self._cap.grab()
            self._pos += 1
        ok, bgr = self._cap.read()
        self._pos += 1
        if not ok:
            raise FrameError(frame.rgb, "video frame cannot be decoded (video shorter than the depth folder?)")
        return encode_png(bgr[..., ::-1]), "png"

    def read_depth(self, frame: FrameInfo) -> np.ndarray:
        return checked_depth(Path(frame.depth), frame.index, lambda p: self._load(p, None), self.height, self.width, 0.01)


def open_capture(path: Path, capture_id: str, opts: dict) -> Capture:
    path = Path(path)
    depths = _depth_files(path)
    videos = _videos(path)
    if videos and not (path / "rgb").is_dir():
        return VideoCapture(path, videos[0], capture_id, opts)
    rgbs = sorted(p for p in (path / "rgb").iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not rgbs:
        raise CaptureError(path / "rgb", "no PNG or JPEG images")
    by_stem = {d.stem: d for d in depths}
    # an RGB image without a depth file of the same name gets a FrameError when its depth is read
    ext = depths[0].suffix if depths else ".npy"  # name a missing file as its siblings are named
    pairs = [(r, by_stem.get(r.stem, path / "depth" / f"{r.stem}{ext}")) for r in rgbs]
    from dav_builder.capture.imageio import image_size, read_bytes

    w, h, _ = image_size(read_bytes(rgbs[0]), rgbs[0])
    K = _K(path, w, h, float(opts.get("hfov_deg", 60.0)))
    frames = [FrameFiles(i, r, d, K, None) for i, (r, d) in enumerate(pairs)]
    return SequenceCapture(path, capture_id, NAME, float(opts.get("fps", 30.0)), frames,
                           _loader(float(opts.get("depth_scale", 0.001))))


register(Layout(NAME, "an image folder rgb/ or a video, with a depth/ folder", find, open_capture, generic=True))
