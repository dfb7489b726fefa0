"""Periodic metal data with stress: ASE's EMT on strained fcc boxes in Langevin MD.

For each target temperature and each of ``--strains`` runs per temperature: an fcc box
of ``--repeat`` conventional cells (3x3x3: 108 atoms) is filled at random with the
composition (one new random arrangement per run), given EMT's equilibrium lattice
constant for that arrangement, deformed by a random symmetric strain (each component
uniform in ``±--max-strain``), then Maxwell-Boltzmann velocities, Langevin MD
(``fixcm=False`` with a ``FixCom()`` constraint, as in ``generate_molecular_md.py``),
an equilibration and ``--frames-per-run`` frames every ``--stride`` steps. Everything
random comes from one ``numpy.random.default_rng(seed)``.

Output (in ``--out-dir``, default the repository's ``data/``): ``<name>.extxyz.gz`` with
per frame: positions [Å], cell [Å], momenta [ASE units], energy [eV], forces [eV/Å],
stress [eV/Å^3, Voigt xx yy zz yz xz xy, ASE sign, potential part only: no kinetic
term] and ``info`` ``run``, ``target_temperature_K``, ``temperature_K`` (3N-3 degrees of
freedom), ``strain`` (Voigt, dimensionless), ``lattice_constant_A``, ``step``; and the
sidecar ``<name>.json`` with units and provenance.

Examples::

    python scripts/generate_emt_metals.py --composition Cu=1 --name cu_emt --seed 0
    python scripts/generate_emt_metals.py --composition Cu=0.75,Au=0.25 --name cuau_emt --seed 1
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

DESCRIPTION = __doc__.split("\n\n")[0]
EMT_ELEMENTS = ("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt")


def parse_composition(text: str) -> dict[str, float]:
    """``"Cu=0.75,Au=0.25"`` -> ``{"Cu": 0.75, "Au": 0.25}`` (fractions normalised to 1)."""
    out: dict[str, float] = {}
    for part in text.split(","):
        symbol, _, frac = part.partition("=")
        symbol = symbol.strip()
        if symbol not in EMT_ELEMENTS:
            raise argparse.ArgumentTypeError(f"{symbol!r}: EMT has parameters for {', '.join(EMT_ELEMENTS)}")
        out[symbol] = float(frac) if frac else 1.0
    total = sum(out.values())
    if total <= 0 or any(v < 0 for v in out.values()):
        raise argparse.ArgumentTypeError(f"bad composition {text!r}")
    return {k: v / total for k, v in out.items()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=DESCRIPTION)
    p.add_argument(
        "--composition", type=parse_composition, required=True, help="e.g. Cu=1 or Cu=0.75,Au=0.25"
    )
    p.add_argument("--name", required=True, help="data set name, e.g. cu_emt (file <name>.extxyz.gz)")
    p.add_argument(
        "--temperatures", type=float, nargs="+", default=[300.0, 600.0, 900.0], help="K (default 300 600 900)"
    )
    p.add_argument("--strains", type=int, default=4, help="runs (random strains) per temperature (default 4)")
    p.add_argument("--max-strain", type=float, default=0.03, help="largest strain component (default 0.03)")
    p.add_argument("--frames-per-run", type=int, default=20, help="frames per run (default 20)")
    p.add_argument("--repeat", type=int, default=3, help="conventional cells per axis (default 3: 108 atoms)")
    p.add_argument("--timestep", type=float, default=2.0, help="time step, fs (default 2)")
    p.add_argument("--friction", type=float, default=0.02, help="Langevin friction, 1/fs (default 0.02)")
    p.add_argument("--equilibration", type=int, default=250, help="steps before a run's first frame (250)")
    p.add_argument("--stride", type=int, default=20, help="MD steps between frames (default 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of arrangement, strain, velocities and noise")
    p.add_argument("--max-runs", type=int, default=None, help="stop after this many runs (for tests)")
    p.add_argument("--out-dir", default=None, help="output folder (default: the repository's data/)")
    p.add_argument("--threads", type=int, default=1, help="OpenMP threads for numpy (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    for name in ("strains", "frames_per_run", "repeat", "stride", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if not 0 <= args.max_strain < 0.2:
        p.error("--max-strain must be in [0, 0.2)")
    return args


def random_box(composition: dict[str, float], repeat: int, rng):  # -> ase.Atoms
    """fcc box of ``4 * repeat**3`` atoms, species drawn without replacement to match ``composition``."""
    import numpy as np
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=1.0, cubic=True).repeat(repeat)
    n = len(atoms)
    counts = {s: int(round(f * n)) for s, f in composition.items()}
    first = next(iter(counts))
    counts[first] += n - sum(counts.values())
    symbols = np.concatenate([[s] * c for s, c in counts.items()])
    atoms.set_chemical_symbols(list(symbols[rng.permutation(n)]))
    return atoms


def equilibrium_lattice_constant(atoms) -> float:
    """EMT's zero-temperature lattice constant [Å] of the cubic box (built with a = 1 Å)."""
    from ase.calculators.emt import EMT
    from scipy.optimize import minimize_scalar

    reference = atoms.get_cell()[:]  # a = 1 Å
    probe = atoms.copy()
    probe.calc = EMT()

    def energy(a: float) -> float:
        probe.set_cell(reference * a, scale_atoms=True)
        return probe.get_potential_energy()

    res = minimize_scalar(energy, bounds=(3.3, 4.3), method="bounded", options={"xatol": 1e-6})
    return float(res.x)


