"""scripts/gns_wall_penetration.py: depth behind each wall, and an end-to-end run on the fixture."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

import physnet
from physnet.train.gns import load_trajectories

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
    with pytest.raises(SystemExit, match="--trajectory"):
        _module().main([str(tmp_path / "gns.pt"), str(FIXTURE), "--trajectory", "99"])
