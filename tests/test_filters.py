"""Clip scoring (model-free checks, depth model, CLIP) and dav-filter sweep / apply."""

from __future__ import annotations

import csv
import json
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from dav_builder.filters import checks
from dav_builder.filters.align import depth_score, sample_indices
from dav_builder.filters.config import ScoringConfig
from dav_builder.filters.models import ModelUnavailableError
from dav_builder.filters.stage import decide

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_dataset import write_synthetic_dataset  # noqa: E402

# -- model-free checks on synthetic frames ------------------------------------------------------


def scene(t: int, shift: int = 0, h: int = 96, w: int = 128):
    """Grey frame and depth of a textured square moving right over a far wall (depth optionally shifted)."""
    rng = np.random.default_rng(0)
    wall = rng.integers(60, 90, (h, w)).astype(np.float32)
    grey = cv2.GaussianBlur(wall, (5, 5), 0)
    depth = np.full((h, w), 10.0, np.float32)
    x0 = 20 + 3 * t
    grey[30:70, x0 : x0 + 40] = 200
    grey[45:55, x0 + 10 : x0 + 30] = 120  # some texture inside: an RGB edge with no depth edge
    xd = x0 + shift
    depth[30:70, xd : xd + 40] = 3.0
    return grey, depth


def frames(n: int, shift: int = 0, lag: bool = False):
    g, d = zip(*[scene(t, shift) for t in range(n)])
    g, d = np.stack(g), np.stack(d)
    if lag:
        d = np.concatenate([d[:1], d[:-1]])
    return g, d


def test_edge_misalignment_sees_depth_from_another_camera():
    g, d = frames(4)
    clean = checks.edge_misalignment(g, d)
    g2, d2 = frames(4, shift=4)
    assert clean < 0.05 < checks.edge_misalignment(g2, d2)
    assert checks.edge_misalignment(g2, d2) > ScoringConfig().edge_misalignment.threshold


def test_depth_lag_sees_depth_one_frame_late():
    g, d = frames(5)
    _, dl = frames(5, lag=True)
    clean = checks.depth_lag(g[:-2], g[1:-1], g[2:], d[1:-1], d[2:])
    lagged = checks.depth_lag(g[:-2], g[1:-1], g[2:], dl[1:-1], dl[2:])
    assert clean <= 0 and lagged > ScoringConfig().depth_lag.threshold


def box_crossing(n: int, speed: int, lag: bool = False):
    """A box of two shaded faces (light 4 px, dark 20 px wide, one depth) crossing grey ground
    ``speed`` px a frame: the edge between its faces is an image edge without a depth edge."""
    h, w = 48, 160
    g = np.full((n, h, w), 146.0, np.float32)
    d = np.full((n, h, w), 49.0, np.float32)
    for t in range(n):
        x = 20 + speed * t
        g[t, 10:40, x : x + 4] = 162.0
        g[t, 10:40, x + 4 : x + 24] = 123.0
        d[t, 10:40, x : x + 24] = 29.0
    if lag:
        d = np.concatenate([d[:1], d[:-1]])
    return g, d


def test_depth_lag_is_not_fooled_by_an_image_edge_without_a_depth_edge():
    threshold = ScoringConfig().depth_lag.threshold
    g, d = box_crossing(8, 3)
    _, late = box_crossing(8, 3, lag=True)
    clean = (g[:-2], g[1:-1], g[2:], d[1:-1], d[2:])
    lagged = (g[:-2], g[1:-1], g[2:], late[1:-1], late[2:])
    # the cosine of the change maps alone takes the correct capture for a late one (the test can
    # fail): the faces' edge moves by about its distance to the outline, so the image change of
    # the frame before overlaps the depth change better
    assert checks.kth_largest(checks.lag_gains(*clean), 3) > threshold
    # the cover test sees every pixel where depth changed change in the image at the same time
    assert checks.kth_largest(checks.lag_cover_gains(*clean), 3) < 0
    assert checks.depth_lag(*clean) <= 0
    # and both tests agree on depth a frame late
    assert checks.kth_largest(checks.lag_cover_gains(*lagged), 3) > 0
    assert checks.depth_lag(*lagged) > threshold


def test_the_cover_test_needs_two_regions_of_changed_depth_that_agree():
    """A lag makes every moving boundary late; one boundary that looks late by itself (a face edge
    a pixel inside a silhouette) is no evidence."""
    dchange = np.zeros((40, 80), np.float32)
    now, before = np.zeros_like(dchange), np.zeros_like(dchange)
    dchange[10:30, 10:13] = 1.0  # one region of changed depth ...
    before[10:30, 10:13] = 10.0  # ... that the image changed at a frame earlier
    assert np.isnan(checks._cover_gain(dchange, now, before))
    dchange[10:30, 50:53] = 1.0  # a second region, 37 pixels away
    before[10:30, 50:53] = 10.0
    assert checks._cover_gain(dchange, now, before) > 0  # both late: a lag
    now[10:30, 50:53] = 10.0
    now[10:30, 10:13] = 10.0
    before[:] = 0.0
    assert checks._cover_gain(dchange, now, before) < 0  # both on time


def test_a_few_misaligned_or_lagging_frames_count_but_one_odd_frame_does_not():
    # 9 frames; the defect covers the last `bad` of them: with 3 votes, 3 misaligned frames are
    # enough, and 4 lagging ones (the first lagging frame repeats the depth before it: no vote)
    g, d = frames(9)
    _, ds = frames(9, shift=4)
    _, dl = frames(9, lag=True)
    cfg = ScoringConfig()
    for bad, flagged in ((1, False), (3, True)):
        mixed = np.concatenate([d[: 9 - bad], ds[9 - bad :]])
        score = checks.edge_misalignment(g, mixed, votes=3)
        assert (score > cfg.edge_misalignment.threshold) is flagged, (bad, score)
    for bad, flagged in ((2, False), (3, False), (4, True)):
        lagged = np.concatenate([d[: 9 - bad], dl[9 - bad :]])
        score = checks.depth_lag(g[:-2], g[1:-1], g[2:], lagged[1:-1], lagged[2:], votes=3)
        assert (score > cfg.depth_lag.threshold) is flagged, (bad, score)
    # a still image or frozen depth says nothing about lag (NaN: no vote either way)
    assert np.isnan(checks.lag_gains(g[:2], g[:2], g[:2], d[1:3], d[2:4])).all()
    assert np.isnan(checks.lag_gains(g[:2], g[1:3], g[2:4], d[1:3], d[1:3])).all()
    # a median would have missed the three-frame defect
    assert np.median([checks.chamfer_gap(a, b) for a, b in zip(g, np.concatenate([d[:6], ds[6:]]))]) < 0.05


def test_kth_largest_leaves_out_missing_values():
    nan = float("nan")
    assert checks.kth_largest([0.1, nan, 0.5, 0.3], 2) == 0.3
    assert checks.kth_largest([0.1, nan], 3) == 0.1  # fewer than k: the smallest
    assert checks.kth_largest([nan, nan], 3) == 0.0
    with pytest.raises(ValueError, match="pair_votes"):
        ScoringConfig.from_dict({"pair_votes": 0})


def test_frozen_depth_counts_pairs_with_unchanged_depth():
    g, d = frames(5)
    frozen = np.repeat(d[:1], 5, axis=0)
    assert checks.frozen_depth(g[:-1], g[1:], d[:-1], d[1:]) == 0
    assert checks.frozen_depth(g[:-1], g[1:], frozen[:-1], frozen[1:]) == 1.0
    same = np.repeat(g[:1], 5, axis=0)  # nothing moves in RGB either: not evidence of a frozen buffer
    assert checks.frozen_depth(same[:-1], same[1:], frozen[:-1], frozen[1:]) == 0


