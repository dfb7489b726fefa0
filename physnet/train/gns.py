"""Training, evaluation and animation of the GNS learned simulator.

``physnet gns-train CONFIG.yaml [section.key=value ...]`` calls :func:`train_gns`;
``physnet gns-rollout MODEL DATA`` calls :func:`evaluate` (and :func:`animate`).

Data: an ``.npz`` of particle trajectories from ``scripts/generate_mpm_water.py``
(``positions_<k>`` [frames, n_k, dim], ``particle_type_<k>`` [n_k], ``bounds`` [dim, 2],
``frame_dt``); see :func:`load_trajectories`. Train, validation and test are separate
files of separate trajectories (generated with different seeds), as in the paper's
data sets.

Training (Sanchez-Gonzalez et al., ICML 2020, Sec. 4 "Training"): windows of ``C + 1``
consecutive frames; random-walk noise on the ``C`` input positions with the target
corrected (:func:`physnet.models.gns.random_walk_noise`,
:func:`~physnet.models.gns.noisy_target_acceleration`); loss = squared error of the
normalised acceleration, summed over components and averaged over particles (as in
``learning_to_simulate/train.py``); Adam with the paper's exponential learning-rate
decay ``lr(k) = min_lr + (lr - min_lr) 0.1^(k / lr_decay_steps)``.

A run directory holds ``config.yaml``, ``logs/metrics.csv``, ``checkpoints/last.ckpt``,
the self-contained ``gns.pt`` (:func:`physnet.models.load_simulator`) and
``test_metrics.json`` (:func:`evaluate` on the test file).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import yaml

from physnet.data import keys as K
from physnet.models.gns import (
    GNS,
    RolloutDiverged,
    constant_velocity_rollout,
    euler_step,
    noisy_target_acceleration,
    random_walk_noise,
    rollout,
)
from physnet.models.simulator import build_simulator
from physnet.train.config import TrainerConfig, _coerce, apply_tf32, read_raw

__all__ = [
    "Trajectories",
    "load_trajectories",
    "WindowDataset",
    "collate_windows",
    "RolloutDataset",
    "rollout_errors",
    "selection_score",
    "peak_neighbours",
    "free_fall_response",
    "is_free_fall",
    "GNSTask",
    "GNSDataConfig",
    "GNSTaskConfig",
    "GNSRunConfig",
    "load_gns_config",
    "train_gns",
    "evaluate",
    "animate",
]


# --------------------------------------------------------------------------- data


@dataclass
class Trajectories:
    """Particle trajectories of one file.

    Attributes:
        positions: per trajectory [n_frames, n_particles, dim] float tensors (length unit).
        particle_type: per trajectory [n_particles] long tensors.
        bounds: [dim, 2] domain ``[[lo, hi], ...]`` (length unit).
        frame_dt: time between frames (s), for the animation's clock only.
    """

    positions: list[torch.Tensor]
    particle_type: list[torch.Tensor]
    bounds: np.ndarray
    frame_dt: float

    def __len__(self) -> int:
        return len(self.positions)


def load_trajectories(path: str | os.PathLike, dtype: torch.dtype = torch.float32) -> Trajectories:
    """Read an ``.npz`` written by ``scripts/generate_mpm_water.py``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"trajectory file {path} does not exist; make it with scripts/generate_mpm_water.py --out {path}"
        )
    with np.load(path, allow_pickle=False) as raw:
        n = sum(1 for key in raw.files if key.startswith("positions_"))
        if n == 0:
            raise ValueError(f"{path} holds no positions_<k> arrays")
        positions = [torch.as_tensor(raw[f"positions_{k}"], dtype=dtype) for k in range(n)]
        types = [torch.as_tensor(raw[f"particle_type_{k}"], dtype=torch.long) for k in range(n)]
        return Trajectories(positions, types, np.asarray(raw["bounds"], dtype=float), float(raw["frame_dt"]))


class WindowDataset(torch.utils.data.Dataset):
    """All windows of ``window + 1`` consecutive frames of some trajectories.

    Item ``(k, t)`` holds ``K.POS_HISTORY`` = frames ``t .. t + window - 1`` as [n, window, dim],
    ``K.NEXT_POS`` = frame ``t + window`` [n, dim] and ``K.Z`` [n]; with ``future = U > 0`` also
    ``K.FUTURE_POS`` = frames ``t + window + 1 .. t + window + U`` as [n, U, dim] (the targets
    of pushforward training, :meth:`GNSTask.push_forward`), and only windows that have them.

    Args:
        data: the trajectories.
        window: ``C``, the model's input length.
        stride: keep every ``stride``-th window start (1 = all).
        future: ``U``, frames after the target to include.
    """

    def __init__(self, data: Trajectories, window: int, stride: int = 1, future: int = 0) -> None:
        if future < 0:
            raise ValueError(f"future must be >= 0 frames, got {future}")
        self.data = data
        self.window = window
        self.future = future
        self.index = [
            (k, t)
            for k, pos in enumerate(data.positions)
            for t in range(0, pos.shape[0] - window - future, stride)
        ]

    def __len__(self) -> int:
        return len(self.index)

    def acceleration_weights(
        self, acc_mean: torch.Tensor, acc_std: torch.Tensor, strength: float
    ) -> torch.Tensor:
        """Sampling weights [len(self)] that favour windows with violent motion (impacts, splashes).

        The weight of a window is ``1 + strength * e / mean(e)``, where ``e`` is its target
        acceleration's mean square over particles in the model's normalised units,
        ``|(a - acc_mean) / acc_std|^2`` (the part of the loss a constant prediction would
        leave). ``strength = 0`` gives uniform sampling.

        Args:
            acc_mean, acc_std: [dim] the model's acceleration statistics (length / frame^2).
            strength: >= 0.
        """
        if strength < 0:
            raise ValueError(f"acceleration sampling strength must be >= 0, got {strength}")
        energy = []
        per_traj: dict[int, torch.Tensor] = {}
        for k, t in self.index:
            if k not in per_traj:
                x = self.data.positions[k].to(torch.float64)  # [T, n, dim]
                a = x[2:] - 2 * x[1:-1] + x[:-2]  # [T-2, n, dim]; a[s] is the acceleration at frame s + 1
                a = (a - acc_mean.to(a)) / acc_std.to(a)
                per_traj[k] = a.pow(2).sum(-1).mean(-1)  # [T-2]
            energy.append(per_traj[k][t + self.window - 2])  # target: frame t + C - 1 -> t + C
        e = torch.stack(energy)
        return 1.0 + strength * e / e.mean().clamp_min(1e-300)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        k, t = self.index[item]
        pos = self.data.positions[k]
        item = {
            K.POS_HISTORY: pos[t : t + self.window].transpose(0, 1).contiguous(),  # [n, C, dim]
            K.NEXT_POS: pos[t + self.window],  # [n, dim]
            K.Z: self.data.particle_type[k],
        }
        if self.future:
            start = t + self.window + 1
            item[K.FUTURE_POS] = pos[start : start + self.future].transpose(0, 1).contiguous()  # [n, U, dim]
        return item


