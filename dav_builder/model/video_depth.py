"""The video depth model: SVD's spatio-temporal UNet and temporal VAE, conditioned on the video.

Per frame, the noisy depth latent and the RGB latent are concatenated (8 channels: depth first,
as the paper's released model).  SVD-XT's ``conv_in`` already takes 8 channels (noisy latent
plus the conditioning frame's latent), so pretrained weights are used as they are; a UNet with a
different input width is widened with :func:`widen_conv_in`, whose new input channels start at
zero so the pretrained behaviour is kept exactly.  The CLIP image embedding is a zero tensor
``(B, 1, cross_attention_dim)``, and SVD's added time ids (fps, motion bucket, noise
augmentation) and frame embedding are removed: every weight of those embeddings is zero and
frozen (:func:`dav_builder.model.layout.silence_removed_modules`), so they add exactly nothing and
the UNet stays a stock diffusers class, which with :mod:`.rope` is the paper's
``UNetSpatioTemporalRopeConditionModel``.

Folders: :meth:`DepthAnyVideo.from_pretrained` reads the released layout (``vae/``,
``scheduler/``, ``unet/``, ``unet_interp/``; see :mod:`.layout`) with or without dav-train's
``dav_model.json``, and :meth:`DepthAnyVideo.save_pretrained` writes that same layout, so
``RUN/final`` and the released weights load the same way.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from torch import nn

from dav_builder.model import flow, layout
from dav_builder.model.config import ModelConfig
from dav_builder.model.rope import RopeContext, install_rope

MODEL_FILE = "dav_model.json"
PRESET_SVD_REPO = "stabilityai/stable-video-diffusion-img2vid-xt"
RELEASED_WINDOW = 32
"""The released pipeline's frames per video-model call (``num_frames``)."""
RELEASED_INTERP_WINDOW = 18
"""The released interpolator's window: 16 frames between two keyframes (``num_interp_frames + 2``)."""
DECODE_CHUNK = 16


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


