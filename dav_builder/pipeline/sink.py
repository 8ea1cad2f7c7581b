"""Writing the dataset: workers write shards, the driver keeps the books and finalizes.

The work of a build is cut into :class:`WorkUnit` s (a capture, or a range of a long capture's
frames).  The worker that runs a unit writes that unit's shards itself, straight to the dataset's
storage, through a :class:`UnitWriter`, and sends the driver only small JSON messages: the manifest
rows of each completed shard and, at the end, the unit's summary.  The driver's
:class:`DatasetSink` collects them and, in :meth:`DatasetSink.finalize`, writes everything that
describes the whole dataset (``manifest.parquet``, ``stats.json``): the one place where a build
ends.

Resume works on two kinds of completion records, both written only after what they describe is
stored:

- ``_state/shards/<bucket>/<name>.json`` (by :mod:`dav_builder.shards.writer`): the rows of the
  clips in one complete shard;
- ``_state/captures/<unit>.json``: a unit's summary and its unwritable rows, written by the worker
  once every clip of the unit is in a complete shard.

A rerun skips the units that have a record, skips the clips already in complete shards, and redoes
the rest; a unit writes the same shard names each time it runs (``<unit>-<n>.tar``), so a killed
build resumed gives the dataset of an uninterrupted one.  The manifest is the union of the
records, so every clip appears once.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass

from dav_builder.capture.discover import CaptureRef
from dav_builder.clip import Clip
from dav_builder.pipeline.config import BuildConfig
from dav_builder.pipeline.splitter import CaptureSummary
from dav_builder.pipeline.stages import Item
from dav_builder.shards.card import write_dataset_card
from dav_builder.shards.manifest import clip_row, write_manifest
from dav_builder.shards.writer import (
    STATE_DIR,
    BucketShardWriter,
    ShardLimits,
    ShardRecord,
    next_shard_numbers,
    recover,
)
from dav_builder.storage import Store

STATS = "stats.json"
BUILD_STATE = "build.json"


def unit_key(capture: str, part: int = 0, parts: int = 1) -> str:
    """The name of a unit's record and the prefix of its shards (stable across runs)."""
    key = hashlib.sha1(capture.encode()).hexdigest()
    return key if parts == 1 else f"{key}-r{part:04d}of{parts:04d}"


def shard_prefix(key: str) -> str:
    return f"{key[:16]}{key[40:]}-"


@dataclass(frozen=True)
class WorkUnit:
    """What one worker does: frames ``start:stop`` (positions in the capture's frame order) of one
    capture, skipping clips already stored, numbering its shards from ``first_shard``."""

    ref: CaptureRef
    part: int = 0
    parts: int = 1
    start: int = 0
    stop: int | None = None
    skip_ids: frozenset[str] = frozenset()
    first_shard: tuple[tuple[str, int], ...] = ()
    starts: tuple[int, ...] = (0,)
    """The first frame position of every range of the capture (see :mod:`.ranges`)."""
    total: int = 0
    """The capture's frame positions (known when it is split into ranges)."""

    @property
    def key(self) -> str:
        return unit_key(self.ref.capture_id, self.part, self.parts)

    @property
    def record_rel(self) -> str:
        return f"{STATE_DIR}/captures/{self.key}.json"


def load_unit_records(store: Store) -> dict[str, dict]:
    """Unit key -> its completion record."""
    out = {}
    for rel in store.glob(f"{STATE_DIR}/captures/*.json"):
        out[rel.rsplit("/", 1)[-1][: -len(".json")]] = store.read_json(rel)
    return out


def encode(msg: dict) -> bytes:
    return json.dumps(msg, separators=(",", ":")).encode()


# -- the worker side ------------------------------------------------------------------------------


