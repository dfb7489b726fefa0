"""Property-based tests (hypothesis) of graph building and the data readers.

Graphs: random cells (nearly flat, very skewed), random element mixes, random pbc and
positions inside and outside the cell; physnet's neighbour list must equal ASE's
``neighbor_list`` pair for pair, periodic shifts included. Readers: random labelled frames
written as extended XYZ, ASE database and MD17 npz read back unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from ase import Atoms  # noqa: E402
from ase.calculators.singlepoint import SinglePointCalculator  # noqa: E402
from ase.neighborlist import neighbor_list  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from physnet.data import keys as K  # noqa: E402
from physnet.data.datasets import read_frames  # noqa: E402
from physnet.data.graph import from_ase  # noqa: E402

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def structures(draw) -> tuple[Atoms, float]:
    n = draw(st.integers(1, 10))
    numbers = draw(st.lists(st.sampled_from([1, 6, 7, 8, 29, 79]), min_size=n, max_size=n))
    lengths = draw(st.lists(st.floats(2.0, 7.0), min_size=3, max_size=3))
    kind = draw(st.sampled_from(["orthorhombic", "skewed", "flat"]))
    cell = np.diag(lengths)
    if kind == "skewed":  # off-diagonal components up to 3x the diagonal
        for a, b in ((1, 0), (2, 0), (2, 1)):
            cell[a, b] = draw(st.floats(-3.0, 3.0)) * lengths[b]
    elif kind == "flat":  # the third vector nearly in the plane of the first two
        cell[2] = [draw(st.floats(-2.0, 2.0)), draw(st.floats(-2.0, 2.0)), draw(st.floats(0.3, 0.6))]
    frac = np.array(draw(st.lists(st.floats(-0.5, 1.5), min_size=3 * n, max_size=3 * n))).reshape(n, 3)
    pbc = draw(st.lists(st.booleans(), min_size=3, max_size=3))
    cutoff = draw(st.floats(1.0, 4.0))
    return Atoms(numbers=numbers, positions=frac @ cell, cell=cell, pbc=pbc), cutoff


def _pairs(i, j, shift, d, cutoff) -> set[tuple[int, int, int, int, int]]:
    keep = np.abs(d - cutoff) > 1e-8  # pairs on the cutoff sphere may go either way in round-off
    return {(int(a), int(b), *map(int, s)) for a, b, s in zip(i[keep], j[keep], shift[keep], strict=True)}


@SETTINGS
@given(structures())
def test_graph_matches_ase_neighbor_list(case) -> None:
    atoms, cutoff = case
    graph = from_ase(atoms, cutoff, dtype=__import__("torch").float64)
    i, j = graph[K.EDGE_INDEX].numpy()
    shift = graph[K.EDGE_SHIFT].numpy()
    cell = np.asarray(atoms.cell) if atoms.pbc.any() else np.zeros((3, 3))
    vec = atoms.positions[j] - atoms.positions[i] + shift @ cell
    d = np.linalg.norm(vec, axis=1)
    assert (d < cutoff + 1e-9).all()
    ai, aj, ashift, ad = neighbor_list("ijSd", atoms, cutoff, self_interaction=False)
    if not atoms.pbc.any():
        ashift = np.zeros_like(ashift)
    assert _pairs(i, j, shift, d, cutoff) == _pairs(ai, aj, ashift, ad, cutoff)


@st.composite
def labelled_frames(draw) -> list[Atoms]:
    n_atoms = draw(st.integers(1, 6))
    numbers = draw(st.lists(st.integers(1, 86), min_size=n_atoms, max_size=n_atoms))
    frames = []
    for _ in range(draw(st.integers(1, 4))):
        values = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
        pos = np.array(draw(st.lists(values, min_size=3 * n_atoms, max_size=3 * n_atoms))).reshape(-1, 3)
        forces = np.array(draw(st.lists(values, min_size=3 * n_atoms, max_size=3 * n_atoms))).reshape(-1, 3)
        atoms = Atoms(numbers=numbers, positions=pos)
        atoms.calc = SinglePointCalculator(atoms, energy=draw(values), forces=forces)
        frames.append(atoms)
    return frames


def _same(read: list[Atoms], frames: list[Atoms], rtol: float) -> None:
    assert len(read) == len(frames)
    for a, b in zip(read, frames, strict=True):
        assert a.numbers.tolist() == b.numbers.tolist()
        np.testing.assert_allclose(a.positions, b.positions, rtol=rtol, atol=1e-6)
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), rtol=rtol, atol=1e-6)
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), rel=rtol, abs=1e-6)


@SETTINGS
@given(labelled_frames(), st.sampled_from(["extxyz", "db", "npz"]))
def test_readers_round_trip(tmp_path_factory, frames, fmt) -> None:
    folder = tmp_path_factory.mktemp("rt")
    path = folder / f"frames.{fmt}"
    if fmt == "extxyz":
        from ase.io import write

        write(path, frames, format="extxyz")
    elif fmt == "db":
        from ase.db import connect

        with connect(str(path)) as db:
            for a in frames:
                db.write(a)
    else:
        np.savez(
            path,
            z=frames[0].numbers,
            R=np.stack([a.positions for a in frames]),
            E=np.array([a.get_potential_energy() for a in frames]),
            F=np.stack([a.get_forces() for a in frames]),
        )
    _same(read_frames(path), frames, rtol=1e-7)
