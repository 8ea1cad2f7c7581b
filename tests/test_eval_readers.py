"""Each benchmark reader on a tiny copy of its data set, written in the official layout by
tests/eval_fixtures.py."""

from __future__ import annotations

import numpy as np
import pytest

import eval_fixtures as fx
from dav_builder.evaluation.protocol import PRESETS, score_clip, valid_mask
from dav_builder.evaluation.readers import READERS, open_benchmark
from dav_builder.evaluation.readers.bonn import K as bonn_K
from dav_builder.evaluation.readers.kitti import CROPS
from dav_builder.evaluation.sample import ReaderError


def gt_scores(seq, info, proto=PRESETS["paper"]):
    """Scores of the ground truth's own disparity: exact (AbsRel 0) when the reader is consistent."""
    v = valid_mask(seq.depth, seq.valid, info.min_depth, info.max_depth)
    disp = np.where(v, 1 / np.where(v, seq.depth, 1), 0)
    return score_clip(seq.name, disp * 3 + 0.2, seq.depth, v, proto, info.min_depth, info.max_depth, seq.K,
                      seq.cam_to_world)


def test_scannetpp_iphone_layout(tmp_path):
    exp = fx.write_scannetpp(tmp_path)
    r = open_benchmark("scannetpp", tmp_path, frames=4, stride=2, clips=0)
    assert r.items() == [f"{s}#0" for s in exp["scenes"]]      # 8 frames at stride 2: one clip of 4
    seq = r.load(r.items()[1])
    assert seq.rgb.shape == (4, 48, 64, 3) and seq.depth.shape == (4, 24, 32)
    assert seq.frame_indices == [0, 2, 4, 6]
    assert np.allclose(seq.depth[1], fx.scene_depth(2, 24, 32), atol=6e-4)      # millimetres
    assert np.allclose(seq.K[0], fx.scene_K(48, 64) * np.array([[0.5], [0.5], [1]]))
    assert np.allclose(seq.cam_to_world[3], fx.scene_pose(6))
    s = gt_scores(seq, r.info)
    assert max(s.abs_rel) < 1e-3 and s.tae is not None and s.tae < 0.02


def test_scannet_exported_sens_layout(tmp_path):
    fx.write_scannet(tmp_path)
    r = open_benchmark("scannet", tmp_path, frames=3, stride=3)
    assert r.items() == ["scene0707_00#0"]
    seq = r.load("scene0707_00#0")
    assert seq.frame_indices == [0, 3, 6] and seq.rgb.shape[1:3] == (36, 48) and seq.depth.shape == (3, 24, 32)
    assert np.allclose(seq.K[0], fx.scene_K(24, 32), atol=1e-6)
    assert np.allclose(seq.cam_to_world[2], fx.scene_pose(6), atol=1e-6)
    assert gt_scores(seq, r.info).tae < 0.02
    # tracking lost on one frame (-inf pose, as ScanNet writes it): no poses, so no TAE, but depth still scored
    (tmp_path / "scans_test" / "scene0707_00" / "pose" / "3.txt").write_text("-inf -inf -inf -inf\n" * 4)
    seq = r.load("scene0707_00#0")
    assert seq.cam_to_world is None and gt_scores(seq, r.info).tae is None


def test_kitti_eigen_split_annotated_and_velodyne(tmp_path):
    exp = fx.write_kitti(tmp_path)
    r = open_benchmark("kitti", tmp_path)
    assert r.items() == ["0", "1"]                                 # the line with None has no annotated map
    seq = r.load("0")
    assert seq.rgb.shape == (1, 352, 1216, 3) and seq.depth.shape == (1, 352, 1216)   # KITTI benchmark crop
    top, left = 375 - 352, (1242 - 1216) // 2
    assert seq.depth[0, 200 - top, 20 - left + 3 * 10] == pytest.approx(12.5)
    eigen = np.zeros((352, 1216), bool)                            # rows 0.3324-0.9135, cols 0.0359-0.9641
    eigen[int(0.3324324 * 352):int(0.91351351 * 352), int(0.0359477 * 1216):int(0.96405229 * 1216)] = True
    assert np.array_equal(seq.valid[0], eigen) and eigen[117:321, 43:1172].all() and eigen.sum() == 204 * 1129
    assert seq.K[0, 0, 2] == pytest.approx(exp["cx"] - left)
    garg = open_benchmark("kitti", tmp_path, crop="garg").load("0").valid[0]
    g0 = int(CROPS["garg"][0] * 352)                               # Garg's crop starts lower (row 143, not 117)
    assert not garg[g0 - 1].any() and garg[g0, 43:1172].all() and seq.valid[0][g0 - 1].any()
    # single-scan ground truth, projected here: the point 5 cm behind the 10 m one (same pixel) is dropped
    vel = open_benchmark("kitti", tmp_path, split=str(tmp_path / "eigen_test_files_plain.txt"), kb_crop="false")
    assert vel.items() == ["0", "1"]
    d = vel.load("1").depth[0]
    u, v = (int(np.floor(c + 0.5)) for c in exp["centre_uv"])
    assert d[v, u] == pytest.approx(exp["centre_depth"], rel=1e-6)
    u2, v2 = (int(np.floor(c + 0.5)) for c in exp["side_uv"])
    assert d[v2, u2] == pytest.approx(exp["side_depth"], rel=1e-6)
    assert (d > 0).sum() == 2                                      # and the point behind the camera is not projected


