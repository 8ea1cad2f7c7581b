"""The training logger: metrics.jsonl, TensorBoard events read back by TensorBoard's own reader,
the events of a killed run's lost steps dropped on resume, and W&B skipped with a message when
it is not installed.  (A real training run's events: tests/test_model_train.py.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from dav_builder.evaluation.trainlog import TrainLogger, tag_of  # noqa: E402


def read_events(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    return acc


def test_jsonl_and_tensorboard_scalars(tmp_path):
    log = TrainLogger(tmp_path, 0, echo=lambda m: None)
    for step in (1, 2, 3):
        rec = {"step": step, "loss": 1.0 / step, "lr": 1e-3, "bucket": "32x48-6f"}
        if step == 2:
            rec.update({"val_loss": 0.7, "eval_abs_rel": 0.25, "eval_delta1": 0.6, "eval_tae": 0.05})
        log.log(rec)
    log.close()
    recs = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2, 3] and recs[1]["eval_tae"] == 0.05
    acc = read_events(tmp_path)
    assert [(e.step, round(e.value, 6)) for e in acc.Scalars("train/loss")] == [(1, 1.0), (2, 0.5), (3, 0.333333)]
    assert [(e.step, e.value) for e in acc.Scalars("eval/abs_rel")] == [(2, 0.25)]
    assert "val/loss" in acc.Tags()["scalars"] and "bucket" not in str(acc.Tags()["scalars"])
    assert tag_of("eval_delta1") == "eval/delta1" and tag_of("bucket") is None


def test_a_resumed_run_drops_the_lost_steps_events(tmp_path):
    log = TrainLogger(tmp_path, 0, echo=lambda m: None)
    for step in (1, 2, 3, 4):
        log.log({"step": step, "loss": float(step)})
    log.close()                                       # killed after step 4; last checkpoint: step 2
    log = TrainLogger(tmp_path, 2, echo=lambda m: None)
    for step in (3, 4):
        log.log({"step": step, "loss": 10.0 + step})
    log.close()
    assert [(e.step, e.value) for e in read_events(tmp_path).Scalars("train/loss")] == \
        [(1, 1.0), (2, 2.0), (3, 13.0), (4, 14.0)]


def test_wandb_without_the_package_says_so_and_goes_on(tmp_path):
    try:
        import wandb  # noqa: F401
        pytest.skip("wandb is installed here")
    except ImportError:
        pass
    said = []
    log = TrainLogger(tmp_path, 0, wandb_project="dav", echo=said.append)
    log.log({"step": 1, "loss": 0.5})
    log.close()
    assert len(said) == 1 and "wandb package is not installed" in said[0] and "pip install wandb" in said[0]
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 1


def test_held_out_scores_of_a_video_with_poses():
    import numpy as np

    import eval_fixtures as fx
    from dav_builder.evaluation.heldout import HeldOutClip, evaluate_heldout

    h, w, n = 24, 32, 4
    depth = np.stack([fx.scene_depth(t, h, w) for t in range(n)])
    clip = HeldOutClip("c", np.zeros((n, h, w, 3), np.uint8), depth, list(range(n)),
                       np.stack([fx.scene_K(h, w)] * n), np.stack([fx.scene_pose(t) for t in range(n)]))

    def exact(rgb, idx, seed=0):                      # a perfect model: the true disparity, rescaled
        return 3 / depth + 1

    def flicker(rgb, idx, seed=0):                    # right per frame, but its scale drifts over time
        return (3 / depth) * (1 + 0.2 * np.arange(n))[:, None, None]

    good, bad = evaluate_heldout(exact, [clip]), evaluate_heldout(flicker, [clip])
    assert good["eval_abs_rel"] < 1e-6 and good["eval_delta1"] == 1.0 and good["eval_tae"] < 0.01
    assert bad["eval_abs_rel"] > 0.05 and bad["eval_tae"] > 5 * good["eval_tae"]
