"""Apply new thresholds to a built dataset: a new dataset with only the kept clips.

Decisions come from the stored scores (:func:`dav_builder.filters.stage.failures`), so nothing is
scored again; ``failed_checks`` lists every check a dropped clip fails under the new thresholds.
Kept clips are re-packed per bucket by copying their tar members; only each clip's small
``.json`` member is rewritten (its ``keep``/``reason``/``failed_checks`` change).  Dropped clips stay in the
new manifest with ``keep = false``, ``shard = null`` and their reason, so the new dataset still
accounts for every clip.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from dav_builder.clip import failed_checks_of
from dav_builder.filters.config import ScoringConfig
from dav_builder.filters.stage import CHECKS, SCORE_NAMES, failures
from dav_builder.shards.card import write_dataset_card
from dav_builder.shards.manifest import read_manifest, write_manifest
from dav_builder.shards.tario import iter_tar_samples
from dav_builder.shards.writer import (STATE_DIR, BucketShardWriter, ShardLimits, atomic_write_json,
                                       load_shard_records, recover)


def scoring_config_of(dataset: Path) -> ScoringConfig:
    """The scoring config the dataset was built with (defaults when unknown)."""
    state = Path(dataset) / "_state" / "build.json"
    if state.is_file():
        cfg = json.loads(state.read_text()).get("config", {}).get("scoring")
        if cfg:
            return ScoringConfig.from_dict(cfg)
    return ScoringConfig()


APPLY_STATE = "apply.json"


def _apply_fingerprint(src: Path, cfg: ScoringConfig, limits: ShardLimits) -> dict:
    """What must match for a rerun to resume an apply rather than start again."""
    state = {"source": str(Path(src).resolve()), "scoring": dataclasses.asdict(cfg),
             "max_clips": limits.max_clips, "max_bytes": limits.max_bytes}
    return json.loads(json.dumps(state, default=str))  # as it reads back from the file


def _prepare_output(src: Path, dst: Path, state: dict, overwrite: bool) -> dict | None:
    """Make ``dst`` ready: empty, or a resumable apply of the same source and thresholds.
    Returns the stats of a finished identical apply (nothing to do), else None."""
    marker = dst / STATE_DIR / APPLY_STATE
    if overwrite and dst.exists():
        shutil.rmtree(dst)
    if dst.exists() and any(dst.iterdir()):
        prev = None
        if marker.is_file():
            try:
                prev = json.loads(marker.read_text())
            except ValueError:
                prev = None
        if prev != state:
            what = ("holds a dav-filter apply of another source or other thresholds" if marker.is_file()
                    else "is not a dav-filter apply output")
            raise ValueError(f"{dst}: exists and is not empty ({what}); rerun the same command to resume "
                             "an interrupted apply, pass --overwrite to replace it, or choose another --out")
        stats_path = dst / "stats.json"
        if stats_path.is_file() and (dst / "manifest.parquet").is_file():
            stats = json.loads(stats_path.read_text())
            if stats.get("complete"):
                return stats
    dst.mkdir(parents=True, exist_ok=True)
    atomic_write_json(marker, state)
    return None


def apply_thresholds(src: Path, dst: Path, cfg: ScoringConfig, limits: ShardLimits = ShardLimits(),
                     progress: bool = True, overwrite: bool = False) -> dict:
    """Write ``dst`` from ``src`` keeping the clips ``cfg`` keeps; return the new stats.

    Resumable like a build: shards are completed atomically with their records
    (:mod:`dav_builder.shards.writer`), the manifest and ``stats.json`` (``complete: true``) are
    written last, so an interrupted apply never looks complete; rerunning the same command
    deletes the partial shard, keeps the complete ones and writes the rest, giving the same
    dataset as an uninterrupted run.  ``overwrite`` deletes ``dst`` first.  The output is locked
    against a second writer (:mod:`dav_builder.pipeline.lock`).
    """
    from dav_builder.pipeline.lock import sole_writer

    src, dst = Path(src), Path(dst)
    if dst.resolve() == src.resolve():
        raise ValueError("--out must differ from the input dataset (the input is never modified)")
    with sole_writer(dst, "dav-filter apply", ValueError):
        return _apply(src, dst, cfg, limits, progress, overwrite)


def _apply(src: Path, dst: Path, cfg: ScoringConfig, limits: ShardLimits, progress: bool, overwrite: bool) -> dict:
    t0 = time.perf_counter()
    rows = read_manifest(src).to_pylist()  # before touching dst: a bad source leaves dst as it was
    finished = _prepare_output(src, dst, _apply_fingerprint(src, cfg, limits), overwrite)
    if finished is not None:
        return dict(finished, already_complete=True)
    committed = {r["clip_id"] for rec in recover(dst) for r in rec.rows}
    decisions: dict[str, tuple[bool, str | None, list[str]]] = {}
    for r in rows:
        if r["shard"] is None:  # never written: stays as it was
            decisions[r["clip_id"]] = (False, r["reason"],
                                        r.get("failed_checks") or failed_checks_of(False, r["reason"], []))
        else:
            failed = failures({k: r.get(k) for k in SCORE_NAMES}, cfg)
            decisions[r["clip_id"]] = (not failed, failed[0] if failed else None, failed)
    by_shard: dict[str, list[dict]] = {}
    for r in rows:
        if r["shard"] is not None and decisions[r["clip_id"]][0]:
            by_shard.setdefault(r["shard"], []).append(r)
    new_rows = [dict(r, keep=False, shard=None, bucket=r["bucket"] if r["shard"] else None,
                     reason=decisions[r["clip_id"]][1], failed_checks=decisions[r["clip_id"]][2])
                for r in rows if not decisions[r["clip_id"]][0]]
    writers: dict[str, BucketShardWriter] = {}
    total = sum(len(v) for v in by_shard.values())
    bar = tqdm(total=total, initial=len(committed), desc="re-packing", unit="clip", disable=not progress)
    try:
        for shard, wanted in sorted(by_shard.items()):
            want = {r["clip_id"]: r for r in wanted if r["clip_id"] not in committed}
            if not want:
                continue
            for sample in iter_tar_samples(src / shard):
                row = want.get(sample.key)
                if row is None:
                    continue
                meta = dict(sample.meta, keep=True, reason=None, failed_checks=[])
                sample.meta = meta
                bucket = row["bucket"]
                writer = writers.get(bucket)
                if writer is None:
                    writer = writers[bucket] = BucketShardWriter(dst, bucket, limits)
                writer.write_members(sample.members(), dict(row, keep=True, reason=None, failed_checks=[]))
                bar.update(1)
    finally:
        bar.close()
    for w in writers.values():
        w.close()
    new_rows += [r for rec in load_shard_records(dst) for r in rec.rows]  # this run's and a killed run's
    table = write_manifest(dst, new_rows)
    dropped = Counter((r["reason"] or "").split(":", 1)[0] for r in new_rows if not r["keep"] and r["bucket"])
    stats = {
        "format": "dav-dataset/1",
        "source": str(src.resolve()),
        "clips_cut": len(new_rows),
        "clips_kept": sum(1 for r in new_rows if r["keep"]),
        "clips_dropped": dict(sorted(dropped.items())),
        "thresholds": {"depth": cfg.depth.threshold, "semantic": cfg.clip.threshold,
                       **{n: getattr(cfg, n).threshold for n in CHECKS if getattr(cfg, n).enabled}},
        "seconds": round(time.perf_counter() - t0, 3),
        "complete": True,
    }
    src_stats = src / "stats.json"
    stats["depth_codec"] = json.loads(src_stats.read_text()).get("depth_codec", "npy") if src_stats.is_file() else "npy"
    write_dataset_card(dst, table, stats)  # members are copied: the codec is the source's
    atomic_write_json(dst / "stats.json", stats)
    return stats
