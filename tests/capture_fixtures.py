"""Write small captures in our own layout (CAPTURE_FORMAT.md, ``dav-capture/1``) for tests.

The scene is analytic so every test knows the true planar metres of every pixel:
:func:`scene_depth` is a fronto-parallel wall with a tilted plane in front of it, moving a little
with the frame index.  :func:`write_dav_capture` encodes that depth through any convention and
encoding, writes matching RGB frames and returns the capture directory.  The other helpers plant
defects (truncated files, crafted oversize PNG headers, edited frame lines) for error tests.

Typical use::

    root = write_dav_capture(tmp_path / "cap", frames=4, convention="reversed", encoding="exr")
    cap = DavCapture(root)
    info = next(f for f in cap.frames())
    z = cap.read_depth(info)            # ~ scene_depth(info.index, cap.height, cap.width, info.K)
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable

import cv2
import numpy as np

from dav_builder.capture import depth as dconv
from dav_builder.capture.imageio import write_depth_file

#: ``depth_fn(index, height, width, K) -> planar metres`` (0 = no depth).
DepthFn = Callable[[int, int, int, np.ndarray], np.ndarray]

ENCODINGS = ("exr", "npy", "png16", "raw")
EXT = {"exr": "exr", "npy": "npy", "png16": "png", "raw": "bin"}


def default_K(width: int, height: int, fov_x_deg: float = 60.0) -> np.ndarray:
    """A pinhole K with square pixels, the principal point slightly off centre (to catch mix-ups)."""
    fx = width / 2 / np.tan(np.radians(fov_x_deg) / 2)
    return np.array([[fx, 0.0, width / 2 - 0.5 + 0.75], [0.0, fx * 1.02, height / 2 - 0.5 - 0.5], [0.0, 0.0, 1.0]])


def scene_depth(index: int, height: int, width: int, K: np.ndarray) -> np.ndarray:
    """Planar metres of the test scene: a wall at ``8 + 0.1 index`` m, and in the left half a plane
    tilted about the vertical axis (``z = 3 + 2 x / z``-style ramp, 3..5 m), float64."""
    K = np.asarray(K, dtype=np.float64)
    xs = (np.arange(width) - K[0, 2]) / K[0, 0]  # x / z of each pixel's ray
    wall = np.full((height, width), 8.0 + 0.1 * index)
    # plane z = z0 + t * X  (X = x/z * z)  =>  z = z0 / (1 - t * x/z)
    tilted = 4.0 / (1.0 - 0.6 * xs)[None, :].repeat(height, axis=0)
    return np.where((np.arange(width) < width // 2)[None, :], np.minimum(tilted, wall), wall)


def rgb_frame(index: int, height: int, width: int) -> np.ndarray:
    """A deterministic, textured uint8 RGB frame (smooth gradients plus seeded noise)."""
    rng = np.random.default_rng(index)
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([(x * 255 // max(width - 1, 1) + 5 * index) % 256, y * 255 // max(height - 1, 1),
                    np.full_like(x, (40 * index) % 256)], axis=-1)
    return np.clip(img + rng.integers(-10, 11, img.shape), 0, 255).astype(np.uint8)


def encode_rgb(rgb: np.ndarray, fmt: str = "png") -> bytes:
    """PNG or JPEG bytes of an RGB uint8 image."""
    ok, buf = cv2.imencode("." + fmt, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok, f"cannot encode {fmt}"
    return buf.tobytes()


def encode_depth(
    z: np.ndarray,
    convention: str,
    *,
    near: float | None = None,
    far: float | None = None,
    scale: float = 1.0,
    kind: str = "z",
    K: np.ndarray | None = None,
    invalid_value: float | None = None,
    encoding: str = "npy",
) -> np.ndarray:
    """The stored buffer for planar metres ``z`` (0 = no depth), in the dtype ``encoding`` stores."""
    z = np.asarray(z, dtype=np.float64)
    if kind == "ray":
        z = dconv.planar_to_ray(z, K).astype(np.float64)
    d = dconv.from_planar_metres(np.where(z > 0, z, 1.0), convention, near=near, far=far, scale=scale)
    if invalid_value is not None:
        fill = invalid_value
    elif encoding == "png16" or convention == "reversed_infinite":
        fill = 0.0  # maps to z = 0 (png16, linear) or to the infinitely far sky (reversed_infinite)
    else:
        fill = np.nan
    d = np.where(z > 0, d, fill)
    if encoding == "png16":
        return np.clip(np.round(d), 0, 65535).astype(np.uint16)
    return d.astype(np.float32)


def write_dav_capture(
    root: str | Path,
    *,
    frames: int | Iterable[int] = 4,
    width: int = 32,
    height: int = 24,
    fps: float = 30.0,
    convention: str = "linear",
    encoding: str = "npy",
    near: float | None = 0.5,
    far: float | None = 100.0,
    kind: str = "z",
    scale: float = 1.0,
    invalid: Iterable[float] = (),
    depth_fn: DepthFn = scene_depth,
    K: np.ndarray | None = None,
    intrinsics: str = "K",
    planes_in_meta: bool = True,
    poses: bool = True,
    times: bool = False,
    rgb_format: str = "png",
    npy_dtype: str = "float32",
    engine: str = "test fixture",
    meta_overrides: dict[str, Any] | None = None,
) -> Path:
    """Write a capture in the dav layout and return its directory.

    ``frames`` is a count or the list of frame indices (gaps allowed).  ``intrinsics`` is ``"K"``,
    ``"projection"`` (an OpenGL-style matrix built from ``K`` and near/far for the convention)
    or ``"both"``.  ``planes_in_meta=False`` leaves near/far out of capture.json (then frames need
    a projection).  The first ``invalid`` value marks pixels where ``depth_fn`` returns 0.
    ``meta_overrides`` are merged into capture.json last (``{"depth": {...}}`` merges into depth).
    """
    root = Path(root)
    (root / "rgb").mkdir(parents=True, exist_ok=True)
    (root / "depth").mkdir(exist_ok=True)
    indices = list(range(frames)) if isinstance(frames, int) else list(frames)
    K = default_K(width, height) if K is None else np.asarray(K, dtype=np.float64)
    invalid = list(invalid)
    if convention == "reversed_infinite":
        far = None
    depth_meta: dict[str, Any] = {"encoding": encoding, "convention": convention}
    if convention == "linear":
        depth_meta.update(kind=kind, scale=scale)
    elif planes_in_meta:
        depth_meta["near"] = near
        if far is not None:
            depth_meta["far"] = far
    if invalid:
        depth_meta["invalid"] = invalid
    meta: dict[str, Any] = {"format": "dav-capture/1", "engine": engine, "fps": fps, "width": width,
                            "height": height, "depth": depth_meta}
    for key, value in (meta_overrides or {}).items():
        if key == "depth" and isinstance(value, dict):
            depth_meta.update(value)
        else:
            meta[key] = value
    (root / "capture.json").write_text(json.dumps(meta, indent=2))

    proj_conv = convention if convention != "linear" else "gl"
    P = None
    if intrinsics in ("projection", "both"):
        P = dconv.perspective_projection(K, width, height, near, np.inf if far is None else far, proj_conv)
    lines = []
    for index in indices:
        rgb_rel = f"rgb/{index:06d}.{'jpg' if rgb_format == 'jpg' else 'png'}"
        dep_rel = f"depth/{index:06d}.{EXT[encoding]}"
        (root / rgb_rel).write_bytes(encode_rgb(rgb_frame(index, height, width), rgb_format))
        z = depth_fn(index, height, width, K)
        stored = encode_depth(z, convention, near=near, far=far, scale=scale, kind=kind, K=K,
                              invalid_value=invalid[0] if invalid else None, encoding=encoding)
        if encoding == "npy":
            stored = stored.astype(npy_dtype)
        write_depth_file(root / dep_rel, stored, encoding)
        rec: dict[str, Any] = {"index": index, "rgb": rgb_rel, "depth": dep_rel}
        if times:
            rec["time"] = index / fps + 0.001
        if intrinsics in ("K", "both"):
            rec["K"] = K.tolist()
        if P is not None:
            rec["projection"] = P.tolist()
        if poses:
            rec["cam_to_world"] = pose(index).tolist()
        lines.append(json.dumps(rec))
    (root / "frames.jsonl").write_text("\n".join(lines) + "\n")
    return root


def pose(index: int) -> np.ndarray:
    """The fixture's camera-to-world pose of frame ``index``: a slow yaw and a forward walk."""
    a = 0.02 * index
    T = np.eye(4)
    T[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    T[:3, 3] = [0.1 * index, 0.0, 0.05 * index]
    return T


# -- defects --------------------------------------------------------------------------------


def read_frame_lines(root: Path) -> list[dict[str, Any]]:
    """The capture's frames.jsonl records."""
    return [json.loads(line) for line in (Path(root) / "frames.jsonl").read_text().splitlines() if line.strip()]


def write_frame_lines(root: Path, records: Iterable[dict[str, Any] | str]) -> None:
    """Replace frames.jsonl; a ``str`` record is written verbatim (for malformed lines)."""
    text = "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records)
    (Path(root) / "frames.jsonl").write_text(text + "\n")


def edit_frame(root: Path, frame_index: int, /, **changes: Any) -> None:
    """Change keys of the frame line whose index is ``frame_index`` (a value of None removes the key)."""
    records = read_frame_lines(root)
    for rec in records:
        if rec["index"] == frame_index:
            for key, value in changes.items():
                if value is None:
                    rec.pop(key, None)
                else:
                    rec[key] = value
    write_frame_lines(root, records)


def truncate_file(path: Path, keep: float = 0.5) -> None:
    """Cut a file to ``keep`` of its length (at least one byte shorter)."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: min(int(len(data) * keep), len(data) - 1)])


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny, well-formed-looking PNG whose IHDR claims ``width`` x ``height`` (8-bit RGB).

    Its image data is a few bytes only, so nothing huge is ever allocated by writing it; a reader
    that trusts the header and decodes would try to allocate ``width * height * 3`` bytes.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def write_long_frames_jsonl(root: Path, n: int, *, width: int = 32, height: int = 24) -> Path:
    """A capture whose frames.jsonl has ``n`` lines (files not written): for streaming tests."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    meta = {"format": "dav-capture/1", "fps": 30, "width": width, "height": height,
            "depth": {"encoding": "npy", "convention": "linear"}}
    (root / "capture.json").write_text(json.dumps(meta))
    K = json.dumps(default_K(width, height).tolist())
    with open(root / "frames.jsonl", "w") as fh:
        for i in range(n):
            fh.write(f'{{"index": {i}, "rgb": "rgb/{i:06d}.png", "depth": "depth/{i:06d}.npy", "K": {K}}}\n')
    return root
