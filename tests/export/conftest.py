"""Small potentials of every energy model, exported once per test session (float64).

Each has non-trivial references, energy scale and shift (and priors where the model has them),
so the tests see everything a trained potential carries. Compiling all six takes about two
minutes on one core; the files are shared by the export, calculator and LAMMPS tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import physnet
from physnet.export import example_graph, export_potential
from physnet.nn.priors import ZBLRepulsion, fit_cg_priors

MODELS = ("schnet", "painn", "behler_parrinello", "egnn", "se3_transformer", "cgnet")
ATOMIC = ("schnet", "painn", "behler_parrinello", "egnn", "se3_transformer")


def _make_potential(name: str, dtype: torch.dtype = torch.float64, seed: int = 0) -> physnet.Potential:
    """A small random potential of model ``name`` with references, scale, shift and priors."""
    torch.manual_seed(seed)
    species = ["H", "C", "O"]
    priors: dict = {}
    if name == "schnet":
        model = physnet.models.build(
            "schnet", species=species, cutoff=4.0, n_features=32, n_filters=32, n_interactions=3, n_rbf=20
        )
        priors = {"zbl": ZBLRepulsion(species, cutoff=1.5)}
    elif name == "painn":
        model = physnet.models.build("painn", species=species, cutoff=4.0, n_features=16, n_interactions=2)
    elif name == "behler_parrinello":
        model = physnet.models.build("behler_parrinello", species=species, cutoff=4.0, hidden=(16, 16))
    elif name == "egnn":
        model = physnet.models.build("egnn", species=species, cutoff=4.0, n_features=16, n_layers=2)
    elif name == "se3_transformer":
        model = physnet.models.build(
            "se3_transformer", species=species, cutoff=4.0, channels=(8, 4), n_layers=2, n_heads=2
        )
    elif name == "cgnet":
        species = ["C", "N"]
        model = physnet.models.build("cgnet", species=species, n_beads=5, n_layers=2, width=16)
        frames = torch.cumsum(torch.randn(40, 5, 3, dtype=torch.float64) * 0.3 + torch.tensor([1.5, 0, 0]), 1)
        priors = fit_cg_priors(frames, energy_unit="kcal/mol")
    else:
        raise ValueError(name)
    unit = "kcal/mol" if name == "cgnet" else "eV"
    refs = {s: -float(n + 1) * 1.7 for n, s in enumerate(species)}
    potential = physnet.Potential(model, priors, atom_refs=refs, energy_unit=unit).to(dtype)
    potential.energy_scale.fill_(1.3)
    potential.energy_shift.fill_(-0.2)
    if name in ("behler_parrinello", "cgnet"):
        potential.model.fit_statistics([example_graph(potential, dtype, seed=seed + 10)])
    return potential.eval()


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[physnet.Potential, Path]]:
    """{model name: (eager potential, exported float64 .pt2)} for every energy model."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("exported")
    out = {}
    for name in MODELS:
        potential = _make_potential(name)
        out[name] = (potential, export_potential(potential, folder / f"{name}.pt2"))
    return out


def _triclinic_box(repeat: int = 2, seed: int = 0):
    """A periodic triclinic box of random H, C and O atoms (about ethanol's density), sheared cell."""
    from ase import Atoms

    rng = np.random.default_rng(seed)
    cell = np.array([[7.0, 0.0, 0.0], [1.5, 6.5, 0.0], [-0.8, 0.9, 6.8]]) * repeat / 2
    frac = rng.uniform(size=(12 * repeat**3, 3))
    atoms = Atoms(numbers=rng.choice([1, 6, 8], len(frac)), scaled_positions=frac, cell=cell, pbc=True)
    keep = [0]
    for k in range(1, len(atoms)):  # no two atoms closer than 0.9 Å (minimum image)
        if atoms.get_distances(k, keep, mic=True).min() > 0.9:
            keep.append(k)
    return atoms[keep]


@pytest.fixture(scope="session")
def make_potential():
    """The factory ``make_potential(name, dtype=torch.float64, seed=0)`` (see ``_make_potential``)."""
    return _make_potential


@pytest.fixture(scope="session")
def triclinic_box():
    """The factory ``triclinic_box(repeat=2, seed=0)`` of ASE Atoms (see ``_triclinic_box``)."""
    return _triclinic_box
