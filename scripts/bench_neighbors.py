"""Benchmark :func:`physnet.data.neighbors.radius_graph` on periodic boxes of growing size.

Each box is a rattled fcc Cu crystal (a = 3.61 Å, 0.085 atoms/Å^3) or uniformly random
atoms at liquid-water density (0.1 atoms/Å^3). For every size the script prints the
median time of ``--repeats`` calls after one warm-up call, the number of edges, the
time per atom and the growth relative to the previous size (an exponent near 1 means
linear scaling). For boxes up to ``--ase-max-atoms`` it also times ASE's
``neighbor_list`` on the same structure as the reference, and checks that both give
the same number of edges.

Usage::

    python scripts/bench_neighbors.py                       # 1e3, 1e4, 1e5 atoms, CPU
    python scripts/bench_neighbors.py --sizes 1000 8000 --repeats 3 --device cuda
    python scripts/bench_neighbors.py --threads 1   # on a loaded machine, avoids thread contention
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk
from ase.neighborlist import neighbor_list

from physnet.data.neighbors import radius_graph

CU_LATTICE = 3.61  # Å, fcc Cu
WATER_DENSITY = 0.1  # atoms / Å^3, roughly liquid water


def make_box(n_atoms: int, system: str, seed: int = 0) -> Atoms:
    """Periodic cubic box of about ``n_atoms`` atoms (fcc Cu rattled by 0.05 Å, or random)."""
    rng = np.random.default_rng(seed)
    if system == "fcc":
        reps = max(1, round((n_atoms / 4) ** (1 / 3)))
        atoms = bulk("Cu", "fcc", a=CU_LATTICE, cubic=True).repeat((reps, reps, reps))
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        return atoms
    length = (n_atoms / WATER_DENSITY) ** (1 / 3)
    return Atoms(
        f"O{n_atoms}",
        positions=rng.uniform(0.0, length, size=(n_atoms, 3)),
        cell=np.eye(3) * length,
        pbc=True,
    )


def median_time(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    """Median wall time in seconds of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000], help="atoms")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per size (after a warm-up)")
    parser.add_argument("--cutoff", type=float, default=5.0, help="neighbour cutoff in Å")
    parser.add_argument("--device", default="cpu", help="torch device of the inputs, e.g. cpu or cuda")
    parser.add_argument("--system", choices=["fcc", "random"], default="fcc", help="crystal or random box")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: leave torch's choice)"
    )
    parser.add_argument(
        "--ase-max-atoms", type=int, default=20_000, help="also time ASE neighbor_list up to this size"
    )
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(
        f"radius_graph on {args.system} boxes, cutoff {args.cutoff} Å, device {device}, "
        f"median of {args.repeats} after 1 warm-up, torch threads {torch.get_num_threads()}"
    )
    header = (
        f"{'atoms':>8} {'edges':>10} {'edges/atom':>10} {'time [ms]':>10} {'us/atom':>8} "
        f"{'x atoms':>8} {'x time':>7} {'exponent':>8} {'ASE [ms]':>9} {'ASE/ours':>8}"
    )
    print(header)
    print("-" * len(header))
    previous: tuple[int, float] | None = None
    for size in args.sizes:
        atoms = make_box(size, args.system)
        n = len(atoms)
        pos = torch.tensor(atoms.positions, dtype=torch.float64, device=device)  # [n_atoms, 3]
        cell = torch.tensor(np.asarray(atoms.cell), dtype=torch.float64, device=device)  # [3, 3]
        pbc = torch.tensor(atoms.pbc, device=device)  # [3]

        def call(pos: torch.Tensor = pos, cell: torch.Tensor = cell, pbc: torch.Tensor = pbc) -> object:
            return radius_graph(pos, args.cutoff, None, cell, pbc)

        seconds = median_time(call, args.repeats, sync)
        n_edges = call()[0].shape[1]

        growth = "-" * 8 + " " + "-" * 7 + " " + "-" * 8
        if previous is not None:
            n_ratio, t_ratio = n / previous[0], seconds / previous[1]
            growth = f"{n_ratio:8.1f} {t_ratio:7.1f} {math.log(t_ratio) / math.log(n_ratio):8.2f}"
        previous = (n, seconds)

        ase_cols = f"{'-':>9} {'-':>8}"
        if n <= args.ase_max_atoms:
            ase_seconds = median_time(
                lambda atoms=atoms: neighbor_list("ij", atoms, args.cutoff), args.repeats, lambda: None
            )
            n_ase = len(neighbor_list("i", atoms, args.cutoff))
            if n_ase != n_edges:
                raise RuntimeError(f"{n} atoms: ASE finds {n_ase} edges, radius_graph {n_edges}")
            ase_cols = f"{ase_seconds * 1e3:9.1f} {ase_seconds / seconds:8.1f}"
        print(
            f"{n:8d} {n_edges:10d} {n_edges / n:10.1f} {seconds * 1e3:10.1f} {seconds / n * 1e6:8.2f} "
            f"{growth} {ase_cols}"
        )
    print("exponent = log(x time) / log(x atoms) between consecutive sizes; 1.0 is linear scaling")


if __name__ == "__main__":
    main()
