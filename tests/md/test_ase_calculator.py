"""physnet.Calculator through ASE: forces and stress vs finite differences, units, MD and
optimisers, loading from a file, and bad input.

Everything runs in float64 unless the test is about float32. Models are small (2
interactions, 32 features) to keep the finite-difference sweeps fast.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.calculators.test import gradient_test
from ase.constraints import FixCom
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS

import physnet
from physnet.data import keys as K
from physnet.models.registry import EnergyModel
from physnet.nn.priors import ZBLRepulsion

MOLECULE = ["H", "C", "O"]
CRYSTAL = ["O", "Si"]
F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One torch thread: these graphs are tiny and threads only add overhead on a shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def schnet(species: list[str], seed: int = 0) -> EnergyModel:
    """A small, seeded, randomly initialised SchNet."""
    torch.manual_seed(seed)
    return physnet.models.build("schnet", species=species, n_features=32, n_filters=32, n_interactions=2)


def potential(species: list[str], zbl: bool = False, seed: int = 0, **kwargs) -> physnet.Potential:
    """SchNet (+ ZBL prior) wrapped in a Potential; ``kwargs`` go to :class:`physnet.Potential`."""
    priors = {"zbl": ZBLRepulsion(species, cutoff=2.0)} if zbl else None
    return physnet.Potential(schnet(species, seed), priors=priors, **kwargs)


@pytest.fixture(scope="module")
def _ethanol() -> Atoms:
    return physnet.data.from_smiles("CCO")[0]


@pytest.fixture()
def ethanol(_ethanol: Atoms) -> Atoms:
    """RDKit ethanol (9 atoms, Å, no cell); a fresh copy per test."""
    return _ethanol.copy()


def triclinic_cell(seed: int = 1) -> Atoms:
    """12 Si/O atoms on a displaced 2x2x3 grid in a triclinic cell of ~5.5 Å (< 2 x 5 Å cutoff)."""
    rng = np.random.default_rng(seed)
    cell = np.array([[5.3, 0.0, 0.0], [1.2, 5.6, 0.0], [-0.8, 0.9, 5.9]])
    grid = np.array([[i / 2, j / 2, k / 3] for i in range(2) for j in range(2) for k in range(3)])
    frac = grid + 0.03 * rng.standard_normal(grid.shape)
    numbers = [14 if n % 3 == 0 else 8 for n in range(len(grid))]
    return Atoms(numbers=numbers, scaled_positions=frac, cell=cell, pbc=True)


def max_rel_error(approx: np.ndarray, exact: np.ndarray) -> float:
    """max |approx - exact| / max |exact|."""
    return float(np.abs(approx - exact).max() / np.abs(exact).max())


# --------------------------------------------------------------- finite differences
@pytest.mark.parametrize("system", ["ethanol", "triclinic"])
def test_forces_pass_ase_gradient_test(system: str, ethanol: Atoms) -> None:
    """``gradient_test`` sweeps eps = 1e-1 .. 1e-8 and returns (F, F_numerical at eps=1e-8).

    At eps = 1e-8 central differences in float64 carry a round-off error of about
    1e-16 |E| / 1e-8 ~ 1e-7 eV/Å here, so the returned pair is compared at 1e-4 of
    max |F|; a tighter check at eps = 1e-4 (truncation error ~ eps^2) follows.
    """
    if system == "ethanol":
        atoms, pot, indices = ethanol, potential(MOLECULE), list(range(len(ethanol)))
    else:  # a subset of both elements keeps the 8-eps sweep short
        atoms, pot, indices = triclinic_cell(), potential(CRYSTAL, zbl=True), [0, 1, 5, 9]
    atoms.calc = physnet.Calculator(pot, dtype=F64)
    forces, numerical = gradient_test(atoms, indices)
    assert forces.shape == numerical.shape == (len(indices), 3)
    assert np.abs(forces).max() > 1e-4  # not a flat surface
    assert max_rel_error(numerical, forces) < 1e-4
    assert max_rel_error(calculate_numerical_forces(atoms, eps=1e-4, iatoms=indices), forces) < 1e-6


@pytest.mark.parametrize("length_unit", ["Å", "Bohr"])
def test_stress_matches_finite_strain(length_unit: str) -> None:
    """Analytic stress vs ASE's central differences in strain (d = 1e-6), with the Voigt order
    and the eV/Å^3 conversion of a Bohr-unit potential."""
    atoms = triclinic_cell()
    if length_unit == "Bohr":  # same geometry, a potential that reads positions in Bohr
        pot = potential(CRYSTAL, length_unit="Bohr")
    else:
        pot = potential(CRYSTAL, zbl=True)
    atoms.calc = physnet.Calculator(pot, dtype=F64)
    stress = atoms.get_stress()
    assert stress.shape == (6,) and np.abs(stress).max() > 1e-5
    assert np.abs(stress[3:]).max() > 1e-3 * np.abs(stress).max()  # shear parts are tested too
    numerical = calculate_numerical_stress(atoms, eps=1e-6)
    assert max_rel_error(numerical, stress) <= 1e-6


def test_cell_smaller_than_cutoff(ethanol: Atoms) -> None:
    """A 2-atom cell of ~3 Å, smaller than the 5 Å cutoff itself: forces and stress match finite
    differences and the energy is extensive (a 2x2x2 supercell has 8x the energy)."""
    cell = np.array([[3.0, 0.0, 0.0], [0.7, 2.9, 0.0], [0.4, -0.5, 3.1]])
    atoms = Atoms("SiO", scaled_positions=[[0.02, 0.01, 0.0], [0.48, 0.53, 0.47]], cell=cell, pbc=True)
    atoms.calc = physnet.Calculator(potential(CRYSTAL, zbl=True), dtype=F64)
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    assert np.abs(forces).max() > 1e-4
    assert max_rel_error(calculate_numerical_forces(atoms, eps=1e-4), forces) < 1e-6
    assert max_rel_error(calculate_numerical_stress(atoms, eps=1e-6), atoms.get_stress()) < 1e-6
    big = atoms.repeat((2, 2, 2))
    big.calc = atoms.calc
    assert big.get_potential_energy() == pytest.approx(8 * energy, rel=1e-10)


# --------------------------------------------------------------- results and units
@pytest.mark.parametrize("system", ["ethanol", "triclinic"])
def test_energies_sum_to_energy_and_free_energy_is_energy(system: str, ethanol: Atoms) -> None:
    if system == "ethanol":
        atoms = ethanol
        pot = potential(MOLECULE, zbl=True, atom_refs={"C": -1.5, "O": -2.0})
    else:
        atoms, pot = triclinic_cell(), potential(CRYSTAL, zbl=True)
    atoms.calc = physnet.Calculator(pot, dtype=F64)
    energy = atoms.get_potential_energy()
    energies = atoms.get_potential_energies()
    assert energies.shape == (len(atoms),) and np.ptp(energies) > 0
    assert energies.sum() == pytest.approx(energy, rel=1e-12, abs=1e-12)
    assert atoms.get_potential_energy(force_consistent=True) == energy
    assert atoms.calc.results["free_energy"] == energy


def test_kcal_per_mol_potential_is_converted_to_ev(ethanol: Atoms) -> None:
    pot = potential(MOLECULE, energy_unit="kcal/mol")
    ethanol.calc = calc = physnet.Calculator(pot, dtype=F64)
    raw = calc.potential(physnet.data.from_ase(ethanol, pot.cutoff, dtype=F64))  # kcal/mol, Å
    factor = units.kcal / units.mol
    assert factor == pytest.approx(0.0433641, rel=1e-5)
    assert ethanol.get_potential_energy() == pytest.approx(float(raw[K.ENERGY][0]) * factor, rel=1e-12)
    np.testing.assert_allclose(ethanol.get_forces(), raw[K.FORCES].numpy() * factor, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        ethanol.get_potential_energies(), raw[K.ATOMIC_ENERGY].numpy() * factor, rtol=1e-12, atol=1e-15
    )


def test_bohr_potential_sees_positions_in_bohr(ethanol: Atoms) -> None:
    """A length_unit="Bohr" potential through the calculator equals the same potential on a
    graph built by hand from positions / Bohr; forces come out in eV/Å."""
    pot = potential(MOLECULE, length_unit="Bohr")
    ethanol.calc = calc = physnet.Calculator(pot, dtype=F64)
    pos = torch.tensor(ethanol.positions / units.Bohr, dtype=F64)  # [n_atoms, 3] Bohr
    edge_index, edge_shift = physnet.data.radius_graph(pos, pot.cutoff)
    n = len(ethanol)
    graph = {
        K.POS: pos,
        K.Z: torch.tensor(ethanol.numbers),
        K.BATCH: torch.zeros(n, dtype=torch.long),
        K.N_ATOMS: torch.tensor([n]),
        K.CELL: torch.zeros(1, 3, 3, dtype=F64),
        K.PBC: torch.zeros(1, 3, dtype=torch.bool),
        K.EDGE_INDEX: edge_index,
        K.EDGE_SHIFT: edge_shift,
    }
    # 5 Bohr = 2.6 Å: fewer neighbours than a 5 Å cutoff would give, but not none.
    assert 0 < edge_index.shape[1] < n * (n - 1)
    by_hand = calc.potential(graph)  # eV, eV/Bohr
    assert ethanol.get_potential_energy() == pytest.approx(float(by_hand[K.ENERGY][0]), rel=1e-12)
    np.testing.assert_allclose(
        ethanol.get_forces(), by_hand[K.FORCES].numpy() / units.Bohr, rtol=1e-10, atol=1e-15
    )


def test_unknown_unit_names_are_refused_at_construction() -> None:
    model = schnet(MOLECULE)
    with pytest.raises(ValueError, match="unknown energy unit 'kcal'"):
        physnet.Potential(model, energy_unit="kcal")
    with pytest.raises(ValueError, match="unknown length unit 'angstrom'"):
        physnet.Potential(model, length_unit="angstrom")


# --------------------------------------------------------------- dynamics and optimisers
def test_velocity_verlet_conserves_energy(ethanol: Atoms) -> None:
    """The ZBL prior drives ethanol apart (~17 eV turn from potential into kinetic energy in
    5 fs); velocity Verlet keeps the total to a small fraction of that only if F = -dE/dx."""
    ethanol.calc = physnet.Calculator(potential(MOLECULE, zbl=True), dtype=F64)
    ethanol.set_velocities(np.random.default_rng(0).normal(scale=0.01, size=(len(ethanol), 3)))
    Stationary(ethanol)
    e0, epot0 = ethanol.get_total_energy(), ethanol.get_potential_energy()
    dyn = VelocityVerlet(ethanol, 0.25 * units.fs)
    dyn.run(20)
    assert dyn.nsteps == 20
    assert np.isfinite(ethanol.positions).all()
    exchanged = abs(ethanol.get_potential_energy() - epot0)
    assert exchanged > 1.0  # real dynamics, not a flat surface
    assert abs(ethanol.get_total_energy() - e0) < 1e-2 * exchanged


def test_langevin_runs(ethanol: Atoms) -> None:
    ethanol.calc = physnet.Calculator(potential(MOLECULE, zbl=True), dtype=F64)
    start = ethanol.positions.copy()
    ethanol.set_constraint(FixCom())
    friction, rng = 0.01 / units.fs, np.random.default_rng(0)
    dyn = Langevin(ethanol, 0.25 * units.fs, temperature_K=300, friction=friction, fixcm=False, rng=rng)
    dyn.run(20)
    assert dyn.nsteps == 20
    assert np.isfinite(ethanol.positions).all() and np.isfinite(ethanol.get_potential_energy())
    assert np.abs(ethanol.positions - start).max() > 1e-3


def test_bfgs_lowers_energy_and_fmax(ethanol: Atoms) -> None:
    ethanol.calc = physnet.Calculator(potential(MOLECULE, zbl=True), dtype=F64)
    e0, f0 = ethanol.get_potential_energy(), np.linalg.norm(ethanol.get_forces(), axis=1).max()
    opt = BFGS(ethanol, logfile=None)
    opt.run(fmax=1e-3, steps=15)
    assert opt.nsteps > 0 and np.isfinite(ethanol.positions).all()
    assert ethanol.get_potential_energy() < e0 - 0.1
    assert np.linalg.norm(ethanol.get_forces(), axis=1).max() < f0


# --------------------------------------------------------------- construction and loading
def test_load_from_path_gives_identical_results(tmp_path: Path, ethanol: Atoms) -> None:
    pot = potential(MOLECULE, zbl=True, atom_refs={"H": -0.5})
    in_memory = physnet.Calculator(pot, dtype=F64)  # casts pot to float64 in place
    path = tmp_path / "p.pt"
    pot.save(path)
    from_file = physnet.Calculator(str(path), dtype=F64)
    assert from_file.potential is not pot
    e_mem = in_memory.get_potential_energy(ethanol)
    f_mem = in_memory.get_forces(ethanol)
    assert from_file.get_potential_energy(ethanol) == e_mem
    np.testing.assert_array_equal(from_file.get_forces(ethanol), f_mem)
    assert physnet.Calculator(path, dtype=F64).get_potential_energy(ethanol) == e_mem  # os.PathLike too
    with pytest.raises(FileNotFoundError):
        physnet.Calculator(str(tmp_path / "missing.pt"))


def test_bare_model_is_accepted(ethanol: Atoms) -> None:
    model = schnet(MOLECULE)
    wrapped = physnet.Calculator(physnet.Potential(copy.deepcopy(model)), dtype=F64)
    bare = physnet.Calculator(model, dtype=F64)
    assert isinstance(bare.potential, physnet.Potential)
    assert bare.potential.energy_unit == "eV"
    assert bare.get_potential_energy(ethanol) == wrapped.get_potential_energy(ethanol)


def test_training_mode_is_refused(ethanol: Atoms) -> None:
    ethanol.calc = calc = physnet.Calculator(potential(MOLECULE), dtype=F64)
    calc.potential.train()
    with pytest.raises(RuntimeError, match="eval mode"):
        ethanol.get_potential_energy()
    calc.potential.eval()
    assert np.isfinite(ethanol.get_potential_energy())


def test_float32_agrees_with_float64(ethanol: Atoms) -> None:
    pot = potential(MOLECULE, zbl=True)
    c32 = physnet.Calculator(copy.deepcopy(pot), dtype=torch.float32)
    c64 = physnet.Calculator(pot, dtype=F64)
    assert next(c32.potential.parameters()).dtype == torch.float32
    e32, e64 = c32.get_potential_energy(ethanol), c64.get_potential_energy(ethanol)
    assert e32 != e64  # really computed in float32
    assert e32 == pytest.approx(e64, rel=1e-5)
    f32, f64 = c32.get_forces(ethanol), c64.get_forces(ethanol)
    assert f32.dtype == np.float64  # ASE gets float64 arrays either way
    assert max_rel_error(f32, f64) < 1e-4


# --------------------------------------------------------------- bad input
def test_element_outside_species_is_named(ethanol: Atoms) -> None:
    ethanol.numbers[1] = 7  # a nitrogen
    ethanol.calc = physnet.Calculator(potential(MOLECULE), dtype=F64)
    with pytest.raises(ValueError, match=r"element\(s\) N \(Z=\[7\]\) not in the model's species"):
        ethanol.get_potential_energy()


def test_nan_position_is_named(ethanol: Atoms) -> None:
    ethanol.positions[4, 1] = np.nan
    ethanol.calc = physnet.Calculator(potential(MOLECULE), dtype=F64)
    with pytest.raises(ValueError, match="atom 4 has a non-finite position"):
        ethanol.get_forces()


def test_isolated_atom_has_finite_energy_and_zero_force(ethanol: Atoms) -> None:
    calc = physnet.Calculator(potential(MOLECULE, zbl=True), dtype=F64)
    oxygen = Atoms("O", positions=[[0.3, -0.2, 0.1]])
    oxygen.calc = calc
    e_o = oxygen.get_potential_energy()
    assert np.isfinite(e_o)
    np.testing.assert_array_equal(oxygen.get_forces(), np.zeros((1, 3)))
    # the same O 50 Å from a molecule: no force on it and energies add up.
    e_mol = calc.get_potential_energy(ethanol)
    both = ethanol + Atoms("O", positions=[[50.0, 0.0, 0.0]])
    both.calc = calc
    np.testing.assert_array_equal(both.get_forces()[-1], np.zeros(3))
    assert both.get_potential_energy() == pytest.approx(e_mol + e_o, rel=1e-12)


@pytest.mark.parametrize("zbl", [False, True])
def test_coincident_atoms_give_finite_energy_and_forces(zbl: bool) -> None:
    atoms = Atoms("OHH", positions=[[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.9, 0.3, 0.0]])
    atoms.calc = physnet.Calculator(potential(MOLECULE, zbl=zbl), dtype=F64)
    assert np.isfinite(atoms.get_potential_energy())
    forces = atoms.get_forces()
    assert np.isfinite(forces).all()
    assert np.abs(forces).max() > 0  # the third atom still feels the pair


@pytest.mark.parametrize(
    "cell",
    [
        [[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 0.0]],  # a zero lattice vector
        [[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [5.0, 5.0, 0.0]],  # linearly dependent vectors
    ],
)
def test_singular_periodic_cell_is_refused(cell: list[list[float]]) -> None:
    atoms = Atoms("SiO", positions=[[0.0, 0.0, 0.0], [1.6, 0.0, 0.0]], cell=cell, pbc=True)
    atoms.calc = physnet.Calculator(potential(CRYSTAL), dtype=F64)
    with pytest.raises(ValueError, match="singular|is zero"):
        atoms.get_potential_energy()


# --------------------------------------------------------------- Verlet (skin) neighbour list
def assert_same_results(calc: physnet.Calculator, reference: physnet.Calculator, atoms: Atoms) -> None:
    """The skin-list calculator gives a fresh list's energy, forces (and stress) to 1e-12."""
    fresh = atoms.copy()
    fresh.calc = reference
    assert calc.get_potential_energy(atoms) == pytest.approx(
        fresh.get_potential_energy(), rel=1e-12, abs=1e-12
    )
    np.testing.assert_allclose(calc.get_forces(atoms), fresh.get_forces(), rtol=0, atol=1e-12)
    if atoms.pbc.any():
        np.testing.assert_allclose(calc.get_stress(atoms), fresh.get_stress(), rtol=0, atol=1e-12)


