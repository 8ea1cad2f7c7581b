"""Video packing: every batch from one bucket (same size and length), batch size per bucket.

The plan is a pure function of (seed, epoch): each bucket's clips are shuffled and cut into
batches of that bucket's size, then all batches of the epoch are shuffled together, so buckets
are drawn in proportion to their number of clips and no padding is ever needed.  Step ``s``
maps to a fixed batch, which makes resuming exact: the data position is the step.  Under DDP,
rank ``r`` of ``w`` takes every ``w``-th batch of the plan, truncated so all ranks get the same
number (unequal counts hang DDP).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClipRef:
    clip_id: str
    bucket: str
    shard: str
    num_frames: int
    height: int
    width: int


@dataclass(frozen=True)
class Batch:
    bucket: str
    clips: tuple[ClipRef, ...]
    step: int


class BucketBatchPlan:
    def __init__(self, clips: list[ClipRef], batch_sizes: dict[str, int], default_batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1):
        if not clips:
            raise ValueError("no clips to train on")
        self.by_bucket: dict[str, list[ClipRef]] = {}
        for c in sorted(clips, key=lambda c: c.clip_id):
            self.by_bucket.setdefault(c.bucket, []).append(c)
        self.batch_sizes = {b: max(1, int(batch_sizes.get(b, default_batch_size))) for b in self.by_bucket}
        self.seed, self.rank, self.world = seed, rank, world_size
        self._cache: dict[int, list[tuple[str, tuple[ClipRef, ...]]]] = {}
        self.per_epoch = len(self._epoch(0))
        if self.per_epoch == 0:
            raise ValueError(f"fewer batches than ranks ({world_size})")

    def _epoch(self, epoch: int) -> list[tuple[str, tuple[ClipRef, ...]]]:
        if epoch not in self._cache:
            rng = np.random.default_rng([self.seed, epoch])
            batches = []
            for bucket in sorted(self.by_bucket):
                clips = self.by_bucket[bucket]
                order = rng.permutation(len(clips))
                bs = self.batch_sizes[bucket]
                for i in range(0, len(clips), bs):
                    batches.append((bucket, tuple(clips[j] for j in order[i : i + bs])))
            perm = rng.permutation(len(batches))
            batches = [batches[i] for i in perm]
            n = len(batches) // self.world * self.world
            self._cache = {epoch: batches[self.rank : n : self.world]}
        return self._cache[epoch]

    def batch(self, step: int) -> Batch:
        epoch, pos = divmod(step, self.per_epoch)
        bucket, clips = self._epoch(epoch)[pos]
        return Batch(bucket, clips, step)

    def epoch_of(self, step: int) -> int:
        return step // self.per_epoch
