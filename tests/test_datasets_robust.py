"""The public data set readers on the layouts as the data sets ship them: video frames paired with
depth by number, TartanAir's finite sky, Hypersim's tone-mapped images and its unit file, and
stray files beside the frames."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).parent / "fixtures" / "datasets"
sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
import make_dataset_fixtures as fx  # noqa: E402

from dav_builder.capture.base import FrameError  # noqa: E402
from dav_builder.capture.discover import find_captures, open_capture  # noqa: E402


def open_one(root: Path):
    refs = find_captures([root])
    assert len(refs) == 1, refs
    return open_capture(refs[0])


def write_video(path: Path, n: int, w: int = 32, h: int = 24) -> None:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (w, h))
    assert vw.isOpened()
    for i in range(n):
        vw.write(np.full((h, w, 3), 20 * i, np.uint8))
    vw.release()


def video_recording(root: Path, n: int = 8) -> Path:
    """A video of ``n`` frames with a depth file per frame (frame i: 1 + i metres)."""
    (root / "depth").mkdir(parents=True)
    write_video(root / "video.avi", n)
    for i in range(n):
        np.save(root / "depth" / f"depth_{i:04d}.npy", np.full((24, 32), 1.0 + i, np.float32))
    return root


def test_video_frames_pair_with_depth_by_number_not_by_position(tmp_path):
    root = video_recording(tmp_path / "rec")
    (root / "depth" / "depth_0003.npy").unlink()  # one depth file missing
    (root / "depth" / "notes.txt").write_text("stray")
    (root / "depth" / "preview.png.bak").write_bytes(b"stray")
    cap = open_one(root)
    frames = list(cap.frames())
    assert [f.index for f in frames] == list(range(8))
    for f in frames:
        if f.index == 3:
            with pytest.raises(FrameError, match="no depth file for frame 3"):
                cap.read_depth(f)
            continue
        assert cap.read_depth(f)[0, 0] == pytest.approx(1.0 + f.index)  # frame i keeps depth i after the gap
        assert cap.read_rgb(f).mean() == pytest.approx(20 * f.index, abs=3)


def test_video_depth_numbered_from_one(tmp_path):
    root = tmp_path / "rec"
    (root / "depth").mkdir(parents=True)
    write_video(root / "video.avi", 4)
    for i in range(1, 5):
        np.save(root / "depth" / f"{i:06d}.npy", np.full((24, 32), float(i), np.float32))
    refs = find_captures([root], {"depth_first_index": 1})
    cap = open_capture(refs[0])
    assert [cap.read_depth(f)[0, 0] for f in cap.frames()] == [1.0, 2.0, 3.0, 4.0]


def test_tartanair_sky_is_invalid(tmp_path):
    stored = np.load(next((ROOT / "tartanair").rglob("000000_left_depth.npy")))
    assert np.isfinite(stored).all() and stored.max() == 10000.0  # as the data set stores it
    cap = open_one(ROOT / "tartanair")
    for k, f in enumerate(cap.frames()):
        z = cap.read_depth(f)
        assert (z[: fx.SKY_ROWS] == 0).all() and (z[fx.SKY_ROWS:] > 0).all()


def test_hypersim_reads_the_tone_mapped_images(tmp_path):
    cap = open_one(ROOT / "hypersim")
    frames = list(cap.frames())
    assert all(f.rgb.endswith(".tonemap.jpg") for f in frames)
    assert abs(cap.read_rgb(frames[0]).astype(float).mean() - fx.image(0).mean()) < 3


def test_hypersim_without_its_unit_file_reads_without_poses_and_says_so(tmp_path, caplog):
    shutil.copytree(ROOT / "hypersim", tmp_path / "hypersim")
    (tmp_path / "hypersim" / "ai_001_001" / "_detail" / "metadata_scene.csv").unlink()
    with caplog.at_level(logging.WARNING):
        cap = open_one(tmp_path / "hypersim")
    assert "meters_per_asset_unit" in caplog.text and "without poses" in caplog.text
    frames = list(cap.frames())
    assert frames and all(f.cam_to_world is None for f in frames)
    refs = find_captures([tmp_path / "hypersim"], {"meters_per_asset_unit": 0.5})
    with_unit = list(open_capture(refs[0]).frames())
    np.testing.assert_allclose(with_unit[2].cam_to_world[:3, 3], fx.cam_pos(2), atol=1e-6)


STRAY = {
    "vkitti2": "Scene01/clone/frames/rgb/Camera_0",
    "tartanair": "abandonedfactory/Easy/P000/image_left",
    "sintel": "training/final/alley_1",
    "hypersim": "ai_001_001/images/scene_cam_00_final_preview",
    "mvs_synth": "GTAV_1080/0000/images",
    "spring": "train/0001/frame_left",
}


@pytest.mark.parametrize("name", sorted(STRAY))
def test_stray_files_are_ignored_by_every_reader(tmp_path, name):
    root = tmp_path / name
    shutil.copytree(ROOT / name, root)
    folder = root / STRAY[name]
    for stray in ("notes.txt", ".DS_Store", "Thumbs.db", "x.png", "frame_x.png", "rgb_x.jpg", "x_left.png",
                  "frame.x.tonemap.jpg", "frame_left_x.png", "0001.png~", "copy of 0000.png"):
        (folder / stray).write_bytes(b"stray")
    cap = open_one(root)
    frames = list(cap.frames())
    assert len(frames) == fx.FRAMES and not any(isinstance(f, FrameError) for f in frames)
    for f in frames:
        cap.read_depth(f)


def test_a_video_capture_is_never_split_into_ranges(tmp_path):
    from dav_builder.pipeline.build import ranges_planner
    from dav_builder.pipeline.config import load_config

    (ref,) = find_captures([video_recording(tmp_path / "rec")])
    cfg = load_config(overrides={"split": {"range_frames": 2}})
    # read in order: a later range's worker would decode every frame before its range
    assert open_capture(ref).concurrent_reads is False
    assert ranges_planner(cfg, {})(ref) == ((0,), 0)
