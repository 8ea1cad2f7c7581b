"""A tiny random Depth Any Video in exactly the released folder layout, and the paper's pipeline steps
re-implemented plainly on it (the reference the project's code is compared with).

The layout: ``vae/`` (AutoencoderKLTemporalDecoder), ``scheduler/`` (FlowMatchEulerDiscreteScheduler,
shift 3.0), ``unet/`` and ``unet_interp/`` whose config names the class
``UNetSpatioTemporalRopeConditionModel`` with that class's config keys only, and whose weights lack the
stock SVD UNet's ``add_embedding`` and ``time_pos_embed`` (the released class has neither).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

UNET_KEYS = ["sample_size", "in_channels", "out_channels", "down_block_types", "up_block_types",
             "block_out_channels", "addition_time_embed_dim", "projection_class_embeddings_input_dim",
             "layers_per_block", "cross_attention_dim", "transformer_layers_per_block", "num_attention_heads",
             "num_frames"]
CROSS_DIM = 32


def _unet_config(in_channels: int) -> dict:
    return {"sample_size": None, "in_channels": in_channels, "out_channels": 4,
            "down_block_types": ["CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"],
            "up_block_types": ["UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"],
            "block_out_channels": [32, 64], "addition_time_embed_dim": 8, "projection_class_embeddings_input_dim": 24,
            "layers_per_block": 1, "cross_attention_dim": CROSS_DIM, "transformer_layers_per_block": 1,
            "num_attention_heads": [2, 4], "num_frames": 25}


def _save_unet(folder: Path, in_channels: int, seed: int) -> None:
    from diffusers import UNetSpatioTemporalConditionModel
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    cfg = _unet_config(in_channels)
    unet = UNetSpatioTemporalConditionModel(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
    with torch.no_grad():
        for name, p in unet.named_parameters():  # informative outputs: nothing left at its zero init
            if name.startswith("conv_out") or "proj_out" in name or "to_out" in name:
                p.normal_(0, 0.05)
    state = {k: v.contiguous() for k, v in unet.state_dict().items()
             if not (k.startswith("add_embedding.") or ".time_pos_embed." in k)}
    folder.mkdir(parents=True)
    save_file(state, str(folder / "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(
        {"_class_name": "UNetSpatioTemporalRopeConditionModel", "_diffusers_version": "0.25.1", **cfg}, indent=2))


def save_released_layout(root: Path, seed: int = 0) -> Path:
    from diffusers import AutoencoderKLTemporalDecoder

    torch.manual_seed(seed)
    vae = AutoencoderKLTemporalDecoder(down_block_types=("DownEncoderBlock2D",) * 3, block_out_channels=(32, 32, 32),
                                       layers_per_block=1, latent_channels=4)
    vae.save_pretrained(root / "vae")
    (root / "scheduler").mkdir(parents=True)
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(
        {"_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": "0.30.0",
         "num_train_timesteps": 1000, "shift": 3.0}, indent=2))
    _save_unet(root / "unet", 8, seed + 1)
    _save_unet(root / "unet_interp", 16, seed + 2)
    return root


# -- the reference: the paper's pipeline steps, written out plainly --------------------------------


class _Positions:
    ids: torch.Tensor | None = None


class _RotaryTemporalProcessor:
    """Temporal attention with rotary embedding as the paper's code applies it: each channel pair (2i, 2i+1)
    multiplied by the 2x2 rotation of angle pos / 10000^(2i/d); queries always, keys only in self-attention."""

    def __init__(self, positions: _Positions):
        self.positions = positions

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        n, t, _ = hidden_states.shape
        cross = encoder_hidden_states is not None
        ctx = encoder_hidden_states if cross else hidden_states
        q, k, v = attn.to_q(hidden_states), attn.to_k(ctx), attn.to_v(ctx)
        h = attn.heads
        q, k, v = (x.view(n, x.shape[1], h, -1).transpose(1, 2) for x in (q, k, v))
        d = q.shape[-1]
        ids = self.positions.ids
        ids = torch.arange(t)[None].expand(n, t) if ids is None else ids.repeat_interleave(n // ids.shape[0], 0)
        omega = 1.0 / (10000.0 ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
        ang = ids.double()[..., None] * omega  # (n, t, d/2)
        rot = torch.stack([torch.stack([ang.cos(), -ang.sin()], -1), torch.stack([ang.sin(), ang.cos()], -1)], -2)
        rot = rot.float()[:, None]  # (n, 1, t, d/2, 2, 2)

        def rotate(x):
            pairs = x.float().reshape(*x.shape[:-1], d // 2, 2, 1)
            return (rot @ pairs).reshape(x.shape).to(x.dtype)

        q = rotate(q)
        if not cross:
            k = rotate(k)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, t, -1)
        return attn.to_out[1](attn.to_out[0](out))


def reference_unet(folder: Path):
    """The released UNet rebuilt from its files: the stock diffusers class, the file's weights, the two
    modules the released class lacks set to zero, rotary temporal attention.  Returns (unet, call) where
    ``call(sample, t, context, position_ids)`` is the released class's forward."""
    from diffusers import UNetSpatioTemporalConditionModel
    from diffusers.models.transformers.transformer_temporal import TransformerSpatioTemporalModel
    from safetensors.torch import load_file

    cfg = json.loads((folder / "config.json").read_text())
    unet = UNetSpatioTemporalConditionModel(**{k: tuple(v) if isinstance(v, list) else v
                                               for k, v in cfg.items() if k in UNET_KEYS})
    state = load_file(str(folder / "diffusion_pytorch_model.safetensors"))
    missing, unexpected = unet.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("add_embedding.") or ".time_pos_embed." in k for k in missing)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if name in missing:
                p.zero_()
    positions = _Positions()
    for m in unet.modules():
        if isinstance(m, TransformerSpatioTemporalModel):
            for block in m.temporal_transformer_blocks:
                block.attn1.set_processor(_RotaryTemporalProcessor(positions))
                block.attn2.set_processor(_RotaryTemporalProcessor(positions))
    unet.eval()

    def call(sample, t, context, position_ids=None):
        positions.ids = position_ids
        try:
            b = sample.shape[0]
            return unet(sample, t, context, torch.zeros(b, 3)).sample
        finally:
            positions.ids = None

    return unet, call