def test_frozen_depth_counts_a_camera_walking_at_a_plain_wall_by_its_poses():
    # the image does not change (a plain wall), the camera walks 0.1 m a frame towards it
    n, h, w = 5, 36, 64
    grey = np.full((n, h, w), 90.0, np.float32)
    K = np.stack([np.array([[50.0, 0, w / 2], [0, 50.0, h / 2], [0, 0, 1]])] * n)
    poses = np.stack([np.eye(4)] * n)
    poses[:, 2, 3] = 0.1 * np.arange(n)  # the camera looks along +z
    right = np.stack([np.full((h, w), 3.0 - 0.1 * t, np.float32) for t in range(n)])
    frozen = np.repeat(right[:1], n, axis=0)

    def score(depth, cam_poses, with_cameras=True):
        Kp = np.stack([K[:-1], K[1:]], 1) if with_cameras else None
        Pp = np.stack([cam_poses[:-1], cam_poses[1:]], 1) if with_cameras else None
        return checks.frozen_depth(grey[:-1], grey[1:], depth[:-1], depth[1:], Kp, Pp)

    assert score(frozen, poses) == 1.0
    assert score(right, poses) == 0.0
    assert score(frozen, poses, with_cameras=False) == 0.0  # without poses a still image says nothing
    assert score(frozen, np.stack([np.eye(4)] * n)) == 0.0  # a still camera: frozen depth is right
    sideways = np.stack([np.eye(4)] * n)
    sideways[:, 0, 3] = 0.1 * np.arange(n)  # sliding along the wall: its depth does not change
    assert checks.pose_depth_change(frozen[0], K[0], K[1], sideways[0], sideways[1]) == 0.0


def test_static_overlay_sees_a_hud_over_a_moving_scene():
    h, w = 96, 128
    rng = np.random.default_rng(1)
    base = cv2.GaussianBlur(rng.integers(0, 255, (h, w + 40)).astype(np.float32), (0, 0), 2) * 3 - 255
    g = np.stack([base[:, 5 * t : 5 * t + w] for t in range(6)]).clip(0, 255)  # the camera slides right
    d = np.full((6, h, w), 5.0, np.float32)  # a wall 5 m away: 0.25 m per frame is 5 px at fx = 100
    K = np.stack([np.array([[100.0, 0, w / 2], [0, 100.0, h / 2], [0, 0, 1]])] * 6)
    poses = np.stack([np.eye(4)] * 6)
    poses[:, 0, 3] = 0.25 * np.arange(6)
    clean = checks.static_overlay(g, d, K, poses)
    hud = g.copy()
    hud[:, 5:20, 5:60] = 255
    hud[:, 8:17, 8:57] = 0
    with_hud = checks.static_overlay(hud, d, K, poses)
    assert clean < ScoringConfig().static_overlay.threshold < with_hud
    # the same HUD with a still camera is not evidence: nothing is expected to move
    still = np.stack([hud[0]] * 6)
    assert checks.static_overlay(still, d, K, np.stack([np.eye(4)] * 6)) == 0.0
    # without poses, a depth change marks the scene as moving
    d2 = d * np.linspace(1, 0.8, 6)[:, None, None]
    assert checks.static_overlay(hud, d2, None, None) > ScoringConfig().static_overlay.threshold
    # a first-person weapon drawn with depth of its own (0.5 m, moving with the camera): a correct
    # capture; its depth carried by the poses into the next frame disagrees there, so it does not
    # count, while the same drawing without depth (over the wall's) counts like the HUD
    gun = np.zeros((h, w), bool)
    gun[50:90, 70:120] = True
    drawn = g.copy()
    drawn[:, gun] = 255.0
    drawn[:, 60:86, 78:112] = 0.0
    with_depth = d.copy()
    with_depth[:, gun] = 0.5
    assert checks.static_overlay(drawn, with_depth, K, poses) < ScoringConfig().static_overlay.threshold / 4
    assert checks.static_overlay(drawn, d, K, poses) > ScoringConfig().static_overlay.threshold
    assert checks.own_depth_map(with_depth[0], with_depth[1], K[0], K[1], poses[0], poses[1])[gun].mean() > 0.9
    assert not checks.own_depth_map(d[0], d[1], K[0], K[1], poses[0], poses[1]).any()  # the wall is the scene


def sliding_wall(n: int, h: int = 96, w: int = 128, px: float = 5.0):
    """Grey frames of a textured wall 5 m away with the camera sliding right by ``px`` pixels a
    frame (fx = 100), its depth, intrinsics and poses."""
    rng = np.random.default_rng(1)
    base = cv2.GaussianBlur(rng.integers(0, 255, (h, w + int(px * n) + 8)).astype(np.float32), (0, 0), 2) * 3 - 255
    g = np.stack([cv2.warpAffine(base, np.float32([[1, 0, -px * t], [0, 1, 0]]), (w, h)) for t in range(n)]).clip(0, 255)
    d = np.full((n, h, w), 5.0, np.float32)
    K = np.stack([np.array([[100.0, 0, w / 2], [0, 100.0, h / 2], [0, 0, 1]])] * n)
    poses = np.stack([np.eye(4)] * n)
    poses[:, 0, 3] = px / 100.0 * 5.0 * np.arange(n)
    return g, d, K, poses


def test_static_overlay_sees_a_hud_shown_for_three_frames_and_one_that_a_slow_camera_hardly_moves_past(monkeypatch):
    threshold = ScoringConfig().static_overlay.threshold
    g, d, K, poses = sliding_wall(16)
    assert checks.static_overlay(g, d, K, poses) < threshold
    brief = g.copy()
    brief[6:9, 30:60, 10:110] = 255.0  # subtitles for three frames of a 16-frame clip
    brief[6:9, 38:52, 18:102] = 0.0
    assert checks.static_overlay(brief, d, K, poses) > threshold
    # a camera creeping by 0.2 pixels a frame moves the scene by 1.5 pixels only over more than 6 frames
    g, d, K, poses = sliding_wall(16, px=0.2)
    hud = g.copy()
    hud[:, 30:60, 10:110] = 255.0
    hud[:, 38:52, 18:102] = 0.0
    assert checks.static_overlay(g, d, K, poses) < threshold < checks.static_overlay(hud, d, K, poses)
    monkeypatch.setattr(checks, "OVERLAY_BRIEF_WINDOW", 99)  # without the brief windows ...
    assert checks.static_overlay(brief, *sliding_wall(16)[1:]) < threshold  # ... the brief HUD is missed


def test_static_overlay_sees_a_crosshair_of_the_fogs_luminance_in_colour():
    from dav_builder.capture.imageio import GREY_WEIGHTS
    from dav_builder.render.overlays import draw_hud

    h, w, n = 72, 128, 6
    fog = np.full((n, h, w, 3), 174, np.uint8)  # grey fog: the green crosshair's luminance
    hud = np.stack([draw_hud(f, t, "crosshair") for t, f in enumerate(fog)])
    d = np.full((n, h, w), 5.0, np.float32)
    K = np.stack([np.array([[100.0, 0, w / 2], [0, 100.0, h / 2], [0, 0, 1]])] * n)
    poses = np.stack([np.eye(4)] * n)
    poses[:, 0, 3] = 0.1 * np.arange(n)  # 2 px per frame at 5 m
    threshold = ScoringConfig().static_overlay.threshold
    assert checks.static_overlay(fog, d, K, poses) == 0.0
    assert checks.static_overlay(hud, d, K, poses) > threshold
    grey = hud.astype(np.float32) @ GREY_WEIGHTS  # the same frames in grey: the crosshair is gone
    assert checks.static_overlay(grey, d, K, poses) < threshold


def test_the_sky_outline_is_marked_on_both_sides():
    d = np.full((40, 40), 5.0, np.float32)
    d[:20] = 0.0  # no depth above row 20 (sky)
    e = checks.occlusion_edges(d, border=0)
    assert e[19].all() and e[20].all() and not e[:19].any() and not e[21:].any()


def test_the_sky_outline_counts_only_where_the_colour_changes_across_it():
    d = np.full((40, 40), 5.0, np.float32)
    d[:20] = 0.0
    grey = np.full((40, 40), 120.0, np.float32)
    assert not checks.occlusion_edges(d, border=0, grey=grey).any()  # grey sky on grey ground
    grey[:20] = 200.0
    assert checks.occlusion_edges(d, border=0, grey=grey)[19:21].all()


def test_predicted_motion_is_sub_pixel():
    from dav_builder.model.metrics import project, reproject

    d = np.full((20, 30), 10.0)
    K = np.array([[100.0, 0, 15], [0, 100.0, 10], [0, 0, 1]])
    b = np.eye(4)
    b[0, 3] = 0.13  # 0.13 m sideways at 10 m and fx = 100: 1.3 px
    np.testing.assert_allclose(checks.predicted_motion(d, K, K, np.eye(4), b), 1.3, rtol=1e-9)
    np.testing.assert_allclose(project(d, K, K, np.eye(4), b)[0] - np.arange(30), -1.3, rtol=1e-9)
    np.testing.assert_array_equal(reproject(d, K, K, np.eye(4), b)[0] - np.arange(30), -1.0)


