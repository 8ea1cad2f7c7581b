"""The video depth model: SVD's spatio-temporal UNet and temporal VAE, conditioned on the video.

Per frame, the noisy depth latent and the RGB latent are concatenated (8 channels: depth first,
as the paper's released model).  SVD-XT's ``conv_in`` already takes 8 channels (noisy latent
plus the conditioning frame's latent), so pretrained weights are used as they are; a UNet with a
different input width is widened with :func:`widen_conv_in`, whose new input channels start at
zero so the pretrained behaviour is kept exactly.  The CLIP image embedding is a zero tensor
``(B, 1, cross_attention_dim)``, and SVD's added time ids (fps, motion bucket, noise
augmentation) are removed: their embedding's output layer is zeroed and frozen, so it adds
nothing and the UNet stays a stock diffusers class that loads and saves as usual.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from torch import nn

from dav_builder.model import flow
from dav_builder.model.config import ModelConfig
from dav_builder.model.rope import RopeContext, install_rope

MODEL_FILE = "dav_model.json"


class PretrainedMissingError(FileNotFoundError):
    """SVD weights were asked for and are not on this machine."""


def widen_conv_in(unet: nn.Module, in_channels: int, mode: str = "zero") -> None:
    """Give ``unet.conv_in`` ``in_channels`` inputs.

    ``zero``: new channels get zero weights (the output is unchanged for any input there).
    ``duplicate``: the weights are repeated over the channel groups and scaled by old/new, so the
    output is unchanged when every group receives the same input (the paper's "duplicate and halve").
    """
    old = unet.conv_in
    if old.in_channels == in_channels:
        return
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding)
    with torch.no_grad():
        new.bias.copy_(old.bias)
        if mode == "zero":
            new.weight.zero_()
            new.weight[:, : old.in_channels] = old.weight
        elif mode == "duplicate":
            reps = -(-in_channels // old.in_channels)
            w = old.weight.repeat(1, reps, 1, 1)[:, :in_channels]
            new.weight.copy_(w * old.in_channels / in_channels)
        else:
            raise ValueError(f"unknown widening mode {mode!r}")
    unet.conv_in = new
    unet.register_to_config(in_channels=in_channels)


def silence_added_time_ids(unet: nn.Module) -> None:
    """Make SVD's added-time-id embedding contribute exactly zero, and freeze it."""
    lin = unet.add_embedding.linear_2
    nn.init.zeros_(lin.weight)
    nn.init.zeros_(lin.bias)
    for p in unet.add_embedding.parameters():
        p.requires_grad_(False)


def tiny_unet(cfg: ModelConfig, in_channels: int):
    from diffusers import UNetSpatioTemporalConditionModel

    n = len(cfg.block_out_channels)
    return UNetSpatioTemporalConditionModel(
        in_channels=in_channels,
        out_channels=cfg.latent_channels,
        down_block_types=("CrossAttnDownBlockSpatioTemporal",) * (n - 1) + ("DownBlockSpatioTemporal",),
        up_block_types=("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * (n - 1),
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        cross_attention_dim=cfg.cross_attention_dim,
        num_attention_heads=tuple(cfg.attention_heads),
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=24,
    )


def tiny_vae(cfg: ModelConfig):
    from diffusers import AutoencoderKLTemporalDecoder

    n = len(cfg.vae_channels)
    return AutoencoderKLTemporalDecoder(
        down_block_types=("DownEncoderBlock2D",) * n,
        block_out_channels=tuple(cfg.vae_channels),
        layers_per_block=1,
        latent_channels=cfg.latent_channels,
    )


def _resolve_pretrained(name: str) -> Path:
    """A local SVD folder, or the snapshot of a repo id in the local Hugging Face cache."""
    p = Path(name).expanduser()
    if p.is_dir():
        return p
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True, allow_patterns=["unet/*", "vae/*", "*.json"]))
    except Exception:
        raise PretrainedMissingError(
            f"Stable Video Diffusion weights {name!r} not found: give model.pretrained as a local diffusers folder "
            "holding unet/ and vae/ (e.g. a download of stabilityai/stable-video-diffusion-img2vid-xt), or put that "
            "repository in the local Hugging Face cache (huggingface-cli download "
            "stabilityai/stable-video-diffusion-img2vid-xt on a machine with internet)"
        ) from None


