"""Reading data files, building graph datasets, splits and loaders."""

from __future__ import annotations

import json
from pathlib import Path

import ase.db
import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from physnet.data import collate, from_ase
from physnet.data import keys as K
from physnet.data.datasets import (
    GraphDataset,
    load_split,
    make_loader,
    make_split,
    read_frames,
    save_split,
)

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
ETHANOL = SHARED_DATA / "md17_ethanol_2000.xyz"


@pytest.fixture(scope="module")
def ethanol_frames() -> list[Atoms]:
    if not ETHANOL.is_file():
        pytest.skip(f"shared reference data not found at {ETHANOL.resolve()} (see ../shared/data/README.md)")
    return read_frames(ETHANOL)


def _periodic_frames(n: int = 3) -> list[Atoms]:
    """Small periodic Cu-Zn frames with energy, forces and (Voigt) stress."""
    rng = np.random.default_rng(1)
    frames = []
    for k in range(n):
        atoms = Atoms(
            numbers=[29, 30, 29],
            positions=rng.uniform(0, 3, size=(3, 3)),
            cell=[[3.6, 0.0, 0.0], [0.3, 3.5, 0.0], [0.1, 0.2, 3.7]],
            pbc=True,
        )
        atoms.calc = SinglePointCalculator(
            atoms,
            energy=-10.0 - 0.25 * k,
            forces=rng.normal(size=(3, 3)),
            stress=rng.normal(size=6) * 0.01,
        )
        frames.append(atoms)
    return frames


def _molecules(n: int = 7) -> list[Atoms]:
    """Molecules of different sizes (and one periodic frame) with unique energies."""
    rng = np.random.default_rng(2)
    frames = []
    for k in range(n):
        n_atoms = 2 + k % 4
        atoms = Atoms(numbers=rng.choice([1, 6, 8], n_atoms), positions=rng.uniform(0, 2.5, (n_atoms, 3)))
        if k == 3:
            atoms.cell, atoms.pbc = np.diag([1.9, 2.2, 2.4]), True  # images within the cutoff
        atoms.calc = SinglePointCalculator(atoms, energy=float(k), forces=rng.normal(size=(n_atoms, 3)))
        frames.append(atoms)
    return frames


def _assert_same_frames(got: list[Atoms], ref: list[Atoms], stress: bool = True) -> None:
    assert len(got) == len(ref)
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_array_equal(a.numbers, b.numbers)
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-7)
        np.testing.assert_allclose(np.asarray(a.cell), np.asarray(b.cell), atol=1e-7)
        np.testing.assert_array_equal(a.pbc, b.pbc)
        assert isinstance(a.calc, SinglePointCalculator)
        assert a.calc.results["energy"] == pytest.approx(b.calc.results["energy"], abs=1e-7)
        np.testing.assert_allclose(a.calc.results["forces"], b.calc.results["forces"], atol=1e-7)
        if stress:
            np.testing.assert_allclose(a.get_stress(voigt=True), b.get_stress(voigt=True), atol=1e-7)


# --------------------------------------------------------------------------- reading


def test_extxyz_round_trip(tmp_path: Path) -> None:
    frames = _periodic_frames()
    path = tmp_path / "frames.extxyz"
    ase.io.write(path, frames, format="extxyz")
    got = read_frames(path)
    _assert_same_frames(got, frames)
    graph = from_ase(got[0], 3.0, dtype=torch.float64)
    assert graph[K.ENERGY].item() == pytest.approx(-10.0)
    assert graph[K.STRESS].shape == (1, 3, 3)
    np.testing.assert_allclose(graph[K.STRESS][0].numpy(), frames[0].get_stress(voigt=False), atol=1e-7)
    # index selects frames like ase.io.read, always returning a list
    assert len(read_frames(path, index="1:")) == 2
    _assert_same_frames(read_frames(path, index=-1), frames[-1:])
    _assert_same_frames(read_frames(path, index=slice(0, 1)), frames[:1])


def test_ase_db_round_trip(tmp_path: Path) -> None:
    frames = _periodic_frames()
    path = tmp_path / "frames.db"
    db = ase.db.connect(path)
    for k, atoms in enumerate(frames):
        db.write(atoms, config=f"c{k}")
    got = read_frames(path)
    _assert_same_frames(got, frames)
    assert [a.info["config"] for a in got] == ["c0", "c1", "c2"]
    _assert_same_frames(read_frames(path, index="::2"), frames[::2])


