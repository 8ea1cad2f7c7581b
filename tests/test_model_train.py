"""dav-train end to end: the tiny preset on a dataset built from engine captures (CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dav_builder.model import train as train_mod
from dav_builder.model.config import load_run_config
from dav_builder.model.train import TrainError, train
from dav_builder.pipeline.build import build_dataset
from dav_builder.pipeline.config import load_config
from dav_builder.render.engine import RenderConfig, render_captures

torch.set_num_threads(1)  # tiny models: threads only contend on a shared machine


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train")
    render_captures(root / "captures", RenderConfig(scenes=2, frames=40, width=64, height=48, seed=11), progress=False)
    cfg = load_config(overrides={"clips": {"lengths": [12, 1]}, "run": {"executor": "local"}})
    build_dataset([root / "captures"], root / "dataset", cfg, progress=False, say=lambda s: None)
    return root / "dataset"


def config(**train):
    t = {"max_steps": 12, "sample_frames": 4, "scale": 1.0, "batch_size": 2, "val_every": 6, "checkpoint_every": 4,
         "num_workers": 0, "val_batches": 2, "val_fraction": 0.2}
    t.update(train)
    return load_run_config(preset="tiny", overrides={"train": t})


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def video_run(dataset, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "video"
    train(dataset, run, config(num_workers=1), progress=False, echo=lambda s: None)
    return run


def test_tiny_preset_trains_and_its_loss_falls(video_run):
    recs = records(video_run)
    assert [r["step"] for r in recs] == list(range(1, 13))
    losses = [r["loss"] for r in recs]
    assert sum(losses[-3:]) / 3 < 0.6 * sum(losses[:3]) / 3, losses
    assert "val_loss" in recs[-1] and "val_loss" in recs[5]
    # every batch came from one bucket; single frames (1-frame clips) mix in with videos
    assert all(r["frames"] > 0 and r["bucket"].endswith("f") for r in recs)
    buckets = {r["bucket"].rsplit("-", 1)[1] for r in recs}
    assert "1f" in buckets and buckets - {"1f"}, buckets


def test_losses_and_held_out_scores_reach_tensorboard(video_run):
    """Every validation pass (steps 6, 12) also scores held-out clips; TensorBoard's own reader reads
    the losses and the scores back from RUN/tensorboard.  (Which clips are held out depends on which
    the filters keep: TAE appears only when a held-out clip is a video; tests/test_train_logging.py
    scores a held-out video.)"""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recs = records(video_run)
    evals = [r for r in recs if "eval_abs_rel" in r]
    assert [r["step"] for r in evals] == [6, 12]
    for r in evals:
        assert 0 <= r["eval_abs_rel"] < 10 and 0 <= r["eval_delta1"] <= 1 and r.get("eval_tae", 0.0) >= 0
    acc = EventAccumulator(str(video_run / "tensorboard"))
    acc.Reload()
    assert {"train/loss", "train/lr", "val/loss", "eval/abs_rel", "eval/delta1"} <= set(acc.Tags()["scalars"])
    assert [(e.step, round(e.value, 5)) for e in acc.Scalars("train/loss")] == [(r["step"], round(r["loss"], 5)) for r in recs]
    assert [(e.step, round(e.value, 5)) for e in acc.Scalars("eval/abs_rel")] == \
        [(r["step"], round(r["eval_abs_rel"], 5)) for r in evals]


def test_the_exported_model_loads_with_diffusers(video_run):
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel

    from dav_builder.model.video_depth import DepthAnyVideo

    unet = UNetSpatioTemporalConditionModel.from_pretrained(video_run / "final" / "unet")
    AutoencoderKLTemporalDecoder.from_pretrained(video_run / "final" / "vae")
    assert unet.config.in_channels == 8
    model = DepthAnyVideo.from_pretrained(video_run / "final")
    out = model.predict(torch.zeros(1, 3, 3, 48, 64), torch.tensor([[0, 2, 5]]), steps=1)
    assert out.shape == (1, 3, 48, 64) and torch.isfinite(out).all()
    assert json.loads((video_run / "final" / "train_info.json").read_text())["step"] == 12


class Crash(RuntimeError):
    pass


def test_resume_continues_exactly(dataset, video_run, tmp_path, monkeypatch):
    run = tmp_path / "crashy"
    real_save = train_mod.save_checkpoint

    def save_then_crash(run_dir, step, state, keep):
        path = real_save(run_dir, step, state, keep)
        if step == 8:
            raise Crash("killed after the step-8 checkpoint")
        return path

    monkeypatch.setattr(train_mod, "save_checkpoint", save_then_crash)
    with pytest.raises(Crash):
        train(dataset, run, config(), progress=False, echo=lambda s: None)
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    with pytest.raises(TrainError, match="--resume"):
        train(dataset, run, config(), progress=False, echo=lambda s: None)
    result = train(dataset, run, config(), resume=True, progress=False, echo=lambda s: None)
    assert len(result.losses) == 4  # steps 9..12 only
    ref = [(r["step"], r["loss"], r.get("val_loss")) for r in records(video_run)]
    got = [(r["step"], r["loss"], r.get("val_loss")) for r in records(run)]
    assert got == ref  # same losses, each step logged once
    again = train(dataset, run, config(), resume=True, progress=False, echo=lambda s: None)
    assert again.skipped


def test_interpolation_model_fine_tunes_from_the_video_run(dataset, video_run, tmp_path):
    from dav_builder.model.interp import DepthInterpolator

    cfg = load_run_config(preset="tiny", overrides={
        "model": {"task": "interp"},
        "train": {"init_from": str(video_run), "max_steps": 3, "sample_frames": 4, "scale": 1.0,
                  "num_workers": 0, "val_every": 0, "checkpoint_every": 3}})
    result = train(dataset, tmp_path / "interp", cfg, progress=False, echo=lambda s: None)
    assert result.step == 3 and all(l == l for l in result.losses)
    model = DepthInterpolator.from_pretrained(tmp_path / "interp" / "final")
    assert model.unet.config.in_channels == 16


def test_cli_trains_and_evaluates(dataset, video_run, tmp_path, capsys):
    from dav_builder.model.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  sample_frames: 4\n  scale: 1.0\n  num_workers: 0\n  checkpoint_every: 2\n")
    with pytest.raises(SystemExit) as e:
        main([str(dataset), "--out", str(tmp_path / "run"), "--config", str(cfg), "--max-steps", "2", "-q"])
    assert e.value.code == 0
    assert [json.loads(x)["step"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    with pytest.raises(SystemExit) as e:
        main(["eval", str(video_run), str(dataset), "--out", str(tmp_path / "e.json"), "--max-clips", "2", "-q"])
    assert e.value.code == 0
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["overall"]["clips"] == 2 and len(report["clips"]) == 2
    for row in report["clips"]:
        assert 0 <= row["abs_rel"] < 10 and 0 <= row["delta1"] <= 1
        assert (row["tae"] is not None) == (row["frames"] > 1)  # TAE needs frame pairs
    with pytest.raises(SystemExit) as e:
        main([str(dataset), "--out", str(tmp_path / "run"), "--max-steps", "2", "-q"])
    assert e.value.code == 2 and "--resume" in capsys.readouterr().err


def _torchrun(dataset, out, cfg, steps, *extra):
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "dav_builder.model.cli",
         str(dataset), "--out", str(out), "--config", str(cfg), "--max-steps", str(steps), "-q", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)


def _descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (Linux /proc): torchrun starts its workers in sessions of their own."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def test_two_rank_run_draws_per_rank_and_resumes_exactly_after_a_kill(dataset, tmp_path):
    """torchrun with 2 ranks (gloo): the ranks draw different noise levels, rank 0 writes the run, and a run
    killed (SIGKILL to torchrun and every rank) after a checkpoint resumes to the same losses."""
    import os
    import signal
    import time

    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  sample_frames: 4\n  num_workers: 0\n  checkpoint_every: 2\n  batch_size: 1\n"
                   "  val_every: 0\n  val_batches: 0\n")
    steps = 16  # enough steps after the first checkpoint for the kill to land mid-run
    ref = _torchrun(dataset, tmp_path / "ref", cfg, steps)  # the uninterrupted run, alongside the killed one
    crashy = tmp_path / "crashy"
    proc = _torchrun(dataset, crashy, cfg, steps)
    latest = crashy / "checkpoints" / "latest"
    deadline = time.time() + 300
    while not (latest.is_file() and latest.read_text().strip()) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    for pid in _descendants(proc.pid) + [proc.pid]:  # a hard kill of every rank and of torchrun
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.communicate()
    assert not (crashy / "final").exists(), "the run ended before it could be killed"
    _, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err[-3000:]
    assert "x 2 ranks" in err
    recs = records(tmp_path / "ref")
    assert [r["step"] for r in recs] == list(range(1, steps + 1))
    assert all(len(r["sigma"]) == 2 and r["sigma"][0] != r["sigma"][1] for r in recs), [r["sigma"] for r in recs]
    assert (tmp_path / "ref" / "final" / "dav_model.json").is_file()

    again = _torchrun(dataset, crashy, cfg, steps, "--resume")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-3000:]
    assert "resuming at step" in err
    got = [(r["step"], r["loss"], r["sigma"]) for r in records(crashy)]
    assert got == [(r["step"], r["loss"], r["sigma"]) for r in recs]


@pytest.mark.parametrize("task", ["video", "interp"])
def test_training_starts_from_the_released_folder(dataset, tmp_path, task):
    """train.init_from: the released layout as it is (video: unet/ and vae/; interp: unet_interp/)."""
    from released_fixture import save_released_layout

    from dav_builder.model.interp import DepthInterpolator
    from dav_builder.model.video_depth import DepthAnyVideo

    released = save_released_layout(tmp_path / "depth-any-video")
    cfg = load_run_config(preset="tiny", overrides={
        "model": {"task": task, "window": 6},
        "train": {"init_from": str(released), "max_steps": 2, "sample_frames": 4, "scale": 1.0, "num_workers": 0,
                  "val_every": 0, "checkpoint_every": 2, "ema_decay": 0, "lr": 0.0, "warmup_steps": 0}})
    result = train(dataset, tmp_path / "run", cfg, progress=False, echo=lambda s: None)
    assert result.step == 2 and all(l == l for l in result.losses)
    cls, sub = (DepthAnyVideo, "unet") if task == "video" else (DepthInterpolator, "unet_interp")
    start = cls.from_pretrained(released, subfolder=sub)
    out = cls.from_pretrained(tmp_path / "run" / "final")
    assert out.unet.config.in_channels == (8 if task == "video" else 16)
    # lr 0: the export is the released network itself, re-saved in the same layout
    for (name, a), (_, b) in zip(start.unet.state_dict().items(), out.unet.state_dict().items()):
        assert torch.equal(a, b), name


def test_frame_dropout_is_salted_by_the_rank(dataset):
    from dav_builder.model.data import MicroBatches, kept_clips
    from dav_builder.model.sampler import BucketBatchPlan

    clips = [c for c in kept_clips(dataset) if c.num_frames > 4]
    plan = BucketBatchPlan(clips, {}, 1, seed=0)  # the same clips for both, to compare the dropout alone
    r0, r1 = (MicroBatches(dataset, plan, 4, 0, 1.0, 16, 0, 8, rank=r) for r in (0, 1))
    a, b = [r0[i].frame_indices for i in range(4)], [r1[i].frame_indices for i in range(4)]
    assert all(x.shape == y.shape for x, y in zip(a, b))
    assert any(not torch.equal(x, y) for x, y in zip(a, b))
    assert all(torch.equal(x, y) for x, y in zip(a, [r0[i].frame_indices for i in range(4)]))  # deterministic
