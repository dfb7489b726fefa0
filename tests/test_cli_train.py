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
