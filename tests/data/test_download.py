"""``physnet data``: download (a local file:// URL stands in for the network), hash check,
archive extraction, subset; every failure is one clear error."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from physnet.cli import main
from physnet.data.datasets import read_frames
from physnet.data.download import fetch
from physnet.errors import UserError


def md17_npz(path: Path, n: int = 30) -> Path:
    rng = np.random.default_rng(0)
    z = np.array([6, 6, 8, 1, 1, 1, 1, 1, 1])
    base = np.array(
        [[0, 0, 0], [1.5, 0, 0], [2.0, 1.3, 0], [-0.5, 0.9, 0.3], [-0.5, -0.9, 0.3], [-0.4, 0, -1],
         [1.9, -0.9, 0.5], [1.9, 0, -1], [2.9, 1.3, 0.3]]
    )  # fmt: skip
    R = base + rng.normal(scale=0.03, size=(n, 9, 3))
    np.savez(path, z=z, R=R, E=-97000 + rng.normal(size=(n, 1)), F=rng.normal(scale=20, size=(n, 9, 3)))
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_checks_and_records_the_hash(tmp_path, capsys) -> None:
    src = md17_npz(tmp_path / "remote.npz")
    out = tmp_path / "data"
    path = fetch("md17_ethanol", out, url=src.as_uri())
    assert path == out / "md17_ethanol.npz" and sha(path) == sha(src)
    assert (out / "md17_ethanol.npz.sha256").read_text().split()[0] == sha(src)
    assert len(read_frames(path)) == 30
    path.write_bytes(path.read_bytes()[:-10])  # damaged later
    with pytest.raises(UserError, match=f"md17_ethanol.npz has SHA-256 .*, expected {sha(src)}"):
        fetch("md17_ethanol", out, url=src.as_uri())


def test_download_with_the_wrong_hash_keeps_nothing(tmp_path) -> None:
    src = md17_npz(tmp_path / "remote.npz")
    with pytest.raises(UserError, match="expected 00000.*nothing was kept"):
        fetch("md17_ethanol", tmp_path / "data", sha256="0" * 64, url=src.as_uri())
    assert list((tmp_path / "data").iterdir()) == []


def test_rmd17_member_is_extracted(tmp_path) -> None:
    npz = md17_npz(tmp_path / "e.npz")
    archive = tmp_path / "rmd17.tar.bz2"
    with tarfile.open(archive, "w:bz2") as tar:
        data = npz.read_bytes()
        info = tarfile.TarInfo("rmd17/npz_data/rmd17_ethanol.npz")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    path = fetch("rmd17_ethanol", tmp_path / "data", sha256=sha(archive), url=archive.as_uri())
    assert sha(path) == sha(npz)


def test_unknown_name_and_unreachable_url(tmp_path) -> None:
    with pytest.raises(UserError, match=r"unknown data set 'md17_ethanl' \(did you mean 'md17_ethanol'\?\)"):
        fetch("md17_ethanl", tmp_path)
    with pytest.raises(UserError, match="could not download file://"):
        fetch("md17_ethanol", tmp_path / "d", url=(tmp_path / "missing.npz").as_uri())


def test_cli_writes_a_subset(tmp_path, capsys) -> None:
    src = md17_npz(tmp_path / "remote.npz")
    out = tmp_path / "data"
    args = ["data", "md17_ethanol", "--output", str(out), "--url", src.as_uri(), "--frames", "12"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert f"data.path={out / 'md17_ethanol_12.extxyz'} data.energy_unit=kcal/mol data.length_unit=Å" in text
    frames = read_frames(out / "md17_ethanol_12.extxyz")
    assert len(frames) == 12 and frames[0].get_forces().shape == (9, 3)
