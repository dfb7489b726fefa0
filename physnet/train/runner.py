"""What every training driver shares: the run-directory guard, seeding and threads, and the one
Lightning ``Trainer`` (checkpoints, EMA, loggers, precision, DDP).

The potential driver (:func:`physnet.train.fit.train`), the GNS driver
(:func:`physnet.train.gns.train_gns`) and the N-body dynamics driver
(:func:`physnet.train.dynamics.train_dynamics`) each build their task and data loaders and then
call, in order, :func:`guard_run_dir`, :func:`start_run`, :func:`make_trainer` and
``trainer.fit(..., ckpt_path=resume_from(run_dir, resume))``. The fields of
:class:`physnet.train.config.TrainerConfig` (``strategy``, ``num_nodes``, ``devices``,
``check_val_every_n_epoch``, ``checkpoint_every_n_steps``, ``dtype``, ``threads``, ``seed``...)
therefore mean the same for every task.

Lightning is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from physnet.train.config import TrainerConfig, apply_tf32

if TYPE_CHECKING:  # pragma: no cover
    import pytorch_lightning as pl
    import torch

    from physnet.runtime import CpuShare

__all__ = [
    "rank",
    "say",
    "guard_run_dir",
    "start_run",
    "last_checkpoint",
    "best_checkpoint",
    "load_best",
    "torch_dtype",
    "write_run_config",
    "resume_from",
    "finished_limit",
    "make_trainer",
    "WarmupEMA",
    "train_from_config",
]


def rank() -> int:
    """This process's rank under DDP (``LOCAL_RANK`` / ``RANK``; 0 without DDP)."""
    return int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))


def say(msg: str) -> None:
    """Print on rank 0 only (DDP starts one process per device)."""
    if rank() == 0:
        print(msg, flush=True)


def guard_run_dir(
    run_dir: str | os.PathLike,
    resume: bool,
    overwrite: bool,
    results: Sequence[str],
    config_file: str | os.PathLike | None = None,
) -> Path:
    """Refuse to mix two runs in one directory; returns the path of ``checkpoints/last.ckpt``.

    A resumed run needs ``last.ckpt``. A new run refuses a directory that already holds
    checkpoints or one of ``results`` (the files a finished run leaves) unless ``overwrite``;
    then the old checkpoints are deleted first, so that a later ``--resume`` cannot mix the two
    runs. ``config_file`` is the YAML the config was read from: the run directory's own
    ``config.yaml`` (written there before the first run) is no sign of an earlier run. A
    ``run_dir`` that cannot be created or written is refused here, before any data is read.
    """
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    if resume and not last.is_file():
        raise FileNotFoundError(f"cannot resume: {last} does not exist")
    if not resume and rank() == 0:
        has_checkpoints = ckpt_dir.is_dir() and any(ckpt_dir.iterdir())
        found = [name for name in results if (run_dir / name).exists()]
        own = run_dir / "config.yaml"
        if config_file is not None and own.exists() and own.samefile(config_file) and "config.yaml" in found:
            found.remove("config.yaml")
        if has_checkpoints and not overwrite:
            raise FileExistsError(
                f"run directory {run_dir} already has checkpoints; resume with --resume {run_dir}, "
                "set run_dir or pass --overwrite"
            )
        if found and not has_checkpoints and not overwrite:
            raise FileExistsError(
                f"{run_dir} already holds a finished or foreign run ({', '.join(found)}); "
                "choose another run_dir or pass --overwrite"
            )
        if overwrite and ckpt_dir.is_dir():
            shutil.rmtree(ckpt_dir)
    if rank() == 0:  # before the data is read: an unwritable run_dir would fail only at the end
        from physnet.errors import check_writable

        check_writable(run_dir, "run_dir")
    return last


def finished_limit(t: TrainerConfig, last: str | os.PathLike) -> tuple[str, str] | None:
    """The limit of ``t`` that the run saved in ``last`` (its ``last.ckpt``) has already reached,
    as Lightning's fit loop and ``Timer`` judge it, or None when resuming it would train.

    Returns:
        ``(what was reached, the override that continues)``, e.g.
        ``("step 60 of trainer.max_steps=60", "trainer.max_steps=120")``.
    """
    import torch

    ckpt = torch.load(last, map_location="cpu", weights_only=False, mmap=True)
    step = int(ckpt.get("global_step", 0))
    if t.max_steps != -1 and step >= t.max_steps:
        return f"step {step} of trainer.max_steps={t.max_steps}", f"trainer.max_steps={max(2 * step, 1)}"
    progress = ckpt.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {})
    epochs = int(progress.get("current", {}).get("processed", 0))
    if t.max_epochs is not None and t.max_epochs != -1 and epochs >= t.max_epochs:
        return (
            f"epoch {epochs} of trainer.max_epochs={t.max_epochs}",
            f"trainer.max_epochs={max(2 * epochs, 1)}",
        )
    timers = [v for k, v in ckpt.get("callbacks", {}).items() if k.startswith("Timer")]
    elapsed = float(timers[0].get("time_elapsed", {}).get("train", 0.0)) if timers else 0.0
    if t.max_time_minutes > 0 and elapsed >= 60 * t.max_time_minutes:
        return (
            f"{elapsed / 60:.3g} min of trainer.max_time_minutes={t.max_time_minutes:g}",
            f"trainer.max_time_minutes={2 * t.max_time_minutes:g}",
        )
    return None


