"""N-body benchmark of the EGNN paper: train :class:`physnet.models.egnn.EGNNDynamics`, print test MSE.

A thin command line around :func:`physnet.train.dynamics.train_dynamics` (``physnet train`` with
``job: dynamics``): the options below become that config's keys.

Satorras, Hoogeboom & Welling, ICML 2021, Sec. 5.1 and Table 2: 5 charged particles, input
positions and velocities at frame 30 plus charges, target positions at frame 40 (1000
integration steps later), 3000 training systems, test MSE of the positions. Paper protocol:
4 layers, 64 features, Adam lr 5e-4, batch 100, 10000 epochs, model selected on the validation
set. Here the run is bounded by ``--epochs`` and ``--minutes``; the model with the best
validation MSE is evaluated on the test set. The run directory (``--run-dir``) holds the
config, logs, checkpoints and ``dynamics.pt``; a new run replaces an earlier one there.

Training-procedure options beyond the paper's (all off by default): ``--ema DECAY`` evaluates,
selects and tests an exponential moving average of the weights; ``--optimizer adamw`` with
``--weight-decay`` (decoupled); ``--schedule cosine|plateau`` and ``--warmup-epochs`` (with
constant or cosine);
``--grad-clip``; ``--no-test`` for exploratory runs that must not see the test set.

Baselines measured in the same run: zero displacement (x40 = x30) and constant velocity
(x40 = x30 + t v30, t fitted by least squares on the training split).

Example (from the repository root; ``physnet data nbody_charged5`` writes the data set, in about a
minute, to ``downloads/nbody_charged5.npz``, the default ``--data``)::

    .venv/bin/physnet data nbody_charged5
    .venv/bin/python scripts/nbody_benchmark.py --minutes 4
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from physnet.train.config import load_dynamics_config

PAPER = {"EGNN": 0.0071, "GNN": 0.0107, "SE(3)-Transformer": 0.0244, "Radial Field": 0.0104, "Linear": 0.0819}
DEFAULT_DATA = Path("downloads") / "nbody_charged5.npz"  # what `physnet data nbody_charged5` writes
MODELS = ("egnn", "se3_transformer")


def model_overrides(model: str, n_features: int, n_layers: int) -> list[str]:
    """The ``model.*`` keys of ``--model``, ``--n-features`` and ``--n-layers``."""
    if model == "egnn":
        return ["model.name=egnn", f"model.n_features={n_features}", f"model.n_layers={n_layers}"]
    # hidden irreps (F/2)x0e + (F/4)x1o + (F/8)x2e: 32x0e + 16x1o + 8x2e for the default F = 64
    f = n_features
    return [
        "model.name=se3_transformer",
        f"model.channels=[{f // 2}, {f // 4}, {f // 8}]",
        f"model.n_layers={n_layers}",
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help=f"the N-body .npz (default: {DEFAULT_DATA}, written by `physnet data nbody_charged5`)",
    )
    parser.add_argument("--model", default="egnn", choices=MODELS)
    parser.add_argument("--run-dir", type=Path, default=None, help="default: runs/nbody_<model>")
    parser.add_argument("--epochs", type=int, default=10000, help="paper: 10000")
    parser.add_argument("--minutes", type=float, default=None, help="stop training after this wall time")
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--weight-decay", type=float, default=1e-12, help="authors' code: 1e-12")
    parser.add_argument(
        "--optimizer", choices=("adam", "adamw"), default="adam", help="adamw: decoupled weight decay"
    )
    parser.add_argument(
        "--schedule",
        choices=("constant", "cosine", "plateau"),
        default="constant",
        help="cosine: lr * (1 + cos(pi e / epochs)) / 2 at epoch e; plateau: lr * --plateau-factor when the "
        "validation MSE has not improved for --plateau-patience validation passes",
    )
    parser.add_argument(
        "--warmup-epochs", type=int, default=0, help="linear lr warm-up over this many epochs"
    )
    parser.add_argument(
        "--plateau-patience", type=int, default=10, help="validation passes, --schedule plateau"
    )
    parser.add_argument("--plateau-factor", type=float, default=0.5, help="lr factor, --schedule plateau")
    parser.add_argument(
        "--ema",
        type=float,
        default=0.0,
        help="exponential moving average of the weights with decay min(EMA, (1 + k) / (10 + k)) at "
        "optimizer step k (e.g. 0.999), used for validation, model selection and test; 0: off",
    )
    parser.add_argument(
        "--no-test",
        action="store_true",
        help="exploration: report the best validation MSE, leave the test set unseen",
    )
    parser.add_argument("--grad-clip", type=float, default=None, help="clip the gradient norm to this value")
    parser.add_argument("--n-features", type=int, default=64)
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--eval-every", type=int, default=5, help="epochs between validation passes")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    return parser.parse_args(argv)


def overrides(args: argparse.Namespace) -> list[str]:
    """The ``job: dynamics`` config of the command line, as ``section.key=value`` items."""
    run_dir = args.run_dir or Path("runs") / f"nbody_{args.model}"
    return [
        f"run_dir={run_dir}",
        f"data.path={args.data}",
        f"data.n_train={args.n_train}",
        f"data.batch_size={args.batch_size}",
        f"data.test={not args.no_test}",
        *model_overrides(args.model, args.n_features, args.n_layers),
        f"task.lr={args.lr}",
        f"task.weight_decay={args.weight_decay}",
        f"task.optimizer={args.optimizer}",
        f"task.schedule={args.schedule}",
        f"task.warmup_epochs={args.warmup_epochs}",
        f"task.plateau_patience={args.plateau_patience}",
        f"task.plateau_factor={args.plateau_factor}",
        f"task.ema_decay={args.ema}",
        f"trainer.max_epochs={args.epochs}",
        f"trainer.max_time_minutes={args.minutes or 0}",
        f"trainer.gradient_clip_val={args.grad_clip or 0}",
        f"trainer.check_val_every_n_epoch={args.eval_every}",
        f"trainer.threads={args.threads}",
        f"trainer.seed={args.seed}",
        f"trainer.accelerator={'gpu' if args.device.startswith('cuda') else args.device}",
        "trainer.devices=1",
        "trainer.progress_bar=false",
    ]


def main(argv: list[str] | None = None) -> int:
    from physnet.train.dynamics import train_dynamics

    args = parse_args(argv)
    if not args.data.is_file():
        print(
            f"nbody_benchmark.py: error: no N-body data at {args.data}; make it with "
            "`physnet data nbody_charged5` (writes downloads/nbody_charged5.npz) or name a file with --data",
            file=sys.stderr,
        )
        return 2
    run_dir = train_dynamics(load_dynamics_config(None, overrides(args)), overwrite=True)
    report = json.loads((run_dir / "test_metrics.json").read_text())
    if args.no_test:
        return 0
    minutes = report["train_wall_time_s"] / 60
    n = report["n_train"]
    print(f"N-body (charged, 5 particles), test MSE of positions 1000 steps ahead, {n} training systems")
    this_run = f"{args.model} (this run, best val at epoch {report.get('best_epoch')}, {minutes:.1f} min)"
    print(f"  {this_run}  {report['test_mse']:.4f}")
    print(f"  zero displacement (this run)                 {report['zero_displacement']:.4f}")
    t_fit = report["constant_velocity_t"]
    print(f"  constant velocity, t = {t_fit:.3f} (this run)      {report['constant_velocity']:.4f}")
    for name, value in PAPER.items():
        print(f"  {name + ' (paper, Table 2)':<45}{value:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
