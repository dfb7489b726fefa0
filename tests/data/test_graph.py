"""Graphs from ASE Atoms and SMILES, batching, species indices and input checks."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.neighborlist import neighbor_list
from ase.stress import voigt_6_to_full_3x3_stress

from physnet.data import keys as K
from physnet.data.graph import (
    SpeciesIndex,
    check_positions,
    collate,
    from_ase,
    from_smiles,
    to_device,
)
from physnet.data.neighbors import radius_graph

CUTOFF = 3.5
STRUCTURE_KEYS = {K.POS, K.Z, K.BATCH, K.N_ATOMS, K.CELL, K.PBC, K.EDGE_INDEX, K.EDGE_SHIFT, K.CUTOFF}
# A key that physnet.data.keys does not define (not a graph key, on purpose).
UNKNOWN_KEY = "spin_multiplicity"


def _water() -> Atoms:
    return molecule("H2O")


def _copper(seed: int = 0) -> Atoms:
    """Rattled cubic Cu cell (4 atoms) with energy, forces and Voigt stress attached."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(stdev=0.05, seed=seed)
    rng = np.random.default_rng(seed)
    calc = SinglePointCalculator(
        atoms,
        energy=-13.7,
        forces=rng.normal(size=(len(atoms), 3)),
        stress=np.array([1.0, 2.0, 3.0, 0.4, 0.5, 0.6]),  # xx yy zz yz xz xy
    )
    atoms.calc = calc
    return atoms


def _check_shapes(graph: dict[str, torch.Tensor], n_atoms: int) -> None:
    n_edges = graph[K.EDGE_INDEX].shape[1]
    assert graph[K.POS].shape == (n_atoms, 3)
    assert graph[K.Z].shape == (n_atoms,) and graph[K.Z].dtype == torch.long
    assert graph[K.BATCH].shape == (n_atoms,) and graph[K.BATCH].dtype == torch.long
    assert graph[K.N_ATOMS].tolist() == [n_atoms]
    assert graph[K.CELL].shape == (1, 3, 3)
    assert graph[K.PBC].shape == (1, 3) and graph[K.PBC].dtype == torch.bool
    assert graph[K.EDGE_INDEX].dtype == torch.long
    assert graph[K.EDGE_SHIFT].shape == (n_edges, 3) and graph[K.EDGE_SHIFT].dtype == torch.long


# --- from_ase ----------------------------------------------------------------------------


def test_from_ase_molecule() -> None:
    atoms = _water()
    atoms.cell = np.eye(3) * 2.0  # a cell without periodicity must not reach the graph
    graph = from_ase(atoms, CUTOFF, dtype=torch.float64)
    assert set(graph) == STRUCTURE_KEYS  # no calculator -> no targets
    _check_shapes(graph, 3)
    assert graph[K.POS].dtype == torch.float64 and graph[K.CELL].dtype == torch.float64
    torch.testing.assert_close(graph[K.POS], torch.tensor(atoms.positions))
    assert graph[K.Z].tolist() == [8, 1, 1]
    assert graph[K.BATCH].tolist() == [0, 0, 0]
    assert not graph[K.CELL].any(), "cell must be zeroed for a non-periodic structure"
    assert not graph[K.PBC].any()
    # all 3 atoms within 3.5 Å of each other: full list of 6 edges, no shifts
    assert sorted(graph[K.EDGE_INDEX].T.tolist()) == [[0, 1], [0, 2], [1, 0], [1, 2], [2, 0], [2, 1]]
    assert not graph[K.EDGE_SHIFT].any()


def test_from_ase_default_dtype_is_torch_default() -> None:
    graph = from_ase(_water(), CUTOFF)
    assert graph[K.POS].dtype == torch.get_default_dtype()
    assert graph[K.CELL].dtype == torch.get_default_dtype()


