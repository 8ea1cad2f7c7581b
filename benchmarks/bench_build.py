"""Benchmark: dav-build's end-to-end frames/s against the floor on the same machine.

The floor is the least any builder must do: decode every RGB frame once and copy its bytes into a
tar, decoding with OpenCV as the floor was first defined.  dav-build decodes PNGs with a faster
libpng build (imagecodecs), so the floor is also measured with that decoder and both ratios are
printed.  The pipeline additionally reads and converts every depth frame, detects scenes, runs the
model-free checks, and writes depth as float16 ``.npy``.  Also compares scene detection with
the ``scenedetect`` command on the same frames.

Each build runs in a fresh process (its time counts everything from ``build_dataset`` on: Ray's
start-up included, the interpreter's imports not), ``--runs`` times; medians and ranges are
reported.  Builds: the default (no flags: the executor is chosen automatically), ``--local``, and
Ray with 1 and 2 CPUs (a Ray build with fewer CPUs than the machine's is pinned to that many cores,
so that 1 CPU means one core); for each, the driver's CPU seconds per 1,000 frames and the bytes the
driver received (``stats.json``) against the dataset's bytes.  Finally a paper-scale estimate
from the measured per-core throughput.

Run by hand (results go to docs/benchmarks.md):

    .venv/bin/python benchmarks/bench_build.py --captures 4 --frames 300 --width 640 --height 352 --runs 5
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def write_capture(root: Path, n: int, width: int, height: int, seed: int, place_every: int = 0) -> Path:
    """A dav-capture/1 recording: a textured scene panning, a new place (a colour cut) every
    ``place_every`` frames (default: two, at each third); gl depth as npy."""
    rng = np.random.default_rng(seed)
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    near, far = 0.1, 200.0
    fx = 0.8 * width
    K = [[fx, 0, (width - 1) / 2], [0, fx, (height - 1) / 2], [0, 0, 1]]
    lines = []
    texture = None
    for i in range(n):
        if i % (place_every or n // 3 + 1) == 0:  # a new "place"
            texture = cv2.resize(rng.integers(0, 255, (height // 8, width // 4, 3), dtype=np.uint8),
                                 (width * 2, height), interpolation=cv2.INTER_LINEAR)
            base = rng.uniform(2, 20, size=(height // 16 + 1, width // 16 + 1)).astype(np.float32)
        shift = (i * 3) % width
        img = texture[:, shift: shift + width]
        z = cv2.resize(base, (width, height), interpolation=cv2.INTER_LINEAR) + 0.01 * i
        d = (far + near) / (far - near) - 2 * far * near / ((far - near) * z)  # NDC z
        d = ((d + 1) / 2).astype(np.float32)  # OpenGL window depth
        cv2.imwrite(str(root / "rgb" / f"{i:06d}.png"), img)
        np.save(root / "depth" / f"{i:06d}.npy", d)
        pose = np.eye(4)
        pose[0, 3] = 0.02 * i
        lines.append(json.dumps({"index": i, "rgb": f"rgb/{i:06d}.png", "depth": f"depth/{i:06d}.npy",
                                 "K": K, "cam_to_world": pose.tolist()}))
    (root / "frames.jsonl").write_text("\n".join(lines) + "\n")
    (root / "capture.json").write_text(json.dumps({
        "format": "dav-capture/1", "engine": "bench", "fps": 30, "width": width, "height": height,
        "depth": {"encoding": "npy", "convention": "gl", "near": near, "far": far}}))
    return root


def floor_one(capture: Path, out: Path, decoder: str = "opencv") -> int:
    """Decode every RGB frame once and copy the bytes into a tar.  ``decoder``: ``opencv`` (the
    floor as defined) or ``builder`` (the PNG decoder dav-build uses, imagecodecs' libpng)."""
    from dav_builder.capture.imageio import png_rgb

    n = 0
    with tarfile.open(out, "w") as tar:
        for line in (capture / "frames.jsonl").read_text().splitlines():
            rec = json.loads(line)
            data = (capture / rec["rgb"]).read_bytes()
            if decoder == "builder":
                img = png_rgb(data)
            else:
                img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            assert img is not None
            info = tarfile.TarInfo(f"{n:06d}.png")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            n += 1
    return n


def _floor_job(args):
    return floor_one(*args)


def run_floor(captures: list[Path], work: Path, procs: int, decoder: str = "opencv") -> tuple[int, float]:
    t0 = time.perf_counter()
    jobs = [(c, work / f"floor-{i}.tar", decoder) for i, c in enumerate(captures)]
    if procs == 1:
        frames = sum(_floor_job(j) for j in jobs)
    else:
        with mp.get_context("spawn").Pool(procs) as pool:
            frames = sum(pool.map(_floor_job, jobs))
    return frames, time.perf_counter() - t0


def _build_job(args) -> tuple[dict, float, int]:
    captures_root, out, executor, num_cpus = args
    from dav_builder.pipeline.build import build_dataset
    from dav_builder.pipeline.config import load_config

    run = {"executor": executor}
    if num_cpus:
        run.update(num_cpus=num_cpus, object_store_mb=512)
        if hasattr(os, "sched_setaffinity") and num_cpus < len(os.sched_getaffinity(0)):
            # Ray's CPUs are logical: pin this process (and so the Ray processes it starts) to that
            # many cores, or a "1 CPU" build still reads on the other core
            os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:num_cpus])
    cfg = load_config(overrides={"run": run})
    t0 = time.perf_counter()
    result = build_dataset([captures_root], out, cfg, progress=False, say=lambda s: None)
    secs = time.perf_counter() - t0
    data = sum(p.stat().st_size for p in Path(out).rglob("*.tar"))
    if executor == "ray":
        import ray

        ray.shutdown()
    return result.stats, secs, data


