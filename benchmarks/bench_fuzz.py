"""Robustness figures for docs/robustness.md: every defect the fuzz generator knows, one broken
capture each, built beside two good captures.

For each seed: writes the set (tests/fuzz_captures.py), builds the good captures alone and then
everything, and prints one JSON line: captures, defects planted, broken captures with an error
row, broken captures that still gave written clips, failures that were not a validation message
(``unexpected``: a reader's or library's own exception, contained), whether the good captures'
clips are byte-identical to the build without the broken ones, and the wall time.

    python benchmarks/bench_fuzz.py --seeds 0 1 2 3 [--executor ray] [--work /tmp/fuzz]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

import pyarrow.parquet as pq  # noqa: E402

from fuzz_captures import all_defects, write_fuzz_set  # noqa: E402
from dav_builder.pipeline.build import build_dataset  # noqa: E402
from dav_builder.pipeline.config import load_config  # noqa: E402
from dav_builder.shards.tario import iter_tar_samples  # noqa: E402


def clips(ds: Path, captures: set[str]) -> dict:
    rows = {r["clip_id"]: r for r in pq.read_table(ds / "manifest.parquet").to_pylist()}
    return {s.key: s.members() for p in sorted((ds / "shards").rglob("*.tar")) for s in iter_tar_samples(p)
            if rows[s.key]["capture"] in captures}


def run(seed: int, executor: str, work: Path) -> dict:
    root = work / f"seed{seed}"
    shutil.rmtree(root, ignore_errors=True)
    good, broken = write_fuzz_set(root / "in", seed, len(all_defects()))
    cfg = load_config(overrides={"clips": {"lengths": [8, 4]}, "shards": {"max_clips": 8},
                                 "run": {"executor": executor, "num_cpus": 2, "object_store_mb": 300}})
    build_dataset([root / "in" / "good"], root / "ref", cfg, progress=False, say=lambda s: None)
    t0 = time.perf_counter()
    res = build_dataset([root / "in" / "good", root / "in" / "broken"], root / "full", cfg, progress=False,
                        say=lambda s: None)
    seconds = time.perf_counter() - t0
    rows = pq.read_table(root / "full" / "manifest.parquet").to_pylist()
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["capture"], []).append(r)

    def of(b):  # the rows of a broken capture (its folder name may come out escaped)
        return [r for c, rs in by.items() if c.startswith(b.name) for r in rs]

    out = {
        "seed": seed, "executor": executor, "defect_kinds": len(all_defects()), "broken_captures": len(broken),
        "defects_planted": sum(len(b.defects) for b in broken), "captures_in_manifest": len(by),
        "broken_with_error_row": sum(1 for b in broken if any(r["shard"] is None and r["reason"] for r in of(b))),
        "broken_with_written_clips": sum(1 for b in broken if any(r["shard"] for r in of(b))),
        "unexpected": sum(1 for r in rows if "unexpected " in (r["reason"] or "")),
        "good_clips_identical": clips(root / "full", set(good)) == clips(root / "ref", set(good)),
        "build_complete": bool(res.stats["complete"]), "seconds": round(seconds, 1),
    }
    shutil.rmtree(root, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--executor", default="local", choices=("local", "ray"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/dav-fuzz"))
    a = ap.parse_args()
    for seed in a.seeds:
        print(json.dumps(run(seed, a.executor, a.work)), flush=True)


if __name__ == "__main__":
    main()