def _synthetic_md(n_frames: int = 5, n_atoms: int = 4) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(3)
    z = np.array([6, 1, 1, 8])[:n_atoms]
    pos = rng.uniform(-1.5, 1.5, (n_frames, n_atoms, 3))
    energy = -1000.0 + rng.normal(size=n_frames)
    forces = rng.normal(size=(n_frames, n_atoms, 3))
    return z, pos, energy, forces


@pytest.mark.parametrize("convention", ["md17", "rmd17"])
def test_npz_round_trip(tmp_path: Path, convention: str) -> None:
    z, pos, energy, forces = _synthetic_md()
    path = tmp_path / f"{convention}.npz"
    if convention == "md17":  # E as [n, 1], plus extra metadata keys as in the original files
        np.savez(path, z=z, R=pos, E=energy[:, None], F=forces, name=np.array("toy"), theory=np.array("x"))
    else:
        np.savez(
            path, nuclear_charges=z, coords=pos, energies=energy, forces=forces, old_indices=np.arange(5)
        )
    got = read_frames(path)
    assert len(got) == 5
    for k, atoms in enumerate(got):
        np.testing.assert_array_equal(atoms.numbers, z)
        np.testing.assert_array_equal(atoms.positions, pos[k])
        assert not atoms.pbc.any()
        assert atoms.calc.results["energy"] == energy[k]  # no unit conversion
        np.testing.assert_array_equal(atoms.calc.results["forces"], forces[k])
    sub = read_frames(path, index="1:3")
    np.testing.assert_array_equal([a.calc.results["energy"] for a in sub], energy[1:3])


def test_npz_without_targets_reads_and_require_names_missing_key(tmp_path: Path) -> None:
    z, pos, _, _ = _synthetic_md()
    path = tmp_path / "positions_only.npz"
    np.savez(path, z=z, R=pos)
    frames = read_frames(path)
    assert len(frames) == 5 and frames[0].calc is None
    data = GraphDataset(frames, 3.0, require=(), progress=False)
    assert data.energies is None
    with pytest.raises(ValueError, match=r"frame 0 in .*positions_only\.npz has no 'energy'"):
        GraphDataset(frames, 3.0, progress=False, source=str(path))


def test_read_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such data file: .*missing.xyz"):
        read_frames(tmp_path / "missing.xyz")
    empty = tmp_path / "empty.xyz"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"empty\.xyz is empty"):
        read_frames(empty)
    path = tmp_path / "two.xyz"
    ase.io.write(path, _periodic_frames(2), format="extxyz")
    with pytest.raises(ValueError, match=r"two\.xyz has no frames for index '5:'"):
        read_frames(path, index="5:")
    with pytest.raises(ValueError, match="selects no frame"):
        read_frames(path, index=7)
    garbage = tmp_path / "garbage.xyz"
    garbage.write_text("this is not\nan xyz file\n")
    with pytest.raises(ValueError, match=r"could not read .*garbage\.xyz"):
        read_frames(garbage)


def test_empty_db_has_no_frames(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    db = ase.db.connect(path)
    db.delete([db.write(Atoms("H"))])  # creates the tables, leaves no rows
    with pytest.raises(ValueError, match=r"empty\.db has no frames"):
        read_frames(path)


def test_npz_with_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "other.npz"
    np.savez(path, positions=np.zeros((2, 3, 3)), species=np.ones(3))
    with pytest.raises(ValueError, match=r"has keys \['positions', 'species'\].*MD17 keys z, R.*rMD17"):
        read_frames(path)


def test_non_finite_positions_name_frame_and_atom(tmp_path: Path) -> None:
    z, pos, energy, forces = _synthetic_md()
    pos[3, 2, 1] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, z=z, R=pos, E=energy, F=forces)
    with pytest.raises(ValueError, match="frame 3, atom 2 has a non-finite position"):
        read_frames(path)
    frames = _periodic_frames()
    frames[1].positions[0, 0] = np.inf
    xyz = tmp_path / "inf.xyz"
    ase.io.write(xyz, frames, format="extxyz")
    with pytest.raises(ValueError, match="frame 1, atom 0 has a non-finite position"):
        read_frames(xyz)


def test_forces_shape_mismatch(tmp_path: Path) -> None:
    z, pos, energy, forces = _synthetic_md()
    path = tmp_path / "bad_forces.npz"
    np.savez(path, z=z, R=pos, E=energy, F=forces[:, :3])
    with pytest.raises(ValueError, match=r"F has shape \(5, 3, 3\) but R has \(5, 4, 3\)"):
        read_frames(path)
    frames = _periodic_frames(2)
    bad = frames[1].copy()
    bad.calc = SinglePointCalculator(bad, energy=0.0, forces=np.zeros((5, 3)))
    db_path = tmp_path / "bad_forces.db"
    db = ase.db.connect(db_path)
    db.write(frames[0])
    db.write(bad)
    with pytest.raises(ValueError, match=r"frame 1 has forces of shape \(5, 3\) but 3 atoms"):
        read_frames(db_path)


