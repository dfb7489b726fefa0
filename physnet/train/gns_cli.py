"""``physnet gns-rollout``: argument parser and handler (``physnet gns-train`` is ``physnet train``).

Heavy imports (Lightning, matplotlib) happen inside the handler so that ``physnet --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_gns_commands"]


def _rollout(args: argparse.Namespace) -> int:
    import torch

    from physnet.data.trajectories import load_trajectories
    from physnet.models.simulator import load_simulator
    from physnet.train.gns_eval import evaluate, rollout_for_animation
    from physnet.train.plots import animate_rollout

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model = load_simulator(args.model)
    except TypeError as err:  # hparams of GNS options that no longer exist
        raise ValueError(
            f"{args.model} was written by an older physnet whose GNS options are gone ({err}); "
            "retrain it with the current config (docs/experiments/gns.md lists the renamed keys)"
        ) from None
    data = load_trajectories(args.data, next(model.parameters()).dtype)
    indices = [int(k) for k in args.trajectories.split(",")] if args.trajectories else list(range(len(data)))
    options = {"clamp_to_bounds": args.clamp_to_bounds, "neighbour_factor": args.max_neighbour_factor or None}
    summary = evaluate(model, data, indices, escape_tolerance=args.escape_tolerance, **options)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(summary, indent=2) + "\n")
        print(f"metrics: {args.output}")
    if args.gif:
        k = args.animate if args.animate is not None else indices[0]
        pred, truth = rollout_for_animation(model, data, k, **options)
        title = f"{Path(args.data).name} #{k}"
        path = animate_rollout(pred, truth, data.bounds, args.gif, data.frame_dt, args.every, title=title)
        print(f"animation of trajectory {k}: {path}")
    return 0


def add_gns_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``gns-rollout`` to the ``physnet`` sub-command parser."""
    ro = sub.add_parser(
        "gns-rollout",
        help="roll a trained GNS out on held-out trajectories: MSEs vs a constant-velocity baseline, GIF",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ro.add_argument("model", help="gns.pt written by physnet gns-train")
    ro.add_argument("data", help=".npz of trajectories from scripts/generate_mpm_water.py")
    ro.add_argument("--trajectories", default="", help="comma-separated trajectory indices (default: all)")
    ro.add_argument("--gif", default="", help="write a GIF of ground truth and prediction side by side")
    ro.add_argument("--animate", type=int, default=None, help="trajectory to animate (default: the first)")
    ro.add_argument("--every", type=int, default=2, help="draw every n-th frame in the GIF")
    ro.add_argument("--output", default="", help="write the metrics as JSON here")
    ro.add_argument(
        "--clamp-to-bounds",
        action="store_true",
        help="project predicted positions into the box every step (the MPM solver's wall condition)",
    )
    ro.add_argument(
        "--max-neighbour-factor",
        type=float,
        default=10.0,
        help="stop a rollout as diverged (MSE inf) once it has this many times the neighbours per "
        "particle of the densest true frame (0: no limit)",
    )
    ro.add_argument(
        "--escape-tolerance",
        type=float,
        default=None,
        help="also count particles more than this (length unit) outside the box (default: 0.1 R)",
    )
    ro.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    ro.set_defaults(func=_rollout)
