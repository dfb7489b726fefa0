import subprocess
import sys

import pytest

from physnet.cli import main


def test_demo_runs_md_and_prints_energies(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--steps", "10", "--log-every", "5", "--dtype", "float64"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip() and line.split()[0].isdigit()]
    assert [int(line.split()[0]) for line in lines[:3]] == [0, 5, 10]
    assert "ms/step" in out


def test_entry_point_help_lists_demo_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "physnet.cli", "demo", "--help"], capture_output=True, text=True, check=True
    )
    assert "--smiles" in result.stdout and "(default: CCO)" in result.stdout


def test_bad_smiles_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--smiles", "C1CC", "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["physnet demo: error: RDKit could not parse the SMILES 'C1CC'"]
