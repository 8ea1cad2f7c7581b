"""Checkpoints without pickle: exact round trips, checksums, fallback to an intact checkpoint."""

from __future__ import annotations

import json
import logging
import os
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dav_builder.model.checkpoint import (
    CHECKSUMS,
    STATE,
    TENSORS,
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
)
from dav_builder.model.config import load_run_config
from dav_builder.model.train import train
from dav_builder.pipeline.build import build_dataset
from dav_builder.pipeline.config import load_config
from dav_builder.render.engine import RenderConfig, render_captures

torch.set_num_threads(2)


def sample_state() -> dict:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    sched.step()
    return {"step": 7, "unet": {k: v.clone() for k, v in model.state_dict().items()}, "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "scaler": {}, "ema": {"decay": 0.99, "shadow": [torch.ones(2)]},
            "rng": rng_state(), "config": {"a": (1, 2), "b": [0.5, float("nan"), float("-inf")], "c": None},
            "odd": {1: "int key", (2, 3): "tuple key", "__tensor__": "a key that looks like a tag"},
            "scalar": torch.tensor(2.5), "empty": torch.zeros(0), "half": torch.randn(3).half()}


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, float) and np.isnan(a):
        return isinstance(b, float) and np.isnan(b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def test_round_trip_is_exact_and_holds_no_pickle(tmp_path):
    state = sample_state()
    path = save_checkpoint(tmp_path, 7, state, keep=2)
    assert sorted(p.name for p in path.iterdir()) == sorted([CHECKSUMS, STATE, TENSORS])
    json.loads((path / STATE).read_text())  # plain JSON
    back = load_checkpoint(path)
    assert same(state, back)
    # the RNG states restore: the same numbers come out
    from dav_builder.model.checkpoint import set_rng_state

    set_rng_state(back["rng"])
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(back["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


class Planted:
    """Unpickling this runs code: it creates a file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickled_checkpoint_is_never_unpickled(tmp_path):
    marker = tmp_path / "code-ran"
    ck = tmp_path / "checkpoints" / "step-000004"
    ck.mkdir(parents=True)
    (ck / "state.pt").write_bytes(pickle.dumps({"step": 4, "x": Planted(marker)}))
    (tmp_path / "checkpoints" / "latest").write_text("step-000004\n")
    with pytest.raises(CheckpointError, match="pickle"):
        latest_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(ck)
    assert not marker.exists()


def flip_byte(path: Path, where: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flip_tensors", "flip_state", "truncate", "no_checksums", "empty"])
def test_a_damaged_newest_checkpoint_falls_back_with_a_warning(tmp_path, caplog, damage):
    for step in (4, 8):
        save_checkpoint(tmp_path, step, dict(sample_state(), step=step), keep=3)
    newest = tmp_path / "checkpoints" / "step-000008"
    if damage == "flip_tensors":
        flip_byte(newest / TENSORS)
    elif damage == "flip_state":
        flip_byte(newest / STATE, 0.9)
    elif damage == "truncate":
        data = (newest / TENSORS).read_bytes()
        (newest / TENSORS).write_bytes(data[: len(data) // 2])
    elif damage == "no_checksums":
        (newest / CHECKSUMS).unlink()
    else:
        (newest / STATE).write_bytes(b"")
    with pytest.raises(CheckpointError, match="step-000008"):
        load_checkpoint(newest)
    with caplog.at_level(logging.WARNING, logger="dav_builder.model.checkpoint"):
        got = latest_checkpoint(tmp_path)
    assert got == tmp_path / "checkpoints" / "step-000004"
    assert "step-000008" in caplog.text and "unusable" in caplog.text
    assert load_checkpoint(got)["step"] == 4


def test_latest_naming_nothing_is_refused(tmp_path):
    save_checkpoint(tmp_path, 4, sample_state(), keep=2)
    (tmp_path / "checkpoints" / "latest").write_text("step-000012\n")
    with pytest.raises(CheckpointError, match=r"names 'step-000012', which is not a checkpoint.*step-000004"):
        latest_checkpoint(tmp_path)
    (tmp_path / "checkpoints" / "latest").write_text("../../etc\n")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        latest_checkpoint(tmp_path)


def test_all_checkpoints_damaged_is_an_error_not_a_fresh_start(tmp_path):
    save_checkpoint(tmp_path, 4, sample_state(), keep=2)
    flip_byte(tmp_path / "checkpoints" / "step-000004" / TENSORS)
    with pytest.raises(CheckpointError, match="no intact checkpoint"):
        latest_checkpoint(tmp_path)


def test_no_checkpoints_is_a_new_run(tmp_path):
    assert latest_checkpoint(tmp_path) is None


# -- end to end: a resumed run repeats the uninterrupted losses, also from a fallback ----------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ckpt")
    render_captures(root / "captures", RenderConfig(scenes=1, frames=30, width=64, height=48, seed=3), progress=False)
    cfg = load_config(overrides={"clips": {"lengths": [12, 1]}, "run": {"executor": "local"}})
    build_dataset([root / "captures"], root / "dataset", cfg, progress=False, say=lambda s: None)
    return root / "dataset"


def run_config():
    t = {"max_steps": 4, "sample_frames": 4, "scale": 1.0, "batch_size": 1, "val_every": 0, "checkpoint_every": 1,
         "keep_checkpoints": 4, "num_workers": 0, "val_batches": 0, "val_fraction": 0.0}
    return load_run_config(preset="tiny", overrides={"train": t})


def losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]


def test_resume_after_a_corrupt_checkpoint_repeats_the_losses(dataset, tmp_path, caplog):
    ref = tmp_path / "ref"
    train(dataset, ref, run_config(), progress=False, echo=lambda s: None)
    run = tmp_path / "damaged"
    shutil.copytree(ref, run)
    # as if killed right after the step-3 checkpoint, whose tensors then got flipped bytes
    shutil.rmtree(run / "final")
    shutil.rmtree(run / "checkpoints" / "step-000004")
    (run / "checkpoints" / "latest").write_text("step-000003\n")
    flip_byte(run / "checkpoints" / "step-000003" / TENSORS, 0.7)
    with caplog.at_level(logging.WARNING, logger="dav_builder.model.checkpoint"):
        result = train(dataset, run, run_config(), resume=True, progress=False, echo=lambda s: None)
    assert "step-000003" in caplog.text and "checksum" in caplog.text
    assert len(result.losses) == 2  # resumed from step 2: steps 3 and 4
    assert losses(run) == losses(ref)
    assert not any(n.endswith(".pt") for _, _, files in os.walk(run) for n in files)
