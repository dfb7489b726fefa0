"""Coarse-grained alanine dipeptide reference for CGnet: OpenMM amber14 + OBC2 implicit solvent.

Alanine dipeptide (ACE-ALA-NME, 22 atoms) is built from SMILES with RDKit (ETKDGv3 +
MMFF94, seed ``--seed``) and written as a PDB with amber14 atom names, or read from
``--pdb``. OpenMM (CPU platform, one thread) runs it with ``amber14-all.xml`` +
``implicit/obc2.xml``, no cutoff, H-bond constraints and a ``LangevinMiddleIntegrator``;
after an energy minimisation and ``--equilibration-ps`` of MD, a frame is kept every
``--interval-ps``. Each frame is mapped onto 5 beads, the backbone atoms C(ACE) N CA C
N(NME) (as in ``../shared/data/ala2_cg_*.npy``): bead positions are those atoms'
positions and bead forces the all-atom force-field forces on those atoms (the "slice"
force map of the CGnet paper; forces of the unconstrained potential, no constraint
forces).

Output (in ``--out-dir``, default the repository's ``data/``):

- ``<name>.extxyz.gz``: 5 beads per frame, "elements" C N C C N, positions [Å], forces
  [eV/Å], and ``info``: ``phi_deg`` (C-N-CA-C), ``psi_deg`` (N-CA-C-N),
  ``temperature_K`` (all-atom kinetic temperature, 3N - constraints - 3 degrees of
  freedom), ``aa_energy_eV`` (all-atom potential energy; not a CG energy, hence not
  stored as ``energy``), ``time_ps``;
- ``<name>_allatom.npz``: ``positions`` [n_frames, 22, 3] Å of all atoms, ``names``,
  ``bead_indices`` [5] and the PDB text, so other maps and force checks are possible;
- the sidecar ``<name>.json`` with units and provenance.

Example::

    python scripts/generate_alanine_cg.py --name ala2_cg_amber --frames 2000 --seed 0
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from typing import Any

DESCRIPTION = __doc__.split("\n\n")[0]
SMILES = "CC(=O)N[C@@H](C)C(=O)NC"  # ACE-(L)ALA-NME
# RDKit heavy-atom order of SMILES -> (residue, residue number, amber14 atom name, element)
HEAVY = [
    ("ACE", 1, "CH3", "C"),
    ("ACE", 1, "C", "C"),
    ("ACE", 1, "O", "O"),
    ("ALA", 2, "N", "N"),
    ("ALA", 2, "CA", "C"),
    ("ALA", 2, "CB", "C"),
    ("ALA", 2, "C", "C"),
    ("ALA", 2, "O", "O"),
    ("NME", 3, "N", "N"),
    ("NME", 3, "C", "C"),
]
H_NAMES = {
    0: ["HH31", "HH32", "HH33"],
    3: ["H"],
    4: ["HA"],
    5: ["HB1", "HB2", "HB3"],
    8: ["H"],
    9: ["H1", "H2", "H3"],
}
BEADS = [("ACE", "C"), ("ALA", "N"), ("ALA", "CA"), ("ALA", "C"), ("NME", "N")]
KJ_MOL_NM_TO_EV_A = 0.1 / 96.48533212331002  # (kJ/mol)/nm -> eV/Å
KJ_MOL_TO_EV = 1 / 96.48533212331002


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=DESCRIPTION)
    p.add_argument("--name", required=True, help="data set name (file <name>.extxyz.gz)")
    p.add_argument("--frames", type=int, default=2000, help="frames to write (default 2000)")
    p.add_argument("--interval-ps", type=float, default=1.0, help="time between frames, ps (default 1)")
    p.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    p.add_argument(
        "--timestep", type=float, default=2.0, help="time step, fs (default 2; H bonds constrained)"
    )
    p.add_argument("--friction", type=float, default=1.0, help="Langevin friction, 1/ps (default 1)")
    p.add_argument("--equilibration-ps", type=float, default=20.0, help="MD before the first frame (20 ps)")
    p.add_argument("--seed", type=int, default=0, help="seed of ETKDG, velocities and Langevin noise")
    p.add_argument("--pdb", default=None, help="alanine dipeptide PDB with amber names (default: built)")
    p.add_argument("--out-dir", default=None, help="output folder (default: the repository's data/)")
    p.add_argument("--threads", type=int, default=1, help="OpenMM CPU threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.frames < 1 or args.threads < 1:
        p.error("--frames and --threads must be >= 1")
    if not (args.interval_ps > 0 and args.timestep > 0 and args.friction > 0 and args.temperature > 0):
        p.error("--interval-ps, --timestep, --friction and --temperature must be > 0")
    return args


def build_pdb(seed: int) -> str:
    """PDB text of ACE-ALA-NME: RDKit ETKDGv3 (randomSeed = seed + 1) + MMFF94, amber14 atom names."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(SMILES))
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed) + 1  # as physnet.data.from_smiles
    if AllChem.EmbedMolecule(mol, params) != 0:
        raise RuntimeError("RDKit could not embed alanine dipeptide")
    AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
    pos = mol.GetConformer().GetPositions()
    lines = []
    for i, (res, resid, name, element) in enumerate(HEAVY):
        hydrogens = sorted(n.GetIdx() for n in mol.GetAtomWithIdx(i).GetNeighbors() if n.GetAtomicNum() == 1)
        for atom_name, el, idx in [(name, element, i)] + [
            (h_name, "H", h) for h_name, h in zip(H_NAMES.get(i, []), hydrogens, strict=True)
        ]:
            x, y, z = pos[idx]
            padded = f" {atom_name:<3s}" if len(atom_name) < 4 else atom_name
            serial = len(lines) + 1
            lines.append(
                f"ATOM  {serial:5d} {padded:4s} {res:3s} A{resid:4d}    {x:8.3f}{y:8.3f}{z:8.3f}"
                f"  1.00  0.00          {el:>2s}"
            )
    return "\n".join(lines) + "\nEND\n"


