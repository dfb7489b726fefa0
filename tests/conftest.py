"""Shared fixtures: small reference data sets made on the fly with ASE's EMT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def emt_frames(kind: str, n: int, seed: int = 0) -> list:
    """``n`` labelled frames: ``"molecule"`` (rattled RDKit ethanol, EMT's H/C/O parameters)
    or ``"metal"`` (strained, rattled 8-atom Cu/Au fcc cells with stress)."""
    import physnet

    rng = np.random.default_rng(seed)
    frames = []
    if kind == "molecule":
        base = physnet.data.from_smiles("CCO", seed=seed)[0]
    else:
        base = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
        base.numbers[[1, 6]] = 79  # two Au
    for _ in range(n):
        atoms = base.copy()
        if kind == "metal":
            strain = np.eye(3) + rng.normal(scale=0.01, size=(3, 3))
            atoms.set_cell(np.asarray(base.cell) @ strain, scale_atoms=True)
        atoms.positions += rng.normal(scale=0.05 if kind == "molecule" else 0.08, size=atoms.positions.shape)
        atoms.calc = EMT()
        results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        if kind == "metal":
            results["stress"] = atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, **results)
        frames.append(atoms)
    return frames


@pytest.fixture(scope="session")
def emt_molecule_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "ethanol_emt.xyz"
    write(path, emt_frames("molecule", 60))
    return path


@pytest.fixture(scope="session")
def emt_metal_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "cuau_emt.xyz"
    write(path, emt_frames("metal", 40, seed=1))
    return path
