"""Training end to end on tiny EMT data: run directory, checkpoints, resume, errors, DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import physnet
from physnet.data.datasets import GraphDataset, read_frames
from physnet.train.config import load_config
from physnet.train.fit import fit_reference_energies, train

SMALL_MODEL = [
    "model.n_features=16",
    "model.n_filters=16",
    "model.n_interactions=1",
    "model.n_rbf=8",
    "model.cutoff=4.0",
]


def _overrides(path: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        f"run_dir={run_dir}",
        f"data.path={path}",
        "data.energy_unit=eV",
        "data.length_unit=Å",
        "data.train=40",
        "data.val=10",
        "data.batch_size=4",
        "trainer.progress_bar=false",
        "trainer.threads=1",
        "task.warmup_steps=5",
        "task.ema_decay=0.9",
        *SMALL_MODEL,
        *extra,
    ]


def test_train_writes_a_complete_run(emt_molecule_file: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cfg = load_config(None, _overrides(emt_molecule_file, run_dir, "trainer.max_epochs=3"))
    train(cfg)
    for name in (
        "config.yaml",
        "split.json",
        "logs/metrics.csv",
        "potential.pt",
        "test_metrics.json",
        "learning_curves.png",
        "parity_test.png",
        "checkpoints/last.ckpt",
        "checkpoints/best.ckpt",
    ):
        assert (run_dir / name).is_file(), name
    report = json.loads((run_dir / "test_metrics.json").read_text())
    assert report["optimizer_steps"] == 30 and np.isfinite(report["test"]["forces_mae"])
    split = json.loads((run_dir / "split.json").read_text())
    assert len(split["train"]) == 40 and len(split["val"]) == 10 and len(split["test"]) == 10
    # The checkpoint and the exported potential are self-contained and agree (EMA weights).
    atoms = read_frames(emt_molecule_file, index=0)[0]
    energies = []
    for path in (run_dir / "potential.pt", run_dir / "checkpoints" / "last.ckpt"):
        a = atoms.copy()
        a.calc = physnet.Calculator(str(path))
        energies.append(a.get_potential_energy())
    assert energies[0] == pytest.approx(energies[1], rel=1e-6)
    # Training learnt something: the test force error is below the force scale.
    pot = physnet.Potential.load(run_dir / "potential.pt")
    assert report["test"]["forces_mae"] < float(pot.energy_scale)


def test_stress_training_on_periodic_data(emt_metal_file: Path, tmp_path: Path) -> None:
    cfg = load_config(
        None,
        _overrides(
            emt_metal_file,
            tmp_path / "run",
            "trainer.max_epochs=1",
            "data.train=30",
            "data.val=5",
            "data.stress=true",
            "task.stress_weight=1.0",
        ),
    )
    run_dir = train(cfg)
    assert "train/stress_mae" in (run_dir / "logs" / "metrics.csv").read_text()
    report = json.loads((run_dir / "test_metrics.json").read_text())
    assert np.isfinite(report["test"]["stress_mae"]) and report["test"]["stress_mae"] > 0


def test_reference_energies_by_least_squares() -> None:
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    refs = {1: -0.5, 8: -75.0}
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(12):
        n_h, n_o = rng.integers(1, 5), rng.integers(1, 3)
        atoms = Atoms("H" * n_h + "O" * n_o, positions=rng.uniform(0, 6, size=(n_h + n_o, 3)))
        atoms.calc = SinglePointCalculator(
            atoms, energy=n_h * refs[1] + n_o * refs[8], forces=np.zeros((n_h + n_o, 3))
        )
        frames.append(atoms)
    data = GraphDataset(frames, 3.0, dtype=torch.float64, progress=False)
    fitted = fit_reference_energies(data, np.arange(12), [1, 8])
    assert fitted[1] == pytest.approx(-0.5) and fitted[8] == pytest.approx(-75.0)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["data.path=/no/such/file.xyz"], "does not exist"),
        (["data.energy_unit="], "energy_unit and data.length_unit are required"),
        (["data.energy_unit=kcal"], "unknown energy unit"),
        (["data.train=60", "data.val=10"], "exceed|exceeds|larger|more than"),
        (["model.species=[H, C]"], r"element\(s\) \['O'\] outside model.species"),
        (["task.stress_weight=1.0"], "stress"),
        (["trainer.dtype=float16"], "float32 or float64"),
    ],
)
def test_bad_input_stops_before_training(emt_molecule_file: Path, tmp_path: Path, extra, message) -> None:
    cfg = load_config(None, _overrides(emt_molecule_file, tmp_path / "run", *extra))
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_missing_forces_is_named(tmp_path: Path) -> None:
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    frames = physnet.data.from_smiles("CCO", n_conformers=20)
    for a in frames:
        a.calc = SinglePointCalculator(a, energy=1.0)
    write(tmp_path / "energies_only.xyz", frames)
    cfg = load_config(
        None, _overrides(tmp_path / "energies_only.xyz", tmp_path / "run", "data.train=10", "data.val=5")
    )
    with pytest.raises(ValueError, match="forces"):
        train(cfg)


def test_existing_run_is_not_overwritten(emt_molecule_file: Path, tmp_path: Path) -> None:
    cfg = load_config(None, _overrides(emt_molecule_file, tmp_path / "run", "trainer.max_steps=2"))
    train(cfg)
    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg)


def test_finished_run_without_checkpoints_is_kept_unless_overwrite(
    emt_molecule_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run directory with results but no checkpoints/ (a finished run copied, or a foreign
    one) is left byte for byte; --overwrite replaces it."""
    import shutil

    from physnet.cli import main

    run_dir = tmp_path / "run"
    args = _overrides(emt_molecule_file, run_dir, "trainer.max_steps=2")
    train(load_config(None, args))
    shutil.rmtree(run_dir / "checkpoints")
    names = ("potential.pt", "config.yaml", "test_metrics.json")
    before = {name: (run_dir / name).read_bytes() for name in names}
    config = tmp_path / "c.yaml"
    config.write_text("{}\n")
    capsys.readouterr()
    assert main(["train", str(config), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"physnet train: error: {run_dir} already holds a finished or foreign run "
        "(potential.pt, config.yaml, test_metrics.json); choose another run_dir or pass --overwrite"
    ]
    assert {name: (run_dir / name).read_bytes() for name in names} == before
    assert not (run_dir / "checkpoints").exists()

    assert main(["train", str(config), *args, "--overwrite"]) == 0
    assert (run_dir / "test_metrics.json").read_bytes() != before["test_metrics.json"]  # wall time differs
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_a_config_written_into_the_run_dir_is_no_earlier_run(emt_molecule_file: Path, tmp_path: Path) -> None:
    """`physnet train RUN/config.yaml` with run_dir RUN: the config itself does not block the run,
    but a copy of it elsewhere would find RUN/config.yaml foreign."""
    from physnet.cli import main

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = run_dir / "config.yaml"
    config.write_text(yaml.safe_dump({}))
    args = _overrides(emt_molecule_file, run_dir, "trainer.max_steps=2")
    copy = tmp_path / "copy.yaml"
    copy.write_text(yaml.safe_dump({}))
    assert main(["train", str(copy), *args]) == 2
    assert main(["train", str(config), *args]) == 0
    assert (run_dir / "potential.pt").is_file()


def test_overwrite_replaces_a_run_with_checkpoints(emt_molecule_file: Path, tmp_path: Path) -> None:
    cfg = load_config(None, _overrides(emt_molecule_file, tmp_path / "run", "trainer.max_steps=2"))
    train(cfg)
    (tmp_path / "run" / "checkpoints" / "stale.ckpt").write_bytes(b"old")
    train(cfg, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["last.ckpt"]


def test_resume_applies_overrides_given_after_the_run_dir(
    emt_molecule_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`physnet train --resume RUN trainer.max_steps=N`: the override is applied (argparse
    used to take it for the CONFIG positional and drop it); keys the checkpoint fixes are refused."""
    from physnet.cli import main

    run_dir = tmp_path / "run"
    train(load_config(None, _overrides(emt_molecule_file, run_dir, "trainer.max_steps=3")))
    assert json.loads((run_dir / "test_metrics.json").read_text())["optimizer_steps"] == 3

    assert (
        main(["train", "--resume", str(run_dir), "trainer.max_steps=7", "trainer.log_every_n_steps=2"]) == 0
    )
    assert json.loads((run_dir / "test_metrics.json").read_text())["optimizer_steps"] == 7
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["trainer"]["max_steps"] == 7 and saved["trainer"]["log_every_n_steps"] == 2
    assert "resuming" in capsys.readouterr().out

    last = (run_dir / "checkpoints" / "last.ckpt").read_bytes()
    assert main(["train", "--resume", str(run_dir), "trainer.max_steps=9", "model.n_features=32"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "physnet train: error: cannot change model.n_features=16 (asked 32) when resuming"
    ), err
    assert (run_dir / "checkpoints" / "last.ckpt").read_bytes() == last

    assert main(["train", "--resume", str(run_dir), str(tmp_path / "other.yaml")]) == 2
    assert "give only section.key=value overrides after --resume" in capsys.readouterr().err


def _physnet(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from physnet.cli import main; sys.exit(main())", *args]


def test_sigkill_and_resume_reaches_the_same_step_count(emt_molecule_file: Path, tmp_path: Path) -> None:
    """Kill `physnet train` mid-epoch with SIGKILL, resume, and end with the uninterrupted step count."""
    run_dir = tmp_path / "run"
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({}))
    args = _overrides(
        emt_molecule_file, run_dir, "trainer.max_epochs=12", "trainer.checkpoint_every_n_steps=3"
    )
    proc = subprocess.Popen(
        _physnet("train", str(config), *args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    step = 0
    while time.time() < deadline and proc.poll() is None:
        if last.is_file():
            try:
                step = torch.load(last, weights_only=False)["global_step"]
            except Exception:  # being written
                step = 0
            if step >= 14 and step % 10 != 0:  # mid-epoch: 10 steps per epoch
                break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed; make the run longer"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(last, weights_only=False)["global_step"]
    assert killed_at < 120
    resumed = subprocess.run(
        _physnet("train", "--resume", str(run_dir), "trainer.progress_bar=false"),
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    report = json.loads((run_dir / "test_metrics.json").read_text())
    assert report["optimizer_steps"] == 120, (killed_at, report)
    # The killed part's log is kept next to the resumed part's.
    assert (run_dir / "logs" / "metrics_part000.csv").is_file() and (
        run_dir / "logs" / "metrics.csv"
    ).is_file()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_ddp_two_cpu_processes_keep_identical_weights(emt_molecule_file: Path, tmp_path: Path) -> None:
    script = Path(__file__).with_name("ddp_worker.py")
    run_dir = tmp_path / "ddp"
    args = _overrides(
        emt_molecule_file,
        run_dir,
        "trainer.max_steps=4",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "task.ema_decay=0",
    )
    result = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    weights = [torch.load(run_dir / f"weights_rank{r}.pt") for r in (0, 1)]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
    initial = torch.load(run_dir / "weights_initial_rank0.pt")
    assert any(not torch.equal(initial[k], weights[0][k]) for k in initial), "no optimizer step happened"


def test_force_matching_with_fitted_cg_priors(tmp_path: Path) -> None:
    """Force-only CG training (no energies in the data): .npy positions + forces, time-block split,
    priors from the config fitted on the training blocks and saved with the potential."""
    frames = physnet.data.load("ala2_cg_amber")[:200]
    pos = np.stack([a.positions for a in frames])  # [200, 5, 3] Å
    np.save(tmp_path / "pos.npy", pos)
    np.save(tmp_path / "forces.npy", np.stack([a.get_forces() for a in frames]))  # eV/Å
    overrides = [
        f"run_dir={tmp_path / 'run'}",
        f"data.path={tmp_path / 'pos.npy'}",
        f"data.forces_path={tmp_path / 'forces.npy'}",
        "data.numbers=[C, N, C, C, N]",
        "data.energy_unit=eV",
        "data.length_unit=Å",
        "data.train=0.6",
        "data.val=0.2",
        "data.test=0.2",
        "data.blocks=5",
        "data.batch_size=20",
        "model.name=cgnet",
        "model.species=[C, N]",
        "model.n_beads=5",
        "model.n_layers=2",
        "model.width=16",
        "priors={bonds: {name: harmonic_bonds}, angles: {name: harmonic_angles}, "
        "rep: {name: bead_repulsion}}",
        "task.energy_weight=0",
        "task.forces_weight=1",
        "task.fit_references=false",
        "task.lipschitz=5.0",
        "task.warmup_steps=0",
        "trainer.max_epochs=2",
        "trainer.progress_bar=false",
        "trainer.threads=1",
    ]
    run_dir = train(load_config(None, overrides))
    split = json.loads((run_dir / "split.json").read_text())
    for name, size in (("train", 120), ("val", 40), ("test", 40)):  # whole blocks of 40 frames
        idx = np.asarray(split[name])
        assert len(idx) == size and (np.diff(idx) > 0).all()  # time order
        assert all((idx[k * 40 : (k + 1) * 40] % 40 == np.arange(40)).all() for k in range(size // 40))
    report = json.loads((run_dir / "test_metrics.json").read_text())
    assert "energy_mae" not in report["test"] and np.isfinite(report["test"]["force_matching_loss"])
    pot = physnet.Potential.load(run_dir / "potential.pt")
    assert set(pot.priors) == {"bonds", "angles", "rep"}
    train_pos = torch.tensor(pos[split["train"]], dtype=torch.float64)
    bonds = torch.linalg.vector_norm(train_pos[:, 1:] - train_pos[:, :-1], dim=-1)  # [n, 4]
    torch.testing.assert_close(pot.priors["bonds"].x0.double(), bonds.mean(0), rtol=1e-5, atol=1e-6)
    for layer in pot.model.net.modules():
        if isinstance(layer, torch.nn.Linear):  # the Lipschitz projection bounded every layer
            assert float(torch.linalg.matrix_norm(layer.weight.detach(), ord=2)) <= 5.0 + 1e-4


def test_all_zero_loss_weights_are_rejected(emt_molecule_file: Path, tmp_path: Path) -> None:
    extra = ("task.energy_weight=0", "task.forces_weight=0")
    with pytest.raises(ValueError, match="nothing to fit"):
        train(load_config(None, _overrides(emt_molecule_file, tmp_path / "run", *extra)))
