"""Crash-safe training checkpoints and the EMA of the trainable weights.

Layout of a run directory::

    RUN/config.yaml              the resolved configuration
    RUN/metrics.jsonl            one JSON object per logged step (and per validation)
    RUN/checkpoints/step-000200/state.pt
    RUN/checkpoints/latest       the name of the newest complete checkpoint (written last)
    RUN/final/                   the exported model (diffusers unet/ and vae/, EMA weights)

``state.pt`` holds everything needed to continue exactly: the UNet's trainable weights, the
EMA, the optimizer, the LR scheduler, the grad scaler, the step (which is also the data
position, see :mod:`.sampler`) and every RNG state.  It is written into a temporary directory
that is renamed into place, and ``latest`` is replaced atomically after that, so a kill at any
moment leaves the previous checkpoint usable.  The frozen VAE is not saved (it never changes).
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

LATEST = "latest"


class EMA:
    """Exponential moving average of parameters (kept in float32, on the parameters' device)."""

    def __init__(self, params: list[nn.Parameter], decay: float):
        self.decay = decay
        self.params = params
        self.shadow = [p.detach().float().clone() for p in params]

    @torch.no_grad()
    def update(self) -> None:
        for s, p in zip(self.shadow, self.params):
            s.lerp_(p.detach().float(), 1 - self.decay)

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange the model's weights and the EMA's (call twice to restore)."""
        for s, p in zip(self.shadow, self.params):
            tmp = p.detach().clone()
            p.copy_(s.to(p.dtype))
            s.copy_(tmp.float())

    def state_dict(self) -> dict:
        return {"decay": self.decay, "shadow": [s.cpu() for s in self.shadow]}

    def load_state_dict(self, state: dict) -> None:
        if len(state["shadow"]) != len(self.shadow):
            raise ValueError("EMA state does not match the model's trainable parameters")
        for s, v in zip(self.shadow, state["shadow"]):
            s.copy_(v.to(s.device))


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dir(run: Path) -> Path:
    return Path(run) / "checkpoints"


def latest_checkpoint(run: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    root = checkpoint_dir(run)
    marker = root / LATEST
    if not marker.is_file():
        return None
    path = root / marker.read_text().strip()
    return path if (path / "state.pt").is_file() else None


def save_checkpoint(run: Path, step: int, state: dict, keep: int) -> Path:
    """Write ``state`` as checkpoint ``step-NNNNNN`` atomically, point ``latest`` at it, prune old ones."""
    root = checkpoint_dir(run)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:06d}"
    final, tmp = root / name, root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    torch.save(state, tmp / "state.pt")
    _fsync(tmp / "state.pt")
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    marker_tmp = root / f".{LATEST}.tmp"
    marker_tmp.write_text(name + "\n")
    _fsync(marker_tmp)
    marker_tmp.replace(root / LATEST)
    done = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in done[: max(0, len(done) - max(1, keep))]:
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".step-*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    return final


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    try:
        return torch.load(Path(path) / "state.pt", map_location=map_location, weights_only=False)
    except Exception as exc:  # a checkpoint is trusted input written by this program
        raise RuntimeError(f"{path}: cannot read the checkpoint: {exc}") from exc


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
