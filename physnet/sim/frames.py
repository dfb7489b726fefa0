"""Kinematics of particle trajectories sampled in frames, with time in frames (``dt = 1``).

Velocities are ``x_t - x_{t-1}`` (length per frame) and accelerations ``x_{t+1} - 2 x_t +
x_{t-1}`` (length per frame^2), as in Sanchez-Gonzalez et al., ICML 2020, Sec. 3. A window
is ``[n, C, dim]`` positions, oldest first. Nothing here depends on a model: these are the
integrator, the baseline, the training noise and the free-fall test of any learned
particle simulator that reads position windows (:mod:`physnet.models.gns`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "euler_step",
    "constant_velocity_rollout",
    "random_walk_noise",
    "noisy_target_acceleration",
    "landing_acceleration",
    "is_free_fall",
    "free_fall_acceleration",
    "velocities_and_accelerations",
]


def euler_step(pos_history: torch.Tensor, acceleration: torch.Tensor) -> torch.Tensor:
    """``x_{t+1} = x_t + (x_t - x_{t-1}) + a_t`` [n, dim], semi-implicit Euler with dt = 1 frame.

    Args:
        pos_history: [n, C, dim] positions, oldest first.
        acceleration: [n, dim] length / frame^2.
    """
    last = pos_history[:, -1]
    return last + (last - pos_history[:, -2]) + acceleration


def landing_acceleration(window: torch.Tensor, next_pos: torch.Tensor) -> torch.Tensor:
    """The acceleration [n, dim] whose :func:`euler_step` from ``window`` [n, C, dim] lands on
    ``next_pos`` [n, dim]: ``x_{t+1} - 2 x_t + x_{t-1}``."""
    return next_pos - 2 * window[:, -1] + window[:, -2]


def constant_velocity_rollout(initial_window: torch.Tensor, n_steps: int) -> torch.Tensor:
    """Baseline: ``x_{t+k} = x_t + k v_t`` from the last velocity; [n_steps, n, dim]."""
    last = initial_window[:, -1]
    vel = last - initial_window[:, -2]
    k = torch.arange(1, n_steps + 1, dtype=last.dtype, device=last.device).view(-1, 1, 1)
    return last + k * vel


def random_walk_noise(
    pos_history: torch.Tensor, noise_std: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random-walk noise [n, C, dim] for the input positions (Sanchez-Gonzalez et al., Sec. 4).

    Each of the ``C - 1`` velocities gets independent Gaussian noise of std
    ``noise_std / sqrt(C - 1)``; its running sum is the position noise (zero on the oldest
    position), so the noise on the most recent position has std ``noise_std``
    (``learning_to_simulate/noise_utils.py``).
    """
    n, c, dim = pos_history.shape
    # drawn where the generator lives (without one: on the data's device, no host round trip)
    device = pos_history.device if generator is None else generator.device
    vel_noise = torch.randn(n, c - 1, dim, generator=generator, dtype=pos_history.dtype, device=device)
    vel_noise = (vel_noise * (noise_std / math.sqrt(c - 1))).to(pos_history.device)
    return torch.cat([torch.zeros_like(vel_noise[:, :1]), vel_noise.cumsum(dim=1)], dim=1)


def noisy_target_acceleration(
    pos_history: torch.Tensor, next_pos: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """Target acceleration [n, dim] for noisy inputs ``pos_history + noise``.

    The target next position is shifted by the noise of the last input position
    (``next_position_adjusted`` in ``learning_to_simulate/train.py``), so that the Euler step
    from the noisy window with this acceleration reproduces the true next *velocity*
    ``x_{t+1} - x_t``. Equals ``a_t - (n_t - n_{t-1})``.
    """
    return landing_acceleration(pos_history + noise, next_pos + noise[:, -1])


def is_free_fall(acceleration: torch.Tensor, rtol: float = 1e-2) -> torch.Tensor:
    """[T] bool: frames of ``acceleration`` [T, n, dim] in which every particle has the same,
    non-zero acceleration to within ``rtol`` of its norm (free flight, no contact)."""
    g = acceleration.mean(dim=1, keepdim=True)  # [T, 1, dim]
    size = torch.linalg.vector_norm(g, dim=-1)[:, 0]  # [T]
    spread = (acceleration - g).norm(dim=-1).amax(dim=1)  # [T]
    return (size > 0) & (spread <= rtol * size)


def free_fall_acceleration(trajectories: list[torch.Tensor], rtol: float = 1e-2) -> tuple[torch.Tensor, int]:
    """Mean acceleration [dim] (float64, length / frame^2) over the free-fall frames
    (:func:`is_free_fall`) of ``trajectories`` (each [T, n, dim]), and how many frames that is
    (0: the mean is NaN)."""
    total, frames = torch.zeros(trajectories[0].shape[-1], dtype=torch.float64), 0
    for x in trajectories:
        acc = (x[2:] - 2 * x[1:-1] + x[:-2]).double()  # [T - 2, n, dim]
        free = is_free_fall(acc, rtol)
        total += acc[free].mean(dim=1).sum(dim=0)
        frames += int(free.sum())
    return total / frames if frames else total * math.nan, frames


def velocities_and_accelerations(
    trajectories: Sequence[torch.Tensor | np.ndarray],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every particle's velocities [m, dim] and accelerations [m', dim] (float64) in all frames of
    ``trajectories`` (each [T, n, dim] positions)."""
    vel, acc = [], []
    for traj in trajectories:
        x = torch.as_tensor(np.asarray(traj), dtype=torch.float64)  # [T, n, dim]
        v = x[1:] - x[:-1]  # [T-1, n, dim]
        vel.append(v.reshape(-1, x.shape[-1]))
        acc.append((v[1:] - v[:-1]).reshape(-1, x.shape[-1]))
    return torch.cat(vel), torch.cat(acc)
