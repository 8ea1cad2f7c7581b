"""AbsRel, delta1 and TAE against cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from dav_builder.model.metrics import abs_rel, align_disparity, delta1, evaluate_clip, tae

K = np.array([[20.0, 0, 16], [0, 20.0, 12], [0, 0, 1]])


def pose(z: float = 0.0, x: float = 0.0) -> np.ndarray:
    p = np.eye(4)
    p[0, 3], p[2, 3] = x, z
    return p


def test_abs_rel_and_delta1_by_hand():
    gt = np.array([1.0, 2.0, 4.0, 10.0])
    pred = np.array([1.1, 2.0, 5.2, 10.0])
    valid = np.ones(4, bool)
    assert abs_rel(pred, gt, valid) == pytest.approx((0.1 + 0 + 0.3 + 0) / 4)
    assert delta1(pred, gt, valid) == pytest.approx(3 / 4)  # 5.2 / 4 = 1.3 >= 1.25


def test_alignment_recovers_an_affine_disparity():
    rng = np.random.default_rng(0)
    gt = rng.uniform(1, 50, (3, 6, 8))
    pred = 0.3 * (1 / gt) - 0.7  # any scale and shift of the true disparity
    disp, s, t = align_disparity(pred, gt, gt > 0)
    assert np.allclose(disp, 1 / gt) and s == pytest.approx(1 / 0.3) and t == pytest.approx(0.7 / 0.3)
    m = evaluate_clip(pred, gt)
    assert m.abs_rel == pytest.approx(0, abs=1e-9) and m.delta1 == 1.0


def test_invalid_pixels_are_ignored():
    gt = np.random.default_rng(1).uniform(2, 9, (2, 4, 4))
    gt[:, 0, 0] = 0
    pred = 2 * np.where(gt > 0, 1 / np.maximum(gt, 1e-9), 0) + 1
    pred[:, 0, 0] = 1000.0  # garbage where there is no ground truth
    m = evaluate_clip(pred, gt)
    assert m.abs_rel == pytest.approx(0, abs=1e-9) and m.delta1 == 1.0
    with pytest.raises(ValueError):
        evaluate_clip(pred, np.zeros_like(gt))


def test_tae_zero_for_consistent_depth_of_a_static_camera():
    depth = np.full((3, 24, 32), 5.0)
    valid = np.ones_like(depth, bool)
    assert tae(depth, valid, np.stack([K] * 3), np.stack([pose()] * 3)) == pytest.approx(0)


def test_tae_by_hand_for_a_camera_moving_towards_a_wall():
    # a fronto-parallel wall 5 m ahead; the camera steps 1 m forward, so the wall is 4 m away in frame 1
    valid = np.ones((2, 24, 32), bool)
    Ks, poses = np.stack([K, K]), np.stack([pose(0), pose(1)])
    exact = np.stack([np.full((24, 32), 5.0), np.full((24, 32), 4.0)])
    assert tae(exact, valid, Ks, poses) == pytest.approx(0, abs=1e-12)
    wrong = np.stack([np.full((24, 32), 5.0), np.full((24, 32), 4.4)])
    # forward: frame 0's 5 m lands at 4 m in frame 1, compared with 4.4 -> 0.4 / 4.4
    # backward: frame 1's 4.4 m lands at 5.4 m in frame 0, compared with 5 -> 0.4 / 5
    assert tae(wrong, valid, Ks, poses) == pytest.approx((0.4 / 4.4 + 0.4 / 5) / 2, rel=1e-9)


def test_tae_averages_over_adjacent_pairs():
    valid = np.ones((3, 24, 32), bool)
    Ks, poses = np.stack([K] * 3), np.stack([pose()] * 3)
    depth = np.stack([np.full((24, 32), v) for v in (5.0, 5.0, 6.0)])
    # pair (0, 1): 0; pair (1, 2): (1/6 + 1/5) / 2
    assert tae(depth, valid, Ks, poses) == pytest.approx((0 + (1 / 6 + 1 / 5) / 2) / 2)


def test_evaluate_clip_reports_tae_only_with_poses():
    gt = np.stack([np.full((24, 32), 5.0), np.full((24, 32), 4.0)])
    gt[:, :, :16] += 1.0  # two depths so the alignment is determined
    pred = 1 / gt
    m = evaluate_clip(pred, gt, np.stack([K, K]), np.stack([pose(0), pose(1)]))
    assert m.tae is not None and m.tae < 0.1  # (the step between the two halves moves across the seam)
    assert evaluate_clip(pred, gt).tae is None