def test_from_ase_periodic_with_targets() -> None:
    atoms = _copper()
    graph = from_ase(atoms, CUTOFF, dtype=torch.float64)
    assert set(graph) == STRUCTURE_KEYS | {K.ENERGY, K.FORCES, K.STRESS}
    _check_shapes(graph, 4)
    torch.testing.assert_close(graph[K.CELL][0], torch.tensor(np.asarray(atoms.cell)))
    assert graph[K.PBC].tolist() == [[True, True, True]]
    # neighbour list equals ASE's
    i, j, shift = neighbor_list("ijS", atoms, CUTOFF)
    ref = sorted(zip(i.tolist(), j.tolist(), map(tuple, shift.tolist()), strict=True))
    got = graph[K.EDGE_INDEX].T.tolist()
    got = sorted((a, b, tuple(s)) for (a, b), s in zip(got, graph[K.EDGE_SHIFT].tolist(), strict=True))
    assert got == ref and len(got) == 4 * 12  # 12 nearest neighbours in fcc

    # targets, with shapes of keys.py
    assert graph[K.ENERGY].shape == (1,) and graph[K.ENERGY].dtype == torch.float64
    assert float(graph[K.ENERGY]) == -13.7
    assert graph[K.FORCES].shape == (4, 3)
    torch.testing.assert_close(graph[K.FORCES], torch.tensor(atoms.calc.results["forces"]))
    stress = graph[K.STRESS]
    assert stress.shape == (1, 3, 3)
    expected = torch.tensor(
        [[1.0, 0.6, 0.5], [0.6, 2.0, 0.4], [0.5, 0.4, 3.0]], dtype=torch.float64
    )  # Voigt xx yy zz yz xz xy -> 3x3
    torch.testing.assert_close(stress[0], expected)
    torch.testing.assert_close(stress[0], torch.tensor(voigt_6_to_full_3x3_stress(atoms.get_stress())))


def test_from_ase_full_stress_and_targets_off() -> None:
    atoms = _copper()
    full = np.arange(9.0).reshape(3, 3)
    full = full + full.T
    atoms.calc = SinglePointCalculator(atoms, energy=1.5, stress=full)
    graph = from_ase(atoms, CUTOFF, dtype=torch.float64)
    torch.testing.assert_close(graph[K.STRESS], torch.tensor(full).reshape(1, 3, 3))
    assert K.FORCES not in graph
    assert set(from_ase(atoms, CUTOFF, targets=False)) == STRUCTURE_KEYS


def test_from_ase_float32() -> None:
    graph = from_ase(_copper(), CUTOFF, dtype=torch.float32)
    for key in [K.POS, K.CELL, K.ENERGY, K.FORCES, K.STRESS]:
        assert graph[key].dtype == torch.float32, key
    assert graph[K.Z].dtype == torch.long and graph[K.EDGE_INDEX].dtype == torch.long


# --- from_smiles ---------------------------------------------------------------------------


def test_from_smiles_conformers() -> None:
    confs = from_smiles("CCO", n_conformers=3, seed=0)
    assert len(confs) == 3
    for atoms in confs:
        assert isinstance(atoms, Atoms)
        assert len(atoms) == 9
        assert sorted(atoms.numbers.tolist()) == [1] * 6 + [6, 6, 8]
        assert not atoms.pbc.any()
        assert np.isfinite(atoms.positions).all()
        # C-C bond is the first bond in "CCO": a sane length in Å
        assert 1.4 < atoms.get_distance(0, 1) < 1.65
    again = from_smiles("CCO", n_conformers=3, seed=0)
    for a, b in zip(confs, again, strict=True):
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-8)
    other_seed = from_smiles("CCO", n_conformers=1, seed=2)[0]
    assert np.abs(other_seed.positions - confs[0].positions).max() > 1e-3


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_from_smiles_conformers_differ(seed: int) -> None:
    confs = from_smiles("CCO", n_conformers=3, seed=seed)
    for a in range(3):
        for b in range(a + 1, 3):
            diff = np.abs(confs[a].positions - confs[b].positions).max()
            assert diff > 1e-3, f"seed {seed}: conformers {a} and {b} are identical"


