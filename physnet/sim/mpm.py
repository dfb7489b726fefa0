"""2D MLS-MPM water in torch, in the style of Taichi's ``mpm88``.

The Moving Least Squares Material Point Method (Hu et al., "A Moving Least Squares
Material Point Method with Displacement Discontinuity and Two-Way Rigid Body
Coupling", ACM TOG 37(4), SIGGRAPH 2018) with APIC transfers (Jiang et al., SIGGRAPH
2015), exactly the algorithm of Taichi's 88-line ``mpm88.py``: a weakly compressible
fluid whose only state beyond position and velocity is the volume ratio ``J`` and the
affine velocity matrix ``C``. One substep of length ``dt`` is

1. P2G: quadratic B-spline weights ``w`` on the 3 x 3 grid nodes around each
   particle; the MLS-MPM momentum ``m v + (-dt 4 E V_p (J - 1) / dx^2 I + m C) (x_i - x_p)``
   and the mass ``m`` are scattered to the nodes (Hu et al. 2018, eq. 29 with the
   equation of state ``p = E (1 - J)``);
2. grid update: momentum / mass, gravity ``-g dt`` on the y component, and the
   one-sided (separating) wall condition of mpm88 on the ``bound`` outermost nodes:
   a normal velocity component pointing out of the box is set to zero;
3. G2P: APIC velocity ``v = sum w v_i`` and ``C = 4 / dx^2 sum w v_i (x_i - x_p)^T``,
   advection ``x += dt v``, ``J *= 1 + dt tr C``.

Everything is vectorised over particles (9 grid nodes per particle, ``index_add_``
scatters), so one substep is a few dozen tensor operations with no Python loop over
particles. ``index_add_`` on the CPU adds in a fixed order, so a seed gives the same
trajectory bit for bit on the same machine and software.

Units: the box is the unit square ``[0, 1]^2`` (call the length unit m); time in s;
gravity 9.8 m/s^2. The stored frames are ``substeps`` substeps apart
(``frame_dt = substeps * dt``).

Deviation from mpm88: the upper wall layer has ``bound`` nodes like the lower one
(mpm88 has one node fewer there), and after advection positions are clamped to the
domain ``[(bound - 1) dx, (n_grid - bound) dx]^2``, which is symmetric about the grid's
centre and bounded by the innermost wall nodes. With the separating wall condition,
particles resting on a wall settle about ``0.05 dx`` inside it; the clamp keeps every
stored position inside the domain a learned simulator is told about
(:attr:`WaterTrajectory.bounds`). The number of clamped particle-substeps is reported
(:attr:`WaterTrajectory.n_clamped`; its share in the GNS example's data is in
docs/experiments/gns.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["MPMWater", "WaterTrajectory", "simulate_water", "WATER"]

WATER = 0  #: particle type of water (the only material here; GNS embeds types)


@dataclass
class WaterTrajectory:
    """One simulated trajectory.

    Attributes:
        positions: [n_frames, n_particles, 2] float64 positions, m (frame 0 = initial state).
        particle_type: [n_particles] int64 material index (:data:`WATER`).
        bounds: [2, 2] float64 domain ``[[x_lo, x_hi], [y_lo, y_hi]]``, m.
        frame_dt: time between stored frames, s.
        n_clamped: particle-substeps whose position was clamped into the domain.
        mass: [n_frames] total particle mass per frame (constant: particles carry mass).
        grid_mass: [n_frames] total mass scattered to the grid at the first substep after
            each frame (equals the particle mass if P2G conserves mass).
    """

    positions: np.ndarray
    particle_type: np.ndarray
    bounds: np.ndarray
    frame_dt: float
    n_clamped: int
    mass: np.ndarray
    grid_mass: np.ndarray


class MPMWater:
    """Vectorised 2D MLS-MPM weakly compressible fluid (mpm88).

    Args:
        n_grid: grid nodes per side; ``dx = 1 / n_grid`` m. mpm88: 128 (8192 particles); 64 here
            for ~500 particles at four per cell.
        dt: substep, s. mpm88: 2e-4 at ``dx = 1/128``; 4e-4 here at ``dx = 1/64`` keeps the
            acoustic CFL number ``sqrt(E) dt / dx`` = 0.51 (mpm88: 0.51) and the particles
            move < 0.1 dx per substep at the ~4 m/s they reach.
        bulk_modulus: ``E`` of the equation of state ``p = E (1 - J)``, Pa per unit
            density. mpm88: 400.
        gravity: m/s^2, acting along -y. mpm88: 9.8.
        bound: grid nodes at each wall where the wall condition acts. mpm88: 3.
        particle_spacing: initial spacing of particles in a block, in cells. mpm88: 0.5
            (four particles per cell; the particle volume is ``(spacing dx)^2``).
        dtype: float64 (default) or float32.
    """

    def __init__(
        self,
        n_grid: int = 64,
        dt: float = 4e-4,
        bulk_modulus: float = 400.0,
        gravity: float = 9.8,
        bound: int = 3,
        particle_spacing: float = 0.5,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        if n_grid < 2 * bound + 3:
            raise ValueError(f"n_grid={n_grid} too small for bound={bound}")
        self.n_grid = n_grid
        self.dx = 1.0 / n_grid
        self.dt = dt
        self.E = bulk_modulus
        self.gravity = gravity
        self.bound = bound
        self.spacing = particle_spacing
        self.p_vol = (particle_spacing * self.dx) ** 2  # m^2 (2D volume)
        self.p_mass = self.p_vol * 1.0  # density 1
        self.dtype = dtype
        # the domain mirrors the grid about its centre node (n_grid - 1) dx / 2: from the innermost
        # lower wall node (bound - 1) dx to the innermost upper one (n_grid - bound) dx
        lo, hi = (bound - 1) * self.dx, (n_grid - bound) * self.dx
        self.bounds = np.array([[lo, hi], [lo, hi]])
        off = torch.tensor([(i, j) for i in range(3) for j in range(3)], dtype=torch.long)  # [9, 2]
        self._offsets = off
        node = torch.arange(n_grid)
        i = node.repeat_interleave(n_grid)  # [n_grid^2] x index of each flat node
        j = node.repeat(n_grid)  # [n_grid^2] y index
        # wall layers: the `bound` outermost nodes on each side (mpm88 uses i > n_grid - bound at
        # the upper walls, one node fewer than at the lower walls; here both sides get `bound`)
        self._wall_lo = torch.stack([i < bound, j < bound], dim=1)  # [n_grid^2, 2]
        self._wall_hi = torch.stack([i >= n_grid - bound, j >= n_grid - bound], dim=1)  # [n_grid^2, 2]
        self._eye = torch.eye(2, dtype=dtype)

    # ------------------------------------------------------------------ one substep
    def _weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Grid node index [n, 9], weight [n, 9] and ``x_i - x_p`` [n, 9, 2] (m) of each particle."""
        xp = x / self.dx  # [n, 2] in cells
        base = (xp - 0.5).floor()  # [n, 2]
        fx = xp - base  # [n, 2] in [0.5, 1.5)
        w = torch.stack(
            [0.5 * (1.5 - fx) ** 2, 0.75 - (fx - 1.0) ** 2, 0.5 * (fx - 0.5) ** 2], dim=1
        )  # [n, 3, 2]
        off = self._offsets.to(x.device)
        weight = w[:, off[:, 0], 0] * w[:, off[:, 1], 1]  # [n, 9]
        node = base.long().unsqueeze(1) + off  # [n, 9, 2]
        flat = node[..., 0] * self.n_grid + node[..., 1]  # [n, 9]
        dpos = (off.to(x.dtype) - fx.unsqueeze(1)) * self.dx  # [n, 9, 2]
        return flat, weight, dpos

    def p2g(
        self, x: torch.Tensor, v: torch.Tensor, C: torch.Tensor, J: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Scatter momentum and mass to the grid: ([n_grid^2, 2] momentum, [n_grid^2] mass, weights)."""
        flat, weight, dpos = self._weights(x)
        stress = -self.dt * 4.0 * self.E * self.p_vol * (J - 1.0) / self.dx**2  # [n]
        affine = stress[:, None, None] * self._eye + self.p_mass * C  # [n, 2, 2]
        momentum = self.p_mass * v.unsqueeze(1) + torch.einsum("nab,nkb->nka", affine, dpos)  # [n, 9, 2]
        g2 = self.n_grid**2
        grid_p = torch.zeros(g2, 2, dtype=x.dtype).index_add_(
            0, flat.reshape(-1), (weight.unsqueeze(-1) * momentum).reshape(-1, 2)
        )
        grid_m = torch.zeros(g2, dtype=x.dtype).index_add_(
            0, flat.reshape(-1), (weight * self.p_mass).reshape(-1)
        )
        return grid_p, grid_m, (flat, weight, dpos)

    def grid_update(self, grid_p: torch.Tensor, grid_m: torch.Tensor) -> torch.Tensor:
        """Grid velocity [n_grid^2, 2] (m/s): momentum / mass, gravity, separating walls."""
        has_mass = grid_m > 0
        gv = torch.where(has_mass.unsqueeze(-1), grid_p / grid_m.clamp_min(1e-300).unsqueeze(-1), 0.0)
        gv[:, 1] = torch.where(has_mass, gv[:, 1] - self.dt * self.gravity, 0.0)
        outward = (self._wall_lo & (gv < 0)) | (self._wall_hi & (gv > 0))  # [n_grid^2, 2]
        return gv.masked_fill(outward, 0.0)

    def substep(
        self, x: torch.Tensor, v: torch.Tensor, C: torch.Tensor, J: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int, float]:
        """One MLS-MPM substep; returns new ``x, v, C, J``, clamped count and grid mass."""
        grid_p, grid_m, (flat, weight, dpos) = self.p2g(x, v, C, J)
        gv = self.grid_update(grid_p, grid_m)
        g_v = gv[flat]  # [n, 9, 2]
        new_v = (weight.unsqueeze(-1) * g_v).sum(1)  # [n, 2]
        new_C = 4.0 / self.dx**2 * torch.einsum("nk,nka,nkb->nab", weight, g_v, dpos)  # [n, 2, 2]
        x = x + self.dt * new_v
        lo, hi = self.bounds[0]
        clamped = int(((x < lo) | (x > hi)).any(-1).sum())
        x = x.clamp(lo, hi)
        J = J * (1.0 + self.dt * (new_C[:, 0, 0] + new_C[:, 1, 1]))
        return x, new_v, new_C, J, clamped, float(grid_m.sum())

    # ------------------------------------------------------------------ scenes
    def water_blocks(
        self,
        rng: np.random.Generator,
        n_blocks: tuple[int, int] = (1, 3),
        n_particles: int = 500,
        max_speed: float = 2.0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Random non-overlapping rectangular blocks of water with random velocities.

        The blocks hold ``n_particles`` in total (up to rounding of the block sides to whole
        particle rows), spaced ``particle_spacing * dx``, placed at random in the upper
        part of the box without overlap; each block moves with a velocity whose
        components are uniform in ``[-max_speed, max_speed]`` m/s.

        Returns:
            positions [n, 2] (m) and velocities [n, 2] (m/s).
        """
        k = int(rng.integers(n_blocks[0], n_blocks[1] + 1))
        h = self.spacing * self.dx
        lo, hi = self.bounds[0]
        margin = 2 * self.dx
        for _attempt in range(1000):
            shares = rng.dirichlet(np.full(k, 4.0)) * n_particles
            rects = []
            ok = True
            for share in shares:
                aspect = rng.uniform(0.5, 2.0)
                nx = max(2, round(math.sqrt(share * aspect)))
                ny = max(2, round(share / nx))
                wx, wy = nx * h, ny * h
                if wx > hi - lo - 2 * margin or wy > 0.6 * (hi - lo):
                    ok = False
                    break
                placed = False
                for _try in range(200):
                    x0 = rng.uniform(lo + margin, hi - margin - wx)
                    y0 = rng.uniform(lo + 0.3 * (hi - lo), hi - margin - wy)
                    if all(
                        x0 + wx + margin < a
                        or a + ax + margin < x0
                        or y0 + wy + margin < b
                        or b + by + margin < y0
                        for a, b, ax, ay, by in [(r[0], r[1], r[2], r[3], r[3]) for r in rects]
                    ):
                        rects.append((x0, y0, wx, wy, nx, ny))
                        placed = True
                        break
                if not placed:
                    ok = False
                    break
            if ok:
                break
        else:  # pragma: no cover - 1000 failed layouts would mean impossible settings
            raise RuntimeError("could not place the water blocks; lower n_particles or n_blocks")
        pos, vel = [], []
        for x0, y0, _wx, _wy, nx, ny in rects:
            gx, gy = np.meshgrid((np.arange(nx) + 0.5) * h, (np.arange(ny) + 0.5) * h, indexing="ij")
            block = np.stack([x0 + gx.ravel(), y0 + gy.ravel()], axis=1)
            pos.append(block)
            vel.append(np.broadcast_to(rng.uniform(-max_speed, max_speed, 2), block.shape))
        return np.concatenate(pos), np.concatenate(vel).copy()

    def run(
        self, positions: np.ndarray, velocities: np.ndarray, n_frames: int, substeps: int
    ) -> WaterTrajectory:
        """Simulate from the given state; frame 0 is the initial state.

        Args:
            positions: [n, 2] m, inside the domain.
            velocities: [n, 2] m/s.
            n_frames: frames to store (including frame 0).
            substeps: MPM substeps between frames.
        """
        x = torch.as_tensor(positions, dtype=self.dtype).clone()
        v = torch.as_tensor(velocities, dtype=self.dtype).clone()
        lo, hi = self.bounds[0]
        if bool((x < lo).any() or (x > hi).any()):
            raise ValueError("initial positions must lie inside the domain")
        n = x.shape[0]
        C = torch.zeros(n, 2, 2, dtype=self.dtype)
        J = torch.ones(n, dtype=self.dtype)
        frames = [x.clone()]
        grid_mass, clamped = [], 0
        for _ in range(n_frames - 1):
            for s in range(substeps):
                x, v, C, J, c, gm = self.substep(x, v, C, J)
                clamped += c
                if s == 0:
                    grid_mass.append(gm)
            frames.append(x.clone())
        _, gm_last, _ = self.p2g(x, v, C, J)
        grid_mass.append(float(gm_last.sum()))
        return WaterTrajectory(
            positions=torch.stack(frames).numpy(),
            particle_type=np.full(n, WATER, dtype=np.int64),
            bounds=self.bounds.copy(),
            frame_dt=substeps * self.dt,
            n_clamped=clamped,
            mass=np.full(n_frames, n * self.p_mass),
            grid_mass=np.array(grid_mass),
        )


def simulate_water(
    seed: int,
    n_particles: int = 500,
    n_frames: int = 300,
    substeps: int = 5,
    n_blocks: tuple[int, int] = (1, 3),
    max_speed: float = 2.0,
    n_grid: int = 64,
    dt: float = 4e-4,
) -> WaterTrajectory:
    """One trajectory of random water blocks dropped into the box (deterministic in ``seed``).

    Args:
        seed: seed of ``numpy.random.default_rng`` for the block layout and velocities.
        n_particles: target particle count (actual: within a few % after rounding).
        n_frames: stored frames, frame 0 the initial state.
        substeps: substeps of ``dt`` between frames (frame_dt = substeps * dt, s).
        n_blocks: (min, max) number of blocks.
        max_speed: bound of each initial velocity component, m/s.
        n_grid: grid nodes per side.
        dt: substep, s.
    """
    sim = MPMWater(n_grid=n_grid, dt=dt)
    rng = np.random.default_rng(seed)
    pos, vel = sim.water_blocks(rng, n_blocks=n_blocks, n_particles=n_particles, max_speed=max_speed)
    return sim.run(pos, vel, n_frames, substeps)
