"""N-body dynamics models (EGNN paper's task): the Lightning task, the data and the driver.

Satorras, Hoogeboom & Welling, ICML 2021, Sec. 5.1 and Table 2: 5 charged particles, input
positions and velocities at one frame plus charges, target positions 1000 integration steps
later; the loss is the mean squared error of the predicted positions.

A batch is a dict of tensors for B systems of N particles under the keys of
:mod:`physnet.data.keys`: ``POS`` [B, N, 3], ``VEL`` [B, N, 3], ``CHARGES`` [B, N] and the
target positions ``TARGET_POS`` [B, N, 3].

:func:`train_dynamics` is ``physnet train`` for ``job: dynamics`` (and the body of
``scripts/nbody_benchmark.py``). A run directory holds ``config.yaml``, ``logs/metrics.csv``,
``checkpoints/{best,last}.ckpt``, ``dynamics.pt`` (the model with the best validation MSE,
:func:`physnet.models.load_dynamics`) and ``test_metrics.json``.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from physnet.data import keys as K
from physnet.errors import UserError
from physnet.train.config import DynamicsRunConfig, load_dynamics_config
from physnet.train.runner import (
    best_checkpoint,
    guard_run_dir,
    last_checkpoint,
    load_best,
    make_trainer,
    resume_from,
    say,
    start_run,
    torch_dtype,
    write_run_config,
)

__all__ = [
    "DynamicsTask",
    "flatten_systems",
    "load_nbody",
    "position_mse",
    "baselines",
    "train_dynamics",
    "load_dynamics_config",
    "RUN_RESULTS",
]

# what a dynamics run leaves in its directory (see physnet.train.runner.guard_run_dir)
RUN_RESULTS = ("dynamics.pt", "config.yaml", "test_metrics.json")
SCHEDULES = ("constant", "cosine", "plateau")
OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


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


def load_nbody(
    path: str | os.PathLike,
    split: str,
    n_max: int | None = None,
    frame_in: int = 30,
    frame_out: int = 40,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """One split (``train``, ``valid``, ``test``) of an N-body ``.npz`` (arrays ``loc_<split>``,
    ``vel_<split>`` [n_sims, frames, 3, n_particles], ``charges_<split>`` [n_sims, n_particles, 1])
    as ``POS``, ``VEL``, ``TARGET_POS`` [n_sims, n_particles, 3] and ``CHARGES`` [n_sims, n_particles]."""
    with np.load(path) as data:
        missing = [k for k in (f"loc_{split}", f"vel_{split}", f"charges_{split}") if k not in data]
        if missing:
            raise UserError(
                f"{path} has no arrays {missing}: give an N-body .npz of the EGNN paper's generator"
            )
        loc = data[f"loc_{split}"][:n_max]
        vel = data[f"vel_{split}"][:n_max]
        charges = data[f"charges_{split}"][:n_max]

    def frame(a: np.ndarray, t: int) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a[:, t].transpose(0, 2, 1)), dtype=dtype)

    return {
        K.POS: frame(loc, frame_in),
        K.VEL: frame(vel, frame_in),
        K.TARGET_POS: frame(loc, frame_out),
        K.CHARGES: torch.as_tensor(charges[..., 0].astype(np.float64), dtype=dtype),
    }


class _Systems(torch.utils.data.Dataset):
    """The systems of a split, one dict of [N, ...] tensors each (default collate stacks them)."""

    def __init__(self, split: dict[str, torch.Tensor]) -> None:
        self.split = split

    def __len__(self) -> int:
        return self.split[K.POS].shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.split.items()}


@torch.no_grad()
def position_mse(model: torch.nn.Module, split: dict[str, torch.Tensor], batch_size: int = 500) -> float:
    """Mean squared error of the predicted positions over a whole split (length unit^2)."""
    model.eval()
    total, count = 0.0, 0
    n = split[K.POS].shape[0]
    for start in range(0, n, batch_size):
        batch = {k: v[start : start + batch_size] for k, v in split.items()}
        pos, vel, charges, index = flatten_systems(batch)
        err = (model(pos, vel, charges, index).reshape(batch[K.POS].shape) - batch[K.TARGET_POS]) ** 2
        total += float(err.sum())
        count += err.numel()
    return total / count


def baselines(train: dict[str, torch.Tensor], test: dict[str, torch.Tensor]) -> dict[str, float]:
    """Test MSE of zero displacement (x_out = x_in) and of constant velocity (x_out = x_in + t v_in,
    t fitted by least squares on the training split)."""
    dx, v = train[K.TARGET_POS] - train[K.POS], train[K.VEL]
    t_fit = float((dx * v).sum() / (v * v).sum())
    return {
        "zero_displacement": float(((test[K.POS] - test[K.TARGET_POS]) ** 2).mean()),
        "constant_velocity": float(((test[K.POS] + t_fit * test[K.VEL] - test[K.TARGET_POS]) ** 2).mean()),
        "constant_velocity_t": t_fit,
    }


class DynamicsTask(pl.LightningModule):
    """Trains a model ``f(pos, vel, charges, batch) -> future positions`` by position MSE.

    Logs ``train/mse``, ``val/mse``, ``test/mse`` and ``lr`` per epoch and prints one line per
    validation (epoch, wall time, learning rate, train and validation MSE, best so far).

    Args:
        model: e.g. :class:`physnet.models.EGNNDynamics`.
        lr: learning rate; paper: 5e-4.
        weight_decay: paper's code: 1e-12 (coupled for ``adam``, decoupled for ``adamw``).
        optimizer: ``adam`` or ``adamw``.
        schedule: ``constant``; ``cosine``: lr (1 + cos(pi e / max_epochs)) / 2 at epoch e;
            ``plateau``: lr x ``plateau_factor`` once ``plateau_patience`` validations passed
            without a new best validation MSE.
        warmup_epochs: linear warm-up, lr x e / warmup_epochs in epoch e = 1..warmup_epochs
            (``constant`` and ``cosine`` only).
        max_epochs: length of the cosine schedule.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        lr: float = 5e-4,
        weight_decay: float = 1e-12,
        optimizer: str = "adam",
        schedule: str = "constant",
        warmup_epochs: int = 0,
        max_epochs: int = 1000,
        plateau_patience: int = 10,
        plateau_factor: float = 0.5,
    ) -> None:
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise UserError(f"task.optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
        if schedule not in SCHEDULES:
            raise UserError(f"task.schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        if schedule == "plateau" and warmup_epochs > 0:
            raise UserError("task.warmup_epochs needs task.schedule constant or cosine, not plateau")
        self.model = model
        self.lr, self.weight_decay, self.optimizer = lr, weight_decay, optimizer
        self.schedule, self.warmup_epochs, self.max_epochs = schedule, warmup_epochs, max_epochs
        self.plateau_patience, self.plateau_factor = plateau_patience, plateau_factor
        self._sums = {"train": [0.0, 0], "val": [0.0, 0]}
        self.best = (math.inf, 0)  # best validation MSE and its epoch (1-based)
        self._epoch_lr = lr
        self._started = time.perf_counter()

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Predicted positions [B, N, 3]."""
        pos, vel, charges, index = flatten_systems(batch)
        return self.model(pos, vel, charges, index).reshape(batch[K.POS].shape)

    def _step(self, stage: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        err = (self(batch) - batch[K.TARGET_POS]).pow(2)
        loss = err.mean()
        if stage in self._sums:
            self._sums[stage][0] += float(err.detach().sum())
            self._sums[stage][1] += err.numel()
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

    def on_train_epoch_start(self) -> None:
        self._sums["train"] = [0.0, 0]
        self._epoch_lr = float(self.optimizers().param_groups[0]["lr"])  # the lr of this epoch's steps
        self.log("lr", self._epoch_lr, on_step=False, on_epoch=True)

    def on_validation_epoch_start(self) -> None:
        self._sums["val"] = [0.0, 0]

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or self._sums["val"][1] == 0:
            return
        val = self._sums["val"][0] / self._sums["val"][1]
        epoch = self.current_epoch + 1
        if val < self.best[0]:
            self.best = (val, epoch)
        if self.global_rank == 0 and self.trainer.state.fn == "fit":
            train = self._sums["train"][0] / max(self._sums["train"][1], 1)
            print(
                f"epoch {epoch:5d}  {time.perf_counter() - self._started:7.1f} s  "
                f"lr {self._epoch_lr:.2e}  train {train:.5f}  val {val:.5f}  "
                f"best val {self.best[0]:.5f} (epoch {self.best[1]})",
                flush=True,
            )

    def _factor(self, epoch: int) -> float:
        """lr factor in the 0-based ``epoch``: cosine and warm-up."""
        factor = 1.0
        if self.schedule == "cosine":
            factor = 0.5 * (1 + math.cos(math.pi * min(epoch / self.max_epochs, 1.0)))
        if epoch < self.warmup_epochs:
            factor *= (epoch + 1) / self.warmup_epochs
        return factor

    def configure_optimizers(self) -> Any:
        opt = OPTIMIZERS[self.optimizer](self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        if self.schedule == "plateau":
            # torch counts validations without a new best and acts once the count exceeds patience
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, factor=self.plateau_factor, patience=max(self.plateau_patience - 1, 0), threshold=0.0
            )
            every = self.trainer.check_val_every_n_epoch or 1
            scheduler = {"scheduler": plateau, "monitor": "val/mse", "frequency": every, "strict": False}
            return {"optimizer": opt, "lr_scheduler": scheduler}
        if self.schedule == "constant" and self.warmup_epochs == 0:
            return opt
        return [opt], [torch.optim.lr_scheduler.LambdaLR(opt, self._factor)]


def _load_best(task: DynamicsTask, best: Any, ema_decay: float) -> dict[str, Any]:
    """Load the best-validated weights (the EMA's when EMA is on) into ``task``; what the report says."""
    state = load_best(task, best)
    chosen = {"best_val_mse": float(best.best_model_score), "best_epoch": int(state["epoch"]) + 1}
    ema = f" (EMA {ema_decay})" if ema_decay > 0 else ""
    say(f"\nbest validation MSE {chosen['best_val_mse']:.5f} at epoch {chosen['best_epoch']}{ema}")
    return chosen


def train_dynamics(
    cfg: DynamicsRunConfig,
    resume: bool = False,
    overwrite: bool = False,
    config_file: str | os.PathLike | None = None,
) -> Path:
    """Train (or resume) an N-body dynamics model; returns the run directory.

    The validation split selects the model (lowest ``val/mse``; the EMA weights with
    ``task.ema_decay``), which is saved as ``dynamics.pt`` and, unless ``data.test`` is false,
    evaluated on the test split next to the zero-displacement and constant-velocity baselines
    (``test_metrics.json``).
    """
    from physnet.models.dynamics import build_dynamics

    d, t = cfg.data, cfg.trainer
    if not d.path:
        raise UserError(
            "data.path is empty: give the N-body .npz, e.g. data.path=downloads/nbody_charged5.npz "
            "(written by `physnet data nbody_charged5`)"
        )
    dtype = torch_dtype(t)
    run_dir = Path(cfg.run_dir)
    guard_run_dir(run_dir, resume, overwrite, RUN_RESULTS, config_file)
    share = start_run(t)
    started = time.perf_counter()
    n_max = {"train": d.n_train or None, "valid": None, "test": None}
    splits = {s: load_nbody(d.path, s, n, d.frame_in, d.frame_out, dtype) for s, n in n_max.items()}
    model = build_dynamics(**{"name": "egnn", **cfg.model}).to(dtype)
    write_run_config(run_dir, {**cfg.to_dict(), "model": dict(model.hparams)})
    n_train = splits["train"][K.POS].shape[0]
    say(
        f"training {model.hparams['name']} ({sum(p.numel() for p in model.parameters())} parameters) "
        f"on {n_train} systems"
    )
    generator = torch.Generator().manual_seed(t.seed)
    train_loader = torch.utils.data.DataLoader(
        _Systems(splits["train"]), batch_size=d.batch_size, shuffle=True, generator=generator
    )
    val_loader = torch.utils.data.DataLoader(_Systems(splits["valid"]), batch_size=d.eval_batch_size)
    task = DynamicsTask(
        model,
        lr=cfg.task.lr,
        weight_decay=cfg.task.weight_decay,
        optimizer=cfg.task.optimizer,
        schedule=cfg.task.schedule,
        warmup_epochs=cfg.task.warmup_epochs,
        max_epochs=t.max_epochs,
        plateau_patience=cfg.task.plateau_patience,
        plateau_factor=cfg.task.plateau_factor,
    )
    best = best_checkpoint(run_dir, "val/mse")
    trainer = make_trainer(
        t,
        run_dir,
        [best, last_checkpoint(t, run_dir)],
        ema_decay=cfg.task.ema_decay,
        ema_warmup=True,
        resume=resume,
        log_every_n_steps=max(1, min(t.log_every_n_steps, len(train_loader))),
        num_sanity_val_steps=0,
    )
    trainer.fit(task, train_loader, val_loader, ckpt_path=resume_from(run_dir, resume))
    if trainer.global_rank != 0:
        return run_dir
    report: dict[str, Any] = {
        "n_train": n_train,
        "epochs": trainer.current_epoch,
        "optimizer_steps": trainer.global_step,
        "train_wall_time_s": round(time.perf_counter() - started, 1),
    }
    if best.best_model_path:
        report.update(_load_best(task, best, cfg.task.ema_decay))
    model = task.model.cpu().eval()
    model.save(run_dir / "dynamics.pt")
    if d.test:
        report["test_mse"] = position_mse(model, splits["test"], d.eval_batch_size)
        report.update(baselines(splits["train"], splits["test"]))
        say(
            f"test MSE of positions {report['test_mse']:.5f} (zero displacement "
            f"{report['zero_displacement']:.5f}, constant velocity {report['constant_velocity']:.5f})"
        )
    else:
        say("test set not evaluated (data.test=false)")
    (run_dir / "test_metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    say(f"run directory: {run_dir} (dynamics.pt, checkpoints/, logs/, test_metrics.json)")
    share.report("train")
    return run_dir
