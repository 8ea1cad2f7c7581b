"""The model's parts on tiny random models: RoPE, conditioning, widening, flow matching, inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dav_builder.model import flow
from dav_builder.model.config import ModelConfig, RunConfigError, load_run_config
from dav_builder.model.data import choose_frames, fit_size, split_train_val, stable_fraction
from dav_builder.model.interp import DepthInterpolator
from dav_builder.model.longvideo import coverage, plan_long_video, windows
from dav_builder.model.normalize import normalize_depth
from dav_builder.model.predictor import VideoDepthPredictor, align_ls, ensemble
from dav_builder.model.rope import apply_rope, rope_angles
from dav_builder.model.sampler import BucketBatchPlan, ClipRef
from dav_builder.model.video_depth import DepthAnyVideo, widen_conv_in

torch.set_num_threads(1)  # tiny models: threads only contend on a shared machine


@pytest.fixture(scope="module")
def model() -> DepthAnyVideo:
    torch.manual_seed(0)
    m = DepthAnyVideo.build(ModelConfig(window=6))
    with torch.no_grad():  # a random UNet's conv_out starts at zero; make the outputs informative
        for p in m.unet.conv_out.parameters():
            p.normal_(0, 0.1)
    return m.eval()


def rand_inputs(b=1, t=4, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, 3, h, w, generator=g) * 2 - 1, torch.rand(b, t, h, w, generator=g) * 2 - 1


# -- RoPE -------------------------------------------------------------------------------------

def test_rope_scores_depend_only_on_relative_position():
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(1, 1, 2, 8, generator=g), torch.randn(1, 1, 2, 8, generator=g)

    def score(p0, p1):
        cos, sin = rope_angles(torch.tensor([[p0, p1]]), 8, 10000.0)
        qr, kr = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return float((qr[0, 0, 0] * kr[0, 0, 1]).sum())

    assert score(3, 7) == pytest.approx(score(103, 107), rel=1e-4)
    assert score(3, 7) != pytest.approx(score(3, 9), rel=1e-3)
    cos, sin = rope_angles(torch.tensor([[0, 5]]), 8, 10000.0)
    assert torch.allclose(apply_rope(q, cos, sin).norm(dim=-1), q.norm(dim=-1), atol=1e-5)  # a rotation


def test_positions_shift_invariant_but_gaps_matter(model):
    rgb, depth = rand_inputs()
    cond, x = model.encode(rgb), model.encode_depth(depth)
    t = torch.full((1,), 0.5)
    v = lambda pos: model.velocity(x, cond, t, torch.tensor([pos]))
    base = v([0, 1, 2, 3])
    assert torch.allclose(base, v([10, 11, 12, 13]), atol=1e-4)  # only relative positions count
    assert not torch.allclose(base, v([0, 4, 8, 12]), atol=1e-4)  # dropped frames are seen as gaps


def test_temporal_position_embedding_and_added_time_ids_are_silenced(model):
    rgb, depth = rand_inputs()
    cond, x = model.encode(rgb), model.encode_depth(depth)
    t = torch.full((1,), 0.3)
    pos = torch.arange(4)[None]
    sample = torch.cat([x, cond], 2)
    ctx = torch.zeros(1, 1, model.unet.config.cross_attention_dim)
    with model.rope(pos):
        a = model.unet(sample, flow.timestep_input(t), ctx, torch.zeros(1, 3)).sample
        b = model.unet(sample, flow.timestep_input(t), ctx, torch.tensor([[7.0, 127.0, 0.02]])).sample
    assert torch.allclose(a, b)  # fps / motion bucket / noise-aug ids change nothing
    frozen = [n for n, p in model.unet.named_parameters() if not p.requires_grad]
    assert any("add_embedding" in n for n in frozen) and any("time_pos_embed" in n for n in frozen)


def test_widen_conv_in_zero_keeps_the_output():
    torch.manual_seed(0)
    conv = torch.nn.Module()
    conv.conv_in = torch.nn.Conv2d(8, 4, 3, padding=1)
    conv.register_to_config = lambda **kw: None
    x = torch.randn(1, 8, 6, 6)
    before = conv.conv_in(x)
    widen_conv_in(conv, 12, "zero")
    after = conv.conv_in(torch.cat([x, torch.randn(1, 4, 6, 6)], 1))
    assert conv.conv_in.in_channels == 12 and torch.allclose(before, after, atol=1e-6)


def test_interpolator_conv_in_is_duplicated_and_halved(model):
    interp = DepthInterpolator.from_video_model(model)
    w_old, w_new = model.unet.conv_in.weight, interp.unet.conv_in.weight
    assert w_new.shape[1] == 2 * w_old.shape[1]
    assert torch.allclose(w_new[:, :8], w_old / 2) and torch.allclose(w_new[:, 8:], w_old / 2)
    x = torch.randn(1, 8, 4, 4)
    assert torch.allclose(interp.unet.conv_in(torch.cat([x, x], 1)), model.unet.conv_in(x), atol=1e-5)


# -- flow matching ----------------------------------------------------------------------------

@pytest.mark.parametrize("steps", [1, 2, 3])
def test_euler_is_exact_for_the_straight_path(steps):
    g = torch.Generator().manual_seed(0)
    data, noise = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    out = flow.euler_sample(lambda x, t: noise - data, noise, steps, shift=3.0)  # the exact velocity
    assert torch.allclose(out, data, atol=1e-5)


def test_flow_schedule_and_target():
    s = flow.sample_sigma(1000, 3.0, torch.Generator().manual_seed(0))
    assert float(s.min()) > 0 and float(s.max()) < 1 and float(s.mean()) > 0.5  # shifted towards noise
    x, n = torch.ones(1, 2), torch.zeros(1, 2)
    assert torch.allclose(flow.interpolate(x, n, torch.tensor([0.25])), torch.full((1, 2), 0.75))
    assert torch.allclose(flow.velocity_target(x, n), -x)  # noise - data, as diffusers' scheduler
    sigmas, _ = flow.inference_sigmas(3, 3.0)
    assert float(sigmas[0]) == 1 and float(sigmas[-1]) == 0 and bool((sigmas[1:] < sigmas[:-1]).all())
    with pytest.raises(ValueError):
        flow.euler_sample(lambda x, t: x, n, 0, 3.0)


def test_the_diffusers_scheduler_steps_the_project_velocity():
    """One Euler step of FlowMatchEulerDiscreteScheduler with the model's output lands where ours does."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    g = torch.Generator().manual_seed(1)
    data, noise = torch.randn(1, 2, 4, 3, 3, generator=g), torch.randn(1, 2, 4, 3, 3, generator=g)
    sched = FlowMatchEulerDiscreteScheduler(shift=3.0)
    sched.set_timesteps(3)
    x = noise
    for t in sched.timesteps:
        x = sched.step(flow.velocity_target(data, noise), t, x).prev_sample
    assert torch.allclose(x, data, atol=1e-5)
    assert torch.allclose(flow.euler_sample(lambda x, t: flow.velocity_target(data, noise), noise, 3, 3.0), x)


