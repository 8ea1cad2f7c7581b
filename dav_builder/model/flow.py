"""Conditional flow matching in the convention of the paper's released model.

The released Depth Any Video weights are sampled with diffusers' ``FlowMatchEulerDiscreteScheduler``
(shift 3.0), so this module uses that scheduler's convention, for training and inference alike:

- ``x_sigma = (1 - sigma) * x + sigma * noise`` with ``sigma`` in [0, 1]: 0 is data, 1 is noise;
- the model predicts the velocity ``noise - x`` (the derivative of ``x_sigma`` in ``sigma``);
- the UNet's timestep input is ``sigma * 1000`` (``num_train_timesteps``);
- an Euler step from ``sigma`` to ``sigma_next`` is ``x + (sigma_next - sigma) * v``, in float32;
- inference sigmas are the scheduler's own (:func:`inference_sigmas`): with shift 3.0 they are
  [1, 0] for 1 step, [1, 0.0089, 0] for 2 and [1, 0.751, 0.0089, 0] for 3 (the scheduler shifts
  its range once when it is built and once more in ``set_timesteps``).

Models saved by earlier versions of dav-train predicted ``x - noise`` (the opposite sign); their
``dav_model.json`` has no ``velocity`` key and :func:`dav_builder.model.video_depth.flip_velocity`
converts them exactly on load (negating ``conv_out``).
"""

from __future__ import annotations

from functools import lru_cache

import torch

VELOCITY = "noise_minus_data"
"""The convention of this module (``ModelConfig.velocity``); the legacy one is ``data_minus_noise``."""
NUM_TRAIN_TIMESTEPS = 1000


def shift_sigma(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """The resolution shift of SD3 / diffusers: ``shift * s / (1 + (shift - 1) * s)``."""
    return shift * sigma / (1 + (shift - 1) * sigma)


def sample_sigma(batch: int, shift: float, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Training noise levels: logit-normal sigma (mass in the middle), shifted towards noise."""
    u = torch.randn(batch, generator=generator, device=device)
    return shift_sigma(torch.sigmoid(u), shift)


def interpolate(x: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    s = sigma.view(-1, *([1] * (x.dim() - 1)))
    return (1 - s) * x + s * noise


def velocity_target(x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return noise - x


def timestep_input(sigma: torch.Tensor) -> torch.Tensor:
    return sigma * NUM_TRAIN_TIMESTEPS


@lru_cache(maxsize=64)
def _schedule(steps: int, shift: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, shift=shift)
    sched.set_timesteps(steps)
    return tuple(sched.sigmas.tolist()), tuple(sched.timesteps.tolist())


def inference_sigmas(steps: int, shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigmas with the final 0, ``steps + 1`` values; UNet timesteps, ``steps`` values), float32,
    exactly as ``FlowMatchEulerDiscreteScheduler(shift=shift).set_timesteps(steps)`` gives them."""
    if not 1 <= steps <= 50:
        raise ValueError(f"steps must be between 1 and 50, got {steps}")
    sigmas, timesteps = _schedule(int(steps), float(shift))
    return torch.tensor(sigmas, dtype=torch.float32), torch.tensor(timesteps, dtype=torch.float32)


@torch.no_grad()
def euler_sample(velocity, noise: torch.Tensor, steps: int, shift: float) -> torch.Tensor:
    """Integrate from sigma = 1 (``noise``) to 0 with the scheduler's Euler steps.

    ``velocity(x, timestep)`` gets the UNet timestep input (a float32 tensor of shape (B,)).
    """
    sigmas, timesteps = inference_sigmas(steps, shift)
    x = noise
    for i in range(steps):
        t = timesteps[i].to(noise.device).expand(noise.shape[0])
        v = velocity(x, t)
        dt = (sigmas[i + 1] - sigmas[i]).to(noise.device)
        x = (x.float() + dt * v).to(v.dtype)
    return x
