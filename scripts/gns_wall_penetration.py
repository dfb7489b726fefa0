"""Where a trained GNS's particles leave the box: per wall and frame of a rollout.

Rolls the model out from the first ``C`` frames of one trajectory (graph rebuilt every
step, :func:`physnet.models.gns.rollout`) and prints, every ``--every`` frames, for each
wall (lower walls along each axis, then upper ones; in 2D: left, floor, right, lid) the
number of particles more than ``--tolerance`` behind it, their median depth and the
deepest, in mm for positions in m. The truth of the MPM data never leaves the box.

With ``--all`` it rolls out every trajectory of the file instead and prints, per
trajectory and wall, how long the particles stay out: the particles ever more than
``--tolerance`` behind the wall, the particle-frames they spend there, the number of
separate stays, the longest stay in frames and the deepest point (mm).

With ``--one-step`` it predicts every frame of every trajectory from the true previous
``C`` frames (no rollout) and prints, per trajectory and wall, the particle-frames that
land more than ``--tolerance`` behind the wall and the deepest: what the model gets wrong
at the walls before any drift of its own, next to the truth's count.

Example::

    python scripts/gns_wall_penetration.py runs/gns_water/run/gns.pt \
        runs/gns_water/data_4ms/test.npz --trajectory 4
    python scripts/gns_wall_penetration.py runs/gns_water/run/gns.pt \
        runs/gns_water/data_4ms/test.npz --all
"""

from __future__ import annotations

import argparse

import torch

from physnet.data import keys as K
from physnet.models.gns import rollout
from physnet.models.simulator import load_simulator
from physnet.train.gns import Trajectories, load_trajectories


def penetration(positions: torch.Tensor, bounds: torch.Tensor) -> torch.Tensor:
    """Depth behind each wall [T, n, 2 dim] (>0 outside, 0 inside) of positions [T, n, dim]."""
    bounds = bounds.to(positions.dtype)
    return torch.cat([bounds[:, 0] - positions, positions - bounds[:, 1]], dim=-1).clamp_min(0.0)


def stays(outside: torch.Tensor) -> dict[str, int]:
    """How long particles stay outside: ``outside`` [T, n] bool, frame by frame.

    Returns ``particles`` (outside in at least one frame), ``frames`` (particle-frames
    outside), ``stays`` (separate runs of consecutive frames outside, over all particles)
    and ``longest`` (frames, the longest such run).
    """
    run = torch.zeros(outside.shape[1], dtype=torch.long)
    longest = torch.zeros_like(run)
    for frame in outside:
        run = (run + 1) * frame
        longest = torch.maximum(longest, run)
    starts = outside[:1].sum() + (outside[1:] & ~outside[:-1]).sum()
    return {
        "particles": int(outside.any(dim=0).sum()),
        "frames": int(outside.sum()),
        "stays": int(starts),
        "longest": int(longest.max()) if longest.numel() else 0,
    }


def _row(cells: list[dict[str, float]]) -> str:
    return " | ".join(
        f"{s['particles']}, {s['frames']}, {s['stays']}, {s['longest']}, {s['deepest']:.1f}" for s in cells
    )


def summary(model: torch.nn.Module, data: Trajectories, tolerance: float) -> None:
    """Per trajectory and wall: particles ever out, particle-frames, stays, longest stay, deepest."""
    c = model.window
    bounds = torch.as_tensor(data.bounds)
    print(f"per trajectory and wall (lower walls, then upper), more than {tolerance:g} outside:")
    print("trajectory | particles, particle-frames, stays, longest stay (frames), deepest (mm)")
    totals = None
    for k, (pos, ptype) in enumerate(zip(data.positions, data.particle_type, strict=True)):
        with torch.no_grad():
            pred = rollout(model, pos[:c].transpose(0, 1), pos.shape[0] - c, particle_type=ptype)
        depth = penetration(pred, bounds)  # [T, n, 2 dim]
        cells = []
        for w in range(depth.shape[-1]):
            s = stays(depth[:, :, w] > tolerance)
            s["deepest"] = float(depth[:, :, w].max()) * 1e3
            cells.append(s)
        print(f"{k:10d} | " + _row(cells))
        if totals is None:
            totals = [dict.fromkeys(s, 0) for s in cells]
        for t, s in zip(totals, cells, strict=True):
            for key in ("particles", "frames", "stays"):
                t[key] += s[key]
            t["longest"] = max(t["longest"], s["longest"])
            t["deepest"] = max(t["deepest"], s["deepest"])
    print("       all | " + _row(totals))


