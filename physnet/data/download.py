"""Public reference data sets downloaded on request (``physnet data NAME``), with a hash check.

MD17 (Chmiela et al., Sci. Adv. 3, e1603015 (2017); DFT PBE+TS, 500 K MD; kcal/mol and Å)
comes as one ``.npz`` per molecule from quantum-machine.org; rMD17 (Christensen & von
Lilienfeld, Mach. Learn.: Sci. Technol. 1, 045018 (2020); recomputed with PBE/def2-SVP,
100,000 frames per molecule; kcal/mol and Å) as one archive from figshare, from which one
molecule's ``.npz`` is extracted. :func:`physnet.data.read_frames` reads both ``.npz`` kinds.

Every file is checked against a SHA-256: the one pinned in :data:`SOURCES`, the one the user
gives (``--sha256``), or, for a source without a pinned hash, the one recorded in
``<file>.sha256`` at its first download (so later runs detect a changed or damaged file). A
download that does not match is deleted. ``--frames N`` also writes a random subset of N frames
as extended XYZ (what the example configs train on).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from physnet.errors import UserError, close_match

__all__ = ["Source", "SOURCES", "fetch", "subset"]

_MD17_URL = "http://quantum-machine.org/gdml/data/npz/md17_{}.npz"
_RMD17_URL = "https://figshare.com/ndownloader/files/23950376"  # rmd17.tar.bz2


@dataclass(frozen=True)
class Source:
    """Where a data set comes from. ``member``: the file inside an archive (``url`` is the
    archive, ``archive`` its local name); ``sha256``: pinned hash of the downloaded file, if known."""

    url: str
    file: str
    energy_unit: str = "kcal/mol"
    length_unit: str = "Å"
    sha256: str | None = None
    archive: str | None = None
    member: str | None = None
    citation: str = ""


_MOLECULES = (
    "aspirin",
    "benzene",
    "ethanol",
    "malonaldehyde",
    "naphthalene",
    "salicylic",
    "toluene",
    "uracil",
)
SOURCES: dict[str, Source] = {
    **{
        f"md17_{m}": Source(
            url=_MD17_URL.format(m),
            file=f"md17_{m}.npz",
            citation="Chmiela et al., Sci. Adv. 3, e1603015 (2017)",
        )
        for m in _MOLECULES
    },
    **{
        f"rmd17_{m}": Source(
            url=_RMD17_URL,
            file=f"rmd17_{m}.npz",
            archive="rmd17.tar.bz2",
            member=f"rmd17/npz_data/rmd17_{'salicylic' if m == 'salicylic' else m}.npz",
            citation="Christensen & von Lilienfeld, Mach. Learn.: Sci. Technol. 1, 045018 (2020)",
        )
        for m in _MOLECULES
    },
}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check(path: Path, expected: str | None, what: str) -> str:
    """The file's SHA-256, checked against ``expected`` or its ``.sha256`` record (written if none)."""
    got = _sha256(path)
    record = path.with_name(path.name + ".sha256")
    if expected is None and record.is_file():
        expected = record.read_text().split()[0]
    if expected is not None and got != expected.lower():
        raise UserError(
            f"{what} {path} has SHA-256 {got}, expected {expected}: the file is damaged or the source "
            f"changed; delete {path} and download it again (or pass --sha256 with the new hash)"
        )
    if not record.is_file():
        record.write_text(f"{got}  {path.name}\n")
    return got


def _download(url: str, target: Path, expected: str | None) -> str:
    """Download ``url`` to ``target`` (temporary file + rename) and check its hash."""
    tmp = target.with_name(f".{target.name}.part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise UserError(
            f"could not download {url}: {err}; check the network, or download it by hand"
        ) from err
    got = _sha256(tmp)
    if expected is not None and got != expected.lower():
        tmp.unlink(missing_ok=True)
        raise UserError(
            f"the download of {url} has SHA-256 {got}, expected {expected}: it is damaged or the source "
            "changed; nothing was kept"
        )
    os.replace(tmp, target)
    return _check(target, expected, "download")


