"""Data sets that physnet generates itself and ships in the repository's ``data/`` folder.

Each set is one compressed extended-XYZ file (``<name>.extxyz.gz``) next to a JSON
sidecar (``<name>.json``) that says what the file holds: units, method, software
versions, MD settings, seed and the exact command that made it (a set may list further
files, e.g. all-atom coordinates, under ``extra_files``). The generators are
``scripts/generate_molecular_md.py`` (GFN2-xTB MD), ``scripts/generate_emt_metals.py``
(EMT metals with stress), ``scripts/generate_property_set.py`` (relaxed molecules with
HOMO-LUMO gap and dipole) and ``scripts/generate_alanine_cg.py`` (OpenMM alanine
dipeptide mapped onto 5 beads); ``data/README.md`` tables the sets.

Energies are in eV, lengths in Å, forces in eV/Å and stresses in eV/Å^3 (ASE sign;
``atoms.get_stress()`` gives Voigt order) in every set; :func:`info` says so per set.

>>> "ethanol_gfn2" in available()
True
>>> frames = load("ethanol_gfn2")
>>> len(frames), frames[0].get_forces().shape, info("ethanol_gfn2")["units"]["energy"]
(2000, (9, 3), 'eV')

The folder is ``<repository>/data`` (found relative to this file, so it works for a
source checkout or an editable install); set ``PHYSNET_DATA_DIR`` to use another one.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shlex
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # ase loads when a set is read, so listing the sets stays cheap
    import ase

__all__ = [
    "UnknownDataSetError",
    "data_dir",
    "available",
    "path",
    "info",
    "load",
    "calculator",
    "check_set",
    "software_versions",
    "command_line",
    "write_set",
    "sha256",
]

SIDECAR_SUFFIX = ".json"
FORMAT_VERSION = 1


class UnknownDataSetError(KeyError, ValueError):
    """A name that is neither an embedded data set nor an existing file.

    Subclasses both ``KeyError`` (a failed name lookup) and ``ValueError`` (a bad argument),
    so either ``except`` clause catches it. Its message lists the available names.
    """

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


def data_dir() -> Path:
    """The folder holding the embedded sets: ``$PHYSNET_DATA_DIR`` or ``<repository>/data``."""
    env = os.environ.get("PHYSNET_DATA_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parents[2] / "data"


def _sidecars() -> dict[str, Path]:
    """name -> sidecar path for every ``*.json`` in :func:`data_dir` that describes a data file."""
    folder = data_dir()
    if not folder.is_dir():
        return {}
    out = {}
    for sidecar in sorted(folder.glob(f"*{SIDECAR_SUFFIX}")):
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(meta, dict) and "file" in meta and "name" in meta:
            out[str(meta["name"])] = sidecar
    return out


def available() -> list[str]:
    """Sorted names of the embedded sets whose data file is present, e.g. ``["aspirin_gfn2", ...]``."""
    names = []
    for name, sidecar in _sidecars().items():
        meta = json.loads(sidecar.read_text())
        if (sidecar.parent / meta["file"]).is_file():
            names.append(name)
    return sorted(names)


def _unknown(name: str) -> UnknownDataSetError:
    names = available()
    listed = ", ".join(names) if names else f"none (no data sets found in {data_dir()})"
    return UnknownDataSetError(
        f"{name!r} is not an embedded data set nor an existing file; embedded sets: {listed}"
    )


def info(name: str) -> dict[str, Any]:
    """Everything the sidecar of set ``name`` records.

    Keys include ``name``, ``file``, ``description``, ``units`` (``{"energy": "eV",
    "length": "Å", "forces": "eV/Å", ...}``), ``n_frames``, ``n_atoms``, ``elements``,
    ``provenance`` (method, software versions, MD settings, seed, ``command``) and
    ``statistics`` (e.g. the mean temperature of an MD set), plus ``path`` (absolute path
    of the data file, added here).

    Raises:
        UnknownDataSetError: (a ``KeyError`` and a ``ValueError``) listing the available names.
    """
    sidecars = _sidecars()
    if name not in sidecars:
        raise _unknown(name)
    meta = json.loads(sidecars[name].read_text())
    meta["path"] = str(sidecars[name].parent / meta["file"])
    return meta


def path(name: str) -> Path:
    """Absolute path of the data file of embedded set ``name`` (e.g. ``"ethanol_gfn2"``).

    Raises:
        UnknownDataSetError: (a ``KeyError`` and a ``ValueError``) for an unknown name or a
            set whose data file is missing; the message lists the available names.
    """
    meta = info(name)
    file = Path(meta["path"])
    if not file.is_file():
        raise UnknownDataSetError(
            f"the data file {file} of embedded set {name!r} is missing; regenerate it with: "
            f"{meta.get('provenance', {}).get('command', '(command unknown)')}"
        )
    return file


def load(name_or_path: str | os.PathLike, index: str | int | slice = ":") -> list[ase.Atoms]:
    """Frames of an embedded set by name, or of any file :func:`physnet.data.datasets.read_frames` reads.

    Args:
        name_or_path: an embedded set (``"ethanol_gfn2"``, see :func:`available`) or a path.
            An existing file wins over a set of the same name.
        index: which frames, as in :func:`ase.io.read` (``":"``, ``"0:100"``, ``-1`` ...).

    Returns:
        list of ``ase.Atoms``, each with its energy [eV], forces [n_atoms, 3] eV/Å (and
        stress, Voigt [6] eV/Å^3, for periodic sets) in a ``SinglePointCalculator``; MD
        sets also carry momenta and ``info["temperature_K"]``.

    Raises:
        UnknownDataSetError: neither an existing file nor an embedded set (lists the sets).
    """
    from physnet.data.datasets import read_frames

    candidate = Path(name_or_path)
    file = candidate if candidate.exists() else path(str(name_or_path))
    return read_frames(file, index=index)


def calculator(name: str):  # -> ase.calculators.calculator.Calculator
    """A fresh ASE calculator of the engine and settings that made set ``name``.

    GFN2-xTB sets give ``tblite.ase.TBLite`` (needs ``pip install physnet[data]``), EMT sets
    ASE's ``EMT``; energies in eV, forces in eV/Å, like the file. Use it to check or extend a
    set, e.g. finite differences of the energy against the stored forces.
    """
    prov = info(name).get("provenance", {})
    method = str(prov.get("method", ""))
    settings = dict(prov.get("engine_settings", {}))
    if method.startswith("GFN2-xTB"):
        try:
            from tblite.ase import TBLite
        except ImportError as err:
            raise ImportError(
                f"set {name!r} was made with GFN2-xTB; install tblite (pip install 'physnet[data]')"
            ) from err
        return TBLite(
            method="GFN2-xTB",
            accuracy=float(settings.get("accuracy", 1.0)),
            electronic_temperature=float(settings.get("electronic_temperature_K", 300.0)),
            charge=int(settings.get("charge", 0)),
            verbosity=0,
        )
    if method.startswith("EMT"):
        from ase.calculators.emt import EMT

        return EMT()
    if method.startswith("OpenMM"):
        raise ValueError(
            f"set {name!r} is coarse-grained (OpenMM all-atom forces mapped onto beads): no ASE calculator; "
            "scripts/generate_alanine_cg.py has check_forces() and rebuilds the OpenMM system"
        )
    raise ValueError(f"set {name!r} records method {method!r}, for which physnet builds no calculator")


# --------------------------------------------------------------------------- writing (generators)


def check_set(
    name: str, n_frames: int = 3, h: float = 1e-3, n_components: int | None = None, seed: int = 0
) -> dict[str, Any]:
    """:func:`physnet.data.checks.finite_difference_errors` of ``n_frames`` random frames of set
    ``name`` against the engine that made it (:func:`calculator`); maxima over the frames.

    Args:
        h: displacement (Å) and strain step.
        n_components: random force components per frame (None: all).
        seed: seed of ``numpy.random.default_rng`` for the frames and components.

    Returns:
        ``name``, ``frames`` (the indices), ``h`` and the largest of each error.
    """
    import numpy as np

    from physnet.data.checks import finite_difference_errors

    if info(name).get("kind") == "cg_md":
        raise ValueError(
            f"{name} holds all-atom forces mapped onto beads, which its own engine cannot difference; "
            "check it with scripts/check_embedded_forces.py (OpenMM, through scripts/generate_alanine_cg.py)"
        )
    frames = load(name)
    rng = np.random.default_rng(seed)
    picks = sorted(rng.choice(len(frames), size=min(n_frames, len(frames)), replace=False).tolist())
    results = []
    for k in picks:
        atoms = frames[k]
        comps = None
        if n_components is not None and n_components < 3 * len(atoms):
            comps = np.sort(rng.choice(3 * len(atoms), size=n_components, replace=False))
        results.append(finite_difference_errors(atoms, calculator(name), h=h, components=comps))
    summary: dict[str, Any] = {"name": name, "frames": picks, "h": h}
    for key in results[0]:
        summary[key] = max(r[key] for r in results)
    return summary


def software_versions(packages: Sequence[str] = ("ase", "numpy", "rdkit", "tblite")) -> dict[str, str]:
    """Installed versions of ``packages`` (``"not installed"`` if absent), plus python and physnet."""
    out = {"python": sys.version.split()[0]}
    for name in ("physnet", *packages):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command that ran this process, with the script path relative to the repository root."""
    argv = list(sys.argv if argv is None else argv)
    if argv:
        script = Path(argv[0]).resolve()
        root = Path(__file__).resolve().parents[2]
        try:
            argv[0] = str(script.relative_to(root))
        except ValueError:
            pass
    return " ".join(["python", *(shlex.quote(a) for a in argv)])


