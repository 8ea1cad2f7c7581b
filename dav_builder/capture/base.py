"""The in-memory contract every capture reader fulfils.

A reader turns one recording (our own ``dav-capture/1`` layout, a public data set's scene, a video
with a depth folder) into a :class:`Capture`: cheap metadata up front, frame metadata streamed as
:class:`FrameInfo` records, and per-frame loaders that decode only what is asked for.  Every reader
returns depth as planar metres (distance along the optical axis), ``float32``, with ``0`` marking
pixels that have no valid depth, so the rest of the builder never sees a depth convention.

Errors are values, not crashes: a frame that cannot be read raises :class:`FrameError` from its
loader (or is yielded as one by :meth:`Capture.frames`), naming the file and the problem; the
builder records it and goes on with the other frames.  A recording that cannot be read at all
raises :class:`CaptureError` when it is opened.
"""

from __future__ import annotations

import abc
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np


def safe_text(text: object) -> str:
    """``text`` as a string that encodes to UTF-8 (manifest, JSON, parquet and uuid5 all need that).

    File names are bytes on POSIX; Python decodes undecodable bytes as lone surrogates
    (``surrogateescape``), which no UTF-8 writer accepts.  Those bytes become ``\\xNN`` escapes:
    stable across runs, readable, and never an encoding error further down.
    """
    s = str(text)
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        pass
    try:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # lone surrogates that are not escaped bytes (e.g. "\\ud800" in JSON)
        return s.encode("utf-8", "backslashreplace").decode("utf-8")


class CaptureError(Exception):
    """The whole capture is unusable (missing or malformed ``capture.json``, unknown convention...)."""

    def __init__(self, path: str | Path, problem: str):
        self.path = safe_text(path)
        self.problem = safe_text(problem)
        super().__init__(f"{self.path}: {self.problem}")


class FrameError(Exception):
    """One frame is unusable; ``path`` names the offending file (or ``frames.jsonl:LINE``)."""

    def __init__(self, path: str | Path, problem: str, index: int | None = None):
        self.path = safe_text(path)
        self.problem = safe_text(problem)
        self.index = index
        super().__init__(f"{self.path}: {self.problem}")


@contextlib.contextmanager
def _as_frame_error(path: str, index: int) -> Iterator[None]:
    """Turn any exception a reader or decoder raises for one file into that frame's FrameError
    (a decoder's own exception, a reader's bug): one bad file never ends the capture."""
    try:
        yield
    except FrameError as exc:
        if exc.index is None:
            exc.index = index
        raise
    except Exception as exc:
        raise FrameError(path, f"unexpected {type(exc).__name__} while reading: {exc}", index) from exc


class NoDepthError(FrameError):
    """A frame whose depth buffer holds (almost) no valid depth: a menu or loading screen, a
    cleared buffer.  Not a broken file: the build reports it as ``no_depth``, not ``unreadable``."""


@dataclass(frozen=True)
class FrameInfo:
    """Metadata of one frame; nothing decoded yet.

    ``index`` is the frame's number in the capture (gaps are dropped frames) and is what the
    dataset stores as the frame's temporal position.
    """

    index: int
    time: float
    rgb: str
    """Where the RGB image is (a path, or ``video.mp4#123`` for a frame inside a container)."""
    depth: str
    """Where the depth frame is."""
    K: np.ndarray
    """3x3 pinhole intrinsics in pixels (float64), OpenCV convention."""
    cam_to_world: np.ndarray | None = None
    """4x4 camera-to-world pose (float64), OpenCV camera axes, or None when unknown."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    """Reader-private data (per-frame near/far, projection matrix, container offsets...)."""


@dataclass
class FrameData:
    """One decoded frame, as the builder consumes it."""

    info: FrameInfo
    rgb_bytes: bytes
    """The RGB image's encoded bytes, copied to the shard untouched."""
    rgb_ext: str
    """``"png"`` or ``"jpg"``: the encoding of ``rgb_bytes``."""
    rgb_small: np.ndarray
    """The RGB image reduced so that its longer side is at most ``small_side`` (uint8 HxWx3, RGB order)."""
    depth: np.ndarray
    """Planar metres, float32 HxW at full resolution, 0 where invalid."""
    rgb_fine: np.ndarray | None = None
    """The RGB image reduced to at most ``fine_side`` (uint8 HxWx3, RGB order), when asked for:
    the clip checks that need more detail than ``rgb_small`` use it instead of decoding the frame
    again."""
    depth_npy: bytes | None = None
    """``depth`` encoded as a shard member, when the reader's caller encoded it ahead."""