def one_step(model: torch.nn.Module, data: Trajectories, tolerance: float) -> torch.Tensor:
    """Predictions from the true window that land behind a wall, per trajectory and wall.

    Prints, per trajectory, for each wall the particle-frames whose one-step prediction
    lies more than ``tolerance`` behind it, the deepest (mm), and the truth's count of
    frames more than ``tolerance`` behind any wall. Returns the counts [n_trajectories, 2 dim].
    """
    c = model.window
    bounds = torch.as_tensor(data.bounds)
    print(f"one-step predictions from the true window, more than {tolerance:g} behind each wall")
    print("trajectory | per wall (lower walls, then upper): particle-frames, deepest (mm) | truth")
    counts = []
    for k, (pos, ptype) in enumerate(zip(data.positions, data.particle_type, strict=True)):
        with torch.no_grad():
            pred = torch.stack(
                [
                    model.step({K.POS_HISTORY: pos[t - c : t].transpose(0, 1), K.Z: ptype})
                    for t in range(c, len(pos))
                ]
            )
        depth = penetration(pred, bounds)  # [T - C, n, 2 dim]
        count = (depth > tolerance).sum(dim=(0, 1))
        deepest = depth.amax(dim=(0, 1)) * 1e3
        truth = int((penetration(pos[c:], bounds).amax(-1) > tolerance).sum())
        cells = " | ".join(f"{int(n)}, {float(d):.1f}" for n, d in zip(count, deepest, strict=True))
        print(f"{k:10d} | {cells} | {truth}")
        counts.append(count)
    counts_t = torch.stack(counts)
    print(
        "       all | " + " | ".join(str(int(n)) for n in counts_t.sum(0)) + f" | total {int(counts_t.sum())}"
    )
    return counts_t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="gns.pt written by physnet gns-train")
    parser.add_argument("data", help=".npz of trajectories (scripts/generate_mpm_water.py)")
    parser.add_argument("--trajectory", type=int, default=0, help="index of the trajectory")
    parser.add_argument("--all", action="store_true", help="every trajectory: how long particles stay out")
    parser.add_argument(
        "--one-step", action="store_true", help="every frame from the true window: one-step landings outside"
    )
    parser.add_argument("--every", type=int, default=50, help="print every n-th rollout frame")
    parser.add_argument("--tolerance", type=float, default=1.5e-3, help="length unit: count deeper ones")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: leave as is)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_simulator(args.model).eval()
    data = load_trajectories(args.data, next(model.parameters()).dtype)
    if args.one_step:
        one_step(model, data, args.tolerance)
        return 0
    if args.all:
        summary(model, data, args.tolerance)
        return 0
    if not 0 <= args.trajectory < len(data.positions):
        raise SystemExit(f"--trajectory must be in 0..{len(data.positions) - 1}, got {args.trajectory}")
    pos, ptype = data.positions[args.trajectory], data.particle_type[args.trajectory]
    c = model.window
    with torch.no_grad():
        pred = rollout(model, pos[:c].transpose(0, 1), pos.shape[0] - c, particle_type=ptype)
    depth = penetration(pred, torch.as_tensor(data.bounds))  # [T, n, 2 dim]
    n_walls = depth.shape[-1]
    print(f"trajectory {args.trajectory}: {pos.shape[1]} particles, {pred.shape[0]} rollout frames")
    print("frame | per wall (lower walls, then upper): outside > tolerance, median / deepest depth (mm)")
    frames = list(range(0, pred.shape[0], args.every))
    if frames[-1] != pred.shape[0] - 1:
        frames.append(pred.shape[0] - 1)
    for t in frames:
        cells = []
        for w in range(n_walls):
            d = depth[t, :, w]
            out = d[d > args.tolerance]
            median = float(out.median()) * 1e3 if out.numel() else 0.0
            cells.append(f"{out.numel()}, {median:.1f} / {float(d.max()) * 1e3:.1f}")
        print(f"{t + c:5d} | " + " | ".join(cells))
    ever = (depth.amax(dim=(0, 2)) > args.tolerance).sum()
    print(f"particles ever more than {args.tolerance:g} outside: {int(ever)} of {pos.shape[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
