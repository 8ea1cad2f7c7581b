"""Makes the learned check's shipped weights (dav_builder/filters/weights/learned_defect.*).

Renders (once, kept in ``--work``) the *tuning* group of ``bench_filters.py`` -- scene families
classic, haze_town, checker_rooms and fps_arena with the tuning defect variants -- at seeds that
neither the thresholds are chosen on (300-307) nor anything is measured on (held-back families
fog_fields and tiled_maze are never rendered here), and trains the network on them with
``dav-filter train-check``'s code.  Thresholds are then chosen by ``bench_filters.py`` on seeds
300-307, which the network never saw, and measured on the held-back families.

    .venv/bin/python benchmarks/train_learned_check.py --seeds 308-323 --steps 5000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_filters as bf  # noqa: E402

from dav_builder.filters.learned import SHIPPED_WEIGHTS  # noqa: E402
from dav_builder.filters.learned_train import train_and_save  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="308-323", help="tuning-group seeds to train on (not 300-307: thresholds)")
    ap.add_argument("--captures", type=int, default=6)
    ap.add_argument("--frames", type=int, default=160)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=SHIPPED_WEIGHTS)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "dav-bench-filters")
    args = ap.parse_args()
    seeds = bf.parse_seeds(args.seeds)
    if set(seeds) & set(range(300, 308)):
        ap.error("seeds 300-307 choose the thresholds: train on others")
    t0 = time.perf_counter()
    roots = []
    for s in seeds:
        bf.score_set(s, args.captures, args.frames, args.work, bf.TUNE_FAMILIES, bf.TUNE_VARIANTS, render_only=True)
        roots.append(args.work / f"{bf.group_key(bf.TUNE_FAMILIES, bf.TUNE_VARIANTS, args.captures, args.frames)}-seed{s}")
    print(f"rendered {len(roots)} seeds in {time.perf_counter() - t0:.0f} s")
    note = (f"dav-render seeds {args.seeds}, {args.captures} captures x {args.frames} frames, families "
            f"{bf.TUNE_FAMILIES}, defect variants {bf.TUNE_VARIANTS} (benchmarks/train_learned_check.py)")
    cfg = train_and_save(roots, args.out, args.steps, args.batch, args.lr, args.seed, progress=True, note=note)
    print(f"trained: {cfg.info}")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB) and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
