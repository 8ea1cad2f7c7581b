"""A range of a capture on an object store, fetched as it is read.

A worker that processes a whole capture from an object store copies it to its local disk first
(:func:`dav_builder.storage.stage_tree`).  A worker that processes one *range* of a long capture
reads only a part of it: its own frames and, until the next range takes over, some frames past
its end (see :mod:`.ranges`).  Copying the whole capture there would make every range's worker
download all of it.  Instead, for captures in the dav format (whose frame files are exactly the
ones ``frames.jsonl`` names) the worker downloads ``capture.json`` and ``frames.jsonl`` only, and
:class:`FetchingCapture` downloads the files of a frame the first time the frame is read,
together with those of the next ``chunk`` frames (one concurrent batch per chunk), so a range's
worker fetches what it reads, a chunk more at most.

Other layouts are copied whole: their readers may read files that a frame's metadata does not
name (per-frame camera files, archives).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from dav_builder.capture.base import Capture, FrameData, FrameError, FrameInfo
from dav_builder.storage import Store

#: The files of a dav capture that are read before any frame: everything else is a frame file.
DAV_METADATA = ("capture.json", "frames.jsonl")


def stage_dav_metadata(url: str, dest: Path) -> Path:
    """Download a dav capture's header files from ``url`` into ``dest``."""
    store = Store(url)
    dest.mkdir(parents=True, exist_ok=True)
    for name in DAV_METADATA:
        if store.exists(name):
            store.fs.get_file(store.join(name), str(dest / name))
    return dest


def _file_of(location: str) -> str:
    """The file behind a frame's location (``video.mp4#12`` is in ``video.mp4``)."""
    return location.split("#", 1)[0]


class FetchingCapture(Capture):
    """``inner`` (opened on a local directory holding only the header files of the capture at
    ``url``) with each frame's files downloaded from ``url`` before the frame is read."""

    def __init__(self, inner: Capture, url: str, chunk: int = 32):
        self._inner = inner
        self._store = Store(url)
        self._chunk = max(1, chunk)
        self._roots = {os.path.normpath(str(inner.root)), os.path.realpath(str(inner.root))}
        self._lock = threading.Lock()
        self._fetched: set[str] = set()
        # the frames' metadata, read only as far as the frames asked for (and a chunk beyond): a
        # range's worker of a long capture does not parse the metadata of the frames after it
        self._meta = inner.frames()
        self._order: list[FrameInfo] = []
        self._pos: dict[int, int] = {}
        self.fetched_bytes = 0
        for name in ("id", "root", "reader", "concurrent_reads", "fps", "width", "height"):
            setattr(self, name, getattr(inner, name))

    def __getattr__(self, name: str) -> Any:  # the reader's own attributes (depth convention...)
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)

    # -- the capture's frames, as the inner reader gives them ---------------------------------

    def frames(self) -> Iterator[FrameInfo | FrameError]:
        return self._inner.frames()

    def read_rgb_bytes(self, frame: FrameInfo) -> tuple[bytes, str]:
        self._ensure(frame)
        return self._inner.read_rgb_bytes(frame)

    def read_depth(self, frame: FrameInfo) -> np.ndarray:
        self._ensure(frame)
        return self._inner.read_depth(frame)

    def read_rgb(self, frame: FrameInfo) -> np.ndarray:
        self._ensure(frame)
        return self._inner.read_rgb(frame)

    def read_frame(self, frame: FrameInfo, small_side: int = 128, fine_side: int = 0) -> FrameData:
        self._ensure(frame)
        return self._inner.read_frame(frame, small_side, fine_side)

    # -- fetching -------------------------------------------------------------------------------

    def _rel(self, location: str) -> str | None:
        """A frame file's path relative to the capture, or None when it is not inside it."""
        path = os.path.normpath(_file_of(location))
        for root in self._roots:
            if path.startswith(root + os.sep):
                return os.path.relpath(path, root).replace(os.sep, "/")
        return None

    def _batch(self, frame: FrameInfo) -> list[FrameInfo]:
        """``frame`` and the frames after it in the capture, up to ``chunk`` in all."""
        while (pos := self._pos.get(frame.index)) is None or len(self._order) < pos + self._chunk:
            info = next(self._meta, None)
            if info is None:
                break
            if not isinstance(info, FrameError):
                self._pos[info.index] = len(self._order)
                self._order.append(info)
        pos = self._pos.get(frame.index)
        return [frame] if pos is None else self._order[pos:pos + self._chunk]

    def _ensure(self, frame: FrameInfo) -> None:
        """Download the files of ``frame`` and of the next frames of its chunk not yet fetched."""
        with self._lock:
            wanted: dict[str, str] = {}
            for info in self._batch(frame):
                for location in (info.rgb, info.depth):
                    rel = self._rel(location)
                    if rel is not None and rel not in self._fetched:
                        wanted[rel] = _file_of(location)
            if not wanted:
                return
            self._download(wanted)
            # a file missing on the store stays missing here: the reader reports it as it would locally
            self._fetched.update(wanted)

    def _download(self, wanted: dict[str, str]) -> None:
        """Download ``{relative path: local path}``: in one call, which the filesystem client runs
        concurrently, or, when a file is missing on the store, file by file around it."""
        fs, rels = self._store.fs, list(wanted)
        try:
            fs.get([self._store.join(rel) for rel in rels], [wanted[rel] for rel in rels])
        except FileNotFoundError:
            for rel in rels:
                try:
                    Path(wanted[rel]).parent.mkdir(parents=True, exist_ok=True)
                    fs.get_file(self._store.join(rel), wanted[rel])
                except FileNotFoundError:
                    Path(wanted[rel]).unlink(missing_ok=True)
        self.fetched_bytes += sum(os.path.getsize(wanted[rel]) for rel in rels if os.path.exists(wanted[rel]))
