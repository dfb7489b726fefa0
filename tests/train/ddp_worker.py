"""Run by test_fit.py: train with the given overrides and save each rank's weights."""

import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

from physnet.train.config import load_config
from physnet.train.fit import train


class SaveWeights(pl.Callback):
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def _save(self, trainer: pl.Trainer, module: pl.LightningModule, tag: str) -> None:
        state = {k: v.detach().clone() for k, v in module.potential.state_dict().items()}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        torch.save(state, self.run_dir / f"weights{tag}_rank{trainer.global_rank}.pt")

    def on_train_start(self, trainer, module) -> None:
        self._save(trainer, module, "_initial")

    def on_train_end(self, trainer, module) -> None:
        self._save(trainer, module, "")


if __name__ == "__main__":
    cfg = load_config(None, sys.argv[1:])
    train(cfg, callbacks=[SaveWeights(Path(cfg.run_dir))])