def resume_from(run_dir: str | os.PathLike, resume: bool) -> str | None:
    """``ckpt_path`` for ``trainer.fit``: the run's ``last.ckpt`` when resuming, else None."""
    return str(Path(run_dir) / "checkpoints" / "last.ckpt") if resume else None


def start_run(t: TrainerConfig) -> CpuShare:
    """Seed every generator (``t.seed``), set torch's threads (``t.threads``; 0 picks a number
    for this machine) and TF32 (``t.tf32``); returns the CPU-share meter of the run."""
    import pytorch_lightning as pl

    from physnet.runtime import CpuShare, set_threads

    pl.seed_everything(t.seed, workers=True, verbose=False)
    share = CpuShare(set_threads(t.threads))
    apply_tf32(t.tf32)
    return share


def last_checkpoint(t: TrainerConfig, run_dir: str | os.PathLike) -> Any:
    """The callback writing ``checkpoints/last.ckpt`` every ``t.checkpoint_every_n_steps``
    optimiser steps (and at each epoch end): what ``--resume`` continues from."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    return ModelCheckpoint(
        dirpath=Path(run_dir) / "checkpoints",
        save_top_k=0,
        save_last=True,
        every_n_train_steps=max(t.checkpoint_every_n_steps, 1),
    )


def best_checkpoint(run_dir: str | os.PathLike, monitor: str, **options: Any) -> Any:
    """The callback keeping ``checkpoints/best.ckpt``, the step with the lowest ``monitor``."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    return ModelCheckpoint(
        dirpath=Path(run_dir) / "checkpoints",
        filename="best",
        monitor=monitor,
        mode="min",
        save_top_k=1,
        **options,
    )


def load_best(task: pl.LightningModule, best: Any) -> dict[str, Any]:
    """Load ``best``'s checkpoint (the EMA weights when EMA is on) into ``task``; returns the
    checkpoint dict (``global_step``, ``epoch``...)."""
    import torch

    state = torch.load(best.best_model_path, map_location="cpu", weights_only=False)
    task.load_state_dict(state["state_dict"])
    return state


def torch_dtype(t: TrainerConfig) -> torch.dtype:
    """The torch dtype of ``t.dtype``; a one-line error for anything but float32 / float64."""
    import torch

    from physnet.errors import UserError

    if t.dtype not in ("float32", "float64"):
        raise UserError(f"trainer.dtype must be float32 or float64, got {t.dtype!r}")
    return torch.float64 if t.dtype == "float64" else torch.float32


def write_run_config(run_dir: str | os.PathLike, config: dict[str, Any]) -> None:
    """Write the resolved ``config`` as ``run_dir/config.yaml`` (rank 0 only; creates the directory)."""
    import yaml

    if rank() == 0:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
        (Path(run_dir) / "config.yaml").write_text(text)


def _loggers(run_dir: Path, resume: bool) -> list[Any]:
    """CSV metrics in ``logs/metrics.csv`` (and TensorBoard in ``tensorboard/`` when installed)."""
    from pytorch_lightning.loggers import CSVLogger

    log_dir = run_dir / "logs"
    if resume and rank() == 0 and (log_dir / "metrics.csv").is_file():
        # Lightning's CSVLogger deletes an existing metrics.csv: keep the killed run's part.
        n = len(list(log_dir.glob("metrics_part*.csv")))
        os.replace(log_dir / "metrics.csv", log_dir / f"metrics_part{n:03d}.csv")
    loggers: list[Any] = [CSVLogger(run_dir, name="logs", version="")]
    try:
        import tensorboard  # noqa: F401
        from pytorch_lightning.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(run_dir, name="tensorboard", version=""))
    except ImportError:
        pass
    return loggers


class WarmupEMA:
    """EMA update with the warm-up of TensorFlow / nequip: decay min(``decay``, (1 + k) / (10 + k))
    at optimiser step k, so early averages do not hold on to the first weights. The first update
    copies the weights (Lightning's ``AveragedModel``); update n >= 1 is step k = n + 1."""

    def __init__(self, decay: float) -> None:
        self.decay = float(decay)

    def __call__(
        self, averaged: torch.Tensor, current: torch.Tensor, n_averaged: torch.Tensor
    ) -> torch.Tensor:
        import torch

        k = n_averaged.to(averaged.dtype) + 1
        decay = torch.clamp((1 + k) / (10 + k), max=self.decay)
        return averaged + (current - averaged) * (1 - decay)


def _ema(decay: float, warmup: bool) -> Any:
    from pytorch_lightning.callbacks import EMAWeightAveraging, WeightAveraging

    if warmup:
        return WeightAveraging(avg_fn=WarmupEMA(decay))
    return EMAWeightAveraging(decay=decay)