class RolloutDataset(torch.utils.data.Dataset):
    """Whole trajectories for validation rollouts: item ``k`` is trajectory ``k``.

    Item ``k`` holds ``K.TRAJECTORY`` [n_frames, n, dim] and ``K.Z`` [n]; use it with
    ``DataLoader(..., batch_size=None)`` (no collation).

    Args:
        data: the trajectories.
        n: how many (the first ``n``; 0 = all).
    """

    def __init__(self, data: Trajectories, n: int = 0) -> None:
        self.data = data
        self.n = len(data) if n <= 0 else min(n, len(data))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        return {K.TRAJECTORY: self.data.positions[k], K.Z: self.data.particle_type[k]}


def collate_windows(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate particles of several windows and add ``K.BATCH`` [n_total] and
    ``K.N_ATOMS`` [n_windows] (particles per window)."""
    out = {key: torch.cat([it[key] for it in items]) for key in items[0]}
    counts = torch.tensor([it[K.Z].shape[0] for it in items])
    out[K.BATCH] = torch.repeat_interleave(torch.arange(len(items)), counts)
    out[K.N_ATOMS] = counts
    return out


# --------------------------------------------------------------------------- task


PUSHFORWARD_TARGETS = ("velocity", "position")


class GNSTask(pl.LightningModule):
    """One-step acceleration loss with random-walk input noise (paper Sec. 4), optionally
    on the model's own unrolled predictions (pushforward).

    Pushforward (Brandstetter, Worrall & Welling, "Message Passing Neural PDE Solvers",
    ICLR 2022, Sec. 2.3; for particles as in LagrangeBench, Toshev et al., NeurIPS 2023):
    with probability ``pushforward_prob`` (after ``pushforward_start_step`` steps) a batch's
    noisy window is first advanced ``u ~ U{1..pushforward_unroll}`` steps by the model
    itself, without gradient, and the loss is taken on the next step from that window,
    so the model trains on the errors it makes rather than only on Gaussian noise.
    ``pushforward_target`` says what the target corrects: ``"velocity"`` (as the noise
    correction, :func:`~physnet.models.gns.noisy_target_acceleration`: the Euler step
    reproduces the true next velocity, the drifted positions stay) or ``"position"`` (the
    Euler step lands on the true next position, pulling the drift back).

    Args:
        model: the :class:`GNS` to train (statistics already fitted).
        lr: initial Adam learning rate. Paper: 1e-4.
        min_lr: final learning rate. Paper: 1e-6.
        lr_decay_steps: steps over which ``lr - min_lr`` shrinks tenfold. Paper: 5e6.
        noise_std: std of the noise on the most recent input position (length unit). Paper: 6.7e-4.
        pushforward_unroll: largest number of unrolled steps ``U`` (0 = no pushforward); the
            training batches need ``K.FUTURE_POS`` with ``U`` frames (``WindowDataset(future=U)``).
        pushforward_prob: probability that a batch is pushed forward.
        pushforward_start_step: optimiser steps of plain training before the first pushforward.
        pushforward_target: ``"velocity"`` or ``"position"``, see above.
        huber_delta: 0 (default): the paper's squared error of the normalised acceleration.
            ``> 0``: a Huber loss on each particle's normalised error norm ``r``: ``r^2`` for
            ``r <= delta``, ``2 delta r - delta^2`` beyond, so that the rare violent
            accelerations (wall impacts) pull with a bounded gradient and do not drown the
            small, common ones such as gravity in free flight
            (``scripts/gns_loss_breakdown.py`` measures the split).
        wall_excursion_prob: in the batches that are not pushed forward, the probability
            that a particle within ``wall_excursion_depth`` of a wall is moved behind it (0 =
            off; a deviation from the paper). Its whole window moves along the wall's outward
            normal (its velocities stay) until the last position is ``u ~ U(0,
            wall_excursion_depth)`` behind the wall, and its target is the acceleration that
            lands the Euler step on its true next position. The training frames have no
            particle behind a wall (the MPM solver clamps them into the box) beyond what the
            input noise puts there, yet rollouts carry particles centimetres through the
            walls; this gives the model examples of bringing them back. Use it with inputs
            that say how far behind the wall a particle is (``wall_features`` or the model's
            ``signed_wall_distance``).
        wall_excursion_depth: the largest depth behind a wall (length unit).
        wall_penalty: weight ``lambda >= 0`` of a hinge on landing behind a wall (0 = off; a
            deviation from the paper). The loss gains ``lambda * mean_i sum_d (max(0, o_d(x_i)
            - o_d(y_i)) / acc_std_d)^2``, where ``o_d`` is how far a position lies outside
            the domain along axis ``d``, ``x_i`` the Euler step with the predicted
            acceleration and ``y_i`` the one with the target (:meth:`outside_penalty`).
            It is zero at the target and wherever the prediction lands no further out than
            the target does, so the optimum is unchanged; an overshoot through a wall costs
            ``1 + lambda`` times an error of the same size into the box. Rollouts carry
            particles a few mm through the walls for one to three frames when the model
            brakes a fast particle too little (``scripts/gns_wall_penetration.py --all``).
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
        pushforward_target: str = "velocity",
        huber_delta: float = 0.0,
        wall_excursion_prob: float = 0.0,
        wall_excursion_depth: float = 0.0,
        wall_penalty: float = 0.0,
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
        if not wall_penalty >= 0.0:
            raise ValueError(f"wall_penalty must be >= 0 (0 = off), got {wall_penalty}")
        if not huber_delta >= 0.0:
            raise ValueError(f"huber_delta must be >= 0 (0 = squared error), got {huber_delta}")
        if pushforward_unroll < 0:
            raise ValueError(f"pushforward_unroll must be >= 0 steps, got {pushforward_unroll}")
        if not 0.0 <= pushforward_prob <= 1.0:
            raise ValueError(f"pushforward_prob must lie in [0, 1], got {pushforward_prob}")
        if pushforward_target not in PUSHFORWARD_TARGETS:
            raise ValueError(
                f"pushforward_target must be one of {PUSHFORWARD_TARGETS}, got {pushforward_target!r}"
            )
        self.model = model
        self.lr = lr
        self.min_lr = min_lr
        self.lr_decay_steps = lr_decay_steps
        self.noise_std = noise_std
        self.pushforward_unroll = pushforward_unroll
        self.pushforward_prob = pushforward_prob
        self.pushforward_start_step = pushforward_start_step
        self.pushforward_target = pushforward_target
        self.huber_delta = float(huber_delta)
        self._unroll_generator = torch.Generator().manual_seed(seed)
        self.wall_excursion_prob = float(wall_excursion_prob)
        self.wall_excursion_depth = float(wall_excursion_depth)
        self._excursion_generator = torch.Generator().manual_seed(seed + 1)
        self.wall_penalty = float(wall_penalty)
        self._rollouts: list[dict[str, float]] = []  # this validation's rollout scores
        self.validation_history: dict[int, dict[str, float]] = {}  # step -> rollout summary

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(batch)

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Normalised-acceleration squared error, summed over components, mean over particles
        (Huber beyond ``huber_delta`` when that is > 0)."""
        sq = ((pred - target) / self.model.acc_std).pow(2).sum(-1)  # [n] r^2
        if self.huber_delta == 0.0:
            return sq.mean()
        d = self.huber_delta
        r = sq.clamp_min(1e-30).sqrt()
        return torch.where(r <= d, sq, 2 * d * r - d * d).mean()

    def outside_penalty(self, inputs: torch.Tensor, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Hinge on predicted positions that land further outside the domain than the target's.

        Args:
            inputs: [n, C, dim] input window (length unit).
            pred, target: [n, dim] predicted and target accelerations (length / frame^2).

        Returns:
            scalar ``mean_i sum_d (max(0, o_d(x_i) - o_d(y_i)) / acc_std_d)^2``, ``o_d`` the
            distance outside the domain along axis ``d`` (0 inside), ``x_i`` / ``y_i`` the
            Euler steps with ``pred`` / ``target`` (see ``wall_penalty``).
        """
        bounds = self.model.bounds.to(pred.dtype)

        def outside(x: torch.Tensor) -> torch.Tensor:  # [n, dim] -> [n, dim]
            return (bounds[:, 0] - x).clamp_min(0.0) + (x - bounds[:, 1]).clamp_min(0.0)

        beyond = (outside(euler_step(inputs, pred)) - outside(euler_step(inputs, target))).clamp_min(0.0)
        return (beyond / self.model.acc_std).pow(2).sum(-1).mean()

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

        The window gets random-walk noise; with ``unroll > 0`` it is then advanced ``unroll``
        steps by the model (:meth:`push_forward`) and the target is corrected as
        ``pushforward_target`` says.

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
            landing = next_pos - 2 * inputs[:, -1] + inputs[:, -2]  # Euler step onto the true next position
            return inputs, torch.where(moved[:, None], landing, target), inputs - history
        inputs, history, next_pos = self.push_forward(batch, history + noise, unroll)
        if self.pushforward_target == "velocity":
            target = noisy_target_acceleration(history, next_pos, inputs - history)
        else:
            target = next_pos - 2 * inputs[:, -1] + inputs[:, -2]
        return inputs, target, inputs - history

    @torch.no_grad()
    def wall_excursion(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Move some particles near a wall behind it (``wall_excursion_prob``).

        Args:
            window: [n, C, dim] input positions.

        Returns:
            the window [n, C, dim] with each chosen particle's positions moved along the
            outward normal of its nearest wall until its last position is ``u ~ U(0,
            wall_excursion_depth)`` behind that wall, and [n] bool, which particles moved.
        """
        n, _, dim = window.shape
        bounds = self.model.bounds.to(window.dtype)
        last = window[:, -1]
        inside = torch.cat([last - bounds[:, 0], bounds[:, 1] - last], dim=-1)  # [n, 2 dim]
        distance, wall = inside.min(dim=-1)  # [n] to the nearest wall (negative: already behind)
        draw = torch.rand(n, 2, generator=self._excursion_generator, dtype=torch.float64)
        draw = draw.to(device=window.device, dtype=window.dtype)
        moved = (distance < self.wall_excursion_depth) & (draw[:, 0] < self.wall_excursion_prob)
        shift = (distance + draw[:, 1] * self.wall_excursion_depth) * moved  # [n] length unit
        outward = torch.where(wall < dim, -1.0, 1.0).to(window.dtype)
        normal = torch.nn.functional.one_hot(wall % dim, dim).to(window.dtype) * outward[:, None]  # [n, dim]
        return window + (shift[:, None] * normal)[:, None, :], moved

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        unroll = self.sample_unroll(self.global_step)
        inputs, target, error = self.training_example(batch, unroll)
        pred = self.model({**batch, K.POS_HISTORY: inputs})
        loss = self.loss(pred, target)
        # from a shape, not the data: no host sync in the step
        n_systems = batch[K.N_ATOMS].shape[0] if K.N_ATOMS in batch else int(batch[K.BATCH][-1]) + 1
        if self.wall_penalty:
            penalty = self.outside_penalty(inputs, pred, target)
            self.log("train/wall_penalty", penalty, on_step=True, on_epoch=False, batch_size=n_systems)
            loss = loss + self.wall_penalty * penalty
        if self.pushforward_unroll:
            rms = error[:, -1].pow(2).sum(-1).mean().sqrt()
            self.log("train/unroll", float(unroll), on_step=True, on_epoch=False, batch_size=n_systems)
            self.log("train/input_error", rms, on_step=True, on_epoch=False, batch_size=n_systems)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=n_systems)
        self.log("lr", self.lr_at(self.global_step), on_step=True, on_epoch=False, batch_size=n_systems)
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
        target = truth - 2 * history[:, -1] + history[:, -2]
        n_systems = int(batch[K.BATCH][-1]) + 1
        mse = (euler_step(history, pred) - truth).pow(2).mean()
        baseline = (2 * history[:, -1] - history[:, -2] - truth).pow(2).mean()
        for name, value in (
            ("loss", self.loss(pred, target)),
            ("one_step_mse", mse),
            ("cv_one_step_mse", baseline),
        ):
            self.log(
                f"val/{name}",
                value,
                prog_bar=name == "loss",
                on_step=False,
                on_epoch=True,
                batch_size=n_systems,
                add_dataloader_idx=False,
            )

    def _validation_rollout(self, item: dict[str, torch.Tensor]) -> None:
        """Roll one validation trajectory out from its first ``C`` frames; log rollout MSEs.

        Logged means over the validation trajectories: ``val/rollout_mse`` (length unit^2;
        inf if a rollout diverged), ``val/escaped_particles`` (particles that left the
        domain), ``val/escaped_beyond_tolerance`` (those more than ``0.1 * radius`` outside,
        see :func:`rollout_errors`), ``val/free_fall_ratio`` (:func:`free_fall_response`, over
        the trajectories with free-fall frames), ``val/diverged`` (fraction of rollouts
        stopped because their particles clumped or ran away) and ``val/compression`` (peak neighbours per
        particle of the prediction over the truth's, 1 for a fluid as dense as the data's).
        The saved model is chosen by ``val/selection_score`` (:func:`selection_score`).
        """
        errors = rollout_errors(self.model, item[K.TRAJECTORY], item[K.Z])
        errors["diverged"] = float(errors["diverged_at_step"] >= 0)
        errors["compression"] = errors["peak_neighbours"] / max(errors["true_peak_neighbours"], 1e-300)
        errors["n_steps"] = float(item[K.TRAJECTORY].shape[0] - self.model.window)
        self._rollouts.append(errors)
        free_fall = free_fall_response(self.model, item[K.TRAJECTORY], item[K.Z])["free_fall_ratio"]
        if not math.isnan(free_fall):  # a trajectory without a free-fall frame says nothing
            self.log(
                "val/free_fall_ratio",
                free_fall,
                on_step=False,
                on_epoch=True,
                batch_size=1,
                add_dataloader_idx=False,
            )
        names = ("rollout_mse", "cv_rollout_mse", "escaped_particles", "escaped_beyond_tolerance")
        for name in names + ("diverged", "compression"):
            self.log(
                f"val/{name}",
                float(errors[name]),
                prog_bar=name == "rollout_mse",
                on_step=False,
                on_epoch=True,
                batch_size=1,
                add_dataloader_idx=False,
            )

    def on_validation_epoch_start(self) -> None:
        self._rollouts = []

    def on_validation_epoch_end(self) -> None:
        """Log ``val/selection_score``; print one progress line per validation (a 1-hour run
        without a progress bar shows it)."""
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
        line = f"step {self.global_step}: val one-step MSE {m.get('val/one_step_mse', float('nan')):.3e}"
        line += f" (constant velocity {m.get('val/cv_one_step_mse', float('nan')):.3e})"
        if "val/rollout_mse" in m:
            ratio = m["val/cv_rollout_mse"] / max(m["val/rollout_mse"], 1e-300)
            line += (
                f"; rollout MSE {m['val/rollout_mse']:.3e} (constant velocity "
                f"{m['val/cv_rollout_mse']:.3e} = {ratio:.1f}x the model's); "
                f"{m['val/escaped_particles']:.0f} particles left the domain per rollout "
                f"({m.get('val/escaped_beyond_tolerance', float('nan')):.0f} by more than 0.1 R)"
            )
            if "val/free_fall_ratio" in m:
                line += f"; free fall {m['val/free_fall_ratio']:.2f}x the true acceleration"
            compression = m.get("val/compression", float("nan"))
            line += f"; peak neighbours per particle {compression:.1f}x the truth's"
            if m.get("val/diverged", 0.0) > 0:
                share = 100 * m["val/diverged"]
                line += f"; {share:.0f} % of the rollouts diverged (particles clumped or ran away)"
        print(line, flush=True)

    def lr_at(self, step: int) -> float:
        """Learning rate after ``step`` steps: ``min_lr + (lr - min_lr) 0.1^(step / lr_decay_steps)``.

        (Sanchez-Gonzalez et al. 2020, Sec. 4; ``learning_to_simulate/train.py``.)
        """
        return self.min_lr + (self.lr - self.min_lr) * 0.1 ** (step / self.lr_decay_steps)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.Adam(self.model.parameters(), lr=self.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: self.lr_at(step) / self.lr)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


# --------------------------------------------------------------------------- config


@dataclass
class GNSDataConfig:
    """Trajectory files (``scripts/generate_mpm_water.py``) and batching."""

    train: str = ""  # .npz of training trajectories (required)
    valid: str = ""  # .npz of validation trajectories ("" = no validation)
    test: str = ""  # .npz of held-out trajectories evaluated after training ("" = none)
    batch_size: int = 2  # windows per optimiser step (paper: 2)
    val_stride: int = 10  # validate on every n-th window of the validation trajectories
    eval_trajectories: int = 0  # test trajectories to roll out after training (0 = all)
    # validation trajectories rolled out in full at every validation (0 = none); with > 0 the
    # saved gns.pt is the validated model with the lowest mean rollout MSE, not the last one
    val_rollouts: int = 0
    # draw training windows with probability 1 + s * e / mean(e), e = the window's mean squared
    # normalised target acceleration (WindowDataset.acceleration_weights); 0 = uniform shuffling
    acceleration_sampling: float = 0.0


@dataclass
class GNSTaskConfig:
    """Loss, noise and optimiser (paper Sec. 4)."""

    noise_std: float = 6.7e-4  # random-walk noise on the last input position, length unit (paper: 6.7e-4)
    lr: float = 1e-4  # initial Adam learning rate (paper: 1e-4)
    min_lr: float = 1e-6  # final learning rate (paper: 1e-6)
    lr_decay_steps: float = 5e6  # lr - min_lr shrinks 10x per this many steps (paper: 5e6)
    ema_decay: float = 0.0  # EMA of weights for validation and the saved model; 0 disables
    val_every_n_steps: int = 500  # validate every this many optimiser steps
    # pushforward (Brandstetter et al. ICLR 2022; GNSTask): train some batches on the model's own
    # unrolled window of 1..pushforward_unroll steps (0 = off), with probability pushforward_prob,
    # from step pushforward_start_step; the target corrects the "velocity" or the "position"
    pushforward_unroll: int = 0
    pushforward_prob: float = 0.5
    pushforward_start_step: int = 0
    pushforward_target: str = "velocity"
    huber_delta: float = 0.0  # > 0: Huber loss beyond this normalised error (GNSTask); 0: squared error
    # train some particles near a wall moved behind it, to be brought back (GNSTask; 0 = off)
    wall_excursion_prob: float = 0.0
    wall_excursion_depth: float = 0.0  # length unit
    wall_penalty: float = 0.0  # weight of the hinge on predictions that land behind a wall (GNSTask)


@dataclass
class GNSRunConfig:
    """A GNS training run: ``physnet gns-train CONFIG.yaml``."""

    run_dir: str = "runs/gns"
    model: dict[str, Any] = field(default_factory=lambda: {"name": "gns"})  # name + GNS keyword arguments
    data: GNSDataConfig = field(default_factory=GNSDataConfig)
    task: GNSTaskConfig = field(default_factory=GNSTaskConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTIONS = {"data": GNSDataConfig, "task": GNSTaskConfig, "trainer": TrainerConfig}


def load_gns_config(
    path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()
) -> GNSRunConfig:
    """Read a YAML config (or defaults) and apply ``section.key=value`` overrides (as ``physnet train``)."""
    raw = read_raw(path, overrides)
    unknown = set(raw) - {"run_dir", "model", *_SECTIONS}
    if unknown:
        raise ValueError(
            f"unknown config section(s) {sorted(unknown)}; allowed: run_dir, model, {sorted(_SECTIONS)}"
        )
    kwargs: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        section = raw.get(name) or {}
        if not isinstance(section, dict):
            raise ValueError(f"config section {name!r} must be a mapping, got {section!r}")
        allowed = {f.name for f in dataclasses.fields(cls)}
        bad = set(section) - allowed
        if bad:
            raise ValueError(f"unknown key(s) {sorted(bad)} in section {name!r}; allowed: {sorted(allowed)}")
        kwargs[name] = cls(**{k: _coerce(cls, name, k, v) for k, v in section.items()})
    model = {"name": "gns", **(raw.get("model") or {})}
    return GNSRunConfig(run_dir=str(raw.get("run_dir", GNSRunConfig.run_dir)), model=model, **kwargs)


# --------------------------------------------------------------------------- training


def build_from_data(cfg: GNSRunConfig, train: Trajectories) -> GNS:
    """Build the simulator: domain bounds and type count from the data unless the config gives them."""
    hparams = {k: v for k, v in cfg.model.items() if k != "name"}
    dim = int(train.positions[0].shape[-1])
    hparams.setdefault("dim", dim)
    hparams.setdefault("bounds", train.bounds.tolist())
    hparams.setdefault("n_particle_types", int(max(int(t.max()) for t in train.particle_type)) + 1)
    hparams.setdefault("noise_std", cfg.task.noise_std)
    model = build_simulator(cfg.model.get("name", "gns"), **hparams)
    if not isinstance(model, GNS):
        raise ValueError(f"physnet gns-train trains GNS models, got {type(model).__name__}")
    check_body_acceleration(model, train)
    model.fit_statistics(train.positions)
    return model


def check_body_acceleration(model: GNS, train: Trajectories, rtol: float = 0.05) -> None:
    """Compare the model's ``body_acceleration`` with the training data's free-fall frames.

    The body acceleration is in length / frame^2, so it depends on the frame step (gravity
    is ``[0, -g dt^2]``: -1.568e-4 m for 4 ms frames, -3.92e-5 m for 2 ms). In frames where
    every particle shares one acceleration (:func:`is_free_fall`) the data show it directly.

    Raises:
        ValueError: it differs from their mean acceleration by more than ``rtol`` of its size.
    """
    if model.body_acceleration is None:
        return
    total, frames = torch.zeros(model.dim, dtype=torch.float64), 0
    for x in train.positions:
        acc = (x[2:] - 2 * x[1:-1] + x[:-2]).double()  # [T - 2, n, dim]
        free = is_free_fall(acc)
        total += acc[free].mean(dim=1).sum(dim=0)
        frames += int(free.sum())
    if frames == 0:
        return
    measured = total / frames
    body = torch.tensor(model.body_acceleration, dtype=torch.float64)
    if float(torch.linalg.vector_norm(body - measured)) > rtol * float(torch.linalg.vector_norm(measured)):
        found = ", ".join(f"{v:.4g}" for v in measured.tolist())
        raise ValueError(
            f"model.body_acceleration={list(model.body_acceleration)} (length / frame^2) but the "
            f"{frames} free-fall frames of the training data accelerate at [{found}] (frame step "
            f"{train.frame_dt} s); set model.body_acceleration=[{found}], i.e. [0, -g dt^2] for "
            "this frame step, or null to learn it"
        )


def train_gns(cfg: GNSRunConfig) -> Path:
    """Train a GNS, save ``gns.pt`` and evaluate on the test file; returns the run directory."""
    from pytorch_lightning.callbacks import EMAWeightAveraging, ModelCheckpoint
    from pytorch_lightning.loggers import CSVLogger

    if not cfg.data.train:
        raise ValueError(
            "data.train is empty: give the training trajectories, e.g. data.train=runs/water/train.npz"
        )
    run_dir = Path(cfg.run_dir)
    if (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir()):
        raise FileExistsError(f"run directory {run_dir} already has checkpoints; choose another run_dir")
    t = cfg.trainer
    if t.dtype not in ("float32", "float64"):
        raise ValueError(f"trainer.dtype must be float32 or float64, got {t.dtype!r}")
    dtype = torch.float64 if t.dtype == "float64" else torch.float32
    pl.seed_everything(t.seed, workers=True, verbose=False)
    if t.threads > 0:
        torch.set_num_threads(t.threads)
    apply_tf32(t.tf32)
    started = time.perf_counter()
    train_data = load_trajectories(cfg.data.train, dtype)
    model = build_from_data(cfg, train_data).to(dtype)
    window = model.window
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = cfg.to_dict()
    resolved["model"] = {k: v for k, v in model.hparams.items()}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))
    # pushforward by u steps needs u frames after the one-step target
    train_set = WindowDataset(train_data, window, future=cfg.task.pushforward_unroll)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"data: {len(train_data)} training trajectories, {len(train_set)} windows; "
        f"model {n_params} parameters; "
        f"vel std {model.vel_std.tolist()}, acc std {model.acc_std.tolist()} (length/frame, /frame^2)",
        flush=True,
    )
    generator = torch.Generator().manual_seed(t.seed)
    sampler: torch.utils.data.Sampler[int] | None = None
    if cfg.data.acceleration_sampling:
        weights = train_set.acceleration_weights(
            model.acc_mean, model.acc_std, cfg.data.acceleration_sampling
        )
        sampler = torch.utils.data.WeightedRandomSampler(
            weights.tolist(), num_samples=len(train_set), replacement=True, generator=generator
        )
        top = weights.topk(max(len(weights) // 10, 1)).values.sum() / weights.sum()
        print(
            f"acceleration sampling {cfg.data.acceleration_sampling:g}: the 10% most violent windows "
            f"are {float(top):.0%} of the draws (uniform: 10%)",
            flush=True,
        )
    train_loader = torch.utils.data.DataLoader(
        train_set,
        batch_size=cfg.data.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        collate_fn=collate_windows,
        generator=generator,
    )
    val_loader: Any = None
    if cfg.data.val_rollouts and not cfg.data.valid:
        raise ValueError("data.val_rollouts needs validation trajectories: set data.valid=<file.npz>")
    if cfg.data.valid:
        valid_data = load_trajectories(cfg.data.valid, dtype)
        val_set = WindowDataset(valid_data, window, stride=cfg.data.val_stride)
        val_loader = torch.utils.data.DataLoader(
            val_set, batch_size=cfg.data.batch_size, collate_fn=collate_windows
        )
        if cfg.data.val_rollouts:
            rollouts = RolloutDataset(valid_data, cfg.data.val_rollouts)
            val_loader = [val_loader, torch.utils.data.DataLoader(rollouts, batch_size=None)]
    task = GNSTask(
        model,
        cfg.task.lr,
        cfg.task.min_lr,
        cfg.task.lr_decay_steps,
        cfg.task.noise_std,
        pushforward_unroll=cfg.task.pushforward_unroll,
        pushforward_prob=cfg.task.pushforward_prob,
        pushforward_start_step=cfg.task.pushforward_start_step,
        pushforward_target=cfg.task.pushforward_target,
        huber_delta=cfg.task.huber_delta,
        wall_excursion_prob=cfg.task.wall_excursion_prob,
        wall_excursion_depth=cfg.task.wall_excursion_depth,
        wall_penalty=cfg.task.wall_penalty,
        seed=t.seed,
    )
    callbacks: list[Any] = [
        ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            save_top_k=0,
            save_last=True,
            every_n_train_steps=max(t.checkpoint_every_n_steps, 1),
        )
    ]
    best: ModelCheckpoint | None = None
    if cfg.data.val_rollouts:
        # with EMA, validation and checkpoints both see the averaged weights
        best = ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename="best",
            monitor="val/selection_score",
            mode="min",
            save_top_k=1,
            save_last=False,
        )
        callbacks.append(best)
    if cfg.task.ema_decay > 0:
        callbacks.append(EMAWeightAveraging(decay=cfg.task.ema_decay))
    val_every = min(cfg.task.val_every_n_steps, len(train_loader))
    trainer = pl.Trainer(
        max_epochs=t.max_epochs,
        max_steps=t.max_steps,
        max_time={"minutes": t.max_time_minutes} if t.max_time_minutes > 0 else None,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        precision="64-true" if dtype == torch.float64 else "32-true",
        gradient_clip_val=t.gradient_clip_val or None,
        log_every_n_steps=t.log_every_n_steps,
        val_check_interval=val_every if val_loader is not None else None,
        limit_val_batches=1.0 if val_loader is not None else 0,
        enable_progress_bar=t.progress_bar,
        default_root_dir=run_dir,
        logger=CSVLogger(run_dir, name="logs", version=""),
        callbacks=callbacks,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(task, train_loader, val_loader)
    report: dict[str, Any] = {
        "optimizer_steps": trainer.global_step,
        "train_wall_time_s": round(time.perf_counter() - started, 1),
    }
    if best is not None and best.best_model_path:
        state = torch.load(best.best_model_path, map_location="cpu", weights_only=False)
        task.load_state_dict(state["state_dict"])
        nan = float("nan")  # a validation this process did not run (none today; guards a resumed fit)
        chosen = task.validation_history.get(
            int(state["global_step"]), {"rollout_mse": nan, "diverged": -1, "compression": nan}
        )
        report["selected"] = {
            "checkpoint": str(best.best_model_path),
            "step": int(state["global_step"]),
            "val_selection_score": float(best.best_model_score),
            "val_rollout_mse": chosen["rollout_mse"],
            "val_diverged_rollouts": chosen["diverged"],
            "val_compression": chosen["compression"],
            "val_rollouts": len(val_loader[1]),
        }
        print(
            f"selected the step-{state['global_step']} model: mean validation rollout MSE "
            f"{chosen['rollout_mse']:.3e} over {len(val_loader[1])} trajectories "
            f"({chosen['diverged']} diverged)",
            flush=True,
        )
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


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def one_step_errors(
    model: GNS, positions: torch.Tensor, particle_type: torch.Tensor, chunk: int = 8
) -> tuple[float, float]:
    """One-step position MSE of the model and of the constant-velocity baseline over every window.

    Args:
        positions: [n_frames, n, dim] one ground-truth trajectory.
        particle_type: [n].
        chunk: windows evaluated together (a batch of independent graphs).
    """
    c = model.window
    data = Trajectories([positions], [particle_type], model.bounds.cpu().numpy(), 1.0)
    windows = WindowDataset(data, c)
    sq_model, sq_cv, count = 0.0, 0.0, 0
    for start in range(0, len(windows), chunk):
        batch = collate_windows([windows[i] for i in range(start, min(start + chunk, len(windows)))])
        history, truth = batch[K.POS_HISTORY], batch[K.NEXT_POS]
        pred = model.step(batch)
        sq_model += float((pred - truth).double().pow(2).sum())
        sq_cv += float((2 * history[:, -1] - history[:, -2] - truth).double().pow(2).sum())
        count += truth.numel()
    return sq_model / count, sq_cv / count


def is_free_fall(acceleration: torch.Tensor, rtol: float = 1e-2) -> torch.Tensor:
    """[T] bool: frames of ``acceleration`` [T, n, dim] in which every particle has the same,
    non-zero acceleration to within ``rtol`` of its norm (free flight, no contact)."""
    g = acceleration.mean(dim=1, keepdim=True)  # [T, 1, dim]
    size = torch.linalg.vector_norm(g, dim=-1)[:, 0]  # [T]
    spread = (acceleration - g).norm(dim=-1).amax(dim=1)  # [T]
    return (size > 0) & (spread <= rtol * size)


@torch.no_grad()
def free_fall_response(
    model: GNS, positions: torch.Tensor, particle_type: torch.Tensor, rtol: float = 1e-2
) -> dict[str, float]:
    """How much of a uniform body acceleration (gravity in free flight) the model predicts.

    A frame is *free flight* when every particle has the same true acceleration
    ``x_{t+1} - 2 x_t + x_{t-1}`` to within ``rtol`` of its size (no contact with a wall
    or between separate blocks: in the MPM water that is exactly ``g dt^2``). For those
    frames, from true input windows, the model's accelerations are compared with it.

    Args:
        positions: [T, n, dim] one ground-truth trajectory.
        particle_type: [n].
        rtol: tolerance of "same acceleration", relative to its norm.

    Returns:
        ``free_fall_frames`` (how many), ``free_fall_ratio`` (mean over those frames and
        particles of ``a_pred . g / |g|^2``: 1 = the body force learnt, 0 = ignored) and
        ``free_fall_rms`` (rms of ``|a_pred - g|`` over ``|g|``); NaN when no frame qualifies.
    """
    c = model.window
    acc = positions[2:] - 2 * positions[1:-1] + positions[:-2]  # [T - 2, n, dim], acc[t - 1] at frame t
    free = is_free_fall(acc.double(), rtol)
    ratios, errors, frames = [], [], 0
    for t in range(c - 1, positions.shape[0] - 1):
        if not free[t - 1]:
            continue
        g = acc[t - 1].double().mean(dim=0)
        size = float(torch.linalg.vector_norm(g))
        window = positions[t - c + 1 : t + 1].transpose(0, 1)  # [n, C, dim]
        pred = model({K.POS_HISTORY: window, K.Z: particle_type}).double()
        ratios.append(float((pred @ g).mean()) / size**2)
        errors.append(float((pred - g).norm(dim=-1).pow(2).mean()) / size**2)
        frames += 1
    nan = float("nan")
    return {
        "free_fall_frames": frames,
        "free_fall_ratio": float(np.mean(ratios)) if ratios else nan,
        "free_fall_rms": math.sqrt(float(np.mean(errors))) if errors else nan,
    }


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def excursion(positions: torch.Tensor, bounds: torch.Tensor) -> float:
    """Largest distance (length unit) by which any coordinate lies outside ``bounds`` [dim, 2]; 0 if none."""
    below = bounds[:, 0] - positions
    above = positions - bounds[:, 1]
    return float(torch.cat([below.flatten(), above.flatten(), positions.new_zeros(1)]).max())


def escaped_particles(positions: torch.Tensor, bounds: torch.Tensor, tolerance: float = 0.0) -> int:
    """Number of particles that lie more than ``tolerance`` (length unit, >= 0) outside
    ``bounds`` [dim, 2] in any frame of ``positions`` [T, n, dim]; 0: any excursion counts."""
    outside = (positions < bounds[:, 0] - tolerance) | (positions > bounds[:, 1] + tolerance)  # [T, n, dim]
    return int(outside.any(dim=-1).any(dim=0).sum())


def runaway_excursion(model: GNS, box_lengths: float = 10.0) -> float:
    """How far outside the domain (length unit) a rollout may carry a particle before it counts
    as diverged: ``box_lengths`` times the longest side of ``model.bounds``. The furthest a finished
    rollout here took a particle was 8.9 m outside the 0.92 m box (``pw_lr8k``, README's GNS
    section), within 10 box lengths; a runaway grows exponentially past that."""
    return box_lengths * float((model.bounds[:, 1] - model.bounds[:, 0]).max())


def peak_neighbours(model: GNS, positions: torch.Tensor, every: int = 10) -> float:
    """Largest mean number of neighbours per particle within ``model.radius`` over frames ``0, every, ...``.

    Args:
        positions: [T, n, dim] a trajectory (0.0 if it has no frame).
    """
    n = positions.shape[1]
    frames = range(0, positions.shape[0], every)
    return max((model.build_edges(positions[t]).shape[1] / n for t in frames), default=0.0)


def selection_score(rollouts: list[dict[str, float]]) -> float:
    """Model-selection key of one validation's rollouts (lower is better), lexicographic in
    (number of diverged rollouts, rollout error).

    ``n_diverged + f`` with ``f`` in [0, 1): if some rollouts finished, ``f = m / (1 + m)``
    with ``m`` their mean position MSE; if all diverged, ``f = 1 - mean(stop step / n_steps)``,
    so a later divergence ranks better. A model whose rollouts clump is never preferred to
    one with fewer clumped rollouts, and among equals the plain MSE decides; a mean MSE
    with an inf in it could not rank models whose validations all diverged.

    Args:
        rollouts: per trajectory, :func:`rollout_errors`'s dict with ``n_steps`` added.
    """
    finished = [r["rollout_mse"] for r in rollouts if r["diverged_at_step"] < 0]
    n_diverged = len(rollouts) - len(finished)
    if finished:
        m = float(np.mean(finished))
        return n_diverged + m / (1.0 + m)
    return n_diverged + 1.0 - float(np.mean([r["diverged_at_step"] / r["n_steps"] for r in rollouts]))


@torch.no_grad()
def rollout_errors(
    model: GNS,
    positions: torch.Tensor,
    particle_type: torch.Tensor,
    clamp_to_bounds: bool = False,
    neighbour_factor: float | None = 10.0,
    escape_tolerance: float | None = None,
) -> dict[str, float]:
    """Roll one trajectory out from its first ``C`` frames and score it against the truth.

    Args:
        positions: [T, n, dim] the true trajectory (length unit), in the model's dtype.
        particle_type: [n] long.
        clamp_to_bounds: see :func:`~physnet.models.gns.rollout`.
        neighbour_factor: the rollout stops as diverged once the predicted particles have
            more than this many times the neighbours per particle of the densest true frame
            (:func:`peak_neighbours`); ``None``: never stop (a clumping rollout can then run
            for tens of minutes, see :class:`~physnet.models.gns.RolloutDiverged`).
        escape_tolerance: length unit; ``escaped_beyond_tolerance`` counts the particles
            more than this far outside the domain. ``None``: ``0.1 * model.radius`` (1.5 mm
            for the water config, a fifth of its particle spacing). The MPM truth has
            particles resting exactly on the walls, so the strict count also records a
            model that is right to 1e-6 m.

    Returns:
        ``rollout_mse`` and ``cv_rollout_mse`` (model and constant-velocity baseline,
        mean squared position error over the ``T - C`` predicted frames, length unit^2,
        accumulated in float64), ``max_excursion`` (length unit), ``escaped_particles``
        and ``escaped_beyond_tolerance`` (over the frames predicted),
        ``diverged_at_step`` (-1 if the rollout finished),
        ``peak_neighbours`` and ``true_peak_neighbours``: the largest mean number of
        neighbours per particle in a predicted frame and in a true one (every 10th), a
        measure of how far the prediction compresses the fluid.
        A diverged rollout scores ``rollout_mse = inf``: it never wins model selection and
        a mean over trajectories that includes it says so.
    """
    c = model.window
    window = positions[:c].transpose(0, 1)  # [n, C, dim]
    n_steps = positions.shape[0] - c
    true_peak = peak_neighbours(model, positions)
    limit = None if neighbour_factor is None else neighbour_factor * true_peak
    diverged_at = -1
    try:
        pred = rollout(
            model,
            window,
            n_steps,
            particle_type,
            clamp_to_bounds=clamp_to_bounds,
            max_mean_neighbours=limit,
            max_excursion=runaway_excursion(model),
        )  # [T - C, n, dim]
        mse = float((pred - positions[c:]).double().pow(2).mean())
    except RolloutDiverged as stop:
        pred, diverged_at, mse = stop.positions, stop.step, math.inf
    cv = constant_velocity_rollout(window, n_steps)
    bounds = model.bounds.to(positions.dtype)
    tolerance = 0.1 * model.radius if escape_tolerance is None else float(escape_tolerance)
    return {
        "rollout_mse": mse,
        "cv_rollout_mse": float((cv - positions[c:]).double().pow(2).mean()),
        "max_excursion": excursion(pred, bounds),
        "escaped_particles": escaped_particles(pred, bounds),
        "escaped_beyond_tolerance": escaped_particles(pred, bounds, tolerance),
        "diverged_at_step": diverged_at,
        "peak_neighbours": peak_neighbours(model, pred, every=1),
        "true_peak_neighbours": true_peak,
    }


@torch.no_grad()
def evaluate(
    model: GNS,
    data: Trajectories,
    indices: list[int] | None = None,
    verbose: bool = True,
    clamp_to_bounds: bool = False,
    neighbour_factor: float | None = 10.0,
    escape_tolerance: float | None = None,
) -> dict[str, Any]:
    """One-step and full-rollout position MSE of the model and the constant-velocity baseline.

    For each trajectory the model starts from the first ``C`` ground-truth frames and
    predicts all remaining frames (:func:`physnet.models.gns.rollout`, graph rebuilt each
    step); the rollout MSE is the mean of the squared position error over those frames,
    particles and components (``learning_to_simulate``'s ``rollout MSE``), length unit^2.
    The baseline continues every particle with its last velocity. ``max_excursion`` is the
    largest distance of a predicted particle outside the domain (0 = all stayed inside) and
    ``escaped_particles`` the number of particles outside it in at least one frame,
    ``escaped_beyond_tolerance`` of those more than ``escape_tolerance`` outside (see
    :func:`rollout_errors`).
    ``clamp_to_bounds`` imposes the walls in the rollout (see :func:`~physnet.models.gns.rollout`);
    the summary records it, since escapes are then impossible by construction. A rollout
    whose particles clump (``neighbour_factor``, see :func:`rollout_errors`) stops early and
    scores ``rollout_mse = inf``; ``diverged_at_step`` lists the frame it stopped at (-1: none).

    Returns:
        per-trajectory lists and their means, with keys ``one_step_mse``,
        ``cv_one_step_mse``, ``rollout_mse``, ``cv_rollout_mse``, ``max_excursion``,
        ``escaped_particles``, ``escaped_beyond_tolerance``, ``peak_neighbours``,
        ``true_peak_neighbours``, and :func:`free_fall_response`'s ``free_fall_frames``,
        ``free_fall_ratio`` and ``free_fall_rms``; ``mean_max_excursion`` and the
        ``mean_*peak_neighbours`` are the largest and ``mean_escaped_*`` and
        ``mean_free_fall_frames`` the totals over the trajectories, not means (the free-fall
        ratios are averaged over the trajectories that have such frames).
    """
    model = model.eval()
    dtype = next(model.parameters()).dtype
    indices = list(range(len(data))) if indices is None else indices
    rows: dict[str, list[float]] = {
        k: []
        for k in (
            "one_step_mse",
            "cv_one_step_mse",
            "rollout_mse",
            "cv_rollout_mse",
            "max_excursion",
            "escaped_particles",
            "escaped_beyond_tolerance",
            "peak_neighbours",
            "true_peak_neighbours",
            "free_fall_frames",
            "free_fall_ratio",
            "free_fall_rms",
        )
    }
    diverged: list[int] = []
    tolerance = 0.1 * model.radius if escape_tolerance is None else float(escape_tolerance)
    for k in indices:
        pos = data.positions[k].to(dtype)
        ptype = data.particle_type[k]
        one, one_cv = one_step_errors(model, pos, ptype)
        n_steps = pos.shape[0] - model.window
        start = time.perf_counter()
        errors = rollout_errors(model, pos, ptype, clamp_to_bounds, neighbour_factor, escape_tolerance)
        seconds = time.perf_counter() - start
        errors.update(free_fall_response(model, pos, ptype))
        diverged.append(int(errors["diverged_at_step"]))
        values = (one, one_cv) + tuple(errors[key] for key in list(rows)[2:])
        for key, value in zip(rows, values, strict=True):
            rows[key].append(value)
        if verbose:
            print(
                f"trajectory {k}: {pos.shape[1]} particles, {n_steps} rollout steps ({seconds:.1f} s): "
                f"one-step MSE {one:.3e} (constant velocity {one_cv:.3e}); rollout MSE {values[2]:.3e} "
                f"(constant velocity {values[3]:.3e}); max excursion outside the domain {values[4]:.3e} "
                f"({values[5]} of {pos.shape[1]} particles left it, {values[6]} by more than "
                f"{tolerance:.2e}); neighbours per particle up to {values[7]:.1f} (truth {values[8]:.1f}); "
                f"in {values[9]} free-fall frames it predicts {values[10]:.2f}x the true acceleration "
                f"(rms error {values[11]:.2f}x)"
                + (
                    f"; DIVERGED: particles clumped or ran away, rollout stopped before frame {diverged[-1]}"
                    if diverged[-1] >= 0
                    else ""
                ),
                flush=True,
            )
    summary: dict[str, Any] = {
        "trajectories": indices,
        "clamp_to_bounds": clamp_to_bounds,
        "escape_tolerance": tolerance,
        **rows,
        "diverged_at_step": diverged,
    }
    for key, value in rows.items():
        reduce = {
            "max_excursion": np.max,
            "escaped_particles": np.sum,
            "escaped_beyond_tolerance": np.sum,
            "free_fall_frames": np.sum,
            "free_fall_ratio": _nanmean,
            "free_fall_rms": _nanmean,
            "peak_neighbours": np.max,
            "true_peak_neighbours": np.max,
        }.get(key, np.mean)
        summary[f"mean_{key}"] = float(reduce(value))
    summary["rollout_mse_ratio_cv_over_model"] = summary["mean_cv_rollout_mse"] / max(
        summary["mean_rollout_mse"], 1e-300
    )
    n_diverged = sum(d >= 0 for d in diverged)
    if verbose:
        print(
            f"mean over {len(indices)} trajectories: one-step MSE {summary['mean_one_step_mse']:.3e} "
            f"(constant velocity {summary['mean_cv_one_step_mse']:.3e}); "
            f"rollout MSE {summary['mean_rollout_mse']:.3e} "
            f"(constant velocity {summary['mean_cv_rollout_mse']:.3e}, "
            f"{summary['rollout_mse_ratio_cv_over_model']:.1f}x higher); "
            f"max excursion outside the domain {summary['mean_max_excursion']:.3e}; "
            f"{summary['mean_escaped_particles']:.0f} particles left it, "
            f"{summary['mean_escaped_beyond_tolerance']:.0f} by more than {tolerance:.2e}; "
            f"free fall ({summary['mean_free_fall_frames']:.0f} frames): "
            f"{summary['mean_free_fall_ratio']:.2f}x the true acceleration"
            + (f"; {n_diverged} rollout(s) diverged" if n_diverged else ""),
            flush=True,
        )
    return summary


def animate(
    predicted: np.ndarray | torch.Tensor,
    truth: np.ndarray | torch.Tensor,
    bounds: np.ndarray | torch.Tensor,
    path: str | os.PathLike,
    frame_dt: float = 1.0,
    every: int = 2,
    fps: int = 25,
    title: str = "",
) -> Path:
    """GIF of a 2D rollout: ground truth (left) and prediction (right), side by side.

    Args:
        predicted: [n_frames, n, 2] positions.
        truth: [n_frames, n, 2] positions of the same frames.
        bounds: [2, 2] domain, drawn as a box.
        path: output ``.gif`` (written with matplotlib's PillowWriter).
        frame_dt: seconds per frame, for the clock in the title.
        every: draw every ``every``-th frame.
        fps: frames per second of the GIF.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter

    pred = np.asarray(predicted, dtype=float)
    true = np.asarray(truth, dtype=float)
    box = np.asarray(bounds, dtype=float)
    if pred.shape != true.shape or pred.shape[-1] != 2:
        raise ValueError(f"need two [frames, n, 2] arrays of one shape, got {pred.shape} and {true.shape}")
    frames = list(range(0, pred.shape[0], every))
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.3))
    pad = 0.02 * float(box[0, 1] - box[0, 0])
    scatters = []
    for ax, label, data in zip(axes, ("ground truth (MPM)", "GNS rollout"), (true, pred), strict=True):
        ax.add_patch(
            plt.Rectangle(box[:, 0], *(box[:, 1] - box[:, 0]), fill=False, edgecolor="k", linewidth=1)
        )
        ax.set_xlim(box[0, 0] - pad, box[0, 1] + pad)
        ax.set_ylim(box[1, 0] - pad, box[1, 1] + pad)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(label)
        scatters.append(
            ax.scatter(data[0, :, 0], data[0, :, 1], s=4, c="tab:blue" if "truth" in label else "tab:orange")
        )
    suptitle = fig.suptitle("")

    def update(f: int) -> list[Any]:
        for sc, data in zip(scatters, (true, pred), strict=True):
            sc.set_offsets(data[f])
        suptitle.set_text(f"{title}  frame {f}  t = {f * frame_dt:.3f} s".strip())
        return [*scatters, suptitle]

    anim = FuncAnimation(fig, update, frames=frames, blit=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    anim.save(path, writer=PillowWriter(fps=fps))
    plt.close(fig)
    return path


def rollout_for_animation(
    model: GNS,
    data: Trajectories,
    index: int,
    clamp_to_bounds: bool = False,
    neighbour_factor: float | None = 10.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted and true positions [n_frames, n, dim] of trajectory ``index`` (first ``C`` frames shared).

    A rollout that diverges (see :func:`rollout_errors`) is animated up to the frame where
    it stopped: both arrays then end there.
    """
    dtype = next(model.parameters()).dtype
    pos = data.positions[index].to(dtype)
    c = model.window
    limit = None if neighbour_factor is None else neighbour_factor * peak_neighbours(model, pos)
    try:
        pred = rollout(
            model,
            pos[:c].transpose(0, 1),
            pos.shape[0] - c,
            data.particle_type[index],
            clamp_to_bounds=clamp_to_bounds,
            max_mean_neighbours=limit,
            max_excursion=runaway_excursion(model),
        )
    except RolloutDiverged as stop:
        print(f"trajectory {index}: {stop}; animating the {stop.step} frames before it", flush=True)
        pred = stop.positions
    return torch.cat([pos[:c], pred]), pos[: c + pred.shape[0]]