def test_from_smiles_with_cutoff_gives_graphs() -> None:
    graphs = from_smiles("CCO", n_conformers=2, seed=0, cutoff=CUTOFF, dtype=torch.float64)
    assert len(graphs) == 2
    for graph in graphs:
        assert isinstance(graph, dict) and set(graph) == STRUCTURE_KEYS
        _check_shapes(graph, 9)
        assert graph[K.POS].dtype == torch.float64
        assert graph[K.EDGE_INDEX].shape[1] > 0
        assert not graph[K.CELL].any() and not graph[K.PBC].any()


@pytest.mark.parametrize("smiles", ["C1CC(", "not_a_smiles"])
def test_from_smiles_invalid_raises(smiles: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"SMILES {smiles!r}")):
        from_smiles(smiles)


# --- collate -----------------------------------------------------------------------------


def _three_graphs() -> list[dict[str, torch.Tensor]]:
    """A molecule (3 atoms), a crystal (4 atoms) and a longer molecule (9 atoms), no targets."""
    ethanol = from_smiles("CCO", n_conformers=1, seed=0, optimize=False)[0]
    atoms = [_water(), _copper(), ethanol]
    return [from_ase(a, CUTOFF, dtype=torch.float64, targets=False) for a in atoms]


def test_collate_offsets_and_batch() -> None:
    graphs = _three_graphs()
    out = collate(graphs)
    assert set(out) == STRUCTURE_KEYS
    counts = [3, 4, 9]
    assert out[K.N_ATOMS].tolist() == counts
    assert out[K.BATCH].tolist() == [0] * 3 + [1] * 4 + [2] * 9
    assert out[K.POS].shape == (16, 3) and out[K.CELL].shape == (3, 3, 3) and out[K.PBC].shape == (3, 3)
    torch.testing.assert_close(out[K.POS], torch.cat([g[K.POS] for g in graphs]))
    assert torch.equal(out[K.Z], torch.cat([g[K.Z] for g in graphs]))
    assert torch.equal(out[K.CELL][1], graphs[1][K.CELL][0]) and not out[K.CELL][[0, 2]].any()
    assert out[K.PBC].tolist() == [[False] * 3, [True] * 3, [False] * 3]

    n_edges = [g[K.EDGE_INDEX].shape[1] for g in graphs]
    assert out[K.EDGE_INDEX].shape == (2, sum(n_edges))
    start, offset = 0, 0
    for g, graph in enumerate(graphs):
        block = out[K.EDGE_INDEX][:, start : start + n_edges[g]]
        assert torch.equal(block, graph[K.EDGE_INDEX] + offset), f"graph {g} edges not offset by {offset}"
        assert torch.equal(out[K.EDGE_SHIFT][start : start + n_edges[g]], graph[K.EDGE_SHIFT])
        start += n_edges[g]
        offset += counts[g]
    # the batch's neighbour list is the one radius_graph builds on the batched input
    edge_index, edge_shift = radius_graph(out[K.POS], CUTOFF, out[K.BATCH], out[K.CELL], out[K.PBC])
    assert torch.equal(edge_index, out[K.EDGE_INDEX]) and torch.equal(edge_shift, out[K.EDGE_SHIFT])


def test_collate_concatenates_targets() -> None:
    a, b = _copper(seed=1), _copper(seed=2)
    b.calc.results["energy"] = 2.5
    graphs = [from_ase(x, CUTOFF, dtype=torch.float64) for x in (a, b)]
    out = collate(graphs)
    assert out[K.ENERGY].tolist() == [-13.7, 2.5]
    assert out[K.FORCES].shape == (8, 3) and out[K.STRESS].shape == (2, 3, 3)
    torch.testing.assert_close(out[K.FORCES][4:], graphs[1][K.FORCES])
    torch.testing.assert_close(out[K.STRESS][1], graphs[1][K.STRESS][0])


def test_collate_one_graph_is_identity() -> None:
    graph = from_ase(_copper(), CUTOFF, dtype=torch.float64)
    out = collate([graph])
    assert set(out) == set(graph)
    for key, value in graph.items():
        assert out[key].dtype == value.dtype, key
        assert torch.equal(out[key], value), key