@torch.no_grad()
def flip_velocity(unet: nn.Module) -> None:
    """Negate the UNet's output (``conv_out``): converts a ``data_minus_noise`` model to ``noise_minus_data``
    exactly (the last layer is linear)."""
    unet.conv_out.weight.neg_()
    if unet.conv_out.bias is not None:
        unet.conv_out.bias.neg_()


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
    """VAE (frozen) + UNet predicting the flow-matching velocity (noise - data) of the depth latent."""

    extra_in_channels = 0  # latent channels beyond [noisy depth, rgb]; the interpolator adds 8
    released_subfolder = "unet"  # where the released layout keeps this model's UNet

    def __init__(self, vae: nn.Module, unet: nn.Module, config: ModelConfig):
        super().__init__()
        self.vae, self.unet, self.config = vae, unet, config
        self.vae.requires_grad_(False)
        self.vae.eval()
        self.rope = RopeContext()
        install_rope(self.unet, self.rope, config.rope_theta)
        layout.silence_removed_modules(self.unet)

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
        """The released layout: ``unet/`` (the paper's UNet class), ``vae/``, ``scheduler/``, + ``dav_model.json``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        layout.save_unet(self.unet, d / "unet")
        self.vae.save_pretrained(d / "vae")
        layout.save_scheduler(d / "scheduler", self.config.flow_shift)
        cfg = dataclasses.asdict(self.config)
        (d / MODEL_FILE).write_text(json.dumps({"class": type(self).__name__, "config": cfg}, indent=1))
        return d

    @classmethod
    def released_config(cls, d: Path, unet_dir: Path) -> ModelConfig:
        """A ModelConfig describing a released folder (no ``dav_model.json``): read from its configs."""
        u = json.loads((unet_dir / "config.json").read_text())
        v = json.loads((d / "vae" / "config.json").read_text())
        heads = u.get("num_attention_heads", [])
        interp = cls.extra_in_channels > 0
        return ModelConfig(
            preset="released", pretrained=str(d), task="interp" if interp else "video",
            block_out_channels=list(u["block_out_channels"]),
            attention_heads=list(heads) if isinstance(heads, (list, tuple)) else [heads] * len(u["block_out_channels"]),
            cross_attention_dim=int(u["cross_attention_dim"]), layers_per_block=int(u.get("layers_per_block", 2)),
            vae_channels=list(v.get("block_out_channels", [])), latent_channels=int(v.get("latent_channels", 4)),
            flow_shift=layout.scheduler_shift(d / "scheduler"), num_inference_steps=3,
            window=RELEASED_INTERP_WINDOW if interp else RELEASED_WINDOW)

    @classmethod
    def from_pretrained(cls, directory: str | Path, subfolder: str | None = None) -> "DepthAnyVideo":
        """A dav-train export (``RUN/final``) or the released folder, with RoPE: the model as trained.

        ``subfolder`` picks the UNet (default ``unet``; the interpolator reads ``unet_interp`` of the
        released folder and ``unet`` of its own runs).
        """
        from diffusers import AutoencoderKLTemporalDecoder

        d = Path(directory)
        meta_path = d / MODEL_FILE
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            raw = dict(meta["config"])
            raw.setdefault("velocity", "data_minus_noise")  # saved before the convention was recorded
            cfg = ModelConfig.from_dict(raw)
            unet_dir = d / (subfolder or "unet")
        elif layout.is_released_layout(d):
            unet_dir = d / (subfolder or cls.released_subfolder)
            if not (unet_dir / "config.json").is_file():
                raise FileNotFoundError(f"{d}: no {unet_dir.name}/ (a released Depth Any Video folder has unet/ and "
                                        "unet_interp/)")
            cfg = cls.released_config(d, unet_dir)
        else:
            raise FileNotFoundError(f"{d}: neither a dav-train model ({MODEL_FILE}) nor the released Depth Any Video "
                                    "layout (vae/, scheduler/, unet/ with their config files)")
        vae = AutoencoderKLTemporalDecoder.from_pretrained(d / "vae")
        unet = layout.load_unet(unet_dir)
        if cfg.velocity == "data_minus_noise":
            flip_velocity(unet)
            cfg = dataclasses.replace(cfg, velocity=flow.VELOCITY)
        elif cfg.velocity != flow.VELOCITY:
            raise ValueError(f"{meta_path}: unknown velocity convention {cfg.velocity!r}")
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
    def decode_depth(self, z: torch.Tensor, chunk: int = DECODE_CHUNK) -> torch.Tensor:
        """Depth latents (B, T, C, h, w) -> (B, T, H, W), channel mean of the decoded image.

        The temporal decoder runs on ``chunk`` frames at a time (of the flattened batch, as the
        paper's pipeline does), so memory does not grow with the video.
        """
        b, t = z.shape[:2]
        flat = z.flatten(0, 1) / self.scaling_factor
        parts = []
        for i in range(0, flat.shape[0], chunk):
            part = flat[i : i + chunk].to(self.vae.dtype)
            parts.append(self.vae.decode(part, num_frames=part.shape[0]).sample.float())
        return torch.cat(parts).mean(dim=1).unflatten(0, (b, t))

    def encode_depth(self, depth: torch.Tensor) -> torch.Tensor:
        """Normalised depth (B, T, H, W) in [-1, 1], replicated to 3 channels and encoded."""
        return self.encode(depth[:, :, None].expand(-1, -1, 3, -1, -1))

    # -- the network ----------------------------------------------------------------------

    def velocity(self, x_t: torch.Tensor, cond: torch.Tensor, timestep: torch.Tensor,
                 positions: torch.Tensor | None) -> torch.Tensor:
        """UNet velocity (noise - data) for noisy depth latents ``x_t`` and conditioning latents ``cond``
        (B, T, *, h, w) at UNet timestep ``timestep`` (sigma x 1000, shape (B,)); ``positions`` (B, T) are
        the frames' RoPE positions (None: 0, 1, 2...)."""
        b = x_t.shape[0]
        sample = torch.cat([x_t, cond], dim=2)
        ctx = torch.zeros(b, 1, self.unet.config.cross_attention_dim, device=x_t.device, dtype=sample.dtype)
        time_ids = torch.zeros(b, 3, device=x_t.device, dtype=sample.dtype)  # embedded to exactly zero
        with self.rope(positions.to(x_t.device) if positions is not None else None):
            return self.unet(sample, timestep.to(x_t.device), ctx, time_ids).sample

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
        sigma = flow.sample_sigma(x.shape[0], self.config.flow_shift, generator, device=gen_device).to(x.device)
        self.last_sigma = sigma.detach()
        x_t = flow.interpolate(x, noise, sigma)
        pred = self.velocity(x_t, cond, flow.timestep_input(sigma).to(x_t.dtype), positions)
        return torch.nn.functional.mse_loss(pred.float(), flow.velocity_target(x, noise).float())

    @torch.no_grad()
    def sample_latents(self, cond: torch.Tensor, positions: torch.Tensor | None, steps: int | None,
                       generator: torch.Generator | None, like: torch.Tensor | None = None) -> torch.Tensor:
        """Depth latents (B, T, C, h, w) from noise drawn with ``generator``, given the conditioning latents.

        The noise has the shape and memory layout of ``like`` (the RGB latent; default ``cond``) and is
        drawn in that layout's order, as ``torch.randn_like`` of the RGB latent does in the paper's
        pipeline, so the same seed gives the same noise.
        """
        like = cond if like is None else like
        gen_device = generator.device if generator is not None else cond.device
        if gen_device == like.device:
            noise = torch.empty_like(like, dtype=cond.dtype).normal_(generator=generator)
        else:
            noise = torch.randn(like.shape, generator=generator, device=gen_device).to(cond.device, cond.dtype)
        steps = steps or self.config.num_inference_steps
        return flow.euler_sample(lambda x, ts: self.velocity(x, cond, ts, positions), noise, steps,
                                 self.config.flow_shift)

    @torch.no_grad()
    def _sample(self, cond: torch.Tensor, positions: torch.Tensor | None, steps: int | None,
                generator: torch.Generator | None) -> torch.Tensor:
        return self.decode_depth(self.sample_latents(cond, positions, steps, generator)).clamp(-1, 1)

    @torch.no_grad()
    def predict(self, rgb: torch.Tensor, frame_indices: torch.Tensor | None, steps: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Normalised disparity (B, T, H, W) in [-1, 1] for RGB (B, T, 3, H, W) in [-1, 1]."""
        return self._sample(self.encode(rgb), frame_indices, steps, generator)


