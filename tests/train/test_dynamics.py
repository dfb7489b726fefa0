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


EGNN_TINY = ("model.n_features=8", "model.n_layers=1")


def _train_tiny(tmp_path, *extra: str, epochs: int = 3, model: tuple[str, ...] = EGNN_TINY) -> dict:
    """train_dynamics on a tiny random N-body file with ``extra`` overrides; returns test_metrics.json."""
    import json

    from physnet.train.config import load_dynamics_config
    from physnet.train.dynamics import train_dynamics

    data = tmp_path / "nbody.npz"
    _tiny_nbody(data)
    overrides = [
        f"run_dir={tmp_path / 'run'}",
        f"data.path={data}",
        "data.batch_size=4",
        *model,
        f"trainer.max_epochs={epochs}",
        "trainer.check_val_every_n_epoch=1",
        f"trainer.threads={torch.get_num_threads()}",  # leave the process's thread count as it is
        "trainer.progress_bar=false",
        *extra,
    ]
    run = train_dynamics(load_dynamics_config(None, overrides), overwrite=True)
    return json.loads((run / "test_metrics.json").read_text())


def test_ema_selects_and_reports_the_averaged_weights(tmp_path, capsys) -> None:
    """task.ema_decay > 0: validation, selection and test use the averaged weights (and say so)."""
    report = _train_tiny(tmp_path, "task.ema_decay=0.9")
    out = capsys.readouterr().out
    assert "(EMA 0.9)" in out and report["test_mse"] > 0


def test_ema_is_off_by_default(tmp_path, capsys) -> None:
    _train_tiny(tmp_path)
    assert "EMA" not in capsys.readouterr().out


def test_warmup_ramps_the_learning_rate(tmp_path, capsys) -> None:
    """task.warmup_epochs=2: epoch 1 trains at lr / 2, epoch 2 at lr."""
    _train_tiny(tmp_path, "task.warmup_epochs=2", "task.lr=1e-3")
    out = capsys.readouterr().out
    assert "epoch     1" in out and "lr 5.00e-04" in out and "lr 1.00e-03" in out


@pytest.mark.parametrize(
    "extra",
    [
        [*EGNN_TINY, "task.schedule=plateau", "task.plateau_patience=1", "task.plateau_factor=0.1"],
        [*EGNN_TINY, "trainer.gradient_clip_val=0.1"],
        [
            "model.name=se3_transformer",
            "model.channels=[16, 8, 4]",
            "model.n_layers=1",
            "task.schedule=cosine",
        ],
    ],
    ids=["plateau", "grad-clip", "se3-cosine-adamw"],
)
def test_schedules_clipping_and_models_train(tmp_path, extra: list[str]) -> None:
    report = _train_tiny(
        tmp_path, *extra, "task.optimizer=adamw", "task.weight_decay=1e-2", epochs=2, model=()
    )
    assert report["epochs"] == 2 and report["test_mse"] > 0


def test_no_test_leaves_the_test_set_unseen(tmp_path, capsys) -> None:
    report = _train_tiny(tmp_path, "data.test=false")
    out = capsys.readouterr().out
    assert "best validation MSE" in out and "test set not evaluated" in out and "test_mse" not in report
