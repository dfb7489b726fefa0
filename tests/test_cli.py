import subprocess
import sys

import pytest

from physnet.cli import main


def test_demo_trains_then_runs_md(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "demo" / "checkpoints").mkdir(parents=True)  # an earlier demo: must not be overwritten
    run_dir = tmp_path / "demo-2"
    args = [
        "demo",
        "--minutes",
        "0.05",
        "--md-steps",
        "10",
        "--log-every",
        "5",
        "--run-dir",
        str(tmp_path / "demo"),
    ]
    assert main([*args, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "test: energy MAE" in out and (run_dir / "potential.pt").is_file()
    rows = [line.split() for line in out.splitlines()]
    rows = [r for r in rows if len(r) == 6 and r[0].isdigit()]
    assert [int(r[0]) for r in rows] == [0, 5, 10]
    assert "ms/step" in out


def test_entry_point_help_lists_demo_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "physnet.cli", "demo", "--help"], capture_output=True, text=True, check=True
    )
    assert "--smiles" in result.stdout and "(default: CCO)" in result.stdout


def test_bad_smiles_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["md", "no_such_checkpoint.pt", "C1CC", "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["physnet md: error: RDKit could not parse the SMILES 'C1CC'"]