def run_md_against_fresh_list(
    pot: physnet.Potential, atoms: Atoms, skin: float, steps: int, seed: int
) -> tuple[physnet.Calculator, physnet.Calculator]:
    """Velocity Verlet with a skin-list calculator, checked against a fresh list at every step."""
    calc = physnet.Calculator(pot, dtype=F64, skin=skin)
    reference = physnet.Calculator(pot, dtype=F64, skin=0.0)
    atoms.calc = calc
    rng = np.random.default_rng(seed)
    atoms.set_momenta(rng.normal(0.0, 1.0, (len(atoms), 3)) * np.sqrt(atoms.get_masses())[:, None] * 0.05)
    dyn = VelocityVerlet(atoms, 0.5 * units.fs)
    dyn.attach(lambda: assert_same_results(calc, reference, atoms), interval=1)
    dyn.run(steps)
    return calc, reference


@pytest.mark.parametrize("system", ["molecule", "crystal"])
def test_verlet_list_equals_fresh_list_along_md(system: str, ethanol: Atoms) -> None:
    atoms = ethanol if system == "molecule" else triclinic_cell()
    species = MOLECULE if system == "molecule" else CRYSTAL
    pot = potential(species, zbl=system == "crystal")
    calc, reference = run_md_against_fresh_list(pot, atoms, skin=0.3, steps=60, seed=0)
    # the list was reused (fewer builds than steps) and rebuilt (atoms moved > skin / 2)
    assert 1 < calc.n_neighbor_builds < 30
    assert reference.n_neighbor_builds > 60


