"""The ``physnet`` command line.

``physnet demo``: build a molecule from SMILES with RDKit, wrap a SchNet in a
Potential and run ASE molecular dynamics with :class:`physnet.Calculator`,
printing energies as it goes. (Training, evaluation and MD from checkpoints join
this CLI with the training issue.)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np
import torch


def _demo(args: argparse.Namespace) -> int:
    from ase import units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
    from ase.md.verlet import VelocityVerlet

    import physnet

    torch.manual_seed(args.seed)
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    atoms = physnet.data.from_smiles(args.smiles, seed=args.seed)[0]
    species = sorted(set(atoms.get_chemical_symbols()))
    model = physnet.models.build("schnet", species=species, cutoff=args.cutoff)
    potential = physnet.Potential(model)
    atoms.calc = physnet.Calculator(potential, device=args.device, dtype=dtype)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"physnet demo: {args.smiles} ({len(atoms)} atoms, RDKit ETKDG + MMFF), SchNet with "
        f"{n_params} parameters (random weights), {args.dtype}, {args.device}"
    )
    MaxwellBoltzmannDistribution(atoms, temperature_K=args.temperature, rng=np.random.default_rng(args.seed))
    Stationary(atoms)
    ZeroRotation(atoms)
    if args.thermostat == "langevin":
        # fixcm=False with a FixCom constraint samples NVT correctly (ASE >= 3.28 advice).
        atoms.set_constraint(FixCom())
        dyn = Langevin(
            atoms,
            args.dt * units.fs,
            temperature_K=args.temperature,
            friction=0.01 / units.fs,
            fixcm=False,
            rng=np.random.default_rng(args.seed),
        )
    else:
        dyn = VelocityVerlet(atoms, args.dt * units.fs)
    print(f"{'step':>6} {'time/fs':>8} {'Epot/eV':>12} {'Ekin/eV':>10} {'Etot/eV':>12} {'T/K':>8}")

    def report() -> None:
        epot, ekin = atoms.get_potential_energy(), atoms.get_kinetic_energy()
        temp = atoms.get_temperature()
        step = dyn.nsteps
        print(f"{step:6d} {step * args.dt:8.1f} {epot:12.5f} {ekin:10.5f} {epot + ekin:12.5f} {temp:8.1f}")
        if not np.isfinite(epot):
            raise RuntimeError("non-finite energy during MD")

    dyn.attach(report, interval=args.log_every)
    start = time.perf_counter()
    dyn.run(args.steps)
    elapsed = time.perf_counter() - start
    per_step = 1e3 * elapsed / max(args.steps, 1)
    print(f"{args.steps} {args.thermostat} steps in {elapsed:.2f} s ({per_step:.2f} ms/step)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="physnet", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="SchNet + ASE MD on an RDKit-built molecule",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    demo.add_argument("--smiles", default="CCO", help="molecule to build with RDKit")
    demo.add_argument("--steps", type=int, default=200, help="MD steps")
    demo.add_argument("--dt", type=float, default=0.5, help="time step in fs")
    demo.add_argument("--temperature", type=float, default=300.0, help="temperature in K")
    demo.add_argument("--thermostat", choices=["langevin", "nve"], default="langevin")
    demo.add_argument("--cutoff", type=float, default=5.0, help="SchNet cutoff in Å")
    demo.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    demo.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--log-every", type=int, default=20, help="print every N steps")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``physnet`` command."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
