"""Lightning task for dynamics models that predict future positions (EGNN's N-body task).

A batch is a dict of tensors for B systems of N particles under the keys of
:mod:`physnet.data.keys`: ``POS`` [B, N, 3], ``VEL`` [B, N, 3], ``CHARGES`` [B, N] and the
target positions ``TARGET_POS`` [B, N, 3]. The loss
is the mean squared error of the predicted positions, the metric of Satorras et al.,
ICML 2021, Table 2.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from physnet.data import keys as K

__all__ = ["DynamicsTask", "flatten_systems"]


def flatten_systems(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """[B, N, ...] system tensors -> flat particle tensors and the [B * N] system index."""
    n_systems, n_particles = batch[K.POS].shape[:2]
    index = torch.arange(n_systems, device=batch[K.POS].device).repeat_interleave(n_particles)
    return (
        batch[K.POS].reshape(-1, 3),
        batch[K.VEL].reshape(-1, 3),
        batch[K.CHARGES].reshape(-1),
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
        return self.model(pos, vel, charges, index).reshape(batch[K.POS].shape)

    def _step(self, stage: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = (self(batch) - batch[K.TARGET_POS]).pow(2).mean()
        self.log(
            f"{stage}/mse",
            loss,
            prog_bar=True,
            on_step=False,
            on_epoch=True,
            batch_size=batch[K.POS].shape[0],
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