def test_normalize_depth_uses_disparity_quantiles():
    depth = torch.linspace(1, 100, 10000).reshape(1, 1, 100, 100)
    depth[0, 0, 0, :10] = 0  # invalid
    out = normalize_depth(depth)
    assert float(out.min()) == -1 and float(out.max()) == 1
    valid = depth > 0
    disp = 1 / depth[valid]
    lo, hi = np.quantile(disp.numpy(), [0.02, 0.98])
    mid = float(((1 / 20 - lo) / (hi - lo)) * 2 - 1)
    i = int(torch.argmin((depth - 20).abs()))
    assert float(out.flatten()[i]) == pytest.approx(mid, abs=0.01)
    assert bool((out[~valid] == -1).all())  # no depth = far end
    # nearer is larger
    assert float(out[0, 0, 50, 0]) > float(out[0, 0, 90, 0])


# -- inference ---------------------------------------------------------------------------------

def test_save_and_load_round_trip(model, tmp_path):
    import json

    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel

    model.save_pretrained(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "unet" / "config.json").read_text())
    assert cfg["_class_name"] == "UNetSpatioTemporalRopeConditionModel"  # the released layout
    assert (tmp_path / "m" / "scheduler" / "scheduler_config.json").is_file()
    plain = UNetSpatioTemporalConditionModel.from_pretrained(tmp_path / "m" / "unet")
    assert plain.config.in_channels == 8 and not any(p.is_meta for p in plain.parameters())
    AutoencoderKLTemporalDecoder.from_pretrained(tmp_path / "m" / "vae")
    again = DepthAnyVideo.from_pretrained(tmp_path / "m").eval()
    rgb, _ = rand_inputs()
    pos = torch.tensor([[0, 2, 3, 7]])
    a = model.predict(rgb, pos, steps=2, generator=torch.Generator().manual_seed(3))
    b = again.predict(rgb, pos, steps=2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)  # the export reproduces the model exactly
    # plain diffusers: the same weights, temporal attention without positions (RoPE is not in the stock class)
    cond, x = model.encode(rgb), model.encode_depth(rgb[:, :, 0])
    ts = torch.full((1,), 400.0)
    ctx = torch.zeros(1, 1, plain.config.cross_attention_dim)
    stock = plain(torch.cat([x, cond], 2), ts, ctx, torch.zeros(1, 3)).sample
    assert torch.allclose(stock, model.velocity(x, cond, ts, torch.zeros(1, 4)), atol=1e-5)
    assert not torch.allclose(stock, model.velocity(x, cond, ts, pos), atol=1e-4)