def test_nyuv2_labelled_test_split(tmp_path):
    exp = fx.write_nyuv2(tmp_path)
    r = open_benchmark("nyuv2", tmp_path)
    assert r.items() == [str(i) for i in exp["test"]]
    seq = r.load(r.items()[0])
    i = exp["test"][0]
    assert np.array_equal(seq.rgb[0], fx.scene_rgb(i, 48, 64))
    assert np.allclose(seq.depth[0], fx.scene_depth(i, 48, 64) + i)
    m = seq.valid[0]                                               # Eigen border scaled to 48x64: rows 4:47, cols 4:60
    assert m[4:47, 4:60].all() and m.sum() == 43 * 56
    assert len(open_benchmark("nyuv2", tmp_path, split="all").items()) == 5
    (tmp_path / "splits.mat").unlink()
    with pytest.raises(ReaderError, match="splits.mat"):
        r.items()


def test_sintel_scenes_as_videos(tmp_path):
    fx.write_sintel(tmp_path)
    r = open_benchmark("sintel", tmp_path)
    assert r.items() == ["alley_1#0", "market_2#0"]
    seq = r.load("market_2#0")
    assert seq.depth.shape == (6, 24, 56) and seq.frame_indices == [1, 2, 3, 4, 5, 6]
    assert np.allclose(seq.cam_to_world[4], fx.scene_pose(4))
    s = gt_scores(seq, r.info, PRESETS["zbuffer"])
    assert max(s.abs_rel) < 1e-6 and s.tae < 0.02


def test_bonn_associates_timestamps(tmp_path):
    fx.write_bonn(tmp_path)
    r = open_benchmark("bonn", tmp_path, start=2, frames=5)
    assert r.items() == ["rgbd_bonn_balloon#0"]
    seq = r.load(r.items()[0])
    assert seq.frame_indices == [2, 3, 4, 5, 6]
    assert np.allclose(seq.depth[0], fx.scene_depth(2, 24, 32, K=bonn_K), atol=2e-4)   # 1/5000 m steps
    assert np.allclose(seq.cam_to_world[1], fx.scene_pose(3), atol=1e-6)
    assert gt_scores(seq, r.info).tae < 0.02


def test_eth3d_raw_float_depth(tmp_path):
    fx.write_eth3d(tmp_path)
    r = open_benchmark("eth3d", tmp_path)
    assert r.items() == ["courtyard/DSC_0300.JPG", "pipes/DSC_0301.JPG"]
    seq = r.load(r.items()[1])
    assert not seq.valid[0, :5].any() and seq.valid[0, 5:].all()   # infinity = no ground truth
    assert np.allclose(seq.depth[0, 5:], fx.scene_depth(1, 40, 60)[5:] * 4)
    (tmp_path / "pipes" / "ground_truth_depth" / "dslr_images" / "DSC_0301.JPG").write_bytes(b"\0" * 100)
    with pytest.raises(ReaderError, match="DSC_0301.JPG: 100 bytes"):
        r.load(r.items()[1])


def test_diode_masks_and_range(tmp_path):
    exp = fx.write_diode(tmp_path)
    r = open_benchmark("diode", tmp_path)
    assert r.items() == exp["stems"]
    assert open_benchmark("diode", tmp_path, subset="outdoor").items() == exp["stems"][1:]
    seq = r.load(exp["stems"][0])
    assert not seq.valid[0, :, :3].any() and seq.valid[0, :, 3:].all()
    assert gt_scores(seq, r.info).abs_rel[0] < 1e-6


def test_every_reader_documents_source_range_and_crop():
    for name, reader in READERS.items():
        doc = __import__(reader.__module__, fromlist=["_"]).__doc__
        assert "Source:" in doc and "Valid depth:" in doc and ("crop" in doc.lower()), name
        assert reader.info.min_depth > 0 and reader.info.max_depth > reader.info.min_depth


def test_clear_errors(tmp_path):
    with pytest.raises(ReaderError, match="not a directory"):
        open_benchmark("kitti", tmp_path / "nope")
    with pytest.raises(ReaderError, match="eigen_test_files"):
        open_benchmark("kitti", tmp_path)
    with pytest.raises(ValueError, match="unknown option"):
        open_benchmark("diode", tmp_path, colour="red")
    with pytest.raises(ValueError, match="unknown benchmark"):
        open_benchmark("middlebury", tmp_path)
