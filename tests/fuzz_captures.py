"""A seeded generator of broken captures (dav-capture/1) for the robustness tests and the figures
in docs/robustness.md.

Every field of ``capture.json`` and of ``frames.jsonl`` is corrupted with values of the wrong
type, out of range or non-finite, on one frame or on all; whole files are truncated, emptied or
replaced by garbage; frame files become truncated, empty, random, FIFOs, directories, links out
of the capture, 16-bit, RGBA, grey or palette PNGs, wrongly sized or depth with no valid pixel;
folders get stray files and names that are not UTF-8.  :func:`write_fuzz_set` writes the good
captures and ``count`` broken ones (each with one to three defects) and returns what it planted.

Run as a script to write a set by hand: ``python tests/fuzz_captures.py OUT --seed 0 --count 50``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from capture_fixtures import write_dav_capture  # noqa: E402

W, H = 64, 48

# values of the wrong type, non-finite, out of range; None removes the key
BAD_VALUES: list[Any] = [None, float("nan"), float("inf"), float("-inf"), 0, -1, 2**70, 1e308, -1e308, "x", "",
                         [], {}, True, [[1, 2], [3]], 0.5]
META_FIELDS = ["format", "engine", "fps", "width", "height", "depth", "depth.encoding", "depth.convention",
               "depth.kind", "depth.scale", "depth.near", "depth.far", "depth.invalid"]
FRAME_FIELDS = ["index", "time", "rgb", "depth", "K", "projection", "cam_to_world"]
# values that only make sense for one field
SPECIAL: dict[str, list[Any]] = {
    "K": [np.zeros((3, 3)).tolist(), [[-50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]], [[50.0, 0, 32], [0, 0.0, 24], [0, 0, 1]],
          [[1e300, 0, 32], [0, 1e300, 24], [0, 0, 1]], [[50.0, 0, 32], [0, 50.0, 24], [1, 1, 1]]],
    "cam_to_world": [np.zeros((4, 4)).tolist(), np.diag([0.0, 0.0, 0.0, 1.0]).tolist(),
                     (np.eye(4) * 1e300).tolist(), [[1, 0, 0, 1e300], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
                     np.diag([-1.0, 1.0, 1.0, 1.0]).tolist(), np.diag([3.0, 3.0, 3.0, 1.0]).tolist()],
    "projection": [np.zeros((4, 4)).tolist(), np.eye(4).tolist(), (np.eye(4) * float("nan")).tolist()],
    "index": [2**70, -5, 2**31, 1.5, "3"],
    "rgb": ["../outside.png", "/etc/passwd", "rgb/none.png", "rgb", "rgb/\u0000.png", "\ud800.png", "."],
    "depth": ["../outside.npy", "/etc/passwd", "depth/none.npy", "depth", "rgb/000000.png"],
    "time": [float("nan"), 1e400, "noon"],
    "fps": [1e-300, 1e300, "30"],
    "width": [65, 2**31, 64.5],
    "depth.scale": [1e-300, 1e300],
    "depth.invalid": [["x"], [float("nan")], 5],
}


@dataclass
class Broken:
    """One broken capture: its folder (relative to the set's root) and what was done to it."""

    name: str
    defects: list[str] = field(default_factory=list)


def base_capture(root: Path, frames: int) -> Path:
    return write_dav_capture(root, frames=frames, width=W, height=H, encoding="npy")


def _set_path(obj: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        if not isinstance(obj.get(k), dict):
            return
        obj = obj[k]
    if value is None:
        obj.pop(keys[-1], None)
    else:
        obj[keys[-1]] = value


def corrupt_meta(cap: Path, rng: np.random.Generator, fieldname: str, value: Any) -> str:
    meta = json.loads((cap / "capture.json").read_text())
    _set_path(meta, fieldname, value)
    (cap / "capture.json").write_text(json.dumps(meta))
    return f"capture.json {fieldname} = {value!r:.40}"


def corrupt_frames(cap: Path, rng: np.random.Generator, fieldname: str, value: Any, every: bool) -> str:
    lines = [json.loads(s) for s in (cap / "frames.jsonl").read_text().splitlines() if s.strip()]
    which = range(len(lines)) if every else [int(rng.integers(len(lines)))]
    for i in which:
        if value is None:
            lines[i].pop(fieldname, None)
        else:
            lines[i][fieldname] = value
    (cap / "frames.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    return f"frames.jsonl {fieldname} = {value!r:.40} on {'every frame' if every else f'frame {which[0]}'}"


def _whole_file(cap: Path, rng: np.random.Generator, name: str, how: str) -> str:
    p = cap / name
    data = p.read_bytes()
    if how == "truncate":
        p.write_bytes(data[: int(rng.integers(1, max(2, len(data) - 1)))])
    elif how == "empty":
        p.write_bytes(b"")
    elif how == "garbage":
        p.write_bytes(rng.bytes(int(rng.integers(1, 400))))
    elif how == "not_utf8":
        p.write_bytes(data[:20] + b"\xff\xfe\x80" + data[20:])
    elif how == "deep":
        p.write_text("[" * 100000 + "]" * 100000 + "\n")
    elif how == "array":
        p.write_text("[1, 2, 3]\n")
    elif how == "shuffled":
        lines = data.splitlines()
        rng.shuffle(lines)
        p.write_bytes(b"\n".join(lines) + b"\n")
    elif how == "duplicated":
        lines = data.splitlines()
        p.write_bytes(b"\n".join(lines + lines) + b"\n")
    return f"{name} {how}"


def _frame_file(cap: Path, rng: np.random.Generator, kind: str, how: str) -> str:
    files = sorted((cap / kind).iterdir())
    p = files[int(rng.integers(len(files)))]
    data = p.read_bytes()
    if how == "truncate":
        p.write_bytes(data[: int(rng.integers(1, len(data)))])
    elif how == "empty":
        p.write_bytes(b"")
    elif how == "random":
        p.write_bytes(rng.bytes(len(data)))
    elif how == "fifo":
        p.unlink()
        os.mkfifo(p)
    elif how == "directory":
        p.unlink()
        p.mkdir()
    elif how == "link_out":
        p.unlink()
        p.symlink_to("/etc/hostname")
    elif how == "dangling_link":
        p.unlink()
        p.symlink_to(cap / "nowhere")
    elif how == "missing":
        p.unlink()
    elif how == "flip_bytes":
        b = bytearray(data)
        for i in rng.integers(len(b), size=8):
            b[int(i)] ^= 0xFF
        p.write_bytes(bytes(b))
    elif kind == "rgb":
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if how == "png16":
            cv2.imwrite(str(p), img.astype(np.uint16) * 257)
        elif how == "rgba":
            cv2.imwrite(str(p), cv2.cvtColor(img, cv2.COLOR_BGR2BGRA))
        elif how == "grey":
            cv2.imwrite(str(p), cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
        elif how == "jpeg_as_png":
            p.write_bytes(cv2.imencode(".jpg", img)[1].tobytes())
        elif how == "wrong_size":
            cv2.imwrite(str(p), cv2.resize(img, (W + 3, H)))
        elif how == "huge_header":
            from capture_fixtures import png_claiming_size

            p.write_bytes(png_claiming_size(100_000, 100_000))
    else:
        if how == "nan":
            np.save(p, np.full((H, W), np.nan, np.float32))
        elif how == "wrong_shape":
            np.save(p, np.ones((H, W + 1), np.float32))
        elif how == "negative":
            np.save(p, -np.ones((H, W), np.float32))
        elif how == "object_pickle":
            np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        elif how == "int_dtype":
            np.save(p, np.ones((H, W), np.int64))
        elif how == "3d":
            np.save(p, np.ones((H, W, 2), np.float32))
    return f"{kind}/{p.name} {how}"


def _stray(cap: Path, rng: np.random.Generator) -> str:
    (cap / "notes.txt").write_text("stray")
    (cap / "rgb" / ".DS_Store").write_bytes(b"\x00\x01")
    (cap / "depth" / "Thumbs.db").write_bytes(b"\x00")
    (cap / "rgb" / "extra.png").write_bytes(b"not listed in frames.jsonl")
    return "stray files"


FILE_HOW = {"rgb": ["truncate", "empty", "random", "fifo", "directory", "link_out", "dangling_link", "missing",
                    "flip_bytes", "png16", "rgba", "grey", "jpeg_as_png", "wrong_size", "huge_header"],
            "depth": ["truncate", "empty", "random", "fifo", "directory", "link_out", "dangling_link", "missing",
                      "flip_bytes", "nan", "wrong_shape", "negative", "object_pickle", "int_dtype", "3d"]}
WHOLE_HOW = {"capture.json": ["truncate", "empty", "garbage", "not_utf8", "deep", "array"],
             "frames.jsonl": ["truncate", "empty", "garbage", "not_utf8", "deep", "array", "shuffled", "duplicated"]}


def all_defects() -> list[tuple[str, Callable[[Path, np.random.Generator], str]]]:
    """Every defect the generator knows, as (kind, function(capture, rng) -> description)."""
    out: list[tuple[str, Callable]] = []
    for f in META_FIELDS:
        for v in BAD_VALUES + SPECIAL.get(f, []):
            out.append(("capture.json field", lambda c, r, f=f, v=v: corrupt_meta(c, r, f, v)))
    for f in FRAME_FIELDS:
        for v in BAD_VALUES + SPECIAL.get(f, []):
            for every in (False, True):
                out.append(("frames.jsonl field", lambda c, r, f=f, v=v, e=every: corrupt_frames(c, r, f, v, e)))
    for name, hows in WHOLE_HOW.items():
        for how in hows:
            out.append((f"{name} file", lambda c, r, n=name, h=how: _whole_file(c, r, n, h)))
    for kind, hows in FILE_HOW.items():
        for how in hows:
            out.append((f"{kind} file", lambda c, r, k=kind, h=how: _frame_file(c, r, k, h)))
    out.append(("stray files", _stray))
    return out


def defect_order(defects: list, rng: np.random.Generator) -> list[int]:
    """Indices of ``defects``: each kind shuffled, then the kinds interleaved, so that any
    prefix of a few dozen covers every kind (capture.json fields, frame fields, files...)."""
    groups: dict[str, list[int]] = {}
    for i, (kind, _) in enumerate(defects):
        groups.setdefault(kind, []).append(i)
    queues = [list(rng.permutation(g)) for _, g in sorted(groups.items())]
    out: list[int] = []
    while any(queues):
        for q in queues:
            if q:
                out.append(int(q.pop()))
    return out


def write_fuzz_set(root: Path, seed: int, count: int, frames: int = 20, good: int = 2,
                   odd_name: bool = True) -> tuple[list[str], list[Broken]]:
    """Write ``good`` intact captures under ``root/good`` and ``count`` broken ones under
    ``root/broken``; return the good capture names and the broken ones with their defects.

    The first defect of the broken captures follows :func:`defect_order` (every kind within the
    first few dozen; ``count >= len(all_defects())`` tries every defect); one or two more random
    defects are added to a third of them.  With ``odd_name`` one broken capture's folder name is not valid UTF-8.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    template = base_capture(root / ".template", frames)
    names = []
    for i in range(good):
        names.append(f"g{i}")
        write_dav_capture(root / "good" / f"g{i}", frames=frames, width=W, height=H, encoding="npy",
                          fps=24.0 + i)
    defects = all_defects()
    order = defect_order(defects, rng)
    broken: list[Broken] = []
    for k in range(count):
        name = f"b{k:03d}"
        cap = root / "broken" / name
        shutil.copytree(template, cap)
        picks = [defects[order[k % len(order)]]]
        if rng.random() < 1 / 3:
            picks += [defects[int(i)] for i in rng.integers(len(defects), size=int(rng.integers(1, 3)))]
        b = Broken(name)
        for _, fn in picks:
            try:
                b.defects.append(fn(cap, rng))
            except Exception:  # a second defect on a file the first one broke (removed, not JSON...)
                pass
        broken.append(b)
    if odd_name and broken:
        src = os.fsencode(root / "broken" / broken[-1].name)
        os.rename(src, src + b"\xff\xfe")
        broken[-1].defects.append("folder name not UTF-8")
    shutil.rmtree(root / ".template")
    return names, broken


if __name__ == "__main__":  # pragma: no cover
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--count", type=int, default=50)
    a = ap.parse_args()
    _, bad = write_fuzz_set(a.out, a.seed, a.count)
    for b in bad:
        print(b.name, "; ".join(b.defects))
    print(f"{len(all_defects())} defect kinds known")
