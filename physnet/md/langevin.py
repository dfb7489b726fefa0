"""Langevin dynamics of many coarse-grained replicas in parallel, on torch (CPU or GPU).

All replicas form one batched graph (:func:`physnet.nn.cg_geometry.bead_graph`), so one
call of the :class:`physnet.Potential` gives every replica's forces. Two integrators:

- ``"baoab"`` (underdamped): the BAOAB splitting of Leimkuhler & Matthews, Appl. Math.
  Res. Express 2013, 34 (2013): half kick B, half drift A, exact Ornstein-Uhlenbeck
  step O with c1 = exp(-gamma dt), c2 = sqrt(1 - c1^2), half drift, half kick;
- ``"overdamped"`` (Brownian, as the CGnet paper simulates): Euler-Maruyama
  x <- x + (D / kT) F dt + sqrt(2 D dt) xi with D = kT / (m gamma) per bead.

Units: positions in the potential's length unit, forces in its energy / length unit,
time in ps, friction gamma in 1/ps, masses in amu, temperature in K.

Example:
    >>> import physnet, torch
    >>> import physnet.models.cgnet
    >>> from physnet.md.langevin import langevin
    >>> model = physnet.models.build("cgnet", species=["C"], n_beads=3, n_layers=1, width=8)
    >>> pot = physnet.Potential(model, energy_unit="kcal/mol")
    >>> x0 = torch.randn(4, 3, 3)
    >>> traj = langevin(pot, x0, torch.tensor([6, 6, 6]), n_steps=10, save_every=5, progress=False)
    >>> traj.shape
    torch.Size([3, 4, 3, 3])
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from ase.data import atomic_masses

from physnet.data import keys as K
from physnet.nn.cg_geometry import bead_graph
from physnet.nn.priors import boltzmann_constant
from physnet.potential import Potential
from physnet.units import energy_factor, length_factor

__all__ = ["langevin", "ACCEL_EV_PER_ANGSTROM_AMU"]

# 1 eV / (Å amu) in Å / ps^2: (1.602176634e-19 J) / (1e-10 m * 1.66053906660e-27 kg) * 1e-14 ps^2 / Å
ACCEL_EV_PER_ANGSTROM_AMU = 9648.533212


def langevin(
    potential: Potential,
    positions: torch.Tensor,
    z: torch.Tensor,
    n_steps: int,
    dt: float = 0.002,
    temperature: float = 300.0,
    friction: float = 1.0,
    masses: torch.Tensor | None = None,
    integrator: str = "baoab",
    save_every: int = 100,
    seed: int = 0,
    progress: bool = True,
    output: str | os.PathLike | None = None,
) -> torch.Tensor:
    """Simulate ``n_replicas`` copies of a CG molecule with Langevin dynamics.

    Args:
        potential: the force field (its ``energy_unit`` and ``length_unit`` are used).
        positions: [n_replicas, n_beads, 3] initial positions (length unit); the dtype and
            device of the run.
        z: [n_beads] bead types (atomic numbers) in the potential's species.
        n_steps: integration steps.
        dt: time step in ps (default 2 fs).
        temperature: bath temperature in K.
        friction: gamma in 1/ps.
        masses: [n_beads] bead masses in amu (default: the atomic masses of ``z``).
        integrator: ``"baoab"`` (underdamped) or ``"overdamped"``.
        save_every: keep a frame every this many steps (frame 0 is the start).
        seed: seed of the random forces (and initial Maxwell-Boltzmann velocities).
        progress: show a tqdm progress bar.
        output: if given, also save the trajectory there as ``.npy`` (float32).

    Returns:
        trajectory [n_frames, n_replicas, n_beads, 3] with n_frames = n_steps // save_every + 1,
        on the CPU. Replicas whose coordinates became non-finite stop the run with ``FloatingPointError``.
    """
    if integrator not in ("baoab", "overdamped"):
        raise ValueError(f"unknown integrator {integrator!r}; use 'baoab' or 'overdamped'")
    if positions.ndim != 3 or positions.shape[-1] != 3:
        raise ValueError(f"positions must be [n_replicas, n_beads, 3], got {tuple(positions.shape)}")
    if dt <= 0 or friction <= 0 or temperature <= 0:
        raise ValueError("dt, friction and temperature must be > 0")
    device, dtype = positions.device, positions.dtype
    n_rep, n_beads, _ = positions.shape
    if masses is None:  # once, before the loop
        masses = torch.tensor(atomic_masses[z.cpu().numpy()], dtype=dtype, device=device)
    m = masses.to(device=device, dtype=dtype).view(1, n_beads, 1)  # [1, n_beads, 1] amu
    kT = boltzmann_constant(potential.energy_unit) * temperature  # energy unit
    # acceleration per (force / mass) in length / ps^2
    accel = (
        ACCEL_EV_PER_ANGSTROM_AMU
        * energy_factor(potential.energy_unit)
        / length_factor(potential.length_unit) ** 2
    )
    gen = torch.Generator(device=device).manual_seed(seed)
    potential = potential.eval()
    z = z.to(device)
    potential.check(bead_graph(positions[:1].detach(), z))  # species and dtype, once

    def forces(x: torch.Tensor) -> torch.Tensor:  # no host sync: checked above
        out = potential(bead_graph(x, z), compute_forces=True, compute_stress=False, check=False)
        return out[K.FORCES].detach().view(n_rep, n_beads, 3)

    def noise() -> torch.Tensor:
        return torch.randn(n_rep, n_beads, 3, generator=gen, device=device, dtype=dtype)

    x = positions.detach().clone()
    sigma_v = torch.sqrt(kT * accel / m)  # thermal velocity, length / ps
    v = sigma_v * noise()
    f = forces(x)
    c1 = math.exp(-friction * dt)
    c2 = math.sqrt(1.0 - c1 * c1)
    diffusion = kT * accel / (m * friction)  # D in length^2 / ps, [1, n_beads, 1]
    frames = [x.cpu().clone()]
    steps = range(n_steps)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc=f"Langevin ({integrator}, {n_rep} replicas)", unit="step", mininterval=2.0)
    for step in steps:
        if integrator == "baoab":
            v = v + 0.5 * dt * accel * f / m
            x = x + 0.5 * dt * v
            v = c1 * v + c2 * sigma_v * noise()
            x = x + 0.5 * dt * v
            f = forces(x)
            v = v + 0.5 * dt * accel * f / m
        else:
            x = x + diffusion / kT * f * dt + torch.sqrt(2.0 * diffusion * dt) * noise()
            f = forces(x)
        if (step + 1) % save_every == 0:
            if not bool(torch.isfinite(x).all()):
                raise FloatingPointError(f"non-finite positions at step {step + 1}; lower dt or add priors")
            frames.append(x.cpu().clone())
    traj = torch.stack(frames)  # [n_frames, n_replicas, n_beads, 3]
    if output is not None:
        np.save(Path(output), traj.numpy().astype(np.float32))
    return traj
