"""Conditional flow matching: the interpolation, the target, the time schedule, Euler sampling.

Convention: ``x_t = t * x + (1 - t) * noise`` for ``t`` in [0, 1] (t = 1 is data); the model
predicts the velocity ``x - noise``.  The UNet's timestep input is ``(1 - t) * 1000`` (the
``sigma * 1000`` of diffusers' FlowMatchEulerDiscreteScheduler, where sigma = 1 - t), so a
pretrained flow UNet and this module agree.
"""

from __future__ import annotations

import torch


def shift_sigma(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """The resolution shift of SD3 / diffusers: ``shift * s / (1 + (shift - 1) * s)``."""
    return shift * sigma / (1 + (shift - 1) * sigma)


def sample_t(batch: int, shift: float, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Training times: logit-normal sigma (mass in the middle), shifted towards noise."""
    u = torch.randn(batch, generator=generator, device=device)
    sigma = shift_sigma(torch.sigmoid(u), shift)
    return 1 - sigma


def interpolate(x: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    tt = t.view(-1, *([1] * (x.dim() - 1)))
    return tt * x + (1 - tt) * noise


def velocity_target(x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return x - noise


def timestep_input(t: torch.Tensor) -> torch.Tensor:
    return (1 - t) * 1000.0


def inference_times(steps: int, shift: float) -> torch.Tensor:
    """t_0 = 0 (noise) ... t_steps = 1 (data), spaced by the shifted sigma schedule."""
    sigma = shift_sigma(torch.linspace(1, 0, steps + 1), shift)
    return 1 - sigma


@torch.no_grad()
def euler_sample(velocity, noise: torch.Tensor, steps: int, shift: float) -> torch.Tensor:
    """Integrate dx/dt = velocity(x, t) from t = 0 (noise) to 1 with ``steps`` Euler steps."""
    if not 1 <= steps <= 50:
        raise ValueError(f"steps must be between 1 and 50, got {steps}")
    ts = inference_times(steps, shift).to(noise.device)
    x = noise
    for a, b in zip(ts[:-1], ts[1:]):
        t = torch.full((noise.shape[0],), float(a), device=noise.device)
        x = x + (b - a) * velocity(x, t)
    return x
