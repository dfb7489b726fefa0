"""scripts/gns_loss_breakdown.py runs end to end on the committed water fixture."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

import physnet
from physnet.train.gns import load_trajectories

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gns_loss_breakdown.py"
FIXTURE = ROOT / "data" / "mpm_water" / "water_fixture.npz"


def test_loss_breakdown_reports_shares(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("gns_loss_breakdown", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = load_trajectories(FIXTURE)
    model = physnet.models.build_simulator(
        "gns", bounds=data.bounds.tolist(), latent_size=8, hidden_size=8, n_message_passing=1
    )
    model.fit_statistics(data.positions)
    model.save(tmp_path / "gns.pt")
    argv = [
        str(tmp_path / "gns.pt"),
        str(FIXTURE),
        "--stride",
        "40",
        "--threads",
        str(torch.get_num_threads()),
    ]
    assert module.main(argv) == 0
    out = capsys.readouterr().out
    shares = [
        float(line.split(": ")[1].split(" %")[0]) for line in out.splitlines() if line.startswith("top ")
    ]
    assert len(shares) == 2 and 0 <= shares[0] <= shares[1] <= 100  # the top 1 % is part of the top 10 %
    assert "free-fall frames:" in out and "mean normalised squared error" in out
