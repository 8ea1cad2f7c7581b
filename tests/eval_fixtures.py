"""Write tiny copies of the evaluation benchmarks in their official layouts (for the readers' tests,
the ``dav-train eval --benchmark`` test and ``benchmarks/bench_eval.py``).

Every set holds a camera moving forward in front of a slanted plane, so the depth (planar z in
metres) and the poses are known exactly: ``scene_depth(t, h, w)``.  Each writer returns what a
test needs to check the reader (names, counts, a depth value, intrinsics).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

STEP = 0.05
"""Metres the camera moves forward per frame."""


def scene_K(h: int, w: int) -> np.ndarray:
    return np.array([[0.8 * w, 0, (w - 1) / 2], [0, 0.8 * w, (h - 1) / 2], [0, 0, 1.0]])


def scene_pose(t: int) -> np.ndarray:
    p = np.eye(4)
    p[2, 3] = STEP * t
    return p


def scene_depth(t: int, h: int, w: int, base: float = 3.0, K: np.ndarray | None = None) -> np.ndarray:
    """Planar depth, seen from the camera at frame t (intrinsics K, default :func:`scene_K`), of the
    plane z = base + 0.4 x (world metres): tilted about the y axis."""
    K = scene_K(h, w) if K is None else K
    xs = (np.arange(w) - K[0, 2]) / K[0, 0]            # X / Z of each column
    # plane z_world = base + 0.4 * x_world; camera at z = STEP * t: z_cam = (base - STEP t) / (1 - 0.4 xs)
    z = (base - STEP * t) / (1 - 0.4 * xs)
    return np.broadcast_to(z[None, :], (h, w)).astype(np.float32).copy()


def scene_rgb(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tex = rng.integers(0, 255, (h // 4 + 1, w // 4 + 1, 3)).astype(np.uint8)
    img = cv2.resize(tex, (w + 8, h), interpolation=cv2.INTER_NEAREST)
    shift = min(t, 7)
    return np.ascontiguousarray(img[:, shift:shift + w])


def _png(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), img), path


def write_scannetpp(root: Path, scenes=("0a5c013435", "1ada7a0617"), n: int | tuple = 8, rgb_hw=(48, 64),
                    depth_hw=(24, 32), depth_fn=None, pose_fn=None) -> dict:
    """``n``: frames per scene (or one count per scene); ``depth_fn(t, h, w)`` and ``pose_fn(t)``
    replace the slanted plane and its forward motion (their intrinsics: :func:`scene_K`)."""
    depth_fn, pose_fn = depth_fn or scene_depth, pose_fn or scene_pose
    counts = n if isinstance(n, tuple) else (n,) * len(scenes)
    for s, (scene, count) in enumerate(zip(scenes, counts)):
        d = root / "data" / scene / "iphone"
        meta = {}
        for t in range(count):
            name = f"frame_{t:06d}"
            _png(d / "rgb" / f"{name}.jpg", scene_rgb(t, *rgb_hw, seed=s))
            _png(d / "depth" / f"{name}.png", np.round(depth_fn(t, *depth_hw) * 1000).astype(np.uint16))
            meta[name] = {"timestamp": t / 30, "intrinsic": scene_K(*rgb_hw).tolist(), "pose": np.eye(4).tolist(),
                          "aligned_pose": pose_fn(t).tolist(), "imu": {}}
        (d / "pose_intrinsic_imu.json").write_text(json.dumps(meta))
    return {"scenes": list(scenes), "frames": n, "depth_hw": depth_hw, "rgb_hw": rgb_hw}


def write_scannet(root: Path, scenes=("scene0707_00",), n: int = 10, rgb_hw=(36, 48), depth_hw=(24, 32)) -> dict:
    for scene in scenes:
        d = root / "scans_test" / scene
        for t in range(n):
            _png(d / "color" / f"{t}.jpg", scene_rgb(t, *rgb_hw))
            _png(d / "depth" / f"{t}.png", np.round(scene_depth(t, *depth_hw) * 1000).astype(np.uint16))
            (d / "pose").mkdir(parents=True, exist_ok=True)
            np.savetxt(d / "pose" / f"{t}.txt", scene_pose(t), fmt="%.6f")
        (d / "intrinsic").mkdir(parents=True, exist_ok=True)
        k4 = np.eye(4)
        k4[:3, :3] = scene_K(*depth_hw)
        np.savetxt(d / "intrinsic" / "intrinsic_depth.txt", k4, fmt="%.6f")
    return {"scenes": list(scenes), "frames": n, "depth_hw": depth_hw}


def write_kitti(root: Path, frames=(69, 70), hw=(375, 1242), f: float = 721.5377) -> dict:
    """Raw drive with image_02, velodyne scans, calibration, annotated maps and both split lists."""
    date, drive = "2011_09_26", "2011_09_26_drive_0002_sync"
    h, w = hw
    cx, cy = 609.5593, 172.854
    (root / date).mkdir(parents=True, exist_ok=True)
    P = np.array([[f, 0, cx, 44.85728], [0, f, cy, 0.2163791], [0, 0, 1, 0.002745884]])
    (root / date / "calib_cam_to_cam.txt").write_text(
        "calib_time: 09-Jan-2012 13:57:47\n"
        f"R_rect_00: {' '.join(map(str, np.eye(3).ravel()))}\n"
        f"P_rect_02: {' '.join(map(str, P.ravel()))}\n")
    # Velodyne axes: x forward, y left, z up -> camera x = -y, y = -z, z = x
    R = np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]], float)
    (root / date / "calib_velo_to_cam.txt").write_text(
        f"R: {' '.join(map(str, R.ravel()))}\nT: 0 0 0\n")
    lines_gt, lines_plain = [], []
    for fr in frames:
        name = f"{fr:010d}"
        _png(root / date / drive / "image_02" / "data" / f"{name}.png", scene_rgb(fr, h, w))
        # 10 m straight ahead, one 5 cm behind it (same pixel: hidden), one 5 m ahead and 1 m right, one behind
        pts = np.array([[10, 0, 0, 0.5], [10.05, 0, 0, 0.5], [5, -1, 0, 0.5], [-5, 0, 0, 0.5]], "<f4")
        vel = root / date / drive / "velodyne_points" / "data" / f"{name}.bin"
        vel.parent.mkdir(parents=True, exist_ok=True)
        pts.tofile(vel)
        ann = np.zeros((h, w), np.uint16)
        ann[200:370:3, 20:1220:3] = int(12.5 * 256)
        _png(root / "data_depth_annotated" / "val" / drive / "proj_depth" / "groundtruth" / "image_02" / f"{name}.png", ann)
        lines_gt.append(f"{date}/{drive}/image_02/data/{name}.png {drive}/proj_depth/groundtruth/image_02/{name}.png {f}")
        lines_plain.append(f"{date}/{drive} {name} l")
    lines_gt.append(f"{date}/{drive}/image_02/data/{frames[0]:010d}.png None {f}")   # a frame without a map
    (root / "eigen_test_files_with_gt.txt").write_text("\n".join(lines_gt) + "\n")
    (root / "eigen_test_files_plain.txt").write_text("\n".join(lines_plain) + "\n")
    z = 10 + P[2, 3]
    return {"frames": list(frames), "f": f, "cx": cx, "cy": cy, "P": P, "centre_depth": z,
            "centre_uv": ((f * 0 + cx * 10 + P[0, 3]) / z, (cy * 10 + P[1, 3]) / z),
            "side_uv": ((f * 1 + cx * 5 + P[0, 3]) / (5 + P[2, 3]), (cy * 5 + P[1, 3]) / (5 + P[2, 3])),
            "side_depth": 5 + P[2, 3]}


def write_nyuv2(root: Path, n: int = 5, test=(2, 4), hw=(48, 64)) -> dict:
    """``nyu_depth_v2_labeled.mat`` as MATLAB v7.3 stores it (HDF5, column-major) and a v5 ``splits.mat``."""
    import h5py
    from scipy.io import savemat

    h, w = hw
    root.mkdir(parents=True, exist_ok=True)
    imgs = np.stack([scene_rgb(i, h, w).transpose(2, 1, 0) for i in range(n)])          # (N, 3, W, H)
    depths = np.stack([(scene_depth(i, h, w) + i).T for i in range(n)]).astype(np.float32)  # (N, W, H)
    with h5py.File(root / "nyu_depth_v2_labeled.mat", "w") as f:
        f.create_dataset("images", data=imgs)
        f.create_dataset("depths", data=depths)
    savemat(root / "splits.mat", {"testNdxs": np.array(test, float)[:, None],
                                  "trainNdxs": np.array([i + 1 for i in range(n) if i + 1 not in test], float)[:, None]})
    return {"test": [i - 1 for i in test], "hw": hw}


def write_sintel(root: Path, scenes=("alley_1", "market_2"), n: int = 6, hw=(24, 56)) -> dict:
    h, w = hw
    tag = np.array([202021.25], "<f4").tobytes()
    for s, scene in enumerate(scenes):
        for t in range(n):
            name = f"frame_{t + 1:04d}"
            _png(root / "training" / "final" / scene / f"{name}.png", scene_rgb(t, h, w, s))
            dpt = root / "training" / "depth" / scene / f"{name}.dpt"
            dpt.parent.mkdir(parents=True, exist_ok=True)
            dpt.write_bytes(tag + np.array([w, h], "<i4").tobytes() + scene_depth(t, h, w).astype("<f4").tobytes())
            cam = root / "training" / "camdata_left" / scene / f"{name}.cam"
            cam.parent.mkdir(parents=True, exist_ok=True)
            ext = np.linalg.inv(scene_pose(t))[:3]
            cam.write_bytes(tag + scene_K(h, w).astype("<f8").tobytes() + ext.astype("<f8").tobytes())
    return {"scenes": list(scenes), "frames": n, "hw": hw}


def write_bonn(root: Path, seq: str = "rgbd_bonn_balloon", n: int = 12, hw=(24, 32)) -> dict:
    from dav_builder.evaluation.readers.bonn import K

    h, w = hw
    d = root / seq
    rgb_lines, depth_lines, gt_lines = ["# color images"], ["# depth maps"], ["# timestamp tx ty tz qx qy qz qw"]
    for t in range(n):
        ts = 1548266469.0 + t / 30
        _png(d / "rgb" / f"{ts:.6f}.png", scene_rgb(t, h, w))
        _png(d / "depth" / f"{ts + 0.004:.6f}.png", np.round(scene_depth(t, h, w, K=K) * 5000).astype(np.uint16))
        rgb_lines.append(f"{ts:.6f} rgb/{ts:.6f}.png")
        depth_lines.append(f"{ts + 0.004:.6f} depth/{ts + 0.004:.6f}.png")
        gt_lines.append(f"{ts + 0.001:.6f} 0 0 {STEP * t:.6f} 0 0 0 1")
    (d / "rgb.txt").write_text("\n".join(rgb_lines) + "\n")
    (d / "depth.txt").write_text("\n".join(depth_lines) + "\n")
    (d / "groundtruth.txt").write_text("\n".join(gt_lines) + "\n")
    return {"seq": seq, "frames": n, "hw": hw}


def write_eth3d(root: Path, scenes=("courtyard", "pipes"), hw=(40, 60)) -> dict:
    h, w = hw
    for s, scene in enumerate(scenes):
        name = f"DSC_{300 + s:04d}.JPG"
        _png(root / scene / "images" / "dslr_images" / name, scene_rgb(s, h, w))
        depth = scene_depth(s, h, w) * 4
        depth[:5] = np.inf                                   # no laser points at the top
        p = root / scene / "ground_truth_depth" / "dslr_images" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        depth.astype("<f4").tofile(p)
    return {"scenes": list(scenes), "hw": hw}


def write_diode(root: Path, hw=(30, 40)) -> dict:
    h, w = hw
    stems = []
    for i, sub in enumerate(("indoors", "outdoor")):
        d = root / "val" / sub / f"scene_{i:05d}" / f"scan_{i:05d}"
        stem = f"{i:05d}_{i:05d}_{sub}_000_010"
        _png(d / f"{stem}.png", scene_rgb(i, h, w))
        depth = scene_depth(i, h, w) * (1 if sub == "indoors" else 20)
        mask = np.ones((h, w), np.float32)
        mask[:, :3] = 0
        np.save(d / f"{stem}_depth.npy", depth[..., None])
        np.save(d / f"{stem}_depth_mask.npy", mask)
        stems.append(f"val/{sub}/scene_{i:05d}/scan_{i:05d}/{stem}")
    return {"stems": stems, "hw": hw}


WRITERS = {"scannetpp": write_scannetpp, "scannet": write_scannet, "kitti": write_kitti, "nyuv2": write_nyuv2,
           "sintel": write_sintel, "bonn": write_bonn, "eth3d": write_eth3d, "diode": write_diode}


def write_all(root: Path) -> dict[str, Path]:
    """Every benchmark under ``root/<name>``; returns name -> path."""
    out = {}
    for name, fn in WRITERS.items():
        fn(root / name)
        out[name] = root / name
    return out


if __name__ == "__main__":
    import sys

    for name, path in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "eval-fixtures")).items():
        print(f"{name}: {path}")
