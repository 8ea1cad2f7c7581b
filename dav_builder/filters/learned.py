"""The learned check ``learned_defect``: a tiny network that says, per frame, how likely its depth
is wrong for its RGB, from the frame and the one before it.

Why a network beside the hand-made checks: each hand-made check looks for one defect with one
rule (edges, lag, overlays that do not move...), and each rule has scenes that fool it (fog,
repeated textures, fast cameras).  The network sees the same evidence all at once, at a reduced
size, and learns from the engine's own renders where defects are planted with per-frame ground
truth (``dav-filter train-check``, :mod:`dav_builder.filters.learned_train`).

Input of one frame pair (t-1, t), at the reduced size the scoring stage already has (the
splitter's RGB, longer side 128; depth nearest-resized to it), 15 channels:

* RGB of t and of t-1 (scaled to [-0.5, 0.5]);
* log-depth of t and of t-1 less the median log-depth of the pair's valid pixels, divided by 2
  and clipped to [-3, 3] (so scenes of any scale look alike; a depth buffer that switches camera
  still shows as a jump), 0 where invalid; and the two valid masks;
* the grey change t - (t-1) and the log-depth change, so a lag, frozen depth or content that
  stays put while the scene moves is one subtraction away;
* with intrinsics and camera poses, frame t's pixels carried into frame t-1 by their depth (a
  static scene, as the hand-made pose checks do): the grey level found there less frame t's, the
  log-depth there less the carried depth, and where the pixel lands inside frame t-1.  Wrong
  depth (late, frozen, from another camera or buffer) leaves image residuals at edges; content
  drawn in RGB without depth leaves residuals where the scene's depth is right.  Without poses
  these three are 0 (the network is trained with 15 % of its pairs shown so).

The network: four 3x3 convolutions (stride 2, 2, 2, 1; ReLU), a 1x1 convolution to a map of
logits (one per 8x8 pixels), and the frame's logit is the mean of the ``topk`` largest (a HUD or
a weapon is small: the evidence is local).  About 22 k weights (90 kB in float32).  A clip's
score is the ``votes``-th largest frame probability over its pairs (1 = the largest: one
defective frame suffices).

Weights are a safetensors file with a JSON file beside it (same name, ``.json``) holding the
architecture and how the weights were made; nothing is unpickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from dav_builder.filters.checks import carry_into, kth_largest

#: The weights shipped with the package (made by ``benchmarks/train_learned_check.py``).
SHIPPED_WEIGHTS = Path(__file__).with_name("weights") / "learned_defect.safetensors"
CHANNELS = 15


@dataclass
class NetConfig:
    """Architecture of the network (stored in the weights' JSON file)."""

    widths: tuple[int, ...] = (16, 24, 32, 32)
    strides: tuple[int, ...] = (2, 2, 2, 1)
    topk: int = 4
    in_channels: int = CHANNELS
    side: int = 128
    """Longer side of the frames it was trained at (frames are resized to it when larger)."""
    info: dict = field(default_factory=dict)
    """How the weights were made (data, steps, time): for people, not read by the code."""


def _torch():
    import torch

    return torch


def build_net(cfg: NetConfig):
    """The network for ``cfg`` (random weights)."""
    torch = _torch()
    nn = torch.nn

    class TinyDefectNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list = []
            c = cfg.in_channels
            for w, s in zip(cfg.widths, cfg.strides):
                layers += [nn.Conv2d(c, w, 3, stride=s, padding=1), nn.ReLU(inplace=True)]
                c = w
            self.body = nn.Sequential(*layers)
            self.head = nn.Conv2d(c, 1, 1)
            self.topk = cfg.topk

        def forward(self, x):  # (N, C, H, W) -> frame logits (N,)
            m = self.head(self.body(x)).flatten(1)
            k = min(self.topk, m.shape[1])
            return m.topk(k, dim=1).values.mean(1)

    return TinyDefectNet()


def _carried_residuals(grey_prev: np.ndarray, grey: np.ndarray, depth_prev: np.ndarray, depth: np.ndarray,
                       K_prev: np.ndarray, K: np.ndarray, pose_prev: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Frame t's pixels carried into frame t-1 by their depth and the camera poses (a static
    scene): the grey level found there less frame t's, the log-depth there less the carried
    depth's, and where the pixel lands inside frame t-1 with depth (3, h, w)."""
    c = carry_into(depth, depth_prev, K, K_prev, pose, pose_prev)
    inside = c.inside & c.seen_there
    g = cv2.remap(grey_prev, c.mx, c.my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE) - grey
    with np.errstate(invalid="ignore", divide="ignore"):
        dz = np.clip(c.log_there - np.log(np.where(inside, c.z, 1.0)), -1.0, 1.0)
    return np.stack([np.where(inside, g, 0.0), np.where(inside, dz, 0.0), inside]).astype(np.float32)


def pair_features(rgb: np.ndarray, depth: np.ndarray, K: np.ndarray | None = None,
                  poses: np.ndarray | None = None) -> np.ndarray:
    """Network input for the pairs (t-1, t) of consecutive frames ``rgb`` (T, h, w, 3) uint8 and
    ``depth`` (T, h, w) planar metres, 0 or non-finite where invalid, same size, with intrinsics
    ``K`` (T, 3, 3) at that size and camera-to-world ``poses`` (T, 4, 4) when known: float32
    (T-1, 15, h, w).  A pure function of the frames (see the module's docs for the channels)."""
    rgb = np.asarray(rgb)
    depth = np.asarray(depth, np.float32)
    if rgb.ndim != 4 or depth.shape != rgb.shape[:3]:
        raise ValueError(f"expected RGB (T, h, w, 3) and depth (T, h, w) of one size, got {rgb.shape} and {depth.shape}")
    valid = np.isfinite(depth) & (depth > 0)
    depth = np.where(valid, depth, 0.0).astype(np.float32)
    logd = np.log(np.where(valid, depth, 1.0))
    col = rgb.astype(np.float32) / 255.0 - 0.5
    grey = col @ np.array([0.299, 0.587, 0.114], np.float32)
    posed = K is not None and poses is not None and bool(np.isfinite(poses).all()) and bool(np.isfinite(K).all())
    out = []
    for t in range(1, len(rgb)):
        v = valid[t - 1 : t + 1]
        ref = float(np.median(logd[t - 1 : t + 1][v])) if v.any() else 0.0
        ld = np.where(v, np.clip((logd[t - 1 : t + 1] - ref) / 2.0, -3.0, 3.0), 0.0)
        carried = (_carried_residuals(grey[t - 1], grey[t], depth[t - 1], depth[t], K[t - 1], K[t],  # type: ignore[index]
                                      poses[t - 1], poses[t]) if posed  # type: ignore[index]
                   else np.zeros((3,) + depth.shape[1:], np.float32))
        out.append(np.concatenate([
            col[t].transpose(2, 0, 1), col[t - 1].transpose(2, 0, 1),
            ld[1:2], ld[0:1], v[1:2].astype(np.float32), v[0:1].astype(np.float32),
            (grey[t] - grey[t - 1])[None], (ld[1] - ld[0])[None] * (v[0] & v[1])[None], carried,
        ]).astype(np.float32))
    return np.stack(out) if out else np.zeros((0, CHANNELS) + rgb.shape[1:3], np.float32)


def scale_K(K: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Intrinsics (T, 3, 3) of frames of ``from_size`` (h, w) for frames of ``to_size``."""
    K = np.asarray(K, np.float64).copy()
    K[:, 0] *= to_size[1] / from_size[1]
    K[:, 1] *= to_size[0] / from_size[0]
    return K


def reduce_frames(rgb: np.ndarray, depth: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """RGB (area) and depth (nearest) resized so that the longer side is at most ``side``, depth to
    the RGB's size."""
    h, w = rgb.shape[1:3]
    s = min(1.0, side / max(h, w))
    size = (max(1, round(w * s)), max(1, round(h * s)))
    if size != (w, h):
        rgb = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in rgb])
    if depth.shape[1:] != (size[1], size[0]):
        depth = np.stack([cv2.resize(np.asarray(d, np.float32), size, interpolation=cv2.INTER_NEAREST) for d in depth])
    return rgb, depth


