"""Each public data set reader on its fixture (written by scripts/make_dataset_fixtures.py from the
data set's published layout): planar metres, intrinsics, poses in OpenCV axes, invalid sky."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parent / "fixtures" / "datasets"
sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
import make_dataset_fixtures as fx  # noqa: E402

from dav_builder.capture.base import CaptureError, FrameError  # noqa: E402
from dav_builder.capture.discover import find_captures, open_capture  # noqa: E402

# (reader, tolerance in metres: png16 cm/mm quantisation, float16 for Hypersim)
CASES = {
    "vkitti2": 0.006,
    "tartanair": 1e-5,
    "sintel": 1e-5,
    "hypersim": 0.01,
    "mvs_synth": 1e-5,
    "spring": 1e-4,
    "folder": 0.0006,
}


def open_one(name: str, root: Path = ROOT):
    refs = find_captures([root / name])
    assert len(refs) == 1, refs
    assert refs[0].reader == name
    return open_capture(refs[0])


@pytest.mark.parametrize("name", sorted(CASES))
def test_reader_gives_planar_metres_intrinsics_and_poses(name):
    cap = open_one(name)
    assert (cap.width, cap.height) == (fx.W, fx.H)
    frames = list(cap.frames())
    assert len(frames) == fx.FRAMES and not any(isinstance(f, FrameError) for f in frames)
    for k, f in enumerate(frames):
        z = cap.read_depth(f)
        truth = fx.planar_depth(k)
        sky = np.isnan(truth)
        assert (z[sky] == 0).all(), "sky must be invalid (0)"
        np.testing.assert_allclose(z[~sky], truth[~sky], atol=CASES[name])
        assert f.K.shape == (3, 3) and f.K[0, 0] > 0
        assert f.K[0, 2] == pytest.approx((fx.W - 1) / 2, abs=0.6)
        if f.cam_to_world is not None:
            # the camera looks along world +z and moves 0.1 m per frame along it
            np.testing.assert_allclose(f.cam_to_world[:3, :3], np.eye(3), atol=1e-6)
            np.testing.assert_allclose(f.cam_to_world[:3, 3], fx.cam_pos(k), atol=1e-6)
        data, ext = cap.read_rgb_bytes(f)
        assert ext in ("png", "jpg") and cap.read_rgb(f).shape == (fx.H, fx.W, 3)
    has_poses = name != "folder"
    assert (frames[0].cam_to_world is not None) == has_poses


def test_discovery_over_a_tree_of_layouts():
    refs = find_captures([ROOT])
    assert sorted(r.reader for r in refs) == sorted(CASES)
    assert len({r.capture_id for r in refs}) == len(refs)
    again = find_captures([ROOT])
    assert [r.capture_id for r in again] == [r.capture_id for r in refs]  # stable ids


def test_unknown_directory_names_the_layouts(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CaptureError, match="known layouts are.*vkitti2"):
        find_captures([tmp_path / "empty"])


@pytest.mark.parametrize(
    "name, victim",
    [
        ("vkitti2", "Scene01/clone/frames/depth/Camera_0/depth_00001.png"),
        ("tartanair", "abandonedfactory/Easy/P000/depth_left/000001_left_depth.npy"),
        ("sintel", "training/depth/alley_1/frame_0002.dpt"),
        ("hypersim", "ai_001_001/images/scene_cam_00_geometry_hdf5/frame.0001.depth_meters.hdf5"),
        ("mvs_synth", "GTAV_1080/0000/depths/0001.exr"),
        ("spring", "train/0001/disp1_left/disp1_left_0002.dsp5"),
        ("folder", "my_recording/depth/img001.png"),
    ],
)
def test_missing_or_corrupt_depth_names_the_file_and_spares_the_others(tmp_path, name, victim):
    root = tmp_path / "ds"
    shutil.copytree(ROOT / name, root / name)
    (root / name / victim).unlink()
    cap = open_one(name, root)
    frames = list(cap.frames())
    errors = []
    for f in frames:
        try:
            cap.read_depth(f)
        except FrameError as exc:
            errors.append(exc)
    assert len(errors) == 1 and Path(victim).name in str(errors[0]) and "missing" in str(errors[0])
    # a corrupt file (garbage bytes) is a FrameError too, not a crash
    (root / name / victim).write_bytes(b"not a depth file at all")
    cap = open_one(name, root)
    with pytest.raises(FrameError, match=Path(victim).name):
        for f in cap.frames():
            cap.read_depth(f)
