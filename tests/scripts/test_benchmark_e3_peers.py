"""scripts/benchmark.py's MACE / NequIP peers: split files, training-run bookkeeping, the
learning-curve plot, and (slow, where the peers' venvs exist) one worker round trip each."""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.conftest import SHARED_DATA

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "benchmark.py"
MD17 = SHARED_DATA / "md17_ethanol_2000.xyz"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("physnet_benchmark_e3", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["physnet_benchmark_e3"] = module
    spec.loader.exec_module(module)
    return module


def test_training_run_snapshots_and_stops_at_the_budget(bench: ModuleType, tmp_path: Path) -> None:
    # a stand-in trainer: prints the marker, then rewrites its "model" every 0.05 s for 60 s
    model = tmp_path / "model.pt"
    code = (
        "import os, time, pathlib\n"
        "print('Started training', flush=True)\n"
        f"p = pathlib.Path({str(model)!r})\n"
        "for i in range(1200):\n"  # written whole, then renamed, like a trainer's checkpoint
        "    p.with_suffix('.tmp').write_text(str(i)); os.replace(p.with_suffix('.tmp'), p)\n"
        "    time.sleep(0.05)\n"
    )
    run = bench.TrainingRun(
        "fake",
        [sys.executable, "-c", code],
        dict(os.environ),
        tmp_path / "work",
        lambda: model,
        "Started training",
        budget_s=3.0,
        kill_at_budget=True,
    )
    bench.run_trainings([run], parallel=1, snapshot_minutes=1.0 / 60, poll_s=0.1)
    assert run.killed and run.proc.returncode != 0
    assert run.train_start is not None and run.ended - run.train_start < 20
    minutes = [s["minutes"] for s in run.snapshots]
    assert minutes == sorted(minutes) and len(minutes) >= 2
    assert run.snapshots[-1]["final"] and minutes[-1] == pytest.approx(3.0 / 60)
    values = [int(Path(s["file"]).read_text()) for s in run.snapshots]
    assert values == sorted(values) and values[-1] > values[0]  # copies taken as the model changed


def test_plot_test_curves(tmp_path: Path) -> None:
    from physnet.train.plots import plot_test_curves

    curves = {
        "a": [
            {"minutes": 1.0, "epoch": 2, "forces_mae": 3.0},
            {"minutes": 2.0, "epoch": 5, "forces_mae": 1.5},
        ],
        "b": [{"minutes": 1.0, "epoch": None, "forces_mae": 2.0}, {"minutes": 2.0}],
    }
    out = plot_test_curves(curves, tmp_path / "lc.png", "title")
    assert out.stat().st_size > 1000


def _mace_train_file(path: Path) -> Path:
    """Two compositions, H2O (E = -10) and H2 (E = -2): E0(H) = -1, E0(O) = -8 exactly."""
    import ase.io
    from ase import Atoms

    frames = [
        Atoms("H2O", positions=[[0, 0, 0], [1, 0, 0], [0, 1, 0]]),
        Atoms("H2", positions=[[0, 0, 0], [1, 0, 0]]),
    ]
    for atoms, e in zip(frames, (-10.0, -2.0), strict=True):
        atoms.info["REF_energy"] = e
    ase.io.write(path, frames, format="extxyz")
    return path


def test_training_e0s_fit_compositions(bench: ModuleType, tmp_path: Path) -> None:
    e0 = bench.training_e0s(_mace_train_file(tmp_path / "mace_train.xyz"))
    assert e0.keys() == {1, 8}
    assert e0[1] == pytest.approx(-1.0) and e0[8] == pytest.approx(-8.0)


def test_nequip_config_and_mace_command(bench: ModuleType, tmp_path: Path) -> None:
    files = {k: tmp_path / f"{k}.xyz" for k in ("train", "val", "test", "mace_train", "mace_val")}
    _mace_train_file(files["mace_train"])
    cfg = bench.nequip_config(files, 20)
    assert cfg["trainer"]["max_time"] == "00:00:20:00"
    assert cfg["training_module"]["model"]["num_features"] == 32
    assert cfg["data"]["train_dataloader"]["batch_size"] == 5
    assert bench.nequip_config(files, 1.5)["trainer"]["max_time"] == "00:00:01:30"
    cmd = bench.mace_command(Path("/venv/bin/python"), tmp_path, files)
    assert cmd[0] == "/venv/bin/mace_run_train"
    for opt in ("--num_channels=32", "--max_L=1", "--correlation=3", "--r_max=5.0", "--batch_size=5"):
        assert opt in cmd
    assert "--forces_weight=1000.0" in cmd and "--ema" in cmd
    (e0s,) = [ast.literal_eval(c.split("=", 1)[1]) for c in cmd if c.startswith("--E0s=")]
    assert e0s == pytest.approx({1: -1.0, 8: -8.0})
    assert "--max_num_epochs=0" in bench.mace_command(Path("/v/bin/python"), tmp_path, files, epochs=0)


@pytest.mark.slow
@pytest.mark.skipif(not MD17.is_file(), reason=f"shared MD17 ethanol data absent ({MD17})")
def test_split_files_hold_physnet_split_frames(bench: ModuleType, tmp_path: Path) -> None:
    import ase.io

    from physnet.data.datasets import make_split, read_frames

    files = bench.write_split_files(MD17, tmp_path)
    frames = read_frames(MD17)
    split = make_split(len(frames), 1000, 100, 900, seed=0)
    test = ase.io.read(files["test"], index=":")
    mace_val = ase.io.read(files["mace_val"], index=":")
    assert len(test) == 900 and len(mace_val) == 100
    ref = frames[int(split["test"][7])]
    np.testing.assert_allclose(test[7].positions, ref.positions)
    np.testing.assert_allclose(test[7].get_forces(), ref.get_forces())
    ref_val = frames[int(split["val"][3])]
    assert mace_val[3].info["REF_energy"] == pytest.approx(ref_val.get_potential_energy())
    np.testing.assert_allclose(mace_val[3].arrays["REF_forces"], ref_val.get_forces())


@pytest.mark.slow
@pytest.mark.parametrize("peer", ["mace", "nequip"])
def test_e3_worker_round_trip(bench: ModuleType, peer: str) -> None:
    venv = bench.e3_venv(peer, bench.DEFAULT_VENV)
    python = bench.ensure_e3_peer(peer, venv, allow_create=False)
    if python is None:
        pytest.skip(f"{peer} venv {venv} absent (scripts/benchmark.py --setup-peers makes it)")
    atoms = bench.structures(quick=True)["ethanol (9)"]
    worker = bench.E3Worker(python, peer, 1)
    try:
        assert worker.request("info")["peer"] == peer
        params = {"mace": bench.MACE_CONFIG, "nequip": bench.NEQUIP_CONFIG}[peer]
        info = worker.request("setup", key="k", structure=bench.as_json(atoms), params=params)
        assert info["n_params"] > 10_000 and np.isfinite(info["energy"])
        call = worker.request("call", key="k", n=2)
        assert call["seconds"] > 0
        assert worker.request("md", key="k", steps=3)["seconds"] > 0
    finally:
        worker.close()


def test_alternate_sides_pairs_each_physnet_model_with_a_peer(bench: ModuleType, tmp_path: Path) -> None:
    def run(name: str):
        return bench.TrainingRun(name, ["true"], {}, tmp_path / name, lambda: None, "x", 1.0, False)

    runs = [run(n) for n in ("physnet painn", "physnet schnet", "physnet egnn", "mace", "nequip")]
    order = [r.name for r in bench.alternate_sides(runs)]
    assert order == ["physnet painn", "mace", "physnet schnet", "nequip", "physnet egnn"]
