"""Model presets: the real SVD-XT architecture, and tiny sizes that train on a CPU in tests."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from dav_builder.config_io import deep_update, read_yaml, strict_dataclass


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
    """Frames per model call in long-video inference (the video model's; an interpolator has its own,
    the length of the consecutive-frame windows it was trained on: 18 for the released one)."""
    velocity: str = "noise_minus_data"
    """What the UNet predicts: ``noise_minus_data`` (diffusers' flow-matching scheduler and the released
    weights).  Models saved before this field existed predicted ``data_minus_noise`` and are converted
    when loaded (see :mod:`dav_builder.model.flow`)."""

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        return strict_dataclass(cls, data, "model")


PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(),
    "svd": ModelConfig(preset="svd", pretrained="stabilityai/stable-video-diffusion-img2vid-xt", window=25),
}

PRESET_SVD_REPO_ID = "stabilityai/stable-video-diffusion-img2vid-xt"


@dataclass
class TrainConfig:
    """How ``dav-train`` trains.  Every field can be set in the YAML's ``train:`` section."""

    max_steps: int = 1000
    """Optimizer steps in all (each of ``grad_accum`` micro-batches)."""
    lr: float = 3e-5
    """Peak AdamW learning rate (3e-5 for SVD weights, as Marigold; the tiny preset uses 1e-3)."""
    weight_decay: float = 1e-2
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_steps: int = 100
    """Linear warm-up from 0 to ``lr``; then constant, or cosine down to ``min_lr_ratio`` x lr."""
    schedule: str = "constant"
    """``constant`` or ``cosine`` after the warm-up."""
    min_lr_ratio: float = 0.1
    grad_accum: int = 1
    """Micro-batches per optimizer step (all from the same bucket plan, one bucket each)."""
    max_grad_norm: float = 1.0
    """Gradient clipping (0 = off)."""
    batch_size: int = 2
    """Clips per micro-batch, for buckets not listed in ``batch_sizes``."""
    batch_sizes: dict[str, int] = field(default_factory=dict)
    """Batch size per bucket name (e.g. ``{"352x640-32f": 1, "352x640-1f": 16}``): video packing."""
    sample_frames: int = 8
    """Frame dropout: frames drawn (sorted, at random) from each clip; their original indices are the
    RoPE positions.  Clips with fewer frames are used whole; 0 = always whole clips."""
    max_frame_stride: int = 0
    """When > 0, sampled frames lie within a span of ``sample_frames * max_frame_stride`` frames."""
    scale: float = 1.0
    """Resize factor applied to frames before the centre crop to a multiple of the model's stride."""
    val_fraction: float = 0.05
    """Share of kept clips held out for validation (chosen by a hash of the clip id: stable)."""
    val_every: int = 100
    """Steps between validation passes (0 = only at the end)."""
    val_batches: int = 4
    """Micro-batches per validation pass (fixed batches and noise, so the curve is comparable)."""
    checkpoint_every: int = 200
    """Steps between checkpoints (a checkpoint is also written at the end)."""
    keep_checkpoints: int = 2
    ema_decay: float = 0.999
    """EMA of the trainable weights (0 = off); the exported model uses the EMA weights."""
    mixed_precision: str = "auto"
    """``auto`` (bf16 on CUDA when supported, else fp16 on CUDA, fp32 on CPU), ``bf16``, ``fp16`` or ``no``."""
    gradient_checkpointing: bool = False
    num_workers: int = 2
    """DataLoader worker processes reading and decoding shards (0 = in the training process)."""
    seed: int = 0
    init_from: str | None = None
    """Weights to start from: a dav-train run or export, or the released Depth Any Video folder (``vae/``,
    ``scheduler/``, ``unet/``, ``unet_interp/``).  ``video`` task: its video UNet and VAE (instead of
    ``model.pretrained``); ``interp`` task (required): its ``unet_interp/`` when it has one, else the
    interpolator is widened from its video UNet."""
    frame_pixel_budget: int = 0
    """When > 0, a bucket's batch size is ``budget // (frames x height x width)`` of its clips as trained
    (after frame dropout, ``scale`` and the crop), at least 1, so every micro-batch costs about the same
    memory; ``batch_sizes`` still overrides single buckets."""
    log_every: int = 1
    """Steps between lines of metrics.jsonl."""
    eval_clips: int = 2
    """Held-out (validation) clips, the longest, on which AbsRel, delta1 and TAE are measured during training and
    logged as eval_abs_rel, eval_delta1, eval_tae (0 = off); see dav_builder/evaluation/heldout.py."""
    eval_frames: int = 8
    """First frames of each of those clips that are predicted (0 = all)."""
    eval_every: int = 0
    """Steps between those evaluations (0 = with every validation pass, ``val_every``); also at the end."""
    eval_steps: int = 1
    """Euler steps of the predictions scored during training."""
    tensorboard: bool = True
    """Also write TensorBoard event files to RUN/tensorboard/ (``tensorboard --logdir RUN``)."""
    wandb_project: str = ""
    """Also log to this Weights & Biases project (needs ``pip install wandb``; skipped with a message if absent)."""

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return strict_dataclass(cls, data, "train")

    def batch_size_for(self, bucket: str) -> int:
        return int(self.batch_sizes.get(bucket, self.batch_size))


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return {"model": dataclasses.asdict(self.model), "train": dataclasses.asdict(self.train)}