def make_simulation(pdb_text: str, args: argparse.Namespace, platform_name: str = "CPU"):
    """OpenMM ``(Simulation, System, Topology)``; the CPU platform runs ``args.threads`` threads.

    The CPU platform computes in mixed (mostly single) precision; ``"Reference"`` is double
    precision, for finite-difference checks.
    """
    import openmm as mm
    from openmm import app, unit

    pdb = app.PDBFile(io.StringIO(pdb_text))
    forcefield = app.ForceField("amber14-all.xml", "implicit/obc2.xml")
    system = forcefield.createSystem(pdb.topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds)
    integrator = mm.LangevinMiddleIntegrator(
        args.temperature * unit.kelvin, args.friction / unit.picosecond, args.timestep * unit.femtosecond
    )
    integrator.setRandomNumberSeed(args.seed + 1)  # OpenMM treats 0 as "pick a random seed"
    platform = mm.Platform.getPlatformByName(platform_name)
    properties = {"Threads": str(args.threads)} if platform_name == "CPU" else {}
    sim = app.Simulation(pdb.topology, system, integrator, platform, properties)
    sim.context.setPositions(pdb.positions)
    return sim, system, pdb.topology


def bead_indices(topology) -> list[int]:
    """Atom indices of the 5 beads C(ACE) N CA C N(NME)."""
    lookup = {(a.residue.name, a.name): a.index for a in topology.atoms()}
    return [lookup[b] for b in BEADS]


def dihedral(p: Any) -> float:
    """Dihedral angle [deg] of 4 points [4, 3]."""
    import numpy as np

    b0, b1, b2 = p[0] - p[1], p[2] - p[1], p[3] - p[2]
    b1 = b1 / np.linalg.norm(b1)
    v = b0 - np.dot(b0, b1) * b1
    w = b2 - np.dot(b2, b1) * b1
    return float(np.degrees(np.arctan2(np.dot(np.cross(b1, v), w), np.dot(v, w))))


def energy_and_forces(sim, positions_A) -> tuple[float, Any]:
    """All-atom potential energy [eV] and forces [n_atoms, 3] eV/Å at ``positions_A`` [n_atoms, 3] Å."""
    import numpy as np
    from openmm import unit

    sim.context.setPositions(np.asarray(positions_A) * 0.1 * unit.nanometer)
    state = sim.context.getState(getEnergy=True, getForces=True)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) * KJ_MOL_TO_EV
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    return float(energy), np.asarray(forces) * KJ_MOL_NM_TO_EV_A


