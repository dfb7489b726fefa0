"""Lightning task for dynamics models that predict future positions (EGNN's N-body task).

A batch is a dict of tensors for B systems of N particles: ``pos`` [B, N, 3], ``vel``
[B, N, 3], ``charges`` [B, N] and the target positions ``target`` [B, N, 3]. The loss
is the mean squared error of the predicted positions, the metric of Satorras et al.,
ICML 2021, Table 2.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

__all__ = ["DynamicsTask", "flatten_systems"]


def flatten_systems(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """[B, N, ...] system tensors -> flat particle tensors and the [B * N] system index."""
    n_systems, n_particles = batch["pos"].shape[:2]
    index = torch.arange(n_systems, device=batch["pos"].device).repeat_interleave(n_particles)
    return (
        batch["pos"].reshape(-1, 3),
        batch["vel"].reshape(-1, 3),
        batch["charges"].reshape(-1),
        index,
    )


class DynamicsTask(pl.LightningModule):
    """Trains a model ``f(pos, vel, charges, batch) -> future positions`` by position MSE.

    Args:
        model: e.g. :class:`physnet.models.EGNNDynamics`.
        lr: Adam learning rate; paper: 5e-4.
        weight_decay: paper's code: 1e-12.
    """

    def __init__(self, model: torch.nn.Module, lr: float = 5e-4, weight_decay: float = 1e-12) -> None:
        super().__init__()
        self.model = model
        self.lr = lr
        self.weight_decay = weight_decay

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Predicted positions [B, N, 3]."""
        pos, vel, charges, index = flatten_systems(batch)
        return self.model(pos, vel, charges, index).reshape(batch["pos"].shape)

    def _step(self, stage: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = (self(batch) - batch["target"]).pow(2).mean()
        self.log(
            f"{stage}/mse",
            loss,
            prog_bar=True,
            on_step=False,
            on_epoch=True,
            batch_size=batch["pos"].shape[0],
        )
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step("train", batch)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step("val", batch)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step("test", batch)

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
