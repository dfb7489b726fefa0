"""Neighbour lists: :func:`radius_graph` against ASE's ``neighbor_list`` as the reference.

The centrepiece is :func:`test_radius_graph_matches_ase`, run on ~70 random systems
(seeded) that cover cubic and triclinic cells, cells smaller than the cutoff, cells
smaller than twice the cutoff, slabs and wires (with and without a zero non-periodic
lattice vector) and molecules. The sets of ``(i, j, shift)`` triples must be identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import fcc100, fcc111
from ase.neighborlist import neighbor_list

from physnet.data import keys as K
from physnet.data.neighbors import check_cell, edge_vectors, radius_graph

Edge = tuple[int, int, int, int, int]  # (i, j, s_a, s_b, s_c)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@dataclass(frozen=True)
class System:
    """One reference system: the structure, its cutoff and the kind of case it covers."""

    name: str
    kind: str
    atoms: Atoms
    cutoff: float


# --- random systems ------------------------------------------------------------------


def _random_matrix(rng: np.random.Generator, max_cond: float = 4.0) -> np.ndarray:
    """A random non-orthogonal 3x3 matrix near the identity with condition number < ``max_cond``."""
    while True:
        m = np.eye(3) + rng.uniform(-0.45, 0.45, size=(3, 3))
        if np.linalg.cond(m) < max_cond:
            if rng.random() < 0.25:  # a left-handed cell now and then
                m[2] *= -1.0
            return m


def _triclinic_cell(rng: np.random.Generator, length: float) -> np.ndarray:
    """Triclinic cell with rows of roughly ``length`` each (rescaled per row)."""
    m = _random_matrix(rng)
    return m / np.linalg.norm(m, axis=1, keepdims=True) * length * rng.uniform(0.85, 1.15, size=(3, 1))


def _periodic(rng: np.random.Generator, n: int, cell: np.ndarray, pbc: list[bool]) -> Atoms:
    """``n`` atoms at random fractional coordinates in [-0.3, 1.3) (some outside the cell)."""
    frac = rng.uniform(-0.3, 1.3, size=(n, 3))
    return Atoms(f"H{n}", positions=frac @ cell, cell=cell, pbc=pbc)


def _slab_zero_c(rng: np.random.Generator, n: int, ab: np.ndarray, thickness: float) -> Atoms:
    """Slab periodic along two vectors ``ab`` [2, 3] whose third lattice vector is zero."""
    normal = np.cross(ab[0], ab[1])
    normal /= np.linalg.norm(normal)
    frac = rng.uniform(-0.2, 1.2, size=(n, 2))
    height = rng.uniform(0.0, thickness, size=(n, 1))
    cell = np.vstack([ab, np.zeros((1, 3))])
    return Atoms(f"H{n}", positions=frac @ ab + height * normal, cell=cell, pbc=[True, True, False])


def _make_systems() -> list[System]:
    """All reference systems; each kind draws from its own seeded generator."""
    systems: list[System] = []

    def add(kind: str, atoms: Atoms, cutoff: float) -> None:
        k = sum(s.kind == kind for s in systems)
        name = f"{kind}-{k:02d}-n{len(atoms)}-rc{cutoff:.2f}"
        systems.append(System(name, kind, atoms, float(cutoff)))

    # cubic cells, 1..60 atoms, cell at least one cutoff wide
    rng = np.random.default_rng([2024, 0])
    for n in [1, 2, 5, 9, 17, 24, 33, 41, 52, 60]:
        cutoff = rng.uniform(2.0, 5.0)
        length = rng.uniform(max(cutoff, 4.0), 12.0)
        add("cubic", _periodic(rng, n, np.eye(3) * length, [True] * 3), cutoff)

    # general triclinic cells (random, non-orthogonal, condition number < 4)
    rng = np.random.default_rng([2024, 1])
    for n in [1, 3, 6, 8, 12, 15, 20, 27, 35, 44, 50, 58]:
        cutoff = rng.uniform(2.0, 5.0)
        cell = _triclinic_cell(rng, rng.uniform(6.0, 12.0))
        add("triclinic", _periodic(rng, n, cell, [True] * 3), cutoff)

    # tiny cells: every lattice vector shorter than the cutoff -> many images of each
    # neighbour and of the atom itself
    rng = np.random.default_rng([2024, 2])
    for n in [1, 1, 2, 2, 3, 3, 4, 5]:
        cutoff = rng.uniform(2.5, 4.0)
        if rng.random() < 0.5:
            cell = np.eye(3) * rng.uniform(0.8, 2.0)
        else:
            cell = _triclinic_cell(rng, rng.uniform(1.0, 2.0))
        add("tiny", _periodic(rng, n, cell, [True] * 3), cutoff)
    for n in [1, 3]:  # tiny 2D cell with zero third vector
        cutoff = rng.uniform(2.5, 3.5)
        ab = _triclinic_cell(rng, rng.uniform(1.0, 1.8))[:2]
        add("tiny", _slab_zero_c(rng, n, ab, 2.0), cutoff)

    # cells between one and two cutoffs wide
    rng = np.random.default_rng([2024, 3])
    for n in [2, 4, 7, 10, 14, 19, 25, 30]:
        cutoff = rng.uniform(2.5, 4.5)
        length = cutoff * rng.uniform(1.2, 1.9)
        cell = np.eye(3) * length if n % 2 else _triclinic_cell(rng, length * 1.15)
        add("small", _periodic(rng, n, cell, [True] * 3), cutoff)

    # slabs with vacuum: pbc [T, T, F], non-zero third vector
    rng = np.random.default_rng([2024, 4])
    for n in [3, 8, 16, 24, 40, 55]:
        cutoff = rng.uniform(2.0, 5.0)
        cell = _triclinic_cell(rng, rng.uniform(4.0, 10.0))
        cell[2] *= rng.uniform(1.5, 3.0)
        add("slab", _periodic(rng, n, cell, [True, True, False]), cutoff)

    # slabs whose non-periodic lattice vector is zero (ase.build surfaces with vacuum=None)
    rng = np.random.default_rng([2024, 5])
    for n in [2, 9, 20, 45]:
        cutoff = rng.uniform(2.0, 5.0)
        ab = _triclinic_cell(rng, rng.uniform(3.0, 9.0))[:2]
        add("slab0", _slab_zero_c(rng, n, ab, 8.0), cutoff)
    surface = fcc111("Cu", size=(2, 2, 3), vacuum=None)
    surface.rattle(stdev=0.05, seed=11)
    add("slab0", surface, 4.2)
    surface = fcc100("Al", size=(2, 3, 2), vacuum=None)
    surface.rattle(stdev=0.05, seed=12)
    add("slab0", surface, 5.0)

    # other mixed periodicity, with zero or non-zero non-periodic vectors
    rng = np.random.default_rng([2024, 6])
    for n, pbc, zero_other in [
        (4, [True, False, False], True),
        (11, [True, False, False], False),
        (6, [False, True, False], True),
        (13, [False, False, True], False),
        (9, [False, False, True], True),
        (15, [True, False, True], True),
        (21, [True, False, True], False),
        (18, [False, True, True], True),
    ]:
        cutoff = rng.uniform(2.0, 4.5)
        cell = _triclinic_cell(rng, rng.uniform(3.0, 8.0))
        atoms = _periodic(rng, n, cell, pbc)
        if zero_other:
            atoms.cell[~np.array(pbc)] = 0.0  # positions stay where they are
        add("mixed", atoms, cutoff)

    # molecules: no cell and no periodicity (two with a cell that must be ignored)
    rng = np.random.default_rng([2024, 7])
    for n, with_cell in [(1, False), (2, False), (5, False), (12, False), (23, False), (40, False)] + [
        (16, True),
        (30, True),
    ]:
        cutoff = rng.uniform(1.5, 5.0)
        box = (n / 0.05) ** (1 / 3)
        atoms = Atoms(f"H{n}", positions=rng.uniform(0.0, box, size=(n, 3)))
        if with_cell:
            atoms.cell = _triclinic_cell(rng, 0.5 * box)  # smaller than the molecule, pbc stays False
        add("molecule", atoms, cutoff)
    return systems


SYSTEMS = _make_systems()
SYSTEMS_BY_KIND = {kind: [s for s in SYSTEMS if s.kind == kind] for kind in {s.kind for s in SYSTEMS}}


# --- helpers ---------------------------------------------------------------------------


def _ase_edges(atoms: Atoms, cutoff: float) -> set[Edge]:
    i, j, shift = neighbor_list("ijS", atoms, cutoff)
    return {(a, b, *s) for a, b, s in zip(i.tolist(), j.tolist(), shift.tolist(), strict=True)}


def _edge_list(edge_index: torch.Tensor, edge_shift: torch.Tensor) -> list[Edge]:
    return [(a, b, *s) for a, b, s in zip(*edge_index.tolist(), edge_shift.tolist(), strict=True)]


def _inputs(
    atoms: Atoms, dtype: torch.dtype = torch.float64, device: str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pos = torch.tensor(atoms.positions, dtype=dtype, device=device)  # [n_atoms, 3]
    cell = torch.tensor(np.asarray(atoms.cell), dtype=dtype, device=device)  # [3, 3]
    pbc = torch.tensor(np.asarray(atoms.pbc), dtype=torch.bool, device=device)  # [3]
    return pos, cell, pbc


def _physnet_edges(atoms: Atoms, cutoff: float, dtype: torch.dtype = torch.float64) -> list[Edge]:
    pos, cell, pbc = _inputs(atoms, dtype)
    return _edge_list(*radius_graph(pos, cutoff, None, cell, pbc))


def _assert_same_edges(got: list[Edge], ref: set[Edge], label: str) -> None:
    got_set = set(got)
    assert len(got_set) == len(got), f"{label}: {len(got) - len(got_set)} duplicate edges"
    missing, extra = sorted(ref - got_set), sorted(got_set - ref)
    assert not missing and not extra, (
        f"{label}: {len(missing)} edges missing (first {missing[:5]}), "
        f"{len(extra)} unexpected (first {extra[:5]}) out of {len(ref)} reference edges"
    )


# --- against ASE -----------------------------------------------------------------------


def test_system_coverage() -> None:
    """The generated systems cover every case they are meant to, at least 60 in all."""
    assert len(SYSTEMS) >= 60
    assert len({s.name for s in SYSTEMS}) == len(SYSTEMS)
    for kind in ["cubic", "triclinic", "tiny", "small", "slab", "slab0", "mixed", "molecule"]:
        assert len(SYSTEMS_BY_KIND[kind]) >= 4, kind
    sizes = [len(s.atoms) for s in SYSTEMS]
    assert min(sizes) == 1 and max(sizes) >= 55
    for s in SYSTEMS_BY_KIND["triclinic"]:
        cell = np.asarray(s.atoms.cell)
        cos = (cell @ cell.T) / np.outer(np.linalg.norm(cell, axis=1), np.linalg.norm(cell, axis=1))
        assert np.abs(cos[np.triu_indices(3, 1)]).max() > 0.1, f"{s.name} is nearly orthogonal"
    for s in SYSTEMS_BY_KIND["tiny"]:
        periodic = np.asarray(s.atoms.cell)[s.atoms.pbc]
        assert np.linalg.norm(periodic, axis=1).max() < s.cutoff, s.name
    for s in SYSTEMS_BY_KIND["small"]:
        heights = s.atoms.cell.volume / np.linalg.norm(
            np.cross(s.atoms.cell[[1, 2, 0]], s.atoms.cell[[2, 0, 1]]), axis=1
        )
        assert heights.min() < 2 * s.cutoff, s.name
    for s in SYSTEMS_BY_KIND["slab0"]:
        assert not s.atoms.cell[2].any() and list(s.atoms.pbc) == [True, True, False], s.name
    assert any(not s.atoms.cell[~s.atoms.pbc].any() for s in SYSTEMS_BY_KIND["mixed"])
    assert any(s.atoms.cell[~s.atoms.pbc].any() for s in SYSTEMS_BY_KIND["mixed"])


@pytest.mark.parametrize("system", SYSTEMS, ids=[s.name for s in SYSTEMS])
def test_radius_graph_matches_ase(system: System) -> None:
    """Identical (i, j, shift) sets to ``ase.neighborlist.neighbor_list("ijS")``."""
    ref = _ase_edges(system.atoms, system.cutoff)
    got = _physnet_edges(system.atoms, system.cutoff)
    _assert_same_edges(got, ref, system.name)
    # i == j only for an atom's own periodic images, never at zero shift
    for i, j, *shift in got:
        if i == j:
            assert any(shift), f"{system.name}: self edge of atom {i} at zero shift"
    if system.kind == "tiny":
        assert any(i == j for i, j, *_ in got), f"{system.name}: no edges to an atom's own images"
        if len(system.atoms) > 1:
            pairs = [(i, j) for i, j, *_ in got if i != j]
            assert len(pairs) > len(set(pairs)), f"{system.name}: no neighbour seen through several images"
    if system.kind == "molecule":
        assert all(not any(shift) for _, _, *shift in got), f"{system.name}: shifts in a molecule"


def test_batched_equals_per_system() -> None:
    """One batched call gives each system's edges, offset by the atoms before it."""
    picks = [
        SYSTEMS_BY_KIND["molecule"][3],
        SYSTEMS_BY_KIND["triclinic"][4],
        SYSTEMS_BY_KIND["slab0"][1],
        SYSTEMS_BY_KIND["tiny"][4],
        SYSTEMS_BY_KIND["mixed"][0],
        SYSTEMS_BY_KIND["molecule"][0],  # a single atom: no edges
    ]
    cutoff = 3.0
    parts = [_inputs(s.atoms) for s in picks]
    pos = torch.cat([p for p, _, _ in parts])  # [n_atoms, 3]
    cell = torch.stack([c for _, c, _ in parts])  # [n_graphs, 3, 3]
    pbc = torch.stack([b for _, _, b in parts])  # [n_graphs, 3]
    counts = torch.tensor([len(s.atoms) for s in picks])
    batch = torch.repeat_interleave(torch.arange(len(picks)), counts)
    offsets = (torch.cumsum(counts, 0) - counts).tolist()

    edge_index, edge_shift = radius_graph(pos, cutoff, batch, cell, pbc)
    assert bool((batch[edge_index[0]] == batch[edge_index[1]]).all()), "edge between two graphs"
    edge_graph = batch[edge_index[0]]  # [n_edges]
    for g, system in enumerate(picks):
        mask = edge_graph == g
        local = _edge_list(edge_index[:, mask] - offsets[g], edge_shift[mask])
        alone = _physnet_edges(system.atoms, cutoff)
        assert sorted(local) == sorted(alone), f"graph {g} ({system.name}) differs from its own call"
        _assert_same_edges(local, _ase_edges(system.atoms, cutoff), f"graph {g} ({system.name})")
    assert int((edge_graph == len(picks) - 1).sum()) == 0

    # edge vectors pick each edge's own cell through batch[i]
    graph = {K.POS: pos, K.CELL: cell, K.BATCH: batch, K.EDGE_INDEX: edge_index, K.EDGE_SHIFT: edge_shift}
    vec = edge_vectors(graph)  # [n_edges, 3]
    for g, system in enumerate(picks[:-1]):
        i, j, shift, d = neighbor_list("ijSd", system.atoms, cutoff)
        ref = {(a, b, *s): x for a, b, s, x in zip(i.tolist(), j.tolist(), shift.tolist(), d, strict=True)}
        mask = edge_graph == g
        local = _edge_list(edge_index[:, mask] - offsets[g], edge_shift[mask])
        expected = torch.tensor([ref[e] for e in local], dtype=torch.float64)
        torch.testing.assert_close(torch.linalg.vector_norm(vec[mask], dim=1), expected, rtol=0, atol=1e-10)