def test_a_legacy_export_is_converted_to_the_official_velocity(model, tmp_path):
    import json

    model.save_pretrained(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "dav_model.json").read_text())
    del meta["config"]["velocity"]  # written before the convention was recorded: x - noise
    (tmp_path / "old" / "dav_model.json").write_text(json.dumps(meta))
    old = DepthAnyVideo.from_pretrained(tmp_path / "old")
    rgb, depth = rand_inputs()
    cond, x = model.encode(rgb), model.encode_depth(depth)
    ts, pos = torch.full((1,), 300.0), torch.arange(4)[None]
    assert old.config.velocity == "noise_minus_data"
    assert torch.allclose(old.velocity(x, cond, ts, pos), -model.velocity(x, cond, ts, pos), atol=1e-6)


def test_long_video_without_interpolator_is_bounded_and_covers_every_frame(model):
    pred = VideoDepthPredictor(model, device="cpu", steps=1)
    rgb = (np.random.default_rng(0).random((23, 16, 16, 3)) * 255).astype(np.uint8)
    out = pred(rgb)
    assert out.shape == (23, 16, 16) and np.isfinite(out).all()
    assert max(len(c[1]) for c in pred.calls) <= model.config.window
    assert sorted({i for c in pred.calls for i in c[1]}) == list(range(23))


@pytest.mark.parametrize("n", [19, 23, 42, 60, 100, 700])
def test_long_video_plan_covers_every_frame_once(n):
    plan = plan_long_video(n, video_window=32, interp_window=18)
    assert np.allclose(coverage(plan), 1.0)  # every frame predicted once (weights sum to 1)
    for call in plan.interp_calls:
        assert len(call.frames) == 18 and call.frames == tuple(range(call.frames[0], call.frames[0] + 18))
        assert call.frames[0] in plan.keyframes and call.frames[-1] in plan.keyframes
    assert all(len(c.frames) <= 32 for c in plan.key_calls)
    if len(plan.keyframes) <= 32:
        assert len(plan.key_calls) == 1  # the official cap: all keyframes in one joint call
    else:  # beyond it, overlapping joint calls blended over shared keyframes
        for a, b in zip(plan.key_calls, plan.key_calls[1:]):
            assert set(a.frames) & set(b.frames)


def test_windows_never_put_a_frame_in_three():
    for n in range(18, 200):
        w = windows(n, 18, 6)
        assert w[0][0] == 0 and w[-1][1] == n - 1
        for a, c in zip(w, w[2:]):
            assert a[1] < c[0]


def test_ensemble_undoes_scale_and_shift():
    rng = np.random.default_rng(0)
    ref = rng.random((3, 8, 8)).astype(np.float32)
    assert np.allclose(align_ls(ref * 3 + 2, ref), ref, atol=1e-5)
    noisy = [ref, ref * 0.5 + 0.1, ref * 2 - 1]
    assert np.allclose(ensemble(noisy), ref, atol=1e-5)


# -- data plumbing ----------------------------------------------------------------------------

def clips(n, bucket, frames=8):
    return [ClipRef(f"{bucket}-{i}", bucket, "s.tar", frames, 16, 16) for i in range(n)]


def test_bucket_plan_packs_one_bucket_per_batch_and_is_deterministic():
    cs = clips(7, "16x16-8f") + clips(20, "16x16-1f", frames=1)
    plan = BucketBatchPlan(cs, {"16x16-1f": 8}, 2, seed=3)
    batches = [plan.batch(i) for i in range(plan.per_epoch)]
    for b in batches:
        assert len({c.bucket for c in b.clips}) == 1
        assert len(b.clips) <= (8 if b.bucket == "16x16-1f" else 2)
    assert sorted(c.clip_id for b in batches for c in b.clips) == sorted(c.clip_id for c in cs)  # an epoch = every clip once
    again = BucketBatchPlan(cs, {"16x16-1f": 8}, 2, seed=3)
    assert [again.batch(i) for i in range(10)] == [plan.batch(i) for i in range(10)]
    r0, r1 = (BucketBatchPlan(cs, {"16x16-1f": 8}, 2, seed=3, rank=r, world_size=2) for r in (0, 1))
    assert r0.per_epoch == r1.per_epoch
    for i in range(2 * r0.per_epoch):  # every rank draws the same bucket at every micro-batch, its own clips
        a, b = r0.batch(i), r1.batch(i)
        assert a.bucket == b.bucket and len(a.clips) == len(b.clips) == r0.batch_sizes[a.bucket]
        assert not {c.clip_id for c in a.clips} & {c.clip_id for c in b.clips}
    ids = {c.clip_id for r in (r0, r1) for i in range(r.per_epoch) for c in r.batch(i).clips}
    assert ids == {c.clip_id for c in cs}  # an epoch still sees every clip


