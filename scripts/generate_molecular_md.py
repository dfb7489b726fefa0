"""Molecular MD data at GFN2-xTB level: Langevin dynamics with tblite's ASE calculator.

A SMILES (RDKit ETKDGv3 + MMFF94 geometry via :func:`physnet.data.from_smiles`) or a
structure file gives the starting geometry. Maxwell-Boltzmann velocities at the target
temperature, then Langevin MD (ASE, ``fixcm=False`` plus a ``FixCom()`` constraint:
ASE 3.29's ``fixcm=True`` overheated small molecules to ~700 K in a 500 K run), an
equilibration, and one frame every ``stride`` steps. Everything random comes from one
``numpy.random.default_rng(seed)`` (and the ETKDG seed), so the same command on the same
software versions gives the same frames; run with one OpenMP thread (``--threads 1``,
the default) for bit-identical results.

Output (in ``--out-dir``, default the repository's ``data/``): ``<name>.extxyz.gz`` with
per frame: positions [Å], momenta [amu·Å/(ASE time unit), ASE's own unit], energy [eV],
forces [eV/Å] and ``info`` ``frame``, ``step``, ``time_fs``, ``temperature_K`` (from
the kinetic energy with 3N-3 degrees of freedom, centre of mass fixed); and the sidecar
``<name>.json`` with units and provenance (method, versions, MD settings, seed, command).

Examples::

    python scripts/generate_molecular_md.py --smiles CCO --name ethanol_gfn2 --frames 2000 --seed 0
    python scripts/generate_molecular_md.py --structure mol.xyz --name mol_gfn2 --frames 100
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

DESCRIPTION = __doc__.split("\n\n")[0]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=DESCRIPTION)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--smiles", help="molecule as SMILES; geometry from RDKit ETKDGv3 + MMFF94")
    src.add_argument("--structure", help="starting structure file (any format ase.io.read reads), Å")
    p.add_argument("--name", required=True, help="data set name, e.g. ethanol_gfn2 (file <name>.extxyz.gz)")
    p.add_argument("--frames", type=int, default=2000, help="frames to write (default 2000)")
    p.add_argument("--temperature", type=float, default=500.0, help="target temperature, K (default 500)")
    p.add_argument("--timestep", type=float, default=0.5, help="time step, fs (default 0.5)")
    p.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs (default 0.01)")
    p.add_argument(
        "--equilibration", type=int, default=1000, help="MD steps before the first frame (default 1000)"
    )
    p.add_argument("--stride", type=int, default=10, help="MD steps between frames (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of ETKDG, velocities and Langevin noise")
    p.add_argument(
        "--accuracy", type=float, default=0.1, help="tblite SCF accuracy (lower is tighter; default 0.1)"
    )
    p.add_argument("--charge", type=int, default=0, help="total charge, e (default 0)")
    p.add_argument("--out-dir", default=None, help="output folder (default: the repository's data/)")
    p.add_argument("--threads", type=int, default=1, help="OpenMP threads for tblite (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    for name in ("frames", "stride", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.equilibration < 0:
        p.error("--equilibration must be >= 0")
    if not (args.temperature > 0 and args.timestep > 0 and args.friction > 0):
        p.error("--temperature, --timestep and --friction must be > 0")
    return args


def initial_structure(args: argparse.Namespace):  # -> ase.Atoms
    """The starting geometry [Å]: RDKit ETKDGv3 + MMFF94 from ``--smiles`` or ``--structure``."""
    if args.smiles:
        from physnet.data import from_smiles

        atoms = from_smiles(args.smiles, n_conformers=1, seed=args.seed, optimize=True)[0]
    else:
        from ase.io import read

        atoms = read(args.structure, index=0)
    atoms.pbc = False
    atoms.cell = None
    atoms.info = {}
    return atoms


def make_calculator(accuracy: float, charge: int):  # -> tblite.ase.TBLite
    """tblite's GFN2-xTB ASE calculator (energies in eV, forces in eV/Å, dipole in e·Å)."""
    from tblite.ase import TBLite

    return TBLite(method="GFN2-xTB", accuracy=accuracy, charge=charge, verbosity=0)