def run_build(captures_root: Path, out: Path, executor: str, num_cpus: int | None = None) -> tuple[dict, float, int]:
    """One build in a fresh process (not a pool's daemon: the build starts processes of its own):
    (stats, seconds, dataset bytes)."""
    shutil.rmtree(out, ignore_errors=True)
    job = json.dumps([str(captures_root), str(out), executor, num_cpus])
    res = subprocess.run([os.sys.executable, __file__, "--one-build", job], check=True, capture_output=True, text=True)
    stats, secs, data = json.loads(res.stdout.strip().splitlines()[-1])
    return stats, secs, data


def paper_estimate(per_core_fps: float, width: int, height: int) -> list[str]:
    """Hours for the paper's scale (40,000 clips, about 6M frames at 960x540) on N nodes of M cores."""
    frames = 6_000_000
    scale = (960 * 540) / (width * height)  # decoding and writing cost grows with the pixels
    per_core = per_core_fps / scale
    lines = [f"paper scale: {frames:,} frames at 960x540; measured {per_core_fps:.1f} frames/s per worker "
             f"(frames / worker-seconds of the default build, every core busy; a worker taken as one core) at "
             f"{width}x{height} -> {per_core:.1f} at 960x540 (cost taken as proportional to pixels; no model scoring)"]
    for nodes, cores in ((1, 16), (4, 16), (16, 32), (64, 32)):
        hours = frames / (per_core * nodes * cores) / 3600
        lines.append(f"  {nodes:3d} node(s) x {cores} cores: {hours:7.2f} h")
    return lines


