"""Benchmark: depth members as float16 ``.npy`` against the lossless ``.npz`` codec.

For each kind of depth frame it reports the member size (bytes and ratio to ``.npy``), the time
to encode a frame (the build pays it, in its reading threads) and to decode it (the trainer's
loader pays it, per sampled frame): ours (:func:`decode_depth`) and webdataset's own decoder.

Depth frames measured (planar metres, as the builder stores them):

- ``demo``: the frames of the built-in demo captures (``dav-build --demo``: 256x144 renders);
- ``<public set>``: one rendered game-like scene at each public set's resolution, passed through
  that set's storage convention (the sets themselves cannot be downloaded here): Virtual KITTI 2
  (centimetre integers, sky 655.35 m invalid), TartanAir (float32, sky 10000 m), Hypersim
  (float16 ray distance, NaN invalid, converted to planar), Sintel (float32), Spring (from float
  disparity, baseline 0.065 m), MVS-Synth (float32, inf sky);
- ``real-like``: the same render at 640x352 and 960x540 with what real depth has and renders do
  not: fine geometry (foliage-like occluders one to three pixels wide in front of the scene),
  multiplicative sensor noise (0.5 %), and holes (3 % of pixels without depth).

    .venv/bin/python benchmarks/bench_depth_codec.py                # all kinds, about a minute
    .venv/bin/python benchmarks/bench_depth_codec.py --repeat 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from dav_builder.shards.tario import decode_depth, depth_to_npy, depth_to_npz

PUBLIC = {  # name: (height, width)
    "vkitti2": (375, 1242),
    "tartanair": (480, 640),
    "hypersim": (768, 1024),
    "sintel": (436, 1024),
    "spring": (1080, 1920),
    "mvs_synth": (1080, 1920),
}


def rendered_depth(root: Path, height: int, width: int, frames: int = 2, seed: int = 3) -> tuple[list, np.ndarray]:
    """Planar metres of a few frames of one dav-render scene at ``height`` x ``width``, and its K."""
    from dav_builder.capture.dav import DavCapture
    from dav_builder.render.engine import RenderConfig, render_captures

    out = root / f"r{height}x{width}"
    render_captures(out, RenderConfig(scenes=1, frames=frames, width=width, height=height, seed=seed),
                    progress=False)
    cap = DavCapture(next(out.glob("*/capture.json")).parent)
    infos = [f for f in cap.frames()]
    return [cap.read_depth(f) for f in infos], infos[0].K


def as_public(name: str, z: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Planar metres as the builder gets them from set ``name``'s files (its quantisation, its
    invalid values), given true planar metres ``z`` (0 = sky)."""
    sky = z <= 0
    if name == "vkitti2":  # 16-bit PNG in cm, 65535 = sky
        cm = np.where(sky, 65535, np.clip(np.round(z * 100), 1, 65534)).astype(np.uint16)
        return np.where(cm == 65535, 0, cm.astype(np.float32) / 100)
    if name == "tartanair":  # float32 metres, sky a large finite 10000
        return np.where(sky, 10000.0, z).astype(np.float32)
    if name == "hypersim":  # float16 ray distance, NaN invalid
        h, w = z.shape
        u, v = np.meshgrid(np.arange(w), np.arange(h))
        f = np.sqrt(1 + ((u - K[0, 2]) / K[0, 0]) ** 2 + ((v - K[1, 2]) / K[1, 1]) ** 2)
        r = np.where(sky, np.nan, z * f).astype(np.float16).astype(np.float32)
        return np.where(np.isfinite(r), r / f, 0).astype(np.float32)
    if name == "spring":  # float disparity at baseline 0.065
        disp = np.where(sky, 0, K[0, 0] * 0.065 / np.maximum(z, 1e-6)).astype(np.float32)
        return np.where(disp > 0, K[0, 0] * 0.065 / np.maximum(disp, 1e-12), 0).astype(np.float32)
    if name == "mvs_synth":  # EXR float, inf sky
        return np.where(sky, np.inf, z).astype(np.float32)
    return z.astype(np.float32)  # sintel: float32 metres


