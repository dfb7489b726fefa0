"""physnet md with a committee: the force-deviation log, frame selection and the stop threshold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ase.io import read

import physnet
from physnet.cli import main


@pytest.fixture(scope="module")
def committee_files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    folder = tmp_path_factory.mktemp("committee")
    paths = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = physnet.models.build("schnet", species=["H", "C", "O"], n_features=16, n_filters=16, n_rbf=8)
        path = folder / f"m{seed}.pt"
        physnet.Potential(model).save(path)
        paths.append(str(path))
    return paths


def _md(paths: list[str], traj: Path, *extra: str) -> int:
    args = ["md", *paths, "CCO", "--steps", "20", "--log-every", "5", "--trajectory", str(traj)]
    return main([*args, "--no-progress", *extra])


def test_logs_and_selects_without_stopping(committee_files, tmp_path: Path, capsys) -> None:
    traj = tmp_path / "md.traj"
    assert _md(committee_files, traj, "--select-force-uncertainty", "1e-9") == 0
    log = np.genfromtxt(tmp_path / "md_uncertainty.csv", delimiter=",", names=True)
    n_frames = len(read(traj, ":"))
    assert len(log) == n_frames and (log["max_force_std_eV_A"] > 0).all()
    frames = read(tmp_path / "md_uncertain.extxyz", ":")
    assert len(frames) == n_frames and frames[-1].calc is None  # unlabelled, ready for the reference method
    assert frames[-1].info["step"] == 20
    np.testing.assert_allclose(frames[-1].positions, read(traj, -1).positions)
    out = capsys.readouterr().out
    assert "committee of 3: largest per-atom force deviation mean" in out and "frame(s) to label" in out


def test_stops_above_the_threshold(committee_files, tmp_path: Path, capsys) -> None:
    traj = tmp_path / "md.traj"
    assert _md(committee_files, traj, "--max-force-uncertainty", "1e-9") == 1
    err = capsys.readouterr().err
    assert "physnet md: stopped at step 0" in err and "exceeds --max-force-uncertainty 1e-09" in err
    assert len(read(tmp_path / "md_uncertain.extxyz", ":")) == 1
    # a threshold never reached: the run finishes and selects nothing
    traj2 = tmp_path / "md2.traj"
    assert _md(committee_files, traj2, "--max-force-uncertainty", "1e6") == 0
    assert not (tmp_path / "md2_uncertain.extxyz").exists()
    # existing outputs are not replaced without --overwrite
    assert _md(committee_files, traj2, "--max-force-uncertainty", "1e6", "--trajectory", str(traj2)) == 2


def test_needs_a_committee(committee_files, tmp_path: Path, capsys) -> None:
    assert _md(committee_files[:1], tmp_path / "md.traj", "--max-force-uncertainty", "0.1") == 2
    assert "need a committee" in capsys.readouterr().err