def test_edge_vectors_match_ase_triclinic() -> None:
    """``edge_vectors`` follows r_ij = pos[j] - pos[i] + shift @ cell: ASE's D and d."""
    system = SYSTEMS_BY_KIND["triclinic"][7]
    i, j, shift, d, vec_ref = neighbor_list("ijSdD", system.atoms, system.cutoff)
    ref = {
        (a, b, *s): (dist, v)
        for a, b, s, dist, v in zip(i.tolist(), j.tolist(), shift.tolist(), d, vec_ref, strict=True)
    }
    pos, cell, pbc = _inputs(system.atoms)
    pos.requires_grad_(True)
    edge_index, edge_shift = radius_graph(pos, system.cutoff, None, cell, pbc)
    graph = {
        K.POS: pos,
        K.CELL: cell.unsqueeze(0),
        K.BATCH: torch.zeros(len(pos), dtype=torch.long),
        K.EDGE_INDEX: edge_index,
        K.EDGE_SHIFT: edge_shift,
    }
    vec = edge_vectors(graph)  # [n_edges, 3]
    assert edge_shift.abs().sum() > 0, "test case should have edges across the cell boundary"
    edges = _edge_list(edge_index, edge_shift)
    expected_d = torch.tensor([ref[e][0] for e in edges], dtype=torch.float64)
    expected_vec = torch.tensor(np.array([ref[e][1] for e in edges]), dtype=torch.float64)
    torch.testing.assert_close(torch.linalg.vector_norm(vec, dim=1), expected_d, rtol=0, atol=1e-10)
    torch.testing.assert_close(vec.detach(), expected_vec, rtol=0, atol=1e-10)
    # gradients reach positions: d(sum |r_ij|)/d pos is non-zero and finite
    (grad,) = torch.autograd.grad(torch.linalg.vector_norm(vec, dim=1).sum(), pos)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


