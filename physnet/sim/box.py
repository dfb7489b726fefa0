"""Geometry of an axis-aligned box of walls, shared by the learned simulators and their metrics.

A box is ``bounds`` [dim, 2] ``[[lo, hi]] * dim`` (length unit). Walls follow one order
everywhere: wall ``w`` in ``0 .. dim - 1`` is the lower wall along axis ``w``, wall
``dim + w`` the upper one.
"""

from __future__ import annotations

import torch

__all__ = [
    "wall_distances",
    "wall_normals",
    "wall_midpoints",
    "outside_depth",
    "excursion",
    "escaped_particles",
    "stays",
]


def wall_distances(pos: torch.Tensor, bounds: torch.Tensor) -> torch.Tensor:
    """Signed distances [..., 2 dim] of ``pos`` [..., dim] inside each wall: ``[pos - lo, hi - pos]``,
    > 0 inside the box, < 0 behind a wall."""
    bounds = bounds.to(pos.dtype)
    return torch.cat([pos - bounds[:, 0], bounds[:, 1] - pos], dim=-1)


def wall_normals(
    dim: int, dtype: torch.dtype | None = None, device: torch.device | None = None
) -> torch.Tensor:
    """[2 dim, dim] outward unit normals of the walls."""
    eye = torch.eye(dim, dtype=dtype, device=device)
    return torch.cat([-eye, eye])


def wall_midpoints(bounds: torch.Tensor) -> torch.Tensor:
    """[2 dim, dim] the midpoint of each wall of the box ``bounds`` [dim, 2]."""
    dim = bounds.shape[0]
    mid = bounds.mean(-1).expand(2 * dim, dim).clone()
    mid[torch.arange(2 * dim), torch.arange(2 * dim) % dim] = bounds.t().reshape(-1)
    return mid


def outside_depth(pos: torch.Tensor, bounds: torch.Tensor) -> torch.Tensor:
    """Depth behind each wall [..., 2 dim] (> 0 outside, 0 inside) of ``pos`` [..., dim]."""
    return (-wall_distances(pos, bounds)).clamp_min(0.0)


def excursion(pos: torch.Tensor, bounds: torch.Tensor) -> float:
    """Largest distance (length unit) by which any of ``pos`` [..., dim] lies outside the box; 0 if none."""
    return float(outside_depth(pos, bounds).amax()) if pos.numel() else 0.0


def escaped_particles(pos: torch.Tensor, bounds: torch.Tensor, tolerance: float = 0.0) -> int:
    """Particles of ``pos`` [T, n, dim] more than ``tolerance`` (length unit) outside the box in any frame."""
    return int((outside_depth(pos, bounds) > tolerance).any(dim=-1).any(dim=0).sum())


def stays(outside: torch.Tensor) -> dict[str, int]:
    """How long particles stay outside, from ``outside`` [T, n] bool, frame by frame.

    Returns ``particles`` (outside in at least one frame), ``frames`` (particle-frames
    outside), ``stays`` (separate runs of consecutive frames outside, over all particles)
    and ``longest`` (frames, the longest such run).
    """
    run = torch.zeros(outside.shape[1], dtype=torch.long)
    longest = torch.zeros_like(run)
    for frame in outside:
        run = (run + 1) * frame
        longest = torch.maximum(longest, run)
    starts = outside[:1].sum() + (outside[1:] & ~outside[:-1]).sum()
    return {
        "particles": int(outside.any(dim=0).sum()),
        "frames": int(outside.sum()),
        "stays": int(starts),
        "longest": int(longest.max()) if longest.numel() else 0,
    }
