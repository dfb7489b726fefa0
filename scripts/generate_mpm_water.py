"""2D water trajectories from physnet's MLS-MPM solver (mpm88 style) for learned simulators.

Each trajectory drops 1-3 rectangular blocks of water (about ``--particles`` particles in
all) with random velocities into the unit box and stores ``--frames`` frames
``--substeps`` MPM substeps apart (:mod:`physnet.sim.mpm`). Trajectory ``k`` is seeded
by ``numpy.random.SeedSequence(seed).spawn(n)[k]``, so a seed fixes every trajectory and
the file is reproducible on the same software (one thread).

Output: ``OUT.npz`` (arrays ``positions_<k>`` [frames, n_k, 2] in m, ``particle_type_<k>``
[n_k] int64, ``bounds`` [2, 2] m, ``frame_dt`` s) and the sidecar ``OUT.json`` with
units, provenance (solver settings, software versions, seed, exact command) and
statistics. Read it with :func:`physnet.data.trajectories.load_trajectories`.

Examples::

    python scripts/generate_mpm_water.py --out downloads/gns_water/train.npz --trajectories 40 --seed 0
    python scripts/generate_mpm_water.py --out downloads/gns_water/test.npz --trajectories 5 --seed 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

DESCRIPTION = __doc__.split("\n\n")[0]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=DESCRIPTION)
    p.add_argument("--out", required=True, help="output .npz (a JSON sidecar is written next to it)")
    p.add_argument("--trajectories", type=int, default=10, help="number of trajectories (default 10)")
    p.add_argument(
        "--frames", type=int, default=300, help="frames per trajectory incl. frame 0 (default 300)"
    )
    p.add_argument("--particles", type=int, default=500, help="target particles per trajectory (default 500)")
    p.add_argument(
        "--substeps", type=int, default=10, help="MPM substeps between frames (default 10: 4 ms frames)"
    )
    p.add_argument("--dt", type=float, default=4e-4, help="MPM substep, s (default 4e-4)")
    p.add_argument("--grid", type=int, default=64, help="grid nodes per side (default 64)")
    p.add_argument("--max-speed", type=float, default=2.0, help="initial velocity bound, m/s (default 2)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="stored positions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = p.parse_args(argv)
    if min(args.trajectories, args.frames - 1, args.particles, args.substeps) < 1:
        p.error("--trajectories, --particles, --substeps must be >= 1 and --frames >= 2")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import numpy as np
    import torch

    from physnet.data.embedded import command_line, sha256, software_versions
    from physnet.sim.mpm import MPMWater

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sim = MPMWater(n_grid=args.grid, dt=args.dt)
    arrays: dict[str, np.ndarray] = {}
    counts, clamped, mass_err, speeds = [], 0, 0.0, []
    start = time.perf_counter()
    for k, child in enumerate(np.random.SeedSequence(args.seed).spawn(args.trajectories)):
        rng = np.random.default_rng(child)
        pos, vel = sim.water_blocks(rng, n_particles=args.particles, max_speed=args.max_speed)
        traj = sim.run(pos, vel, args.frames, args.substeps)
        arrays[f"positions_{k}"] = traj.positions.astype(args.dtype)
        arrays[f"particle_type_{k}"] = traj.particle_type
        counts.append(int(traj.positions.shape[1]))
        clamped += traj.n_clamped
        mass_err = max(mass_err, float(np.abs(traj.grid_mass / traj.mass - 1).max()))
        speeds.append(float(np.abs(np.diff(traj.positions, axis=0)).max()))
        print(f"trajectory {k}: {counts[-1]} particles, {args.frames} frames", flush=True)
    elapsed = time.perf_counter() - start
    arrays["bounds"] = sim.bounds
    arrays["frame_dt"] = np.array(args.substeps * args.dt)
    tmp = out.with_name(f".{out.stem}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, out)
    meta = {
        "name": out.stem,
        "file": out.name,
        "format": "npz: positions_<k> [frames, n_k, 2], particle_type_<k> [n_k], bounds [2, 2], frame_dt",
        "description": "2D MLS-MPM (mpm88-style) water: random blocks dropped into a box",
        "kind": "particle_trajectories",
        "units": {"length": "m (unit box)", "time": "s", "frame_dt": "s"},
        "n_trajectories": args.trajectories,
        "n_frames": args.frames,
        "n_particles": {"min": min(counts), "max": max(counts), "total": sum(counts)},
        "provenance": {
            "engine": "physnet.sim.mpm.MPMWater (torch, vectorised MLS-MPM; Hu et al., SIGGRAPH 2018)",
            "engine_settings": {
                "n_grid": args.grid,
                "dx_m": sim.dx,
                "dt_s": args.dt,
                "substeps_per_frame": args.substeps,
                "frame_dt_s": args.substeps * args.dt,
                "bulk_modulus": sim.E,
                "gravity_m_per_s2": sim.gravity,
                "bound_nodes": sim.bound,
                "particle_spacing_cells": sim.spacing,
                "domain_m": sim.bounds.tolist(),
            },
            "scene": f"1-3 blocks, about {args.particles} particles, velocity components uniform in "
            f"[-{args.max_speed}, {args.max_speed}] m/s",
            "software": software_versions(("numpy", "torch")),
            "seed": args.seed,
            "rng": "trajectory k: numpy.random.default_rng(numpy.random.SeedSequence(seed).spawn(n)[k])",
            "dtype": args.dtype,
            "threads": args.threads,
            "command": command_line([sys.argv[0], *(sys.argv[1:] if argv is None else argv)]),
        },
        "statistics": {
            "clamped_particle_substeps": clamped,
            "max_relative_grid_mass_error": mass_err,
            "max_displacement_per_frame_m": max(speeds),
            "seconds": round(elapsed, 1),
        },
        "sha256": sha256(out),
        "size_bytes": out.stat().st_size,
    }
    sidecar = out.with_suffix(".json")
    sidecar.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(
        f"wrote {args.trajectories} trajectories ({sum(counts)} particles) to {out} "
        f"({out.stat().st_size / 1e6:.2f} MB) in {elapsed:.1f} s; clamped particle-substeps: {clamped}"
    )
    return meta


if __name__ == "__main__":
    main()
