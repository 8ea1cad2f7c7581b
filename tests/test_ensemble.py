"""Ensembling: the alignment maths by hand, and ``VideoDepthPredictor(ensemble=N)`` on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dav_builder.model.ensemble import align_members, ensemble, fit_to


def test_fit_to_by_hand():
    assert fit_to(np.array([0.0, 1.0, 2.0]), np.array([1.0, 3.0, 5.0])) == pytest.approx((2.0, 1.0))
    assert fit_to(np.full(4, 2.0), np.full(4, 5.0)) == (1.0, 3.0)        # a flat member is only shifted


def test_members_with_their_own_scale_and_shift_agree_after_alignment():
    rng = np.random.default_rng(0)
    truth = rng.random((3, 8, 8))
    members = np.stack([truth * 2 + 1, truth * 0.5 - 0.2, truth * 1.0, truth * 3 + 0.4, truth * 1.5])
    aligned = align_members(members)
    assert np.allclose(aligned, aligned[0], atol=1e-9)                 # one common scale and shift
    out = ensemble(members)
    s, t = fit_to(truth, out)
    assert np.allclose(truth * s + t, out, atol=1e-6) and out.dtype == np.float32


def test_median_ignores_a_member_that_went_astray():
    # three members agree on a ramp; a fourth has garbage in one corner: the median keeps the ramp there
    ramp = np.tile(np.linspace(0, 1, 8), (8, 1))
    bad = ramp.copy()
    bad[:2, :2] = 5.0
    out = ensemble([ramp, ramp * 2 + 1, ramp * 0.5, bad])
    mean = ensemble([ramp, ramp * 2 + 1, ramp * 0.5, bad], reduce="mean")

    def corner_error(x):
        s, t = fit_to(ramp, x)
        return np.abs(ramp * s + t - x)[:2, :2].max() / (x.max() - x.min())

    assert corner_error(out) < 0.05 and corner_error(mean) > 3 * corner_error(out)


def test_one_member_is_returned_as_is():
    x = np.arange(6.0).reshape(2, 3)
    assert np.array_equal(ensemble([x]), x.astype(np.float32))
    with pytest.raises(ValueError):
        ensemble([])


def test_predictor_ensemble_of_noise_draws():
    from dav_builder.model.config import ModelConfig
    from dav_builder.model.predictor import VideoDepthPredictor
    from dav_builder.model.video_depth import DepthAnyVideo

    torch.manual_seed(0)
    model = DepthAnyVideo.build(ModelConfig())
    rgb = np.random.default_rng(1).integers(0, 255, (2, 16, 16, 3), dtype=np.uint8)
    single = VideoDepthPredictor(model, "cpu", steps=1)
    members = [single(rgb, seed=s) for s in range(2)]
    assert not np.allclose(members[0], members[1])                    # each member is another noise draw
    two = VideoDepthPredictor(model, "cpu", steps=1, ensemble=2)
    out = two(rgb)
    assert out.shape == (2, 16, 16) and np.allclose(out, ensemble(members), atol=1e-6)
    assert [frames for _, frames in two.calls] == [[0, 1], [0, 1]]   # two draws of the one window
    with pytest.raises(ValueError):
        VideoDepthPredictor(model, "cpu", ensemble=0)