def run_md(atoms, args: argparse.Namespace) -> list:  # -> list[ase.Atoms]
    """Langevin MD; returns ``args.frames`` frames with energy, forces, momenta and temperature.

    Args:
        atoms: starting structure with a calculator attached (positions in Å).
        args: settings from :func:`parse_args` (temperature K, time step fs, friction 1/fs,
            equilibration and stride in steps, seed).
    """
    import numpy as np
    from ase import Atoms, units
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary
    from tqdm import tqdm

    from physnet.md.velocities import maxwell_boltzmann

    rng = np.random.default_rng(args.seed)
    atoms.set_constraint(FixCom())
    maxwell_boltzmann(atoms, args.temperature, rng)
    Stationary(atoms)
    dyn = Langevin(
        atoms,
        timestep=args.timestep * units.fs,
        temperature_K=args.temperature,
        friction=args.friction / units.fs,
        fixcm=False,  # the FixCom constraint holds the centre of mass instead (see module docstring)
        rng=rng,
    )
    frames = []
    total = args.equilibration + args.frames * args.stride
    with tqdm(total=total, unit="step", desc=args.name, disable=args.no_progress, mininterval=2) as bar:
        if args.equilibration:
            dyn.run(args.equilibration)
            bar.update(args.equilibration)
        for k in range(args.frames):
            dyn.run(args.stride)
            bar.update(args.stride)
            out = Atoms(numbers=atoms.numbers, positions=atoms.get_positions(), momenta=atoms.get_momenta())
            out.calc = SinglePointCalculator(
                out,
                energy=float(atoms.get_potential_energy()),
                forces=atoms.get_forces(apply_constraint=False),  # raw -dE/dx, not the constrained force
            )
            out.info.update(
                frame=k,
                step=(k + 1) * args.stride,
                time_fs=(k + 1) * args.stride * args.timestep,
                temperature_K=float(atoms.get_temperature()),  # 3N-3 degrees of freedom (FixCom)
            )
            frames.append(out)
            if k % 50 == 0:
                bar.set_postfix(T=f"{np.mean([f.info['temperature_K'] for f in frames]):.0f} K")
    return frames


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before numpy / tblite load their thread pools
    import numpy as np

    from physnet.data.embedded import command_line, software_versions, write_set

    atoms = initial_structure(args)
    atoms.calc = make_calculator(args.accuracy, args.charge)
    frames = run_md(atoms, args)
    temps = np.array([f.info["temperature_K"] for f in frames])
    stats = {
        "mean_temperature_K": float(temps.mean()),
        "std_temperature_K": float(temps.std()),
        "relative_deviation_from_target": float(temps.mean() / args.temperature - 1.0),
        "mean_energy_eV": float(np.mean([f.get_potential_energy() for f in frames])),
    }
    source = {"smiles": args.smiles} if args.smiles else {"structure": str(args.structure)}
    meta = {
        "description": f"GFN2-xTB Langevin MD of {args.smiles or args.structure} at {args.temperature:g} K",
        "kind": "molecular_md",
        "units": {
            "energy": "eV",
            "length": "Å",
            "forces": "eV/Å",
            "momenta": "amu·Å/(ASE time unit); velocity = momenta / mass, ASE time unit = 10.18 fs",
            "temperature": "K",
            "time": "fs",
        },
        "per_frame": {
            "energy": "total GFN2-xTB energy, eV",
            "forces": "-dE/dx, eV/Å",
            "momenta": "atomic momenta at the frame (ASE convention)",
            "temperature_K": "2 E_kin / ((3N-3) k_B), centre of mass fixed",
            "step": "MD steps after equilibration",
            "time_fs": "time after equilibration, fs",
        },
        "provenance": {
            "method": "GFN2-xTB",
            "engine": "tblite ASE calculator (tblite.ase.TBLite)",
            "engine_settings": {
                "accuracy": args.accuracy,
                "electronic_temperature_K": 300.0,
                "charge": args.charge,
                "max_iterations": 250,
            },
            "software": software_versions(("ase", "numpy", "rdkit", "tblite")),
            **source,
            "initial_geometry": "RDKit ETKDGv3 (randomSeed = seed + 1) + MMFF94 via physnet.data.from_smiles"
            if args.smiles
            else "read from the structure file",
            "dynamics": "ase.md.langevin.Langevin(fixcm=False) with a FixCom() constraint",
            "initial_velocities": "Maxwell-Boltzmann (ase thermalize_momenta) at the target temperature, "
            "then Stationary",
            "temperature_K": args.temperature,
            "timestep_fs": args.timestep,
            "friction_per_fs": args.friction,
            "equilibration_steps": args.equilibration,
            "stride_steps": args.stride,
            "n_frames": args.frames,
            "seed": args.seed,
            "rng": "numpy.random.default_rng(seed), shared by velocities and Langevin noise",
            "omp_num_threads": args.threads,
            "command": command_line([sys.argv[0], *(sys.argv[1:] if argv is None else argv)]),
        },
        "statistics": stats,
    }
    path = write_set(frames, args.name, meta, args.out_dir)
    dev = 100 * stats["relative_deviation_from_target"]
    print(
        f"wrote {len(frames)} frames to {path} ({path.stat().st_size / 1e6:.2f} MB); "
        f"mean T = {stats['mean_temperature_K']:.1f} ± {stats['std_temperature_K']:.1f} K "
        f"({dev:+.1f} % from {args.temperature:g} K)"
    )
    if abs(dev) > 5:
        print(f"WARNING: mean temperature is {dev:+.1f} % from the target", file=sys.stderr)
    return meta


if __name__ == "__main__":
    main()
