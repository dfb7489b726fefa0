"""Initial velocities for MD."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.md.velocitydistribution import Stationary, ZeroRotation


def maxwell_boltzmann(atoms: Atoms, temperature_K: float, rng: np.random.Generator) -> None:
    """Maxwell-Boltzmann momenta at ``temperature_K`` [K] drawn from ``rng`` (ASE's own routine)."""
    try:
        from ase.md.velocitydistribution import thermalize_momenta  # ASE >= 3.29
    except ImportError:  # pragma: no cover - older ASE; same distribution
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    else:
        thermalize_momenta(atoms, temperature_K, rng=rng)


def thermalize(atoms: Atoms, temperature_K: float, seed: int = 0) -> None:
    """:func:`maxwell_boltzmann` momenta at ``temperature_K``, then no net momentum and, for a
    non-periodic structure, no net rotation (both change the temperature slightly)."""
    maxwell_boltzmann(atoms, temperature_K, np.random.default_rng(seed))
    Stationary(atoms)
    if not atoms.pbc.any():
        ZeroRotation(atoms)