def run(args: argparse.Namespace) -> tuple[list, Any, str, list[int], dict[str, Any]]:
    """MD; returns CG frames, all-atom positions [n_frames, 22, 3] Å, the PDB text, bead indices, extras."""
    import numpy as np
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from openmm import unit
    from tqdm import tqdm

    pdb_text = open(args.pdb).read() if args.pdb else build_pdb(args.seed)
    sim, system, topology = make_simulation(pdb_text, args)
    beads = bead_indices(topology)
    sim.minimizeEnergy(tolerance=1.0, maxIterations=1000)
    sim.context.setVelocitiesToTemperature(args.temperature * unit.kelvin, args.seed + 1)
    steps_per_frame = int(round(args.interval_ps * 1000 / args.timestep))
    equilibration = int(round(args.equilibration_ps * 1000 / args.timestep))
    n_atoms = system.getNumParticles()
    dof = 3 * n_atoms - system.getNumConstraints() - 3  # CMMotionRemover takes 3
    frames, aa_positions = [], []
    total = equilibration + args.frames * steps_per_frame
    with tqdm(total=total, unit="step", desc=args.name, disable=args.no_progress, mininterval=2) as bar:
        if equilibration:
            sim.step(equilibration)
            bar.update(equilibration)
        for k in range(args.frames):
            sim.step(steps_per_frame)
            bar.update(steps_per_frame)
            state = sim.context.getState(getPositions=True, getForces=True, getEnergy=True)
            pos = state.getPositions(asNumpy=True).value_in_unit(unit.angstrom)  # [n_atoms, 3]
            forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
            ekin = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
            temperature = (
                2
                * ekin
                / (dof * unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin))
            )
            bead_pos = np.asarray(pos)[beads]
            out = Atoms(symbols=["C", "N", "C", "C", "N"], positions=bead_pos)
            out.calc = SinglePointCalculator(out, forces=np.asarray(forces)[beads] * KJ_MOL_NM_TO_EV_A)
            out.info.update(
                frame=k,
                time_ps=(k + 1) * args.interval_ps,
                phi_deg=dihedral(bead_pos[[0, 1, 2, 3]]),
                psi_deg=dihedral(bead_pos[[1, 2, 3, 4]]),
                temperature_K=float(temperature),
                aa_energy_eV=state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) * KJ_MOL_TO_EV,
            )
            frames.append(out)
            aa_positions.append(np.asarray(pos))
            if k % 50 == 0:
                bar.set_postfix(T=f"{np.mean([f.info['temperature_K'] for f in frames]):.0f} K")
    extras = {"dof": dof, "steps_per_frame": steps_per_frame, "equilibration_steps": equilibration}
    extras["atom_names"] = [f"{a.residue.name}:{a.name}" for a in topology.atoms()]
    return frames, np.stack(aa_positions), pdb_text, beads, extras


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    from pathlib import Path

    import numpy as np

    from physnet.data.embedded import command_line, data_dir, sha256, software_versions, write_set

    frames, aa_positions, pdb_text, beads, extras = run(args)
    out_dir = Path(args.out_dir) if args.out_dir else data_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    allatom = out_dir / f"{args.name}_allatom.npz"
    tmp = allatom.with_name(f".{allatom.stem}.tmp.npz")
    np.savez_compressed(
        tmp,
        positions=aa_positions,
        names=np.array(extras["atom_names"]),
        bead_indices=np.array(beads),
        pdb=np.array(pdb_text),
    )
    os.replace(tmp, allatom)
    temps = np.array([f.info["temperature_K"] for f in frames])
    phi = np.array([f.info["phi_deg"] for f in frames])
    meta = {
        "description": f"alanine dipeptide, amber14 + OBC2 implicit solvent, {args.temperature:g} K, "
        "mapped onto 5 backbone beads C(ACE) N CA C N(NME)",
        "kind": "cg_md",
        "units": {
            "energy": "eV",
            "length": "Å",
            "forces": "eV/Å",
            "temperature": "K",
            "angles": "degrees",
        },
        "per_frame": {
            "positions": "bead (= backbone atom) positions, Å",
            "forces": "force-field forces on the 5 bead atoms, eV/Å (no constraint forces; "
            "1 eV/Å = 23.06 kcal/mol/Å)",
            "phi_deg": "C(ACE)-N-CA-C dihedral, beads (0,1,2,3)",
            "psi_deg": "N-CA-C-N(NME) dihedral, beads (1,2,3,4)",
            "temperature_K": f"all-atom kinetic temperature, {extras['dof']} degrees of freedom",
            "aa_energy_eV": "all-atom potential energy (not a CG energy)",
            "time_ps": "time after equilibration, ps",
        },
        "extra_files": {
            allatom.name: {
                "what": "all-atom positions [n_frames, 22, 3] Å (float64), atom names, bead_indices, pdb",
                "sha256": sha256(allatom),
                "size_bytes": allatom.stat().st_size,
            }
        },
        "provenance": {
            "method": "OpenMM amber14-all + implicit/obc2 (OBC2 GB implicit solvent)",
            "engine": "OpenMM, CPU platform",
            "engine_settings": {
                "forcefield": ["amber14-all.xml", "implicit/obc2.xml"],
                "nonbonded": "NoCutoff",
                "constraints": "HBonds",
                "integrator": "LangevinMiddleIntegrator",
                "threads": args.threads,
            },
            "software": software_versions(("openmm", "ase", "numpy", "rdkit")),
            "structure": args.pdb
            or f"RDKit ETKDGv3 + MMFF94 of {SMILES} (randomSeed = seed + 1), amber names",
            "cg_map": "slice: beads are the atoms C(ACE), N, CA, C, N(NME); bead force = force on that atom",
            "temperature_K": args.temperature,
            "timestep_fs": args.timestep,
            "friction_per_fs": args.friction / 1000.0,
            "friction_per_ps": args.friction,
            "equilibration_steps": extras["equilibration_steps"],
            "minimisation": "Simulation.minimizeEnergy(tolerance=1 kJ/mol/nm, maxIterations=1000)",
            "stride_steps": extras["steps_per_frame"],
            "interval_ps": args.interval_ps,
            "n_frames": args.frames,
            "seed": args.seed,
            "rng": "integrator.setRandomNumberSeed(seed + 1); setVelocitiesToTemperature(T, seed + 1)",
            "command": command_line([sys.argv[0], *(sys.argv[1:] if argv is None else argv)]),
        },
        "statistics": {
            "mean_temperature_K": float(temps.mean()),
            "std_temperature_K": float(temps.std()),
            "relative_deviation_from_target": float(temps.mean() / args.temperature - 1.0),
            "fraction_phi_negative": float((phi < 0).mean()),
        },
    }
    path = write_set(frames, args.name, meta, out_dir)
    dev = 100 * meta["statistics"]["relative_deviation_from_target"]
    print(
        f"wrote {len(frames)} frames to {path} ({path.stat().st_size / 1e6:.2f} MB) and {allatom.name} "
        f"({allatom.stat().st_size / 1e6:.2f} MB); "
        f"mean T = {temps.mean():.1f} ± {temps.std():.1f} K ({dev:+.1f} %)"
    )
    return meta


