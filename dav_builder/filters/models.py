"""The scoring models: a depth model and open_clip.

A depth model (``scoring.depth.path``) is any of:

- a dav-train run or export, or the released Depth Any Video folder (``vae/``, ``scheduler/``,
  ``unet/``, ``unet_interp/``), run by :class:`dav_builder.model.predictor.VideoDepthPredictor`;
- a local Hugging Face ``transformers`` depth-estimation folder (Depth Anything V2, DPT, ZoeDepth...),
  recognised by its ``config.json`` (an ``...ForDepthEstimation`` architecture): no code needed;
- ``module:callable`` for anything else.

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


HF_DISPARITY_TYPES = {"dpt", "depth_anything"}
"""transformers depth models whose output is relative inverse depth (used as it is); the others (and
Depth Anything's ``metric`` variants) predict depth, which is inverted."""


def hf_depth_config(path: str | Path) -> dict | None:
    """The ``config.json`` of a local transformers depth-estimation folder, or None."""
    import json

    p = Path(path) / "config.json"
    if not p.is_file():
        return None
    try:
        cfg = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(cfg, dict) or "_class_name" in cfg:  # a diffusers folder
        return None
    if any(str(a).endswith("ForDepthEstimation") for a in cfg.get("architectures") or []):
        return cfg
    return None


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
            "(RUN_DIR or RUN_DIR/final), the released Depth Any Video folder, a transformers depth-estimation "
            "folder, or 'module:callable' for another depth model, or remove it to turn the depth score off"
        )
    if p.is_dir() and (p / "config.json").is_file() and hf_depth_config(p) is None and not (p / "unet").is_dir():
        raise ModelUnavailableError(
            f"scoring.depth.path {path!r}: its config.json is not a transformers depth-estimation model "
            "(no ...ForDepthEstimation architecture)")


def load_depth_model(path: str, steps: int = 1, device: str = "auto") -> Callable[[np.ndarray], np.ndarray]:
    """Load the depth model named by ``path`` (see :class:`DepthModel`)."""
    check_depth_model(path)
    if ":" in path and not Path(path).exists():
        module, _, attr = path.partition(":")
        obj = getattr(importlib.import_module(module), attr)
        model = obj() if isinstance(obj, type) or getattr(obj, "__dav_factory__", False) else obj
        return model
    if hf_depth_config(path) is not None:
        return HFDepthModel(path, device=resolve_device(device))
    try:
        from dav_builder.model.predictor import VideoDepthPredictor
    except ImportError as exc:  # pragma: no cover - the model package is part of the project
        raise ModelUnavailableError(f"cannot load dav-train models: {exc}") from None
    try:
        predictor = VideoDepthPredictor.from_pretrained(path, device=resolve_device(device), steps=steps)
    except (FileNotFoundError, ValueError) as exc:  # an incomplete run, or a folder in another layout
        raise ModelUnavailableError(f"scoring.depth.path {path!r}: {exc}") from None
    return _WithPositions(predictor)


class _WithPositions:
    """A dav-train model: it is told the sampled frames' original indices (its RoPE positions)."""

    takes_frame_indices = True

    def __init__(self, predictor):
        self.predictor = predictor

    def __call__(self, rgb: np.ndarray, frame_indices: list[int] | None = None) -> np.ndarray:
        return self.predictor(rgb, frame_indices)


class HFDepthModel:
    """A transformers depth-estimation model from a local folder, frame by frame, as disparity at the input size."""

    def __init__(self, path: str | Path, device: str = "cpu", batch: int = 8):
        import torch
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        self.path, self.device, self.batch, self.torch = Path(path), device, batch, torch
        try:
            self.processor = AutoImageProcessor.from_pretrained(self.path)
            self.model = AutoModelForDepthEstimation.from_pretrained(self.path).to(device).eval()
        except (OSError, ValueError) as exc:
            raise ModelUnavailableError(f"scoring.depth.path {str(path)!r}: cannot load the transformers depth "
                                        f"model (it needs config.json, the weights and preprocessor_config.json): "
                                        f"{exc}") from None
        cfg = self.model.config
        self.inverse = not (cfg.model_type in HF_DISPARITY_TYPES
                            and getattr(cfg, "depth_estimation_type", "relative") != "metric")

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        torch = self.torch
        rgb = np.asarray(rgb)
        if rgb.ndim != 4 or rgb.shape[-1] != 3:
            raise ValueError(f"expected RGB frames (N, H, W, 3), got {rgb.shape}")
        h, w = rgb.shape[1:3]
        out = []
        with torch.no_grad():
            for i in range(0, len(rgb), self.batch):
                inputs = self.processor(images=list(rgb[i : i + self.batch]), return_tensors="pt").to(self.device)
                pred = self.model(**inputs).predicted_depth
                pred = torch.nn.functional.interpolate(pred[:, None].float(), size=(h, w), mode="bilinear",
                                                       align_corners=False)[:, 0]
                out.append(pred.cpu().numpy())
        disp = np.concatenate(out).astype(np.float32)
        if self.inverse:
            disp = 1.0 / np.maximum(disp, 1e-6)
        return disp


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
