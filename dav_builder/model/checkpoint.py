"""Crash-safe training checkpoints, without pickle, and the EMA of the trainable weights.

Layout of a run directory::

    RUN/config.yaml              the resolved configuration
    RUN/metrics.jsonl            one JSON object per logged step (and per validation)
    RUN/checkpoints/step-000200/tensors.safetensors   every tensor of the state
    RUN/checkpoints/step-000200/state.json            the rest (step, hyper-parameters, RNG states...)
    RUN/checkpoints/step-000200/checksums.json        SHA-256 of the two files above
    RUN/checkpoints/latest       the name of the newest complete checkpoint (written last)
    RUN/final/                   the exported model (diffusers unet/ and vae/, EMA weights)

A checkpoint holds everything needed to continue exactly: the UNet's trainable weights, the
EMA, the optimizer, the LR scheduler, the grad scaler, the step (which is also the data
position, see :mod:`.sampler`) and every RNG state.  The state is a tree of dicts, lists,
tuples, numbers, strings, numpy arrays and tensors: tensors go to ``tensors.safetensors``, the
tree to ``state.json`` with each tensor replaced by its name (tuples, non-string dict keys,
non-finite floats and numpy arrays are tagged so they come back as they were).  Nothing is
unpickled on ``--resume``, so a crafted checkpoint cannot run code.  A checkpoint is written
into a temporary directory renamed into place, and ``latest`` is replaced atomically after
that, so a kill at any moment leaves the previous checkpoint usable.

On resume every file is checked against ``checksums.json``.  A checkpoint that fails (flipped
bytes, a truncated file) is skipped with a warning for the newest older one that passes; a
``latest`` naming a checkpoint that does not exist is refused (:class:`CheckpointError`), as is
a run whose checkpoints all fail: starting again at step 0 silently would lose the run.
Checkpoints of earlier versions (``state.pt``, a pickle) are refused for the same reason as any
pickle.  The frozen VAE is not saved (it never changes).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

LATEST = "latest"
TENSORS = "tensors.safetensors"
STATE = "state.json"
CHECKSUMS = "checksums.json"
FORMAT = "dav-checkpoint/1"
STEP_DIR = re.compile(r"step-\d{6,}")

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint (or the run's ``latest`` pointer) cannot be used; the message says why."""


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


# -- the state tree <-> (JSON, tensors) ----------------------------------------------------------


def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors):06d}"
        tensors[name] = obj.detach().to("cpu").contiguous()
        return {"__tensor__": name}
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError("numpy object arrays cannot be stored in a checkpoint")
        return {"__ndarray__": obj.tolist(), "dtype": obj.dtype.str, "shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return _encode(obj.item(), tensors)
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, tensors) for k, v in obj.items()}
        return {"__dict__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    raise TypeError(f"a {type(obj).__name__} cannot be stored in a checkpoint (tensors, arrays, numbers, "
                    "strings, lists, tuples and dicts can)")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__ndarray__" in obj:
        return np.asarray(obj["__ndarray__"], dtype=np.dtype(obj["dtype"])).reshape(obj["shape"])
    if "__float__" in obj:
        return float(obj["__float__"])
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    if "__dict__" in obj:
        out = {}
        for k, v in obj["__dict__"]:
            k = _decode(k, tensors)
            out[tuple(k) if isinstance(k, list) else k] = _decode(v, tensors)
        return out
    return {k: _decode(v, tensors) for k, v in obj.items()}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


# -- writing --------------------------------------------------------------------------------------


def save_checkpoint(run: Path, step: int, state: dict, keep: int) -> Path:
    """Write ``state`` as checkpoint ``step-NNNNNN`` atomically, point ``latest`` at it, prune old ones."""
    from safetensors.torch import save_file

    root = checkpoint_dir(run)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:06d}"
    final, tmp = root / name, root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, tensors)
    try:
        save_file(tensors, str(tmp / TENSORS))
    except RuntimeError:  # tensors sharing memory: safetensors wants them apart
        save_file({k: v.clone() for k, v in tensors.items()}, str(tmp / TENSORS))
    _fsync(tmp / TENSORS)
    _write_synced(tmp / STATE, json.dumps({"format": FORMAT, "step": int(step), "state": tree},
                                          allow_nan=False).encode())
    sums = {f: _sha256(tmp / f) for f in (TENSORS, STATE)}
    _write_synced(tmp / CHECKSUMS, json.dumps(sums, indent=1, sort_keys=True).encode())
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


