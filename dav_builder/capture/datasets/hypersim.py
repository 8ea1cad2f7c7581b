"""Hypersim (Roberts et al. 2021), as published:

``<scene>/images/scene_cam_<NN>_final_preview/frame.<0000>.tonemap.jpg`` (tone-mapped, what the
data set's maintainers point users to; ``frame.<0000>.color.jpg`` is linear radiance clipped to
[0, 1] and is read only when a scene has no tone-mapped images),
``<scene>/images/scene_cam_<NN>_geometry_hdf5/frame.<0000>.depth_meters.hdf5`` (dataset
``dataset``: Euclidean *ray* distance to the camera centre in metres, despite the name; converted
to planar depth with K), ``<scene>/_detail/cam_<NN>/camera_keyframe_positions.hdf5`` (N x 3, asset
units) and ``camera_keyframe_orientations.hdf5`` (N x 3 x 3 camera-to-world rotations, camera axes
x right, y up, z backward as OpenGL), and ``<scene>/_detail/metadata_scene.csv``
(``meters_per_asset_unit``).  Intrinsics: 1024x768 with a 60 degree horizontal field of view
(the data set's default camera; scenes with a tilt-shift lens, listed in its metadata, are not
modelled).  Poses become OpenCV axes with ``R @ diag(1, -1, -1)`` and metres.  Without
``metadata_scene.csv`` the unit of the positions is unknown (often inches, not metres): the
frames are read without poses and a warning says so, instead of every step looking like a jump.
The reader option ``meters_per_asset_unit`` supplies the unit when the file is missing.
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

import numpy as np

from dav_builder.capture.base import CaptureError, FrameError
from dav_builder.capture.datasets.common import FrameFiles, SequenceCapture, fov_intrinsics, numbered
from dav_builder.capture.imageio import file_problem
from dav_builder.capture.depth import ray_to_planar
from dav_builder.capture.discover import Layout, register

NAME = "hypersim"
TONEMAP = re.compile(r"frame\.(\d+)\.tonemap\.jpg")
COLOR = re.compile(r"frame\.(\d+)\.color\.jpg")
log = logging.getLogger(__name__)
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


def meters_per_unit(scene: Path) -> float | None:
    """The scene's ``meters_per_asset_unit``, or None when ``metadata_scene.csv`` lacks it."""
    path = scene / "_detail" / "metadata_scene.csv"
    if file_problem(path):
        return None
    try:
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get("parameter_name") == "meters_per_asset_unit":
                    value = float(row["parameter_value"])
                    if not (np.isfinite(value) and value > 0):
                        raise CaptureError(path, f"meters_per_asset_unit must be a positive number, got {value}")
                    return value
    except (ValueError, UnicodeDecodeError) as exc:
        raise CaptureError(path, f"malformed metadata: {exc}") from None
    return None


def open_capture(path: Path, capture_id: str, opts: dict) -> SequenceCapture:
    scene = path.parents[1]
    cam = re.search(r"scene_cam_(\d+)_final_preview", path.name).group(1)
    geo = path.parent / f"scene_cam_{cam}_geometry_hdf5"
    detail = scene / "_detail" / f"cam_{cam}"
    positions = orientations = None
    if (detail / "camera_keyframe_positions.hdf5").is_file():
        unit = opts.get("meters_per_asset_unit") or meters_per_unit(scene)
        if unit is None:
            log.warning("%s: no meters_per_asset_unit in %s: camera positions are in unknown asset units "
                        "(often inches), so %s is read without poses (reader option meters_per_asset_unit "
                        "sets the unit)", capture_id, scene / "_detail" / "metadata_scene.csv", capture_id)
        else:
            try:
                positions = _h5(detail / "camera_keyframe_positions.hdf5") * float(unit)
                orientations = _h5(detail / "camera_keyframe_orientations.hdf5")
            except FrameError as exc:
                raise CaptureError(exc.path, exc.problem) from None
    names = list(path.iterdir())
    rgbs = numbered(names, TONEMAP) or numbered(names, COLOR)
    if not rgbs:
        raise CaptureError(path, "no frame.NNNN.tonemap.jpg (or frame.NNNN.color.jpg) images")
    from dav_builder.capture.imageio import image_size, read_bytes

    try:
        w, h, _ = image_size(read_bytes(rgbs[0][1]), rgbs[0][1])
    except FrameError as exc:
        raise CaptureError(exc.path, f"first RGB frame unreadable: {exc.problem}") from None
    K = fov_intrinsics(w, h, float(opts.get("hfov_deg", 60.0)))
    frames = []
    for i, rgb in rgbs:
        pose = None
        if positions is not None and i < len(positions) and orientations is not None and i < len(orientations):
            pose = np.eye(4)
            pose[:3, :3] = orientations[i] @ GL_TO_CV
            pose[:3, 3] = positions[i]
        frames.append(FrameFiles(i, rgb, geo / f"frame.{i:04d}.depth_meters.hdf5", K, pose))

    def load(p: Path, f: FrameFiles) -> np.ndarray:
        return ray_to_planar(_h5(p).astype(np.float64), f.K)

    return SequenceCapture(path, capture_id, NAME, float(opts.get("fps", 10.0)), frames, load)


register(Layout(NAME, "Hypersim (<scene>/images/scene_cam_NN_final_preview + geometry_hdf5)", find, open_capture))
