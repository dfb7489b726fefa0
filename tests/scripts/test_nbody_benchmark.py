"""scripts/nbody_benchmark.py runs end to end on a tiny file in the shared N-body format."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "nbody_benchmark.py"


def _tiny_nbody(path: Path, n_sims: int = 8, seed: int = 0) -> None:
    """Random arrays with the layout of nbody_charged5.npz: (n_sims, frames, xyz, particle)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split in ("train", "valid", "test"):
        arrays[f"loc_{split}"] = rng.normal(size=(n_sims, 49, 3, 5)).astype(np.float32)
        arrays[f"vel_{split}"] = rng.normal(size=(n_sims, 49, 3, 5)).astype(np.float32)
        charges = rng.choice([-1, 1], size=(n_sims, 5, 1)).astype(np.int8)
        arrays[f"charges_{split}"] = charges
        arrays[f"edges_{split}"] = (charges * charges.transpose(0, 2, 1)).astype(np.int8)
    np.savez(path, **arrays)


def test_benchmark_runs_and_prints_paper_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("nbody_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = tmp_path / "nbody.npz"
    _tiny_nbody(data)
    argv = ["--data", str(data), "--epochs", "2", "--batch-size", "4", "--n-features", "8", "--n-layers", "2"]
    argv += ["--run-dir", str(tmp_path / "run")]
    threads = str(torch.get_num_threads())  # leave the process's thread count as it is
    assert module.main(argv + ["--eval-every", "1", "--threads", threads]) == 0
    out = capsys.readouterr().out
    assert "egnn (this run" in out and "0.0071" in out and "zero displacement" in out


@pytest.mark.parametrize("model", ["egnn", "se3_transformer"])
def test_benchmark_models_and_cosine_schedule(
    model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("nbody_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = tmp_path / "nbody.npz"
    _tiny_nbody(data)
    argv = ["--data", str(data), "--model", model, "--epochs", "2", "--batch-size", "4", "--n-features", "32"]
    argv += ["--n-layers", "1", "--schedule", "cosine", "--optimizer", "adamw", "--weight-decay", "1e-2"]
    argv += ["--run-dir", str(tmp_path / "run")]
    assert module.main(argv + ["--eval-every", "1", "--threads", str(torch.get_num_threads())]) == 0
    assert f"{model} (this run" in capsys.readouterr().out


def _load_script():
    spec = importlib.util.spec_from_file_location("nbody_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tiny_argv(tmp_path: Path) -> list[str]:
    data = tmp_path / "nbody.npz"
    _tiny_nbody(data)
    argv = ["--data", str(data), "--epochs", "3", "--batch-size", "4", "--n-features", "8", "--n-layers", "1"]
    return argv + [
        "--eval-every",
        "1",
        "--threads",
        str(torch.get_num_threads()),
        "--run-dir",
        str(tmp_path / "run"),
    ]


def test_benchmark_ema_evaluates_averaged_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = _load_script()
    assert module.main(_tiny_argv(tmp_path) + ["--ema", "0.9"]) == 0
    out = capsys.readouterr().out
    assert "(EMA 0.9)" in out and "egnn (this run" in out


def test_benchmark_ema_default_off(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = _load_script()
    assert module.main(_tiny_argv(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "EMA" not in out


def test_benchmark_grad_clip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = _load_script()
    assert module.main(_tiny_argv(tmp_path) + ["--grad-clip", "0.1"]) == 0
    assert "egnn (this run" in capsys.readouterr().out


def test_benchmark_warmup_ramps_lr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = _load_script()
    assert module.main(_tiny_argv(tmp_path) + ["--warmup-epochs", "2", "--lr", "1e-3"]) == 0
    out = capsys.readouterr().out
    assert "epoch     1" in out and "lr 5.00e-04" in out and "lr 1.00e-03" in out


def test_benchmark_plateau_schedule_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = _load_script()
    argv = _tiny_argv(tmp_path) + [
        "--schedule",
        "plateau",
        "--plateau-patience",
        "1",
        "--plateau-factor",
        "0.1",
    ]
    assert module.main(argv) == 0
    assert "egnn (this run" in capsys.readouterr().out


def test_benchmark_no_test_leaves_test_set_unseen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = _load_script()
    assert module.main(_tiny_argv(tmp_path) + ["--no-test"]) == 0
    out = capsys.readouterr().out
    assert "best validation MSE" in out and "test set not evaluated" in out and "(this run" not in out
