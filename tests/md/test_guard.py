"""The MD blow-up guard: each sign of a blown-up run stops it with a message naming it."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

from physnet.md.guard import BlowUpGuard, MDBlowUp, nearest_distances

CUTOFF = 4.0  # Å


def _ethanol() -> Atoms:
    atoms = molecule("CH3CH2OH")
    atoms.set_momenta(np.zeros((len(atoms), 3)))
    return atoms


def test_the_starting_structure_passes() -> None:
    atoms = _ethanol()
    guard = BlowUpGuard(atoms, CUTOFF, temperature=300.0)
    guard.check(atoms, 0, -1.0)
    assert len(guard.bonds) == 8  # C-C, C-O, O-H, 5 C-H


@pytest.mark.parametrize("energy", [np.nan, np.inf])
def test_non_finite_energy(energy: float) -> None:
    atoms = _ethanol()
    guard = BlowUpGuard(atoms, CUTOFF, temperature=300.0)
    with pytest.raises(MDBlowUp, match=f"step 7: the potential energy is {energy}") as info:
        guard.check(atoms, 7, energy)
    assert info.value.step == 7


def test_non_finite_position() -> None:
    atoms = _ethanol()
    guard = BlowUpGuard(atoms, CUTOFF, temperature=300.0)
    atoms.positions[3, 1] = np.nan
    with pytest.raises(MDBlowUp, match=r"1 atom\(s\) have non-finite positions \(atom 3 first\)"):
        guard.check(atoms, 5, 0.0)


def test_torn_bond_of_a_molecule_is_named() -> None:
    atoms = _ethanol()
    guard = BlowUpGuard(atoms, CUTOFF, temperature=300.0)
    h = next(i for i, s in enumerate(atoms.get_chemical_symbols()) if s == "H")
    partner = int(np.argmin([atoms.get_distance(h, j) if j != h else 9 for j in range(len(atoms))]))
    start = atoms.get_distance(h, partner)
    # 2 x (0.31 + covalent radius of the partner) is the limit; 2.3 Å is beyond it for C-H and O-H
    direction = (atoms.positions[h] - atoms.positions[partner]) / start
    atoms.positions[h] = atoms.positions[partner] + 2.3 * direction
    first, second = sorted((h, partner))
    symbols = atoms.get_chemical_symbols()
    with pytest.raises(MDBlowUp, match="bond") as info:
        guard.check(atoms, 40, 0.0)
    assert f"{symbols[first]}{first}-{symbols[second]}{second} torn apart (2.30 Å, {start:.2f} Å" in str(
        info.value
    )


def test_a_stretched_but_intact_bond_passes() -> None:
    atoms = _ethanol()
    guard = BlowUpGuard(atoms, CUTOFF, temperature=300.0)
    atoms.positions *= 1.3  # every bond 30 % longer: hot, not broken
    guard.check(atoms, 1, 0.0)


def test_atom_flying_out_of_a_periodic_cell() -> None:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
    atoms.center(vacuum=10.0, axis=2)  # a slab: an atom can leave it along z
    guard = BlowUpGuard(atoms, CUTOFF, temperature=300.0)
    assert len(guard.bonds) == 0  # periodic: no bonds are watched, only neighbours
    guard.check(atoms, 0, 0.0)
    top = int(np.argmax(atoms.positions[:, 2]))
    atoms.positions[top, 2] += 9.0  # 9 Å above the slab (beyond 2 x 4 Å) but inside the cell
    with pytest.raises(MDBlowUp, match=rf"1 atom\(s\) flew apart: Cu{top} has no neighbour within 8 Å"):
        guard.check(atoms, 3, 0.0)


def test_temperature_far_above_the_target() -> None:
    atoms = _ethanol()
    guard = BlowUpGuard(atoms, CUTOFF, temperature=300.0)
    assert guard.temperature_limit == pytest.approx(1500.0)
    rng = np.random.default_rng(0)
    atoms.set_momenta(rng.standard_normal((len(atoms), 3)))
    atoms.set_momenta(atoms.get_momenta() * np.sqrt(2000.0 / atoms.get_temperature()))
    with pytest.raises(MDBlowUp, match="step 9: temperature 2000 K, above 1500 K"):
        guard.check(atoms, 9, 0.0)
    atoms.set_momenta(atoms.get_momenta() * np.sqrt(1400.0 / atoms.get_temperature()))
    guard.check(atoms, 9, 0.0)


def _brute_nearest(atoms: Atoms) -> np.ndarray:
    d = atoms.get_all_distances(mic=bool(atoms.pbc.any()))
    np.fill_diagonal(d, np.inf)
    return d.min(axis=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nearest_distances_match_minimum_image_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    box = rng.uniform(3.0, 9.0, size=3)
    # positions outside the cell too (MD does not wrap them)
    atoms = Atoms("Cu20", positions=rng.uniform(-8.0, 16.0, size=(20, 3)), cell=box, pbc=True)
    np.testing.assert_allclose(nearest_distances(atoms), _brute_nearest(atoms), rtol=1e-10)
    atoms.pbc = False
    np.testing.assert_allclose(nearest_distances(atoms), _brute_nearest(atoms), rtol=1e-10)


def test_nearest_distances_leave_triclinic_and_slab_cells_to_the_neighbour_list() -> None:
    atoms = bulk("Cu", "fcc", a=3.6) * (2, 1, 1)  # primitive fcc cells: triclinic
    assert nearest_distances(atoms) is None
    slab = bulk("Cu", "fcc", a=3.6, cubic=True)
    slab.pbc = (True, True, False)
    assert nearest_distances(slab) is None


def test_atom_flying_out_of_an_orthorhombic_box() -> None:
    """The k-d tree path: a fully periodic orthorhombic box (the slab test uses the neighbour list)."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
    atoms.set_cell(np.diag([7.2, 7.2, 30.0]))  # periodic in z too, with 22.8 Å of vacuum
    guard = BlowUpGuard(atoms, CUTOFF, temperature=300.0)
    guard.check(atoms, 0, 0.0)
    top = int(np.argmax(atoms.positions[:, 2]))
    atoms.positions[top, 2] += 9.0
    with pytest.raises(MDBlowUp, match=rf"1 atom\(s\) flew apart: Cu{top} has no neighbour within 8 Å"):
        guard.check(atoms, 3, 0.0)


@pytest.mark.parametrize("value", [80.0, np.nan])
def test_force_above_the_bound_or_not_finite(value: float) -> None:
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = _ethanol()
    guard = BlowUpGuard(atoms, CUTOFF, temperature=300.0, max_force=50.0)
    forces = np.zeros((len(atoms), 3))
    forces[4] = [value, 0.0, 0.0]
    atoms.calc = SinglePointCalculator(atoms, energy=0.0, forces=forces)
    guard.check(atoms.copy(), 2, 0.0)  # no calculator on the copy: nothing to check
    with pytest.raises(MDBlowUp, match=r"step 2: the force on H4 is (80|nan) eV/Å, above the bound 50 eV/Å"):
        guard.check(atoms, 2, 0.0)
    forces[4] = [49.0, 0.0, 0.0]
    atoms.calc = SinglePointCalculator(atoms, energy=0.0, forces=forces)
    guard.check(atoms, 3, 0.0)