def test_shared_ethanol_file(ethanol_frames: list[Atoms]) -> None:
    assert len(ethanol_frames) == 2000
    energies = np.array([a.calc.results["energy"] for a in ethanol_frames])
    assert all(len(a) == 9 for a in ethanol_frames)
    assert sorted(ethanol_frames[0].get_chemical_symbols()) == ["C", "C", "H", "H", "H", "H", "H", "H", "O"]
    assert -97300 < energies.min() and energies.max() < -97000  # kcal/mol, unconverted
    assert all(a.calc.results["forces"].shape == (9, 3) for a in ethanol_frames)


# --------------------------------------------------------------------------- dataset


def test_graph_dataset_on_ethanol(ethanol_frames: list[Atoms]) -> None:
    frames = ethanol_frames[:50]
    data = GraphDataset(frames, cutoff=5.0, source=str(ETHANOL))
    assert len(data) == 50 and len(data.graphs) == 50
    assert data.atomic_numbers == [1, 6, 8]
    np.testing.assert_array_equal(data.n_atoms, np.full(50, 9))
    ref = np.array([a.calc.results["energy"] for a in frames])
    assert data.energies.dtype == np.float64
    np.testing.assert_array_equal(data.energies, ref)  # full precision, whatever the graph dtype
    graph = data[7]
    assert set(graph) >= {K.POS, K.Z, K.EDGE_INDEX, K.EDGE_SHIFT, K.ENERGY, K.FORCES}
    assert graph[K.EDGE_INDEX].shape[1] == 72  # 5 Å covers the whole molecule: 9 * 8 edges
    np.testing.assert_allclose(graph[K.FORCES].numpy(), frames[7].calc.results["forces"], rtol=1e-6)
    with pytest.raises(ValueError, match=r"frame 0 in .*md17_ethanol_2000\.xyz has no 'stress'"):
        GraphDataset(frames[:2], cutoff=5.0, require=(K.ENERGY, K.STRESS), source=str(ETHANOL))


def test_graph_dataset_dtype_subset_and_errors() -> None:
    frames = _periodic_frames() + _molecules(3)
    data = GraphDataset(frames, cutoff=2.5, dtype=torch.float64, require=(K.ENERGY,), progress=False)
    assert data[0][K.POS].dtype == torch.float64
    assert data.atomic_numbers == sorted({int(z) for a in frames for z in a.numbers})
    sub = data.subset([4, 1])
    assert len(sub) == 2 and sub.graphs[0] is data.graphs[4]
    np.testing.assert_array_equal(sub.energies, data.energies[[4, 1]])
    np.testing.assert_array_equal(sub.n_atoms, data.n_atoms[[4, 1]])
    with pytest.raises(ValueError, match="frame 1 in toy: atom 0 has a non-finite position"):
        bad = [a.copy() for a in frames[:2]]
        bad[1].positions[0, 0] = np.nan
        GraphDataset(bad, 2.5, require=(), progress=False, source="toy")
    bad = [a.copy() for a in frames[:2]]
    bad[1].calc = SinglePointCalculator(bad[1], energy=0.0, forces=np.zeros((2, 3)))
    with pytest.raises(
        ValueError, match=r"frame 1.*forces have shape \(2, 3\) but the structure has 3 atoms"
    ):
        GraphDataset(bad, 2.5, progress=False)
    with pytest.raises(ValueError, match="frame 0 has no 'stress'"):
        GraphDataset(frames[3:], 2.5, require=(K.STRESS,), progress=False)
    with pytest.raises(ValueError, match="no frames"):
        GraphDataset([], 2.5)
    with pytest.raises(ValueError, match="cutoff must be > 0"):
        GraphDataset(frames, 0.0)


# --------------------------------------------------------------------------- splits


def test_make_split_reproduces_fixed_md17_split() -> None:
    split = make_split(2000, 1000, 100, 900, seed=0)
    perm = np.random.default_rng(0).permutation(2000)
    np.testing.assert_array_equal(split["train"], perm[:1000])
    np.testing.assert_array_equal(split["val"], perm[1000:1100])
    np.testing.assert_array_equal(split["test"], perm[1100:])
    rest = make_split(2000, 1000, 100, seed=0)  # test=None: the rest, the same split
    for name in split:
        np.testing.assert_array_equal(rest[name], split[name])