class Capture(abc.ABC):
    """One recording, read lazily.

    Subclasses set the attributes in ``__init__`` (cheap: read the header, not the frames) and
    implement :meth:`frames`, :meth:`read_rgb_bytes` and :meth:`read_depth`.
    """

    #: Stable identifier: the capture's path relative to the input root, or the reader's id.
    id: str
    #: Directory or file the capture was opened from.
    root: Path
    #: Short name of the reader, e.g. ``"dav"``, ``"vkitti2"``.
    reader: str
    #: Frames may be read concurrently from several threads (False for sequential sources: videos).
    concurrent_reads: bool = True
    fps: float
    width: int
    height: int

    @abc.abstractmethod
    def frames(self) -> Iterator[FrameInfo | FrameError]:
        """Stream frame metadata in time order.

        A frame whose metadata is broken (malformed JSON line, non-increasing index, path leaving
        the capture...) is yielded as a :class:`FrameError` in its place; iteration goes on.
        """

    @abc.abstractmethod
    def read_rgb_bytes(self, frame: FrameInfo) -> tuple[bytes, str]:
        """Return the frame's encoded RGB image and its extension (``"png"`` or ``"jpg"``).

        Readers whose source is neither (a video, an HDF5 array) encode the frame as PNG.
        Raises :class:`FrameError` for a missing, truncated, undecodable or oversized image.
        """

    @abc.abstractmethod
    def read_depth(self, frame: FrameInfo) -> np.ndarray:
        """Return planar metric depth, float32 (height, width), 0 where invalid.

        Raises :class:`FrameError` when the file is missing or undecodable, its size differs from
        the RGB size, it holds values no convention allows, or no pixel is valid.
        """

    def frame_count_bound(self) -> int | None:
        """An upper bound on the entries :meth:`frames` yields, found without parsing them (None
        when a reader cannot tell cheaply): the build splits only captures that may be longer
        than a range into frame ranges, and counts those exactly."""
        return None

    # -- conveniences built on the three methods above -------------------------------------

    def read_rgb(self, frame: FrameInfo) -> np.ndarray:
        """Decode the frame's RGB at full size (uint8 HxWx3)."""
        from dav_builder.capture.imageio import decode_rgb

        data, _ = self.read_rgb_bytes(frame)
        return decode_rgb(data, frame.rgb, expect_size=(self.height, self.width))

    def read_frame(self, frame: FrameInfo, small_side: int = 128, fine_side: int = 0) -> FrameData:
        """Read everything the builder needs from one frame, decoding the RGB once, reduced
        (``fine_side`` > 0 also keeps the RGB reduced to up to that size)."""
        from dav_builder.capture.imageio import as_rgb8, decode_levels

        with _as_frame_error(frame.rgb, frame.index):
            data, ext = self.read_rgb_bytes(frame)
            data, ext = as_rgb8(data, frame.rgb, ext)  # the dataset holds 8-bit RGB only
            small, fine = decode_levels(data, frame.rgb, small_side, fine_side, expect_size=(self.height, self.width))
            assert small is not None
        with _as_frame_error(frame.depth, frame.index):
            depth = self.read_depth(frame)
        return FrameData(info=frame, rgb_bytes=data, rgb_ext=ext, rgb_small=small, depth=depth, rgb_fine=fine)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, {self.width}x{self.height} @ {self.fps} fps)"
