"""scripts/nbody_benchmark.py is a thin command line around physnet.train.dynamics.train_dynamics
(tested in tests/train/test_dynamics.py): one smoke run, in a subprocess, on a tiny file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # a fresh interpreter importing torch and Lightning: about 12 s
def test_benchmark_runs_and_prints_paper_figures(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for split in ("train", "valid", "test"):
        arrays[f"loc_{split}"] = rng.normal(size=(8, 49, 3, 5)).astype(np.float32)
        arrays[f"vel_{split}"] = rng.normal(size=(8, 49, 3, 5)).astype(np.float32)
        arrays[f"charges_{split}"] = rng.choice([-1, 1], size=(8, 5, 1)).astype(np.int8)
    np.savez(tmp_path / "nbody.npz", **arrays)
    argv = ["--data", str(tmp_path / "nbody.npz"), "--epochs", "2", "--batch-size", "4", "--n-features", "8"]
    argv += ["--n-layers", "1", "--eval-every", "1", "--ema", "0.9", "--run-dir", str(tmp_path / "run")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "nbody_benchmark.py"), *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "egnn (this run" in out.stdout and "0.0071" in out.stdout and "(EMA 0.9)" in out.stdout


def test_missing_data_is_refused_with_the_command_that_makes_it(tmp_path: Path) -> None:
    """The default --data is what `physnet data nbody_charged5` writes (downloads/nbody_charged5.npz);
    without it the script stops with one line naming that command, before anything is trained."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "nbody_benchmark.py"), "--run-dir", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip() == (
        "nbody_benchmark.py: error: no N-body data at downloads/nbody_charged5.npz; make it with "
        "`physnet data nbody_charged5` (writes downloads/nbody_charged5.npz) or name a file with --data"
    )
    assert not (tmp_path / "run").exists()
