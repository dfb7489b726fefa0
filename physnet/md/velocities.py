"""Initial velocities for MD."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.md.velocitydistribution import Stationary, ZeroRotation


def thermalize(atoms: Atoms, temperature_K: float, seed: int = 0) -> None:
    """Maxwell-Boltzmann momenta at ``temperature_K``, then no net momentum and, for a
    non-periodic structure, no net rotation (both change the temperature slightly)."""
    rng = np.random.default_rng(seed)
    try:
        from ase.md.velocitydistribution import thermalize_momenta  # ASE >= 3.29
    except ImportError:  # pragma: no cover - older ASE
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    else:
        thermalize_momenta(atoms, temperature_K, rng=rng)
    Stationary(atoms)
    if not atoms.pbc.any():
        ZeroRotation(atoms)