def compare_codecs(caps_root: Path, work: Path, codecs: list[str]) -> None:
    """Local builds of the same captures with each depth codec: speed and bytes of depth."""
    from dav_builder.pipeline.build import build_dataset
    from dav_builder.pipeline.config import load_config
    from dav_builder.shards import tario

    for codec in codecs:  # npy, npz (the default deflate), npz-zlib1, npz-zlib6, npz-isal1...
        name, _, spec = codec.partition("-")
        engine = spec.rstrip("0123456789") or None
        level = int(spec[len(engine):]) if engine and spec[len(engine):] else None
        out = work / f"dataset-{codec}"
        shutil.rmtree(out, ignore_errors=True)
        cfg = load_config(overrides={"run": {"executor": "local"}, "shards": {"depth_codec": name}})
        saved = tario.depth_to_npz
        tario.depth_to_npz = lambda d, lv=None, en=None: saved(d, level, engine)  # read at call time by encode_depth
        try:
            t0 = time.perf_counter()
            stats = build_dataset([caps_root], out, cfg, progress=False, say=lambda s: None).stats
            secs = time.perf_counter() - t0
        finally:
            tario.depth_to_npz = saved
        shards = sum(p.stat().st_size for p in out.glob("shards/*/*.tar"))
        print(f"{codec:10s} local build {stats['frames_read'] / secs:7.1f} frames/s   shards {shards / 2**20:8.1f} MiB"
              f"   stages {stats['seconds_per_stage']}")


def detection_only(capture: Path, threads: int) -> tuple[int, float]:
    """Our scene detection alone, as the splitter does it: reduced decode (read ahead by
    ``threads`` threads, in order) + ContentDetector on the 128-px frames."""
    from concurrent.futures import ThreadPoolExecutor

    from scenedetect import ContentDetector, FrameTimecode

    from dav_builder.capture.imageio import decode_rgb_small

    det = ContentDetector(min_scene_len=4)
    files = sorted((capture / "rgb").glob("*.png"))
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        smalls = pool.map(lambda f: decode_rgb_small(f.read_bytes(), str(f), 128), files)
        for i, small in enumerate(smalls):
            det.process_frame(FrameTimecode(i, 30.0), np.ascontiguousarray(small[..., ::-1]))
    return len(files), time.perf_counter() - t0


