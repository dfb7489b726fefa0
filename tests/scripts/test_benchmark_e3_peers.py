"""scripts/benchmark.py's MACE / NequIP / TensorNet peers: split files, training-run bookkeeping,
the learning-curve plot, and (slow, where the peers' venvs exist) one worker round trip each."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
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


def _frames(n: int, numbers: list[int] | None = None) -> list:
    """``n`` water-like frames with energies (kcal/mol) and forces that differ frame by frame."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        atoms = Atoms(numbers or [8, 1, 1], positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
        atoms.positions += 0.05 * rng.standard_normal((3, 3))
        forces = rng.standard_normal((3, 3))
        atoms.calc = SinglePointCalculator(atoms, energy=-100.0 - i, forces=forces)
        out.append(atoms)
    return out


def test_torchmdnet_files_and_config(bench: ModuleType, tmp_path: Path) -> None:
    train, val = _frames(12), _frames(4)
    files = bench.write_torchmdnet_files(train, val, tmp_path)
    pos, z = np.load(files["tmdnet_pos"]), np.load(files["tmdnet_z"])
    energy, forces = np.load(files["tmdnet_energy"]), np.load(files["tmdnet_forces"])
    assert pos.shape == (16, 3, 3) and forces.shape == (16, 3, 3) and energy.shape == (16, 1)
    assert pos.dtype == np.float32 and z.tolist() == [8, 1, 1]
    np.testing.assert_allclose(pos[12 + 2], val[2].positions, rtol=1e-6)
    np.testing.assert_allclose(forces[5], train[5].get_forces(), rtol=1e-6)
    assert energy[12 + 1, 0] == pytest.approx(val[1].get_potential_energy())
    idx = np.load(files["tmdnet_splits"])
    assert idx["idx_train"].tolist() == list(range(12)) and idx["idx_val"].tolist() == list(range(12, 16))
    assert len(idx["idx_test"]) == 0
    with pytest.raises(ValueError, match="one molecule"):
        bench.write_torchmdnet_files(train, _frames(2, [1, 8, 1]), tmp_path)

    cfg = bench.tensornet_config(files, tmp_path / "run")
    # torchmd-net's examples/TensorNet-rMD17.yaml hyper-parameters
    assert cfg["model"] == "tensornet" and cfg["num_layers"] == 2 and cfg["embedding_dimension"] == 128
    assert cfg["cutoff_upper"] == 4.5 and cfg["num_rbf"] == 32 and cfg["batch_size"] == 8
    assert cfg["lr"] == 1e-3 and cfg["y_weight"] == 0.5 and cfg["neg_dy_weight"] == 0.5
    assert cfg["dataset"] == "Custom" and cfg["splits"] == str(files["tmdnet_splits"])
    assert cfg["coord_files"] == str(files["tmdnet_pos"]) and cfg["log_dir"] == str(tmp_path / "run")
    assert cfg["save_interval"] == 1 and cfg["test_interval"] == -1 and cfg["num_workers"] == 0
    assert bench.e3_venv("tensornet", Path("/x/peers")) == Path("/x/peers-torchmdnet")


def test_tensornet_best_is_the_lowest_validation_loss(bench: ModuleType, tmp_path: Path) -> None:
    assert bench.tensornet_best(tmp_path) is None
    for name in ("epoch=0-val_loss=33.4799", "epoch=3-val_loss=18.7055", "epoch=5-val_loss=20.1000"):
        (tmp_path / f"{name}.ckpt").write_text("x")
    (tmp_path / "epoch=6-val_loss=9.0-v1.ckpt").write_text("x")  # Lightning's suffix for a repeated name
    (tmp_path / "last.ckpt").write_text("x")
    assert bench.tensornet_best(tmp_path).name == "epoch=6-val_loss=9.0-v1.ckpt"
    (tmp_path / "epoch=6-val_loss=9.0-v1.ckpt").unlink()
    assert bench.tensornet_best(tmp_path).name == "epoch=3-val_loss=18.7055.ckpt"


def _tensornet_python(bench: ModuleType) -> Path:
    venv = bench.e3_venv("tensornet", bench.DEFAULT_VENV)
    python = bench.ensure_e3_peer("tensornet", venv, allow_create=False)
    if python is None:
        pytest.skip(f"torchmd-net venv {venv} absent (scripts/benchmark.py --setup-peers makes it)")
    return python