def real_like(z: np.ndarray, seed: int = 0) -> np.ndarray:
    """Rendered depth with fine occluders, 0.5 % multiplicative noise and 3 % holes."""
    rng = np.random.default_rng(seed)
    h, w = z.shape
    d = np.where(z > 0, z, 80.0).astype(np.float32)  # sky seen through as far background
    # foliage: thin random strokes 1-3 px wide, 0.5-3 m in front of the scene, in the lower 2/3
    mask = np.zeros((h, w), bool)
    for _ in range(h * w // 400):
        y, x = rng.integers(h // 3, h), rng.integers(0, w)
        length, width = rng.integers(3, 20), rng.integers(1, 4)
        mask[y: y + length, x: x + width] = True
    near = rng.uniform(0.5, 3.0, size=(h, w)).astype(np.float32)
    d = np.where(mask, np.minimum(d, near + 0.02 * np.arange(w, dtype=np.float32)[None] / w), d)
    d = d * (1 + 0.005 * rng.standard_normal((h, w)).astype(np.float32))
    d[rng.random((h, w)) < 0.03] = 0
    return d


def measure(frames: list[np.ndarray], repeat: int) -> dict:
    """Sizes and per-frame times of the codecs on ``frames``."""
    import webdataset as wds

    out: dict = {"frames": len(frames), "shape": list(frames[0].shape)}
    npy = [depth_to_npy(f) for f in frames]
    out["npy_bytes"] = int(np.mean([len(b) for b in npy]))
    t0 = time.perf_counter()
    for _ in range(repeat):
        for b in npy:
            decode_depth(b)
    out["npy_decode_ms"] = round((time.perf_counter() - t0) * 1000 / (repeat * len(npy)), 3)
    for name, engine, level in (("isal2", "isal", 2), ("zlib1", "zlib", 1), ("zlib6", "zlib", 6)):
        t0 = time.perf_counter()
        for _ in range(repeat):
            enc = [depth_to_npz(f, level, engine) for f in frames]
        enc_ms = (time.perf_counter() - t0) * 1000 / (repeat * len(frames))
        assert all(np.array_equal(decode_depth(a), decode_depth(b)) for a, b in zip(enc, npy)), "not lossless"
        t0 = time.perf_counter()
        for _ in range(repeat):
            for b in enc:
                decode_depth(b)
        dec_ms = (time.perf_counter() - t0) * 1000 / (repeat * len(enc))
        t0 = time.perf_counter()
        for _ in range(repeat):
            for b in enc:
                wds.autodecode.npz_loads(b)
        wds_ms = (time.perf_counter() - t0) * 1000 / (repeat * len(enc))
        size = int(np.mean([len(b) for b in enc]))
        out[f"npz_{name}"] = {"bytes": size, "ratio": round(out["npy_bytes"] / size, 2),
                              "encode_ms": round(enc_ms, 3), "decode_ms": round(dec_ms, 3),
                              "webdataset_decode_ms": round(wds_ms, 3)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", nargs="*", default=None, help="kinds to measure (demo, real-like, a public set)")
    args = ap.parse_args()
    want = lambda k: args.only is None or k in args.only  # noqa: E731
    report: dict = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                               f"numpy {np.__version__}"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if want("demo"):
            from dav_builder.capture.dav import DavCapture
            from dav_builder.pipeline.demo import render_demo

            from dav_builder.capture.base import FrameError

            frames = []
            for cap_dir in render_demo(root / "demo", progress=False):
                cap = DavCapture(cap_dir)
                for f in list(cap.frames())[::8]:
                    try:
                        frames.append(cap.read_depth(f))
                    except FrameError:  # the demo's planted menus have no depth
                        pass
            report["demo"] = measure(frames, args.repeat)
        for name, (h, w) in PUBLIC.items():
            if want(name):
                zs, K = rendered_depth(root, h, w)
                report[name] = measure([as_public(name, z, K) for z in zs], args.repeat)
        if want("real-like"):
            for h, w in ((352, 640), (540, 960)):
                zs, _ = rendered_depth(root, h, w)
                report[f"real-like {h}x{w}"] = measure([real_like(z, i) for i, z in enumerate(zs)], args.repeat)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