# --- errors and edge cases -----------------------------------------------------------------


def test_singular_cell_raises() -> None:
    pos = torch.rand(4, 3, dtype=torch.float64)
    flat = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [3.0, 3.0, 0.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"graph 0: periodic cell is singular"):
        radius_graph(pos, 2.0, None, flat, torch.tensor([True, True, True]))
    zero_c = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"lattice vector 2 is zero but pbc\[2\] is True"):
        radius_graph(pos, 2.0, None, zero_c, torch.tensor([True, True, True]))
    with pytest.raises(ValueError, match=r"lattice vector 0 is zero"):
        radius_graph(pos, 2.0, None, None, torch.tensor([True, False, False]))
    # the message names the offending graph of a batch
    batch = torch.tensor([0, 0, 1, 1])
    cells = torch.stack([torch.eye(3, dtype=torch.float64) * 5.0, flat])
    with pytest.raises(ValueError, match=r"graph 1: periodic cell is singular"):
        radius_graph(pos, 2.0, batch, cells, torch.ones(2, 3, dtype=torch.bool))


def test_check_cell_rejects_parallel_periodic_vectors_with_mixed_pbc() -> None:
    # check_cell is tested on its own: radius_graph on this cell kills the interpreter.
    cell = torch.tensor([[3.0, 0.0, 0.0], [6.0, 0.0, 0.0], [0.0, 0.0, 5.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="singular|linearly (in)?dependent"):
        check_cell(cell, torch.tensor([True, True, False]))


def test_check_cell_rejects_nearly_flat_cell() -> None:
    cell = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [3.0, 3.0, 1e-9]], dtype=torch.float64)
    with pytest.raises(ValueError, match="singular|linearly (in)?dependent"):
        check_cell(cell, torch.tensor([True, True, True]))


