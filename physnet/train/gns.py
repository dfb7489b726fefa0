"""Training of the GNS learned simulator: ``physnet train CONFIG.yaml`` with ``job: gns``.

Sanchez-Gonzalez et al., ICML 2020, Sec. 4: windows of ``C + 1`` frames, random-walk noise on
the inputs (:mod:`physnet.sim.frames`), the normalised-acceleration loss and Adam with
exponential learning-rate decay (:class:`GNSTask`). A run directory holds ``config.yaml``,
``logs/metrics.csv``, ``checkpoints/``, ``gns.pt`` (:func:`physnet.models.load_simulator`) and
``test_metrics.json`` (:func:`physnet.train.gns_eval.evaluate` on the test file).
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
from physnet.data.trajectories import Trajectories, load_trajectories, n_windows, window_loaders
from physnet.models.gns import GNS
from physnet.models.simulator import build_simulator
from physnet.sim.box import wall_distances, wall_normals
from physnet.sim.frames import (
    euler_step,
    free_fall_acceleration,
    landing_acceleration,
    noisy_target_acceleration,
    random_walk_noise,
)
from physnet.train.config import GNSRunConfig, load_gns_config  # noqa: F401  (physnet.train.gns's loader)
from physnet.train.gns_eval import evaluate, free_fall_response, report_line, rollout_errors, selection_score

__all__ = ["GNSTask", "build_from_data", "check_body_acceleration", "train_gns"]


class GNSTask(pl.LightningModule):
    """One-step acceleration loss with random-walk input noise (paper Sec. 4), with two options.

    Pushforward (Brandstetter, Worrall & Welling, "Message Passing Neural PDE Solvers", ICLR
    2022, Sec. 2.3; for particles as in LagrangeBench, Toshev et al., NeurIPS 2023): with
    probability ``pushforward_prob`` (after ``pushforward_start_step`` steps) a batch's noisy
    window is first advanced ``u ~ U{1..pushforward_unroll}`` steps by the model itself,
    without gradient, and the target is the acceleration whose Euler step from that window
    lands on the true next position, so the model trains on its own errors.

    Wall excursions (a deviation): in the batches not pushed forward, each particle within
    ``wall_excursion_depth`` of a wall is, with probability ``wall_excursion_prob``, moved with
    its whole window along the wall's outward normal until its last position is ``u ~ U(0,
    wall_excursion_depth)`` behind the wall (velocities kept), and trained to land on its true
    next position. The data have no particle behind a wall; rollouts do.

    Args:
        model: the :class:`GNS` to train (statistics already fitted).
        lr, min_lr, lr_decay_steps, noise_std, pushforward_*, wall_excursion_*: the fields of
            :class:`physnet.train.config.GNSTaskConfig` (units and the paper's values there).
            With ``pushforward_unroll = U > 0`` the training batches need ``K.FUTURE_POS``
            with ``U`` frames (``WindowDataset(future=U)``).
        seed: seed of the generators that draw the unroll lengths and the wall excursions.
    """

    def __init__(
        self,
        model: GNS,
        lr: float = 1e-4,
        min_lr: float = 1e-6,
        lr_decay_steps: float = 5e6,
        noise_std: float = 6.7e-4,
        pushforward_unroll: int = 0,
        pushforward_prob: float = 0.5,
        pushforward_start_step: int = 0,
        wall_excursion_prob: float = 0.0,
        wall_excursion_depth: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 <= wall_excursion_prob <= 1.0:
            raise ValueError(f"wall_excursion_prob must lie in [0, 1], got {wall_excursion_prob}")
        if wall_excursion_prob > 0 and not wall_excursion_depth > 0:
            raise ValueError(
                "wall_excursion_prob > 0 needs wall_excursion_depth > 0 (length unit), "
                f"got {wall_excursion_depth}"
            )
        if pushforward_unroll < 0:
            raise ValueError(f"pushforward_unroll must be >= 0 steps, got {pushforward_unroll}")
        if not 0.0 <= pushforward_prob <= 1.0:
            raise ValueError(f"pushforward_prob must lie in [0, 1], got {pushforward_prob}")
        self.model = model
        self.lr, self.min_lr, self.lr_decay_steps, self.noise_std = lr, min_lr, lr_decay_steps, noise_std
        self.pushforward_unroll, self.pushforward_prob = pushforward_unroll, pushforward_prob
        self.pushforward_start_step = pushforward_start_step
        self._unroll_generator = torch.Generator().manual_seed(seed)
        self.wall_excursion_prob, self.wall_excursion_depth = (
            float(wall_excursion_prob),
            float(wall_excursion_depth),
        )
        self._excursion_generator = torch.Generator().manual_seed(seed + 1)
        self._rollouts: list[dict[str, float]] = []  # this validation's rollout scores
        self.validation_history: dict[int, dict[str, float]] = {}  # step -> rollout summary

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(batch)

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Normalised-acceleration squared error, summed over components, mean over particles."""
        return ((pred - target) / self.model.acc_std).pow(2).sum(-1).mean()

    def sample_unroll(self, step: int) -> int:
        """Number of pushforward steps for the batch at optimiser step ``step`` (0 = plain)."""
        if self.pushforward_unroll == 0 or step < self.pushforward_start_step:
            return 0
        draw = torch.rand(1, generator=self._unroll_generator, dtype=torch.float64)
        if float(draw) >= self.pushforward_prob:
            return 0
        return int(torch.randint(1, self.pushforward_unroll + 1, (1,), generator=self._unroll_generator))

    @torch.no_grad()
    def push_forward(
        self, batch: dict[str, torch.Tensor], window: torch.Tensor, unroll: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Advance ``window`` [n, C, dim] ``unroll`` steps with the model (no gradient).

        Returns:
            the model's window [n, C, dim] after ``unroll`` steps, the ground truth of the
            same frames [n, C, dim] and the true frame after them [n, dim].
        """
        if unroll > 0 and (K.FUTURE_POS not in batch or batch[K.FUTURE_POS].shape[1] < unroll):
            raise ValueError(
                f"pushforward by {unroll} steps needs {unroll} frames after the target in the batch "
                "(WindowDataset(..., future=U))"
            )
        frames = [batch[K.POS_HISTORY], batch[K.NEXT_POS][:, None]]
        if K.FUTURE_POS in batch:
            frames.append(batch[K.FUTURE_POS])
        truth = torch.cat(frames, dim=1)  # [n, C + 1 + U, dim]
        for _ in range(unroll):
            acceleration = self.model({**batch, K.POS_HISTORY: window})
            window = torch.cat([window[:, 1:], euler_step(window, acceleration)[:, None]], dim=1)
        c = window.shape[1]
        return window, truth[:, unroll : unroll + c], truth[:, unroll + c]

    def training_example(
        self, batch: dict[str, torch.Tensor], unroll: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Input window, target acceleration and the input's error for one training batch.

        Returns:
            inputs [n, C, dim], target [n, dim] (length / frame^2) and the input window's
            deviation from the true frames [n, C, dim] (noise plus the model's own error).
        """
        history, next_pos = batch[K.POS_HISTORY], batch[K.NEXT_POS]
        noise = random_walk_noise(history, self.noise_std)
        if unroll == 0:
            target = noisy_target_acceleration(history, next_pos, noise)
            if self.wall_excursion_prob == 0.0:
                return history + noise, target, noise
            inputs, moved = self.wall_excursion(history + noise)
            landing = landing_acceleration(inputs, next_pos)  # Euler step onto the true next position
            return inputs, torch.where(moved[:, None], landing, target), inputs - history
        inputs, history, next_pos = self.push_forward(batch, history + noise, unroll)
        return inputs, landing_acceleration(inputs, next_pos), inputs - history

    @torch.no_grad()
    def wall_excursion(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Move some particles near a wall behind it (see the class).

        Returns:
            the window [n, C, dim] and [n] bool, which particles moved.
        """
        n = window.shape[0]
        distance, wall = wall_distances(window[:, -1], self.model.bounds).min(dim=-1)  # [n] nearest wall
        draw = torch.rand(n, 2, generator=self._excursion_generator, dtype=torch.float64)
        draw = draw.to(device=window.device, dtype=window.dtype)
        moved = (distance < self.wall_excursion_depth) & (draw[:, 0] < self.wall_excursion_prob)
        shift = (distance + draw[:, 1] * self.wall_excursion_depth) * moved  # [n] length unit
        normal = wall_normals(window.shape[-1], window.dtype, window.device)[wall]  # [n, dim] outward
        return window + (shift[:, None] * normal)[:, None, :], moved

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        unroll = self.sample_unroll(self.global_step)
        inputs, target, error = self.training_example(batch, unroll)
        loss = self.loss(self.model({**batch, K.POS_HISTORY: inputs}), target)
        log = {"on_step": True, "on_epoch": False, "batch_size": n_windows(batch)}
        if self.pushforward_unroll:
            self.log("train/unroll", float(unroll), **log)
            self.log("train/input_error", error[:, -1].pow(2).sum(-1).mean().sqrt(), **log)
        self.log("train/loss", loss, prog_bar=True, **log)
        self.log("lr", self.lr_at(self.global_step), **log)
        return loss

    def validation_step(
        self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Loader 0: one-step windows (loss, one-step MSE); loader 1: whole-trajectory rollouts."""
        if dataloader_idx == 1:
            self._validation_rollout(batch)
            return
        history, truth = batch[K.POS_HISTORY], batch[K.NEXT_POS]
        pred = self.model(batch)
        values = {
            "loss": self.loss(pred, landing_acceleration(history, truth)),
            "one_step_mse": (euler_step(history, pred) - truth).pow(2).mean(),
            "cv_one_step_mse": (2 * history[:, -1] - history[:, -2] - truth).pow(2).mean(),
        }
        self._log_val(values, "loss", n_windows(batch))

    def _log_val(self, values: dict[str, Any], prog_bar: str, batch_size: int) -> None:
        for name, value in values.items():
            self.log(
                f"val/{name}",
                value,
                prog_bar=name == prog_bar,
                on_step=False,
                on_epoch=True,
                batch_size=batch_size,
                add_dataloader_idx=False,
            )

    def _validation_rollout(self, item: dict[str, torch.Tensor]) -> None:
        """Roll one validation trajectory out and log (means over the trajectories) ``val/<key>`` of
        :func:`~physnet.train.gns_eval.rollout_errors`, ``val/free_fall_ratio``, ``val/diverged``
        (fraction) and ``val/compression`` (peak neighbours per particle over the truth's)."""
        errors = rollout_errors(self.model, item[K.TRAJECTORY], item[K.Z])
        errors["diverged"] = float(errors["diverged_at_step"] >= 0)
        errors["compression"] = errors["peak_neighbours"] / max(errors["true_peak_neighbours"], 1e-300)
        errors["n_steps"] = float(item[K.TRAJECTORY].shape[0] - self.model.window)
        self._rollouts.append(errors)
        keys = ("rollout_mse", "cv_rollout_mse", "escaped_particles", "escaped_beyond_tolerance", "diverged")
        values = {k: float(errors[k]) for k in (*keys, "compression")}
        free_fall = free_fall_response(self.model, item[K.TRAJECTORY], item[K.Z])["free_fall_ratio"]
        if not math.isnan(free_fall):  # a trajectory without a free-fall frame says nothing
            values["free_fall_ratio"] = free_fall
        self._log_val(values, "rollout_mse", 1)

    def on_validation_epoch_start(self) -> None:
        self._rollouts = []

    def on_validation_epoch_end(self) -> None:
        """Log ``val/selection_score``; print one progress line per validation."""
        if self._rollouts:
            score = selection_score(self._rollouts)
            self.log("val/selection_score", score, on_step=False, on_epoch=True, batch_size=1)
            self.validation_history[self.global_step] = {
                "selection_score": score,
                "rollout_mse": float(np.mean([r["rollout_mse"] for r in self._rollouts])),
                "diverged": int(sum(r["diverged"] for r in self._rollouts)),
                "compression": float(np.mean([r["compression"] for r in self._rollouts])),
            }
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        m = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("val/")}
        print(_validation_line(self.global_step, m), flush=True)

    def lr_at(self, step: int) -> float:
        """``min_lr + (lr - min_lr) 0.1^(step / lr_decay_steps)`` (paper Sec. 4)."""
        return self.min_lr + (self.lr - self.min_lr) * 0.1 ** (step / self.lr_decay_steps)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.Adam(self.model.parameters(), lr=self.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: self.lr_at(step) / self.lr)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _validation_line(step: int, m: dict[str, float]) -> str:
    """One line of validation metrics ``m`` (``val/...``) for the log of a long run."""
    r = {k[4:]: v for k, v in m.items() if k.startswith("val/")}
    line = f"step {step}: val " + report_line(r, "0.1 R")
    if r.get("diverged", 0.0) > 0:
        line += f"; {100 * r['diverged']:.0f} % of the rollouts diverged (particles clumped or ran away)"
    return line


# --------------------------------------------------------------------------- training

# what a GNS run leaves in its directory (see physnet.train.runner.guard_run_dir)
RUN_RESULTS = ("gns.pt", "config.yaml", "test_metrics.json")


def build_from_data(cfg: GNSRunConfig, train: Trajectories) -> GNS:
    """Build the simulator: box, type count and frame step from the data unless the config gives them."""
    hparams = {k: v for k, v in cfg.model.items() if k != "name"}
    hparams.setdefault("dim", int(train.positions[0].shape[-1]))
    hparams.setdefault("bounds", train.bounds.tolist())
    hparams.setdefault("n_particle_types", int(max(int(t.max()) for t in train.particle_type)) + 1)
    hparams.setdefault("noise_std", cfg.task.noise_std)
    hparams.setdefault("frame_dt", train.frame_dt)
    model = build_simulator(cfg.model.get("name", "gns"), **hparams)
    if not isinstance(model, GNS):
        raise ValueError(f"physnet gns-train trains GNS models, got {type(model).__name__}")
    check_body_acceleration(model, train)
    model.fit_statistics(train.positions)
    return model


def check_body_acceleration(model: GNS, train: Trajectories, rtol: float = 0.05) -> None:
    """Raise ``ValueError`` if the model's ``body_acceleration`` (length / frame^2: ``[0, -g dt^2]``
    depends on the frame step) differs by more than ``rtol`` of its size from the mean acceleration
    of the training data's free-fall frames (:func:`~physnet.sim.frames.free_fall_acceleration`)."""
    if model.body_acceleration is None:
        return
    measured, frames = free_fall_acceleration(train.positions)
    if frames == 0:
        return
    body = torch.tensor(model.body_acceleration, dtype=torch.float64)
    if float(torch.linalg.vector_norm(body - measured)) > rtol * float(torch.linalg.vector_norm(measured)):
        found = ", ".join(f"{v:.4g}" for v in measured.tolist())
        raise ValueError(
            f"model.body_acceleration={list(model.body_acceleration)} (length / frame^2) but the "
            f"{frames} free-fall frames of the training data accelerate at [{found}] (frame step "
            f"{train.frame_dt} s); set model.body_acceleration=[{found}], i.e. [0, -g dt^2] for "
            "this frame step"
        )


def _trainer(cfg: GNSRunConfig, run_dir: Path, val_every: int | None, resume: bool) -> tuple[pl.Trainer, Any]:
    """The Lightning trainer with its callbacks; returns it and the best-model checkpoint (or None)."""
    from physnet.train.runner import best_checkpoint, last_checkpoint, make_trainer

    # with EMA, validation and checkpoints both see the averaged weights
    best = best_checkpoint(run_dir, "val/selection_score", save_last=False) if cfg.data.val_rollouts else None
    trainer = make_trainer(
        cfg.trainer,
        run_dir,
        [last_checkpoint(cfg.trainer, run_dir), *([best] if best else [])],
        ema_decay=cfg.task.ema_decay,
        resume=resume,
        val_check_interval=val_every,
        limit_val_batches=1.0 if val_every is not None else 0,
        num_sanity_val_steps=0,
    )
    return trainer, best


def _load_best(task: GNSTask, best: Any, n_rollouts: int) -> dict[str, Any]:
    """Load the best validated weights into ``task``; returns what the report says about them."""
    from physnet.train.runner import load_best

    step = int(load_best(task, best)["global_step"])
    nan = float("nan")  # a validation this process did not run
    chosen = task.validation_history.get(step, {"rollout_mse": nan, "diverged": -1, "compression": nan})
    print(
        f"selected the step-{step} model: mean validation rollout MSE {chosen['rollout_mse']:.3e} over "
        f"{n_rollouts} trajectories ({chosen['diverged']} diverged)",
        flush=True,
    )
    return {
        "checkpoint": str(best.best_model_path),
        "step": step,
        "val_selection_score": float(best.best_model_score),
        **{f"val_{k}": chosen[k] for k in ("rollout_mse", "compression")},
        "val_diverged_rollouts": chosen["diverged"],
        "val_rollouts": n_rollouts,
    }


def train_gns(
    cfg: GNSRunConfig,
    resume: bool = False,
    overwrite: bool = False,
    config_file: str | os.PathLike | None = None,
) -> Path:
    """Train (or resume) a GNS, save ``gns.pt`` and evaluate on the test file; returns the run directory.

    The run directory is guarded by :func:`physnet.train.runner.guard_run_dir`. ``resume``
    continues from ``checkpoints/last.ckpt``; the random draws of noise, unrolls and excursions
    restart from the seed, so a resumed run is not bitwise the uninterrupted one.
    """
    from physnet.train.runner import guard_run_dir, resume_from, say, start_run, torch_dtype, write_run_config

    if not cfg.data.train:
        example = "data.train=downloads/gns_water/train.npz"
        raise ValueError(f"data.train is empty: give the training trajectories, e.g. {example}")
    run_dir, t = Path(cfg.run_dir), cfg.trainer
    dtype = torch_dtype(t)
    guard_run_dir(run_dir, resume, overwrite, RUN_RESULTS, config_file)
    start_run(t)
    started = time.perf_counter()
    train_data = load_trajectories(cfg.data.train, dtype)
    model = build_from_data(cfg, train_data).to(dtype)
    write_run_config(run_dir, {**cfg.to_dict(), "model": dict(model.hparams)})
    d = cfg.data
    if d.val_rollouts and not d.valid:
        raise ValueError("data.val_rollouts needs validation trajectories: set data.valid=<file.npz>")
    valid = load_trajectories(d.valid, dtype) if d.valid else None
    options = (d.batch_size, t.seed, cfg.task.pushforward_unroll, valid, d.val_stride, d.val_rollouts)
    train_loader, val_loader = window_loaders(train_data, model.window, *options)
    say(
        f"data: {len(train_data)} training trajectories, {len(train_loader.dataset)} windows; model "
        f"{sum(p.numel() for p in model.parameters())} parameters; vel std {model.vel_std.tolist()}, "
        f"acc std {model.acc_std.tolist()} (length/frame, /frame^2)"
    )
    fields = ("lr", "min_lr", "lr_decay_steps", "noise_std", "wall_excursion_prob", "wall_excursion_depth")
    fields += ("pushforward_unroll", "pushforward_prob", "pushforward_start_step")
    task = GNSTask(model, seed=t.seed, **{k: getattr(cfg.task, k) for k in fields})
    val_every = None if val_loader is None else min(cfg.task.val_every_n_steps, len(train_loader))
    trainer, best = _trainer(cfg, run_dir, val_every, resume)
    trainer.fit(task, train_loader, val_loader, ckpt_path=resume_from(run_dir, resume))
    if trainer.global_rank != 0:
        return run_dir
    report: dict[str, Any] = {
        "optimizer_steps": trainer.global_step,
        "train_wall_time_s": round(time.perf_counter() - started, 1),
    }
    if best is not None and best.best_model_path:
        report["selected"] = _load_best(task, best, len(val_loader[1]))
    model = task.model.eval()
    model.save(run_dir / "gns.pt")
    print(
        f"trained {trainer.global_step} steps in {report['train_wall_time_s']} s; "
        f"model -> {run_dir / 'gns.pt'}"
    )
    if cfg.data.test:
        test = load_trajectories(cfg.data.test, dtype)
        n_eval = cfg.data.eval_trajectories or len(test)
        report["test"] = evaluate(model, test, list(range(min(n_eval, len(test)))))
    (run_dir / "test_metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    return run_dir
