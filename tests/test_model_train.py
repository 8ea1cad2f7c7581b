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

torch.set_num_threads(2)


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
    the losses and the scores back from RUN/tensorboard.  (This dataset's held-out clips are single
    frames: no TAE; tests/test_train_logging.py scores a held-out video.)"""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recs = records(video_run)
    evals = [r for r in recs if "eval_abs_rel" in r]
    assert [r["step"] for r in evals] == [6, 12]
    for r in evals:
        assert 0 <= r["eval_abs_rel"] < 10 and 0 <= r["eval_delta1"] <= 1 and "eval_tae" not in r
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


def test_two_process_ddp_run_on_cpu(dataset, tmp_path):
    """torchrun with 2 ranks (gloo): both ranks step together and rank 0 writes the run."""
    import os
    import subprocess
    import sys

    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  sample_frames: 4\n  num_workers: 0\n  checkpoint_every: 2\n  batch_size: 1\n")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "dav_builder.model.cli",
         str(dataset), "--out", str(tmp_path / "ddp"), "--config", str(cfg), "--max-steps", "2", "-q"],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "x 2 ranks" in proc.stderr
    assert [r["step"] for r in records(tmp_path / "ddp")] == [1, 2]
    assert (tmp_path / "ddp" / "final" / "dav_model.json").is_file()
