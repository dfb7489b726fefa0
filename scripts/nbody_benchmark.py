"""N-body benchmark of the EGNN paper: train :class:`physnet.models.egnn.EGNNDynamics`, print test MSE.

Satorras, Hoogeboom & Welling, ICML 2021, Sec. 5.1 and Table 2: 5 charged particles, input
positions and velocities at frame 30 plus charges, target positions at frame 40 (1000
integration steps later), 3000 training systems, test MSE of the positions. Paper protocol:
4 layers, 64 features, Adam lr 5e-4, batch 100, 10000 epochs, model selected on the validation
set. Here the run is bounded by ``--epochs`` and ``--minutes``; the model with the best
validation MSE is evaluated on the test set.

Training-procedure options beyond the paper's (all off by default): ``--ema DECAY`` evaluates,
selects and tests an exponential moving average of the weights; ``--optimizer adamw`` with
``--weight-decay`` (decoupled); ``--schedule cosine|plateau`` and ``--warmup-epochs``;
``--grad-clip``; ``--no-test`` for exploratory runs that must not see the test set.

Baselines measured in the same run: zero displacement (x40 = x30) and constant velocity
(x40 = x30 + t v30, t fitted by least squares on the training split).

Example (from the repository root)::

    .venv/bin/python scripts/nbody_benchmark.py --minutes 4
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from pathlib import Path

import numpy as np
import torch

from physnet.models.egnn import EGNNDynamics

PAPER = {"EGNN": 0.0071, "GNN": 0.0107, "SE(3)-Transformer": 0.0244, "Radial Field": 0.0104, "Linear": 0.0819}
DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nbody" / "nbody_charged5.npz"


def load_split(
    data: np.lib.npyio.NpzFile,
    split: str,
    n_max: int | None,
    frame_in: int,
    frame_out: int,
    dtype: torch.dtype,
) -> dict[str, torch.Tensor]:
    """One split as tensors: pos, vel, target [n_sims, n_particles, 3], charges [n_sims, n_particles]."""
    loc = data[f"loc_{split}"][:n_max]  # (n_sims, frames, 3, n_particles)
    vel = data[f"vel_{split}"][:n_max]
    charges = data[f"charges_{split}"][:n_max]  # (n_sims, n_particles, 1)

    def frame(a: np.ndarray, t: int) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a[:, t].transpose(0, 2, 1)), dtype=dtype)

    return {
        "pos": frame(loc, frame_in),
        "vel": frame(vel, frame_in),
        "target": frame(loc, frame_out),
        "charges": torch.as_tensor(charges[..., 0].astype(np.float64), dtype=dtype),
    }


def predict(model: EGNNDynamics, split: dict[str, torch.Tensor], index: torch.Tensor) -> torch.Tensor:
    """Predicted positions [len(index), n_particles, 3] of the systems ``index``."""
    pos, vel, q = split["pos"][index], split["vel"][index], split["charges"][index]
    b, n = pos.shape[:2]
    batch = torch.arange(b).repeat_interleave(n)
    out = model(pos.reshape(-1, 3), vel.reshape(-1, 3), q.reshape(-1), batch)
    return out.reshape(b, n, 3)


@torch.no_grad()
def mse(model: EGNNDynamics, split: dict[str, torch.Tensor], batch_size: int = 500) -> float:
    """Mean squared error of the predicted positions over a whole split."""
    model.eval()
    total, count = 0.0, 0
    n = split["pos"].shape[0]
    for start in range(0, n, batch_size):
        index = torch.arange(start, min(start + batch_size, n))
        err = (predict(model, split, index) - split["target"][index]) ** 2
        total += float(err.sum())
        count += err.numel()
    return total / count


class Plateau:
    """Reduce-on-plateau learning rate: ``lr *= factor`` after ``patience`` validation passes
    without a new best."""

    def __init__(self, lr: float, patience: int, factor: float) -> None:
        self.lr, self.patience, self.factor = lr, patience, factor
        self.best, self.wait = float("inf"), 0

    def step(self, val: float) -> None:
        if val < self.best:
            self.best, self.wait = val, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.lr *= self.factor
            self.wait = 0


def build_model(args: argparse.Namespace) -> torch.nn.Module:
    """The dynamics model named by ``--model``: ``f(pos, vel, charges, batch) -> positions``."""
    if args.model == "egnn":
        return EGNNDynamics(n_features=args.n_features, n_layers=args.n_layers)
    if args.model == "se3_transformer":
        from physnet.models.se3_transformer import SE3TransformerDynamics

        # hidden irreps (F/2)x0e + (F/4)x1o + (F/8)x2e: 32x0e + 16x1o + 8x2e for the default F = 64
        f = args.n_features
        return SE3TransformerDynamics(channels=(f // 2, f // 4, f // 8), n_layers=args.n_layers)
    raise ValueError(f"unknown --model {args.model!r}; choose from {MODELS}")


MODELS = ("egnn", "se3_transformer")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default="egnn", choices=MODELS)
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
        help="cosine: lr * (1 + cos(pi f)) / 2, f = the larger of the epoch and wall-time fractions; "
        "plateau: lr * --plateau-factor when the validation MSE has not improved for --plateau-patience "
        "validation passes",
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
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dtype = torch.float32
    with np.load(args.data) as data:
        train = load_split(data, "train", args.n_train, 30, 40, dtype)
        valid = load_split(data, "valid", None, 30, 40, dtype)
        test = load_split(data, "test", None, 30, 40, dtype)
    device = torch.device(args.device)
    train, valid, test = ({k: v.to(device) for k, v in s.items()} for s in (train, valid, test))

    # Baselines, same splits.
    zero = float(((test["pos"] - test["target"]) ** 2).mean())
    dx, v = train["target"] - train["pos"], train["vel"]
    t_fit = float((dx * v).sum() / (v * v).sum())
    const_vel = float(((test["pos"] + t_fit * test["vel"] - test["target"]) ** 2).mean())

    model = build_model(args).to(device)
    optimizer = torch.optim.AdamW if args.optimizer == "adamw" else torch.optim.Adam
    opt = optimizer(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    n = train["pos"].shape[0]
    # EMA of the weights (nequip / MACE style): a copy of the model whose parameters follow
    # p_ema <- decay p_ema + (1 - decay) p after every optimizer step; it is the model evaluated.
    ema = copy.deepcopy(model) if args.ema > 0 else None
    evaluated = ema if ema is not None else model
    steps = 0
    plateau = Plateau(args.lr, args.plateau_patience, args.plateau_factor)
    best = (float("inf"), 0, None)
    start = time.perf_counter()
    print(f"training {args.model} ({sum(p.numel() for p in model.parameters())} parameters) on {n} systems")
    for epoch in range(1, args.epochs + 1):
        lr = args.lr
        if args.schedule == "cosine":
            done = (epoch - 1) / args.epochs
            if args.minutes is not None:
                done = max(done, (time.perf_counter() - start) / (60 * args.minutes))
            lr = 0.5 * args.lr * (1 + math.cos(math.pi * min(done, 1.0)))
        elif args.schedule == "plateau":
            lr = plateau.lr
        if epoch <= args.warmup_epochs:
            lr *= epoch / args.warmup_epochs
        for group in opt.param_groups:
            group["lr"] = lr
        model.train()
        perm = torch.randperm(n, device=device)
        train_loss = 0.0
        for b in range(0, n, args.batch_size):
            index = perm[b : b + args.batch_size]
            loss = ((predict(model, train, index) - train["target"][index]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            if args.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            opt.step()
            if ema is not None:
                steps += 1
                decay = min(args.ema, (1 + steps) / (10 + steps))  # warm-up as in TF / nequip
                with torch.no_grad():
                    for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
                        p_ema.lerp_(p, 1.0 - decay)
                    for b_ema, b_model in zip(ema.buffers(), model.buffers(), strict=True):
                        b_ema.copy_(b_model)
            train_loss += float(loss.detach()) * len(index)
        elapsed = time.perf_counter() - start
        out_of_time = args.minutes is not None and elapsed > 60 * args.minutes
        if epoch % args.eval_every == 0 or epoch == args.epochs or out_of_time:
            val = mse(evaluated, valid)
            if val < best[0]:
                best = (val, epoch, {k: t.clone() for k, t in evaluated.state_dict().items()})
            plateau.step(val)
            extra = f"  val (raw weights) {mse(model, valid):.5f}" if ema is not None else ""
            print(
                f"epoch {epoch:5d}  {elapsed:7.1f} s  lr {lr:.2e}  train {train_loss / n:.5f}  "
                f"val {val:.5f}  best val {best[0]:.5f} (epoch {best[1]}){extra}",
                flush=True,
            )
        if out_of_time:
            break
    assert best[2] is not None
    model.load_state_dict(best[2])
    print(f"\nbest validation MSE {best[0]:.5f} at epoch {best[1]}" + (f" (EMA {args.ema})" if ema else ""))
    if args.no_test:
        print("test set not evaluated (--no-test)")
        return 0
    test_mse = mse(model, test)
    print(f"N-body (charged, 5 particles), test MSE of positions 1000 steps ahead, {n} training systems")
    print(f"  {args.model} (this run, best val at epoch {best[1]}, {elapsed / 60:.1f} min)  {test_mse:.4f}")
    print(f"  zero displacement (this run)                 {zero:.4f}")
    print(f"  constant velocity, t = {t_fit:.3f} (this run)      {const_vel:.4f}")
    for name, value in PAPER.items():
        print(f"  {name + ' (paper, Table 2)':<45}{value:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