class ReferencePipeline:
    """The released pipeline's inference steps (single window, and keyframes + interpolation)."""

    def __init__(self, root: Path):
        from diffusers import AutoencoderKLTemporalDecoder, FlowMatchEulerDiscreteScheduler

        self.vae = AutoencoderKLTemporalDecoder.from_pretrained(root / "vae").eval()
        self.scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(root / "scheduler")
        _, self.unet = reference_unet(root / "unet")
        _, self.unet_interp = reference_unet(root / "unet_interp")

    def encode(self, rgb):
        n = rgb.shape[1]
        z = self.vae.encode(rgb.flatten(0, 1)).latent_dist.mode() * self.vae.config.scaling_factor
        return z.reshape(-1, n, *z.shape[1:])

    def decode(self, latents, chunk=16):
        n = latents.shape[1]
        flat = latents.flatten(0, 1) / self.vae.config.scaling_factor
        frames = torch.cat([self.vae.decode(flat[i : i + chunk], num_frames=flat[i : i + chunk].shape[0]).sample
                            for i in range(0, flat.shape[0], chunk)])
        return frames.reshape(-1, n, *frames.shape[1:])

    def _denoise(self, unet, rgb_latent, cond, steps, position_ids=None):
        latent = torch.randn_like(rgb_latent)
        self.scheduler.set_timesteps(steps)
        context = torch.zeros(latent.shape[0], 1, CROSS_DIM)
        for t in self.scheduler.timesteps:
            out = unet(torch.cat([latent, cond], dim=2), t, context, position_ids)
            latent = self.scheduler.step(out, t, latent).prev_sample
        return latent

    @torch.no_grad()
    def single(self, rgb, steps, position_ids=None):
        rgb_latent = self.encode(rgb)
        return self._denoise(self.unet, rgb_latent, rgb_latent, steps, position_ids)

    @torch.no_grad()
    def disparity(self, latents):
        return torch.clamp(self.decode(latents).mean(dim=2) * 0.5 + 0.5, 0.0, 1.0)

    @torch.no_grad()
    def long(self, rgb, steps, num_frames=32, num_interp=16, num_overlap=6):
        """Latents of frames key[0] + 1 .. key[-1] - 1, as the released pipeline returns them."""
        n = rgb.shape[1]
        keys = []
        for i in range(0, n, num_interp + 2 - num_overlap):
            if i + num_interp + 1 >= n or len(keys) >= num_frames:
                break
            keys += [i, i + num_interp + 1]
        keys = torch.tensor(keys)
        ordered, back = torch.sort(keys)
        key_latent = self.single(rgb[:, ordered], steps, ordered[None])[:, back]
        pieces, previous = [], None
        k = num_overlap - 2
        for i in range(0, len(keys), 2):
            known = torch.zeros(1, num_interp + 2, *key_latent.shape[2:])
            known[:, 0], known[:, -1] = key_latent[:, i], key_latent[:, i + 1]
            mask = torch.zeros_like(known)
            mask[:, [0, -1]] = 1.0
            rgb_latent = self.encode(rgb[:, int(keys[i]) : int(keys[i + 1]) + 1])
            cond = torch.cat([rgb_latent, known, mask], dim=2)
            latent = self._denoise(self.unet_interp, rgb_latent, cond, steps)[:, 1:-1]
            if previous is not None:
                ratio = torch.linspace(0, 1, k).view(1, -1, 1, 1, 1)
                previous[:, -k:] = previous[:, -k:] * (1 - ratio) + latent[:, :k] * ratio
                pieces.append(previous)
            previous = latent[:, k if i > 0 else 0 :]
        pieces.append(previous)
        return torch.cat(pieces, dim=1), int(keys[0]) + 1, int(keys[-1])
