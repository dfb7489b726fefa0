"""`physnet train / eval / md` from the command line."""

import subprocess
import sys
from pathlib import Path

import pytest

from physnet.cli import main


@pytest.fixture(scope="module")
def trained(emt_molecule_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    config = run_dir.parent / "c.yaml"
    config.write_text(
        f"run_dir: {run_dir}\n"
        "model: {name: schnet, n_features: 16, n_filters: 16, n_interactions: 1, n_rbf: 8}\n"
        f"data: {{path: {emt_molecule_file}, energy_unit: eV, length_unit: Å, train: 40, val: 10}}\n"
        "trainer: {max_epochs: 2, progress_bar: false, threads: 1}\n"
    )
    assert main(["train", str(config)]) == 0
    return run_dir


def test_eval_prints_errors_and_draws_parity(
    trained: Path, emt_molecule_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["eval", str(trained / "potential.pt"), str(emt_molecule_file), "--output", str(tmp_path)]) == 0
    )
    out = capsys.readouterr().out
    assert "forces_mae" in out and "assuming the data is in the potential's units" in out
    assert (tmp_path / "parity.png").is_file() and (tmp_path / "eval_metrics.json").is_file()


def test_eval_converts_declared_units(
    trained: Path, emt_molecule_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same data written in kcal/mol and Bohr gives the same errors (in the potential's eV/Å)."""
    from ase import units
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import read, write

    frames = read(emt_molecule_file, ":")
    converted = []
    for a in frames:
        b = a.copy()
        b.positions = a.positions / units.Bohr
        e_fac = units.mol / units.kcal
        b.calc = SinglePointCalculator(
            b, energy=a.get_potential_energy() * e_fac, forces=a.get_forces() * e_fac * units.Bohr
        )
        converted.append(b)
    write(tmp_path / "kcal_bohr.xyz", converted)
    import json

    main(["eval", str(trained / "potential.pt"), str(emt_molecule_file), "--output", str(tmp_path / "a")])
    main(
        [
            "eval",
            str(trained / "potential.pt"),
            str(tmp_path / "kcal_bohr.xyz"),
            "--energy-unit",
            "kcal/mol",
            "--length-unit",
            "Bohr",
            "--output",
            str(tmp_path / "b"),
        ]
    )
    a = json.loads((tmp_path / "a" / "eval_metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "eval_metrics.json").read_text())
    assert b["forces_mae"] == pytest.approx(a["forces_mae"], rel=1e-4)
    assert b["energy_mae"] == pytest.approx(a["energy_mae"], rel=1e-4, abs=1e-5)


def test_md_from_smiles_nve_reports_drift(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    traj = tmp_path / "md.traj"
    assert (
        main(
            [
                "md",
                str(trained / "checkpoints" / "last.ckpt"),
                "CCO",
                "--steps",
                "40",
                "--thermostat",
                "nve",
                "--trajectory",
                str(traj),
                "--log-every",
                "5",
                "--no-progress",
                "--dtype",
                "float64",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "NVE total-energy drift" in out and "meV/atom/ps" in out
    from ase.io import read

    assert len(read(traj, ":")) == 9  # steps 0, 5, ..., 40


def test_md_langevin_from_structure_file(
    trained: Path, emt_molecule_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "md",
                str(trained / "potential.pt"),
                str(emt_molecule_file),
                "--steps",
                "20",
                "--trajectory",
                str(tmp_path / "l.traj"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "mean T" in capsys.readouterr().out


def test_train_help_shows_every_option_with_default() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "physnet.cli", "train", "--help"], capture_output=True, text=True, check=True
    )
    assert "--resume" in result.stdout and "task.forces_weight: 10.0" in result.stdout
    # every job's fields: the GNS's and the N-body dynamics models'
    assert "job: gns" in result.stdout and "task.noise_std: 0.00067" in result.stdout
    assert "job: dynamics" in result.stdout and "data.frame_out: 40" in result.stdout
    names = "(behler_parrinello | cgnet | egnn | painn | schnet | se3_transformer;"
    assert names in result.stdout  # model names
    from physnet.data import embedded

    listed = next(line for line in result.stdout.splitlines() if line.startswith("Embedded data sets"))
    assert embedded.available() and all(name in listed for name in embedded.available())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["data.path=/no/such.xyz"], "data file /no/such.xyz does not exist"),
        (["data.energy_unit=furlongs"], "unknown energy unit 'furlongs'"),
        (["data.train=1.5e9"], "train"),
    ],
)
def test_train_bad_input_is_one_line_before_training(
    emt_molecule_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        f"run_dir: {tmp_path / 'run'}\n"
        f"data: {{path: {emt_molecule_file}, energy_unit: eV, length_unit: Å, train: 40, val: 10}}\n"
    )
    assert main(["train", str(config), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("physnet train: error:") and message in err[0], err
    assert not (tmp_path / "run" / "checkpoints").exists()


def _copy_potential(trained: Path, folder: Path) -> Path:
    import shutil

    folder.mkdir(parents=True)
    return Path(shutil.copy(trained / "potential.pt", folder / "potential.pt"))


def test_md_default_trajectory_goes_next_to_the_potential_and_is_never_replaced(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pot = _copy_potential(trained, tmp_path / "pot")
    md = ["md", str(pot), "CCO", "--steps", "10", "--log-every", "5", "--no-progress"]
    assert main(md) == 0
    traj = tmp_path / "pot" / "md_smiles.traj"
    assert f"trajectory -> {traj}" in capsys.readouterr().out
    before = traj.read_bytes()
    assert main(md) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"physnet md: error: trajectory {traj} already exists; "
        "name another file with --trajectory or pass --overwrite"
    ]
    assert traj.read_bytes() == before
    assert main([*md, "--trajectory", str(traj)]) == 2  # named explicitly: refused the same way
    assert traj.read_bytes() == before
    assert main([*md, "--overwrite", "--steps", "5"]) == 0
    from ase.io import read

    assert len(read(traj, ":")) == 2  # the new run's frames (steps 0 and 5), not the old 3


def _random_potential(path: Path) -> Path:
    import torch

    import physnet

    torch.manual_seed(0)
    model = physnet.models.build(
        "schnet", species=[1, 6, 8], n_features=16, n_filters=16, n_interactions=1, n_rbf=8, cutoff=4.0
    )
    physnet.Potential(model).save(path)
    return path


@pytest.mark.parametrize("thermostat", ["langevin", "nve"])
def test_md_that_blows_up_exits_non_zero_and_keeps_the_good_frames(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], thermostat: str
) -> None:
    """The issue's `physnet md POT CCO --dt 100`: ethanol atomises; the run must say so."""
    import re

    import numpy as np
    from ase.io import read

    pot = _random_potential(tmp_path / "random.pt")
    traj = tmp_path / "t.traj"
    args = ["md", str(pot), "CCO", "--dt", "100", "--steps", "200", "--log-every", "10"]
    rc = main([*args, "--thermostat", thermostat, "--trajectory", str(traj), "--no-progress"])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    match = re.fullmatch(
        r"physnet md: error: MD blew up at step (\d+) \(t = \d+ fs\): (.+); "
        rf"{re.escape(str(traj))} keeps the frames up to step (\d+)\. Usual fixes: a smaller --dt "
        r"\(e\.g\. 0\.5 fs\), or check the potential's training .*--no-guard runs on",
        err[0],
    )
    assert match, err[0]
    step, what, last_good = int(match[1]), match[2], int(match[3])
    assert step == last_good + 10 and step <= 200
    assert any(word in what for word in ("torn apart", "flew apart", "non-finite", "temperature")), what
    frames = read(traj, ":")
    assert len(frames) == last_good // 10 + 1
    assert all(np.isfinite(a.positions).all() for a in frames)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dt", "0"], "--dt must be a time step > 0 fs, got 0.0; 0.5 fs suits most molecules"),
        (["--dt", "-0.5"], "--dt must be a time step > 0 fs, got -0.5; 0.5 fs suits most molecules"),
        (["--temperature", "-300"], "--temperature must be >= 0 K, got -300.0"),
        (["--steps", "0"], "--steps must be >= 1, got 0"),
        (["--log-every", "0"], "--log-every must be >= 1, got 0"),
    ],
)
def test_md_bad_arguments_are_refused_up_front(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    traj = tmp_path / "t.traj"
    assert main(["md", str(trained / "potential.pt"), "CCO", "--trajectory", str(traj), *extra]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"physnet md: error: {message}"]
    assert not traj.exists()


def test_eval_default_output_is_next_to_the_checkpoint_and_never_replaced(
    trained: Path, emt_molecule_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    pot = _copy_potential(trained, tmp_path / "pot")
    assert main(["eval", str(pot), str(emt_molecule_file)]) == 0
    out = tmp_path / "pot" / "eval"
    assert (
        f"metrics: {out / 'eval_metrics.json'}; parity plot: {out / 'parity.png'}" in capsys.readouterr().out
    )
    before = {name: (out / name).read_bytes() for name in ("eval_metrics.json", "parity.png")}
    assert main(["eval", str(pot), str(emt_molecule_file)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"physnet eval: error: {out} already holds eval_metrics.json, parity.png; "
        "name another folder with --output or pass --overwrite"
    ]
    assert {name: (out / name).read_bytes() for name in before} == before
    assert main(["eval", str(pot), str(emt_molecule_file), "--overwrite"]) == 0

    # a Lightning checkpoint in RUN/checkpoints/: the results go to RUN/eval/
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    ckpt = shutil.copy(trained / "checkpoints" / "last.ckpt", tmp_path / "run" / "checkpoints")
    assert main(["eval", str(ckpt), str(emt_molecule_file)]) == 0
    assert (tmp_path / "run" / "eval" / "eval_metrics.json").is_file()
