"""The keyframe-conditioned depth interpolation model (for long videos).

Input per frame: noisy depth latent, RGB latent, the keyframe depth latent where a frame is a
keyframe (zeros elsewhere) and the keyframe mask repeated to the latent's channels: 16 channels
for 4-channel latents, in the released ``unet_interp``'s order.  It is fine-tuned from the video
model with ``conv_in`` duplicated over the two 8-channel groups and halved, as the paper does, or
loaded from the released folder's ``unet_interp/``.

It works on windows of ``config.window`` *consecutive* frames (18 for the released model: two
keyframes and the 16 frames between them) and is trained on such windows, so it is only ever used
at frame stride 1.  Its RoPE positions are the frames' offsets in the window (0, 1, 2...), as the
paper's pipeline gives it none.  The keyframe latents come straight from the video model (no
decoding and encoding again).
"""

from __future__ import annotations

import copy

import torch

from dav_builder.model.video_depth import DepthAnyVideo, widen_conv_in


class DepthInterpolator(DepthAnyVideo):
    extra_in_channels = 8
    released_subfolder = "unet_interp"

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

    @staticmethod
    def cond(rgb_latent: torch.Tensor, key_latent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[rgb latent, keyframe latents (0 elsewhere), mask] along channels; ``mask`` (B, T) bool."""
        m = mask[:, :, None, None, None].to(rgb_latent.dtype).expand_as(rgb_latent)
        return torch.cat([rgb_latent, key_latent * m, m], dim=2)

    @staticmethod
    def window_positions(frame_indices: torch.Tensor) -> torch.Tensor:
        return frame_indices - frame_indices[:, :1]

    def training_loss(self, rgb, depth, frame_indices, keyframe_mask, generator=None):  # type: ignore[override]
        x = self.encode_depth(depth)
        cond = self.cond(self.encode(rgb), x, keyframe_mask)
        return self._flow_loss(x, cond, self.window_positions(frame_indices), generator)

    @torch.no_grad()
    def interpolate_latents(self, rgb_latent: torch.Tensor, key_latent: torch.Tensor, keyframe_mask: torch.Tensor,
                            steps: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Depth latents of a window of consecutive frames given the keyframes' latents."""
        return self.sample_latents(self.cond(rgb_latent, key_latent, keyframe_mask), None, steps, generator, like=rgb_latent)

    @torch.no_grad()
    def predict(self, rgb, frame_indices, key_depth=None, keyframe_mask=None, steps=None, generator=None):  # type: ignore[override]
        """Depth for every frame, given normalised depth at the keyframes (``keyframe_mask`` True)."""
        if key_depth is None or keyframe_mask is None:
            raise ValueError("the interpolation model needs key_depth and keyframe_mask")
        z = self.interpolate_latents(self.encode(rgb), self.encode_depth(key_depth), keyframe_mask, steps, generator)
        return self.decode_depth(z).clamp(-1, 1)
