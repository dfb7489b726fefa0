"""A molecular property set: small NCI molecules relaxed with GFN2-xTB (tblite).

Molecules come from the list RDKit itself ships, ``rdkit/Data/NCI/first_5K.smi`` (found
via ``rdkit.RDConfig.RDDataDir``), in file order, kept if they have at most
``--max-heavy`` heavy atoms, only the elements C, N, O, F (+H), one fragment, zero net
charge and no radical. Each gets an RDKit ETKDGv3 + MMFF94 geometry
(:func:`physnet.data.from_smiles`, seed ``--seed``), is relaxed with GFN2-xTB (ASE's
BFGS to ``--fmax``, at most ``--max-steps`` steps), and a final single point from scratch
(``tblite.interface.Calculator``, no SCF restart) gives the stored values.

Output (in ``--out-dir``, default the repository's ``data/``): ``<name>.extxyz.gz`` with
per molecule: positions [Å], energy [eV], forces [eV/Å], Mulliken ``charges`` [e],
``dipole`` (vector, e·Å, ASE's dipole unit) and ``info``: ``nci_id``, ``smiles``,
``n_heavy``, ``homo_eV``, ``lumo_eV``, ``homo_lumo_gap_eV``, ``dipole_debye`` (|dipole|),
``converged``, ``opt_steps``, ``fmax_eV_A``, ``topology_changed`` (covalent bonds of the
relaxed geometry differ from the starting one); and the sidecar ``<name>.json``.

Example::

    python scripts/generate_property_set.py --name nci_gfn2_properties --seed 0
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

DESCRIPTION = __doc__.split("\n\n")[0]
ELEMENTS = {"C", "N", "O", "F", "H"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=DESCRIPTION)
    p.add_argument("--name", required=True, help="data set name (file <name>.extxyz.gz)")
    p.add_argument("--smiles-file", default=None, help="SMILES list (default: RDKit's NCI/first_5K.smi)")
    p.add_argument("--max-heavy", type=int, default=9, help="most heavy atoms per molecule (default 9)")
    p.add_argument("--limit", type=int, default=None, help="keep only the first N selected molecules")
    p.add_argument("--fmax", type=float, default=0.01, help="relaxation threshold, eV/Å (default 0.01)")
    p.add_argument("--max-steps", type=int, default=500, help="most BFGS steps per molecule (default 500)")
    p.add_argument("--accuracy", type=float, default=0.1, help="tblite SCF accuracy (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="ETKDG seed (default 0)")
    p.add_argument("--out-dir", default=None, help="output folder (default: the repository's data/)")
    p.add_argument("--threads", type=int, default=1, help="OpenMP threads for tblite (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be >= 1")
    return args


def default_smiles_file() -> str:
    """Path of RDKit's bundled ``NCI/first_5K.smi``."""
    from rdkit import RDConfig

    return os.path.join(RDConfig.RDDataDir, "NCI", "first_5K.smi")


