"""Read reference data, turn it into graphs once, split it and batch it.

The pieces a training run needs, in order::

    frames = read_frames("md17_ethanol.xyz")           # list of ase.Atoms with targets
    data = GraphDataset(frames, cutoff=5.0, source="md17_ethanol.xyz")
    split = make_split(len(data), train=1000, val=100)  # test = the rest
    save_split(split, "split.json")
    train_loader = make_loader(data, split["train"], batch_size=10, shuffle=True)

Nothing here converts units: energies, forces, stresses and positions keep the
units of the file, and the caller declares them (see :mod:`physnet.units`).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import ase
import numpy as np
import torch
from ase.calculators.singlepoint import SinglePointCalculator
from torch.utils.data import DataLoader, Dataset, Subset

from physnet.data import keys as K
from physnet.data.checks import check_finite
from physnet.data.graph import collate, from_ase
from physnet.errors import UserError

__all__ = [
    "read_frames",
    "GraphDataset",
    "make_split",
    "save_split",
    "load_split",
    "make_loader",
]

Graph = dict[str, torch.Tensor]
Index = str | int | slice

# npz conventions: (numbers, positions, energies, forces) key names.
_MD17_KEYS = ("z", "R", "E", "F")
_RMD17_KEYS = ("nuclear_charges", "coords", "energies", "forces")
_PROGRESS_MIN_FRAMES = 500


# --------------------------------------------------------------------------- reading


def _parse_index(index: Index) -> int | slice:
    if isinstance(index, str):
        from ase.io.formats import string2index

        return string2index(index)
    if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
        return int(index)
    if isinstance(index, slice):
        return index
    raise ValueError(f"index must be a str such as ':' or '10:20', an int or a slice, got {index!r}")


def _select(n: int, index: int | slice, path: Path) -> list[int]:
    """Positions 0..n-1 picked by ``index``, as a list."""
    if isinstance(index, int):
        if not -n <= index < n:
            raise ValueError(f"index {index} is out of range for the {n} frame(s) in {path}")
        return [index % n]
    return list(range(n))[index]


_DB_PROPERTIES = ("energy", "forces", "stress")


def _read_db(path: Path, index: int | slice, key_map: dict[str, str] | None = None) -> list[ase.Atoms]:
    """Frames of an ASE database with their labels from the row's calculator results or, as
    schnetpack writes them, from ``row.data`` (or a key-value pair, for an energy), under the
    names ``key_map`` gives (``{"energy": "E", "forces": "F"}``; default: the property's own).
    Prints which keys were used when they are not the calculator's."""
    from ase.db import connect

    key_map = dict(key_map or {})
    unknown = sorted(set(key_map) - set(_DB_PROPERTIES))
    if unknown:
        raise UserError(f"data.keys has {unknown}; it maps {list(_DB_PROPERTIES)} to the database's names")
    try:
        rows = list(connect(str(path), type="db").select())
    except Exception as err:
        raise UserError(f"could not read {path} as an ASE database: {_first_line(err)}") from err
    frames = []
    used: dict[str, str] = {}
    for k in _select(len(rows), index, path):
        row = rows[k]
        atoms = row.toatoms()  # a SinglePointCalculator with the row's energy/forces/stress
        atoms.info.update(row.key_value_pairs)
        results = dict(getattr(atoms.calc, "results", None) or {})
        data = row.get("data") or {}
        for prop in _DB_PROPERTIES:
            name = key_map.get(prop, prop)
            if prop in results and name == prop:
                used.setdefault(prop, f"the calculator's {prop}")
                continue
            if name in data:
                value, where = data[name], f"row.data[{name!r}]"
            elif name in row.key_value_pairs:
                value, where = row.key_value_pairs[name], f"key-value pair {name!r}"
            elif name != prop and name in results:
                value, where = results[name], f"the calculator's {name}"
            else:
                if prop in key_map:
                    raise UserError(
                        f"{path}: row {row.id} (frame {k}) has no {name!r} (data.keys maps {prop} to it); "
                        f"row.data has {sorted(data)}, key-value pairs {sorted(row.key_value_pairs)}"
                    )
                continue
            value = np.asarray(value, dtype=np.float64)
            if prop == "energy":
                value = float(value.reshape(-1)[0]) if value.size == 1 else value
            elif prop == "forces":
                value = value.reshape(-1, 3)
            results[prop] = value
            used.setdefault(prop, where)
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        frames.append(atoms)
    if any(not v.startswith("the calculator's") or key_map for v in used.values()):
        print(f"{path}: " + ", ".join(f"{p} from {w}" for p, w in used.items()), flush=True)
    return frames


def _read_npz(path: Path, index: int | slice) -> list[ase.Atoms]:
    with np.load(path, allow_pickle=False) as npz:
        files = set(npz.files)
        for conv in (_MD17_KEYS, _RMD17_KEYS):
            if conv[0] in files and conv[1] in files:
                z_key, r_key, e_key, f_key = conv
                break
        else:
            raise ValueError(
                f"{path} has keys {sorted(files)}, but an npz needs the MD17 keys z, R (optional E, F) "
                "or the rMD17 keys nuclear_charges, coords (optional energies, forces)"
            )
        positions = np.asarray(npz[r_key], dtype=np.float64)  # [n_frames, n_atoms, 3]
        numbers = np.asarray(npz[z_key])  # [n_atoms] or [n_frames, n_atoms]
        energies = np.asarray(npz[e_key], dtype=np.float64) if e_key in files else None
        forces = np.asarray(npz[f_key], dtype=np.float64) if f_key in files else None
        lattice = np.asarray(npz["lattice"], dtype=np.float64) if "lattice" in files else None

    if positions.ndim == 2 and positions.shape[-1] == 3:  # a single frame stored as [n_atoms, 3]
        positions = positions[None]
    if positions.ndim != 3 or positions.shape[-1] != 3:
        raise ValueError(f"{path}: {r_key} has shape {positions.shape}, expected [n_frames, n_atoms, 3]")
    n_frames, n_atoms = positions.shape[:2]
    if numbers.shape not in ((n_atoms,), (n_frames, n_atoms)):
        raise ValueError(
            f"{path}: {z_key} has shape {numbers.shape}, expected [{n_atoms}] or [{n_frames}, {n_atoms}] "
            f"to match {r_key} {positions.shape}"
        )
    if energies is not None:
        if energies.size != n_frames:
            raise ValueError(
                f"{path}: {e_key} has shape {energies.shape}, expected [{n_frames}] or [{n_frames}, 1]"
            )
        energies = energies.reshape(n_frames)
    if forces is not None and forces.shape != positions.shape:
        raise ValueError(
            f"{path}: {f_key} has shape {forces.shape} but {r_key} has {positions.shape}; "
            "forces must have one 3-vector per atom of every frame"
        )
    if lattice is not None and lattice.shape != (3, 3):
        raise ValueError(f"{path}: lattice has shape {lattice.shape}, expected [3, 3]")

    frames = []
    for k in _select(n_frames, index, path):
        z = numbers if numbers.ndim == 1 else numbers[k]
        atoms = ase.Atoms(numbers=z.astype(int), positions=positions[k])
        if lattice is not None:
            atoms.set_cell(lattice)
            atoms.set_pbc(True)
        results = {}
        if energies is not None:
            results["energy"] = float(energies[k])
        if forces is not None:
            results["forces"] = forces[k].copy()
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        frames.append(atoms)
    return frames


def _read_ase(path: Path, format: str | None, index: int | slice) -> list[ase.Atoms]:
    import ase.io

    source: str | io.StringIO = str(path)
    compressed = {".gz": "gzip", ".bz2": "bz2", ".xz": "lzma"}.get(path.suffix)
    if compressed is not None:
        # ASE reads compressed extxyz by seeking in the compressed stream: 24 s instead of
        # 0.7 s for 2000 small frames. Decompress once into memory instead.
        import importlib

        opener = importlib.import_module(compressed).open
        try:
            with opener(path, "rt") as fh:
                source = io.StringIO(fh.read())
        except (EOFError, OSError, UnicodeDecodeError, ValueError) as err:  # zlib.error, lzma.LZMAError
            raise UserError(
                f"{path} is not a readable {compressed} file: {_first_line(err)}; the file is "
                "truncated or corrupt (download or copy it again)"
            ) from err
        except Exception as err:  # zlib.error is no OSError
            if type(err).__module__ not in ("zlib", "_lzma", "_bz2"):
                raise
            raise UserError(
                f"{path} is not a readable {compressed} file: {_first_line(err)}; the file is "
                "truncated or corrupt (download or copy it again)"
            ) from err
        if format is None:
            from ase.io.formats import filetype

            inner = path.with_suffix("")
            format = "extxyz" if inner.suffix in {".xyz", ".extxyz"} else filetype(str(inner), read=False)
    try:
        result = ase.io.read(source, index=index, format=format)
    except (StopIteration, IndexError) as err:
        raise ValueError(f"index {index!r} selects no frame of {path}") from err
    except Exception as err:  # ase raises many types for unreadable files; give one clear line
        raise UserError(
            f"could not read {path} with ase.io.read (format={format!r}): {_first_line(err)}; "
            "check the file (truncated? another format? then pass it as data.format / the right suffix)"
        ) from err
    return [result] if isinstance(result, ase.Atoms) else list(result)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def _check_frames(frames: list[ase.Atoms], path: Path) -> None:
    """Non-finite positions and forces whose shape does not match the atoms."""
    for k, atoms in enumerate(frames):
        pos = atoms.positions
        finite = np.isfinite(pos).all(axis=1)
        if not finite.all():
            atom = int(np.flatnonzero(~finite)[0])
            raise ValueError(f"{path}: frame {k}, atom {atom} has a non-finite position {pos[atom].tolist()}")
        results = getattr(atoms.calc, "results", None) or {}
        if results.get("forces") is not None:
            shape = np.shape(results["forces"])
            if shape != (len(atoms), 3):
                raise ValueError(
                    f"{path}: frame {k} has forces of shape {tuple(shape)} but {len(atoms)} atoms; "
                    f"expected ({len(atoms)}, 3)"
                )


def _read_npy(
    path: Path, index: int | slice, numbers: Sequence[int | str] | None, forces_path: str | os.PathLike | None
) -> list[ase.Atoms]:
    """Positions [n_frames, n_atoms, 3] from ``path`` (.npy) and optional forces of the same shape."""
    from physnet.data.graph import atomic_number

    if numbers is None or len(numbers) == 0:
        raise ValueError(
            f"{path} holds positions only; give the atom (bead) types as numbers=[...] "
            "(config: data.numbers, e.g. [6, 7, 6, 6, 7])"
        )
    positions = np.load(path, mmap_mode="r", allow_pickle=False)
    if positions.ndim != 3 or positions.shape[-1] != 3:
        raise ValueError(f"{path} has shape {positions.shape}, expected [n_frames, n_atoms, 3]")
    n_frames, n_atoms = positions.shape[:2]
    z = np.array([atomic_number(s) for s in numbers], dtype=int)
    if z.shape != (n_atoms,):
        raise ValueError(f"numbers has {len(z)} entries but {path} has {n_atoms} atoms per frame")
    forces = None
    if forces_path:
        fpath = Path(forces_path)
        if not fpath.is_file():
            raise FileNotFoundError(f"no such forces file: {fpath}")
        forces = np.load(fpath, mmap_mode="r", allow_pickle=False)
        if forces.shape != positions.shape:
            raise ValueError(
                f"forces file {fpath} has shape {forces.shape} but positions {path} have {positions.shape}"
            )
    frames = []
    for k in _select(n_frames, index, path):
        atoms = ase.Atoms(numbers=z, positions=np.asarray(positions[k], dtype=np.float64))
        if forces is not None:
            atoms.calc = SinglePointCalculator(atoms, forces=np.asarray(forces[k], dtype=np.float64))
        frames.append(atoms)
    return frames


def read_frames(
    path: str | os.PathLike,
    format: str | None = None,
    index: Index = ":",
    numbers: Sequence[int | str] | None = None,
    forces_path: str | os.PathLike | None = None,
    drop_nonfinite: bool = False,
    key_map: dict[str, str] | None = None,
) -> list[ase.Atoms]:
    """Read structures and their reference energies, forces and stresses.

    Supported inputs:

    - anything :func:`ase.io.read` reads (extended XYZ, ASE trajectories, ...);
    - ASE databases (``.db`` or ``format="db"``), read with :func:`ase.db.connect`; each
      row's key-value pairs are copied into ``atoms.info``. Labels come from the row's
      calculator results or, as schnetpack writes them, from ``row.data`` (``key_map`` names
      them when they are not ``energy``, ``forces``, ``stress``);
    - ``.npz`` (or ``format="npz"``) in the MD17 convention (``z`` [n_atoms], ``R``
      [n_frames, n_atoms, 3], ``E`` [n_frames] or [n_frames, 1], ``F`` like ``R``) or the
      rMD17 convention (``nuclear_charges``, ``coords``, ``energies``, ``forces``). Energies
      and forces are optional; an sGDML-style ``lattice`` [3, 3] makes the frames periodic;
    - ``.npy`` positions [n_frames, n_atoms, 3] (e.g. coarse-grained data) with the atom
      types given as ``numbers`` and, optionally, forces of the same shape in the ``.npy``
      file ``forces_path`` (no energies).

    Every returned ``Atoms`` carries whatever targets the file holds (energy [], forces
    [n_atoms, 3], stress Voigt [6] or [3, 3]) in a ``SinglePointCalculator``, so that
    :func:`physnet.data.from_ase` copies them into the graph. No unit is converted: the
    values keep the units of the file, which the caller must declare.

    Args:
        path: the file.
        format: ``"db"``, ``"npz"`` or an :mod:`ase.io` format name; ``None`` guesses from
            the suffix (and, for ase formats, from the content).
        index: which frames, as in :func:`ase.io.read`: ``":"`` (all), ``"10:20"``,
            ``"::2"``, ``-1``, a ``slice`` ...
        numbers: atomic numbers or symbols of the atoms of every frame (``.npy`` only).
        forces_path: ``.npy`` file of forces matching the positions (``.npy`` only).
        drop_nonfinite: drop frames with a non-finite position, energy, force or stress (and
            print how many) instead of raising.
        key_map: ASE database only: ``{"energy": name, "forces": name, "stress": name}``.

    Returns:
        the selected frames, a list even when ``index`` is an int.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is empty, truncated or corrupt, or the selection has no frame, an
            npz has neither key convention, a position, energy, force or stress is not finite
            (frame and atom are named; frames count from 0 among those returned) or a frame's
            forces do not have the shape [n_atoms, 3].
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such data file: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a directory; give the path of a data file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes)")
    idx = _parse_index(index)
    fmt = format.lower() if format else None
    suffix = path.suffix.lower()
    if fmt == "db" or (fmt is None and suffix == ".db"):
        frames = _read_db(path, idx, key_map)
    elif fmt == "npz" or (fmt is None and suffix == ".npz"):
        frames = _read_npz(path, idx)
    elif fmt == "npy" or (fmt is None and suffix == ".npy"):
        frames = _read_npy(path, idx, numbers, forces_path)
    else:
        frames = _read_ase(path, format, idx)
    if not frames:
        raise ValueError(f"{path} has no frames" + ("" if index == ":" else f" for index {index!r}"))
    if key_map and not (fmt == "db" or (fmt is None and suffix == ".db")):
        raise UserError(f"data.keys (a key map) applies to ASE databases (.db), not {path}")
    if drop_nonfinite:
        frames = check_finite(frames, str(path), drop=True)
    _check_frames(frames, path)
    check_finite(frames, str(path))
    return frames


# --------------------------------------------------------------------------- dataset


class GraphDataset(Dataset):
    """Graphs of all frames, with neighbour lists, built once.

    Args:
        frames: the structures, each with its targets in ``atoms.calc`` (see :func:`read_frames`).
        cutoff: neighbour cutoff in the length unit of the positions (e.g. Å).
        dtype: float dtype of positions, cell and targets (default: torch's default dtype).
            Note that float32 keeps only ~7 significant digits: an MD17 total energy of
            -97000 kcal/mol is stored to ~0.004 kcal/mol; :attr:`energies` keeps float64.
        require: graph keys every frame must have, e.g. ``(K.ENERGY, K.FORCES)`` or ``()``.
        progress: show a tqdm bar while building (only for more than 500 frames).
        source: where the frames come from (e.g. the file path), used in error messages.

    ``dataset[i]`` is the graph dict of frame ``i`` (shared tensors in a new dict; do not
    modify them in place).
    """

    def __init__(
        self,
        frames: Sequence[ase.Atoms],
        cutoff: float,
        dtype: torch.dtype | None = None,
        require: Sequence[str] = (K.ENERGY, K.FORCES),
        progress: bool = True,
        source: str = "",
    ) -> None:
        super().__init__()
        frames = list(frames)
        where = f" in {source}" if source else ""
        if not frames:
            raise ValueError(f"no frames{where}; a GraphDataset needs at least one structure")
        if not cutoff > 0:
            raise ValueError(f"cutoff must be > 0, got {cutoff}")
        if isinstance(require, str):
            require = (require,)
        from tqdm.auto import tqdm

        show = progress and len(frames) > _PROGRESS_MIN_FRAMES
        graphs: list[Graph] = []
        energies: list[float] = []
        for k, atoms in enumerate(
            tqdm(frames, desc="building graphs", unit="frame", disable=not show, leave=False)
        ):
            try:
                graph = from_ase(atoms, cutoff, dtype=dtype)
            except ValueError as err:
                raise ValueError(f"frame {k}{where}: {err}") from err
            if K.FORCES in graph and graph[K.FORCES].shape != graph[K.POS].shape:
                raise ValueError(
                    f"frame {k}{where} has forces of shape {tuple(graph[K.FORCES].shape)} "
                    f"but {len(atoms)} atoms; expected ({len(atoms)}, 3)"
                )
            results = getattr(atoms.calc, "results", None) or {}
            if K.ENERGY in graph:
                energies.append(float(np.asarray(results["energy"]).reshape(())))
            graphs.append(graph)
        check_finite(frames, source)  # positions were checked by from_ase; labels here
        for key in require:
            missing = next((k for k, g in enumerate(graphs) if key not in g), None)
            if missing is not None:
                raise ValueError(
                    f"frame {missing}{where} has no {key!r} (required: {list(require)}); "
                    f"the file must hold {key} for every frame, or drop it from `require`"
                )
        self.cutoff = float(cutoff)
        self.dtype = dtype or torch.get_default_dtype()
        self.source = source
        self._set(graphs, np.asarray(energies) if len(energies) == len(graphs) else None)

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike,
        cutoff: float,
        format: str | None = None,
        index: Index = ":",
        dtype: torch.dtype | None = None,
        require: Sequence[str] = (K.ENERGY, K.FORCES),
        progress: bool = True,
    ) -> GraphDataset:
        """:func:`read_frames` then ``GraphDataset(..., source=str(path))``; arguments as there."""
        frames = read_frames(path, format=format, index=index)
        return cls(frames, cutoff, dtype=dtype, require=require, progress=progress, source=str(path))

    def _set(self, graphs: list[Graph], energies: np.ndarray | None) -> None:
        self.graphs: list[Graph] = graphs
        self._energies = energies  # [n_frames] float64 or None
        self._n_atoms = np.array([int(g[K.N_ATOMS][0]) for g in graphs], dtype=np.int64)
        zs = torch.unique(torch.cat([g[K.Z] for g in graphs])) if graphs else torch.zeros(0)
        self._atomic_numbers = [int(z) for z in zs.tolist()]

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, i: int) -> Graph:
        return dict(self.graphs[i])

    @property
    def atomic_numbers(self) -> list[int]:
        """Sorted distinct atomic numbers (or particle types) in the data."""
        return list(self._atomic_numbers)

    @property
    def n_atoms(self) -> np.ndarray:
        """[n_frames] int64, atoms per frame."""
        return self._n_atoms.copy()

    @property
    def energies(self) -> np.ndarray | None:
        """[n_frames] float64 reference energies as read (full precision), or ``None`` if any is missing."""
        return None if self._energies is None else self._energies.copy()

    def subset(self, indices: Sequence[int] | np.ndarray) -> GraphDataset:
        """A GraphDataset of the frames ``indices`` (in that order), sharing the graphs."""
        idx = _as_indices(indices, len(self), "indices", unique=False)
        out = GraphDataset.__new__(GraphDataset)
        Dataset.__init__(out)
        out.cutoff, out.dtype, out.source = self.cutoff, self.dtype, self.source
        energies = None if self._energies is None else self._energies[idx]
        out._set([self.graphs[i] for i in idx], energies)
        return out

    def __repr__(self) -> str:
        src = f", source={self.source!r}" if self.source else ""
        return (
            f"GraphDataset(n_frames={len(self)}, cutoff={self.cutoff}, "
            f"atomic_numbers={self._atomic_numbers}{src})"
        )


# --------------------------------------------------------------------------- splits


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _split_size(name: str, value: float | int, n: int) -> int:
    if _is_int(value):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not 0.0 < value <= 1.0:
            raise ValueError(
                f"{name}={value}: a float is a fraction of the data in (0, 1]; give a count as an int"
            )
        return int(np.floor(value * n + 1e-9))
    raise ValueError(f"{name} must be a fraction (float in (0, 1]) or a count (int), got {value!r}")


def make_split(
    n: int,
    train: float | int,
    val: float | int,
    test: float | int | None = None,
    seed: int = 0,
    blocks: int = 0,
) -> dict[str, np.ndarray]:
    """Random train / validation / test indices, of frames or of time-contiguous blocks.

    ``perm = np.random.default_rng(seed).permutation(n)``; train is ``perm[:n_train]``,
    val the next ``n_val`` and test the next ``n_test``, so
    ``make_split(2000, 1000, 100, 900, seed=0)`` is the fixed MD17 ethanol split
    (``perm[:1000]``, ``perm[1000:1100]``, ``perm[1100:]``).

    Args:
        n: number of frames.
        train, val, test: sizes, each a fraction of ``n`` (float in (0, 1], rounded down)
            or a count (int); ``test=None`` takes all remaining frames.
        seed: seed of the permutation.
        blocks: if > 0, cut the frames into this many time-contiguous blocks
            (``np.array_split``) and split whole blocks: each size is rounded to the
            nearest number of blocks (at least one for train and val), the block order is
            ``default_rng(seed).permutation(blocks)`` (train, then val, then test), and
            each split lists its frames in time order. Use it for correlated MD frames,
            where a random frame split leaks neighbouring frames into the test set.

    Returns:
        ``{"train": [n_train], "val": [n_val], "test": [n_test]}`` int64 index arrays.

    >>> s = make_split(100, 0.7, 0.1, 0.2, seed=0, blocks=10)
    >>> [len(s[k]) for k in ("train", "val", "test")]
    [70, 10, 20]
    """
    if not _is_int(n) or n < 1:
        raise ValueError(f"n must be a positive int (the number of frames), got {n!r}")
    n = int(n)
    n_train = _split_size("train", train, n)
    n_val = _split_size("val", val, n)
    n_test = n - n_train - n_val if test is None else _split_size("test", test, n)
    if n_train + n_val + max(n_test, 0) > n or n_test < 0:
        shown = "the rest" if test is None else n_test
        raise ValueError(
            f"split sizes train={n_train}, val={n_val}, test={shown} need more than the {n} frames available"
        )
    if n_train == 0 or n_val == 0:
        raise ValueError(
            f"split of {n} frames gives train={n_train}, val={n_val}; both must have at least one frame"
        )
    if blocks:
        return _block_split(n, n_train, n_val, n_test, seed, int(blocks))
    perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
    return {
        "train": perm[:n_train],
        "val": perm[n_train : n_train + n_val],
        "test": perm[n_train + n_val : n_train + n_val + n_test],
    }


def _block_split(
    n: int, n_train: int, n_val: int, n_test: int, seed: int, blocks: int
) -> dict[str, np.ndarray]:
    if not 3 <= blocks <= n:
        raise ValueError(f"data.blocks must be between 3 and the {n} frames, got {blocks}")
    counts = [
        max(1, round(n_train / n * blocks)),
        max(1, round(n_val / n * blocks)),
        round(n_test / n * blocks),
    ]
    if sum(counts) > blocks:
        counts[0] = blocks - counts[1] - counts[2]
    if counts[0] < 1:
        raise ValueError(f"{blocks} blocks are too few for train/val/test sizes {n_train}/{n_val}/{n_test}")
    chunks = np.array_split(np.arange(n, dtype=np.int64), blocks)
    order = np.random.default_rng(seed).permutation(blocks)
    out, start = {}, 0
    for name, c in zip(("train", "val", "test"), counts, strict=True):
        chosen = sorted(order[start : start + c])
        out[name] = np.concatenate([chunks[b] for b in chosen]) if chosen else np.zeros(0, np.int64)
        start += c
    return out


def _as_indices(values: object, n: int | None, name: str, unique: bool = True) -> np.ndarray:
    """Validate a 1-D list of non-negative ints (< n if given), without duplicates if ``unique``."""
    arr = np.asarray(values)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be a flat list of integer indices, got dtype {arr.dtype} {arr.shape}")
    arr = arr.astype(np.int64)
    if int(arr.min()) < 0:
        raise ValueError(f"{name} has a negative index {int(arr.min())}")
    if n is not None and int(arr.max()) >= n:
        raise ValueError(f"{name} has index {int(arr.max())} but there are only {n} frames (0..{n - 1})")
    uniq, counts = np.unique(arr, return_counts=True)
    if unique and (counts > 1).any():
        raise ValueError(f"{name} lists index {int(uniq[counts > 1][0])} more than once")
    return arr


def _check_split(split: dict[str, object], n: int | None, where: str) -> dict[str, np.ndarray]:
    if not isinstance(split, dict):
        raise ValueError(f"{where}: a split must map names to index lists, got {type(split).__name__}")
    for name in ("train", "val"):
        if name not in split:
            raise ValueError(f"{where}: the split has no {name!r} set (it has {sorted(split)})")
    out = {str(name): _as_indices(idx, n, f"{where}: {name!r}") for name, idx in split.items()}
    out.setdefault("test", np.zeros(0, dtype=np.int64))
    names = list(out)
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            common = np.intersect1d(out[names[a]], out[names[b]])
            if common.size:
                raise ValueError(
                    f"{where}: sets {names[a]!r} and {names[b]!r} share {common.size} index(es), "
                    f"e.g. {int(common[0])}; splits must be disjoint"
                )
    return out


def save_split(split: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """Write a split as JSON ``{"train": [...], "val": [...], "test": [...]}``, atomically.

    The file is written next to ``path`` under a temporary name and then renamed, so a
    reader never sees half a file. The split is validated (disjoint, non-negative ints).
    """
    path = Path(path)
    checked = _check_split(dict(split), None, "save_split")
    payload = {name: [int(i) for i in idx] for name, idx in checked.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh)
            fh.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the split from the user's group (eval --split)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_split(path: str | os.PathLike, n: int | None = None) -> dict[str, np.ndarray]:
    """Read a split written by :func:`save_split`.

    Args:
        path: the JSON file.
        n: number of frames of the data set; if given, every index must be < n.

    Returns:
        name -> int64 index array; always has ``"train"``, ``"val"`` and ``"test"`` (empty if
        the file has none).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such split file: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    return _check_split(data, n, str(path))


# --------------------------------------------------------------------------- loading


def make_loader(
    dataset: Dataset,
    indices: Sequence[int] | np.ndarray | None,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
) -> DataLoader:
    """A DataLoader over ``dataset[indices]`` that batches graphs with :func:`physnet.data.collate`.

    Args:
        dataset: a :class:`GraphDataset` (or any dataset of graph dicts).
        indices: frames to iterate (e.g. ``split["train"]``); ``None`` for all.
        batch_size: graphs per batch (the last batch may be smaller).
        shuffle: reshuffle every epoch with a generator seeded by ``seed`` (reproducible).
        num_workers: worker processes (0: load in the main process; the graphs are
            prebuilt, so workers rarely pay off).
        seed: seed of the shuffling generator.
    """
    if not _is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    n = len(dataset)  # type: ignore[arg-type]
    idx = np.arange(n) if indices is None else _as_indices(indices, n, "indices", unique=False)
    if idx.size == 0:
        raise ValueError("indices is empty; a loader needs at least one frame")
    generator = torch.Generator().manual_seed(int(seed)) if shuffle else None
    return DataLoader(
        Subset(dataset, idx.tolist()),
        batch_size=int(batch_size),
        shuffle=shuffle,
        collate_fn=collate,
        num_workers=num_workers,
        generator=generator,
        persistent_workers=num_workers > 0,
    )
