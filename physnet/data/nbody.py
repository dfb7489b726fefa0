"""The charged-particle N-body benchmark of the EGNN paper, generated here.

Satorras, Hoogeboom & Welling, "E(n) Equivariant Graph Neural Networks", ICML 2021, Sec. 5.1;
the simulator is Kipf et al.'s (ICML 2018) ``ChargedParticlesSim`` as the EGNN code uses it:
``n_particles`` charges q = ±1 (equal odds) in 3D without a box, initial positions N(0, 1),
initial velocities of norm 0.5 in random directions, force on i
F_i = sum_j q_i q_j (x_i - x_j) / |x_i - x_j|^3 (each component clipped to ±100), leapfrog steps
of dt = 0.001, ``steps`` steps with every ``sample_every``-th kept (49 frames for 5000 / 100).

The arrays and their layout are those of the published files: ``loc_<split>``, ``vel_<split>``
[n_sims, frames, 3, n_particles] float32, ``charges_<split>`` [n_sims, n_particles, 1] int8 and
``edges_<split>`` [n_sims, n_particles, n_particles] int8 (q_i q_j). The simulations run
vectorised over systems with a ``numpy.random.Generator``, so the numbers differ from the
published file (same distribution, other random draws).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

__all__ = ["simulate_charged", "write_charged"]

DT = 0.001  # integration step (the simulator's time unit)
MAX_FORCE = 0.1 / DT  # per-component force clip of the simulator


def _forces(loc: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Coulomb-like forces [n, 3, p] on positions [n, 3, p] with charge products [n, p, p]."""
    diff = loc[:, :, :, None] - loc[:, :, None, :]  # [n, 3, p, p]: x_i - x_j
    r2 = (diff**2).sum(1)  # [n, p, p]
    with np.errstate(divide="ignore"):
        size = edges / r2**1.5
    p = loc.shape[-1]
    size[:, np.arange(p), np.arange(p)] = 0.0
    return np.clip((size[:, None] * diff).sum(-1), -MAX_FORCE, MAX_FORCE)


def simulate_charged(
    n_sims: int,
    n_particles: int = 5,
    steps: int = 5000,
    sample_every: int = 100,
    rng: np.random.Generator | None = None,
) -> dict[str, np.ndarray]:
    """``n_sims`` trajectories: ``loc``, ``vel`` [n_sims, steps // sample_every - 1, 3, n_particles],
    ``charges`` [n_sims, n_particles, 1], ``edges`` [n_sims, n_particles, n_particles]."""
    if n_sims < 1 or n_particles < 2 or sample_every < 1 or steps < 2 * sample_every:
        raise ValueError(
            f"need n_sims >= 1, n_particles >= 2 and steps >= 2 sample_every, got {n_sims}, "
            f"{n_particles}, {steps}, {sample_every}"
        )
    rng = rng if rng is not None else np.random.default_rng(43)
    charges = rng.choice([-1, 1], size=(n_sims, n_particles, 1))
    edges = (charges * charges.transpose(0, 2, 1)).astype(np.float64)
    loc = rng.standard_normal((n_sims, 3, n_particles))
    vel = rng.standard_normal((n_sims, 3, n_particles))
    vel *= 0.5 / np.linalg.norm(vel, axis=1, keepdims=True)
    n_frames = steps // sample_every - 1
    locs = np.zeros((n_sims, n_frames, 3, n_particles), dtype=np.float32)
    vels = np.zeros_like(locs)
    vel += DT * _forces(loc, edges)  # the first half of the leapfrog, as the simulator does
    for i in range(1, steps):
        loc += DT * vel
        if i % sample_every == 0 and i // sample_every <= n_frames:
            locs[:, i // sample_every - 1], vels[:, i // sample_every - 1] = loc, vel
        vel += DT * _forces(loc, edges)
    return {"loc": locs, "vel": vels, "charges": charges.astype(np.int8), "edges": edges.astype(np.int8)}


def write_charged(
    path: str | os.PathLike,
    n_train: int = 3000,
    n_valid: int = 2000,
    n_test: int = 2000,
    seed: int = 43,
    overwrite: bool = False,
    verbose: bool = True,
) -> Path:
    """Generate the train / valid / test splits into ``path`` (.npz); returns the path.

    An existing file is kept unless ``overwrite``; the file is written under a temporary name
    and renamed, so an interrupted run leaves no partial file."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it")
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("valid", n_valid), ("test", n_test)):
        start = time.perf_counter()
        for key, value in simulate_charged(n, rng=rng).items():
            arrays[f"{key}_{split}"] = value
        if verbose:
            print(f"{split}: {n} simulations in {time.perf_counter() - start:.1f} s", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path
