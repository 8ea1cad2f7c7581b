"""Model presets: the real SVD-XT architecture, and tiny sizes that train on a CPU in tests."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class ModelConfig:
    """What model ``dav-train`` builds."""

    preset: str = "tiny"
    """``tiny`` (random init, CPU tests and demos) or ``svd`` (Stable Video Diffusion weights)."""
    pretrained: str | None = None
    """``svd`` only: a local SVD diffusers folder (with unet/ and vae/) or a Hugging Face repo id found in
    the local cache, e.g. ``stabilityai/stable-video-diffusion-img2vid-xt``."""
    task: str = "video"
    """``video`` (depth from RGB) or ``interp`` (depth interpolation between keyframes)."""
    block_out_channels: list[int] = field(default_factory=lambda: [32, 64])
    """UNet widths for the tiny preset."""
    attention_heads: list[int] = field(default_factory=lambda: [2, 4])
    cross_attention_dim: int = 32
    layers_per_block: int = 1
    vae_channels: list[int] = field(default_factory=lambda: [32, 32, 32])
    """Tiny VAE widths (multiples of 32: GroupNorm); its downscale is 2^(len - 1)."""
    latent_channels: int = 4
    rope_theta: float = 10000.0
    """Base of the rotary position embedding in temporal attention."""
    flow_shift: float = 3.0
    """Timestep shift of the flow-matching schedule (as diffusers' FlowMatchEulerDiscreteScheduler)."""
    num_inference_steps: int = 3
    """Euler steps at inference (1 to 3 work)."""
    window: int = 16
    """Frames per model call in long-video inference."""

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"model: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(),
    "svd": ModelConfig(preset="svd", pretrained="stabilityai/stable-video-diffusion-img2vid-xt", window=25),
}
