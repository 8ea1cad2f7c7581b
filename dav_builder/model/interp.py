"""The keyframe-conditioned depth interpolation model (for long videos).

Input per frame: noisy depth latent, RGB latent, the keyframe depth latent where a frame is a
keyframe (zeros elsewhere) and the keyframe mask repeated to the latent's channels: 16 channels
for 4-channel latents.  It is fine-tuned from the video model with ``conv_in`` duplicated over
the two 8-channel groups and halved, as the paper does.
"""

from __future__ import annotations

import copy

import torch

from dav_builder.model.video_depth import DepthAnyVideo, widen_conv_in


class DepthInterpolator(DepthAnyVideo):
    extra_in_channels = 8

    @classmethod
    def in_channels(cls, cfg) -> int:
        return 4 * cfg.latent_channels

    @classmethod
    def from_video_model(cls, model: DepthAnyVideo) -> "DepthInterpolator":
        unet = copy.deepcopy(model.unet)
        widen_conv_in(unet, 4 * model.config.latent_channels, "duplicate")
        cfg = copy.deepcopy(model.config)
        cfg.task = "interp"
        return cls(copy.deepcopy(model.vae), unet, cfg)

    def _cond(self, rgb_latent: torch.Tensor, key_latent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[:, :, None, None, None].to(rgb_latent.dtype).expand_as(rgb_latent)
        return torch.cat([rgb_latent, key_latent * m, m], dim=2)

    def training_loss(self, rgb, depth, frame_indices, keyframe_mask, generator=None):  # type: ignore[override]
        x = self.encode_depth(depth)
        cond = self._cond(self.encode(rgb), x, keyframe_mask)
        return self._flow_loss(x, cond, frame_indices, generator)

    @torch.no_grad()
    def predict(self, rgb, frame_indices, key_depth=None, keyframe_mask=None, steps=None, generator=None):  # type: ignore[override]
        """Depth for every frame, given normalised depth at the keyframes (``keyframe_mask`` True)."""
        if key_depth is None or keyframe_mask is None:
            raise ValueError("the interpolation model needs key_depth and keyframe_mask")
        cond = self._cond(self.encode(rgb), self.encode_depth(key_depth), keyframe_mask)
        return self._sample(cond, frame_indices, steps, generator)