def test_an_overlay_corner_counts_only_where_its_whole_neighbourhood_moves():
    # 0.13 m sideways with fx = 100: a point at 2.6 m moves 5 px, one at 26 m 0.5 px
    depth = np.full((10, 10), 2.6)
    depth[:, 5:] = 26.0  # the right half barely moves (e.g. the far side of a silhouette)
    depth[0, 0] = 0.0  # no depth: not moving
    K = np.array([[100.0, 0, 5], [0, 100.0, 5], [0, 0, 1]])
    b = np.eye(4)
    b[0, 3] = 0.13
    np.testing.assert_allclose(checks.predicted_motion(depth, K, K, np.eye(4), b)[1:, :5], 5.0, rtol=1e-9)
    sure = checks.surely_moving(depth, K, K, np.eye(4), b, np.arange(100), 1.5).reshape(10, 10)
    assert sure[2:, :4].all() and sure[0, 2:4].all() and not sure[:, 4:].any() and not sure[:2, :2].any()


# -- the decision and the depth score ---------------------------------------------------------


def test_decision_follows_the_paper_rule():
    cfg = ScoringConfig()
    cfg.depth.threshold, cfg.clip.threshold = 0.6, 0.8
    base = {"edge_misalignment": 0.0, "depth_lag": 0.0, "frozen_depth": 0.0, "static_overlay": 0.0}
    assert decide(dict(base, depth_score=0.5, semantic_score=0.7), cfg) == (False, "low_depth_and_semantic")
    assert decide(dict(base, depth_score=0.5, semantic_score=0.9), cfg) == (True, None)  # only one is low
    assert decide(dict(base, depth_score=0.9, semantic_score=0.7), cfg) == (True, None)
    assert decide(dict(base, depth_score=0.5, semantic_score=None), cfg) == (False, "low_depth_score")
    assert decide(dict(base, depth_score=None, semantic_score=None), cfg) == (True, None)  # scores off
    assert decide(dict(base, frozen_depth=0.5), cfg) == (False, "frozen_depth")
    cfg.frozen_depth.enabled = False
    assert decide(dict(base, frozen_depth=0.5), cfg) == (True, None)


def test_depth_score_is_delta1_after_alignment_in_disparity():
    rng = np.random.default_rng(0)
    depth = rng.uniform(1, 20, (3, 16, 16)).astype(np.float32)
    depth[:, 0, 0] = 0
    pred = 5 * np.where(depth > 0, 1 / np.maximum(depth, 1e-6), 0) + 2  # any affine map of disparity
    assert depth_score(pred, depth) == pytest.approx(1.0)
    assert depth_score(rng.random((3, 16, 16)), depth) < 0.6
    assert sample_indices(32, 10) == [0, 3, 7, 10, 14, 17, 21, 24, 28, 31] and sample_indices(4, 10) == [0, 1, 2, 3]


# -- models in the build ----------------------------------------------------------------------

