"""Write tiny fixtures in the published layouts of public synthetic data sets.

Every fixture shows the same analytic scene, so a reader's output can be checked exactly: a
camera at ``(0, 0, 0.1 i)`` looking along world +z (OpenCV axes: identity rotation), a wall at
world z = 5 m, a box face 2 m in front of the camera (rows 8-15, columns 10-19) and sky (no
depth) in rows 0-3.  Planar depth of frame i: 2.0 on the box, 5 - 0.1 i on the wall.

    python scripts/make_dataset_fixtures.py tests/fixtures/datasets
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import cv2
import numpy as np

W, H, FRAMES = 32, 24, 3
SKY_ROWS = 4
BOX = (slice(8, 16), slice(10, 20))


def planar_depth(i: int) -> np.ndarray:
    """Truth: metres along the optical axis, NaN for sky."""
    z = np.full((H, W), 5.0 - 0.1 * i)
    z[BOX] = 2.0
    z[:SKY_ROWS] = np.nan
    return z


def image(i: int) -> np.ndarray:
    """BGR image whose colour edges follow the depth edges."""
    img = np.zeros((H, W, 3), np.uint8)
    img[:] = (60, 120 + 10 * i, 180)
    img[BOX] = (200, 40, 40)
    img[:SKY_ROWS] = (230, 200, 150)
    return img


def cam_pos(i: int) -> np.ndarray:
    return np.array([0.0, 0.0, 0.1 * i])


def world_to_cam(i: int) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = -cam_pos(i)
    return m


def K_for(fx: float) -> np.ndarray:
    return np.array([[fx, 0, (W - 1) / 2], [0, fx, (H - 1) / 2], [0, 0, 1.0]])


def ray(z: np.ndarray, K: np.ndarray) -> np.ndarray:
    u = (np.arange(W) - K[0, 2]) / K[0, 0]
    v = (np.arange(H) - K[1, 2]) / K[1, 1]
    return z * np.sqrt(1 + u[None] ** 2 + v[:, None] ** 2)


def vkitti2(root: Path) -> None:
    base = root / "Scene01" / "clone"
    fx = 20.0
    intr, extr = ["frame cameraID K[0,0] K[1,1] K[0,2] K[1,2]"], ["frame cameraID r1,1 ... 0 0 0 1"]
    for i in range(FRAMES):
        p = base / "frames" / "rgb" / "Camera_0"
        p.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p / f"rgb_{i:05d}.jpg"), image(i))
        d = base / "frames" / "depth" / "Camera_0"
        d.mkdir(parents=True, exist_ok=True)
        cm = np.nan_to_num(planar_depth(i) * 100, nan=65535).round().astype(np.uint16)
        cv2.imwrite(str(d / f"depth_{i:05d}.png"), cm)
        intr.append(f"{i} 0 {fx} {fx} {(W - 1) / 2} {(H - 1) / 2}")
        extr.append(f"{i} 0 " + " ".join(f"{v:g}" for v in world_to_cam(i).ravel()))
    (base / "intrinsic.txt").write_text("\n".join(intr) + "\n")
    (base / "extrinsic.txt").write_text("\n".join(extr) + "\n")


def tartanair(root: Path) -> None:
    base = root / "abandonedfactory" / "Easy" / "P000"
    (base / "image_left").mkdir(parents=True, exist_ok=True)
    (base / "depth_left").mkdir(parents=True, exist_ok=True)
    # body (NED) to world rotation that makes the OpenCV camera axes equal the world axes
    R = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).T
    qw = np.sqrt(max(0.0, 1 + R[0, 0] + R[1, 1] + R[2, 2])) / 2
    qx = (R[2, 1] - R[1, 2]) / (4 * qw)
    qy = (R[0, 2] - R[2, 0]) / (4 * qw)
    qz = (R[1, 0] - R[0, 1]) / (4 * qw)
    lines = []
    for i in range(FRAMES):
        cv2.imwrite(str(base / "image_left" / f"{i:06d}_left.png"), image(i))
        # the sky is a large finite depth in TartanAir's files (its notes: "e.g. 10000"), not inf
        np.save(base / "depth_left" / f"{i:06d}_left_depth.npy",
                np.nan_to_num(planar_depth(i), nan=10000.0).astype(np.float32))
        c = cam_pos(i)
        lines.append(" ".join(f"{v:.9f}" for v in (*c, qx, qy, qz, qw)))
    (base / "pose_left.txt").write_text("\n".join(lines) + "\n")


def sintel(root: Path) -> None:
    tr = root / "training"
    for sub in ("final/alley_1", "depth/alley_1", "camdata_left/alley_1"):
        (tr / sub).mkdir(parents=True, exist_ok=True)
    K = K_for(25.0)
    for i in range(1, FRAMES + 1):
        cv2.imwrite(str(tr / "final/alley_1" / f"frame_{i:04d}.png"), image(i - 1))
        z = np.nan_to_num(planar_depth(i - 1), nan=0.0).astype("<f4")
        (tr / "depth/alley_1" / f"frame_{i:04d}.dpt").write_bytes(
            struct.pack("<fii", 202021.25, W, H) + z.tobytes())
        ext = world_to_cam(i - 1)[:3]
        (tr / "camdata_left/alley_1" / f"frame_{i:04d}.cam").write_bytes(
            struct.pack("<f", 202021.25) + K.astype("<f8").tobytes() + ext.astype("<f8").tobytes())


def hypersim(root: Path) -> None:
    import h5py

    scene = root / "ai_001_001"
    img = scene / "images" / "scene_cam_00_final_preview"
    geo = scene / "images" / "scene_cam_00_geometry_hdf5"
    det = scene / "_detail" / "cam_00"
    for p in (img, geo, det):
        p.mkdir(parents=True, exist_ok=True)
    fx = (W / 2) / np.tan(np.radians(30))
    K = np.array([[fx, 0, (W - 1) / 2], [0, fx, (H - 1) / 2], [0, 0, 1.0]])
    for i in range(FRAMES):
        # tonemap.jpg is the image to use; color.jpg is linear radiance clipped to [0, 1] (darker here)
        cv2.imwrite(str(img / f"frame.{i:04d}.tonemap.jpg"), image(i), [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(img / f"frame.{i:04d}.color.jpg"), image(i) // 4, [cv2.IMWRITE_JPEG_QUALITY, 95])
        with h5py.File(geo / f"frame.{i:04d}.depth_meters.hdf5", "w") as f:
            f["dataset"] = ray(planar_depth(i), K).astype(np.float16)
    mpu = 0.5
    with h5py.File(det / "camera_keyframe_positions.hdf5", "w") as f:
        f["dataset"] = np.stack([cam_pos(i) / mpu for i in range(FRAMES)])
    with h5py.File(det / "camera_keyframe_orientations.hdf5", "w") as f:
        f["dataset"] = np.stack([np.diag([1.0, -1.0, -1.0])] * FRAMES)  # OpenGL axes of an identity OpenCV camera
    (scene / "_detail" / "metadata_scene.csv").write_text(
        f"parameter_name,parameter_value\nmeters_per_asset_unit,{mpu}\n")


def mvs_synth(root: Path) -> None:
    import OpenEXR

    seq = root / "GTAV_1080" / "0000"
    for sub in ("images", "depths", "poses"):
        (seq / sub).mkdir(parents=True, exist_ok=True)
    for i in range(FRAMES):
        cv2.imwrite(str(seq / "images" / f"{i:04d}.png"), image(i))
        z = np.nan_to_num(planar_depth(i), nan=np.inf).astype(np.float32)
        header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
        with OpenEXR.File(header, {"Y": z}) as f:
            f.write(str(seq / "depths" / f"{i:04d}.exr"))
        (seq / "poses" / f"{i:04d}.json").write_text(json.dumps(
            {"extrinsic": world_to_cam(i).tolist(), "f_x": 22.0, "f_y": 22.0, "c_x": (W - 1) / 2, "c_y": (H - 1) / 2}))


def spring(root: Path) -> None:
    import h5py

    sc = root / "train" / "0001"
    for sub in ("frame_left", "disp1_left", "cam_data"):
        (sc / sub).mkdir(parents=True, exist_ok=True)
    fx = 24.0
    intr, extr = [], []
    for i in range(1, FRAMES + 1):
        cv2.imwrite(str(sc / "frame_left" / f"frame_left_{i:04d}.png"), image(i - 1))
        disp = np.nan_to_num(fx * 0.065 / planar_depth(i - 1), nan=0.0)
        with h5py.File(sc / "disp1_left" / f"disp1_left_{i:04d}.dsp5", "w") as f:
            f["disparity"] = np.kron(disp, np.ones((2, 2))).astype(np.float32)  # twice the resolution
        intr.append(f"{fx} {fx} {(W - 1) / 2} {(H - 1) / 2}")
        extr.append(" ".join(f"{v:g}" for v in world_to_cam(i - 1).ravel()))
    (sc / "cam_data" / "intrinsics.txt").write_text("\n".join(intr) + "\n")
    (sc / "cam_data" / "extrinsics.txt").write_text("\n".join(extr) + "\n")


def folder(root: Path) -> None:
    d = root / "my_recording"
    (d / "rgb").mkdir(parents=True, exist_ok=True)
    (d / "depth").mkdir(parents=True, exist_ok=True)
    for i in range(FRAMES):
        cv2.imwrite(str(d / "rgb" / f"img{i:03d}.png"), image(i))
        mm = np.nan_to_num(planar_depth(i) * 1000, nan=0).round().astype(np.uint16)
        cv2.imwrite(str(d / "depth" / f"img{i:03d}.png"), mm)
    (d / "intrinsics.txt").write_text(f"21 21 {(W - 1) / 2} {(H - 1) / 2}\n")


WRITERS = {"vkitti2": vkitti2, "tartanair": tartanair, "sintel": sintel, "hypersim": hypersim,
           "mvs_synth": mvs_synth, "spring": spring, "folder": folder}


def main(out: Path) -> None:
    for name, fn in WRITERS.items():
        fn(out / name)
        print(f"wrote {out / name}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/datasets"))
