"""Apply new thresholds to a built dataset: a new dataset with only the kept clips.

Decisions come from the stored scores (:func:`dav_builder.filters.stage.failures`), so nothing is
scored again; ``failed_checks`` lists every check a dropped clip fails under the new thresholds.
Kept clips are re-packed per bucket by copying their tar members; only each clip's small
``.json`` member is rewritten (its ``keep``/``reason``/``failed_checks`` change).  Dropped clips stay in the
new manifest with ``keep = false``, ``shard = null`` and their reason, so the new dataset still
accounts for every clip.
"""

from __future__ import annotations

import json
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
from dav_builder.shards.writer import BucketShardWriter, ShardLimits, atomic_write_json


def scoring_config_of(dataset: Path) -> ScoringConfig:
    """The scoring config the dataset was built with (defaults when unknown)."""
    state = Path(dataset) / "_state" / "build.json"
    if state.is_file():
        cfg = json.loads(state.read_text()).get("config", {}).get("scoring")
        if cfg:
            return ScoringConfig.from_dict(cfg)
    return ScoringConfig()


def apply_thresholds(src: Path, dst: Path, cfg: ScoringConfig, limits: ShardLimits = ShardLimits(),
                     progress: bool = True) -> dict:
    """Write ``dst`` from ``src`` keeping the clips ``cfg`` keeps; return the new stats."""
    src, dst = Path(src), Path(dst)
    if dst.resolve() == src.resolve():
        raise ValueError("--out must differ from the input dataset (the input is never modified)")
    if dst.exists() and any(dst.iterdir()):
        raise ValueError(f"{dst}: exists and is not empty")
    t0 = time.perf_counter()
    rows = read_manifest(src).to_pylist()
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
    dst.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=sum(len(v) for v in by_shard.values()), desc="re-packing", unit="clip", disable=not progress)
    for shard, wanted in sorted(by_shard.items()):
        want = {r["clip_id"]: r for r in wanted}
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
            new = dict(row, keep=True, reason=None, failed_checks=[])
            writer.write_members(sample.members(), new)
            new_rows.append(new)
            bar.update(1)
    bar.close()
    for w in writers.values():
        w.close()
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
