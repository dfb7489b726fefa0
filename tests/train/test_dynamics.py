"""The dynamics task learns a simple rule and logs position MSE on every stage."""

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
