"""Benchmark: time and size on disk of ``dav-filter report`` for the demo and for a 1,000-clip dataset.

The demo is built as ``dav-build --demo`` builds it.  The 1,000-clip dataset is made from a real
build of engine captures with planted defects (so clips are kept and dropped for several reasons):
its written clips are copied, member bytes unchanged, under new clip ids until there are 1,000
(each copy keeps its scores, keep, reason and failed_checks).  Rendering and building 1,000 clips
would take most of an hour on a small machine and would not change what the report does per
clip: it reads only the shards holding the clips it shows, and draws the same number of them.

    .venv/bin/python benchmarks/bench_report.py --work /tmp/bench-report
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import uuid
from pathlib import Path

from dav_builder.filters.report import ReportConfig, write_report
from dav_builder.pipeline.build import build_dataset
from dav_builder.pipeline.config import load_config
from dav_builder.render.engine import RenderConfig, render_captures
from dav_builder.shards.manifest import read_manifest, write_manifest
from dav_builder.shards.tario import iter_tar_samples
from dav_builder.shards.writer import BucketShardWriter, ShardLimits


def build(captures: Path, out: Path) -> Path:
    if not (out / "manifest.parquet").is_file():
        build_dataset([captures], out, load_config(overrides={"run": {"executor": "local"}}), progress=False,
                      say=lambda s: None)
    return out


def demo(work: Path) -> Path:
    from dav_builder.pipeline.demo import render_demo

    render_demo(work / "demo" / "captures", progress=False)
    return build(work / "demo" / "captures", work / "demo" / "dataset")


def replicated(work: Path, clips: int) -> Path:
    """A dataset of ``clips`` written clips copied from a real build with planted defects."""
    out = work / f"x{clips}"
    if (out / "manifest.parquet").is_file():
        return out
    caps = work / "defects" / "captures"
    if not caps.is_dir():
        render_captures(caps, RenderConfig(scenes=12, frames=96, seed=11, defect_rate=0.3,
                                           defects=("depth_lag", "misaligned", "hud", "frozen_depth")),
                        progress=False)
    src = build(caps, work / "defects" / "dataset")
    rows = {r["clip_id"]: r for r in read_manifest(src).to_pylist()}
    samples = [(s, rows[s.key]) for p in sorted((src / "shards").rglob("*.tar")) for s in iter_tar_samples(p)]
    writers: dict[str, BucketShardWriter] = {}
    new_rows = [dict(r) for r in rows.values() if r["shard"] is None]
    for i in range(clips):
        sample, row = samples[i % len(samples)]
        cid = uuid.uuid5(uuid.NAMESPACE_OID, f"bench-report:{i}").hex
        meta = dict(sample.meta, clip_id=cid)
        members = [(f"{cid}.json", json.dumps(meta, sort_keys=True).encode())]
        members += [(name.replace(sample.key, cid, 1), data) for name, data in sample.members()[1:]]
        w = writers.get(row["bucket"])
        if w is None:
            w = writers[row["bucket"]] = BucketShardWriter(out, row["bucket"], ShardLimits(max_clips=50))
        new = dict(row, clip_id=cid, capture=f"{row['capture']}#{i // len(samples)}")
        w.write_members(members, new)
        new_rows.append(new)
    for w in writers.values():
        w.close()
    write_manifest(out, new_rows)
    return out


def measure(dataset: Path, out: Path, cfg: ReportConfig) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    s = write_report(dataset, out, cfg, overwrite=True, progress=False)
    rows = read_manifest(dataset).to_pylist()
    return {"clips_in_dataset": len(rows), "written": sum(r["shard"] is not None for r in rows),
            "clips_shown": s.clips_shown, "pages": s.pages, "seconds": round(time.perf_counter() - t0, 2),
            "cpu_seconds": round(time.process_time() - c0, 2),
            "megabytes": round(s.bytes / 1e6, 2), "shown_per_group": s.groups}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="Directory for renders, datasets and reports (reused).")
    ap.add_argument("--clips", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=2, help="Runs of each report (times vary on a shared machine).")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    for name, ds in (("demo", demo(args.work)), (f"{args.clips} clips", replicated(args.work, args.clips))):
        for k in range(args.repeat):
            print(name, json.dumps(measure(ds, args.work / f"report-{name.replace(' ', '')}", ReportConfig())))


if __name__ == "__main__":
    main()
