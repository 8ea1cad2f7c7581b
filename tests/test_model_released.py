"""The released Depth Any Video layout: loaded as it is, and predicting what the paper's pipeline predicts.

A tiny random model is saved in exactly the released layout (tests/released_fixture.py); the reference is
the paper's inference steps written out plainly on the same files (diffusers' scheduler, rotary temporal
attention in the paper's matrix form), with the same noise.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dav_builder.model import flow
from dav_builder.model.predictor import VideoDepthPredictor
from dav_builder.model.video_depth import DepthAnyVideo
from released_fixture import ReferencePipeline, save_released_layout

torch.set_num_threads(1)  # tiny models: threads only contend on a shared machine


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return save_released_layout(tmp_path_factory.mktemp("released") / "depth-any-video")


@pytest.fixture(scope="module")
def reference(released):
    return ReferencePipeline(released)


@pytest.fixture(scope="module")
def predictor(released):
    return VideoDepthPredictor.from_pretrained(released, device="cpu", steps=3)


def frames(n, h=16, w=16, seed=0):
    return (np.random.default_rng(seed).random((n, h, w, 3)) * 255).astype(np.uint8)


def as_reference_input(rgb):
    return torch.from_numpy(rgb).permute(0, 3, 1, 2)[None].float() / 255.0 * 2 - 1


def test_official_sigmas():
    for steps, want in [(1, [1, 0]), (2, [1, 0.0089, 0]), (3, [1, 0.751, 0.0089, 0])]:
        sigmas, timesteps = flow.inference_sigmas(steps, 3.0)
        assert sigmas.tolist() == pytest.approx(want, abs=1e-3)
        assert torch.allclose(timesteps, sigmas[:-1] * 1000)


def test_released_folder_loads_as_it_is_with_nothing_uninitialised(released):
    assert not (released / "dav_model.json").exists()
    model = DepthAnyVideo.from_pretrained(released)
    assert model.config.flow_shift == 3.0 and model.config.window == 32 and model.config.preset == "released"
    for name, p in model.unet.named_parameters():
        assert not p.is_meta and torch.isfinite(p).all(), name
        if name.startswith("add_embedding.") or ".time_pos_embed." in name:
            assert not p.any() and not p.requires_grad, name
    pred = VideoDepthPredictor.from_pretrained(released, device="cpu")
    assert pred.interpolator is not None and pred.interp_window == 18
    assert pred.interpolator.unet.config.in_channels == 16


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_single_window_equals_the_official_pipeline(released, reference, predictor, steps):
    rgb = frames(5)
    predictor.steps = steps
    torch.manual_seed(7)
    want = reference.disparity(reference.single(as_reference_input(rgb), steps))[0].numpy()
    got = predictor(rgb, seed=7)
    assert got.shape == (5, 16, 16)
    assert np.abs(got - want).max() < 1e-4, np.abs(got - want).max()
    assert want.std() > 1e-3  # the comparison is not between constants


def test_keyframes_and_interpolation_equal_the_official_pipeline(reference, predictor):
    n = 42  # windows 0-17, 12-29, 24-41: the official plan reaches the last frame
    rgb = frames(n, seed=1)
    predictor.steps = 2
    torch.manual_seed(3)
    want, first, end = reference.long(as_reference_input(rgb), 2)
    predictor.calls.clear()
    got = predictor.latents(rgb, seed=3)
    assert (first, end) == (1, n - 1)
    assert got.shape[0] == n and want.shape[1] == end - first
    err = (got[first:end] - want[0]).abs().max()
    assert err < 1e-4 * max(1.0, float(want.abs().max())), err
    video = [c for c in predictor.calls if c[0] == "video"]
    assert video == [("video", [0, 12, 17, 24, 29, 41])]  # one joint call, true indices


def test_scoring_depth_path_accepts_the_released_folder(released):
    from dav_builder.filters.models import load_depth_model

    model = load_depth_model(str(released), steps=1, device="cpu")
    out = model(frames(4), [0, 3, 6, 9])
    assert out.shape == (4, 16, 16) and np.isfinite(out).all()


@pytest.mark.parametrize("n, window", [(23, 16), (60, 32), (700, 32)])
def test_long_videos_predict_every_frame_once_with_joint_keyframes(predictor, n, window):
    from dav_builder.model.longvideo import coverage, plan_long_video

    predictor.steps, predictor.window, predictor.interp_batch = 1, window, 64
    try:
        predictor.calls.clear()
        out = predictor(frames(n, h=8, w=8, seed=n))
    finally:
        predictor.window, predictor.interp_batch = 32, 4
    assert out.shape == (n, 8, 8) and np.isfinite(out).all()
    plan = plan_long_video(n, window, 18)
    assert np.allclose(coverage(plan), 1.0)
    video = [c[1] for c in predictor.calls if c[0] == "video"]
    interp = [c[1] for c in predictor.calls if c[0] == "interp"]
    keys = sorted({i for c in video for i in c})
    assert keys == list(plan.keyframes)
    assert all(len(c) <= window for c in video)
    if len(keys) <= window:
        assert len(video) == 1  # one joint call over every keyframe, at their true indices
    else:
        assert all(set(a) & set(b) for a, b in zip(video, video[1:]))  # overlapping joint calls
    # the interpolator only sees windows of 18 consecutive frames, each between two keyframes
    assert all(c == list(range(c[0], c[0] + 18)) and c[0] in keys and c[-1] in keys for c in interp)
    assert sorted({i for c in interp for i in c}) == list(range(n))