def test_collate_mismatched_keys_raises() -> None:
    with_targets = from_ase(_copper(), CUTOFF)
    without = from_ase(_copper(), CUTOFF, targets=False)
    with pytest.raises(ValueError, match=r"graph 1 has keys .* all must match"):
        collate([with_targets, without])


def test_collate_unknown_key_raises() -> None:
    graph = from_ase(_water(), CUTOFF)
    graph[UNKNOWN_KEY] = torch.ones(1)
    with pytest.raises(ValueError, match=UNKNOWN_KEY):
        collate([graph])


def test_collate_empty_raises() -> None:
    with pytest.raises(ValueError, match="empty"):
        collate([])


# --- SpeciesIndex --------------------------------------------------------------------------


def test_species_index_maps_symbols_and_numbers() -> None:
    z = torch.tensor([8, 1, 6, 1, 8])
    by_symbol = SpeciesIndex(["H", "C", "O"])
    by_number = SpeciesIndex([1, 6, 8])
    mixed = SpeciesIndex(["H", 6, np.int64(8)])
    for index in (by_symbol, by_number, mixed):
        index.check(z)  # all known: no error
        assert index(z).tolist() == [2, 0, 1, 0, 2]
        assert len(index) == 3 and index.symbols == ["H", "C", "O"]
    # the order given fixes the indices
    assert SpeciesIndex(["O", "H", "C"])(z).tolist() == [0, 1, 2, 1, 0]


def test_species_index_check_names_unknown_element() -> None:
    index = SpeciesIndex(["H", "C", "O"])
    with pytest.raises(ValueError, match=r"element\(s\) Fe \(Z=\[26\]\).*\['H', 'C', 'O'\]"):
        index.check(torch.tensor([1, 26, 6]))
    with pytest.raises(ValueError, match=r"Cl, Fe .*\['H', 'C', 'O'\]"):
        index.check(torch.tensor([17, 26, 17]))
    with pytest.raises(ValueError, match=r"not in the model's species"):
        index.check(torch.tensor([1, 500]))  # beyond the periodic table


@pytest.mark.parametrize(
    ("species", "message"),
    [
        (["H", "C", "H"], "duplicates"),
        (["H", 1], "duplicates"),
        ([], "empty"),
        (["Xx"], r"unknown element 'Xx'"),
        (["X"], r"unknown element 'X'"),
        ([0], "outside"),
        ([119], "outside"),
    ],
)
def test_species_index_bad_species_raises(species: list[int | str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SpeciesIndex(species)


# --- bad input -----------------------------------------------------------------------------


def test_empty_atoms_raises() -> None:
    with pytest.raises(ValueError, match="no atoms"):
        from_ase(Atoms(), CUTOFF)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_position_raises(bad: float) -> None:
    atoms = molecule("CH4")
    atoms.positions[3, 1] = bad
    atoms.positions[4, 2] = bad  # the first bad atom is named
    with pytest.raises(ValueError, match=r"atom 3 has a non-finite position"):
        from_ase(atoms, CUTOFF)
    pos = torch.zeros(5, 3)
    pos[2, 0] = bad
    pos[4, 1] = bad
    with pytest.raises(ValueError, match=r"atom 2 has a non-finite position"):
        check_positions(pos)
    check_positions(torch.zeros(5, 3))  # finite: no error


# --- to_device ---------------------------------------------------------------------------


def test_to_device_casts_floats_only() -> None:
    graph = from_ase(_copper(), CUTOFF, dtype=torch.float64)
    out = to_device(graph, "cpu", dtype=torch.float32)
    assert set(out) == set(graph)
    for key, value in graph.items():
        if value.is_floating_point():
            assert out[key].dtype == torch.float32, key
            torch.testing.assert_close(out[key], value.float(), rtol=0, atol=0)
        else:
            assert out[key].dtype == value.dtype, key
            assert torch.equal(out[key], value), key
    assert out[K.PBC].dtype == torch.bool and out[K.EDGE_INDEX].dtype == torch.long
    assert graph[K.POS].dtype == torch.float64, "the input graph must not change"
    kept = to_device(graph, "cpu")
    assert all(kept[key].dtype == value.dtype for key, value in graph.items())
