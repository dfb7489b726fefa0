"""Lightning task for energy models: loss on energy, forces and stress.

Loss (every term divided by the square of the potential's energy scale, so the
weights are dimensionless)::

    L = w_E <((E - E_ref) / N)^2> + w_F <|F - F_ref|^2> / 3 + w_S <|sigma - sigma_ref|^2> / 9

with per-atom energies as in nequip (a per-structure error divided by its atom
count keeps molecules and large cells on one footing). Metrics: MAE and RMSE of
the total energy, the energy per atom, the force components and the stress, on
train / val / test, in the data's units.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytorch_lightning as pl
import torch

from physnet.data import keys as K
from physnet.potential import Potential
from physnet.train.config import TaskConfig

__all__ = ["PotentialTask"]

Graph = dict[str, torch.Tensor]


def adamw(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter, ICLR 2019) with torch's fused kernel where it exists.

    The fused kernel (CUDA; CPU from torch 2.4) updates every parameter in one call instead of
    a Python loop over them (a few per cent more frames/s on one CPU core; docs/benchmarks.md).
    Falls back to the loop where it is unavailable.
    """
    params = list(params)
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


class PotentialTask(pl.LightningModule):
    """Trains a :class:`physnet.Potential` on energies, forces (and stress).

    Args:
        potential: the potential to train (its references and scale already fitted).
        config: loss weights, optimiser and schedule.
        run_config: the whole run's configuration, stored in checkpoints.
        checked_data: the caller has checked every graph it will feed (species in the model,
            the model's dtype, non-singular cells where stress is trained), as
            :func:`physnet.train.fit.prepare` does; then a step skips :meth:`Potential.check`
            and reads nothing back from the device (no host sync). False checks every batch.
    """

    def __init__(
        self,
        potential: Potential,
        config: TaskConfig,
        run_config: dict[str, Any] | None = None,
        checked_data: bool = False,
    ):
        super().__init__()
        self.potential = potential
        self.config = config
        self.save_hyperparameters({"run": run_config or {}}, ignore=["potential"])
        self.use_stress = config.stress_weight > 0
        self.checked_data = checked_data

    # ------------------------------------------------------------------ steps
    def forward(self, graph: Graph) -> Graph:
        return self.potential(
            graph, compute_forces=True, compute_stress=self.use_stress, check=not self.checked_data
        )

    def _errors(self, batch: Graph, out: Graph) -> dict[str, torch.Tensor]:
        n_atoms = batch[K.N_ATOMS].to(out[K.ENERGY].dtype)
        err: dict[str, torch.Tensor] = {}
        if K.ENERGY in batch:
            err["energy"] = out[K.ENERGY] - batch[K.ENERGY]  # [n_graphs]
            err["energy_per_atom"] = err["energy"] / n_atoms
        if K.FORCES in batch:
            err["forces"] = out[K.FORCES] - batch[K.FORCES]  # [n_atoms, 3]
        if self.use_stress and K.STRESS in batch:
            err["stress"] = out[K.STRESS] - batch[K.STRESS]  # [n_graphs, 3, 3]
        return err

    def _loss(self, err: dict[str, torch.Tensor]) -> torch.Tensor:
        c = self.config
        scale2 = self.potential.energy_scale**2
        loss = torch.zeros((), dtype=self.potential.energy_scale.dtype, device=self.device)
        if "energy_per_atom" in err and c.energy_weight > 0:
            loss = loss + c.energy_weight * err["energy_per_atom"].pow(2).mean() / scale2
        if "forces" in err and c.forces_weight > 0:
            loss = loss + c.forces_weight * err["forces"].pow(2).mean() / scale2
        if "stress" in err and c.stress_weight > 0:
            loss = loss + c.stress_weight * err["stress"].pow(2).mean() / scale2
        return loss

    def _log_metrics(
        self, stage: str, err: dict[str, torch.Tensor], loss: torch.Tensor, batch_size: int
    ) -> None:
        on_step = stage == "train"
        self.log(
            f"{stage}/loss",
            loss,
            prog_bar=stage != "test",
            on_step=on_step,
            on_epoch=True,
            batch_size=batch_size,
            sync_dist=not on_step,
        )
        for name, e in err.items():
            e = e.detach()
            self.log(
                f"{stage}/{name}_mae",
                e.abs().mean(),
                on_step=False,
                on_epoch=True,
                batch_size=batch_size,
                sync_dist=True,
                prog_bar=name == "forces" and stage == "val",
            )
            # RMSE: mean of squares per epoch, square root taken in the epoch-end hooks.
            self.log(
                f"{stage}/{name}_mse",
                e.pow(2).mean(),
                on_step=False,
                on_epoch=True,
                batch_size=batch_size,
                sync_dist=True,
            )

    def training_step(self, batch: Graph, batch_idx: int) -> torch.Tensor:
        out = self(batch)
        err = self._errors(batch, out)
        loss = self._loss(err)
        self._log_metrics("train", err, loss.detach(), int(batch[K.N_ATOMS].shape[0]))
        return loss

    def _eval_step(self, stage: str, batch: Graph) -> None:
        with torch.enable_grad():
            out = self(batch)
        err = {k: v.detach() for k, v in self._errors(batch, out).items()}
        self._log_metrics(stage, err, self._loss(err), int(batch[K.N_ATOMS].shape[0]))

    def validation_step(self, batch: Graph, batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: Graph, batch_idx: int) -> None:
        self._eval_step("test", batch)

    def _add_rmse(self, stage: str) -> None:
        for key, value in list(self.trainer.callback_metrics.items()):
            if key.startswith(f"{stage}/") and key.endswith("_mse"):
                self.log(key[:-4] + "_rmse", value.sqrt(), sync_dist=False)

    def on_validation_epoch_end(self) -> None:
        self._add_rmse("val")

    def on_test_epoch_end(self) -> None:
        self._add_rmse("test")

    # --------------------------------------------------------------- optimiser
    def configure_optimizers(self) -> dict[str, Any]:
        c = self.config
        trainable = [p for p in self.potential.parameters() if p.requires_grad]  # model.freeze
        optimizer = adamw(trainable, lr=c.lr, weight_decay=c.weight_decay)
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=c.plateau_factor, patience=c.plateau_patience, min_lr=c.min_lr
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": plateau,
                "monitor": "val/loss",
                "interval": "epoch",
                "strict": False,
            },
        }

    def optimizer_step(
        self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None
    ) -> None:
        """Linear warm-up from lr/100 to lr over ``warmup_steps``, then the plateau schedule."""
        c = self.config
        step = self.trainer.global_step
        if c.warmup_steps > 0 and step < c.warmup_steps:
            factor = 0.01 + 0.99 * (step + 1) / c.warmup_steps
            for group in optimizer.param_groups:
                group["lr"] = c.lr * factor
        optimizer.step(closure=optimizer_closure)
        if c.lipschitz > 0:  # Wang et al. (2019): bound each layer's spectral norm
            from physnet.models.cgnet import lipschitz_projection

            lipschitz_projection(self.potential.model, c.lipschitz)
        self.log("lr", optimizer.param_groups[0]["lr"], on_step=True, on_epoch=False)

    # ----------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Make every Lightning checkpoint self-contained for :meth:`Potential.load`."""
        checkpoint["physnet"] = self.potential.config()
