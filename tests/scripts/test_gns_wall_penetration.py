"""scripts/gns_wall_penetration.py: depth behind each wall, and an end-to-end run on the fixture."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import physnet
from physnet.train.gns import Trajectories, load_trajectories

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gns_wall_penetration.py"
FIXTURE = ROOT / "data" / "mpm_water" / "water_fixture.npz"


def _module():
    spec = importlib.util.spec_from_file_location("gns_wall_penetration", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_penetration_depth_per_wall() -> None:
    bounds = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    pos = torch.tensor([[[0.5, 0.5], [-0.02, 0.5], [0.5, -0.01], [1.03, 1.2]]])  # [1, 4, 2]
    depth = _module().penetration(pos, bounds)  # left, floor, right, lid
    expected = torch.tensor([[[0, 0, 0, 0], [0.02, 0, 0, 0], [0, 0.01, 0, 0], [0, 0, 0.03, 0.2]]])
    torch.testing.assert_close(depth, expected, atol=1e-6, rtol=0)


def test_stays_counts_runs_of_frames_outside() -> None:
    # 3 particles, 6 frames: the first is out twice (2 frames, then 1), the second once for 3 frames
    outside = torch.tensor(
        [
            [1, 0, 0],
            [1, 1, 0],
            [0, 1, 0],
            [0, 1, 0],
            [1, 0, 0],
            [0, 0, 0],
        ],
        dtype=torch.bool,
    )
    assert _module().stays(outside) == {"particles": 2, "frames": 6, "stays": 3, "longest": 3}
    assert _module().stays(torch.zeros(4, 2, dtype=torch.bool)) == {
        "particles": 0,
        "frames": 0,
        "stays": 0,
        "longest": 0,
    }


def test_one_step_counts_predictions_that_land_behind_a_wall() -> None:
    """A model that predicts free fall from rest drops a particle lying on the floor through
    it: one particle-frame per predicted frame behind the floor, none at the other walls."""
    bounds = [[0.0, 1.0], [0.0, 1.0]]
    model = physnet.models.build_simulator(
        "gns",
        bounds=bounds,
        latent_size=8,
        hidden_size=8,
        n_message_passing=1,
        pairwise_decoder=True,
        body_acceleration=[0.0, -0.01],
        wall_features=False,
    ).eval()  # pairwise: one particle alone gets exactly the body acceleration
    frames = torch.tensor([[[0.5, 0.0]]]).expand(9, 1, 2)  # [T, n, dim] at rest on the floor
    data = Trajectories(
        positions=[frames],
        particle_type=[torch.zeros(1, dtype=torch.long)],
        bounds=np.array(bounds),
        frame_dt=1e-3,
    )
    counts = _module().one_step(model, data, tolerance=5e-3)  # one frame falls 0.01 behind the floor
    assert counts.tolist() == [[0, 9 - model.window, 0, 0]]


def test_script_runs_on_the_fixture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = load_trajectories(FIXTURE)
    model = physnet.models.build_simulator(
        "gns", bounds=data.bounds.tolist(), latent_size=8, hidden_size=8, n_message_passing=1
    )
    model.fit_statistics(data.positions)
    model.save(tmp_path / "gns.pt")
    argv = [str(tmp_path / "gns.pt"), str(FIXTURE), "--every", "20", "--threads", "0"]
    assert _module().main(argv) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "|" in line and line.split("|")[0].strip().isdigit()]
    n_frames = data.positions[0].shape[0] - model.window
    assert len(rows) == len(range(0, n_frames, 20)) + (1 if (n_frames - 1) % 20 else 0)
    assert all(len(row.split("|")) == 5 for row in rows)  # frame + 4 walls in 2D
    assert "particles ever more than" in out
    assert _module().main([*argv, "--all"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "|" in line and line.split("|")[0].strip().isdigit()]
    assert len(rows) == len(data.positions)
    assert all(len(row.split("|")) == 5 and len(row.split("|")[1].split(",")) == 5 for row in rows)
    assert out.splitlines()[-1].split("|")[0].strip() == "all"
    assert _module().main([*argv, "--one-step"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "|" in line and line.split("|")[0].strip().isdigit()]
    assert len(rows) == len(data.positions)
    assert all(len(row.split("|")) == 6 and row.split("|")[-1].strip() == "0" for row in rows)  # truth: 0
    assert out.splitlines()[-1].startswith("       all |")
    with pytest.raises(SystemExit, match="--trajectory"):
        _module().main([str(tmp_path / "gns.pt"), str(FIXTURE), "--trajectory", "99"])
