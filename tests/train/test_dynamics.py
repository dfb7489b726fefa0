"""The dynamics task learns a simple rule and logs position MSE on every stage."""

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from physnet.data import keys as K
from physnet.models import EGNNDynamics
from physnet.train.dynamics import DynamicsTask


def _loader(n: int, seed: int) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(n, 5, 3, generator=g)
    vel = torch.randn(n, 5, 3, generator=g)
    charges = torch.randint(0, 2, (n, 5), generator=g).float() * 2 - 1
    target = pos + 0.5 * vel  # constant velocity: learnable by EGNN's velocity term
    data = TensorDataset(pos, vel, charges, target)

    def collate(items):
        p, v, q, t = (torch.stack(x) for x in zip(*items, strict=True))
        return {K.POS: p, K.VEL: v, K.CHARGES: q, K.TARGET_POS: t}

    return DataLoader(data, batch_size=16, shuffle=False, collate_fn=collate)


def test_dynamics_task_reduces_position_mse(tmp_path) -> None:
    torch.manual_seed(0)
    task = DynamicsTask(EGNNDynamics(n_features=16, n_layers=2), lr=5e-3)
    train, val = _loader(64, 0), _loader(32, 1)
    trainer = pl.Trainer(
        max_epochs=15,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    before = trainer.validate(task, val, verbose=False)[0]["val/mse"]
    trainer.fit(task, train, val)
    after = trainer.test(task, val, verbose=False)[0]["test/mse"]
    assert after < 0.2 * before, (before, after)


def _tiny_nbody(path, n_sims: int = 8, seed: int = 0) -> None:
    """Random arrays with the layout of the EGNN paper's N-body files: (n_sims, frames, xyz, particle)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    arrays = {}
    for split in ("train", "valid", "test"):
        arrays[f"loc_{split}"] = rng.normal(size=(n_sims, 49, 3, 5)).astype(np.float32)
        arrays[f"vel_{split}"] = rng.normal(size=(n_sims, 49, 3, 5)).astype(np.float32)
        arrays[f"charges_{split}"] = rng.choice([-1, 1], size=(n_sims, 5, 1)).astype(np.int8)
    np.savez(path, **arrays)


def test_physnet_train_runs_a_dynamics_config_and_resumes_it(tmp_path) -> None:
    """``job: dynamics``: the saved dynamics.pt is the best-validated model (its test MSE is the
    reported one) and ``--resume`` goes on to the new epoch limit."""
    import json

    import physnet
    from physnet.cli import main
    from physnet.train.dynamics import load_nbody, position_mse

    data = tmp_path / "nbody.npz"
    _tiny_nbody(data)
    run = tmp_path / "run"
    overrides = [
        "job=dynamics",
        f"run_dir={run}",
        f"data.path={data}",
        "data.batch_size=4",
        "model.n_features=8",
        "model.n_layers=1",
        "task.ema_decay=0.9",
        "trainer.max_epochs=2",
        "trainer.threads=1",
        "trainer.progress_bar=false",
    ]
    assert main(["train", *overrides]) == 0
    report = json.loads((run / "test_metrics.json").read_text())
    assert report["epochs"] == 2 and report["optimizer_steps"] == 4 and report["n_train"] == 8
    model = physnet.models.load_dynamics(run / "dynamics.pt")
    assert model.hparams["n_layers"] == 1
    test = load_nbody(data, "test")
    assert position_mse(model, test) == pytest.approx(report["test_mse"], rel=1e-6)
    assert report["zero_displacement"] > 0 and report["constant_velocity"] > 0
    assert main(["train", "--resume", str(run), "trainer.max_epochs=3"]) == 0
    assert json.loads((run / "test_metrics.json").read_text())["optimizer_steps"] == 6


def test_warmup_ema_decay_grows_to_its_limit() -> None:
    """The averaging weight of update n >= 1 (optimiser step n + 1) is 1 - min(decay, (2 + n) / (11 + n))."""
    from physnet.train.runner import WarmupEMA

    ema = WarmupEMA(0.5)
    avg, cur = torch.zeros(3), torch.ones(3)
    assert torch.allclose(ema(avg, cur, torch.tensor(1)), torch.full((3,), 1 - 3 / 12))
    assert torch.allclose(ema(avg, cur, torch.tensor(1000)), torch.full((3,), 0.5))
