"""Per-clip depth normalisation to the model's [-1, 1] range.

We normalise *disparity* (1 / depth), not depth: it is what the paper's model outputs and its
evaluation aligns to, it stays bounded where depth is not (sky and far background go to 0 instead
of hundreds of metres), and it gives near structure, where depth errors matter most, the most
of the range.  Per clip, the 2 % and 98 % quantiles of valid disparity map to -1 and 1 (the
paper's formula, applied to disparity); invalid pixels (depth 0: sky) get disparity 0, i.e. the far end.
"""

from __future__ import annotations

import torch


def normalize_depth(depth: torch.Tensor, valid: torch.Tensor | None = None, q: float = 0.02) -> torch.Tensor:
    """Metres (B, T, H, W) -> normalised disparity in [-1, 1], per clip (per batch element)."""
    if valid is None:
        valid = depth > 0
    disp = torch.where(valid, 1.0 / depth.clamp_min(1e-6), torch.zeros_like(depth))
    out = torch.empty_like(disp)
    for b in range(disp.shape[0]):
        v = disp[b][valid[b]]
        if v.numel() < 2:
            out[b] = 0.0
            continue
        lo, hi = torch.quantile(v.float(), torch.tensor([q, 1 - q], device=v.device)).tolist()
        scale = max(hi - lo, 1e-6)
        out[b] = ((disp[b] - lo) / scale).clamp(0, 1) * 2 - 1
    return out


def to_disparity01(pred: torch.Tensor) -> torch.Tensor:
    """Model output in [-1, 1] -> affine-invariant disparity in [0, 1] (higher = nearer)."""
    return (pred.clamp(-1, 1) + 1) / 2
