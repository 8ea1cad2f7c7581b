"""The released Depth Any Video folder layout, read and written without the paper's code.

The released weights (``hhyangcs/depth-any-video`` on the Hugging Face hub) are a folder::

    vae/        AutoencoderKLTemporalDecoder (config.json + safetensors)
    scheduler/  FlowMatchEulerDiscreteScheduler (scheduler_config.json, shift 3.0)
    unet/       class UNetSpatioTemporalRopeConditionModel, 8 input channels
    unet_interp/  the same class, 16 input channels (the keyframe interpolator)

``UNetSpatioTemporalRopeConditionModel`` is diffusers' ``UNetSpatioTemporalConditionModel`` with
RoPE in temporal attention and two modules removed: the added-time-id embedding
(``add_embedding``) and each temporal transformer's frame embedding (``time_pos_embed``).  Its
weights therefore load into the stock diffusers class with every other key matching, and those two
modules get *zero* weights here (stock ``from_pretrained`` would leave them uninitialised, on the
meta device or random, and outputs could be NaN).  With zero weights both embeddings add exactly
zero, so the stock class plus :mod:`.rope` is the released network.

:func:`save_unet` writes the same layout (config ``_class_name`` the paper's class, only its config
keys) and *also* stores the zero tensors of the two removed modules, so plain diffusers loads an
export without uninitialised weights (see docs/training.md for what plain diffusers then computes).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

ROPE_UNET_CLASS = "UNetSpatioTemporalRopeConditionModel"
STOCK_UNET_CLASS = "UNetSpatioTemporalConditionModel"
UNET_CONFIG_KEYS = (
    "sample_size", "in_channels", "out_channels", "down_block_types", "up_block_types", "block_out_channels",
    "addition_time_embed_dim", "projection_class_embeddings_input_dim", "layers_per_block", "cross_attention_dim",
    "transformer_layers_per_block", "num_attention_heads", "num_frames",
)
"""The config keys of the paper's UNet class (a subset of the stock class's)."""
WEIGHTS = "diffusion_pytorch_model.safetensors"


class LayoutError(ValueError):
    """A model folder is incomplete or does not match the expected layout (the message says what)."""


def is_removed_key(name: str) -> bool:
    """Parameters of the stock SVD UNet that the paper's class does not have."""
    return name.startswith("add_embedding.") or ".time_pos_embed." in name


def unet_class_name(folder: Path) -> str | None:
    p = Path(folder) / "config.json"
    if not p.is_file():
        return None
    return json.loads(p.read_text()).get("_class_name")


def is_released_layout(folder: str | Path) -> bool:
    """A folder with ``unet/``, ``vae/`` and ``scheduler/`` in the diffusers layout."""
    d = Path(folder)
    return (unet_class_name(d / "unet") in (ROPE_UNET_CLASS, STOCK_UNET_CLASS) and (d / "vae" / "config.json").is_file()
            and (d / "scheduler" / "scheduler_config.json").is_file())


def _read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    single = [folder / WEIGHTS, folder / "diffusion_pytorch_model.fp16.safetensors"]
    for f in single:
        if f.is_file():
            return {k: v.float() for k, v in load_file(str(f)).items()}
    index = folder / (WEIGHTS + ".index.json")
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        out: dict[str, torch.Tensor] = {}
        for name in files:
            out.update({k: v.float() for k, v in load_file(str(folder / name)).items()})
        return out
    raise LayoutError(f"{folder}: no {WEIGHTS} (nor an fp16 or sharded variant); only safetensors weights are read")


