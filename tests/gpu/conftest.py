"""Fixtures of the GPU suite (``pytest -m gpu``): the device, and inputs that need no RDKit.

Every test here takes the ``device`` fixture: CUDA by default, skipped with "needs CUDA" where
there is none (CI), so the tests show as skipped, not deselected. ``PHYSNET_TEST_DEVICE=cpu``
runs the same code on the CPU (a dry run of the suite before a GPU is at hand);
``PHYSNET_TEST_DEVICE=cuda:1`` picks another card. The lent GPU machine has no RDKit, so the
molecule is ASE's ethanol rather than :func:`physnet.testing.reference_structures`' RDKit one.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

import physnet

DEVICE_VARIABLE = "PHYSNET_TEST_DEVICE"
SPECIES = ["H", "C", "O", "Cu", "Au"]
#: the four atomistic energy models, small enough for a quick suite (CGnet is built apart)
SMALL = {
    "schnet": {"n_features": 32, "n_filters": 32, "n_interactions": 2, "n_rbf": 16},
    "behler_parrinello": {"hidden": [32, 16]},
    "egnn": {"n_features": 32, "n_layers": 2},
    "se3_transformer": {"n_layers": 2},
}


@pytest.fixture(scope="session")
def device() -> torch.device:
    """The device under test; skips the test where CUDA is asked for and absent."""
    device = torch.device(os.environ.get(DEVICE_VARIABLE, "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        pytest.skip(f"needs CUDA (set {DEVICE_VARIABLE}=cpu to dry-run the GPU suite on the CPU)")
    return device


def ethanol() -> Atoms:
    """ASE's ethanol (9 atoms, H/C/O, no cell)."""
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.02, seed=0)
    return atoms


def crystal(seed: int = 1) -> Atoms:
    """The kit's triclinic, rattled CuAu cell of 4 atoms (sees its own images at 5 Å)."""
    atoms = bulk("CuAu", "rocksalt", a=4.1).repeat((1, 1, 2))
    atoms.rattle(0.15, seed=seed)
    atoms.set_cell(np.asarray(atoms.cell) @ [[1, 0.1, 0], [0, 1, 0.05], [0, 0, 1]], scale_atoms=True)
    return atoms


def potential(name: str, seed: int = 0) -> physnet.Potential:
    """A small random potential ``name`` (one of :data:`SMALL`) for H, C, O, Cu, Au."""
    torch.manual_seed(seed)
    return physnet.Potential(physnet.models.build(name, species=SPECIES, **SMALL[name]))


@contextlib.contextmanager
def host_syncs(device: torch.device) -> Iterator[list[str]]:
    """Collect the host syncs made inside the block as a list of descriptions.

    CUDA: every synchronising call that ``torch.cuda.set_sync_debug_mode("warn")`` reports.
    CPU: the calls :func:`physnet.testing.count_host_syncs` counts (those that would sync on a
    device), with the physnet line that made them.
    """
    from physnet.testing import count_host_syncs

    found: list[str] = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                yield found
            finally:
                torch.cuda.set_sync_debug_mode("default")
        found.extend(str(w.message) for w in seen if "synchroniz" in str(w.message).lower())
    else:
        with count_host_syncs() as counts:
            yield found
        found.extend(f"{call} at {place}" for (call, place), n in counts.items() for _ in range(n))