@pytest.mark.slow
def test_tensornet_config_is_accepted_by_torchmd_train(bench: ModuleType, tmp_path: Path) -> None:
    import yaml

    python = _tensornet_python(bench)
    files = bench.write_torchmdnet_files(_frames(4), _frames(2), tmp_path)
    conf = tmp_path / "tensornet.yaml"
    conf.write_text(yaml.safe_dump(bench.tensornet_config(files, tmp_path / "run")))
    code = (
        "import sys; from torchmdnet.scripts.train import get_argparse\n"
        "a = get_argparse().parse_args(['--conf', sys.argv[1]])\n"
        "print(a.model, a.num_layers, a.batch_size, a.dataset, a.save_interval)\n"
    )
    out = subprocess.run([str(python), "-c", code, str(conf)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]  # an unknown key makes torchmd-train raise
    assert out.stdout.splitlines()[-1].split() == ["tensornet", "2", "8", "Custom", "1"]  # Warp prints first


@pytest.mark.slow
def test_tensornet_trains_and_its_checkpoint_evaluates(bench: ModuleType, tmp_path: Path) -> None:
    import ase.io
    import yaml

    python = _tensornet_python(bench)
    train, val = _frames(16), _frames(4)
    files = bench.write_torchmdnet_files(train, val, tmp_path)
    cfg = {**bench.tensornet_config(files, tmp_path / "run"), "num_epochs": 2, "embedding_dimension": 16}
    (tmp_path / "tensornet.yaml").write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)
    cmd = [str(python.parent / "torchmd-train"), "--conf", str(tmp_path / "tensornet.yaml")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    best = bench.tensornet_best(tmp_path / "run")
    assert best is not None, proc.stdout[-2000:] + proc.stderr[-2000:]
    test_file = tmp_path / "test.xyz"
    ase.io.write(test_file, val, format="extxyz")
    worker = bench.E3Worker(python, "tensornet", 1)
    try:
        (res,) = worker.request("evaluate", snapshots=[str(best)], test=str(test_file), template=None)[
            "results"
        ]
    finally:
        worker.close()
    assert res["global_step"] in (2, 4)  # 16 frames / batch 8, after epoch 1 or 2
    assert all(np.isfinite(res[k]) and res[k] > 0 for k in ("energy_mae", "forces_mae", "forces_rmse"))
    assert res["forces_rmse"] >= res["forces_mae"]


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
    # torchmd-net's Custom dataset: the 1000 train frames, then the 100 val frames; no test frames
    idx = np.load(files["tmdnet_splits"])
    assert len(idx["idx_train"]) == 1000 and len(idx["idx_val"]) == 100 and len(idx["idx_test"]) == 0
    row = int(idx["idx_val"][3])
    np.testing.assert_allclose(np.load(files["tmdnet_pos"])[row], ref_val.positions, rtol=1e-6)
    np.testing.assert_allclose(np.load(files["tmdnet_forces"])[row], ref_val.get_forces(), rtol=1e-5)
    assert np.load(files["tmdnet_energy"])[row, 0] == pytest.approx(ref_val.get_potential_energy())
    np.testing.assert_array_equal(np.load(files["tmdnet_z"]), ref_val.numbers)
    ref_train = frames[int(split["train"][0])]
    np.testing.assert_allclose(
        np.load(files["tmdnet_pos"])[int(idx["idx_train"][0])], ref_train.positions, rtol=1e-6
    )


@pytest.mark.slow
@pytest.mark.parametrize("peer", ["mace", "nequip", "tensornet"])
def test_e3_worker_round_trip(bench: ModuleType, peer: str) -> None:
    venv = bench.e3_venv(peer, bench.DEFAULT_VENV)
    python = bench.ensure_e3_peer(peer, venv, allow_create=False)
    if python is None:
        pytest.skip(f"{peer} venv {venv} absent (scripts/benchmark.py --setup-peers makes it)")
    atoms = bench.structures(quick=True)["ethanol (9)"]
    worker = bench.E3Worker(python, peer, 1)
    try:
        assert worker.request("info")["peer"] == peer
        info = worker.request("setup", key="k", structure=bench.as_json(atoms), params=bench.E3_PARAMS[peer])
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


def test_plot_from_merges_json_files(bench: ModuleType, tmp_path: Path) -> None:
    import json

    def report(name: str, mae: float) -> dict:
        snaps = [{"minutes": m, "epoch": 2 * m, "forces_mae": mae / m} for m in (1.0, 2.0)]
        row = [name, 0.1, 0.2, mae / 2, 0.5, 4, 2.0]
        return {
            "args": {"budget_minutes": 2.0},
            "accuracy": {"rows": [row], "raw": {"runs": {name: {"snapshots": snaps}}}},
        }

    files = []
    for name, mae in (("physnet painn", 1.0), ("mace", 1.2)):
        files.append(tmp_path / f"{name.split()[-1]}.json")
        files[-1].write_text(json.dumps(report(name, mae)))
    assert bench.main(["--plot-from", *map(str, files), "--out-dir", str(tmp_path)]) == 0
    assert (tmp_path / "learning_curve_md17.png").stat().st_size > 1000
    rows = bench.replot_accuracy(files, tmp_path)
    assert [r[0] for r in rows] == ["physnet painn", "mace"] and rows[1][3] == pytest.approx(0.6)
    with pytest.raises(SystemExit):
        bench.main(["--plot-from", str(tmp_path / "missing.json")])