def make_trainer(
    t: TrainerConfig,
    run_dir: str | os.PathLike,
    callbacks: Sequence[Any],
    ema_decay: float = 0.0,
    ema_warmup: bool = False,
    resume: bool = False,
    **options: Any,
) -> pl.Trainer:
    """The Lightning ``Trainer`` of every physnet training run.

    Args:
        t: the config's ``trainer`` section: run length, device, strategy, nodes, precision
            (``dtype``), gradient clipping, logging and validation intervals, progress bar.
        run_dir: where checkpoints (``checkpoints/``, through :class:`AtomicCheckpointIO`) and
            logs (``logs/metrics.csv``) go.
        callbacks: the task's callbacks, in order (e.g. its best-model checkpoint and
            :func:`last_checkpoint`).
        ema_decay: > 0 appends Lightning's ``EMAWeightAveraging``: validation, checkpoints and
            the weights left in the model after ``fit`` are the exponential moving average.
        ema_warmup: average with :class:`WarmupEMA` (decay growing to ``ema_decay``) instead.
        resume: a resumed run keeps the killed run's ``metrics.csv`` as ``metrics_partNNN.csv``.
        **options: further ``pl.Trainer`` arguments of the task, which win over the defaults
            (e.g. ``inference_mode=False`` where validation needs autograd, ``val_check_interval``).
    """
    import pytorch_lightning as pl

    from physnet.train.checkpoint_io import AtomicCheckpointIO

    run_dir = Path(run_dir)
    all_callbacks = list(callbacks)
    if ema_decay > 0:
        all_callbacks.append(_ema(ema_decay, ema_warmup))
    kwargs: dict[str, Any] = {
        "max_epochs": t.max_epochs,
        "max_steps": t.max_steps,
        "max_time": {"minutes": t.max_time_minutes} if t.max_time_minutes > 0 else None,
        "accelerator": t.accelerator,
        "devices": t.devices,
        "strategy": t.strategy,
        "num_nodes": t.num_nodes,
        "precision": "64-true" if t.dtype == "float64" else "32-true",
        "gradient_clip_val": t.gradient_clip_val or None,
        "log_every_n_steps": t.log_every_n_steps,
        "check_val_every_n_epoch": t.check_val_every_n_epoch,
        "enable_progress_bar": t.progress_bar,
        "default_root_dir": run_dir,
        "logger": _loggers(run_dir, resume),
        "callbacks": all_callbacks,
        "enable_model_summary": False,
        "plugins": [AtomicCheckpointIO()],
    }
    kwargs.update(options)
    return pl.Trainer(**kwargs)


# job -> (module, loader of its config, driver); imported on use so that ``physnet --help`` stays light
_JOBS: dict[str, tuple[str, str, str]] = {
    "potential": ("physnet.train.fit", "load_config", "train"),
    "gns": ("physnet.train.gns", "load_gns_config", "train_gns"),
    "dynamics": ("physnet.train.dynamics", "load_dynamics_config", "train_dynamics"),
}


def train_from_config(
    config: str | os.PathLike | None,
    overrides: Sequence[str] = (),
    resume: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Path:
    """``physnet train``: train the job (potential | gns | dynamics) a config names; returns its run_dir.

    Args:
        config: the YAML config (None: defaults and ``overrides`` only; must be None with ``resume``).
        overrides: ``section.key=value`` items applied on top of the config.
        resume: a run directory to continue from its ``checkpoints/last.ckpt`` with its own
            ``config.yaml``; ``overrides`` may then change only the keys of
            :data:`physnet.train.config.RESUMABLE`.
        overwrite: a new run may replace the results and checkpoints of an earlier one.
    """
    import importlib

    from physnet.train import config as configs

    source = Path(resume) / "config.yaml" if resume is not None else config
    job = configs.job_of(configs.read_raw(source, list(overrides)))
    module, loader_name, driver_name = _JOBS[job]
    load = getattr(configs, loader_name)
    driver = getattr(importlib.import_module(module), driver_name)
    if resume is None:
        return driver(load(config, list(overrides)), overwrite=overwrite, config_file=config)
    saved = load(source)
    cfg = load(source, list(overrides))
    cfg.run_dir = saved.run_dir = str(resume)
    changed = configs.check_resume_changes(saved, cfg)
    results = getattr(importlib.import_module(module), "RUN_RESULTS", ())
    last = Path(resume) / "checkpoints" / "last.ckpt"
    if results and all((Path(resume) / r).is_file() for r in results) and last.is_file():
        done = finished_limit(cfg.trainer, last)
        if done is not None:  # resuming would train nothing and rewrite the same results
            say(
                f"physnet train: {resume} had already finished ({done[0]}); nothing trained, its files are "
                f"unchanged; to train on, raise the limit: physnet train --resume {resume} {done[1]}"
            )
            return Path(resume)
    if changed:
        say(f"physnet train: resuming {resume} with {', '.join(overrides)}")
    return driver(cfg, resume=True)
