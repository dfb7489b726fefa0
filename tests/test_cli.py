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


def test_demo_md_that_blows_up_says_so(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["demo", "--minutes", "0.05", "--md-steps", "200", "--log-every", "5", "--dt", "50"]
    assert main([*args, "--run-dir", str(tmp_path / "demo"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "physnet demo: error: MD blew up at step" in err and "smaller --dt" in err


def test_entry_point_help_lists_demo_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "physnet.cli", "demo", "--help"], capture_output=True, text=True, check=True
    )
    assert "--smiles" in result.stdout and "(default: CCO)" in result.stdout


def test_bad_smiles_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["md", "no_such_checkpoint.pt", "C1CC", "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "physnet md: error: 'C1CC' is neither an existing structure file nor a SMILES string RDKit can parse"
    ]


def test_training_stopped_by_sigterm_exits_with_143(tmp_path, monkeypatch, capsys) -> None:
    """Lightning turns SIGTERM into an exit with status 0 and no model; ``physnet`` reports it
    and returns 143, so a script that would go on to use the model stops (~5 s)."""
    import os
    import signal
    from pathlib import Path

    from physnet.train.gns import GNSTask

    root = Path(__file__).resolve().parents[1]
    fixture = str(root / "data" / "mpm_water" / "water_fixture.npz")
    step = GNSTask.training_step

    def step_then_sigterm(self, batch, batch_idx):
        if batch_idx == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # Lightning's handler only sets a flag
        return step(self, batch, batch_idx)

    monkeypatch.setattr(GNSTask, "training_step", step_then_sigterm)
    run = tmp_path / "run"
    argv = [
        "gns-train",
        str(root / "examples" / "configs" / "gns_water.yaml"),
        f"run_dir={run}",
        f"data.train={fixture}",
        "model.body_acceleration=[0.0, -3.92e-5]",  # gravity for the fixture's 2 ms frames
        "data.valid=",
        "data.test=",
        "data.val_rollouts=0",
        "model.latent_size=8",
        "model.hidden_size=8",
        "model.n_message_passing=1",
        "trainer.max_steps=50",
    ]
    assert main(argv) == 143
    assert "interrupted by SIGTERM" in capsys.readouterr().err
    assert not (run / "gns.pt").exists()
