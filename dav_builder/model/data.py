"""The trainer's data: kept clips of a dav-build dataset, read by random access, batched per bucket.

- Clips come from ``manifest.parquet`` (``keep = true`` and written); a stable hash of the clip id
  holds out ``val_fraction`` of them for validation.
- Shards are not streamed: each worker indexes a tar once (member name -> byte offset and size,
  from the tar headers only) and then reads just the members of the frames it needs with
  ``os.pread``.  A clip of 32 frames trained with 8 sampled frames decodes 8 images, not 32.
- Batch ``i`` of the run is a pure function of (seed, rank, i) (see :mod:`.sampler`), frame dropout
  included (salted by the rank, so ranks drop different frames), so resuming at step ``s`` continues
  exactly and any number of DataLoader workers give the same batches.
- The interpolation model is trained on windows of consecutive frames (``contiguous``): the stride
  it is used at.
- Frames are resized by ``train.scale`` (depth with nearest neighbour, so invalid pixels never
  blend into valid ones) and centre-cropped to a multiple of the model's stride.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dav_builder.model.normalize import normalize_depth
from dav_builder.model.sampler import Batch, BucketBatchPlan, ClipRef
from dav_builder.shards.manifest import read_manifest
from dav_builder.shards.tario import decode_depth, decode_rgb_member, frame_member, split_member_name


class DatasetError(ValueError):
    """The training data cannot be used (no kept clips, missing shards...)."""


def stable_fraction(clip_id: str) -> float:
    """A number in [0, 1) fixed by the clip id (independent of Python's hash seed)."""
    return int(hashlib.sha1(clip_id.encode()).hexdigest()[:12], 16) / float(16**12)


def kept_clips(dataset: Path) -> list[ClipRef]:
    """Every kept, written clip of ``dataset`` (from the manifest)."""
    table = read_manifest(dataset).to_pylist()
    clips = []
    for row in table:
        if not row.get("keep") or not row.get("shard"):
            continue
        clips.append(ClipRef(row["clip_id"], row["bucket"], row["shard"], int(row["num_frames"]),
                             int(row["height"]), int(row["width"])))
    if not clips:
        raise DatasetError(f"{dataset}: the manifest has no kept clips to train on")
    missing = sorted({c.shard for c in clips if not (Path(dataset) / c.shard).is_file()})
    if missing:
        raise DatasetError(f"{dataset}: shard(s) listed in the manifest are missing: {missing[:5]}")
    return clips


def split_train_val(clips: list[ClipRef], val_fraction: float) -> tuple[list[ClipRef], list[ClipRef]]:
    """Hold out clips whose id hashes below ``val_fraction`` (at least one when there are two or more)."""
    if val_fraction <= 0 or len(clips) < 2:
        return list(clips), []
    val = [c for c in clips if stable_fraction(c.clip_id) < val_fraction]
    if not val:
        val = [min(clips, key=lambda c: stable_fraction(c.clip_id))]
    ids = {c.clip_id for c in val}
    return [c for c in clips if c.clip_id not in ids], val


@dataclass
class Member:
    offset: int
    size: int


class ShardIndex:
    """Member offsets of one tar, read from its headers (no data is read), and each clip's frame
    members by (key, ``rgb`` or ``depth``, frame number)."""

    def __init__(self, path: Path):
        self.path = path
        self.members: dict[str, Member] = {}
        self.frames: dict[tuple[str, str, int], str] = {}
        try:
            with tarfile.open(path, "r:") as tar:
                for info in tar:
                    if info.isfile():
                        self.members[info.name] = Member(info.offset_data, info.size)
                        key, rest = split_member_name(info.name)
                        frame = frame_member(rest)
                        if frame is not None and frame[1].isdigit():
                            self.frames[(key, frame[0], int(frame[1]))] = info.name
        except (tarfile.TarError, OSError) as exc:
            raise DatasetError(f"{path}: cannot index the shard: {exc}") from None
        self._fd: int | None = None

    def read(self, name: str) -> bytes:
        m = self.members.get(name)
        if m is None:
            raise DatasetError(f"{self.path}: no member {name!r}")
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        data = os.pread(self._fd, m.size, m.offset)
        if len(data) != m.size:
            raise DatasetError(f"{self.path}: member {name!r} is truncated")
        return data

    def frame(self, key: str, kind: str, frame: int) -> bytes:
        """The bytes of clip ``key``'s ``kind`` member for ``frame``."""
        name = self.frames.get((key, kind, frame))
        if name is None:
            raise DatasetError(f"{self.path}: clip {key} has no {kind} frame {frame}")
        return self.read(name)

    def __getstate__(self):  # indexes travel to workers without their file descriptor
        state = dict(self.__dict__)
        state["_fd"] = None
        return state


@dataclass
class ClipFrames:
    rgb: np.ndarray
    """uint8 (K, H, W, 3)"""
    depth: np.ndarray
    """float32 (K, H, W) metres, 0 = invalid"""
    frame_indices: list[int]
    """original frame indices in the capture: the temporal positions"""
    meta: dict


class ClipReader:
    """Reads chosen frames of clips; one per worker process (shard indexes cached)."""

    def __init__(self, dataset: Path):
        self.dataset = Path(dataset)
        self._index: dict[str, ShardIndex] = {}

    def shard(self, rel: str) -> ShardIndex:
        if rel not in self._index:
            self._index[rel] = ShardIndex(self.dataset / rel)
        return self._index[rel]

    def meta(self, ref: ClipRef) -> dict:
        return json.loads(self.shard(ref.shard).read(f"{ref.clip_id}.json"))

    def read(self, ref: ClipRef, frames: list[int]) -> ClipFrames:
        shard = self.shard(ref.shard)
        meta = self.meta(ref)
        rgb, depth = [], []
        for f in frames:
            image = decode_rgb_member(shard.frame(ref.clip_id, "rgb", f))
            if image is None:
                raise DatasetError(f"{shard.path}: clip {ref.clip_id} frame {f}: RGB cannot be decoded")
            rgb.append(image)
            depth.append(decode_depth(shard.frame(ref.clip_id, "depth", f)).astype(np.float32))  # npz or npy
        idx = meta.get("frame_indices") or list(range(ref.num_frames))
        return ClipFrames(np.stack(rgb), np.stack(depth), [int(idx[f]) for f in frames], meta)


def choose_frames(num_frames: int, sample_frames: int, max_stride: int, rng: np.random.Generator,
                  contiguous: bool = False) -> list[int]:
    """Frame dropout: ``sample_frames`` sorted positions of a clip (all of them when it is shorter).

    With ``max_stride`` > 0 the positions lie in a random window of ``sample_frames * max_stride``
    frames, so the gaps between kept frames stay bounded.  ``contiguous``: ``sample_frames``
    consecutive frames from a random start (no dropout).
    """
    if sample_frames <= 0 or num_frames <= sample_frames:
        return list(range(num_frames))
    if contiguous:
        lo = int(rng.integers(0, num_frames - sample_frames + 1))
        return list(range(lo, lo + sample_frames))
    lo, span = 0, num_frames
    if max_stride > 0:
        span = min(num_frames, sample_frames * max_stride)
        lo = int(rng.integers(0, num_frames - span + 1))
    return sorted(int(i) + lo for i in rng.choice(span, size=sample_frames, replace=False))


def fit_size(h: int, w: int, scale: float, multiple: int) -> tuple[int, int, int, int]:
    """(resized h, w, cropped h, w): scale, then crop to a multiple of ``multiple``."""
    rh, rw = max(multiple, round(h * scale)), max(multiple, round(w * scale))
    return rh, rw, rh // multiple * multiple, rw // multiple * multiple


def prepare(frames: ClipFrames, scale: float, multiple: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize and centre-crop RGB (bilinear/area) and depth (nearest) to a model-friendly size."""
    import cv2

    t, h, w = frames.depth.shape
    rh, rw, ch, cw = fit_size(h, w, scale, multiple)
    rgb, depth = frames.rgb, frames.depth
    if (rh, rw) != (h, w):
        interp = cv2.INTER_AREA if rh < h else cv2.INTER_LINEAR
        rgb = np.stack([cv2.resize(f, (rw, rh), interpolation=interp) for f in rgb])
        depth = np.stack([cv2.resize(d, (rw, rh), interpolation=cv2.INTER_NEAREST) for d in depth])
    y0, x0 = (rh - ch) // 2, (rw - cw) // 2
    return rgb[:, y0 : y0 + ch, x0 : x0 + cw], depth[:, y0 : y0 + ch, x0 : x0 + cw]


@dataclass
class TrainBatch:
    rgb: torch.Tensor
    """(B, K, 3, H, W) in [-1, 1]"""
    depth: torch.Tensor
    """(B, K, H, W) normalised disparity in [-1, 1]"""
    metres: torch.Tensor
    """(B, K, H, W) the depth in metres (0 = invalid), for evaluation"""
    frame_indices: torch.Tensor
    """(B, K) original frame indices"""
    bucket: str
    clip_ids: list[str]
    index: int
    """which micro-batch of the run this is"""


def collate(items: list[tuple[np.ndarray, np.ndarray, list[int]]], bucket: str, clip_ids: list[str],
            index: int) -> TrainBatch:
    rgb = torch.from_numpy(np.stack([i[0] for i in items])).permute(0, 1, 4, 2, 3).float() / 127.5 - 1
    metres = torch.from_numpy(np.stack([i[1] for i in items]))
    pos = torch.tensor([i[2] for i in items], dtype=torch.long)
    return TrainBatch(rgb, normalize_depth(metres), metres, pos, bucket, clip_ids, index)


class MicroBatches(torch.utils.data.Dataset):
    """Micro-batch ``i`` of the run: a :class:`TrainBatch` (use with ``batch_size=None``)."""

    def __init__(self, dataset: Path, plan: BucketBatchPlan, sample_frames: int, max_stride: int, scale: float,
                 multiple: int, seed: int, length: int, rank: int = 0, contiguous: bool = False):
        self.dataset, self.plan = Path(dataset), plan
        self.sample_frames, self.max_stride, self.scale, self.multiple = sample_frames, max_stride, scale, multiple
        self.seed, self.length, self.rank, self.contiguous = seed, length, rank, contiguous
        self._reader: ClipReader | None = None

    def __len__(self) -> int:
        return self.length

    def batch_plan(self, index: int) -> Batch:
        return self.plan.batch(index)

    def __getitem__(self, index: int) -> TrainBatch:
        if self._reader is None:
            self._reader = ClipReader(self.dataset)
        batch = self.plan.batch(index)
        items = []
        for j, ref in enumerate(batch.clips):
            rng = np.random.default_rng([self.seed, self.rank, index, j])
            chosen = choose_frames(ref.num_frames, self.sample_frames, self.max_stride, rng, self.contiguous)
            frames = self._reader.read(ref, chosen)
            rgb, depth = prepare(frames, self.scale, self.multiple)
            items.append((rgb, depth, frames.frame_indices))
        return collate(items, batch.bucket, [c.clip_id for c in batch.clips], index)


def loader(ds: MicroBatches, start: int, num_workers: int) -> torch.utils.data.DataLoader:
    """Micro-batches ``start, start + 1, ...`` in order, read ahead by ``num_workers`` processes."""
    return torch.utils.data.DataLoader(
        ds, batch_size=None, sampler=range(start, len(ds)), num_workers=num_workers, collate_fn=_as_is,
        prefetch_factor=4 if num_workers else None,
    )


def _as_is(batch: TrainBatch) -> TrainBatch:
    return batch