def scenedetect_cli(capture: Path) -> float:
    exe = shutil.which("scenedetect") or str(Path(os.sys.executable).parent / "scenedetect")
    t0 = time.perf_counter()
    subprocess.run([exe, "-b", "opencv", "-i", str(capture / "rgb" / "%06d.png"), "-q", "detect-content"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _median_range(values: list[float]) -> str:
    v = sorted(values)
    return f"{statistics.median(v):8.1f} (range {v[0]:.1f}-{v[-1]:.1f})"


def main() -> None:
    if len(os.sys.argv) == 3 and os.sys.argv[1] == "--one-build":
        root, out, executor, cpus = json.loads(os.sys.argv[2])
        print(json.dumps(_build_job((Path(root), Path(out), executor, cpus))))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captures", type=int, default=4)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=352)
    ap.add_argument("--runs", type=int, default=5, help="runs of each build (medians are reported)")
    ap.add_argument("--builds", default="default,local,ray1,ray2", help="which builds to run")
    ap.add_argument("--detection", action="store_true", help="also compare scene detection with the scenedetect command")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--codecs", nargs="*", default=None, metavar="CODEC",
                    help="only compare local builds with these depth codecs (npy, npz, npz-zlib1, npz-zlib6, npz-isal1...)")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="dav-bench-"))
    caps_root = work / "captures"
    if not caps_root.exists():
        for i in range(args.captures):
            write_capture(caps_root / f"cap{i:02d}", args.frames, args.width, args.height, seed=i)
    captures = sorted(caps_root.iterdir())
    ncpu = os.cpu_count() or 1
    if args.codecs:
        compare_codecs(caps_root, work, args.codecs)
        return
    print(f"machine: {platform.processor() or platform.machine()}, {ncpu} cores, python {platform.python_version()}")
    print(f"input: {len(captures)} captures x {args.frames} frames at {args.width}x{args.height}; {args.runs} runs each")
    floors: dict[int, list[float]] = {1: [], ncpu: []}
    floor_fast: list[float] = []  # the floor with dav-build's own PNG decoder
    builds = {"default": ("auto", None), "local": ("local", None), "ray1": ("ray", 1), "ray2": ("ray", 2)}
    chosen = [b for b in args.builds.split(",") if b in builds]
    fps: dict[str, list[float]] = {b: [] for b in chosen}
    last: dict[str, tuple[dict, int]] = {}
    after: dict[str, list[float]] = {}
    starts: dict[str, list[float]] = {}
    for run in range(args.runs):  # interleaved, so that a noisy minute hits every variant alike
        for procs in floors:
            frames, secs = run_floor(captures, work, procs)
            floors[procs].append(frames / secs)
        frames, secs = run_floor(captures, work, 1, "builder")
        floor_fast.append(frames / secs)
        for name in chosen:
            executor, cpus = builds[name]
            stats, secs, data = run_build(caps_root, work / f"dataset-{name}", executor, cpus)
            fps[name].append(stats["frames_read"] / secs)
            if stats.get("seconds_after_ray_start"):  # Ray's start-up apart: the throughput a long build sees
                after.setdefault(name, []).append(stats["frames_read"] / stats["seconds_after_ray_start"])
                starts.setdefault(name, []).append(stats["ray_start_seconds"])
            last[name] = (stats, data)
        print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in {**{f'floor{p}': floors[p] for p in floors},
                                                                         "floor1-builder-decoder": floor_fast,
                                                                         **fps}.items()) + " frames/s")
    for procs, values in floors.items():
        print(f"floor ({procs} process{'es' if procs > 1 else ''}):     {_median_range(values)} frames/s")
    print(f"floor (1 process, dav-build's PNG decoder): {_median_range(floor_fast)} frames/s")
    floor1 = statistics.median(floors[1])
    fast1 = statistics.median(floor_fast)
    for name in chosen:
        stats, data = last[name]
        med = statistics.median(fps[name])
        per_k = 1000 * stats["driver_cpu_seconds"] / max(1, stats["frames_read"])
        running = stats.get("driver_cpu_seconds_running")
        run_k = "" if running is None else f" ({1000 * running / max(1, stats['frames_read']):.3f} after start-up)"
        print(f"dav-build {name:8s} ({stats['executor']}): {_median_range(fps[name])} frames/s, "
              f"{floor1 / med:.2f}x the 1-process floor ({fast1 / med:.2f}x with dav-build's PNG decoder); driver {per_k:.2f} CPU s per 1,000 frames{run_k}, "
              f"{stats['driver_bytes']:,} bytes to the driver = {100 * stats['driver_bytes'] / max(1, data):.3f} % "
              f"of {data:,} dataset bytes")
        if after.get(name):
            print(f"    after Ray's start-up ({_median_range(starts[name]).strip()} s): "
                  f"{_median_range(after[name])} frames/s")
    if "ray1" in fps and "ray2" in fps:
        print(f"Ray 2 CPUs / 1 CPU: {statistics.median(fps['ray2']) / statistics.median(fps['ray1']):.2f}x")
    if "ray1" in after and "ray2" in after:
        print(f"  after start-up: {statistics.median(after['ray2']) / statistics.median(after['ray1']):.2f}x")
    if "ray2" in fps and "local" in fps:
        print(f"Ray 2 CPUs / --local: {statistics.median(fps['ray2']) / statistics.median(fps['local']):.2f}x")
        if "ray2" in after:
            print(f"  after start-up: {statistics.median(after['ray2']) / statistics.median(fps['local']):.2f}x")
    if "default" in last:  # per-core throughput: frames per worker-second, all cores busy
        stats = last["default"][0]
        worker_seconds = sum(stats["seconds_per_stage"].values())
        for line in paper_estimate(stats["frames_read"] / worker_seconds, args.width, args.height):
            print(line)
    if args.detection:
        cli = scenedetect_cli(captures[0])
        for threads in sorted({1, min(4, ncpu)}):
            n, secs = detection_only(captures[0], threads)
            print(f"scene detection ({threads} decode thread{'s' if threads > 1 else ''}): ours {n / secs:8.1f} "
                  f"frames/s, scenedetect command {n / cli:8.1f} frames/s")


if __name__ == "__main__":
    main()