class DepthAnyVideo(nn.Module):
    """VAE (frozen) + UNet predicting the flow-matching velocity of the depth latent."""

    extra_in_channels = 0  # latent channels beyond [noisy depth, rgb]; the interpolator adds 8

    def __init__(self, vae: nn.Module, unet: nn.Module, config: ModelConfig):
        super().__init__()
        self.vae, self.unet, self.config = vae, unet, config
        self.vae.requires_grad_(False)
        self.vae.eval()
        self.rope = RopeContext()
        install_rope(self.unet, self.rope, config.rope_theta)
        silence_added_time_ids(self.unet)

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def in_channels(cls, cfg: ModelConfig) -> int:
        return 2 * cfg.latent_channels + cls.extra_in_channels

    @classmethod
    def build(cls, cfg: ModelConfig) -> "DepthAnyVideo":
        if cfg.preset == "svd" or cfg.pretrained:
            from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel

            root = _resolve_pretrained(cfg.pretrained or PRESET_SVD_REPO)
            vae = AutoencoderKLTemporalDecoder.from_pretrained(root / "vae")
            unet = UNetSpatioTemporalConditionModel.from_pretrained(root / "unet")
            widen_conv_in(unet, cls.in_channels(cfg), "zero")
            cfg = dataclasses.replace(cfg, latent_channels=vae.config.latent_channels,
                                      cross_attention_dim=unet.config.cross_attention_dim)
        else:
            vae, unet = tiny_vae(cfg), tiny_unet(cfg, cls.in_channels(cfg))
        return cls(vae, unet, cfg)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Diffusers format: ``unet/`` and ``vae/`` (loadable by the diffusers classes) + our config."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.unet.save_pretrained(d / "unet")
        self.vae.save_pretrained(d / "vae")
        cfg = dataclasses.asdict(self.config)
        (d / MODEL_FILE).write_text(json.dumps({"class": type(self).__name__, "config": cfg}, indent=1))
        return d

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "DepthAnyVideo":
        from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel

        d = Path(directory)
        if not (d / MODEL_FILE).is_file():
            raise FileNotFoundError(f"{d}: no {MODEL_FILE}; is this a model saved by dav-train?")
        meta = json.loads((d / MODEL_FILE).read_text())
        cfg = ModelConfig.from_dict(meta["config"])
        vae = AutoencoderKLTemporalDecoder.from_pretrained(d / "vae")
        unet = UNetSpatioTemporalConditionModel.from_pretrained(d / "unet")
        return cls(vae, unet, cfg)

    @property
    def spatial_multiple(self) -> int:
        """Frame sizes must be multiples of this: the VAE's downscale times the UNet's."""
        vae = 2 ** (len(self.vae.config.block_out_channels) - 1)
        return vae * 2 ** (len(self.unet.config.block_out_channels) - 1)

    def forward(self, *args, **kwargs) -> torch.Tensor:
        """The training loss (so the model can be wrapped in DistributedDataParallel)."""
        return self.training_loss(*args, **kwargs)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.unet.parameters() if p.requires_grad]

    def enable_gradient_checkpointing(self) -> None:
        self.unet.enable_gradient_checkpointing()

    # -- latents --------------------------------------------------------------------------

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) in [-1, 1] -> latents (B, T, C, h, w) (distribution mode, scaled)."""
        b, t = x.shape[:2]
        z = self.vae.encode(x.flatten(0, 1).to(self.vae.dtype)).latent_dist.mode() * self.scaling_factor
        return z.unflatten(0, (b, t))

    @torch.no_grad()
    def decode_depth(self, z: torch.Tensor) -> torch.Tensor:
        """Depth latents (B, T, C, h, w) -> (B, T, H, W), channel mean of the decoded image."""
        b, t = z.shape[:2]
        img = self.vae.decode(z.flatten(0, 1) / self.scaling_factor, num_frames=t).sample
        return img.float().mean(dim=1).unflatten(0, (b, t))

    def encode_depth(self, depth: torch.Tensor) -> torch.Tensor:
        """Normalised depth (B, T, H, W) in [-1, 1], replicated to 3 channels and encoded."""
        return self.encode(depth[:, :, None].expand(-1, -1, 3, -1, -1))

    # -- the network ----------------------------------------------------------------------

    def velocity(self, x_t: torch.Tensor, cond: torch.Tensor, t: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """UNet velocity for noisy depth latents ``x_t`` and conditioning latents ``cond`` (B, T, *, h, w)."""
        b = x_t.shape[0]
        sample = torch.cat([x_t, cond], dim=2)
        ctx = torch.zeros(b, 1, self.unet.config.cross_attention_dim, device=x_t.device, dtype=sample.dtype)
        time_ids = torch.zeros(b, 3, device=x_t.device, dtype=sample.dtype)  # embedded to exactly zero
        with self.rope(positions.to(x_t.device)):
            return self.unet(sample, flow.timestep_input(t).to(sample.dtype), ctx, time_ids).sample

    def training_loss(self, rgb: torch.Tensor, depth: torch.Tensor, frame_indices: torch.Tensor,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Flow-matching MSE on the depth latent."""
        x = self.encode_depth(depth)
        cond = self.encode(rgb)
        return self._flow_loss(x, cond, frame_indices, generator)

    def _flow_loss(self, x: torch.Tensor, cond: torch.Tensor, positions: torch.Tensor,
                   generator: torch.Generator | None) -> torch.Tensor:
        gen_device = generator.device if generator is not None else x.device
        noise = torch.randn(x.shape, generator=generator, device=gen_device).to(x.device, x.dtype)
        t = flow.sample_t(x.shape[0], self.config.flow_shift, generator, device=gen_device).to(x.device)
        x_t = flow.interpolate(x, noise, t)
        pred = self.velocity(x_t, cond, t, positions)
        return torch.nn.functional.mse_loss(pred.float(), flow.velocity_target(x, noise).float())

    @torch.no_grad()
    def _sample(self, cond: torch.Tensor, positions: torch.Tensor, steps: int | None,
                generator: torch.Generator | None) -> torch.Tensor:
        b, t, _, h, w = cond.shape
        shape = (b, t, self.config.latent_channels, h, w)
        gen_device = generator.device if generator is not None else cond.device
        noise = torch.randn(shape, generator=generator, device=gen_device).to(cond.device, cond.dtype)
        steps = steps or self.config.num_inference_steps
        z = flow.euler_sample(lambda x, tt: self.velocity(x, cond, tt, positions), noise, steps, self.config.flow_shift)
        return self.decode_depth(z).clamp(-1, 1)

    @torch.no_grad()
    def predict(self, rgb: torch.Tensor, frame_indices: torch.Tensor, steps: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Normalised disparity (B, T, H, W) in [-1, 1] for RGB (B, T, 3, H, W) in [-1, 1]."""
        return self._sample(self.encode(rgb), frame_indices, steps, generator)


PRESET_SVD_REPO = "stabilityai/stable-video-diffusion-img2vid-xt"
