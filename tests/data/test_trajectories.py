"""Particle trajectories (physnet.data.trajectories): files, windows, whole trajectories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from physnet.data import keys as K
from physnet.data.trajectories import RolloutDataset, WindowDataset, collate_windows, load_trajectories

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "data" / "mpm_water" / "water_fixture.npz"


def test_windows_with_future_frames() -> None:
    """``future=U`` adds the U frames after the target and drops the U last windows of each trajectory."""
    data = load_trajectories(FIXTURE, torch.float64)
    plain, windows = WindowDataset(data, 6), WindowDataset(data, 6, future=3)
    assert len(plain) == sum(p.shape[0] - 6 for p in data.positions)
    assert len(plain) - len(windows) == 3 * len(data)
    k, t = windows.index[-1]
    assert (
        t + 6 + 3 == data.positions[k].shape[0] - 1
    )  # the last window's last future frame is the last frame
    item = windows[-1]
    torch.testing.assert_close(item[K.POS_HISTORY], data.positions[k][t : t + 6].transpose(0, 1))
    torch.testing.assert_close(item[K.NEXT_POS], data.positions[k][t + 6])
    torch.testing.assert_close(item[K.FUTURE_POS], data.positions[k][t + 7 : t + 10].transpose(0, 1))
    batch = collate_windows([windows[0], windows[5]])  # two windows of trajectory 0
    n = windows[0][K.Z].shape[0]
    assert batch[K.FUTURE_POS].shape == (2 * n, 3, 2) and batch[K.BATCH].tolist() == [0] * n + [1] * n
    assert K.FUTURE_POS not in plain[0]
    assert len(WindowDataset(data, 6, stride=10)) == sum(
        len(range(0, p.shape[0] - 6, 10)) for p in data.positions
    )
    with pytest.raises(ValueError, match="future"):
        WindowDataset(data, 6, future=-1)
    rollouts = RolloutDataset(data, 2)
    assert len(rollouts) == 2 and torch.equal(rollouts[1][K.TRAJECTORY], data.positions[1])


def test_bad_trajectory_files_are_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="generate_mpm_water.py"):
        load_trajectories(tmp_path / "missing.npz")
    np.savez(tmp_path / "empty.npz", bounds=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="no positions_<k>"):
        load_trajectories(tmp_path / "empty.npz")
    np.savez(
        tmp_path / "no_types.npz", positions_0=np.zeros((3, 4, 2)), bounds=np.zeros((2, 2)), frame_dt=1.0
    )
    with pytest.raises(ValueError, match=r"lacks \['particle_type_0'\]"):
        load_trajectories(tmp_path / "no_types.npz")
    np.savez(
        tmp_path / "short_types.npz",
        positions_0=np.zeros((3, 4, 2)),
        particle_type_0=np.zeros(3, dtype=np.int64),
        bounds=np.zeros((2, 2)),
        frame_dt=1.0,
    )
    with pytest.raises(ValueError, match=r"trajectory 0 has positions \[3, 4, 2\] and particle_type \[3\]"):
        load_trajectories(tmp_path / "short_types.npz")
