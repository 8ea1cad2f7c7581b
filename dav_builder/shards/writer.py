"""Crash-safe shard writing: one writer per bucket, shards bounded by clip count and bytes.

A shard is written to a local file (``shards/<bucket>/.<name>.tar.partial`` on a local dataset,
a temporary file for an object store) and only when it is complete does it appear under its final
name ``<name>.tar`` (a rename on a disk; one upload on an object store, which has no rename but
shows an object only once its upload completed).  After that a completion record (the manifest
rows of its clips) is written to ``_state/shards/<bucket>/<name>.json``.  A build killed at any
point therefore leaves (a) complete shards with records, whose clips a rerun skips, (b) complete
shards without a record, which a rerun deletes and writes again (see :func:`recover`), and
(c) partial files, which a rerun deletes.  No clip is ever in two recorded shards, none is lost.

Each worker of a build writes its own shards, named ``<prefix><n>.tar`` with a prefix of its own
work unit, so writers never share a file and a rerun of the same unit writes the same names.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from dav_builder.clip import Clip
from dav_builder.shards.tario import add_member, clip_members
from dav_builder.storage import Store
from dav_builder.storage.location import atomic_write_bytes

SHARD_RE = re.compile(r"^(?P<prefix>[0-9a-z_-]*?)(?P<n>\d{6})\.tar$")
STATE_DIR = "_state"


def atomic_write_json(path: Path, obj: object, fsync: bool = True) -> None:
    atomic_write_bytes(path, json.dumps(obj, sort_keys=True, indent=1).encode(), fsync)


@dataclass(frozen=True)
class ShardLimits:
    """When a shard is closed and the next one started."""

    max_clips: int = 256
    """At most this many clips per shard."""
    max_bytes: int = 1 << 30
    """Close the shard once it holds at least this many bytes (a shard never splits a clip)."""
    fsync: bool = False
    """fsync each shard and its record before it counts as done.  Off, a killed build still
    resumes exactly (the data is in the OS's cache; a shard counts only once renamed); on, it
    also survives a power loss or kernel crash, at about 150 ms per shard on this machine."""


@dataclass
class ShardRecord:
    """What a completed shard holds: its path (relative to the dataset) and its clips' manifest rows."""

    bucket: str
    shard: str
    rows: list[dict] = field(default_factory=list)


def _as_store(dataset: Path | str | Store) -> Store:
    return dataset if isinstance(dataset, Store) else Store(str(dataset))


def shard_record_rel(bucket: str, shard_name: str) -> str:
    return f"{STATE_DIR}/shards/{bucket}/{Path(shard_name).stem}.json"


def shard_record_path(dataset: Path, bucket: str, shard_name: str) -> Path:
    return Path(dataset) / shard_record_rel(bucket, shard_name)


def load_shard_records(dataset: Path | Store) -> list[ShardRecord]:
    """All completion records of a dataset (complete shards only)."""
    store = _as_store(dataset)
    records = []
    for rel in store.glob(f"{STATE_DIR}/shards/*/*.json"):
        obj = store.read_json(rel)
        records.append(ShardRecord(obj["bucket"], obj["shard"], obj["rows"]))
    return records


def recover(dataset: Path | Store) -> list[ShardRecord]:
    """Bring a dataset left by a killed build back to a consistent state.

    Deletes partial shards and complete shards that have no completion record (their clips are
    written again), and returns the records of the shards that are kept.
    """
    store = _as_store(dataset)
    records = load_shard_records(store)
    recorded = {r.shard for r in records}
    for rel in store.glob("shards/*/*"):
        name = rel.rsplit("/", 1)[-1]
        if name.endswith(".partial") or name.endswith(".tmp"):
            store.rm(rel)
        elif SHARD_RE.match(name) and rel not in recorded:
            store.rm(rel)
    return records


def next_shard_numbers(records: list[ShardRecord], prefix: str) -> dict[str, int]:
    """Bucket -> the number of the next shard named ``<prefix><n>.tar`` after the recorded ones."""
    out: dict[str, int] = {}
    for rec in records:
        m = SHARD_RE.match(rec.shard.rsplit("/", 1)[-1])
        if m and m.group("prefix") == prefix:
            out[rec.bucket] = max(out.get(rec.bucket, 0), int(m.group("n")) + 1)
    return out


class BucketShardWriter:
    """Writes the clips of one bucket into numbered shards under ``shards/<bucket>/``.

    ``on_complete`` is called with each completed shard's record, after its completion record
    has been written.  ``prefix`` and ``first`` name the shards ``<prefix><first>.tar``,
    ``<prefix><first+1>.tar``...; without ``first`` (a single writer per bucket) numbering goes
    on after the shards already there.
    """

    def __init__(
        self,
        dataset: Path | Store,
        bucket: str,
        limits: ShardLimits = ShardLimits(),
        on_complete: Callable[[ShardRecord], None] | None = None,
        prefix: str = "",
        first: int | None = None,
    ):
        self.store = _as_store(dataset)
        self.bucket = bucket
        self.limits = limits
        self.on_complete = on_complete
        self.prefix = prefix
        self.rel_dir = f"shards/{bucket}"
        self.store.makedirs(self.rel_dir)
        if first is None:
            existing = [int(m.group("n")) for rel in self.store.glob(f"{self.rel_dir}/*.tar")
                        if (m := SHARD_RE.match(rel.rsplit("/", 1)[-1])) and m.group("prefix") == prefix]
            first = max(existing, default=-1) + 1
        self._next_index = first
        self._tar: tarfile.TarFile | None = None
        self._file = None
        self._local: Path | None = None
        self._name = ""
        self._rows: list[dict] = []
        self._bytes = 0

    def _open(self) -> None:
        self._name = f"{self.prefix}{self._next_index:06d}.tar"
        self._next_index += 1
        if self.store.local:
            self._local = self.store.local_path(f"{self.rel_dir}/.{self._name}.partial")
        else:  # a fixed name per dataset and shard: a rerun of the unit overwrites what a kill left
            self._local = self.store.scratch_dir() / self.rel_dir / f".{self._name}.partial"
            self._local.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self._local, "wb", buffering=1 << 20)
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.USTAR_FORMAT)
        self._rows = []
        self._bytes = 0

    @property
    def current_shard(self) -> str:
        """The dataset-relative path of the shard being written (or to be written next)."""
        return f"{self.rel_dir}/{self._name}"

    def write(self, clip: Clip, row_fn: Callable[[Clip], dict]) -> str:
        """Append ``clip`` to the open shard; return the shard path it went to.

        ``row_fn`` makes the clip's manifest row once ``clip.bucket`` and ``clip.shard`` are set.
        """
        if self._tar is None:
            self._open()
        clip.bucket = self.bucket
        clip.shard = self.current_shard
        return self.write_members(clip_members(clip), row_fn(clip))

    def write_members(self, members: list[tuple[str, bytes]], row: dict) -> str:
        """Append one clip given as ready tar members (re-packing without decoding).

        ``row`` is the clip's manifest row; its ``bucket`` and ``shard`` are set here.
        """
        if self._tar is None:
            self._open()
        assert self._tar is not None
        shard = self.current_shard
        row["bucket"], row["shard"] = self.bucket, shard
        for name, data in members:
            add_member(self._tar, name, data)
            self._bytes += len(data) + 512
        self._rows.append(row)
        if len(self._rows) >= self.limits.max_clips or self._bytes >= self.limits.max_bytes:
            self.flush()
        return shard

    def flush(self) -> None:
        """Complete the open shard (if any): close, fsync, store under its final name, record."""
        if self._tar is None:
            return
        assert self._file is not None and self._local is not None
        self._tar.close()
        self._file.flush()
        if self.limits.fsync:
            os.fsync(self._file.fileno())
        self._file.close()
        self.store.put_file(self._local, self.current_shard)
        record = ShardRecord(self.bucket, self.current_shard, self._rows)
        self.store.write_json(shard_record_rel(self.bucket, self._name),
                              {"bucket": record.bucket, "shard": record.shard, "rows": record.rows},
                              fsync=self.limits.fsync)
        self._tar = None
        self._file = None
        self._local = None
        self._rows = []
        if self.on_complete is not None:
            self.on_complete(record)

    def discard(self) -> None:
        """Drop the open shard's local file (a failed work unit: its clips are written again)."""
        if self._file is not None:
            self._file.close()
        if self._local is not None:
            self._local.unlink(missing_ok=True)
        self._tar = self._file = self._local = None
        self._rows = []

    def close(self) -> None:
        self.flush()
