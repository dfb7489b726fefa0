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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ase.data import atomic_masses

from physnet.data import keys as K
from physnet.md.guard import MDBlowUp
from physnet.nn.cg_geometry import bead_graph
from physnet.nn.priors import boltzmann_constant
from physnet.potential import Potential
from physnet.units import energy_factor, length_factor

__all__ = ["langevin", "LangevinBlowUp", "ACCEL_EV_PER_ANGSTROM_AMU"]


class LangevinBlowUp(MDBlowUp, FloatingPointError):
    """A CG Langevin run blew up at ``step``; ``trajectory`` [n_good, n_replicas, n_beads, 3] holds
    the frames saved before it."""

    def __init__(self, step: int, what: str, trajectory: torch.Tensor) -> None:
        super().__init__(step, what)
        self.trajectory = trajectory


# 1 eV / (Å amu) in Å / ps^2: (1.602176634e-19 J) / (1e-10 m * 1.66053906660e-27 kg) * 1e-14 ps^2 / Å
ACCEL_EV_PER_ANGSTROM_AMU = 9648.533212


def _check_arguments(
    positions: torch.Tensor,
    n_steps: int,
    dt: float,
    temperature: float,
    friction: float,
    integrator: str,
    save_every: int,
) -> None:
    """One-line errors for arguments :func:`langevin` cannot run with."""
    if integrator not in ("baoab", "overdamped"):
        raise ValueError(f"unknown integrator {integrator!r}; use 'baoab' or 'overdamped'")
    if positions.ndim != 3 or positions.shape[-1] != 3:
        raise ValueError(f"positions must be [n_replicas, n_beads, 3], got {tuple(positions.shape)}")
    for name, value in (("dt", dt), ("friction", friction), ("temperature", temperature)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value}")
    if not isinstance(n_steps, int) or n_steps < 0 or not isinstance(save_every, int) or save_every < 1:
        raise ValueError(f"n_steps must be an int >= 0 and save_every >= 1, got {n_steps}, {save_every}")


def _apart_distance(potential: Potential, positions: torch.Tensor, apart_factor: float) -> float:
    """``apart_factor`` times the larger of the cutoff and the farthest nearest-bead distance of
    the starting ``positions`` [n_replicas, n_beads, 3]: a bead with no other bead this close
    means the molecule came apart."""
    reach = float(potential.cutoff)
    n_beads = positions.shape[1]
    if n_beads > 1:
        d0 = torch.cdist(positions.detach(), positions.detach())
        d0 = d0 + torch.eye(n_beads, dtype=positions.dtype, device=positions.device) * 1e30
        reach = max(reach, float(d0.min(-1).values.max()))
    return apart_factor * reach


def _acceleration_factor(potential: Potential) -> float:
    """Acceleration (length / ps^2) per force / mass (the potential's energy / length per amu)."""
    return (
        ACCEL_EV_PER_ANGSTROM_AMU
        * energy_factor(potential.energy_unit)
        / length_factor(potential.length_unit) ** 2
    )


def _progress(n_steps: int, show: bool, desc: str) -> Iterable[int]:
    """``range(n_steps)``, with a tqdm progress bar if ``show``."""
    if not show:
        return range(n_steps)
    from tqdm import tqdm

    return tqdm(range(n_steps), desc=desc, unit="step", mininterval=2.0)


def _save(trajectory: torch.Tensor, output: str | os.PathLike | None) -> torch.Tensor:
    """Write ``trajectory`` to ``output`` as float32 ``.npy`` (if given); returns it."""
    if output is not None:
        np.save(Path(output), trajectory.numpy().astype(np.float32))
    return trajectory


