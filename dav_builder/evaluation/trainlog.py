"""Training logs: ``metrics.jsonl`` (one JSON object per logged step), TensorBoard event files in
``RUN/tensorboard/`` (``tensorboard --logdir RUN``), and Weights & Biases when asked for and installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

TAGS = {"loss": "train/loss", "lr": "train/lr", "grad_norm": "train/grad_norm", "data_s": "time/data_s",
        "step_s": "time/step_s", "frames": "train/frames", "val_loss": "val/loss"}
"""Scalar tags in TensorBoard; ``eval_<metric>`` becomes ``eval/<metric>``."""


def tag_of(key: str) -> str | None:
    if key in TAGS:
        return TAGS[key]
    if key.startswith("eval_"):
        return "eval/" + key[len("eval_"):]
    return None


class TrainLogger:
    def __init__(self, run: Path, start_step: int, tensorboard: bool = True, wandb_project: str = "",
                 config: dict | None = None, echo: Callable[[str], None] = print):
        self.jsonl = open(Path(run) / "metrics.jsonl", "a")
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: events a killed run logged past its last checkpoint are dropped on resume
            self.tb = SummaryWriter(str(Path(run) / "tensorboard"), purge_step=start_step + 1 if start_step else None)
        self.wandb = None
        if wandb_project:
            try:
                import wandb
            except ImportError:
                echo("dav-train: W&B logging asked for (train.wandb_project) but the wandb package is not "
                     "installed (pip install wandb); logging to metrics.jsonl and TensorBoard only")
            else:
                self.wandb = wandb.init(project=wandb_project, dir=str(run), config=config or {},
                                        name=Path(run).name, resume="allow")

    def log(self, rec: dict) -> None:
        self.jsonl.write(json.dumps(rec) + "\n")
        self.jsonl.flush()
        step = int(rec["step"])
        scalars = {k: float(v) for k, v in rec.items() if tag_of(k) and isinstance(v, (int, float))}
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(tag_of(k), v, step)
            self.tb.flush()
        if self.wandb is not None:
            self.wandb.log({tag_of(k): v for k, v in scalars.items()}, step=step)

    def close(self) -> None:
        self.jsonl.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