TRAIN_PRESETS: dict[str, dict] = {
    "tiny": {"model": {}, "train": {"lr": 1e-3, "warmup_steps": 5, "batch_size": 2, "sample_frames": 6, "scale": 0.5,
                                    "val_every": 10, "checkpoint_every": 10, "ema_decay": 0.99,
                                    "num_workers": 1}},
    "svd": {"model": {"preset": "svd", "pretrained": PRESET_SVD_REPO_ID, "window": 25},
            "train": {"lr": 3e-5, "warmup_steps": 500, "batch_size": 1, "sample_frames": 25, "grad_accum": 8,
                      "gradient_checkpointing": True, "max_steps": 20000, "checkpoint_every": 1000,
                      "val_every": 500}},
}
"""Named starting points (``--preset``); a ``--config`` file is applied on top."""


class RunConfigError(ValueError):
    """A training config file or option is invalid."""


def load_run_config(path: str | Path | None = None, preset: str | None = None,
                    overrides: dict | None = None) -> RunConfig:
    """Preset (default ``tiny``), then the YAML file, then ``overrides`` (nested dicts)."""
    name = preset or "tiny"
    if name not in TRAIN_PRESETS:
        raise RunConfigError(f"unknown preset {name!r}; known: {sorted(TRAIN_PRESETS)}")
    data = deep_update({"model": dataclasses.asdict(PRESETS[name])}, TRAIN_PRESETS[name])
    if path is not None:
        data = deep_update(data, read_yaml(path, RunConfigError))
    data = deep_update(data, overrides or {})
    unknown = sorted(set(data) - {"model", "train"})
    if unknown:
        raise RunConfigError(f"unknown top-level key(s) {unknown}; expected model, train (and base)")
    try:
        cfg = RunConfig(ModelConfig.from_dict(data.get("model", {})), TrainConfig.from_dict(data.get("train", {})))
    except (TypeError, ValueError) as exc:
        raise RunConfigError(str(exc)) from None
    if cfg.model.task not in ("video", "interp"):
        raise RunConfigError(f"model.task must be 'video' or 'interp', got {cfg.model.task!r}")
    if cfg.model.task == "interp" and not cfg.train.init_from:
        raise RunConfigError("model.task interp needs train.init_from: the video model run to fine-tune from")
    if cfg.train.grad_accum < 1 or cfg.train.max_steps < 1:
        raise RunConfigError("train.grad_accum and train.max_steps must be at least 1")
    return cfg