def test_unsorted_batch_raises() -> None:
    pos = torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [1.0, 0.0, 0.0], [11.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="sorted"):
        radius_graph(pos, 2.0, torch.tensor([0, 1, 0, 1]))


@pytest.mark.parametrize("cutoff", [0.0, -1.0])
def test_non_positive_cutoff_raises(cutoff: float) -> None:
    with pytest.raises(ValueError, match=r"cutoff must be > 0"):
        radius_graph(torch.zeros(2, 3), cutoff)


def test_non_finite_or_far_flung_positions_raise() -> None:
    """Positions vesin would crash the process on (SIGFPE: 1e5 cutoffs along two axes of a flat
    system) or that are not finite raise a ValueError naming the problem; periodic axes, whose
    positions are wrapped, are exempt."""
    pos = torch.rand(500, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    pos[:, 2] = 0.0
    wide = pos.clone()
    wide[0, 0], wide[1, 1] = 1500.0, 1500.0
    with pytest.raises(ValueError, match="span 1e\\+05 cutoffs along axis"):
        radius_graph(wide, 0.015)
    bad = pos.clone()
    bad[7, 1] = float("nan")
    with pytest.raises(ValueError, match="atom 7 has a non-finite position"):
        radius_graph(bad, 0.015)
    ok = pos.clone()
    ok[0, 0] = 100.0  # 6.7e3 cutoffs: allowed
    assert radius_graph(ok, 0.015)[0].shape[1] > 0
    cell = torch.diag(torch.tensor([2000.0, 1.0, 1.0], dtype=torch.float64))
    periodic = torch.tensor([True, False, False])
    far = pos.clone()
    far[0, 0] = 1999.0  # 1.3e5 cutoffs along a periodic axis: fine
    assert radius_graph(far, 0.015, cell=cell, pbc=periodic)[0].shape[1] > 0


def test_isolated_atom_has_no_edges() -> None:
    pos = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [20.0, 0.0, 0.0]], dtype=torch.float64)
    edge_index, edge_shift = radius_graph(pos, 2.0)
    assert sorted(edge_index.T.tolist()) == [[0, 1], [1, 0]]
    assert not bool((edge_index == 2).any())

    edge_index, edge_shift = radius_graph(pos[2:], 2.0)
    assert edge_index.shape == (2, 0) and edge_shift.shape == (0, 3)
    assert edge_index.dtype == torch.long and edge_shift.dtype == torch.long

    # an atom alone in a large periodic cell has no neighbours either (its images are far)
    cell = torch.eye(3, dtype=torch.float64) * 10.0
    edge_index, edge_shift = radius_graph(pos[:1], 2.0, None, cell, torch.ones(3, dtype=torch.bool))
    assert edge_index.shape == (2, 0) and edge_shift.shape == (0, 3)


