"""The driver side of a build: shard writers per bucket, resume state, manifest and stats.

Resume works on two kinds of completion records, both written atomically:

- ``_state/shards/<bucket>/<n>.json`` (by :mod:`dav_builder.shards.writer`): the rows of the
  clips in one complete shard;
- ``_state/captures/<hash>.json``: a capture's summary and its unwritable rows, written once every
  clip of the capture is in a complete shard.

A rerun skips the captures that have a record, skips the clips already in complete shards, and
redoes the rest.  The final manifest is the union of the records, so every clip appears once.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

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
    atomic_write_json,
    recover,
)

STATS = "stats.json"
BUILD_STATE = "build.json"


def capture_record_path(dataset: Path, capture: str) -> Path:
    return dataset / STATE_DIR / "captures" / f"{hashlib.sha1(capture.encode()).hexdigest()}.json"


def load_capture_records(dataset: Path) -> dict[str, dict]:
    out = {}
    for path in sorted((dataset / STATE_DIR / "captures").glob("*.json")):
        rec = json.loads(path.read_text())
        out[rec["summary"]["capture"]] = rec
    return out


class DatasetSink:
    """Receives :class:`Item` s in any order and turns them into the dataset on disk."""

    def __init__(self, dataset: Path, cfg: BuildConfig):
        self.dataset = Path(dataset)
        self.cfg = cfg
        self.limits = ShardLimits(cfg.shards.max_clips, int(cfg.shards.max_mb * (1 << 20)), cfg.shards.fsync)
        self.records: list[ShardRecord] = recover(self.dataset)
        self.committed: set[str] = {r["clip_id"] for rec in self.records for r in rec.rows}
        self.capture_records = {
            cap: rec for cap, rec in load_capture_records(self.dataset).items() if self._record_intact(rec)
        }
        self.writers: dict[str, BucketShardWriter] = {}
        self.pending_rows: dict[str, list[dict]] = {}  # capture -> unwritable rows not yet recorded
        self.pending_summaries: dict[str, CaptureSummary] = {}
        self.pending_seconds: dict[str, Counter] = {}
        self.clips_written = 0
        self.write_seconds = 0.0

    def _record_intact(self, record: dict) -> bool:
        """A capture counts as done only while every clip it produced is still stored."""
        unwritten = {r["clip_id"] for r in record["rows"]}
        return all(cid in self.committed or cid in unwritten for cid in record["summary"]["clip_ids"])

    # -- what a rerun may skip ------------------------------------------------------------

    def done_captures(self) -> set[str]:
        return set(self.capture_records)

    def done_clip_ids(self) -> frozenset[str]:
        return frozenset(self.committed)

    # -- receiving ------------------------------------------------------------------------

    def add(self, item: Item) -> None:
        if item.clip is not None:
            self._add_clip(item.clip, item.seconds)
        if item.summary is not None:
            s = item.summary
            self.pending_summaries[s.capture] = s
            self._try_complete(s.capture)

    def _add_clip(self, clip: Clip, seconds: dict[str, float]) -> None:
        acc = self.pending_seconds.setdefault(clip.capture, Counter())
        acc.update(seconds)
        if clip.clip_id in self.committed:
            return  # already in a complete shard (a duplicate after a resume)
        if not clip.loaded:
            self.pending_rows.setdefault(clip.capture, []).append(clip_row(clip))
            return
        t0 = time.perf_counter()
        writer = self.writers.get(clip.bucket or "")
        if writer is None:
            assert clip.bucket, f"clip {clip.clip_id} reached the writer without a bucket"
            writer = BucketShardWriter(self.dataset, clip.bucket, self.limits, on_complete=self._on_shard)
            self.writers[clip.bucket] = writer
        writer.write(clip, clip_row)
        self.clips_written += 1
        dt = time.perf_counter() - t0
        self.write_seconds += dt
        acc["write"] += dt

    def _on_shard(self, record: ShardRecord) -> None:
        self.records.append(record)
        captures = set()
        for row in record.rows:
            self.committed.add(row["clip_id"])
            captures.add(row["capture"])
        for capture in captures:
            self._try_complete(capture)

    def _try_complete(self, capture: str) -> None:
        """Write the capture's record once all its clips are stored."""
        summary = self.pending_summaries.get(capture)
        if summary is None:
            return
        rows = self.pending_rows.get(capture, [])
        held = {r["clip_id"] for r in rows}
        if any(cid not in self.committed and cid not in held for cid in summary.clip_ids):
            return
        summary.seconds = dict(Counter(summary.seconds) + self.pending_seconds.pop(capture, Counter()))
        record = {"summary": asdict(summary), "rows": rows}
        atomic_write_json(capture_record_path(self.dataset, capture), record, fsync=self.limits.fsync)
        self.capture_records[capture] = record
        self.pending_rows.pop(capture, None)
        del self.pending_summaries[capture]

    # -- finishing ------------------------------------------------------------------------

    def close(self) -> None:
        """Complete every open shard (and so every capture whose clips are all written)."""
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()

    def incomplete(self) -> list[str]:
        return sorted(self.pending_summaries)

    def finalize(self, inputs: list[str], wall_seconds: float, frames_this_run: int) -> dict:
        """Write ``manifest.parquet`` and ``stats.json`` from the records; return the stats."""
        rows = [r for rec in self.records for r in rec.rows]
        rows += [r for rec in self.capture_records.values() for r in rec["rows"]]
        table = write_manifest(self.dataset, rows)
        stats = self._stats(rows, inputs, wall_seconds, frames_this_run)
        stats["manifest_rows"] = table.num_rows
        write_dataset_card(self.dataset, table, stats)  # README.md and kept/<bucket>.json, before stats marks it complete
        atomic_write_json(self.dataset / STATS, stats)
        return stats

    def _stats(self, rows: list[dict], inputs: list[str], wall_seconds: float, frames_this_run: int) -> dict:
        summaries = [rec["summary"] for rec in self.capture_records.values()]
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
        frames_read = sum(s["frames_read"] for s in summaries)
        return {
            "format": "dav-dataset/1",
            "depth_codec": self.cfg.shards.depth_codec,
            "inputs": inputs,
            "config_fingerprint": self.cfg.fingerprint(),
            "captures": len(summaries),
            "captures_failed": sum(1 for s in summaries if s["error"]),
            "frames_read": frames_read,
            "frames_in_clips": sum(s["frames_in_clips"] for s in summaries),
            "frames_not_in_clips": dict(sorted(frames_dropped.items())),
            "clips_cut": len(rows),
            "clips_written": len(written),
            "clips_kept": sum(1 for r in rows if r["keep"]),
            "clips_dropped": dict(sorted(dropped.items())),
            "clips_not_written": dict(sorted(not_written.items())),
            "buckets": dict(sorted(Counter(r["bucket"] for r in written).items())),
            "shards": len(self.records),
            "seconds_per_stage": {k: round(v, 3) for k, v in sorted(seconds.items())},
            "wall_seconds_last_run": round(wall_seconds, 3),
            "frames_read_last_run": frames_this_run,
            "frames_per_second_last_run": round(frames_this_run / wall_seconds, 2) if wall_seconds > 0 else None,
            "complete": True,
        }
