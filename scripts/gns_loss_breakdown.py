"""Which particles a trained GNS's one-step loss comes from.

The loss is the squared error of the normalised acceleration (``(a_pred - a) / acc_std``),
summed over the spatial components. This script evaluates it on true input windows of a
trajectory file (no noise) and prints how much of it the most violently accelerated
particles carry (the top 1 % and 10 % by true ``|a|``) and how much the particles of
*free-fall* frames carry (every particle with the same true acceleration, i.e. ``g dt^2``;
see :func:`physnet.train.gns.free_fall_response`), next to their share of the samples.
With a heavy-tailed target (wall impacts) a small share of the particles can carry
most of the loss and the body force hardly any.

Example::

    python scripts/gns_loss_breakdown.py runs/gns_water/run/gns.pt runs/gns_water/data_4ms/valid.npz
"""

from __future__ import annotations

import argparse

import torch

from physnet.data import keys as K
from physnet.models.simulator import load_simulator
from physnet.train.gns import is_free_fall, load_trajectories


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="gns.pt written by physnet gns-train")
    parser.add_argument("data", help=".npz of trajectories (scripts/generate_mpm_water.py)")
    parser.add_argument("--stride", type=int, default=3, help="use every n-th window of each trajectory")
    parser.add_argument("--rtol", type=float, default=1e-2, help="free fall: |a_i - mean a| <= rtol |mean a|")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: leave as is)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_simulator(args.model)
    data = load_trajectories(args.data, next(model.parameters()).dtype)
    c = model.window
    errors, targets, free = [], [], []
    with torch.no_grad():
        for pos, ptype in zip(data.positions, data.particle_type, strict=True):
            for t in range(c - 1, pos.shape[0] - 1, args.stride):
                acc = pos[t + 1] - 2 * pos[t] + pos[t - 1]  # [n, dim] true acceleration at frame t
                is_free = bool(is_free_fall(acc[None], args.rtol)[0])
                pred = model({K.POS_HISTORY: pos[t - c + 1 : t + 1].transpose(0, 1), K.Z: ptype})
                errors.append(((pred - acc) / model.acc_std).pow(2).sum(-1).double())
                targets.append(((acc - model.acc_mean) / model.acc_std).pow(2).sum(-1).double())
                free.append(torch.full_like(errors[-1], float(is_free)).bool())
    e, y, f = torch.cat(errors), torch.cat(targets), torch.cat(free)
    print(f"{e.numel()} particle-frames from {len(data)} trajectories (window stride {args.stride})")
    print(
        f"mean normalised squared error {float(e.mean()):.3f}; predicting the mean acceleration "
        f"would give {float(y.mean()):.3f}"
    )
    for q in (0.99, 0.9):
        top = y >= torch.quantile(y, q)
        share = 100 * float(e[top].sum() / e.sum())
        print(
            f"top {100 * (1 - q):.0f} % of particles by true |a|: {share:.1f} % "
            f"of the loss ({100 * float(y[top].sum() / y.sum()):.1f} % of the target's second moment)"
        )
    print(
        f"free-fall frames: {100 * float(f.double().mean()):.1f} % of the particle-frames, "
        f"{100 * float(e[f].sum() / e.sum()):.2f} % of the loss"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