def test_cell_change_forces_a_rebuild() -> None:
    atoms = triclinic_cell()
    calc = physnet.Calculator(potential(CRYSTAL), dtype=F64, skin=0.5)
    reference = physnet.Calculator(potential(CRYSTAL), dtype=F64, skin=0.0)
    atoms.calc = calc
    atoms.get_forces()
    assert calc.n_neighbor_builds == 1
    atoms.positions[0] += 0.01  # within the skin: reused
    assert_same_results(calc, reference, atoms)
    assert calc.n_neighbor_builds == 1
    atoms.set_cell(atoms.cell.array * 1.002, scale_atoms=True)  # any cell change: rebuilt
    assert_same_results(calc, reference, atoms)
    assert calc.n_neighbor_builds == 2
    atoms.pbc = [True, True, False]  # pbc change: rebuilt
    assert_same_results(calc, reference, atoms)
    assert calc.n_neighbor_builds == 3


def test_new_structure_forces_a_rebuild(ethanol: Atoms) -> None:
    calc = physnet.Calculator(potential(MOLECULE), dtype=F64, skin=0.5)
    reference = physnet.Calculator(potential(MOLECULE), dtype=F64, skin=0.0)
    assert_same_results(calc, reference, ethanol)
    swapped = ethanol.copy()
    swapped.numbers[[0, 3]] = swapped.numbers[[3, 0]]  # same positions, other elements
    assert_same_results(calc, reference, swapped)
    bigger = ethanol + Atoms("H", positions=[[3.0, 0.0, 0.0]])
    assert_same_results(calc, reference, bigger)
    assert calc.n_neighbor_builds == 3


