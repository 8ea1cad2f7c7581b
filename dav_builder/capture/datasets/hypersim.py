"""Hypersim (Roberts et al. 2021), as published:

``<scene>/images/scene_cam_<NN>_final_preview/frame.<0000>.color.jpg`` (or ``.tonemap.jpg``),
``<scene>/images/scene_cam_<NN>_geometry_hdf5/frame.<0000>.depth_meters.hdf5`` (dataset
``dataset``: Euclidean *ray* distance to the camera centre in metres, despite the name; converted
to planar depth with K), ``<scene>/_detail/cam_<NN>/camera_keyframe_positions.hdf5`` (N x 3, asset
units) and ``camera_keyframe_orientations.hdf5`` (N x 3 x 3 camera-to-world rotations, camera axes
x right, y up, z backward as OpenGL), and ``<scene>/_detail/metadata_scene.csv``
(``meters_per_asset_unit``).  Intrinsics: 1024x768 with a 60 degree horizontal field of view
(the data set's default camera; scenes with a tilt-shift lens, listed in its metadata, are not
modelled).  Poses become OpenCV axes with ``R @ diag(1, -1, -1)`` and metres.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from dav_builder.capture.base import CaptureError, FrameError
from dav_builder.capture.datasets.common import FrameFiles, SequenceCapture, fov_intrinsics
from dav_builder.capture.depth import ray_to_planar
from dav_builder.capture.discover import Layout, register

NAME = "hypersim"
GL_TO_CV = np.diag([1.0, -1.0, -1.0])


def find(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("scene_cam_*_final_preview") if p.is_dir() and p.parent.name == "images")


def _h5(path: Path, name: str = "dataset") -> np.ndarray:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return np.asarray(f[name])
    except (OSError, KeyError) as exc:
        raise FrameError(path, f"HDF5 cannot be read: {exc}") from None


def meters_per_unit(scene: Path) -> float:
    path = scene / "_detail" / "metadata_scene.csv"
    if not path.is_file():
        return 1.0
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("parameter_name") == "meters_per_asset_unit":
                return float(row["parameter_value"])
    return 1.0


def open_capture(path: Path, capture_id: str, opts: dict) -> SequenceCapture:
    scene = path.parents[1]
    cam = re.search(r"scene_cam_(\d+)_final_preview", path.name).group(1)
    geo = path.parent / f"scene_cam_{cam}_geometry_hdf5"
    detail = scene / "_detail" / f"cam_{cam}"
    positions = orientations = None
    if (detail / "camera_keyframe_positions.hdf5").is_file():
        try:
            positions = _h5(detail / "camera_keyframe_positions.hdf5") * meters_per_unit(scene)
            orientations = _h5(detail / "camera_keyframe_orientations.hdf5")
        except FrameError as exc:
            raise CaptureError(exc.path, exc.problem) from None
    rgbs = sorted(path.glob("frame.*.color.jpg")) or sorted(path.glob("frame.*.tonemap.jpg"))
    if not rgbs:
        raise CaptureError(path, "no frame.NNNN.color.jpg images")
    from dav_builder.capture.imageio import image_size, read_bytes

    w, h, _ = image_size(read_bytes(rgbs[0]), rgbs[0])
    K = fov_intrinsics(w, h, float(opts.get("hfov_deg", 60.0)))
    frames = []
    for rgb in rgbs:
        i = int(rgb.name.split(".")[1])
        pose = None
        if positions is not None and i < len(positions):
            pose = np.eye(4)
            pose[:3, :3] = orientations[i] @ GL_TO_CV
            pose[:3, 3] = positions[i]
        frames.append(FrameFiles(i, rgb, geo / f"frame.{i:04d}.depth_meters.hdf5", K, pose))

    def load(p: Path, f: FrameFiles) -> np.ndarray:
        return ray_to_planar(_h5(p).astype(np.float64), f.K)

    return SequenceCapture(path, capture_id, NAME, float(opts.get("fps", 10.0)), frames, load)


register(Layout(NAME, "Hypersim (<scene>/images/scene_cam_NN_final_preview + geometry_hdf5)", find, open_capture))