def sha256(file: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(file, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_set(
    frames: Sequence[ase.Atoms],
    name: str,
    meta: dict[str, Any],
    folder: str | os.PathLike | None = None,
) -> Path:
    """Write ``<folder>/<name>.extxyz.gz`` and its sidecar ``<name>.json``, each atomically.

    The gzip stream carries no timestamp, so the same frames always give the same bytes.

    Args:
        frames: structures with their results in a ``SinglePointCalculator`` (energy, forces,
            ...), per-frame ``info`` and optional extra arrays (momenta).
        name: the set's name, e.g. ``"ethanol_gfn2"``.
        meta: sidecar content (description, units, provenance, statistics ...); ``name``,
            ``file``, ``format``, ``format_version``, ``n_frames``, ``n_atoms``, ``elements``
            and ``sha256`` are filled in here.
        folder: where to write (default: :func:`data_dir`).

    Returns:
        the path of the data file.
    """
    from ase.io import write

    folder = Path(folder) if folder is not None else data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"{name}.extxyz.gz"
    tmp = file.with_name(f".{file.name}.tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        with io.TextIOWrapper(gz, encoding="utf-8", newline="\n") as fh:
            write(fh, list(frames), format="extxyz")
    os.replace(tmp, file)
    counts = [len(a) for a in frames]
    elements = sorted({s for a in frames for s in a.get_chemical_symbols()})
    full = {
        "name": name,
        "file": file.name,
        "format": "extxyz (gzip)",
        "format_version": FORMAT_VERSION,
        **meta,
        "n_frames": len(frames),
        "n_atoms": counts[0]
        if len(set(counts)) == 1
        else {"min": min(counts), "max": max(counts), "total": sum(counts)},
        "elements": elements,
        "sha256": sha256(file),
        "size_bytes": file.stat().st_size,
    }
    sidecar = folder / f"{name}{SIDECAR_SUFFIX}"
    tmp = sidecar.with_name(f".{sidecar.name}.tmp")
    tmp.write_text(json.dumps(full, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, sidecar)
    return file