def test_make_split_fractions_and_counts() -> None:
    split = make_split(100, 0.8, 0.1, 0.1, seed=5)
    assert [len(split[k]) for k in ("train", "val", "test")] == [80, 10, 10]
    assert len(np.unique(np.concatenate(list(split.values())))) == 100
    split = make_split(10, 0.5, 2, 0)
    assert [len(split[k]) for k in ("train", "val", "test")] == [5, 2, 0]
    assert not np.array_equal(make_split(50, 10, 5, seed=0)["train"], make_split(50, 10, 5, seed=1)["train"])


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((100, 90, 20), "need more than the 100 frames"),
        ((100, 0.7, 0.2, 0.2), "need more than the 100 frames"),
        ((100, 0, 10), "both must have at least one frame"),
        ((100, 50, 0.001), "both must have at least one frame"),
        ((100, -5, 10), "train must be >= 0"),
        ((100, 1.5, 0.1), r"a float is a fraction of the data in \(0, 1\]"),
        ((100, 10, "10"), "val must be a fraction"),
        ((100, True, 10), "train must be a fraction"),
        ((0, 1, 1), "n must be a positive int"),
    ],
)
def test_make_split_errors(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_split(*args)


def test_save_load_split(tmp_path: Path) -> None:
    split = make_split(30, 20, 5)
    path = tmp_path / "sub" / "split.json"
    save_split(split, path)
    assert [p.name for p in path.parent.iterdir()] == ["split.json"]  # no temporary file left
    on_disk = json.loads(path.read_text())
    assert on_disk["train"] == [int(i) for i in split["train"]]
    loaded = load_split(path, n=30)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(loaded[name], split[name])
        assert loaded[name].dtype == np.int64
    save_split(make_split(30, 10, 5), path)  # overwriting is fine
    assert len(load_split(path)["train"]) == 10


def test_load_split_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no such split file: .*nope\.json"):
        load_split(tmp_path / "nope.json")
    path = tmp_path / "split.json"
    cases = [
        ({"train": [0, 1], "val": [1, 2]}, r"'train' and 'val' share 1 index\(es\), e\.g\. 1"),
        ({"train": [0, 1], "val": [5]}, r"'val' has index 5 but there are only 5 frames"),
        ({"train": [0, -1], "val": [2]}, "negative index -1"),
        ({"train": [0, 0.5], "val": [2]}, "integer indices"),
        ({"train": [0, 0], "val": [2]}, "index 0 more than once"),
        ({"val": [2]}, "has no 'train' set"),
        ([1, 2], "a split must map names to index lists"),
    ]
    for content, match in cases:
        path.write_text(json.dumps(content))
        with pytest.raises(ValueError, match=match):
            load_split(path, n=5)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        load_split(path)
    with pytest.raises(ValueError, match="share"):
        save_split({"train": np.array([0, 1]), "val": np.array([1])}, tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()


# --------------------------------------------------------------------------- loader


def test_loader_batches_match_individual_graphs() -> None:
    data = GraphDataset(_molecules(7), cutoff=2.0, dtype=torch.float64, progress=False)
    indices = np.array([5, 0, 3, 6, 2])
    loader = make_loader(data, indices, batch_size=2, shuffle=False)
    seen = []
    for batch in loader:
        n_graphs = batch[K.N_ATOMS].numel()
        chunk = indices[len(seen) : len(seen) + n_graphs]
        seen.extend(chunk.tolist())
        graphs = [data[int(i)] for i in chunk]
        offsets = np.cumsum([0] + [int(g[K.N_ATOMS]) for g in graphs])
        edge_start = 0
        for b, g in enumerate(graphs):
            atoms = slice(offsets[b], offsets[b + 1])
            assert torch.equal(batch[K.BATCH][atoms], torch.full((offsets[b + 1] - offsets[b],), b))
            assert torch.equal(batch[K.POS][atoms], g[K.POS])
            assert torch.equal(batch[K.FORCES][atoms], g[K.FORCES])
            n_edges = g[K.EDGE_INDEX].shape[1]
            edges = slice(edge_start, edge_start + n_edges)
            assert torch.equal(batch[K.EDGE_INDEX][:, edges], g[K.EDGE_INDEX] + int(offsets[b]))
            assert torch.equal(batch[K.EDGE_SHIFT][edges], g[K.EDGE_SHIFT])
            assert torch.equal(batch[K.CELL][b], g[K.CELL][0])
            assert batch[K.ENERGY][b] == g[K.ENERGY][0]
            edge_start += n_edges
        assert edge_start == batch[K.EDGE_INDEX].shape[1]
        assert batch[K.BATCH].shape[0] == offsets[-1]
    assert seen == indices.tolist() and len(loader) == 3
    assert data.graphs[3][K.EDGE_SHIFT].abs().sum() > 0  # the periodic frame has image edges


def test_loader_shuffle_is_seeded_and_covers_every_frame() -> None:
    data = GraphDataset(_molecules(7), cutoff=2.0, progress=False)
    indices = [0, 1, 2, 4, 5, 6]

    def order(seed: int) -> list[list[int]]:
        loader = make_loader(data, indices, batch_size=4, shuffle=True, seed=seed)
        # energies are the frame numbers, so they identify the frames of each batch
        return [[int(e) for e in b[K.ENERGY].tolist()] for epoch in range(2) for b in loader]

    a, b = order(0), order(0)
    assert a == b
    assert sorted(a[0] + a[1]) == indices and sorted(a[2] + a[3]) == indices
    assert a != order(1)
    single = next(iter(make_loader(data, [4], batch_size=1, shuffle=False)))
    ref = collate([data[4]])
    assert all(torch.equal(single[k], ref[k]) for k in ref)
    with pytest.raises(ValueError, match="index 7 but there are only 7 frames"):
        make_loader(data, [7], batch_size=1, shuffle=False)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        make_loader(data, None, batch_size=0, shuffle=False)


def test_compressed_extxyz_reads_fast_and_identically(tmp_path: Path) -> None:
    import gzip
    import time

    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for k in range(300):
        atoms = ase.Atoms("H2O", positions=np.random.default_rng(k).normal(size=(3, 3)))
        atoms.calc = SinglePointCalculator(atoms, energy=float(k), forces=np.full((3, 3), 0.1 * k))
        frames.append(atoms)
    plain = tmp_path / "f.extxyz"
    ase.io.write(plain, frames)
    packed = tmp_path / "f.extxyz.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    start = time.perf_counter()
    read_back = read_frames(packed)
    elapsed = time.perf_counter() - start
    assert len(read_back) == 300 and elapsed < 5.0
    for a, b in zip(read_back, read_frames(plain), strict=True):
        np.testing.assert_array_equal(a.positions, b.positions)
        assert a.get_potential_energy() == b.get_potential_energy()
        np.testing.assert_array_equal(a.get_forces(), b.get_forces())


def test_npy_positions_and_forces(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pos, forces = rng.normal(size=(6, 3, 3)), rng.normal(size=(6, 3, 3))
    np.save(tmp_path / "pos.npy", pos)
    np.save(tmp_path / "f.npy", forces)
    frames = read_frames(tmp_path / "pos.npy", numbers=["C", 7, "O"], forces_path=tmp_path / "f.npy")
    assert len(frames) == 6 and list(frames[2].numbers) == [6, 7, 8]
    np.testing.assert_array_equal(frames[2].positions, pos[2])
    np.testing.assert_array_equal(frames[2].get_forces(), forces[2])
    with pytest.raises(ValueError, match="numbers"):
        read_frames(tmp_path / "pos.npy")
    with pytest.raises(ValueError, match="2 entries"):
        read_frames(tmp_path / "pos.npy", numbers=[6, 7])
    np.save(tmp_path / "bad.npy", forces[:, :2])
    with pytest.raises(ValueError, match="shape"):
        read_frames(tmp_path / "pos.npy", numbers=[6, 7, 8], forces_path=tmp_path / "bad.npy")


def test_block_split_takes_whole_time_blocks() -> None:
    split = make_split(1000, 0.7, 0.1, 0.2, seed=3, blocks=10)
    assert [len(split[k]) for k in ("train", "val", "test")] == [700, 100, 200]
    assert np.array_equal(np.sort(np.concatenate(list(split.values()))), np.arange(1000))
    for idx in split.values():  # each split is a union of whole blocks [100 b, 100 b + 100)
        blocks = idx.reshape(-1, 100)
        assert (blocks[:, 0] % 100 == 0).all() and (blocks - blocks[:, :1] == np.arange(100)).all()
    assert make_split(1000, 0.7, 0.1, 0.2, seed=4, blocks=10)["test"].tolist() != split["test"].tolist()
    with pytest.raises(ValueError, match="blocks"):
        make_split(10, 0.8, 0.1, 0.1, blocks=20)
