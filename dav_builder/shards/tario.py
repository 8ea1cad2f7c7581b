"""Reading and writing WebDataset tar members: the byte-level layout of docs/dataset-format.md.

A clip is stored as contiguous members ``<key>.json``, ``<key>.rgb.<i>.<ext>`` ... and
``<key>.depth.<i>.<codec>`` ...; the key has no dots.  Plain :mod:`tarfile` is used on purpose: the
output must be readable by any WebDataset client, and writing members ourselves keeps them
deterministic (fixed mtime, owner and order) so a resumed build is byte-for-byte reproducible.

Depth codecs (``shards.depth_codec``; named in each clip's json and in ``stats.json``):

- ``npz`` (the default): one float16 array named ``depth`` in a deflate-compressed ``.npz``, one
  member per frame.  Lossless (the same float16 values as ``npy``); webdataset's and Hugging Face
  ``datasets``' default decoders read it (``sample["depth.0000.npz"]["depth"]``).  Written with
  fixed zip metadata (timestamp 1980-01-01, mode 0644, Unix) so the same depth gives the same
  bytes on every run, as the tar members do.  One member per frame rather than one per clip:
  the trainer reads only the frames it samples (8 of 32) and decompresses only those.
- ``npy``: the uncompressed float16 ``.npy`` of the first datasets; still read everywhere.

A member's codec is recognised from its bytes (a zip starts ``PK``, a ``.npy`` ``\\x93NUMPY``),
so encoded depth carries its codec with it from the worker to the writer.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import cv2
import numpy as np

from dav_builder.capture.depth import nonfinite
from dav_builder.capture.imageio import png_rgb
from dav_builder.clip import Clip
from dav_builder.shards.zipdeflate import zip_one


def frame_tag(i: int) -> str:
    """``0000``, ``0001``...: the frame part of a member name."""
    return f"{i:04d}"


DEPTH_CODECS = ("npz", "npy")
"""Depth member codecs, newest first; readers accept all of them."""
DEFAULT_DEPTH_CODEC = "npz"
NPZ_ARRAY = "depth"
"""Name of the array inside a ``.npz`` depth member."""
_NPZ_MEMBER = f"{NPZ_ARRAY}.npy"


def depth_float16(depth: np.ndarray) -> np.ndarray:
    """Planar depth as stored: float16, non-finite, non-positive and out-of-range values
    (above float16's 65504 m, which would become inf) set to 0 (invalid)."""
    d = np.asarray(depth, dtype=np.float32)
    is_frame = d.ndim == 2
    if is_frame:
        d = np.ascontiguousarray(d)
        lo, hi, _, _ = cv2.minMaxLoc(d)
    # planar depth from the readers is already finite and >= 0: a frame is checked in one pass
    # (NaN would slip past minMaxLoc) instead of building the masked copy
    if not (is_frame and lo >= 0.0 and hi < 65504.0 and nonfinite(d) is None):
        d = np.where(np.isfinite(d) & (d > 0) & (d < 65504.0), d, np.float32(0.0))
    # OpenCV's conversion rounds exactly as numpy's astype(float16) (tested), about 10x faster
    return cv2.add(d, 0.0, dtype=cv2.CV_16F) if is_frame else d.astype(np.float16)


def depth_to_npy(depth: np.ndarray) -> bytes:
    """Serialise one planar depth frame as a 2-D float16 ``.npy`` (the ``npy`` codec)."""
    buf = io.BytesIO()
    np.save(buf, depth_float16(depth), allow_pickle=False)
    return buf.getvalue()


def depth_to_npz(depth: np.ndarray, level: int | None = None, engine: str | None = None) -> bytes:
    """Serialise one planar depth frame as the ``npz`` codec: the float16 ``.npy`` of
    :func:`depth_to_npy`, deflated inside a zip as array ``depth``, with fixed zip metadata
    (no clock, no host) so equal depth gives equal bytes.  The deflate is ISA-L's at level 2
    (:mod:`dav_builder.shards.zipdeflate`); ``engine``/``level`` pick another (benchmarks)."""
    return zip_one(_NPZ_MEMBER, depth_to_npy(depth), level, engine)


def encode_depth(depth: np.ndarray, codec: str = DEFAULT_DEPTH_CODEC) -> bytes:
    """One depth frame as a shard member of ``codec`` (``npz`` or ``npy``)."""
    if codec == "npz":
        return depth_to_npz(depth)
    if codec == "npy":
        return depth_to_npy(depth)
    raise ValueError(f"depth codec {codec!r} is not one of {DEPTH_CODECS}")


def depth_codec_of(data: bytes) -> str:
    """The codec of an encoded depth member, from its first bytes."""
    if data[:4] == b"PK\x03\x04":
        return "npz"
    if data[:6] == b"\x93NUMPY":
        return "npy"
    raise ValueError("depth member is neither .npy nor .npz")


def decode_depth(data: bytes) -> np.ndarray:
    """A depth member of any codec back to its array (kept float16), never unpickling."""
    if depth_codec_of(data) == "npz":
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            if NPZ_ARRAY not in npz.files:
                raise ValueError(f"depth .npz member has no array {NPZ_ARRAY!r} (has {npz.files})")
            return npz[NPZ_ARRAY]
    return np.load(io.BytesIO(data), allow_pickle=False)


def npy_to_depth(data: bytes) -> np.ndarray:
    """Parse a depth member back to an array (kept float16); any codec (see :func:`decode_depth`)."""
    return decode_depth(data)


def depth_members(key: str, depth: list[bytes]) -> list[tuple[str, bytes]]:
    """``<key>.depth.<i>.<codec>`` members of encoded depth frames (codec read from the bytes)."""
    return [(f"{key}.depth.{frame_tag(i)}.{depth_codec_of(d)}", d) for i, d in enumerate(depth)]


def clip_members(clip: Clip, codec: str = DEFAULT_DEPTH_CODEC) -> list[tuple[str, bytes]]:
    """The (name, bytes) members of one clip, in the order they are written; depth not encoded
    yet is encoded with ``codec``.  The json names the depth codec (``depth_codec``)."""
    if not clip.loaded:
        raise ValueError(f"clip {clip.clip_id} holds no frames to write")
    key = clip.clip_id
    if "." in key:
        raise ValueError(f"clip id {key!r} contains a dot; WebDataset keys cannot")
    depth = encoded_depth(clip, codec)
    meta = clip.metadata()
    meta["depth_codec"] = depth_codec_of(depth[0]) if depth else codec
    members = [(f"{key}.json", json.dumps(meta, sort_keys=True).encode())]
    ext = "jpg" if clip.rgb_ext in ("jpg", "jpeg") else "png"
    members += [(f"{key}.rgb.{frame_tag(i)}.{ext}", data) for i, data in enumerate(clip.rgb)]
    members += depth_members(key, depth)
    return members


def encoded_depth(clip: Clip, codec: str = DEFAULT_DEPTH_CODEC) -> list[bytes]:
    """The clip's depth frames as shard members: :attr:`Clip.depth_npy` when already encoded
    (by the reading threads or :func:`pack_depth`), else encoded now with ``codec``."""
    if clip.depth_npy is not None:
        return clip.depth_npy
    assert clip.depth is not None
    return [encode_depth(d, codec) for d in clip.depth]


def pack_depth(clip: Clip, codec: str = DEFAULT_DEPTH_CODEC) -> None:
    """Encode the clip's depth as its shard members now (with ``codec``), unless the reading
    threads already did (see :attr:`Clip.depth_npy`), and drop the array."""
    if clip.depth is not None:
        clip.depth_npy = encoded_depth(clip, codec)
        clip.depth = None


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Append one member with fixed metadata (mtime 0, root owner, mode 0644)."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data))


@dataclass
class ClipSample:
    """One clip as read back from a shard, not decoded beyond the json."""

    key: str
    meta: dict
    rgb: list[bytes]
    rgb_ext: str
    depth: list[bytes]
    """The raw bytes of each depth frame (``.npz`` or ``.npy``); :func:`decode_depth` decodes one."""

    @property
    def depth_codec(self) -> str:
        return depth_codec_of(self.depth[0]) if self.depth else str(self.meta.get("depth_codec", "npy"))

    def depth_array(self) -> np.ndarray:
        """All depth frames decoded, float32 (T, H, W) metres, 0 = invalid."""
        return np.stack([decode_depth(d).astype(np.float32) for d in self.depth])

    def rgb_array(self) -> np.ndarray:
        """All RGB frames decoded, uint8 (T, H, W, 3)."""
        frames = []
        for data in self.rgb:
            rgb = decode_rgb_member(data)
            if rgb is None:
                raise ValueError(f"clip {self.key}: an RGB member cannot be decoded")
            frames.append(rgb)
        return np.stack(frames)

    def members(self) -> list[tuple[str, bytes]]:
        """The members again, for re-packing without decoding (depth keeps its codec)."""
        meta = dict(self.meta, depth_codec=self.depth_codec)
        out = [(f"{self.key}.json", json.dumps(meta, sort_keys=True).encode())]
        out += [(f"{self.key}.rgb.{frame_tag(i)}.{self.rgb_ext}", d) for i, d in enumerate(self.rgb)]
        out += depth_members(self.key, self.depth)
        return out


def decode_rgb_member(data: bytes) -> np.ndarray | None:
    """An RGB member's image, uint8 (H, W, 3) in RGB order; None when it cannot be decoded."""
    rgb = png_rgb(data)  # the faster PNG decoder where it applies (see there)
    if rgb is not None:
        return rgb
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def frame_member(rest: str) -> tuple[str, str, str] | None:
    """``(kind, frame tag, ext)`` of a frame member's name after the key (``rgb.0003.png`` ->
    ``("rgb", "0003", "png")``); None for other members (the json)."""
    parts = rest.split(".")
    if len(parts) == 3 and parts[0] in ("rgb", "depth"):
        return parts[0], parts[1], parts[2]
    return None


def split_member_name(name: str) -> tuple[str, str]:
    """``(key, rest)`` of a member name: ``abc.rgb.0003.png`` -> ``("abc", "rgb.0003.png")``."""
    base = name.rsplit("/", 1)[-1]
    key, _, rest = base.partition(".")
    return key, rest


def iter_tar_samples(source: str | Path | BinaryIO) -> Iterator[ClipSample]:
    """Stream the clips of one shard (a path or an open binary file), in stored order."""
    if isinstance(source, (str, Path)):
        with open(source, "rb") as fh:
            yield from iter_tar_samples(fh)
        return
    current: dict | None = None

    def finish(s: dict) -> ClipSample:
        rgb = [d for _, d in sorted(s["rgb"])]
        depth = [d for _, d in sorted(s["depth"])]
        if s["meta"] is None:
            raise ValueError(f"clip {s['key']}: shard has no {s['key']}.json member")
        return ClipSample(s["key"], s["meta"], rgb, s["ext"] or "png", depth)

    with tarfile.open(fileobj=source, mode="r|*") as tar:
        for info in tar:
            if not info.isfile():
                continue
            key, rest = split_member_name(info.name)
            fh = tar.extractfile(info)
            data = fh.read() if fh is not None else b""
            if current is None or current["key"] != key:
                if current is not None:
                    yield finish(current)
                current = {"key": key, "meta": None, "rgb": [], "depth": [], "ext": None}
            frame = frame_member(rest)
            if rest == "json":
                current["meta"] = json.loads(data)
            elif frame is not None:
                kind, tag, ext = frame
                current[kind].append((tag, data))
                if kind == "rgb":
                    current["ext"] = ext
    if current is not None:
        yield finish(current)