TINY_CLIP = {"embed_dim": 16,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
             "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 1, "layers": 1}}

DEPTH_MODULE = '''
import numpy as np

CALLS = []


class Brightness:
    """A stand-in depth model (bright = near); a class is instantiated once per worker."""

    def __call__(self, rgb):
        CALLS.append(len(rgb))
        return rgb.astype(np.float32).mean(axis=-1) / 255.0
'''


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    import open_clip
    import torch

    root = tmp_path_factory.mktemp("models")
    cfg = root / "tiny-clip-test.json"
    cfg.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(cfg)
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-clip-test")
    torch.save(model.state_dict(), root / "tiny_clip.bin")
    (root / "dav_test_depth_model.py").write_text(DEPTH_MODULE)
    sys.path.insert(0, str(root))
    yield {"clip_config": str(cfg), "clip_weights": str(root / "tiny_clip.bin"),
           "depth": "dav_test_depth_model:Brightness"}
    sys.path.remove(str(root))


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    from dav_builder.render.engine import RenderConfig, render_captures

    root = tmp_path_factory.mktemp("caps")
    render_captures(root, RenderConfig(scenes=1, frames=40, width=64, height=48, seed=8), progress=False)
    return root


def build(captures, out, scoring):
    from dav_builder.pipeline.build import build_dataset
    from dav_builder.pipeline.config import load_config

    cfg = load_config(overrides={"clips": {"lengths": [8]}, "run": {"executor": "local"}, "scoring": scoring})
    lines = []
    build_dataset([captures], out, cfg, progress=False, say=lines.append)
    return lines


def test_build_scores_with_a_depth_callable_and_a_tiny_clip(captures, tiny_models, tmp_path):
    scoring = {"depth": {"path": tiny_models["depth"], "threshold": 0.0},
               "clip": {"model": tiny_models["clip_config"], "pretrained": tiny_models["clip_weights"],
                        "threshold": 0.0}}
    lines = build(captures, tmp_path / "ds", scoring)
    assert any("depth_score on" in l for l in lines) and any("semantic_score on" in l for l in lines)
    rows = [r for r in pq.read_table(tmp_path / "ds" / "manifest.parquet").to_pylist() if r["shard"]]
    assert rows
    for r in rows:
        assert 0 <= r["depth_score"] <= 1 and -1 <= r["semantic_score"] <= 1 + 1e-6
        assert r["edge_misalignment"] is not None
        assert r["pose_misfit"] is not None and r["depth_jump"] is not None  # the engine writes poses
    # the same scores are in each clip's json in the shards, dropped or kept
    tar_scores = {}
    for shard in (tmp_path / "ds" / "shards").rglob("*.tar"):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    meta = json.loads(tar.extractfile(m).read())
                    tar_scores[meta["clip_id"]] = meta["scores"]
    for r in rows:
        assert tar_scores[r["clip_id"]]["depth_score"] == pytest.approx(r["depth_score"])
        assert tar_scores[r["clip_id"]]["semantic_score"] == pytest.approx(r["semantic_score"])


def test_a_missing_model_fails_at_start_before_reading_data(captures, tiny_models, tmp_path):
    with pytest.raises(ModelUnavailableError, match="pretrained"):
        build(captures, tmp_path / "a", {"depth": {"path": tiny_models["depth"]},
                                         "clip": {"model": tiny_models["clip_config"], "pretrained": "nope"}})
    with pytest.raises(ModelUnavailableError, match="dav-train run"):
        build(captures, tmp_path / "b", {"depth": {"path": str(tmp_path / "no-such-run")}})
    with pytest.raises(ModelUnavailableError, match="cannot import"):
        build(captures, tmp_path / "c", {"depth": {"path": "no_such_module_xyz:model"}})
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_without_models_the_scores_are_null_and_the_build_says_how_to_turn_them_on(captures, tmp_path):
    lines = build(captures, tmp_path / "ds", {})
    assert sum("depth_score is off" in l for l in lines) == 1 and sum("semantic_score is off" in l for l in lines) == 1
    rows = pq.read_table(tmp_path / "ds" / "manifest.parquet").to_pylist()
    assert all(r["depth_score"] is None and r["semantic_score"] is None for r in rows)


def test_a_dav_train_model_scores_clips(captures, tmp_path):
    """The scoring stage loads what dav-train exports (1 Euler step) and passes the frames' indices."""
    import torch

    from dav_builder.model.config import ModelConfig
    from dav_builder.model.video_depth import DepthAnyVideo

    torch.manual_seed(0)
    DepthAnyVideo.build(ModelConfig()).save_pretrained(tmp_path / "run" / "final")
    build(captures, tmp_path / "ds", {"depth": {"path": str(tmp_path / "run"), "threshold": 0.0}})
    rows = [r for r in pq.read_table(tmp_path / "ds" / "manifest.parquet").to_pylist() if r["shard"]]
    assert rows and all(r["depth_score"] is not None and 0 <= r["depth_score"] <= 1 for r in rows)


# -- dav-filter -------------------------------------------------------------------------------


@pytest.fixture()
def scored_dataset(tmp_path):
    ds = write_synthetic_dataset(tmp_path / "ds", buckets=((32, 48, 4, 6), (32, 48, 1, 4)))
    table = pq.read_table(ds / "manifest.parquet")
    rows = table.to_pylist()
    rng = np.random.default_rng(0)
    for i, r in enumerate(rows):
        r["depth_score"] = float(rng.uniform(0.3, 1.0))
        r["semantic_score"] = float(rng.uniform(0.5, 1.0))
    from dav_builder.shards.manifest import write_manifest

    write_manifest(ds, rows)
    return ds, rows


def test_sweep_counts_the_paper_rule_per_threshold_and_chooses_thresholds_from_labels(scored_dataset, tmp_path):
    from dav_builder.filters.cli import main

    ds, rows = scored_dataset
    labels = tmp_path / "labels.csv"
    bad = {r["clip_id"] for r in rows if r["depth_score"] < 0.6 and r["semantic_score"] < 0.8}
    assert 0 < len(bad) < len(rows)
    labels.write_text("".join(f"{r['clip_id']},{'bad' if r['clip_id'] in bad else 'good'}\n" for r in rows))
    res = CliRunner().invoke(main, ["sweep", str(ds), "--grid", "depth_score=0.4,0.6,0.8",
                                    "--grid", "semantic_score=0.7,0.8", "--labels", str(labels),
                                    "--max-good-drop", "0"])
    assert res.exit_code == 0, res.output
    with open(ds / "sweep.csv") as fh:
        table = list(csv.DictReader(fh))
    depth_rows = [r for r in table if r["score"] == "depth_score"]
    assert [float(r["threshold"]) for r in depth_rows] == [0.4, 0.6, 0.8]
    for r in depth_rows:  # the other threshold at the build's (0.8): the paper's rule, both low
        drop = sum(1 for x in rows if x["depth_score"] < float(r["threshold"]) and x["semantic_score"] < 0.8)
        assert int(r["kept"]) == len(rows) - drop
    at_06 = next(r for r in depth_rows if float(r["threshold"]) == 0.6)
    assert float(at_06["precision"]) == 1.0 and float(at_06["recall"]) == 1.0 and float(at_06["good_dropped"]) == 0
    # the choice: no good clip may go; it still catches bad ones, and says so as an apply command
    choice = res.output.split("threshold choice")[1]
    assert "drops 0 of" in choice and "dav-filter apply" in choice
    caught = int(choice.split("catches ")[1].split(" of")[0])
    assert caught > 0
    assert (ds / "sweep.png").stat().st_size > 1000


def test_apply_repacks_only_kept_clips_by_copying_members(scored_dataset, tmp_path):
    from dav_builder.filters.cli import main
    from dav_builder.shards.tario import iter_tar_samples

    ds, rows = scored_dataset
    out = tmp_path / "strict"
    res = CliRunner().invoke(main, ["apply", str(ds), "--out", str(out), "--depth-threshold", "0.7",
                                    "--semantic-threshold", "0.9", "-q"])
    assert res.exit_code == 0, res.output
    want = {r["clip_id"] for r in rows if not (r["depth_score"] < 0.7 and r["semantic_score"] < 0.9)}
    new = pq.read_table(out / "manifest.parquet").to_pylist()
    assert {r["clip_id"] for r in new if r["keep"]} == want
    assert all(r["reason"] == "low_depth_and_semantic" for r in new if not r["keep"])
    src = {s.key: s for p in (ds / "shards").rglob("*.tar") for s in iter_tar_samples(p)}
    got = {s.key: s for p in (out / "shards").rglob("*.tar") for s in iter_tar_samples(p)}
    assert set(got) == want
    for key, s in got.items():  # member bytes copied, not re-encoded
        assert s.rgb == src[key].rgb and s.depth == src[key].depth
    import webdataset as wds

    n = sum(1 for _ in wds.WebDataset([str(p) for p in sorted((out / "shards").rglob("*.tar"))], shardshuffle=False))
    assert n == len(want)
    again = CliRunner().invoke(main, ["apply", str(ds), "--out", str(out)])
    assert again.exit_code == 2 and "not empty" in again.output


def test_sweep_with_only_the_depth_score_lets_it_decide_alone(tmp_path):
    from dav_builder.filters.cli import main
    from dav_builder.shards.manifest import write_manifest

    ds = write_synthetic_dataset(tmp_path / "ds", buckets=((32, 48, 4, 5),))
    rows = pq.read_table(ds / "manifest.parquet").to_pylist()
    for i, r in enumerate(rows):
        r["depth_score"], r["semantic_score"] = 0.1 * (i + 1), None
    write_manifest(ds, rows)
    res = CliRunner().invoke(main, ["sweep", str(ds), "--grid", "depth_score=0.25,0.45"])
    assert res.exit_code == 0, res.output
    assert "semantic_score" not in res.output.split("not stored")[0]  # no semantic column when it is off
    with open(ds / "sweep.csv") as fh:
        table = {float(r["threshold"]): int(r["kept"]) for r in csv.DictReader(fh) if r["score"] == "depth_score"}
    assert table[0.25] == 3 and table[0.45] == 1  # as the build's decide() would


def test_the_stage_scores_lag_and_alignment_on_full_resolution_pairs():
    from dav_builder.clip import Clip
    from dav_builder.filters.stage import ScoringStage

    def clip(lag: bool = False, shift: int = 0) -> Clip:
        g, d = frames(8, lag=lag, shift=shift)
        rgb = [cv2.imencode(".png", np.repeat(x[..., None], 3, 2).clip(0, 255).astype(np.uint8))[1].tobytes() for x in g]
        return Clip(clip_id="c", capture="cap", frame_indices=list(range(8)), fps=30.0, height=96, width=128, rgb=rgb,
                    depth=d.astype(np.float32), K=np.stack([np.eye(3)] * 8))

    cfg = ScoringConfig()
    stage = ScoringStage(cfg)
    clean = stage._checks(clip())
    assert clean["depth_lag"] <= cfg.depth_lag.threshold < stage._checks(clip(lag=True))["depth_lag"]
    assert clean["edge_misalignment"] <= cfg.edge_misalignment.threshold
    assert stage._checks(clip(shift=3))["edge_misalignment"] > cfg.edge_misalignment.threshold
    # frames larger than pair_side are looked at reduced, with the same verdicts
    half = ScoringStage(ScoringConfig(pair_side=64))
    assert half._checks(clip())["edge_misalignment"] <= cfg.edge_misalignment.threshold
    assert half._checks(clip(shift=6))["edge_misalignment"] > cfg.edge_misalignment.threshold


def test_an_edge_leaving_the_image_is_not_an_overlay(monkeypatch):
    # a slanted edge sliding along itself (the camera moves along it) meets the top and bottom
    # border: the reflected border makes corners there that never move; they are not a HUD
    h, w, n = 72, 128, 6
    ys, xs = np.mgrid[0:h, 0:w]
    edge = 40.0 + 180.0 / (1.0 + np.exp(-(xs - 40.0 - 0.5 * ys)))  # the line x = 40 + y / 2
    g = np.stack([edge.astype(np.float32)] * n)
    d = np.full((n, h, w), 5.0, np.float32)
    K = np.stack([np.array([[100.0, 0, w / 2], [0, 100.0, h / 2], [0, 0, 1]])] * n)
    poses = np.stack([np.eye(4)] * n)
    poses[:, 0, 3] = 0.05 * np.arange(n)  # image motion (1, 2) px per frame at 5 m: along the edge
    poses[:, 1, 3] = 0.10 * np.arange(n)
    # corners this soft (at most about 700) stay under the default CORNER_MIN anyway: count them,
    # so that only the border rule keeps them out
    monkeypatch.setattr(checks, "CORNER_MIN", 200.0)
    assert checks.static_overlay(g, d, K, poses) == 0.0
    monkeypatch.setattr(checks, "OVERLAY_BORDER", 0)  # the test can fail: without the rule it fires
    assert checks.static_overlay(g, d, K, poses) > 0.0


# -- checks against the camera poses -------------------------------------------------------------


def plane_depth(K: np.ndarray, cam_to_world: np.ndarray, h: int, w: int, normal, offset: float) -> np.ndarray:
    """Planar depth of the world plane ``normal . X = offset`` seen by a camera (OpenCV axes)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = np.linalg.inv(K) @ np.stack([xs, ys, np.ones_like(xs)]).reshape(3, -1)  # camera z = 1
    n = np.asarray(normal, np.float64)
    R, C = cam_to_world[:3, :3], cam_to_world[:3, 3]
    t = (offset - n @ C) / (n @ (R @ rays))
    return np.where(t > 0, t, 0.0).reshape(h, w).astype(np.float32)


def walk_towards_a_slanted_wall(n: int = 16, h: int = 36, w: int = 64, offset_camera: bool = False,
                                step: float = 0.05):
    """K, poses and depth of a camera walking ``step`` metres a frame towards a wall turned 40
    degrees; with ``offset_camera`` the depth comes from a camera 20 cm to the right and turned 3
    degrees."""
    K = np.array([[50.0, 0, w / 2], [0, 50.0, h / 2], [0, 0, 1]])
    poses = np.stack([np.eye(4)] * n)
    poses[:, 2, 3] = step * np.arange(n)  # the camera looks along +z
    a = np.radians(40)
    normal, offset = (np.sin(a), 0.0, np.cos(a)), 3.0
    off = np.eye(4)
    if offset_camera:
        y = np.radians(3)
        off[:3, :3] = [[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]]
        off[0, 3] = 0.2
    depth = np.stack([plane_depth(K, p @ off, h, w, normal, offset) for p in poses])
    return np.stack([K] * n), poses, depth


def test_pose_misfit_sees_depth_from_another_camera_late_or_frozen_even_on_a_plain_wall():
    K, poses, depth = walk_towards_a_slanted_wall()
    threshold = ScoringConfig().pose_misfit.threshold
    assert checks.pose_misfit(depth, K, poses) < threshold / 10
    _, _, other = walk_towards_a_slanted_wall(offset_camera=True)
    assert checks.pose_misfit(other, K, poses) > threshold
    late = np.concatenate([depth[:1], depth[:-1]])
    assert checks.pose_misfit(late, K, poses) > threshold
    frozen = np.repeat(depth[:1], len(depth), axis=0)
    assert checks.pose_misfit(frozen, K, poses) > threshold
    # an object close to the camera in one frame (a quarter of it) leaves the median alone
    near = depth.copy()
    near[8, :, : 16] = 0.3
    assert checks.pose_misfit(near, K, poses) < threshold / 10
    # a still camera: nothing to tell, and nothing wrong
    still = np.stack([np.eye(4)] * len(depth))
    assert checks.pose_misfit(frozen, K, still) == pytest.approx(0.0, abs=1e-6)


def test_depth_jump_sees_the_one_frame_where_depth_switches_camera():
    K, poses, depth = walk_towards_a_slanted_wall()
    _, _, other = walk_towards_a_slanted_wall(offset_camera=True)
    threshold = ScoringConfig().depth_jump.threshold

    def jump(d, K=K, poses=poses):
        return checks.depth_jump(d[:-1], d[1:], np.stack([K[:-1], K[1:]], 1), np.stack([poses[:-1], poses[1:]], 1))

    assert jump(depth) < threshold / 10
    # only the last frame of the clip comes from the other camera: one pair stands out
    switched = np.concatenate([depth[:-1], other[-1:]])
    assert jump(switched) > threshold
    # frozen depth catching up: a slow camera (1 cm a frame) whose depth froze for 8 frames
    _, slow_poses, slow = walk_towards_a_slanted_wall(step=0.01)
    caught_up = np.concatenate([np.repeat(slow[:1], 8, axis=0), slow[8:]])
    assert jump(slow, poses=slow_poses) < threshold / 10 < threshold < jump(caught_up, poses=slow_poses)
    # an object moving towards the camera disagrees with the poses in every pair alike: no jump
    moving = depth.copy()
    moving[:, 10:20, 10:30] = (2.0 - 0.05 * np.arange(len(depth)))[:, None, None]
    assert jump(moving) < threshold / 10
    # without neighbouring pairs there is nothing to compare with
    assert jump(switched[-2:]) == 0.0
    # when the image jumps in the same pair (a camera through a wall, a cut), it is the scene
    grey = np.stack([np.full((36, 64), 100.0 + t, np.float32) for t in range(len(depth))])
    cut = grey.copy()
    cut[-1] = 20.0
    pairs = (np.stack([K[:-1], K[1:]], 1), np.stack([poses[:-1], poses[1:]], 1))
    assert checks.depth_jump(switched[:-1], switched[1:], *pairs, checks.image_change(grey[:-1], grey[1:])) > threshold
    assert checks.depth_jump(switched[:-1], switched[1:], *pairs, checks.image_change(cut[:-1], cut[1:])) == 0.0


def test_carried_depth_is_exact_for_a_static_scene_and_counts_what_both_frames_see():
    K, poses, depth = walk_towards_a_slanted_wall(h=24, w=40)
    err, covisible = checks.carried_log_error(depth[0], depth[5], K[0], K[5], poses[0], poses[5])
    assert err.size > 0 and float(np.median(err)) < 1e-3 and 0.5 < covisible <= 1.0
    turned = poses[5].copy()
    turned[:3, :3] = [[-1, 0, 0], [0, 1, 0], [0, 0, -1]]  # looking back: nothing in common
    assert checks.two_way_errors(depth[0], depth[5], K[0], K[5], poses[0], turned) is None
    assert np.isnan(checks.pair_disagreement(depth[0], depth[5], K[0], K[5], poses[0], turned))


def test_the_stage_scores_the_pose_checks_and_leaves_them_null_without_poses():
    from dav_builder.clip import Clip
    from dav_builder.filters.stage import ScoringStage

    K, poses, depth = walk_towards_a_slanted_wall(h=36, w=64)
    _, _, other = walk_towards_a_slanted_wall(h=36, w=64, offset_camera=True)
    grey = np.stack([cv2.GaussianBlur(np.random.default_rng(t).uniform(0, 255, (36, 64)), (0, 0), 2)
                     for t in range(len(depth))]).astype(np.uint8)
    rgb_small = np.repeat(grey[..., None], 3, axis=-1)
    rgb = [cv2.imencode(".png", g)[1].tobytes() for g in grey]

    def clip(d, cam_to_world):
        return Clip(clip_id="c", capture="cap", frame_indices=list(range(len(d))), fps=30.0, height=36, width=64,
                    rgb=rgb, depth=d, K=K, cam_to_world=cam_to_world, rgb_small=rgb_small)

    stage = ScoringStage(ScoringConfig())
    right = stage._checks(clip(depth, poses))
    wrong = stage._checks(clip(other, poses))
    assert right["pose_misfit"] < stage.cfg.pose_misfit.threshold < wrong["pose_misfit"]
    unposed = stage._checks(clip(other, None))
    assert unposed["pose_misfit"] is None and unposed["depth_jump"] is None and unposed["depthless_content"] is None
    assert right["depthless_content"] == 0.0  # depth everywhere
    assert decide(dict(unposed, depth_score=None, semantic_score=None), stage.cfg)[1] != "pose_misfit"


# -- checks that hold on other games' captures: fog, repeated textures, weapons ------------------


def slide_past_a_wall(n: int = 6, h: int = 72, w: int = 128, texture=None):
    """A camera sliding right 0.25 m a frame past a textured wall 5 m away (5 px a frame at fx 100)."""
    rng = np.random.default_rng(1)
    if texture is None:
        texture = cv2.GaussianBlur(rng.integers(0, 255, (h, w + 5 * n)).astype(np.float32), (0, 0), 2) * 3 - 255
    g = np.stack([texture[:, 5 * t : 5 * t + w] for t in range(n)]).clip(0, 255).astype(np.float32)
    d = np.full((n, h, w), 5.0, np.float32)
    K = np.stack([np.array([[100.0, 0, w / 2], [0, 100.0, h / 2], [0, 0, 1]])] * n)
    poses = np.stack([np.eye(4)] * n)
    poses[:, 0, 3] = 0.25 * np.arange(n)
    return g, d, K, poses


def test_motion_mismatch_sees_content_drawn_without_depth_that_stays_put():
    g, d, K, poses = slide_past_a_wall()
    threshold = ScoringConfig().motion_mismatch.threshold
    assert checks.motion_mismatch(g, d, K, poses) < threshold / 4
    # a first-person weapon: textured, swaying by a pixel, drawn in RGB over the scene's depth
    rng = np.random.default_rng(2)
    gun = cv2.GaussianBlur(rng.uniform(0, 255, (30, 40)).astype(np.float32), (0, 0), 1.5)
    weapon = g.copy()
    for t in range(len(g)):
        dx = t % 2
        weapon[t, 40:70, 80 + dx : 120 + dx] = gun
    assert checks.motion_mismatch(weapon, d, K, poses) > threshold
    # the same weapon drawn into depth too (0.5 m, moving with the camera): a correct capture
    with_depth = d.copy()
    for t in range(len(g)):
        with_depth[t, 40:70, 80 + t % 2 : 120 + t % 2] = 0.5
    assert checks.motion_mismatch(weapon, with_depth, K, poses) < threshold / 4
    # a still camera: nothing is expected to move, nothing to tell
    still = np.stack([np.eye(4)] * len(g))
    assert checks.motion_mismatch(np.stack([weapon[0]] * len(g)), d, K, still) == 0.0


def test_a_box_moving_along_with_the_camera_is_not_content_without_depth(monkeypatch):
    # a flat-faced box 1.2 m away, moving along with the sliding camera (its image stays put) while
    # drifting away 2.5 % a frame: carried by the poses, its face lands on itself 2.5 % off, which
    # within 5 % passed for the static scene whose image should have moved by 20 pixels
    g, d, K, poses = slide_past_a_wall()
    rng = np.random.default_rng(3)
    face = cv2.GaussianBlur(rng.uniform(0, 255, (40, 70)).astype(np.float32), (0, 0), 1.5)
    for t in range(len(g)):
        g[t, 16:56, 30:100] = face
        d[t, 16:56, 30:100] = 1.2 * 1.025 ** t
    threshold = ScoringConfig().motion_mismatch.threshold
    assert checks.motion_mismatch(g, d, K, poses) < threshold / 4
    slanted = checks.static_tolerance(np.tile(np.exp(0.03 * np.arange(128, dtype=np.float32)), (72, 1)),
                                      *np.meshgrid(np.arange(128, dtype=np.float32), np.arange(72, dtype=np.float32)))
    assert np.allclose(slanted[:, 1:-1], checks.STATIC_DEPTH_FLOOR + 0.03, atol=1e-4)  # slanted ground: more slack
    with monkeypatch.context() as m:  # with 5 % for every surface, the box passes for the scene
        m.setattr(checks, "STATIC_DEPTH_FLOOR", checks.MISMATCH_DEPTH)
        assert checks.motion_mismatch(g, d, K, poses) > threshold


def test_a_repeating_texture_that_moves_by_its_period_is_not_an_overlay():
    h, w, n = 72, 128, 6
    x = np.arange(w + 5 * n)
    stripes = np.tile(np.where((x // 5) % 2 == 0, 60.0, 190.0)[None, :], (h, 1))  # period 10 px, moved 5 a frame
    checker = np.tile(np.where(((x // 5) % 2)[None, :] ^ ((np.arange(h) // 5) % 2)[:, None], 60.0, 190.0), (1, 1))
    for texture in (stripes, checker):
        g, d, K, poses = slide_past_a_wall(texture=texture.astype(np.float32))
        # every other frame looks identical: a still patch, but it also sits where the depth puts it
        assert checks.motion_mismatch(g, d, K, poses) < ScoringConfig().motion_mismatch.threshold / 4


def test_depth_boundaries_count_by_how_visible_they_are_in_the_image():
    d = np.full((40, 60), 10.0, np.float32)
    d[10:30, 20:40] = 2.0
    grey = np.full((40, 60), 100.0, np.float32)
    grey[10:30, 20:40] = 180.0
    ys, xs = np.nonzero(checks.occlusion_edges(d, border=0))
    assert checks.edge_visibility(grey, d, ys, xs).min() > 0.99
    foggy = np.full((40, 60), 100.0, np.float32)
    foggy[10:30, 20:40] = 103.0  # the same box, swallowed by fog
    assert checks.edge_visibility(foggy, d, ys, xs).max() < 0.3


def test_ground_running_into_the_far_plane_is_not_an_edge_to_align_with():
    h, w = 60, 80
    rows = np.arange(h, dtype=np.float32)[:, None]
    d = np.where(rows >= 20, 150.0 * 20.5 / (rows - 19.5), 0.0) * np.ones((1, w), np.float32)
    d[d > 149.0] = 0.0  # beyond the far plane: nothing drawn
    grey = np.full((h, w), 200.0, np.float32)
    grey[25:] = 90.0  # fog: the colour edge lies rows below where the depth ends
    d[40:50, 30:40] = 5.0  # a box on the ground
    grey[40:50, 30:40] = 30.0
    edges = checks.occlusion_edges(d.astype(np.float32), border=0, grey=grey)
    assert not edges[15:25].any() and edges[39:51, 29:41].any()


def wall_texture(K: np.ndarray, poses: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Grey frames of a texture fixed on the world surfaces that ``depth`` shows (a smooth pattern
    of the world coordinates), as the RGB of a correct capture."""
    n, h, w = depth.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    out = []
    for k, p, d in zip(K, poses, depth):
        cam = np.linalg.inv(k) @ np.stack([xs, ys, np.ones_like(xs)]).reshape(3, -1) * d.reshape(1, -1)
        world = p[:3, :3] @ cam + p[:3, 3:4]
        g = 128 + 60 * np.sin(9 * world[0]) * np.cos(9 * world[1]) + 30 * np.sin(5 * world[2])
        out.append(g.reshape(h, w))
    return np.stack(out).astype(np.float32)


def test_depth_jump_counts_depth_that_disagrees_where_the_image_agrees():
    K, poses, depth = walk_towards_a_slanted_wall()
    _, _, other = walk_towards_a_slanted_wall(offset_camera=True)
    threshold = ScoringConfig().depth_jump.threshold
    grey = wall_texture(K, poses, depth)
    pairs = (np.stack([K[:-1], K[1:]], 1), np.stack([poses[:-1], poses[1:]], 1))

    def jump(d, g=None):  # without the image-change rule (tested above): the image agreement alone
        return checks.depth_jump(d[:-1], d[1:], *pairs, None, None if g is None else g[:-1],
                                 None if g is None else g[1:])

    assert jump(depth, grey) < threshold / 10
    # depth from the other camera for one frame, under a right image: still a jump
    switched = np.concatenate([depth[:8], other[8:9], depth[9:]])
    assert jump(switched, grey) > threshold
    # an object close to the camera for one frame, in depth and in the image alike (a pillar the
    # camera passes): its depth disagrees with the poses, and so does the image there
    near, seen = depth.copy(), grey.copy()
    near[8, :, :20] = 0.4
    seen[8, :, :20] = 20.0
    assert jump(near) > threshold  # counted without the image
    assert jump(near, seen) < threshold / 3


def test_a_change_of_light_is_no_neighbour_for_depth_jump():
    K, poses, depth = walk_towards_a_slanted_wall()
    threshold = ScoringConfig().depth_jump.threshold
    grey = wall_texture(K, poses, depth)
    # a plain object coming towards the camera: it disagrees with the poses in every pair alike
    depth[:, 4:32, 6:40] = (2.0 - 0.05 * np.arange(len(depth)))[:, None, None]
    grey[:, 4:32, 6:40] = 90.0
    lit = grey.copy()
    lit[12:] = np.clip(lit[12:] * 1.5 + 40, 0, 255)  # a light switched on between frames 11 and 12
    pairs = (np.stack([K[:-1], K[1:]], 1), np.stack([poses[:-1], poses[1:]], 1))
    change = checks.image_change(lit[:-1], lit[1:])
    # the pair with the switch disagrees in the image everywhere: it counts nothing, so the last
    # pairs, with no other neighbour, would stand out against it
    values = [checks.pair_disagreement(depth[i], depth[i + 1], K[i], K[i + 1], poses[i], poses[i + 1],
                                       grey_prev=lit[i], grey=lit[i + 1]) for i in range(len(depth) - 1)]
    assert values[11] < min(values[12:]) - threshold
    assert checks.depth_jump(depth[:-1], depth[1:], *pairs, change, lit[:-1], lit[1:]) < threshold / 10


def test_motion_mismatch_needs_texture_along_the_motion(monkeypatch):
    g, d, K, poses = slide_past_a_wall()
    # a band of stripes running along the motion, drawn in RGB only: inside it, staying put and
    # moving with the scene look alike (the aperture problem)
    band = g.copy()
    band[:, 30:50, 30:100] = np.where((np.arange(20) // 2) % 2 == 0, 40.0, 220.0)[:, None]
    args = (band[0], band[1], d[0], d[1], K[0], K[1], poses[0], poses[1])
    assert not checks.mismatch_map(*args)[30:50, 30:100].any()
    monkeypatch.setattr(checks, "MISMATCH_APERTURE", 0.0)  # without the test, its ends are found
    assert checks.mismatch_map(*args)[30:50, 30:100].sum() > 50
    # the share of gradient energy along the motion: stripes along it, across it, a random texture
    right, still = np.ones((20, 20), np.float32), np.zeros((20, 20), np.float32)
    stripes = np.tile(np.where((np.arange(20) // 2) % 2 == 0, 40.0, 220.0)[:, None], (1, 20)).astype(np.float32)
    assert checks.along_motion(stripes, right, still)[5:15, 5:15].max() < 0.01
    assert checks.along_motion(stripes.T.copy(), right, still)[5:15, 5:15].min() > 0.99
    noise = np.random.default_rng(0).uniform(0, 255, (20, 20)).astype(np.float32)
    assert 0.3 < checks.along_motion(noise, right, still)[5:15, 5:15].mean() < 0.7


def zoom_on_a_wall_with_a_weapon(n: int = 6, h: int = 72, w: int = 128):
    """A still camera zooming in 4 % a frame on a textured wall 5 m away, with a first-person weapon
    drawn with depth of its own: each of its rows at a fixed distance (0.6 to 0.3 m), as a game
    draws it in the camera's space, swaying by a pixel in the image."""
    rng = np.random.default_rng(3)
    wall = cv2.GaussianBlur(rng.integers(0, 255, (h * 2, w * 2)).astype(np.float32), (0, 0), 2) * 3 - 255
    gun = cv2.GaussianBlur(rng.uniform(0, 255, (30, 40)).astype(np.float32), (0, 0), 1.0)
    g, d, K = [], [], []
    for t in range(n):
        f = 100.0 * 1.04 ** t
        K.append(np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]]))
        s = 100.0 / f  # the wall's texture, scaled about the image centre
        m = np.float32([[s, 0, w - s * w / 2], [0, s, h - s * h / 2]])
        frame = cv2.warpAffine(wall, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        frame[40:70, 80 + t % 2 : 120 + t % 2] = gun
        depth = np.full((h, w), 5.0, np.float32)
        depth[40:70, 80:121] = np.linspace(0.6, 0.3, 30, dtype=np.float32)[:, None]
        g.append(frame.clip(0, 255))
        d.append(depth)
    return np.stack(g).astype(np.float32), np.stack(d), np.stack(K), np.stack([np.eye(4)] * n)


def test_a_weapon_drawn_in_the_cameras_space_is_not_the_static_scene(monkeypatch):
    g, d, K, poses = zoom_on_a_wall_with_a_weapon()
    threshold = ScoringConfig().motion_mismatch.threshold
    # under a zoom the poses carry the weapon's pixels onto its own rows at the same distance: its
    # depth passes for the static scene's, while its image stays put instead of zooming
    assert checks.in_camera_space(d[0], d[1])[40:70, 80:121].all()
    assert not checks.in_camera_space(d[0], d[1])[:30].any()
    assert checks.motion_mismatch(g, d, K, poses) < threshold / 4
    monkeypatch.setattr(checks, "CAMERA_SPACE_M", 0.0)
    assert checks.motion_mismatch(g, d, K, poses) > threshold


def test_unexplained_change_leaves_out_what_the_near_plane_cuts_open(monkeypatch):
    g, d, K, poses = slide_past_a_wall()
    still = np.stack([np.eye(4)] * len(g))
    steady = np.stack([g[0]] * len(g))
    threshold = ScoringConfig().unexplained_change.threshold
    assert checks.unexplained_change(steady, d, K, still) < threshold / 4
    # a camera pressed against a wall (0.2 m): what the near plane cuts open changes every frame
    rng = np.random.default_rng(4)
    cut, near = steady.copy(), d.copy()
    near[:, 10:40, 10:60] = 0.2
    for t in range(len(g)):
        cut[t, 10:40, 10:60] = cv2.GaussianBlur(rng.uniform(0, 255, (30, 50)).astype(np.float32), (0, 0), 1.5) * 2 - 128
    cut = cut.clip(0, 255)
    monkeypatch.setattr(checks, "CAMERA_SPACE_M", 0.0)  # so that only the near plane's rule is at work
    assert checks.unexplained_change(cut, near, K, still) < threshold / 4
    monkeypatch.setattr(checks, "NEAR_CLIP_M", 0.0)
    assert checks.unexplained_change(cut, near, K, still) > threshold


def test_largest_jump_judges_a_run_against_the_neighbours_it_is_compared_with():
    nan = float("nan")
    # a lone pair standing out, the image as steady as around it: its excess over its neighbours
    values = [0.03] * 7 + [0.17] + [0.03] * 7
    steady = np.full(15, 3.0)
    assert checks.largest_jump(values, steady) == pytest.approx(0.14)
    # the same pair where the image changes three times as much as the pair before it, and the pair
    # after it is a scene event (its image changes twice as much again): the event is no neighbour,
    # and against the pair before, the run's image jumps too
    change = np.array([3.0] * 7 + [9.4, 18.9] + [0.3] * 6)
    values = [0.03] * 7 + [0.17, 0.13] + [0.08] * 6
    assert checks.largest_jump(values, change) < 0.06
    # next to a pair without evidence (the camera came out of an object): not judged
    values = [0.07, 0.08, 0.04, 0.07, 0.10, 0.20, nan, 0.035, 0.024, 0.027, 0.025, 0.027, 0.026, 0.03, 0.026]
    change = np.array([4.2, 5.4, 19.9, 10.1, 20.0, 33.3, 46.4, 30.5, 0.9, 0.8, 0.7, 0.8, 0.9, 0.9, 0.9])
    assert checks.largest_jump(values, change) < 0.02
    assert checks.largest_jump(values[:6], change[:6]) == pytest.approx(0.1)  # with evidence on both sides


def test_depth_jump_sees_a_wrong_buffer_of_a_few_frames():
    K, poses, depth = walk_towards_a_slanted_wall()
    threshold = ScoringConfig().depth_jump.threshold
    wrong = depth.copy()
    wrong[5:8] = np.flip(depth[5:8], axis=2) * 1.7  # three frames of depth from another view
    pairs = (np.stack([K[:-1], K[1:]], 1), np.stack([poses[:-1], poses[1:]], 1))
    assert checks.depth_jump(depth[:-1], depth[1:], *pairs) < threshold / 10
    assert checks.depth_jump(wrong[:-1], wrong[1:], *pairs) > threshold


def test_unexplained_change_sees_content_drawn_for_a_single_frame():
    g, d, K, poses = slide_past_a_wall()
    threshold = ScoringConfig().unexplained_change.threshold
    assert checks.unexplained_change(g, d, K, poses) < threshold / 4
    popped = g.copy()
    popped[3, 40:70, 80:120] = 20.0  # a dark weapon drawn for one frame, not in depth
    assert checks.unexplained_change(popped, d, K, poses) > threshold
    with_depth = d.copy()
    with_depth[3, 40:70, 80:120] = 0.5  # drawn into depth too: an object, not the scene's surface
    assert checks.unexplained_change(popped, with_depth, K, poses) < threshold / 4
    # a light switched on: the whole image brighter, explained by a gain
    lit = g.copy()
    lit[3:] = lit[3:] * 1.3 + 10
    assert checks.unexplained_change(lit, d, K, poses) < threshold / 4


def aliasing_wall(amp: float, period: float = 2.05, step: float = 2.6, n: int = 6, h: int = 72, w: int = 128):
    """A wall 5 m away in stripes finer than the pixels (``period`` px, swaying with the rows),
    point-sampled as a renderer without mip-maps does, under a camera sliding ``step`` px a frame:
    each frame samples the stripes at other phases, so they alias into a moire that does not move
    with the wall.  Grey frames, depth, K, poses."""
    f = 100.0
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    g = np.stack([128 + amp * np.sign(np.sin(2 * np.pi * (xs + step * t) / period + 0.7 * np.sin(ys / 9.0)))
                  for t in range(n)]).astype(np.float32)
    depth = np.full((n, h, w), 5.0, np.float32)
    K = np.stack([np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]])] * n)
    poses = np.stack([np.eye(4)] * n)
    poses[:, 0, 3] = step * 5.0 / f * np.arange(n)
    return g, depth, K, poses


def test_content_checks_see_past_an_aliasing_texture(monkeypatch):
    cfg = ScoringConfig()
    g, d, K, poses = aliasing_wall(20, step=3.3)
    for check, constant, threshold in (
        (checks.unexplained_change, "CHANGE_SMOOTH_RESIDUAL", cfg.unexplained_change.threshold),
        (checks.motion_mismatch, "MISMATCH_SMOOTH_ERROR", cfg.motion_mismatch.threshold),
    ):
        assert check(g, d, K, poses) < threshold / 4, check.__name__
        with monkeypatch.context() as m:  # without the blurred comparison the moire is new content
            m.setattr(checks, constant, -1.0)
            assert check(g, d, K, poses) > 10 * threshold, check.__name__


def foggy_ground(light: float, h: int = 72, w: int = 128, fog_m: float = 30.0):
    """Grey frame and depth of textured ground running from 2 m (bottom row) to 120 m (top row)
    under fog (grey 190, covering 63 % of a surface's colour at ``fog_m``) lit by ``light``."""
    rows = np.arange(h, dtype=np.float64)[:, None] * np.ones((1, w))
    z = 2.0 + 118.0 * (1.0 - rows / (h - 1)) ** 2
    albedo = cv2.GaussianBlur(np.random.default_rng(3).uniform(60, 250, (h, w)), (0, 0), 1.5)
    f = 1.0 - np.exp(-z / fog_m)
    return (light * albedo * (1 - f) + 190.0 * f).astype(np.float32), z.astype(np.float32)


def test_unexplained_change_takes_a_change_of_light_in_fog_for_the_scene(monkeypatch):
    bright, z = foggy_ground(1.0)
    dim, _ = foggy_ground(0.45)  # the light dims; the fog in front of distant ground does not
    grey, depth = np.stack([bright, bright, dim, dim]), np.stack([z] * 4)
    K = np.stack([np.array([[100.0, 0, 64], [0, 100.0, 36], [0, 0, 1]])] * 4)
    poses = np.stack([np.eye(4)] * 4)
    threshold = ScoringConfig().unexplained_change.threshold
    assert checks.unexplained_change(grey, depth, K, poses) < threshold / 4
    weapon = grey.copy()
    weapon[2:, 52:72, 70:100] = 25.0  # a dark weapon drawn as the light changes, over the nearest ground
    assert checks.unexplained_change(weapon, depth, K, poses) > 10 * threshold

    def gain_and_offset(pred, g, depth, static):
        a = np.vstack([pred[static], np.ones(int(static.sum()), np.float32)]).T
        gain, offset = np.linalg.lstsq(a, g[static], rcond=None)[0]
        return gain * pred + offset

    with monkeypatch.context() as m:  # one gain and offset leave the horizon unexplained
        m.setattr(checks, "light_fit", gain_and_offset)
        assert checks.unexplained_change(grey, depth, K, poses) > 10 * threshold


def test_unexplained_change_leaves_out_depth_that_moves_with_the_camera_against_any_frame():
    # a weapon with broad stripes drawn with its own depth (0.5 m) stays put while the camera slides: its
    # pixels carried into the frame before land 10 px away, partly on the weapon again, where the
    # depth agrees by chance and the stripes do not; carried into the frame after, they land on
    # the wall: not the scene's depth, so the clip's score leaves them out
    h, w, n = 72, 128, 4
    rng = np.random.default_rng(2)
    wall = cv2.GaussianBlur(rng.integers(0, 255, (h, w + 40)).astype(np.float32), (0, 0), 2) * 3 - 255
    grey = np.stack([wall[:, t : t + w] for t in range(n)]).clip(0, 255)  # a wall 5 m away, 1 px a frame
    depth = np.full((n, h, w), 5.0, np.float32)
    gun = (slice(40, 60), slice(60, 80))
    for t in range(n):
        grey[t][gun] = np.where((np.arange(20) // 4) % 2 == 0, 40.0, 220.0)[None, :]
        depth[t][gun] = 0.5 * 1.012 ** t  # bobbing 1.2 % a frame: not the same depth at the same pixel
    K = np.stack([np.array([[100.0, 0, w / 2], [0, 100.0, h / 2], [0, 0, 1]])] * n)
    poses = np.stack([np.eye(4)] * n)
    poses[:, 0, 3] = 0.05 * np.arange(n)
    threshold = ScoringConfig().unexplained_change.threshold
    # the pair alone takes the weapon for new content (the test can fail)
    assert checks.unexplained_map(grey[1], grey[2], depth[1], depth[2], K[1], K[2], poses[1], poses[2]).mean() > threshold
    assert checks.unexplained_change(grey, depth, K, poses) < threshold / 4


def test_frozen_depth_is_not_a_camera_running_over_open_ground():
    # the planar depth of a ground plane does not change when the camera moves along it
    n, h, w = 5, 36, 64
    K = np.stack([np.array([[50.0, 0, w / 2], [0, 50.0, h / 2], [0, 0, 1]])] * n)
    poses = np.stack([np.eye(4)] * n)
    poses[:, 2, 3] = 0.5 * np.arange(n)  # forward along +z, the ground 1.5 m below (+y is down)
    rows = np.arange(h, dtype=np.float64)[:, None] - h / 2
    ground = np.where(rows > 0.5, 1.5 * 50.0 / np.maximum(rows, 0.5), 0.0) * np.ones((1, w))
    depth = np.repeat(ground[None].astype(np.float32), n, axis=0)
    grey = np.stack([np.random.default_rng(t).uniform(0, 255, (h, w)).astype(np.float32) for t in range(n)])
    Kp, Pp = np.stack([K[:-1], K[1:]], 1), np.stack([poses[:-1], poses[1:]], 1)
    assert checks.frozen_depth(grey[:-1], grey[1:], depth[:-1], depth[1:], Kp, Pp) == 0.0


def turn_and_slide(n: int = 6, h: int = 72, w: int = 128, slide: float = 0.25):
    """A camera turning 1 degree a frame and sliding ``slide`` metres a frame sideways (OpenCV axes) before a
    textured wall 5 m away filling the lower half of the view, under a textured sky at infinity
    (a function of the viewing direction only, as a game's skybox or clouds are): grey frames,
    planar depth (0 = sky), K and poses."""
    K = np.array([[100.0, 0, w / 2], [0, 100.0, h / 2], [0, 0, 1]])
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = np.linalg.inv(K) @ np.stack([xs, ys, np.ones_like(xs)]).reshape(3, -1)
    grey, depth, poses = [], [], []
    for t in range(n):
        a = np.radians(1.0 * t)
        pose = np.eye(4)
        pose[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
        pose[0, 3] = slide * t
        d = pose[:3, :3] @ rays
        az, el = np.arctan2(d[0], d[2]), np.arctan2(d[1], np.hypot(d[0], d[2]))
        sky = 128 + 60 * np.sin(40 * az) * np.cos(30 * el) + 40 * np.sin(17 * az + 23 * el)
        s = (5.0 - pose[2, 3]) / d[2]  # the wall z = 5 (world)
        X = pose[:3, 3, None] + s * d
        wall = 128 + 80 * np.sin(8 * X[0]) * np.cos(8 * X[1])
        lower = (ys.ravel() >= h // 2)
        grey.append(np.where(lower, wall, sky).reshape(h, w))
        depth.append(np.where(lower, s * (rays[2]), 0.0).reshape(h, w))  # planar: distance along the optical axis
        poses.append(pose)
    return (np.clip(np.stack(grey), 0, 255).astype(np.uint8), np.stack(depth).astype(np.float32),
            np.stack([K] * n), np.stack(poses))


def test_depthless_content_sees_image_content_without_depth_but_not_a_textured_sky():
    grey, depth, K, poses = turn_and_slide()
    threshold = ScoringConfig().depthless_content.threshold
    # a correct capture: the textured sky has no depth, but moves as something infinitely far does
    assert checks.depthless_content(grey, depth > 0, K, poses) <= threshold / 10
    # depth from another view (a shadow map): most of the wall has no depth under it
    shadow = np.zeros_like(depth)
    shadow[:, 50:60, 60:70] = 20.0
    assert checks.depthless_content(grey, shadow > 0, K, poses) > 0.03
    # two such frames in the clip are enough
    two = depth.copy()
    two[3:5] = shadow[3:5]
    assert checks.depthless_content(grey, two > 0, K, poses) > 0.03
    # a HUD over the sky stays put while the camera turns: not the sky
    hud = grey.copy()
    rng = np.random.default_rng(3)
    hud[:, 5:15, 10:50] = rng.integers(0, 255, (10, 40))
    assert checks.depthless_content(hud, depth > 0, K, poses) > threshold
    # an untextured sky says nothing, whatever the depth
    plain = np.where(depth > 0, grey, 200).astype(np.uint8)
    assert checks.depthless_content(plain, depth > 0, K, poses) <= threshold / 10
    # a camera that only turns: the wall moves as the sky does, and cannot be told from it
    g2, d2, K2, turning = turn_and_slide(slide=0.0)
    assert checks.depthless_content(g2, shadow > 0, K2, turning) <= threshold / 10
