"""Finding captures under input paths and opening them with the right reader.

Each layout registers a *finder* (a directory -> the captures it holds, or none) and an *opener*.
:func:`find_captures` returns :class:`CaptureRef` s: small, picklable handles that a Ray worker
opens with :func:`open_capture`.  Capture ids are paths relative to the input root, so they are
stable across runs and machines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from dav_builder.capture.base import Capture, CaptureError, safe_text
from dav_builder.capture.dav import DavCapture, is_dav_capture


@dataclass(frozen=True)
class CaptureRef:
    """Where a capture is and which reader opens it."""

    path: str
    reader: str
    capture_id: str
    options: tuple[tuple[str, object], ...] = field(default=())
    """Reader options as sorted (key, value) pairs (hashable and picklable)."""


Finder = Callable[[Path], list[Path]]
Opener = Callable[[Path, str, dict], Capture]


@dataclass(frozen=True)
class Layout:
    name: str
    description: str
    find: Finder
    open: Opener
    generic: bool = False
    """A catch-all layout (rgb/ + depth/ folders): it never claims a directory inside or around a
    capture that a specific layout recognised."""


def _find_dav(root: Path) -> list[Path]:
    if is_dav_capture(root):
        return [root]
    return sorted(p.parent for p in root.rglob("capture.json") if is_dav_capture(p.parent))


LAYOUTS: dict[str, Layout] = {}


def register(layout: Layout) -> None:
    """Add a reader layout (public data set readers register themselves on import)."""
    LAYOUTS[layout.name] = layout


register(Layout("dav", "dav-capture/1 (capture.json + frames.jsonl)", _find_dav,
                lambda p, cid, opts: DavCapture(p, cid, min_valid_fraction=float(opts.get("min_valid_fraction", 0.01)))))


def _load_dataset_readers() -> None:
    """Import the public data set readers so they register (they are optional extras)."""
    try:
        import dav_builder.capture.datasets as datasets

        for name in getattr(datasets, "READERS", ()):
            __import__(f"dav_builder.capture.datasets.{name}")
    except ImportError:
        pass


def _capture_id(path: Path, root: Path) -> str:
    try:
        rel = path.resolve().relative_to(root.resolve())
    except ValueError:
        rel = Path(path.name)
    return safe_text(rel.as_posix() if rel.parts else root.resolve().name)


def find_captures(paths: Iterable[Path], reader_options: dict | None = None) -> list[CaptureRef]:
    """All captures under ``paths``, sorted by id; an input matching no layout is an error."""
    _load_dataset_readers()
    refs: dict[str, CaptureRef] = {}
    opts = tuple(sorted((reader_options or {}).items()))
    for raw in paths:
        root = Path(raw)
        if not root.exists():
            raise CaptureError(root, "input path does not exist")
        found = False
        claimed: set[Path] = set()
        for layout in sorted(LAYOUTS.values(), key=lambda lay: lay.generic):
            for cap in layout.find(root):
                cap = cap.resolve()
                if cap in claimed:
                    continue
                if layout.generic and any(cap in c.parents or c in cap.parents for c in claimed):
                    continue
                claimed.add(cap)
                found = True
                base = root if root.is_dir() else root.parent
                cid = _capture_id(cap, base) if cap != root.resolve() else safe_text(root.resolve().name)
                if cid in refs:
                    cid = safe_text(f"{root.resolve().name}/{cid}")
                refs[cid] = CaptureRef(str(cap), layout.name, cid, opts)
        if not found:
            known = "; ".join(f"{lay.name}: {lay.description}" for lay in LAYOUTS.values())
            raise CaptureError(root, f"no capture found; known layouts are {known}")
    return [refs[k] for k in sorted(refs)]


def open_capture(ref: CaptureRef) -> Capture:
    """Open a capture found by :func:`find_captures` (raises CaptureError when it cannot be read)."""
    _load_dataset_readers()
    layout = LAYOUTS.get(ref.reader)
    if layout is None:
        raise CaptureError(ref.path, f"unknown reader {ref.reader!r}")
    return layout.open(Path(ref.path), ref.capture_id, dict(ref.options))
