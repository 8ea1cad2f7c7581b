"""Inference from numpy frames: ``VideoDepthPredictor``.

Loads a model once, from a dav-train run (its ``final/`` export), any folder saved with
``save_pretrained``, or the released Depth Any Video folder (``vae/``, ``scheduler/``, ``unet/``,
``unet_interp/``: its interpolator is loaded too), and predicts affine-invariant disparity (higher =
nearer) for videos of any length: one video-model call up to the model's window, beyond it the
keyframe + interpolation scheme of :mod:`dav_builder.model.longvideo` (keyframe latents passed to
the interpolator as they are, each model with its own window), or aligned video-model windows when
there is no interpolator or the frames are not consecutive.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import torch

from dav_builder.model import layout
from dav_builder.model.longvideo import RELEASED_OVERLAP, aligned_windows, is_consecutive, plan_long_video
from dav_builder.model.metrics import fit_scale_shift
from dav_builder.model.normalize import to_disparity01
from dav_builder.model.video_depth import DECODE_CHUNK, MODEL_FILE, DepthAnyVideo


def resolve_model_dir(path: str | Path) -> Path:
    """A run directory -> its exported model (``final/``), or the model folder itself (also the released one)."""
    p = Path(path)
    for cand in (p, p / "final", p / "best"):
        if (cand / MODEL_FILE).is_file():
            return cand
    if layout.is_released_layout(p):
        return p
    raise FileNotFoundError(f"{p}: no dav-train model (expected {MODEL_FILE} in it or in final/; a run that was "
                            "stopped early gets final/ when it is resumed with dav-train --resume) and not the "
                            "released Depth Any Video layout (vae/, scheduler/, unet/)")


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
    overlap = RELEASED_OVERLAP
    """Frames shared by neighbouring interpolation windows (keyframes included)."""
    key_overlap: int | None = None
    """Keyframes shared by neighbouring keyframe calls past the video window (None: a quarter of it)."""
    decode_chunk = DECODE_CHUNK
    interp_batch = 4
    """Interpolation windows per interpolator call (a batch; the noise is drawn window by window in order,
    so the result does not depend on it)."""

    def __init__(self, model: DepthAnyVideo, device: str | None = None, steps: int = 1,
                 interpolator: DepthAnyVideo | None = None, ensemble: int = 1):
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device).eval()
        self.interpolator = interpolator.to(self.device).eval() if interpolator is not None else None
        self.steps = steps
        if ensemble < 1:
            raise ValueError(f"ensemble must be at least 1, got {ensemble}")
        self.ensemble_size = ensemble
        """Noise draws per prediction, aligned and median-combined (:mod:`dav_builder.model.ensemble`)."""
        self.window = model.config.window
        self.interp_window = interpolator.config.window if interpolator is not None else None
        self.calls: deque[tuple[str, list[int]]] = deque(maxlen=10_000)
        """(``video`` or ``interp``, frame indices) of the latest model calls, for inspection."""

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None, steps: int = 1,
                        interpolator_path: str | Path | None = None, ensemble: int = 1) -> "VideoDepthPredictor":
        """``path``: a run, an export, or the released folder (whose ``unet_interp/`` becomes the interpolator
        unless ``interpolator_path`` names another)."""
        from dav_builder.model.interp import DepthInterpolator

        root = resolve_model_dir(path)
        model = DepthAnyVideo.from_pretrained(root)
        interp = None
        if interpolator_path:
            interp = DepthInterpolator.from_pretrained(resolve_model_dir(interpolator_path))
        elif (root / "unet_interp" / "config.json").is_file():
            interp = DepthInterpolator.from_pretrained(root, subfolder="unet_interp")
        return cls(model, device, steps, interp, ensemble=ensemble)

    def _tensor(self, rgb: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device).permute(0, 3, 1, 2).float() / 127.5 - 1
        return x[None]

    def _pad(self, rgb: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """Pad H and W to a multiple the UNet accepts (edge), remembering the original size."""
        m = self.model.spatial_multiple
        h, w = rgb.shape[1:3]
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            rgb = np.pad(rgb, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
        return rgb, (h, w)

    def _disparity(self, z: torch.Tensor, h: int, w: int) -> np.ndarray:
        out = self.model.decode_depth(z[None], chunk=self.decode_chunk)
        return to_disparity01(out)[0, :, :h, :w].cpu().numpy()

    def _video_latents(self, rgb: np.ndarray, indices: list[int], generator: torch.Generator) -> torch.Tensor:
        self.calls.append(("video", list(indices)))
        pos = torch.tensor([indices], device=self.device)
        cond = self.model.encode(self._tensor(rgb))
        return self.model.sample_latents(cond, pos, self.steps, generator)[0]

    def _predict(self, rgb: np.ndarray, indices: list[int], generator: torch.Generator) -> np.ndarray:
        """One video-model window, decoded (the aligned-window fallback)."""
        x, (h, w) = self._pad(rgb)
        return self._disparity(self._video_latents(x, indices, generator), h, w)

    def _long_latents(self, x: np.ndarray, indices: list[int], generator: torch.Generator) -> torch.Tensor:
        """Latents of every frame by the keyframe + interpolation plan (``x`` padded frames)."""
        assert self.interpolator is not None and self.interp_window is not None
        overlap = min(self.overlap, max(2, (self.interp_window + 1) // 2))  # short interpolators share less
        plan = plan_long_video(len(indices), self.window, self.interp_window, overlap, self.key_overlap)
        keys = list(plan.keyframes)
        key_lat: torch.Tensor | None = None
        for call in plan.key_calls:
            pos = [keys[i] for i in call.frames]
            z = self._video_latents(x[pos], [indices[p] for p in pos], generator)
            if key_lat is None:
                key_lat = torch.zeros((len(keys),) + z.shape[1:], dtype=z.dtype, device=z.device)
            w = torch.tensor(call.weights, dtype=z.dtype, device=z.device).view(-1, 1, 1, 1)
            key_lat[list(call.frames)] += w * z
        assert key_lat is not None
        out = torch.zeros((len(indices),) + key_lat.shape[1:], dtype=key_lat.dtype, device=key_lat.device)
        slot = {p: i for i, p in enumerate(keys)}
        calls = list(plan.interp_calls)
        for b in range(0, len(calls), max(1, self.interp_batch)):
            group = calls[b : b + max(1, self.interp_batch)]
            wins = [list(c.frames) for c in group]
            for frames in wins:
                self.calls.append(("interp", [indices[p] for p in frames]))
            mask = torch.zeros(len(wins), len(wins[0]), dtype=torch.bool, device=self.device)
            mask[:, [0, -1]] = True
            known = torch.zeros((len(wins), len(wins[0])) + key_lat.shape[1:], dtype=key_lat.dtype,
                                device=key_lat.device)
            for j, frames in enumerate(wins):
                known[j, 0], known[j, -1] = key_lat[slot[frames[0]]], key_lat[slot[frames[-1]]]
            rgb_lat = self.interpolator.encode(torch.cat([self._tensor(x[frames]) for frames in wins]))
            z = self.interpolator.interpolate_latents(rgb_lat, known, mask, self.steps, generator)
            for j, (call, frames) in enumerate(zip(group, wins)):
                w = torch.tensor(call.weights, dtype=z.dtype, device=z.device).view(-1, 1, 1, 1)
                used = [i for i, wi in enumerate(call.weights) if wi > 0]
                out[[frames[i] for i in used]] += (w * z[j])[used]
        for p in plan.from_keyframes:
            out[p] = key_lat[slot[p]]
        return out

    @staticmethod
    def _check(rgb: np.ndarray, frame_indices: list[int] | None) -> tuple[np.ndarray, list[int]]:
        rgb = as_uint8_frames(rgb)
        indices = list(frame_indices) if frame_indices is not None else list(range(len(rgb)))
        if len(indices) != len(rgb):
            raise ValueError(f"{len(indices)} frame indices for {len(rgb)} frames")
        return rgb, indices

    def _uses_interpolator(self, indices: list[int]) -> bool:
        return (len(indices) > self.window and self.interpolator is not None and self.interp_window is not None
                and len(indices) >= self.interp_window and is_consecutive(indices))

    @torch.no_grad()
    def latents(self, rgb: np.ndarray, frame_indices: list[int] | None = None, seed: int = 0) -> torch.Tensor:
        """Depth latents (T, C, h, w) of every frame, before decoding (one window, or keyframes +
        interpolation); not available for the aligned-window fallback, which aligns decoded disparity."""
        rgb, indices = self._check(rgb, frame_indices)
        g = torch.Generator(device=self.device).manual_seed(seed)
        x, _ = self._pad(rgb)
        if len(indices) <= self.window:
            return self._video_latents(x, indices, g)
        if not self._uses_interpolator(indices):
            raise ValueError("latents of a long video need an interpolator and consecutive frames")
        return self._long_latents(x, indices, g)

    def __call__(self, rgb: np.ndarray, frame_indices: list[int] | None = None, seed: int = 0) -> np.ndarray:
        """Disparity (T, H, W), float32, affine-invariant, for RGB frames (T, H, W, 3): uint8 in
        [0, 255], or float in [0, 1] (converted with :func:`as_uint8_frames`); with ``ensemble`` N > 1,
        the combination of N noise draws (seeds ``seed`` .. ``seed + N - 1``)."""
        if self.ensemble_size > 1:
            return self.ensemble(rgb, frame_indices, seeds=self.ensemble_size, first_seed=seed)
        return self._predict_video(rgb, frame_indices, seed)

    @torch.no_grad()
    def _predict_video(self, rgb: np.ndarray, frame_indices: list[int] | None = None, seed: int = 0) -> np.ndarray:
        rgb, indices = self._check(rgb, frame_indices)
        if len(indices) <= self.window or self._uses_interpolator(indices):
            h, w = rgb.shape[1:3]
            return self._disparity(self.latents(rgb, indices, seed), h, w)
        g = torch.Generator(device=self.device).manual_seed(seed)
        out = np.zeros(rgb.shape[:3], np.float32)
        pos_of = {i: k for k, i in enumerate(indices)}

        def load(ii: list[int]) -> np.ndarray:
            return rgb[[pos_of[i] for i in ii]]

        for pos, depth in aligned_windows(load, indices, self.window, lambda f, ii: self._predict(f, ii, g)):
            out[pos] = depth
        return out

    def ensemble(self, rgb: np.ndarray, frame_indices: list[int] | None = None, seeds: int = 3,
                 first_seed: int = 0) -> np.ndarray:
        """Median of ``seeds`` predictions (different noise) after aligning them to one another."""
        from dav_builder.model.ensemble import ensemble as combine

        return combine([self._predict_video(rgb, frame_indices, seed=first_seed + s) for s in range(seeds)])
