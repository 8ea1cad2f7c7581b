"""Rotary position embedding in SVD's temporal attention, fed with the frames' true indices.

SVD's temporal transformer adds a learned embedding of ``arange(num_frames)`` to its input, so
it only knows a frame's rank in the batch.  We replace it (its weights are zeroed and frozen by
:func:`dav_builder.model.layout.silence_removed_modules`; the paper's class has no such module) with RoPE on the temporal self-attention's queries and keys, rotated by each frame's
*original* index (``frame_indices`` from the shard), so frame dropout keeps true time gaps and
keyframes far apart keep their distance.  Keys of the temporal cross-attention are not rotated
(they come from the zero context).

Positions reach the attention processors through a :class:`RopeContext` that the model sets
around each UNet call (diffusers' ``UNetSpatioTemporalConditionModel.forward`` passes no
attention kwargs); one context per model instance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RopeContext:
    """Holds the (batch, frames) positions of the current UNet call."""

    def __init__(self) -> None:
        self.positions: torch.Tensor | None = None

    def __call__(self, positions: torch.Tensor) -> "RopeContext":
        self.positions = positions
        return self

    def __enter__(self) -> "RopeContext":
        return self

    def __exit__(self, *exc) -> None:
        self.positions = None


def rope_angles(positions: torch.Tensor, dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (N, T, dim/2) for integer positions (N, T)."""
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) / dim))
    ang = positions.to(torch.float32)[..., None] * inv
    return ang.cos(), ang.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs of channels of x (N, heads, T, dim) by the angles (N, T, dim/2)."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    c, s = cos[:, None].to(x.dtype), sin[:, None].to(x.dtype)
    out = torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1)
    return out.flatten(-2)


class RopeTemporalAttnProcessor:
    """Self-attention over frames with RoPE on q and k (diffusers Attention processor)."""

    def __init__(self, ctx: RopeContext, theta: float = 10000.0):
        self.ctx = ctx
        self.theta = theta

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        if encoder_hidden_states is not None:
            raise ValueError("RoPE processor is for temporal self-attention only")
        n, t, _ = hidden_states.shape
        q, k, v = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        heads = attn.heads
        q, k, v = (x.view(n, t, heads, -1).transpose(1, 2) for x in (q, k, v))
        pos = self.ctx.positions
        if pos is None:
            pos = torch.arange(t, device=q.device)[None].expand(n, t)
        else:
            if pos.shape[-1] != t or n % pos.shape[0]:
                raise ValueError(f"RoPE positions {tuple(pos.shape)} do not match attention batch {n} x {t} frames")
            pos = pos.to(q.device).repeat_interleave(n // pos.shape[0], dim=0)
        cos, sin = rope_angles(pos, q.shape[-1], self.theta)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(n, t, -1).to(q.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


def install_rope(unet: nn.Module, ctx: RopeContext, theta: float) -> int:
    """Put RoPE into every temporal self-attention of an SVD UNet.

    Returns the number of attention layers changed.  (The temporal cross-attention is left as it is:
    its single key comes from the zero context, so rotating its query, as the paper's code does,
    cannot change its output.)
    """
    from diffusers.models.transformers.transformer_temporal import TransformerSpatioTemporalModel

    n = 0
    for module in unet.modules():
        if isinstance(module, TransformerSpatioTemporalModel):
            for block in module.temporal_transformer_blocks:
                block.attn1.set_processor(RopeTemporalAttnProcessor(ctx, theta))
                n += 1
    return n
