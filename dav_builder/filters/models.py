"""The scoring models: a depth model (any callable, or a dav-train checkpoint) and open_clip.

Nothing here downloads: weights come from a local path or the local Hugging Face cache, and
:func:`check_depth_model` / :func:`check_clip` say exactly what to provide when they are missing.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Callable, Protocol

import numpy as np


class ModelUnavailableError(RuntimeError):
    """A configured model cannot be loaded; the message says what to provide."""


class DepthModel(Protocol):
    """Any depth model: uint8 RGB frames (N, H, W, 3) -> affine-invariant disparity (N, H, W).

    Plug one in with ``scoring.depth.path: my_package.my_module:make_model`` where ``make_model()``
    returns such a callable (or is one).  A model predicting depth rather than disparity can wrap
    its output as ``1 / depth``.  A model with the attribute ``takes_frame_indices = True`` is also
    given the frames' original indices (the sampled frames are not consecutive).
    """

    def __call__(self, rgb: np.ndarray) -> np.ndarray: ...


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def check_depth_model(path: str) -> None:
    """Raise ModelUnavailableError when ``path`` names no loadable depth model."""
    if ":" in path and not Path(path).exists():
        module, _, attr = path.partition(":")
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            raise ModelUnavailableError(f"scoring.depth.path {path!r}: cannot import {module!r}: {exc}") from None
        if not hasattr(mod, attr):
            raise ModelUnavailableError(f"scoring.depth.path {path!r}: {module!r} has no {attr!r}")
        return
    p = Path(path)
    if not p.exists():
        raise ModelUnavailableError(
            f"depth model {path!r} not found: give scoring.depth.path as a dav-train run directory "
            "(RUN_DIR or RUN_DIR/final), or 'module:callable' for another depth model, or remove it to turn "
            "the depth score off"
        )


def load_depth_model(path: str, steps: int = 1, device: str = "auto") -> Callable[[np.ndarray], np.ndarray]:
    """Load the depth model named by ``path`` (see :class:`DepthModel`)."""
    check_depth_model(path)
    if ":" in path and not Path(path).exists():
        module, _, attr = path.partition(":")
        obj = getattr(importlib.import_module(module), attr)
        model = obj() if isinstance(obj, type) or getattr(obj, "__dav_factory__", False) else obj
        return model
    try:
        from dav_builder.model.predictor import VideoDepthPredictor
    except ImportError as exc:  # pragma: no cover - the model package is part of the project
        raise ModelUnavailableError(f"cannot load dav-train models: {exc}") from None
    predictor = VideoDepthPredictor.from_pretrained(path, device=resolve_device(device), steps=steps)
    return _WithPositions(predictor)


class _WithPositions:
    """A dav-train model: it is told the sampled frames' original indices (its RoPE positions)."""

    takes_frame_indices = True

    def __init__(self, predictor):
        self.predictor = predictor

    def __call__(self, rgb: np.ndarray, frame_indices: list[int] | None = None) -> np.ndarray:
        return self.predictor(rgb, frame_indices)


# -- CLIP -----------------------------------------------------------------------------------


def _model_name(model: str) -> str:
    """Register a model config given as a JSON file and return its name."""
    if model.endswith(".json"):
        import open_clip

        p = Path(model)
        if not p.is_file():
            raise ModelUnavailableError(f"scoring.clip.model {model!r}: config file not found")
        open_clip.add_model_config(p)
        return p.stem
    return model


def check_clip(model: str, pretrained: str | None, cache_dir: str | None = None) -> str:
    """Return the local weights file for (model, pretrained) or raise ModelUnavailableError."""
    import open_clip

    name = _model_name(model)
    if name not in open_clip.list_models():
        raise ModelUnavailableError(f"scoring.clip.model {model!r} is not an open_clip model")
    if pretrained is None:
        raise ModelUnavailableError(
            f"scoring.clip.pretrained is not set for {model!r}: give a local checkpoint file "
            "(e.g. open_clip_pytorch_model.bin) or an open_clip pretrained tag cached locally"
        )
    if Path(pretrained).is_file():
        return pretrained
    cfg = open_clip.get_pretrained_cfg(name, pretrained)
    if not cfg:
        raise ModelUnavailableError(
            f"scoring.clip.pretrained {pretrained!r} is neither a file nor a known tag for {name!r} "
            f"(known: {open_clip.list_pretrained_tags_by_model(name)})"
        )
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo_id = "/".join(hub.rstrip("/").split("/")[:2])
        for filename in ("open_clip_pytorch_model.bin", "open_clip_model.safetensors"):
            hit = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir)
            if isinstance(hit, str) and os.path.isfile(hit):
                return hit
        where = cache_dir or os.environ.get("HF_HUB_CACHE") or "~/.cache/huggingface/hub"
        raise ModelUnavailableError(
            f"CLIP weights {name}/{pretrained} (Hugging Face repo {repo_id}) are not in the local cache {where}; "
            f"copy them there (huggingface-cli download {repo_id} on a machine with internet) or set "
            "scoring.clip.pretrained to a local checkpoint file"
        )
    raise ModelUnavailableError(
        f"CLIP weights {name}/{pretrained} can only be downloaded by URL; set scoring.clip.pretrained to a local file"
    )


class ClipEmbedder:
    """open_clip image embeddings of colour-mapped depth."""

    def __init__(self, model: str, pretrained: str | None, cache_dir: str | None = None, device: str = "auto"):
        import open_clip
        import torch

        weights = check_clip(model, pretrained, cache_dir)
        self.device = resolve_device(device)
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(
            _model_name(model), pretrained=weights, device=self.device
        )
        self.model.eval()
        self.torch = torch

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        """L2-normalised embeddings of uint8 RGB images, (N, D)."""
        from PIL import Image

        torch = self.torch
        batch = torch.stack([self.preprocess(Image.fromarray(im)) for im in images]).to(self.device)
        with torch.no_grad():
            emb = self.model.encode_image(batch).float()
        emb = emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        return emb.cpu().numpy()


def colorize(disp: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Colour-map a disparity map with matplotlib's Spectral (as Marigold and the paper show depth)."""
    from matplotlib import colormaps

    x = np.clip((disp - lo) / max(hi - lo, 1e-6), 0, 1)
    return (colormaps["Spectral"](x)[..., :3] * 255).astype(np.uint8)
