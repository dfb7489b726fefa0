"""Which particles a trained GNS's one-step loss comes from (:func:`physnet.train.gns_eval.loss_breakdown`).

Example::

    python scripts/gns_loss_breakdown.py runs/gns_water/run/gns.pt downloads/gns_water/valid.npz
"""

from __future__ import annotations

import argparse

import torch

from physnet.data.trajectories import load_trajectories
from physnet.models.simulator import load_simulator
from physnet.train.gns_eval import loss_breakdown


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
    r = loss_breakdown(model, data, args.stride, args.rtol)
    print(f"{r['samples']:.0f} particle-frames from {len(data)} trajectories (window stride {args.stride})")
    print(
        f"mean normalised squared error {r['loss']:.3f}; predicting the mean acceleration would give "
        f"{r['mean_prediction_loss']:.3f}"
    )
    for name, pct in (("top1", 1), ("top10", 10)):
        print(
            f"top {pct} % of particles by true |a|: {100 * r[name + '_loss_share']:.1f} % of the loss "
            f"({100 * r[name + '_target_share']:.1f} % of the target's second moment)"
        )
    print(
        f"free-fall frames: {100 * r['free_fall_share']:.1f} % of the particle-frames, "
        f"{100 * r['free_fall_loss_share']:.2f} % of the loss"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