class UnitWriter:
    """Writes one unit's clips into its own shards (one writer per bucket) and its record.

    :meth:`add` takes the unit's items in order; :meth:`finish` completes the shards, writes the
    unit's record and returns every message for the driver (JSON bytes)."""

    def __init__(self, store: Store, cfg: BuildConfig, unit: WorkUnit):
        self.store = store
        self.unit = unit
        self.limits = ShardLimits(cfg.shards.max_clips, int(cfg.shards.max_mb * (1 << 20)), cfg.shards.fsync)
        self.first = dict(unit.first_shard)
        self.writers: dict[str, BucketShardWriter] = {}
        self.messages: list[bytes] = []
        self.unwritten: list[dict] = []
        self.summary: CaptureSummary | None = None
        self.seconds: Counter[str] = Counter()
        self.clips_written = 0

    def _on_shard(self, record: ShardRecord) -> None:
        self.messages.append(encode({"shard": {"bucket": record.bucket, "shard": record.shard, "rows": record.rows}}))

    def add(self, item: Item) -> None:
        self.seconds.update(item.seconds)
        if item.summary is not None:
            self.summary = item.summary
        clip = item.clip
        if clip is None or clip.clip_id in self.unit.skip_ids:
            return
        if not clip.loaded:
            self.unwritten.append(clip_row(clip))
            return
        t0 = time.perf_counter()
        writer = self._writer(clip)
        writer.write(clip, clip_row)
        self.clips_written += 1
        self.seconds["write"] += time.perf_counter() - t0

    def _writer(self, clip: Clip) -> BucketShardWriter:
        writer = self.writers.get(clip.bucket or "")
        if writer is None:
            assert clip.bucket, f"clip {clip.clip_id} reached the writer without a bucket"
            writer = BucketShardWriter(self.store, clip.bucket, self.limits, on_complete=self._on_shard,
                                       prefix=shard_prefix(self.unit.key), first=self.first.get(clip.bucket, 0))
            self.writers[clip.bucket] = writer
        return writer

    def finish(self) -> list[bytes]:
        t0 = time.perf_counter()
        for writer in self.writers.values():
            writer.close()
        self.seconds["write"] += time.perf_counter() - t0
        assert self.summary is not None, f"{self.unit.ref.capture_id}: the unit ended without a summary"
        self.summary.seconds = dict(Counter(self.summary.seconds) + self.seconds)
        record = {"summary": asdict(self.summary), "rows": self.unwritten,
                  "part": self.unit.part, "parts": self.unit.parts}
        self.store.write_json(self.unit.record_rel, record, fsync=self.limits.fsync)
        self.messages.append(encode({"unit": {"key": self.unit.key, "record": record}}))
        return self.messages

    def abandon(self) -> None:
        """Drop open shards (the unit failed; what it completed stays recorded)."""
        for writer in self.writers.values():
            writer.discard()


# -- the driver side ------------------------------------------------------------------------------


