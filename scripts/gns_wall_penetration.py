"""Where a trained GNS's particles leave the box, per wall (:mod:`physnet.train.gns_eval`).

Default: roll one trajectory out and print, every ``--every`` frames, for each wall (lower
walls along each axis, then upper ones; in 2D: left, floor, right, lid) the particles more
than ``--tolerance`` behind it, their median and largest depth (mm for positions in m).
``--all``: every trajectory, how long particles stay out (:func:`~physnet.train.gns_eval.stays`).
``--one-step``: every frame predicted from the true previous ``C`` frames, the landings behind
each wall, next to the truth's count.

Example::

    python scripts/gns_wall_penetration.py runs/gns_water/run/gns.pt downloads/gns_water/test.npz --all
"""

from __future__ import annotations

import argparse

import torch

from physnet.data.trajectories import load_trajectories
from physnet.models.simulator import load_simulator
from physnet.train.gns_eval import check_rollout_data, one_step_penetration, wall_penetration


def _cells(cells: list[dict[str, float]]) -> str:
    return " | ".join(
        f"{s['particles']}, {s['frames']}, {s['stays']}, {s['longest']}, {1e3 * s['deepest']:.1f}"
        for s in cells
    )


def _all(model: torch.nn.Module, data, tolerance: float) -> None:
    print(f"per trajectory and wall (lower walls, then upper), more than {tolerance:g} outside:")
    print("trajectory | particles, particle-frames, stays, longest stay (frames), deepest (mm)")
    totals: list[dict[str, float]] = []
    for k, (pos, ptype) in enumerate(zip(data.positions, data.particle_type, strict=True)):
        _, cells = wall_penetration(model, pos, ptype, tolerance)
        print(f"{k:10d} | " + _cells(cells))
        totals = totals or [dict.fromkeys(s, 0) for s in cells]
        for t, s in zip(totals, cells, strict=True):
            for key in s:
                t[key] = max(t[key], s[key]) if key in ("longest", "deepest") else t[key] + s[key]
    print("       all | " + _cells(totals))


def _one_step(model: torch.nn.Module, data, tolerance: float) -> None:
    print(f"one-step predictions from the true window, more than {tolerance:g} behind each wall")
    print("trajectory | per wall (lower walls, then upper): particle-frames, deepest (mm) | truth")
    total = 0
    for k, (pos, ptype) in enumerate(zip(data.positions, data.particle_type, strict=True)):
        r = one_step_penetration(model, pos, ptype, tolerance)
        cells = " | ".join(
            f"{int(n)}, {1e3 * float(d):.1f}" for n, d in zip(r["count"], r["deepest"], strict=True)
        )
        print(f"{k:10d} | {cells} | {r['truth']}")
        total += int(r["count"].sum())
    print(f"       all | total {total}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="gns.pt written by physnet gns-train")
    parser.add_argument("data", help=".npz of trajectories (scripts/generate_mpm_water.py)")
    parser.add_argument("--trajectory", type=int, default=0, help="index of the trajectory")
    parser.add_argument("--all", action="store_true", help="every trajectory: how long particles stay out")
    parser.add_argument("--one-step", action="store_true", help="every frame from the true window")
    parser.add_argument("--every", type=int, default=50, help="print every n-th rollout frame")
    parser.add_argument("--tolerance", type=float, default=1.5e-3, help="length unit: count deeper ones")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: leave as is)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_simulator(args.model).eval()
    data = load_trajectories(args.data, next(model.parameters()).dtype)
    check_rollout_data(model, data, None if args.all or args.one_step else [args.trajectory])
    if args.one_step or args.all:
        (_one_step if args.one_step else _all)(model, data, args.tolerance)
        return 0
    pos, ptype = data.positions[args.trajectory], data.particle_type[args.trajectory]
    depth, _ = wall_penetration(model, pos, ptype, args.tolerance)  # [T, n, 2 dim]
    print(f"trajectory {args.trajectory}: {pos.shape[1]} particles, {depth.shape[0]} rollout frames")
    print("frame | per wall (lower walls, then upper): outside > tolerance, median / deepest depth (mm)")
    for t in sorted({*range(0, depth.shape[0], args.every), depth.shape[0] - 1}):
        cells = []
        for d in depth[t].t():
            out = d[d > args.tolerance]
            median = 1e3 * float(out.median()) if out.numel() else 0.0
            cells.append(f"{out.numel()}, {median:.1f} / {1e3 * float(d.max()):.1f}")
        print(f"{t + model.window:5d} | " + " | ".join(cells))
    ever = int((depth.amax(dim=(0, 2)) > args.tolerance).sum())
    print(f"particles ever more than {args.tolerance:g} outside: {ever} of {pos.shape[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
