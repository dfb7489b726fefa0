"""The N-body generator: the published files' layout, the simulator's physics, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from physnet.cli import main
from physnet.data.nbody import DT, simulate_charged, write_charged


def test_layout_and_initial_state() -> None:
    d = simulate_charged(6, steps=400, sample_every=100, rng=np.random.default_rng(0))
    assert d["loc"].shape == d["vel"].shape == (6, 3, 3, 5) and d["loc"].dtype == np.float32
    assert d["charges"].shape == (6, 5, 1) and set(np.unique(d["charges"])) <= {-1, 1}
    np.testing.assert_array_equal(d["edges"], d["charges"] * d["charges"].transpose(0, 2, 1))
    # positions advance by the velocities (leapfrog): frame 1 - frame 0 ~ 100 steps of dt
    step = d["loc"][:, 1] - d["loc"][:, 0]
    mean_vel = 0.5 * (d["vel"][:, 1] + d["vel"][:, 0])
    assert np.abs(step - 100 * DT * mean_vel).max() < 0.05


def test_two_opposite_charges_attract_and_like_charges_repel() -> None:
    rng = np.random.default_rng(1)
    d = simulate_charged(400, n_particles=2, steps=1000, sample_every=100, rng=rng)
    dist = np.linalg.norm(d["loc"][:, :, :, 0] - d["loc"][:, :, :, 1], axis=-1)  # [n, frames]
    like = d["edges"][:, 0, 1] > 0
    growth = dist[:, -1] - dist[:, 0]
    assert growth[like].mean() > growth[~like].mean()


def test_write_keeps_an_existing_file(tmp_path: Path) -> None:
    path = write_charged(tmp_path / "n.npz", n_train=2, n_valid=1, n_test=1, verbose=False)
    with np.load(path) as data:
        assert data["loc_train"].shape == (2, 49, 3, 5) and data["charges_test"].shape == (1, 5, 1)
    with pytest.raises(FileExistsError, match="already exists"):
        write_charged(path, n_train=1, n_valid=1, n_test=1)


@pytest.mark.slow
def test_cli_generates_the_full_set_and_keeps_it(tmp_path: Path, capsys) -> None:
    assert main(["data", "nbody_charged5", "--output", str(tmp_path)]) == 0  # 3000/2000/2000, ~30 s
    assert "nbody_egnn.yaml" in capsys.readouterr().out
    assert main(["data", "nbody_charged5", "--output", str(tmp_path)]) == 2  # kept, one-line error
