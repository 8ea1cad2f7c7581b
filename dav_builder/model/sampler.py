"""Video packing: every batch from one bucket (same size and length), batch size per bucket.

The plan is a pure function of (seed, epoch): each bucket's clips are shuffled and cut into
batches of that bucket's size, the batches are grouped ``world_size`` at a time *within* a bucket
(one batch per rank: every rank draws the same bucket at each micro-batch, so no rank waits at the
all-reduce for another's larger bucket), and the groups of the epoch are shuffled together, so
buckets are drawn in proportion to their number of clips and no padding is ever needed.  A
bucket's last group is completed with batches of its first clips again (with one rank, nothing is
repeated).  Micro-batch ``i`` maps to a fixed group, which makes resuming exact: the data position
is the step.  Rank ``r`` takes the ``r``-th batch of each group.

Batch sizes come from ``batch_sizes`` per bucket, or from a frames x pixels budget
(:func:`budget_batch_sizes`), or the default.
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


def budget_batch_sizes(clips: list[ClipRef], budget: int, frames_of, size_of) -> dict[str, int]:
    """Per bucket, ``budget // (frames x height x width)`` (at least 1) for its largest clip as trained:
    ``frames_of(num_frames)`` frames (after frame dropout) of ``size_of(height, width)`` pixels."""
    out: dict[str, int] = {}
    for c in clips:
        h, w = size_of(c.height, c.width)
        cost = max(1, frames_of(c.num_frames)) * h * w
        out[c.bucket] = min(out.get(c.bucket, budget), max(1, budget // cost))
    return out


class BucketBatchPlan:
    def __init__(self, clips: list[ClipRef], batch_sizes: dict[str, int], default_batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1):
        if not clips:
            raise ValueError("no clips to train on")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside a world of {world_size}")
        self.by_bucket: dict[str, list[ClipRef]] = {}
        for c in sorted(clips, key=lambda c: c.clip_id):
            self.by_bucket.setdefault(c.bucket, []).append(c)
        self.batch_sizes = {b: max(1, int(batch_sizes.get(b, default_batch_size))) for b in self.by_bucket}
        self.seed, self.rank, self.world = seed, rank, world_size
        self._cache: dict[int, list[tuple[str, tuple[ClipRef, ...]]]] = {}
        self.per_epoch = len(self._epoch(0))

    def _epoch(self, epoch: int) -> list[tuple[str, tuple[ClipRef, ...]]]:
        if epoch not in self._cache:
            rng = np.random.default_rng([self.seed, epoch])
            groups = []
            for bucket in sorted(self.by_bucket):
                clips = self.by_bucket[bucket]
                order = [clips[j] for j in rng.permutation(len(clips))]
                bs = self.batch_sizes[bucket]
                per_group = bs * self.world
                n_groups = -(-len(order) // per_group)
                # one rank: the last batch may be short; several: wrap around so every rank gets a full batch
                cyc = order if self.world == 1 else order * (-(-n_groups * per_group // len(order)))
                for g in range(n_groups):
                    groups.append((bucket, tuple(cyc[g * per_group : (g + 1) * per_group])))
            perm = rng.permutation(len(groups))
            groups = [groups[i] for i in perm]
            mine = []
            for bucket, chunk in groups:
                bs = self.batch_sizes[bucket]
                mine.append((bucket, chunk[self.rank * bs : (self.rank + 1) * bs]))
            self._cache = {epoch: mine}
        return self._cache[epoch]

    def batch(self, step: int) -> Batch:
        epoch, pos = divmod(step, self.per_epoch)
        bucket, clips = self._epoch(epoch)[pos]
        return Batch(bucket, clips, step)

    def epoch_of(self, step: int) -> int:
        return step // self.per_epoch