def test_negative_skin_is_refused() -> None:
    with pytest.raises(ValueError, match="skin"):
        physnet.Calculator(potential(MOLECULE), skin=-0.1)


def test_private_copy_is_frozen_and_the_callers_potential_is_not(ethanol: Atoms) -> None:
    pot = potential(MOLECULE)
    calc = physnet.Calculator(pot, dtype=F64)
    assert not any(p.requires_grad for p in calc.potential.parameters())
    assert all(p.requires_grad for p in pot.parameters())
    ethanol.calc = calc
    reference = pot.double().eval()
    graph = physnet.data.from_ase(ethanol, reference.cutoff, dtype=F64)
    np.testing.assert_allclose(ethanol.get_forces(), reference(graph)[K.FORCES].numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("cutoff, filtered", [(5.0, False), (3.0, True)])
def test_distance_filter_is_skipped_only_when_no_pair_can_cross(
    cutoff: float, filtered: bool, ethanol: Atoms
) -> None:
    # ethanol's longest distance is about 3.6 Å: with r_c = 5 and skin 0.5 no pair can reach r_c
    # before a rebuild; with r_c = 3 some can, and the list must be filtered at every call
    torch.manual_seed(0)
    model = physnet.models.build(
        "schnet", species=MOLECULE, cutoff=cutoff, n_features=8, n_filters=8, n_rbf=6
    )
    calc, _ = run_md_against_fresh_list(physnet.Potential(model), ethanol, skin=0.5, steps=40, seed=1)
    assert calc._nl is not None and calc._nl["filter"] is filtered


def test_non_finite_energy_is_an_error_not_a_result(ethanol: Atoms) -> None:
    potential = physnet.Potential(
        physnet.models.build(
            "schnet",
            species=["H", "C", "O"],
            cutoff=4.0,
            n_features=8,
            n_filters=8,
            n_interactions=1,
            n_rbf=8,
        ),
        energy_unit="eV",
        length_unit="Å",
    ).eval()
    with torch.no_grad():
        next(potential.model.parameters()).fill_(float("nan"))
    ethanol.calc = physnet.Calculator(potential)
    with pytest.raises(FloatingPointError, match="non-finite energy .* for this structure of 9 atoms"):
        ethanol.get_potential_energy()