class DatasetSink:
    """The driver's books: what is stored (from the records), what each message adds, and the
    final manifest and stats."""

    def __init__(self, store: Store, cfg: BuildConfig):
        self.store = store
        self.cfg = cfg
        self.records: list[ShardRecord] = recover(store)
        self.committed: set[str] = {r["clip_id"] for rec in self.records for r in rec.rows}
        self.unit_records = {k: rec for k, rec in load_unit_records(store).items() if self._record_intact(rec)}
        self.driver_bytes = 0
        self.clips_received = 0

    def _record_intact(self, record: dict) -> bool:
        """A unit counts as done only while every clip it produced is still stored."""
        unwritten = {r["clip_id"] for r in record["rows"]}
        return all(cid in self.committed or cid in unwritten for cid in record["summary"]["clip_ids"])

    # -- planning -------------------------------------------------------------------------

    def plan(self, refs: list[CaptureRef], ranges_of=lambda ref: ((0,), 0)) -> list[WorkUnit]:
        """The units still to do; ``ranges_of(ref)`` gives the first frame position of each range
        of a capture and its number of frames (``((0,), 0)``: the whole capture is one unit)."""
        by_capture: dict[str, set[str]] = {}
        for rec in self.records:
            for r in rec.rows:
                by_capture.setdefault(r["capture"], set()).add(r["clip_id"])
        units = []
        for ref in refs:
            starts, total = ranges_of(ref)
            starts = tuple(starts)
            parts = len(starts)
            for part, start in enumerate(starts):
                key = unit_key(ref.capture_id, part, parts)
                if key in self.unit_records:
                    continue
                first = next_shard_numbers(self.records, shard_prefix(key))
                stop = starts[part + 1] if part + 1 < parts else (total or None)
                units.append(WorkUnit(ref, part, parts, start, stop, frozenset(by_capture.get(ref.capture_id, ())),
                                      tuple(sorted(first.items())), starts, total))
        return units

    # -- receiving ------------------------------------------------------------------------

    def receive(self, blob: bytes) -> dict:
        """Take one worker message; return it decoded."""
        self.driver_bytes += len(blob)
        msg = json.loads(blob)
        if "shard" in msg:
            s = msg["shard"]
            rec = ShardRecord(s["bucket"], s["shard"], s["rows"])
            self.records.append(rec)
            self.committed.update(r["clip_id"] for r in rec.rows)
            self.clips_received += len(rec.rows)
        else:
            self.unit_records[msg["unit"]["key"]] = msg["unit"]["record"]
        return msg

    # -- finishing ------------------------------------------------------------------------

    def finalize(self, inputs: list[str], wall_seconds: float, frames_this_run: int, extra: dict | None = None) -> dict:
        """Write ``manifest.parquet`` and ``stats.json`` from the records; return the stats."""
        by_shard = {rec.shard: rec for rec in self.records}  # a retried unit may have reported a shard twice
        rows = [r for rec in by_shard.values() for r in rec.rows]
        rows += [r for rec in self.unit_records.values() for r in rec["rows"]]
        table = write_manifest(self.store, rows)
        stats = self._stats(rows, len(by_shard), inputs, wall_seconds, frames_this_run)
        stats["manifest_rows"] = table.num_rows
        stats.update(extra or {})
        # README.md and kept/<bucket>.json, written before stats.json marks the dataset complete
        write_dataset_card(self.store.url, table, stats, write=self.store.write_bytes)
        self.store.write_json(STATS, stats)
        return stats

    def _summaries(self) -> list[dict]:
        """One summary per capture, the parts of a capture split into ranges added up."""
        merged: dict[str, dict] = {}
        for key in sorted(self.unit_records, key=lambda k: (self.unit_records[k]["summary"]["capture"],
                                                            self.unit_records[k].get("part", 0))):
            s = self.unit_records[key]["summary"]
            m = merged.get(s["capture"])
            if m is None:
                merged[s["capture"]] = json.loads(json.dumps(s))
                continue
            m["frames_read"] += s["frames_read"]
            m["frames_in_clips"] += s["frames_in_clips"]
            m["frames_dropped"] = dict(Counter(m["frames_dropped"]) + Counter(s["frames_dropped"]))
            m["clip_ids"] += s["clip_ids"]
            m["seconds"] = dict(Counter(m["seconds"]) + Counter(s["seconds"]))
            m["error"] = m["error"] or s["error"]
        return list(merged.values())

    def _stats(self, rows: list[dict], shards: int, inputs: list[str], wall_seconds: float,
               frames_this_run: int) -> dict:
        summaries = self._summaries()
        dropped: Counter[str] = Counter()
        not_written: Counter[str] = Counter()
        for r in rows:
            if r["keep"]:
                continue
            key = (r["reason"] or "unknown").split(":", 1)[0]
            (dropped if r["shard"] is not None else not_written)[key] += 1
        frames_dropped: Counter[str] = Counter()
        seconds: Counter[str] = Counter()
        for s in summaries:
            frames_dropped.update(s["frames_dropped"])
            seconds.update(s["seconds"])
        written = [r for r in rows if r["shard"] is not None]
        return {
            "format": "dav-dataset/1",
            "depth_codec": self.cfg.shards.depth_codec,
            "inputs": inputs,
            "config_fingerprint": self.cfg.fingerprint(),
            "captures": len(summaries),
            "captures_failed": sum(1 for s in summaries if s["error"]),
            "frames_read": sum(s["frames_read"] for s in summaries),
            "frames_in_clips": sum(s["frames_in_clips"] for s in summaries),
            "frames_not_in_clips": dict(sorted(frames_dropped.items())),
            "clips_cut": len(rows),
            "clips_written": len(written),
            "clips_kept": sum(1 for r in rows if r["keep"]),
            "clips_dropped": dict(sorted(dropped.items())),
            "clips_not_written": dict(sorted(not_written.items())),
            "buckets": dict(sorted(Counter(r["bucket"] for r in written).items())),
            "shards": shards,
            "seconds_per_stage": {k: round(v, 3) for k, v in sorted(seconds.items())},
            "wall_seconds_last_run": round(wall_seconds, 3),
            "frames_read_last_run": frames_this_run,
            "frames_per_second_last_run": round(frames_this_run / wall_seconds, 2) if wall_seconds > 0 else None,
            "driver_bytes": self.driver_bytes,
            "complete": True,
        }
