"""Reader of our own capture layout, ``dav-capture/1`` (CAPTURE_FORMAT.md), exactly as written there.

Policy for values the format does not name (documented here because readers of other programs
must agree): non-finite depth is "no depth" as the format says; a *negative* linear depth, or a
non-linear buffer value outside [0, 1], cannot come from any renderer and marks a corrupt file, so
the frame is refused with an error; a frame whose valid pixels fall below ``min_valid_fraction``
is refused as "no valid depth" (a cleared buffer, a loading screen).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from dav_builder.capture import depth as dconv
from dav_builder.capture.base import Capture, CaptureError, FrameError, FrameInfo, NoDepthError
from dav_builder.capture.validate import K_problem, fps_problem, index_problem, pose_problem, size_problem, time_problem
from dav_builder.capture.imageio import MAX_PIXELS, DEPTH_ENCODINGS, check_image, read_bytes, read_depth_file, safe_path

FORMAT = "dav-capture/1"
#: capture.json is a small header; a larger file is refused before it is read.
MAX_META_BYTES = 16 << 20
#: Buffer values may exceed [0, 1] by float rounding; beyond this they are corrupt.
_RANGE_TOL = 1e-3


def is_dav_capture(path: Path) -> bool:
    """True when ``path`` is a directory holding ``capture.json`` and ``frames.jsonl``."""
    path = Path(path)
    return (path / "capture.json").is_file() and (path / "frames.jsonl").is_file()


def _whole(value: Any) -> Any:
    """A JSON number that is a whole number (``640.0``) as an int; anything else unchanged."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _matrix(value: Any, shape: tuple[int, int], name: str) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name} is not a numeric matrix") from None
    if m.shape != shape:
        raise ValueError(f"{name} must be {shape[0]}x{shape[1]}, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError(f"{name} holds non-finite values")
    return m


class DavCapture(Capture):
    """A capture in the dav format; frames are streamed from ``frames.jsonl``."""

    reader = "dav"

    def __init__(
        self,
        path: str | Path,
        capture_id: str | None = None,
        max_pixels: int = MAX_PIXELS,
        min_valid_fraction: float = 0.01,
    ):
        self.root = Path(path)
        self.id = capture_id or self.root.name
        self.max_pixels = max_pixels
        self.min_valid_fraction = min_valid_fraction
        meta_path = self.root / "capture.json"
        if not (self.root / "frames.jsonl").is_file():
            raise CaptureError(self.root / "frames.jsonl", "file is missing")
        try:
            if not meta_path.is_file():
                raise FileNotFoundError(meta_path)
            if meta_path.stat().st_size > MAX_META_BYTES:
                raise CaptureError(meta_path, f"file is larger than {MAX_META_BYTES} bytes: not a capture header")
            meta = json.loads(meta_path.read_text())
        except FileNotFoundError:
            raise CaptureError(meta_path, "file is missing or not a regular file") from None
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, nesting too deep
            raise CaptureError(meta_path, f"malformed JSON: {exc}") from None
        except OSError as exc:
            raise CaptureError(meta_path, f"cannot read file: {exc.strerror or exc}") from None
        if not isinstance(meta, dict):
            raise CaptureError(meta_path, "must hold a JSON object")
        if meta.get("format") != FORMAT:
            raise CaptureError(meta_path, f"format is {meta.get('format')!r}, expected {FORMAT!r}")
        missing = [k for k in ("fps", "width", "height", "depth") if k not in meta]
        if missing:
            raise CaptureError(meta_path, f"missing key {missing[0]!r}")
        problem = fps_problem(meta["fps"]) or size_problem(_whole(meta["width"]), _whole(meta["height"]))
        if problem:
            raise CaptureError(meta_path, problem)
        self.fps = float(meta["fps"])
        self.width = int(_whole(meta["width"]))
        self.height = int(_whole(meta["height"]))
        dmeta = meta["depth"]
        if self.width * self.height > max_pixels:
            raise CaptureError(meta_path, f"frame size {self.width}x{self.height} exceeds {max_pixels} pixels")
        self.engine = str(meta.get("engine", ""))
        if not isinstance(dmeta, dict):
            raise CaptureError(meta_path, "depth must be a JSON object")
        self.encoding = dmeta.get("encoding")
        self.convention = dmeta.get("convention")
        if self.encoding not in DEPTH_ENCODINGS:
            raise CaptureError(meta_path, f"depth.encoding {self.encoding!r} is not one of {DEPTH_ENCODINGS}")
        if self.convention not in dconv.CONVENTIONS:
            raise CaptureError(meta_path, f"depth.convention {self.convention!r} is not one of {dconv.CONVENTIONS}")
        self.kind = dmeta.get("kind", "z")
        if self.kind not in ("z", "ray") or (self.kind == "ray" and self.convention != "linear"):
            raise CaptureError(meta_path, f"depth.kind {self.kind!r} is invalid (ray is only for linear)")
        try:
            self.scale = float(dmeta.get("scale", 1.0))
            self.near = None if dmeta.get("near") is None else float(dmeta["near"])
            self.far = None if dmeta.get("far") is None else float(dmeta["far"])
            self.invalid = tuple(float(v) for v in dmeta.get("invalid", []))
        except (TypeError, ValueError, OverflowError) as exc:
            raise CaptureError(meta_path, f"bad depth.scale/near/far/invalid: {exc}") from None
        if not (np.isfinite(self.scale) and 1e-9 <= self.scale <= 1e6):
            raise CaptureError(meta_path, f"depth.scale must be a number of metres per unit in [1e-9, 1e6], "
                                          f"got {self.scale}")
        if self.near is not None and not (np.isfinite(self.near) and self.near > 0):
            raise CaptureError(meta_path, f"depth.near must be a positive number of metres, got {self.near}")
        if self.far is not None and np.isnan(self.far):
            raise CaptureError(meta_path, "depth.far must be a number of metres, got NaN")
        if self.near is not None and self.far is not None and not self.far > self.near:
            raise CaptureError(meta_path, f"depth.near ({self.near}) must be smaller than depth.far ({self.far})")
        if self.convention != "linear":
            has_planes = self.near is not None and (self.far is not None or self.convention == "reversed_infinite")
            if has_planes:
                try:
                    dconv.check_planes(self.convention, self.near, self.far)
                except ValueError as exc:
                    raise CaptureError(meta_path, str(exc)) from None
            elif not self._first_frame_has_projection():
                raise CaptureError(
                    meta_path,
                    f"depth convention {self.convention!r} needs depth.near and depth.far "
                    "(or a projection matrix in every frame)",
                )

    def _first_frame_has_projection(self) -> bool:
        with open(self.root / "frames.jsonl", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.strip():
                    try:
                        rec = json.loads(line)
                    except (ValueError, RecursionError):
                        return False
                    return isinstance(rec, dict) and "projection" in rec
        return False

    # -- frames ---------------------------------------------------------------------------

    def frame_count_bound(self) -> int | None:
        """Lines of frames.jsonl: every entry :meth:`frames` yields is one line (blank ones are
        skipped)."""
        lines, last = 0, b"\n"
        try:
            with open(self.root / "frames.jsonl", "rb") as fh:
                while chunk := fh.read(1 << 20):
                    lines += chunk.count(b"\n")
                    last = chunk[-1:]
        except OSError:
            return None
        return lines + (last != b"\n")

    def frames(self) -> Iterator[FrameInfo | FrameError]:
        path = self.root / "frames.jsonl"
        last_index = -1
        with open(path, encoding="utf-8", errors="replace") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield FrameError(where, f"malformed JSON: {exc.msg}")
                    continue
                except RecursionError:
                    yield FrameError(where, "malformed JSON: nested too deeply")
                    continue
                try:
                    info = self._frame_info(rec, where, last_index)
                except FrameError as exc:
                    if exc.index is None and isinstance(rec, dict) and index_problem(rec.get("index")) is None:
                        exc.index = rec["index"] if rec["index"] > last_index else None
                    if exc.index is not None:
                        last_index = exc.index
                    yield exc
                    continue
                last_index = info.index
                yield info

    def _frame_info(self, rec: Any, where: str, last_index: int) -> FrameInfo:
        if not isinstance(rec, dict):
            raise FrameError(where, "a frame line must be a JSON object")
        index = rec.get("index")
        problem = index_problem(index)
        if problem:
            raise FrameError(where, problem)
        if index <= last_index:
            raise FrameError(where, f"frame index {index} does not increase (previous {last_index})")
        for key in ("rgb", "depth"):
            if not isinstance(rec.get(key), str):
                raise FrameError(where, f"missing or non-string {key!r}", index)
        try:
            rgb = safe_path(self.root, rec["rgb"])
            dep = safe_path(self.root, rec["depth"])
        except FrameError as exc:
            raise FrameError(where, f"{exc.path}: {exc.problem}", index) from None
        extra: dict[str, Any] = {"near": self.near, "far": self.far}
        try:
            K = _matrix(rec["K"], (3, 3), "K") if "K" in rec else None
            if "projection" in rec:
                P = _matrix(rec["projection"], (4, 4), "projection")
                Kp, near, far = dconv.intrinsics_from_projection(
                    P, self.width, self.height, convention_hint=self.convention
                )
                extra["projection"] = P
                if K is None:
                    K = Kp
                if self.near is None:
                    extra["near"] = near
                if self.far is None and self.convention != "reversed_infinite":
                    extra["far"] = far  # may be inf: an infinite far plane
            pose = _matrix(rec["cam_to_world"], (4, 4), "cam_to_world") if rec.get("cam_to_world") is not None else None
            time_s = rec.get("time", index / self.fps)
            if isinstance(time_s, bool) or not isinstance(time_s, (int, float)):
                raise ValueError(f"time must be a number of seconds, got {time_s!r}")
            time_s = float(time_s)
        except (TypeError, ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            raise FrameError(where, str(exc), index) from None
        if K is None:
            raise FrameError(where, "frame has neither K nor projection", index)
        problem = K_problem(K) or (pose_problem(pose) if pose is not None else None) or time_problem(time_s)
        for plane in ("near", "far"):
            v = extra.get(plane)
            if v is not None and not (v > 0 and (np.isfinite(v) or plane == "far")):
                problem = problem or f"the projection gives {plane} = {v!r}; it must be a positive number of metres"
        if problem:
            raise FrameError(where, problem, index)
        if self.convention != "linear" and extra["near"] is None:
            raise FrameError(where, "no near plane: capture.json has no depth.near and the frame no projection", index)
        return FrameInfo(index, time_s, rgb, dep, K, pose, extra)

    # -- loaders --------------------------------------------------------------------------

    def read_rgb_bytes(self, frame: FrameInfo) -> tuple[bytes, str]:
        """The image file's bytes, checked cheaply: header size, pixel limit, not truncated."""
        try:
            data = read_bytes(Path(frame.rgb))
            ext = check_image(data, frame.rgb, (self.height, self.width), self.max_pixels)
        except FrameError as exc:
            exc.index = frame.index if exc.index is None else exc.index
            raise
        return data, ext

    def read_depth(self, frame: FrameInfo) -> np.ndarray:
        """Planar metres (float32, 0 = invalid) of the frame; see the module's policy."""
        try:
            return self._read_depth(frame)
        except FrameError as exc:
            exc.index = frame.index if exc.index is None else exc.index
            raise

    def _read_depth(self, frame: FrameInfo) -> np.ndarray:
        path = Path(frame.depth)
        stored = read_depth_file(path, self.encoding, self.height, self.width)
        bad = dconv.nonfinite(stored)  # None: every value is finite (no mask built)
        for value in self.invalid:  # declared "no depth" markers are exempt from the range check
            hit = stored == value
            bad = hit if bad is None else bad | hit
        usable = None if bad is None else ~bad
        lo, hi = _masked_range(stored, usable)
        if self.convention == "linear":
            if lo < 0:
                negative = int(np.count_nonzero(stored < 0 if usable is None else usable & (stored < 0)))
                raise FrameError(
                    path, f"negative depth in {negative} pixels: a linear depth cannot be negative (corrupt file?)"
                )
        elif lo <= hi and (lo < -_RANGE_TOL or hi > 1 + _RANGE_TOL):
            raise FrameError(
                path,
                f"{self.convention} depth buffer values must lie in [0, 1], found {lo:g}..{hi:g}",
            )
        try:
            z = dconv.to_planar_metres(
                stored,
                self.convention,
                near=None if frame.extra.get("near") is None else float(frame.extra["near"]),
                far=None if frame.extra.get("far") is None else float(frame.extra["far"]),
                scale=self.scale,
                kind=self.kind,
                K=frame.K,
                invalid=self.invalid,
            )
        except ValueError as exc:
            raise FrameError(path, str(exc)) from None
        valid = _nonzero(z) / z.size
        if valid < self.min_valid_fraction:
            raise NoDepthError(path, f"no valid depth: {valid:.1%} of pixels valid (NaN, inf, sky or out of range)")
        return z


def _masked_range(stored: np.ndarray, usable: np.ndarray | None) -> tuple[float, float]:
    """Smallest and largest stored value where ``usable`` (everywhere when None; ``inf, -inf`` where
    nothing is): OpenCV's (masked) min/max on a 2-D float32 frame (one pass, 8x faster than numpy's
    ``where=``), numpy otherwise.  The values are the same either way (no arithmetic)."""
    if stored.ndim == 2 and stored.dtype == np.float32 and stored.size:
        if usable is None:
            lo, hi, _, _ = cv2.minMaxLoc(stored)
            return float(lo), float(hi)
        if not usable.any():
            return float("inf"), float("-inf")
        lo, hi, _, _ = cv2.minMaxLoc(stored, mask=usable.view(np.uint8))
        return float(lo), float(hi)
    where = True if usable is None else usable
    return float(np.min(stored, where=where, initial=np.inf)), float(np.max(stored, where=where, initial=-np.inf))


def _nonzero(z: np.ndarray) -> int:
    """Pixels with depth (non-zero): OpenCV's count on a 2-D float32 frame (4x faster), numpy otherwise."""
    if z.ndim == 2 and z.dtype == np.float32:
        return int(cv2.countNonZero(z))
    return int(np.count_nonzero(z))

