"""Smoke tests of the thin GNS scripts: each runs end to end on the committed water fixture
in a subprocess (their metrics are tested in tests/train/test_gns_eval.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import physnet
from physnet.data.trajectories import load_trajectories

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "data" / "mpm_water" / "water_fixture.npz"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = load_trajectories(FIXTURE)
    model = physnet.models.build_simulator(
        "gns",
        bounds=data.bounds.tolist(),
        latent_size=8,
        hidden_size=8,
        n_message_passing=1,
        frame_dt=data.frame_dt,
    )
    model.fit_statistics(data.positions)
    path = tmp_path_factory.mktemp("gns") / "gns.pt"
    model.save(path)
    return path


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "scripts" / script), *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_wall_penetration_script(model_file: Path) -> None:
    """Default, ``--all`` and ``--one-step`` print their tables (~15 s: three interpreters)."""
    out = _run("gns_wall_penetration.py", str(model_file), str(FIXTURE), "--every", "40")
    assert out.returncode == 0, out.stderr
    assert "particles ever more than" in out.stdout
    for flag, last in (("--all", "       all |"), ("--one-step", "       all | total")):
        out = _run("gns_wall_penetration.py", str(model_file), str(FIXTURE), flag)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[-1].startswith(last)


def test_loss_breakdown_script(model_file: Path) -> None:
    out = _run("gns_loss_breakdown.py", str(model_file), str(FIXTURE), "--stride", "40")
    assert out.returncode == 0, out.stderr
    assert "free-fall frames:" in out.stdout and out.stdout.count("top ") == 2
