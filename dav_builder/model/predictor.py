"""Inference from numpy frames: ``VideoDepthPredictor``.

Loads a dav-train model (a run directory, its ``final/`` export, or any folder saved with
``save_pretrained``) once, and predicts affine-invariant disparity (higher = nearer) for videos of
any length (:mod:`dav_builder.model.longvideo`), with optional ensembling over seeds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dav_builder.model.longvideo import stream
from dav_builder.model.metrics import fit_scale_shift
from dav_builder.model.normalize import to_disparity01
from dav_builder.model.video_depth import DepthAnyVideo


def resolve_model_dir(path: str | Path) -> Path:
    """A run directory -> its exported model (``final/``), or the model folder itself."""
    p = Path(path)
    for cand in (p, p / "final", p / "best"):
        if (cand / "dav_model.json").is_file():
            return cand
    raise FileNotFoundError(f"{p}: no dav-train model (expected dav_model.json in it or in final/; a run that "
                            "was stopped early gets final/ when it is resumed with dav-train --resume)")


def align_ls(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``src`` scaled and shifted to best match ``dst`` (least squares)."""
    s, t = fit_scale_shift(src, dst)
    return src * s + t


def ensemble(predictions: list[np.ndarray]) -> np.ndarray:
    """Align every prediction to the first by least squares, then take the per-pixel median."""
    ref = predictions[0]
    return np.median(np.stack([ref] + [align_ls(p, ref) for p in predictions[1:]]), axis=0).astype(np.float32)


def as_uint8_frames(rgb: np.ndarray) -> np.ndarray:
    """RGB frames (T, H, W, 3) as uint8, by one rule: uint8 is taken as it is; float frames must
    lie in [0, 1] (the usual float image convention) and are scaled by 255 and rounded; anything
    else (float frames above 1 or below 0, other integer types, NaN) is an error that says what
    to pass, since guessing the range would silently give wrong depth."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 4 or rgb.shape[-1] != 3:
        raise ValueError(f"expected RGB frames (T, H, W, 3), got {rgb.shape}")
    if rgb.dtype == np.uint8:
        return rgb
    if np.issubdtype(rgb.dtype, np.floating):
        if rgb.size and not np.isfinite(rgb).all():
            raise ValueError("float RGB frames contain NaN or inf")
        lo, hi = (float(rgb.min()), float(rgb.max())) if rgb.size else (0.0, 0.0)
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"float RGB frames must be in [0, 1], got values in [{lo:g}, {hi:g}]; "
                             "pass uint8 frames for [0, 255] (e.g. frames.astype(np.uint8))")
        return np.round(rgb.astype(np.float32) * 255.0).astype(np.uint8)
    raise ValueError(f"RGB frames must be uint8 in [0, 255] or float in [0, 1], got dtype {rgb.dtype}")


class VideoDepthPredictor:
    def __init__(self, model: DepthAnyVideo, device: str | None = None, steps: int = 1,
                 interpolator: DepthAnyVideo | None = None):
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device).eval()
        self.interpolator = interpolator.to(self.device).eval() if interpolator is not None else None
        self.steps = steps
        self.window = model.config.window
        self.calls: list[int] = []
        """Frames per model call, for inspection (long videos stay bounded by the window)."""

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None, steps: int = 1,
                        interpolator_path: str | Path | None = None) -> "VideoDepthPredictor":
        from dav_builder.model.interp import DepthInterpolator

        model = DepthAnyVideo.from_pretrained(resolve_model_dir(path))
        interp = DepthInterpolator.from_pretrained(resolve_model_dir(interpolator_path)) if interpolator_path else None
        return cls(model, device, steps, interp)

    def _tensor(self, rgb: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device).permute(0, 3, 1, 2).float() / 127.5 - 1
        return x[None]

    def _pad(self, rgb: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """Pad H and W to a multiple the UNet accepts (reflect), remembering the original size."""
        m = self.model.spatial_multiple
        h, w = rgb.shape[1:3]
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            rgb = np.pad(rgb, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
        return rgb, (h, w)

    def _predict(self, rgb: np.ndarray, indices: list[int], seed: int = 0) -> np.ndarray:
        self.calls.append(len(indices))
        x, (h, w) = self._pad(rgb)
        g = torch.Generator(device=self.device).manual_seed(seed)
        pos = torch.tensor([indices], device=self.device)
        out = self.model.predict(self._tensor(x), pos, steps=self.steps, generator=g)
        return to_disparity01(out)[0, :, :h, :w].cpu().numpy()

    def _interpolate(self, rgb, indices, key_disp, mask) -> np.ndarray:
        assert self.interpolator is not None
        self.calls.append(len(indices))
        x, (h, w) = self._pad(rgb)
        kd = np.pad(key_disp, ((0, 0), (0, x.shape[1] - h), (0, x.shape[2] - w)), mode="edge") * 2 - 1
        out = self.interpolator.predict(
            self._tensor(x), torch.tensor([indices], device=self.device),
            key_depth=torch.from_numpy(kd[None]).float().to(self.device),
            keyframe_mask=torch.from_numpy(mask[None]).to(self.device), steps=self.steps)
        return to_disparity01(out)[0, :, :h, :w].cpu().numpy()

    @torch.no_grad()
    def __call__(self, rgb: np.ndarray, frame_indices: list[int] | None = None, seed: int = 0) -> np.ndarray:
        """Disparity (T, H, W), float32, affine-invariant, for RGB frames (T, H, W, 3): uint8 in
        [0, 255], or float in [0, 1] (converted with :func:`as_uint8_frames`)."""
        rgb = as_uint8_frames(rgb)
        indices = list(frame_indices) if frame_indices is not None else list(range(len(rgb)))
        out = np.zeros(rgb.shape[:3], np.float32)
        pos_of = {i: k for k, i in enumerate(indices)}

        def load(ii: list[int]) -> np.ndarray:
            return rgb[[pos_of[i] for i in ii]]

        interp = self._interpolate if self.interpolator is not None else None
        for pos, depth in stream(load, indices, self.window, lambda f, ii: self._predict(f, ii, seed), interp):
            out[pos] = depth
        return out

    def ensemble(self, rgb: np.ndarray, frame_indices: list[int] | None = None, seeds: int = 3) -> np.ndarray:
        """Median of ``seeds`` predictions after least-squares alignment."""
        return ensemble([self(rgb, frame_indices, seed=s) for s in range(seeds)])