def fetch(
    name: str, folder: str | os.PathLike = "downloads", sha256: str | None = None, url: str | None = None
) -> Path:
    """The path of data set ``name`` in ``folder``, downloaded (and extracted) if not there yet.

    Args:
        name: a key of :data:`SOURCES`, e.g. ``"md17_ethanol"`` or ``"rmd17_ethanol"``.
        folder: where the file goes.
        sha256: the expected SHA-256 of the downloaded file (the archive, for rMD17); default: the
            pinned one, else the one recorded at the first download.
        url: download from here instead (a mirror, or ``file://`` for a local copy).

    Raises:
        UserError: an unknown name, a failed download or a hash mismatch.
    """
    if name not in SOURCES:
        raise UserError(
            f"unknown data set {name!r}{close_match(name, SOURCES)}; available: {', '.join(SOURCES)}"
        )
    if sha256 is not None and re.fullmatch(r"[0-9a-fA-F]{64}", sha256) is None:
        raise UserError(f"the SHA-256 must be 64 hexadecimal digits (as sha256sum prints), got {sha256!r}")
    src = SOURCES[name]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / src.file
    expected = sha256 or src.sha256
    if src.member is None:
        if target.is_file():
            _check(target, expected, "data file")
        else:
            print(f"downloading {url or src.url} -> {target}", flush=True)
            _download(url or src.url, target, expected)
        return target
    archive = folder / str(src.archive)
    if archive.is_file():
        _check(archive, expected, "archive")
    else:
        print(f"downloading {url or src.url} -> {archive}", flush=True)
        _download(url or src.url, archive, expected)
    if not target.is_file():
        with tarfile.open(archive) as tar:
            try:
                member = tar.getmember(src.member)
            except KeyError:
                raise UserError(f"{archive} has no {src.member}; is it the rMD17 archive?") from None
            fh = tar.extractfile(member)
            if fh is None:
                raise UserError(f"{archive}: {src.member} is not a file")
            tmp = target.with_name(f".{target.name}.part")
            with fh, open(tmp, "wb") as out:
                shutil.copyfileobj(fh, out, 1 << 20)
            os.replace(tmp, target)
    return target


def subset(
    path: str | os.PathLike, n_frames: int, seed: int = 0, output: str | os.PathLike | None = None
) -> Path:
    """Write ``n_frames`` frames of ``path`` drawn at random (``default_rng(seed)``, in file order)
    as extended XYZ next to it (``<stem>_<n>.extxyz``); returns its path. Units stay the file's."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    path = Path(path)
    out = Path(output) if output else path.with_name(f"{path.stem}_{n_frames}.extxyz")
    if out.is_file():
        return out
    with np.load(path) as npz:
        z_key, r_key, e_key, f_key = (
            ("z", "R", "E", "F") if "R" in npz.files else ("nuclear_charges", "coords", "energies", "forces")
        )
        total = int(npz[r_key].shape[0])
        if not 0 < n_frames <= total:
            raise UserError(f"--frames {n_frames}: {path} has {total} frames")
        picks = np.sort(np.random.default_rng(seed).choice(total, size=n_frames, replace=False))
        z, pos = np.asarray(npz[z_key]), np.asarray(npz[r_key])[picks]
        energy = np.asarray(npz[e_key]).reshape(total)[picks]
        forces = np.asarray(npz[f_key])[picks]
    frames = []
    for k in range(n_frames):
        atoms = Atoms(numbers=z.astype(int), positions=pos[k])
        atoms.calc = SinglePointCalculator(atoms, energy=float(energy[k]), forces=forces[k])
        frames.append(atoms)
    tmp = out.with_name(f".{out.name}.part")
    write(tmp, frames, format="extxyz")
    os.replace(tmp, out)
    return out