def save(net, cfg: NetConfig, path: str | Path) -> Path:
    """Writes ``path`` (safetensors) and ``path`` with ``.json`` (the :class:`NetConfig`)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().float() for k, v in net.state_dict().items()}
    save_file(state, str(path))
    path.with_suffix(".json").write_text(json.dumps(asdict(cfg), indent=1) + "\n")
    return path


def load(path: str | Path | None = None, device: str = "cpu"):
    """The network and its :class:`NetConfig` from a weights file (default: the shipped one), in
    eval mode on ``device``; a clear error names a missing or broken file."""
    from safetensors.torch import load_file

    path = Path(path) if path is not None else SHIPPED_WEIGHTS
    meta = path.with_suffix(".json")
    for p in (path, meta):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: learned check weights not found (train them with 'dav-filter train-check')")
    try:
        raw = json.loads(meta.read_text())
        cfg = NetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{meta}: not a learned check config: {exc}") from None
    net = build_net(cfg)
    try:
        net.load_state_dict(load_file(str(path)))
    except Exception as exc:  # a safetensors error or mismatched shapes
        raise ValueError(f"{path}: weights do not fit the network in {meta.name}: {exc}") from None
    return net.to(device).eval(), cfg


def resolve_device(device: str) -> str:
    torch = _torch()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class LearnedCheck:
    """The network, loaded once (per worker), scoring clips."""

    def __init__(self, weights: str | Path | None = None, device: str = "auto"):
        self.device = resolve_device(device)
        self.net, self.cfg = load(weights, self.device)

    def frame_scores(self, rgb: np.ndarray, depth: np.ndarray, K: np.ndarray | None = None,
                     poses: np.ndarray | None = None) -> np.ndarray:
        """Probability that each frame t >= 1 is defective, from pairs (t-1, t): (T-1,) float.
        ``K`` are the intrinsics of frames of ``rgb``'s size; with ``poses`` (camera-to-world)."""
        torch = _torch()
        size = rgb.shape[1:3]
        rgb, depth = reduce_frames(rgb, depth, self.cfg.side)
        if K is not None:
            K = scale_K(K, size, rgb.shape[1:3])
        x = pair_features(rgb, depth, K, poses)
        if len(x) == 0:
            return np.zeros(0, np.float32)
        with torch.inference_mode():
            logits = self.net(torch.from_numpy(x).to(self.device))
        return torch.sigmoid(logits).float().cpu().numpy()

    def clip_score(self, rgb: np.ndarray, depth: np.ndarray, K: np.ndarray | None = None,
                   poses: np.ndarray | None = None, votes: int = 1) -> float:
        return kth_largest(self.frame_scores(rgb, depth, K, poses), votes)