def run(args: argparse.Namespace) -> tuple[list, list[dict[str, Any]]]:
    """All runs; returns the frames and one summary dict per run."""
    import numpy as np
    from ase import Atoms, units
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary
    from tqdm import tqdm

    from physnet.md.velocities import maxwell_boltzmann

    rng = np.random.default_rng(args.seed)
    plan = [(t, s) for t in args.temperatures for s in range(args.strains)]
    if args.max_runs is not None:
        plan = plan[: args.max_runs]
    steps_per_run = args.equilibration + args.frames_per_run * args.stride
    frames, runs = [], []
    bar = tqdm(total=len(plan) * steps_per_run, unit="step", desc=args.name, disable=args.no_progress)
    for r, (temperature, _) in enumerate(plan):
        atoms = random_box(args.composition, args.repeat, rng)
        a0 = equilibrium_lattice_constant(atoms)
        eps = rng.uniform(-args.max_strain, args.max_strain, size=(3, 3))
        eps = 0.5 * (eps + eps.T)  # symmetric strain
        atoms.set_cell(atoms.get_cell()[:] * a0 @ (np.eye(3) + eps), scale_atoms=True)
        voigt = [eps[0, 0], eps[1, 1], eps[2, 2], eps[1, 2], eps[0, 2], eps[0, 1]]
        atoms.calc = EMT()
        atoms.set_constraint(FixCom())
        maxwell_boltzmann(atoms, temperature, rng)
        Stationary(atoms)
        dyn = Langevin(
            atoms,
            timestep=args.timestep * units.fs,
            temperature_K=temperature,
            friction=args.friction / units.fs,
            fixcm=False,
            rng=rng,
        )
        dyn.run(args.equilibration)
        bar.update(args.equilibration)
        temps = []
        for k in range(args.frames_per_run):
            dyn.run(args.stride)
            bar.update(args.stride)
            out = Atoms(
                numbers=atoms.numbers,
                positions=atoms.get_positions(),
                momenta=atoms.get_momenta(),
                cell=atoms.get_cell(),
                pbc=True,
            )
            out.calc = SinglePointCalculator(
                out,
                energy=float(atoms.get_potential_energy()),
                forces=atoms.get_forces(apply_constraint=False),
                stress=atoms.get_stress(apply_constraint=False),  # Voigt, eV/Å^3, no kinetic part
            )
            t_k = float(atoms.get_temperature())
            temps.append(t_k)
            out.info.update(
                frame=len(frames),
                run=r,
                target_temperature_K=float(temperature),
                temperature_K=t_k,
                strain=np.array(voigt),
                lattice_constant_A=a0,
                step=(k + 1) * args.stride,
            )
            frames.append(out)
        runs.append(
            {
                "run": r,
                "target_temperature_K": float(temperature),
                "mean_temperature_K": float(np.mean(temps)),
                "strain_voigt": [float(v) for v in voigt],
                "lattice_constant_A": a0,
                "composition": {s: atoms.get_chemical_symbols().count(s) for s in args.composition},
            }
        )
    bar.close()
    return frames, runs


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import numpy as np

    from physnet.data.embedded import command_line, software_versions, write_set

    frames, runs = run(args)
    per_t = {}
    for t in sorted({r["target_temperature_K"] for r in runs}):
        temps = np.array([f.info["temperature_K"] for f in frames if f.info["target_temperature_K"] == t])
        per_t[f"{t:g}"] = {
            "mean_temperature_K": float(temps.mean()),
            "std_temperature_K": float(temps.std()),
            "relative_deviation_from_target": float(temps.mean() / t - 1.0),
            "n_frames": int(temps.size),
        }
    comp = ", ".join(f"{s} {f:.0%}" for s, f in args.composition.items())
    meta = {
        "description": f"EMT Langevin MD of strained fcc {comp} boxes at "
        + ", ".join(f"{t:g}" for t in args.temperatures)
        + " K",
        "kind": "periodic_md",
        "units": {
            "energy": "eV",
            "length": "Å",
            "forces": "eV/Å",
            "stress": "eV/Å^3",
            "momenta": "amu·Å/(ASE time unit); velocity = momenta / mass, ASE time unit = 10.18 fs",
            "temperature": "K",
        },
        "per_frame": {
            "energy": "total EMT energy, eV",
            "forces": "-dE/dx, eV/Å",
            "stress": "(1/V) dE/d(strain), Voigt xx yy zz yz xz xy, ASE sign, potential part only "
            "(no kinetic term), eV/Å^3",
            "temperature_K": "2 E_kin / ((3N-3) k_B), centre of mass fixed",
            "target_temperature_K": "thermostat temperature of the frame's run",
            "strain": "random symmetric strain applied to the equilibrium cell, Voigt",
            "lattice_constant_A": "EMT zero-temperature lattice constant of the run's arrangement",
            "run": "index of the MD run",
            "step": "MD steps after the run's equilibration",
        },
        "provenance": {
            "method": "EMT (effective medium theory, ASE's built-in ase.calculators.emt.EMT)",
            "engine": "ase.calculators.emt.EMT",
            "engine_settings": {},
            "software": software_versions(("ase", "numpy", "scipy")),
            "composition": args.composition,
            "structure": f"fcc, {args.repeat}x{args.repeat}x{args.repeat} conventional cells "
            f"({4 * args.repeat**3} atoms), random arrangement per run",
            "dynamics": "ase.md.langevin.Langevin(fixcm=False) with a FixCom() constraint",
            "temperatures_K": args.temperatures,
            "runs_per_temperature": args.strains,
            "max_strain": args.max_strain,
            "frames_per_run": args.frames_per_run,
            "timestep_fs": args.timestep,
            "friction_per_fs": args.friction,
            "equilibration_steps": args.equilibration,
            "stride_steps": args.stride,
            "seed": args.seed,
            "rng": "numpy.random.default_rng(seed), shared by arrangement, strain, velocities and noise",
            "omp_num_threads": args.threads,
            "command": command_line([sys.argv[0], *(sys.argv[1:] if argv is None else argv)]),
        },
        "statistics": {"per_temperature": per_t, "runs": runs},
    }
    path = write_set(frames, args.name, meta, args.out_dir)
    print(f"wrote {len(frames)} frames to {path} ({path.stat().st_size / 1e6:.2f} MB)")
    for t, s in per_t.items():
        dev = 100 * s["relative_deviation_from_target"]
        print(
            f"  {t} K: mean T = {s['mean_temperature_K']:.1f} ± {s['std_temperature_K']:.1f} K ({dev:+.1f} %)"
        )
    return meta


if __name__ == "__main__":
    main()
