"""edge_pairs (each edge matched with its reverse) and SchNet's per-pair filters built on it."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from ase import Atoms

import physnet
import physnet.models.schnet as schnet_module
from physnet.data import keys as K
from physnet.data.neighbors import edge_pairs, radius_graph


def small_triclinic(seed: int = 0) -> Atoms:
    """6 atoms in a triclinic cell smaller than twice the cutoff: many own periodic images."""
    rng = np.random.default_rng(seed)
    cell = np.array([[3.1, 0.0, 0.0], [0.7, 3.3, 0.0], [-0.4, 0.5, 3.6]])
    return Atoms(numbers=[14, 8, 8, 14, 8, 8], scaled_positions=rng.random((6, 3)), cell=cell, pbc=True)


def structures() -> list[Atoms]:
    mixed = small_triclinic(1)
    mixed.pbc = [True, False, True]
    return [physnet.data.from_smiles("CCO")[0], small_triclinic(), mixed]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_every_edge_is_paired_with_its_reverse(index: int) -> None:
    atoms = structures()[index]
    g = physnet.data.from_ase(atoms, 4.0, dtype=torch.float64)
    ei, shift = g[K.EDGE_INDEX], g[K.EDGE_SHIFT]
    rep, pair = edge_pairs(ei, shift, len(atoms))
    assert rep.shape[0] * 2 == ei.shape[1]
    assert torch.bincount(pair).eq(2).all()  # two edges per pair
    r = rep[pair]  # the representative of every edge
    same = (ei[:, r] == ei).all(0) & (shift[r] == shift).all(1)
    reverse = (ei[:, r] == ei.flip(0)).all(0) & (shift[r] == -shift).all(1)
    assert (same | reverse).all()
    assert same[rep].all()


def test_asymmetric_or_odd_lists_are_not_paired() -> None:
    pos = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.2, 0.0]], dtype=torch.float64)
    ei, shift = radius_graph(pos, 2.0)
    assert edge_pairs(ei, shift, 3) is not None
    assert edge_pairs(ei[:, 1:], shift[1:], 3) is None  # odd
    assert edge_pairs(ei[:, 2:], shift[2:], 3) is None  # even but one-way edges
    assert edge_pairs(ei[:, :0], shift[:0], 3) is None  # empty


@pytest.mark.parametrize("batched", [False, True])
def test_schnet_with_per_pair_filters_equals_per_edge(monkeypatch: pytest.MonkeyPatch, batched: bool) -> None:
    torch.manual_seed(0)
    model = physnet.models.build(
        "schnet", species=["H", "C", "O", "Si"], cutoff=4.0, n_features=32, n_filters=32
    )
    potential = physnet.Potential(copy.deepcopy(model)).double().eval()
    graphs = [physnet.data.from_ase(a, 4.0, dtype=torch.float64) for a in structures()]
    if batched:
        graphs = [physnet.data.collate(graphs)]
    for g in graphs:
        stress = bool(g[K.PBC].all())
        monkeypatch.setattr(schnet_module, "PAIR_MIN_EDGES", 10**12)
        per_edge = potential(g, compute_stress=stress)
        monkeypatch.setattr(schnet_module, "PAIR_MIN_EDGES", 0)
        per_pair = potential(g, compute_stress=stress)
        for key in (K.ENERGY, K.FORCES) + ((K.STRESS,) if stress else ()):
            torch.testing.assert_close(per_pair[key], per_edge[key], rtol=0, atol=1e-12)