@pytest.mark.parametrize("device", DEVICES)
def test_float32_returns_long_on_input_device(device: str) -> None:
    system = SYSTEMS_BY_KIND["triclinic"][5]
    pos, cell, pbc = _inputs(system.atoms, torch.float32, device)
    edge_index, edge_shift = radius_graph(pos, system.cutoff, None, cell, pbc)
    assert edge_index.dtype == torch.long and edge_shift.dtype == torch.long
    assert edge_index.device == pos.device and edge_shift.device == pos.device
    assert edge_index.shape[0] == 2 and edge_shift.shape == (edge_index.shape[1], 3)
    assert edge_index.shape[1] > 0
    _assert_same_edges(_edge_list(edge_index, edge_shift), _ase_edges(system.atoms, system.cutoff), "float32")


def test_float32_and_float64_give_same_edges() -> None:
    """Away from the cutoff sphere, rounding positions to float32 changes no edge."""
    rng = np.random.default_rng(7)
    cell = _triclinic_cell(rng, 7.0)
    atoms = _periodic(rng, 30, cell, [True, True, True])
    cutoff = 3.7
    # no pair distance within 1e-3 of the cutoff: the config is not borderline
    d = neighbor_list("d", atoms, cutoff + 0.1)
    assert np.abs(d - cutoff).min() > 1e-3
    edges64 = _physnet_edges(atoms, cutoff, torch.float64)
    edges32 = _physnet_edges(atoms, cutoff, torch.float32)
    assert len(edges64) > 100
    assert sorted(edges32) == sorted(edges64)