@dataclass
class _BlowUpCheck:
    """The blow-up tests of :func:`langevin` (see its ``guard`` argument)."""

    guard: bool
    max_force: float
    apart: float
    apart_factor: float
    integrator: str
    temperature: float
    temperature_factor: float
    m: torch.Tensor  # [1, n_beads, 1] masses, amu
    accel: float  # length / ps^2 per (force / mass)
    kB: float  # energy unit / K
    energy_unit: str
    length_unit: str

    @classmethod
    def of_run(
        cls,
        potential: Potential,
        positions: torch.Tensor,
        integrator: str,
        m: torch.Tensor,
        accel: float,
        guard: bool,
        max_force: float | None,
        apart_factor: float,
        temperature: float,
        temperature_factor: float,
    ) -> _BlowUpCheck:
        """The checks of a run from ``positions`` [n_replicas, n_beads, 3] with :func:`langevin`'s
        arguments (``max_force`` None: 1000 kT per Å)."""
        kB = boltzmann_constant(potential.energy_unit)  # energy unit / K
        if max_force is None:
            kT = kB * temperature
            max_force = 1000.0 * kT * length_factor(potential.length_unit)  # 1000 kT per Å
        apart = _apart_distance(potential, positions, apart_factor)
        units = (potential.energy_unit, potential.length_unit)
        limits = (guard, max_force, apart, apart_factor, integrator, temperature, temperature_factor)
        return cls(*limits, m, accel, kB, *units)

    def reason(self, x: torch.Tensor, f: torch.Tensor, v: torch.Tensor) -> str | None:
        """What went wrong at positions ``x``, forces ``f`` and velocities ``v`` [n_rep, n_beads, 3],
        or None."""
        n_rep, n_beads = x.shape[0], x.shape[1]
        if not bool(torch.isfinite(x).all()):
            rep = int(torch.nonzero(~torch.isfinite(x).reshape(n_rep, -1).all(-1))[0, 0])
            return f"non-finite positions (replica {rep})"
        if not self.guard:
            return None
        if not bool(torch.isfinite(f).all()):
            return "non-finite forces"
        fmax = f.norm(dim=-1)  # [n_rep, n_beads]
        if float(fmax.max()) > self.max_force:
            rep, bead = divmod(int(fmax.argmax()), n_beads)
            return (
                f"force {float(fmax.max()):.4g} {self.energy_unit}/{self.length_unit} on bead "
                f"{bead} of replica {rep}, above the bound {self.max_force:.4g}"
            )
        if n_beads > 1:
            d = torch.cdist(x, x) + torch.eye(n_beads, dtype=x.dtype, device=x.device) * 1e30
            nearest = d.min(-1).values  # [n_rep, n_beads]
            if float(nearest.max()) > self.apart:
                rep, bead = divmod(int(nearest.argmax()), n_beads)
                return (
                    f"the molecule came apart: bead {bead} of replica {rep} has no other bead within "
                    f"{self.apart:.3g} {self.length_unit} ({self.apart_factor:g}x the larger of the cutoff "
                    "and the farthest nearest bead at the start)"
                )
        if self.integrator == "baoab":
            kinetic = 0.5 * (self.m * v * v).sum((-1, -2)) / self.accel  # [n_rep] energy unit
            temp = 2.0 * kinetic / (3 * n_beads * self.kB)
            if float(temp.max()) > self.temperature_factor * self.temperature:
                rep = int(temp.argmax())
                return (
                    f"replica {rep}'s temperature {float(temp.max()):.0f} K is above "
                    f"{self.temperature_factor:g}x the target {self.temperature:g} K"
                )
        return None


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
    guard: bool = True,
    max_force: float | None = None,
    apart_factor: float = 2.0,
    temperature_factor: float = 5.0,
) -> torch.Tensor:
    """Simulate ``n_replicas`` copies of a CG molecule with Langevin dynamics.

    Args:
        potential: the force field (its ``energy_unit`` and ``length_unit`` are used).
        positions: [n_replicas, n_beads, 3] initial positions (length unit); the dtype and
            device of the run.
        z: [n_beads] bead types (atomic numbers) in the potential's species.
        n_steps: integration steps.
        dt, temperature, friction: time step (ps), bath temperature (K) and gamma (1/ps).
        masses: [n_beads] bead masses in amu (default: the atomic masses of ``z``).
        integrator: ``"baoab"`` (underdamped) or ``"overdamped"``.
        save_every: keep a frame every this many steps (frame 0 is the start).
        seed: seed of the random forces (and initial Maxwell-Boltzmann velocities).
        progress: show a tqdm progress bar.
        output: if given, also save the trajectory there as ``.npy`` (float32); a run that
            blows up saves the good frames before raising.
        guard: at every saved frame, stop with :class:`LangevinBlowUp` (an
            :class:`~physnet.md.guard.MDBlowUp` and a ``FloatingPointError``) when a position or
            force is not finite, a force exceeds ``max_force``, a bead has no other bead within
            ``apart_factor`` times the larger of the potential's cutoff and the largest
            nearest-bead distance of the starting positions (the molecule came apart), or (BAOAB) a
            replica's kinetic temperature exceeds ``temperature_factor`` times ``temperature``.
            Without it only non-finite positions stop the run.
        max_force: force bound in the potential's energy / length unit (default: 1000 kT per Å).
        apart_factor, temperature_factor: see ``guard``.

    Returns:
        trajectory [n_steps // save_every + 1, n_replicas, n_beads, 3] on the CPU.

    Raises:
        LangevinBlowUp: the run blew up (see ``guard``); its ``trajectory`` holds the good frames.
    """
    _check_arguments(positions, n_steps, dt, temperature, friction, integrator, save_every)
    (device, dtype), (n_rep, n_beads, _) = (positions.device, positions.dtype), positions.shape
    if masses is None:  # once, before the loop
        masses = torch.tensor(atomic_masses[z.cpu().numpy()], dtype=dtype, device=device)
    m = masses.to(device=device, dtype=dtype).view(1, n_beads, 1)  # [1, n_beads, 1] amu
    kT = boltzmann_constant(potential.energy_unit) * temperature  # energy unit
    accel = _acceleration_factor(potential)
    gen = torch.Generator(device=device).manual_seed(seed)
    potential, z = potential.eval(), z.to(device)
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
    c2 = math.sqrt(1.0 - c1 * c1)  # the O step: v <- c1 v + c2 sigma_v xi
    diffusion = kT * accel / (m * friction)  # D in length^2 / ps, [1, n_beads, 1]
    limits = (guard, max_force, apart_factor, temperature, temperature_factor)
    blow_up = _BlowUpCheck.of_run(potential, positions, integrator, m, accel, *limits)
    frames = [x.cpu().clone()]
    for step in _progress(n_steps, progress, f"Langevin ({integrator}, {n_rep} replicas)"):
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
            what = blow_up.reason(x, f, v)
            if what is not None:
                good = _save(torch.stack(frames), output)
                kept = f"; {output} keeps the {len(frames)} good frames" if output is not None else ""
                raise LangevinBlowUp(step + 1, f"{what}{kept}; lower dt, add priors or check the model", good)
            frames.append(x.cpu().clone())
    return _save(torch.stack(frames), output)  # [n_frames, n_replicas, n_beads, 3]