# -- finding and reading --------------------------------------------------------------------------


def checkpoint_problem(path: Path) -> str | None:
    """Why checkpoint directory ``path`` cannot be resumed from (missing files, a checksum that
    does not match, unreadable state), or None when it is intact."""
    path = Path(path)
    if not path.is_dir():
        return "does not exist"
    if not (path / CHECKSUMS).is_file():
        if (path / "state.pt").is_file():
            return ("is in the pickle format of earlier versions (state.pt), which is never loaded because "
                    "unpickling can run code; start a new run")
        return f"has no {CHECKSUMS} (incomplete)"
    try:
        sums = json.loads((path / CHECKSUMS).read_text())
        if not isinstance(sums, dict) or set(sums) != {TENSORS, STATE}:
            return f"{CHECKSUMS} is malformed"
    except (OSError, ValueError) as exc:
        return f"{CHECKSUMS} cannot be read: {exc}"
    for name, expected in sums.items():
        f = path / name
        if not f.is_file():
            return f"{name} is missing"
        if _sha256(f) != expected:
            return f"{name} does not match its checksum (corrupt or truncated)"
    return None


def latest_checkpoint(run: Path) -> Path | None:
    """The newest intact checkpoint of a run, or None when the run has none.

    ``latest`` names the newest; when it fails its checksums, the newest older checkpoint that
    passes is used with a warning.  Raises :class:`CheckpointError` when ``latest`` names a
    checkpoint that does not exist, or when checkpoints exist and none is intact.
    """
    root = checkpoint_dir(run)
    marker = root / LATEST
    steps = sorted((p for p in root.glob("step-*") if p.is_dir() and STEP_DIR.fullmatch(p.name)), reverse=True)
    if marker.is_file():
        name = marker.read_text(errors="replace").strip()
        if not STEP_DIR.fullmatch(name) or not (root / name).is_dir():
            raise CheckpointError(
                f"{marker} names {name!r}, which is not a checkpoint of this run "
                f"(present: {[p.name for p in steps] or 'none'}); fix or delete {marker} to resume from "
                "another checkpoint, or start a new run in another --out")
        candidates = [root / name] + [p for p in steps if p.name < name]
    elif steps:
        log.warning("%s: no %s pointer; looking for the newest intact checkpoint", root, LATEST)
        candidates = steps
    else:
        return None
    problems = []
    for path in candidates:
        problem = checkpoint_problem(path)
        if problem is None:
            if problems:
                log.warning("resuming from %s: newer checkpoint(s) unusable: %s", path, "; ".join(problems))
            return path
        problems.append(f"{path.name} {problem}")
    raise CheckpointError(f"{root}: no intact checkpoint to resume from: {'; '.join(problems)}")


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """The state saved in checkpoint ``path`` (checked against its checksums first)."""
    from safetensors.torch import load_file

    path = Path(path)
    problem = checkpoint_problem(path)
    if problem is not None:
        raise CheckpointError(f"{path}: checkpoint {problem}")
    try:
        doc = json.loads((path / STATE).read_text())
        if doc.get("format") != FORMAT:
            raise ValueError(f"format is {doc.get('format')!r}, expected {FORMAT!r}")
        tensors = load_file(str(path / TENSORS), device=str(map_location))
        return _decode(doc["state"], tensors)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint: {exc}") from None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
