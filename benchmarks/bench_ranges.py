"""One long capture built as one work unit and in frame ranges (``split.range_frames``).

Writes a capture of ``--frames`` frames (a new place every ``--place-every`` frames: colour cuts
where a range can take over), then builds it with the default executor and each
``--range-frames`` value (0 = one unit), every variant in a fresh process and interleaved run by
run; prints frames/s (median of ``--runs``) and checks that every variant gives the same manifest.

    python benchmarks/bench_ranges.py --frames 6500 --width 160 --height 96 --runs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_build import write_capture  # noqa: E402

BUILD = """
import json, sys, time
from dav_builder.pipeline.build import build_dataset
from dav_builder.pipeline.config import load_config
caps, out, rf = sys.argv[1], sys.argv[2], int(sys.argv[3])
cfg = load_config(overrides={"split": {"range_frames": rf}})
t = time.perf_counter()
r = build_dataset([caps], out, cfg, progress=False, say=lambda m: None)
print(json.dumps({"seconds": time.perf_counter() - t, "frames": r.stats["frames_read"]}))
"""


def manifest(out: Path) -> list[tuple]:
    import pyarrow.parquet as pq

    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    return sorted((r["clip_id"], r["keep"], r["reason"], tuple(r["frame_indices"])) for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=6500)
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--height", type=int, default=96)
    ap.add_argument("--place-every", type=int, default=250)
    ap.add_argument("--range-frames", default="0,3000", help="comma-separated; 0 = one work unit")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="dav-bench-ranges-"))
    caps = work / "captures"
    if not caps.exists():
        write_capture(caps / "long", args.frames, args.width, args.height, seed=0, place_every=args.place_every)
    variants = [int(v) for v in args.range_frames.split(",")]
    fps: dict[int, list[float]] = {v: [] for v in variants}
    for run in range(args.runs):
        for v in variants:
            out = work / f"out-{v}"
            subprocess.run(["rm", "-rf", str(out)], check=True)
            res = subprocess.run([sys.executable, "-c", BUILD, str(caps), str(out), str(v)], check=True,
                                 capture_output=True, text=True)
            r = json.loads(res.stdout.strip().splitlines()[-1])
            fps[v].append(r["frames"] / r["seconds"])
        print(f"run {run + 1}: " + ", ".join(f"range_frames {v}: {fps[v][-1]:.1f}" for v in variants) + " frames/s",
              flush=True)
    same = all(manifest(work / f"out-{v}") == manifest(work / f"out-{variants[0]}") for v in variants)
    print(f"{args.frames} frames at {args.width}x{args.height}, a new place every {args.place_every} frames; "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    for v in variants:
        print(f"range_frames {v}: {statistics.median(fps[v]):.1f} frames/s (range {min(fps[v]):.1f}-{max(fps[v]):.1f})")
    print("manifests identical:", same)


if __name__ == "__main__":
    main()