def load_unet(folder: str | Path) -> nn.Module:
    """A released (or exported) UNet folder as a stock diffusers ``UNetSpatioTemporalConditionModel``.

    Every parameter comes from the file except the two removed modules, which are set to zero; any
    other missing or unexpected weight is an error.  RoPE is installed by the model wrapper.
    """
    from diffusers import UNetSpatioTemporalConditionModel

    folder = Path(folder)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise LayoutError(f"{folder}: no config.json (expected a diffusers UNet folder)")
    raw = json.loads(cfg_path.read_text())
    cls = raw.get("_class_name")
    if cls not in (ROPE_UNET_CLASS, STOCK_UNET_CLASS):
        raise LayoutError(f"{cfg_path}: UNet class {cls!r}; expected {ROPE_UNET_CLASS} or {STOCK_UNET_CLASS}")
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items() if k in UNET_CONFIG_KEYS}
    state = _read_state_dict(folder)
    with torch.device("meta"):
        unet = UNetSpatioTemporalConditionModel(**kwargs)
    expected = dict(unet.state_dict())
    unexpected = sorted(set(state) - set(expected))
    missing = sorted(k for k in set(expected) - set(state) if not is_removed_key(k))
    if unexpected or missing:
        raise LayoutError(f"{folder}: weights do not match the config (missing {missing[:3]}, unexpected "
                          f"{unexpected[:3]}{'...' if len(missing) + len(unexpected) > 6 else ''})")
    for k, v in expected.items():
        if k in state and tuple(state[k].shape) != tuple(v.shape):
            raise LayoutError(f"{folder}: {k} has shape {tuple(state[k].shape)}, the config gives {tuple(v.shape)}")
    full = {k: state[k] if k in state else torch.zeros(v.shape) for k, v in expected.items()}
    unet.load_state_dict(full, strict=True, assign=True)
    left = [n for n, t in list(unet.named_parameters()) + list(unet.named_buffers()) if t.is_meta]
    if left:  # pragma: no cover - every key was assigned above
        raise LayoutError(f"{folder}: parameters left uninitialised: {left[:3]}")
    silence_removed_modules(unet)
    return unet


@torch.no_grad()
def silence_removed_modules(unet: nn.Module) -> None:
    """Zero (every weight of) the added-time-id and frame embeddings and freeze them: they add exactly 0."""
    for name, p in unet.named_parameters():
        if is_removed_key(name):
            p.zero_()
            p.requires_grad_(False)


def save_unet(unet: nn.Module, folder: str | Path) -> Path:
    """Write ``unet`` in the released layout (the paper's class name and config keys, safetensors)."""
    from safetensors.torch import save_file

    import diffusers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"_class_name": ROPE_UNET_CLASS, "_diffusers_version": diffusers.__version__}
    for k in UNET_CONFIG_KEYS:
        v = unet.config[k]
        cfg[k] = list(v) if isinstance(v, tuple) else v
    (folder / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in unet.state_dict().items()}
    save_file(state, str(folder / WEIGHTS), metadata={"format": "pt"})
    return folder


def save_scheduler(folder: str | Path, shift: float) -> Path:
    from diffusers import FlowMatchEulerDiscreteScheduler

    FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift).save_pretrained(folder)
    return Path(folder)


def scheduler_shift(folder: str | Path) -> float:
    """The ``shift`` of a saved FlowMatchEulerDiscreteScheduler (an error for any other scheduler)."""
    p = Path(folder) / "scheduler_config.json"
    if not p.is_file():
        raise LayoutError(f"{folder}: no scheduler_config.json")
    cfg = json.loads(p.read_text())
    if cfg.get("_class_name") != "FlowMatchEulerDiscreteScheduler":
        raise LayoutError(f"{p}: scheduler {cfg.get('_class_name')!r}; only FlowMatchEulerDiscreteScheduler is supported")
    odd = {k: cfg[k] for k in ("use_dynamic_shifting", "stochastic_sampling", "use_karras_sigmas",
                               "use_exponential_sigmas", "use_beta_sigmas", "invert_sigmas") if cfg.get(k)}
    if odd or cfg.get("shift_terminal") or cfg.get("num_train_timesteps", 1000) != 1000:
        raise LayoutError(f"{p}: scheduler options {odd or cfg} are not supported (plain shifted Euler only)")
    return float(cfg.get("shift", 1.0))