def select_molecules(path: str, max_heavy: int) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """(smiles, id) pairs passing the filter, in file order, and counts of what was dropped."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    kept, dropped = [], {"unparsable": 0, "elements": 0, "heavy_atoms": 0, "fragments": 0, "charged": 0}
    with open(path) as fh:
        for line in fh:
            parts = line.split()
            if not parts:
                continue
            smiles, ident = parts[0], (parts[1] if len(parts) > 1 else "")
            mol = Chem.MolFromSmiles(smiles)
            if mol is None:
                dropped["unparsable"] += 1
            elif not {a.GetSymbol() for a in mol.GetAtoms()} <= ELEMENTS:
                dropped["elements"] += 1
            elif mol.GetNumHeavyAtoms() > max_heavy:
                dropped["heavy_atoms"] += 1
            elif len(Chem.GetMolFrags(mol)) != 1:
                dropped["fragments"] += 1
            elif Chem.GetFormalCharge(mol) != 0 or any(a.GetNumRadicalElectrons() for a in mol.GetAtoms()):
                dropped["charged"] += 1
            else:
                kept.append((smiles, ident))
    return kept, dropped


def bonds(atoms) -> set[tuple[int, int]]:
    """Covalent bonds (i < j): pairs closer than 1.2 x the sum of covalent radii (ASE natural cutoffs)."""
    from ase.neighborlist import NeighborList, natural_cutoffs

    nl = NeighborList(natural_cutoffs(atoms, mult=1.2), self_interaction=False, bothways=False, skin=0.0)
    nl.update(atoms)
    return {(min(i, int(j)), max(i, int(j))) for i in range(len(atoms)) for j in nl.get_neighbors(i)[0]}


def single_point(atoms, accuracy: float) -> dict[str, Any]:
    """GFN2-xTB from scratch: energy [eV], forces [eV/Å], charges [e], dipole [e·Å], orbital energies [eV]."""
    import numpy as np
    from ase.units import Bohr, Hartree
    from tblite.interface import Calculator

    calc = Calculator("GFN2-xTB", atoms.numbers, atoms.positions / Bohr, 0, 0)
    calc.set("accuracy", accuracy)
    calc.set("verbosity", 0)
    res = calc.singlepoint()
    eps = np.asarray(res.get("orbital-energies")) * Hartree  # [n_orbitals], ascending
    occ = np.asarray(res.get("orbital-occupations"))
    if occ.ndim == 2:  # spin-resolved
        occ = occ.sum(axis=0)
    homo = int(np.flatnonzero(occ > 1.0)[-1])
    return {
        "energy": float(res.get("energy")) * Hartree,
        "forces": -np.asarray(res.get("gradient")) * Hartree / Bohr,
        "charges": np.asarray(res.get("charges")),
        "dipole": np.asarray(res.get("dipole")) * Bohr,  # e·Bohr -> e·Å
        "homo": float(eps[homo]),
        "lumo": float(eps[homo + 1]),
    }


def relax(smiles: str, ident: str, args: argparse.Namespace):  # -> ase.Atoms
    """One molecule: ETKDG + MMFF, GFN2-xTB BFGS, final single point; returns labelled Atoms."""
    import numpy as np
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.optimize import BFGS
    from ase.units import Debye
    from rdkit import Chem
    from tblite.ase import TBLite

    from physnet.data import from_smiles

    atoms = from_smiles(smiles, n_conformers=1, seed=args.seed, optimize=True)[0]
    start_bonds = bonds(atoms)
    atoms.calc = TBLite(method="GFN2-xTB", accuracy=args.accuracy, verbosity=0)
    opt = BFGS(atoms, logfile=None)
    converged = bool(opt.run(fmax=args.fmax, steps=args.max_steps))
    sp = single_point(atoms, args.accuracy)
    out = Atoms(numbers=atoms.numbers, positions=atoms.get_positions())
    out.calc = SinglePointCalculator(
        out, energy=sp["energy"], forces=sp["forces"], charges=sp["charges"], dipole=sp["dipole"]
    )
    out.info.update(
        nci_id=int(ident) if ident.isdigit() else ident,
        smiles=smiles,
        n_heavy=int(Chem.MolFromSmiles(smiles).GetNumHeavyAtoms()),
        homo_eV=sp["homo"],
        lumo_eV=sp["lumo"],
        homo_lumo_gap_eV=sp["lumo"] - sp["homo"],
        dipole_debye=float(np.linalg.norm(sp["dipole"]) / Debye),  # ase.units.Debye is e·Å per Debye
        converged=converged,
        opt_steps=int(opt.nsteps),
        fmax_eV_A=float(np.linalg.norm(sp["forces"], axis=1).max()),
        topology_changed=bonds(out) != start_bonds,
    )
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import numpy as np
    from tqdm import tqdm

    from physnet.data.embedded import command_line, software_versions, write_set

    source = args.smiles_file or default_smiles_file()
    selected, dropped = select_molecules(source, args.max_heavy)
    n_selected = len(selected)
    if args.limit is not None:
        selected = selected[: args.limit]
    frames, failed = [], []
    for smiles, ident in tqdm(selected, unit="mol", desc=args.name, disable=args.no_progress):
        try:
            frames.append(relax(smiles, ident, args))
        except Exception as err:  # noqa: BLE001 - an embedding or SCF failure skips the molecule, recorded
            failed.append({"smiles": smiles, "nci_id": ident, "error": f"{type(err).__name__}: {err}"})
    for k, f in enumerate(frames):
        f.info["index"] = k
    gaps = np.array([f.info["homo_lumo_gap_eV"] for f in frames])
    dips = np.array([f.info["dipole_debye"] for f in frames])
    rdkit_source = "rdkit/Data/NCI/first_5K.smi (bundled with RDKit)" if args.smiles_file is None else source
    meta = {
        "description": f"{len(frames)} NCI molecules (<= {args.max_heavy} heavy atoms, C/N/O/F/H) "
        "relaxed with GFN2-xTB, with HOMO-LUMO gap and dipole",
        "kind": "molecular_properties",
        "units": {
            "energy": "eV",
            "length": "Å",
            "forces": "eV/Å",
            "charges": "e",
            "dipole": "e·Å",
            "dipole_debye": "Debye",
            "homo_lumo_gap_eV": "eV",
        },
        "per_frame": {
            "energy": "total GFN2-xTB energy at the relaxed geometry, eV",
            "forces": "-dE/dx at the relaxed geometry (residual), eV/Å",
            "charges": "Mulliken partial charges (GFN2-xTB), e",
            "dipole": "dipole vector, e·Å (ASE's dipole unit, as tblite's ASE calculator returns it; "
            "1 D = 0.2082 e·Å)",
            "dipole_debye": "|dipole|, Debye",
            "homo_eV, lumo_eV, homo_lumo_gap_eV": "frontier orbital energies and their gap, eV",
            "converged": "BFGS reached fmax within max_steps",
            "topology_changed": "covalent bonds (distance < 1.2 x sum of covalent radii) differ from "
            "the MMFF start",
        },
        "provenance": {
            "method": "GFN2-xTB",
            "engine": "tblite (relaxation: tblite.ase.TBLite; stored values: tblite.interface.Calculator "
            "single point from scratch)",
            "engine_settings": {"accuracy": args.accuracy, "electronic_temperature_K": 300.0, "charge": 0},
            "software": software_versions(("ase", "numpy", "rdkit", "tblite")),
            "source": rdkit_source,
            "selection": f"<= {args.max_heavy} heavy atoms, elements C/N/O/F/H only, one fragment, "
            "net charge 0, no radicals; in file order",
            "n_selected": n_selected,
            "limit": args.limit,
            "n_molecules": len(frames),
            "dropped_by_filter": dropped,
            "failed": failed,
            "initial_geometry": "RDKit ETKDGv3 (randomSeed = seed + 1) + MMFF94 via physnet.data.from_smiles",
            "relaxation": f"ase.optimize.BFGS, fmax {args.fmax} eV/Å, at most {args.max_steps} steps",
            "seed": args.seed,
            "temperature_K": None,
            "timestep_fs": None,
            "stride_steps": None,
            "omp_num_threads": args.threads,
            "command": command_line([sys.argv[0], *(sys.argv[1:] if argv is None else argv)]),
        },
        "statistics": {
            "n_converged": int(sum(bool(f.info["converged"]) for f in frames)),
            "n_topology_changed": int(sum(bool(f.info["topology_changed"]) for f in frames)),
            "max_residual_force_eV_A": float(max(f.info["fmax_eV_A"] for f in frames)),
            "homo_lumo_gap_eV": {
                "mean": float(gaps.mean()),
                "min": float(gaps.min()),
                "max": float(gaps.max()),
            },
            "dipole_debye": {"mean": float(dips.mean()), "min": float(dips.min()), "max": float(dips.max())},
        },
    }
    path = write_set(frames, args.name, meta, args.out_dir)
    s = meta["statistics"]
    print(
        f"wrote {len(frames)} molecules ({len(failed)} failed) to {path} "
        f"({path.stat().st_size / 1e6:.2f} MB); "
        f"converged {s['n_converged']}, topology changed {s['n_topology_changed']}, "
        f"gap {gaps.mean():.2f} eV mean, |dipole| {dips.mean():.2f} D mean"
    )
    return meta


if __name__ == "__main__":
    main()