def check_forces(name: str, n_frames: int = 3, h: float = 1e-3, seed: int = 0) -> dict[str, Any]:
    """Central finite differences of the all-atom energy w.r.t. the bead atoms vs the stored bead forces.

    Rebuilds the OpenMM system from the PDB kept in ``<name>_allatom.npz`` on OpenMM's
    double-precision Reference platform (the data came from the mixed-precision CPU
    platform, whose single-precision energies are too noisy to difference); returns the max
    |FD - stored| [eV/Å] over ``n_frames`` random frames and the 15 bead coordinates.
    """
    import numpy as np

    from physnet.data import embedded

    meta = embedded.info(name)
    prov = meta["provenance"]
    allatom = np.load(embedded.path(name).parent / f"{name}_allatom.npz")
    args = parse_args(
        ["--name", name, "--seed", str(prov["seed"]), "--temperature", str(prov["temperature_K"])]
    )
    sim, _, _ = make_simulation(str(allatom["pdb"]), args, platform_name="Reference")
    beads = [int(b) for b in allatom["bead_indices"]]
    frames = embedded.load(name)
    picks = sorted(np.random.default_rng(seed).choice(len(frames), size=n_frames, replace=False).tolist())
    worst = 0.0
    for k in picks:
        pos = allatom["positions"][k]
        for b, atom in enumerate(beads):
            for c in range(3):
                e = []
                for sign in (+1, -1):
                    p = pos.copy()
                    p[atom, c] += sign * h
                    e.append(energy_and_forces(sim, p)[0])
                fd = -(e[0] - e[1]) / (2 * h)
                worst = max(worst, abs(fd - frames[k].get_forces()[b, c]))
    return {"name": name, "frames": picks, "h": h, "force_max_abs_error": worst}


if __name__ == "__main__":
    main()