def test_batch_sizes_from_a_frames_x_pixels_budget():
    from dav_builder.model.sampler import budget_batch_sizes

    cs = [ClipRef("a", "64x64-32f", "s.tar", 32, 64, 64), ClipRef("b", "64x64-1f", "s.tar", 1, 64, 64),
          ClipRef("c", "32x32-16f", "s.tar", 16, 32, 32)]
    sizes = budget_batch_sizes(cs, 8 * 64 * 64 * 8, frames_of=lambda n: min(n, 8), size_of=lambda h, w: (h, w))
    assert sizes == {"64x64-32f": 8, "64x64-1f": 64, "32x32-16f": 32}
    tiny = budget_batch_sizes(cs, 100, frames_of=lambda n: n, size_of=lambda h, w: (h, w))
    assert set(tiny.values()) == {1}  # never below one clip


def test_frame_dropout_keeps_sorted_original_positions():
    rng = np.random.default_rng(0)
    for _ in range(50):
        f = choose_frames(32, 6, 0, rng)
        assert len(f) == 6 and f == sorted(set(f)) and 0 <= f[0] and f[-1] < 32
        g = choose_frames(32, 4, 2, rng)
        assert g[-1] - g[0] < 8
    assert choose_frames(5, 8, 0, rng) == [0, 1, 2, 3, 4]
    c = choose_frames(32, 18, 0, rng, contiguous=True)  # the interpolator's windows: stride 1
    assert c == list(range(c[0], c[0] + 18))


def test_split_and_sizes():
    cs = clips(100, "b")
    train, val = split_train_val(cs, 0.1)
    assert 3 <= len(val) <= 20 and not {c.clip_id for c in train} & {c.clip_id for c in val}
    assert split_train_val(cs, 0.1) == (train, val) and 0 <= stable_fraction("x") < 1
    assert fit_size(144, 256, 0.5, 8) == (72, 128, 72, 128)
    assert fit_size(100, 100, 1.0, 64) == (100, 100, 64, 64)


def test_run_config_layers(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("train:\n  lr: 0.01\n  batch_sizes: {a: 3}\n")
    child = tmp_path / "child.yaml"
    child.write_text("base: base.yaml\ntrain:\n  max_steps: 7\n")
    cfg = load_run_config(child, "tiny", {"train": {"seed": 5}})
    assert (cfg.train.lr, cfg.train.max_steps, cfg.train.seed, cfg.train.batch_size_for("a")) == (0.01, 7, 5, 3)
    (tmp_path / "bad.yaml").write_text("train:\n  learning_rate: 1\n")
    with pytest.raises(RunConfigError, match="learning_rate"):
        load_run_config(tmp_path / "bad.yaml")
    with pytest.raises(RunConfigError, match="init_from"):
        load_run_config(overrides={"model": {"task": "interp"}})


def test_a_short_interpolator_uses_its_own_window(model):
    interp = DepthInterpolator.from_video_model(model)
    interp.config.window = 5  # shorter than the released 18: the overlap shrinks with it
    pred = VideoDepthPredictor(model, device="cpu", steps=1, interpolator=interp)
    out = pred((np.random.default_rng(1).random((30, 16, 16, 3)) * 255).astype(np.uint8))
    assert out.shape == (30, 16, 16) and np.isfinite(out).all()
    windows_seen = [c[1] for c in pred.calls if c[0] == "interp"]
    assert windows_seen and all(w == list(range(w[0], w[0] + 5)) for w in windows_seen)
    assert sorted({i for w in windows_seen for i in w}) == list(range(30))
    assert all(len(c[1]) <= model.config.window for c in pred.calls if c[0] == "video")


def test_predictor_float_frames_rule(model):
    import pytest

    from dav_builder.model.predictor import as_uint8_frames

    u8 = (np.random.default_rng(1).random((3, 16, 16, 3)) * 255).astype(np.uint8)
    assert as_uint8_frames(u8) is u8
    f = u8.astype(np.float32) / 255.0
    assert np.array_equal(as_uint8_frames(f), u8)  # [0, 1] floats are scaled, not truncated to 0/1
    pred = VideoDepthPredictor(model, device="cpu", steps=1)
    np.testing.assert_allclose(pred(f), pred(u8), atol=1e-6)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\], got values in \[0, 25[45]\]"):
        as_uint8_frames(u8.astype(np.float32))
    with pytest.raises(ValueError, match="dtype int64"):
        as_uint8_frames(u8.astype(np.int64))
    with pytest.raises(ValueError, match="NaN"):
        as_uint8_frames(np.full((1, 2, 2, 3), np.nan))
