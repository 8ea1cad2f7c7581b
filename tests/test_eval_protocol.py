"""The evaluation protocol's switches against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from dav_builder.evaluation.protocol import (ClipScores, PRESETS, Protocol, aggregate, protocol_from, score_clip,
                                             valid_mask)
from dav_builder.evaluation.tae import tae, warp_official, warp_zbuffer

I3 = np.eye(3)


def poses(*xs_z) -> np.ndarray:
    out = []
    for x, z in xs_z:
        p = np.eye(4)
        p[0, 3], p[2, 3] = x, z
        out.append(p)
    return np.stack(out)


def clip(gt, pred, proto, lo=1e-3, hi=10.0, **kw):
    gt, pred = np.asarray(gt, float), np.asarray(pred, float)
    return score_clip("c", pred, gt, valid_mask(gt, None, lo, hi), proto, lo, hi, **kw)


def test_fit_per_sequence_keeps_flicker_and_per_frame_removes_it():
    gt = [[[1.0, 0.5]], [[1.0, 0.5]]]              # disparity 1, 2 in both frames
    pred = [[[1.0, 2.0]], [[2.0, 4.0]]]            # frame 1 predicted at twice the scale
    per_frame = clip(gt, pred, Protocol(fit="frame"))
    assert per_frame.abs_rel == pytest.approx([0, 0], abs=1e-12) and per_frame.delta1 == [1.0, 1.0]
    # one fit over the 4 points (x, 1/gt): (1,1) (2,2) (2,1) (4,2) -> s = 6/19, t = 15/19
    # aligned disparities 21/19, 27/19 | 27/19, 39/19 -> depths 19/21, 19/27 | 19/27, 19/39
    seq = clip(gt, pred, Protocol(fit="sequence"))
    assert seq.abs_rel[0] == pytest.approx((2 / 21 + 11 / 27) / 2)
    assert seq.abs_rel[1] == pytest.approx((8 / 27 + 1 / 39) / 2)
    # ratios: 21/19 = 1.11 and 27/38 -> 1.42 | 27/19 = 1.42 and 39/38 = 1.03
    assert seq.delta1 == [0.5, 0.5]


# aligned disparity x with gt disparity y = x + 0.05 * [1, -1, -1, 1]: the residual is orthogonal to
# (x, 1), so the least-squares fit is exactly s = 1, t = 0 and the errors are 0.05 / x per pixel
X = np.array([[[0.1, 0.3, 0.5, 0.7]]])
GT = 1 / (X + 0.05 * np.array([1, -1, -1, 1]))     # 6.667, 4, 2.222, 1.333 m


def test_fixed_dataset_caps_against_the_clip_s_own_range():
    wide = clip(GT, X, Protocol(caps="dataset"), hi=80.0)
    assert wide.abs_rel[0] == pytest.approx((0.5 + 1 / 6 + 0.1 + 1 / 14) / 4)
    assert wide.delta1[0] == 0.75                  # pixel 0: 10 m against 6.667 m
    capped = clip(GT, X, Protocol(caps="dataset"), hi=8.0)   # pixel 0 clipped to 8 m: 0.2
    assert capped.abs_rel[0] == pytest.approx((0.2 + 1 / 6 + 0.1 + 1 / 14) / 4)
    own = clip(GT, X, Protocol(caps="gt"), hi=80.0)           # clipped to 6.667 m: exact
    assert own.abs_rel[0] == pytest.approx((0 + 1 / 6 + 0.1 + 1 / 14) / 4)


def test_ground_truth_outside_the_caps_is_not_scored():
    gt = GT.copy()
    gt[0, 0, 0] = 90.0                             # beyond an 80 m cap: not valid
    v = valid_mask(gt, None, 1e-3, 80.0)
    assert v.sum() == 3 and not v[0, 0, 0]


def test_frame_and_clip_averaging():
    a = ClipScores("a", [0.1], [1.0], 0.2, 2)                  # 2 frames, one with ground truth
    b = ClipScores("b", [0.3, 0.3, 0.6], [0.5, 0.5, 0.5], 0.5, 3)
    f = aggregate([a, b], "frame")
    assert f.abs_rel == pytest.approx((0.1 + 0.3 + 0.3 + 0.6) / 4)
    assert f.delta1 == pytest.approx((1 + 1.5) / 4)
    assert f.tae == pytest.approx((0.2 * 2 + 0.5 * 3) / 5)    # weighted by clip length, as the official code
    c = aggregate([a, b], "clip")
    assert c.abs_rel == pytest.approx((0.1 + 0.4) / 2)
    assert c.delta1 == pytest.approx(0.75) and c.tae == pytest.approx(0.35)
    assert (f.clips, f.frames) == (2, 5)


def test_official_tae_rounds_half_to_even_and_keeps_one_point_per_pixel():
    # static camera, K = identity: the official code puts pixel j at x = j + 0.5, which rounds to
    # 0, 2, 2, 4 (out of view); pixel 2 keeps the last point written (source pixel 2)
    a = np.array([[1.0, 2.0, 3.0, 4.0]])
    b = np.ones((1, 4))
    m = np.ones((1, 4), bool)
    assert warp_official(a, m, np.eye(4), m, np.eye(4)).tolist() == [[1.0, 0.0, 3.0, 0.0]]
    depth, valid = np.stack([a, b]), np.ones((2, 1, 4), bool)
    Ks, still = np.stack([I3, I3]), poses((0, 0), (0, 0))
    # a -> b: pixels 0 and 2 compared: (0 + |1 - 3| / 1) / 2 = 1; b -> a: (0 + |3 - 1| / 3) / 2 = 1/3
    assert tae(depth, valid, Ks, still, "official") == pytest.approx((1 + 1 / 3) / 2)
    # z-buffer form: every pixel onto itself: a -> b (0+1+2+3)/4, b -> a (0 + 1/2 + 2/3 + 3/4)/4
    assert tae(depth, valid, Ks, still, "zbuffer") == pytest.approx((1.5 + (0.5 + 2 / 3 + 0.75) / 4) / 2)


def test_zbuffer_keeps_the_nearest_of_two_points_on_one_pixel():
    # K = identity; the camera steps 3 m left: u_b = u_a + 3 / z.  Source pixel 0 (1 m) and pixel 1
    # (1.5 m) both land on pixel 3; the nearer one is kept (the official form keeps the last written)
    d = np.array([[1.0, 1.5, 5.0, 5.0]])
    m = np.array([[True, True, False, False]])
    out = warp_zbuffer(d, m, I3, np.eye(4), np.ones((1, 4), bool), I3, poses((-3, 0))[0])
    assert out[0, 3] == 1.0 and np.isinf(out[0, :3]).all()


@pytest.mark.parametrize("form", ["official", "zbuffer"])
def test_tae_of_a_camera_moving_towards_a_wall(form):
    K = np.array([[20.0, 0, 16], [0, 20.0, 12], [0, 0, 1]])
    valid, Ks, ps = np.ones((2, 24, 32), bool), np.stack([K, K]), poses((0, 0), (0, 1))
    exact = np.stack([np.full((24, 32), 5.0), np.full((24, 32), 4.0)])
    assert tae(exact, valid, Ks, ps, form) == pytest.approx(0, abs=1e-12)
    wrong = np.stack([np.full((24, 32), 5.0), np.full((24, 32), 4.4)])
    # forward: 5 m lands at 4 m, against 4.4 -> 0.4 / 4.4; backward: 4.4 m lands at 5.4 m, against 5 -> 0.4 / 5
    # (the official form stores the warped depth as float32, as the released code does)
    assert tae(wrong, valid, Ks, ps, form) == pytest.approx((0.4 / 4.4 + 0.4 / 5) / 2, rel=1e-6)


def test_tae_in_score_clip_only_with_poses_and_as_switched():
    K = np.array([[20.0, 0, 16], [0, 20.0, 12], [0, 0, 1]])
    gt = np.stack([np.full((24, 32), 5.0), np.full((24, 32), 4.0)])
    gt[:, :, :16] += 1
    pred = 1 / gt
    kw = {"K": np.stack([K, K]), "cam_to_world": poses((0, 0), (0, 1))}
    assert clip(gt, pred, PRESETS["paper"], **kw).tae is not None
    assert clip(gt, pred, PRESETS["paper"]).tae is None
    assert clip(gt, pred, PRESETS["paper"].with_(tae="none"), **kw).tae is None


def test_protocol_strings():
    assert protocol_from("paper") == PRESETS["paper"]
    assert protocol_from("paper,fit=frame,tae=zbuffer") == Protocol("frame", "frame", "dataset", "zbuffer")
    assert protocol_from("average=clip").average == "clip"
    with pytest.raises(ValueError, match="unknown protocol preset"):
        protocol_from("nope")
    with pytest.raises(ValueError, match="fit must be one of"):
        protocol_from("fit=pixel")
