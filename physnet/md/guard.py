"""A blow-up guard for molecular dynamics: stop a run that has clearly gone wrong.

An unstable time step or a potential that was never trained on the geometries the run
reaches does not crash: atoms fly apart, bonds tear and the temperature runs away, and the
averages printed at the end look like numbers. :class:`BlowUpGuard` is called at every log
interval and raises :class:`MDBlowUp` with one line that names what happened when

- an energy or a position is not finite;
- an atom that started within the potential's cutoff of another one has no neighbour
  within ``apart_factor`` times the cutoff (it left the system);
- for a molecule (no periodic boundaries): a covalent bond of the starting structure
  (distance below 1.2 times the sum of the covalent radii) is stretched beyond
  ``bond_factor`` times the sum of the radii;
- the temperature exceeds ``temperature_factor`` times the larger of the target, the
  starting temperature and ``min_temperature`` (Langevin and NVE alike);
- a force (from the calculator's last results) is not finite or larger than ``max_force``.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.data import covalent_radii
from ase.neighborlist import neighbor_list

__all__ = ["BlowUpGuard", "MDBlowUp", "nearest_distances"]


def nearest_distances(atoms: Atoms) -> np.ndarray | None:
    """Each atom's distance in Å to the nearest other atom (nearest periodic image) with a k-d
    tree, for a structure without periodic boundaries or with an orthorhombic cell periodic in
    all three directions; ``None`` for other cells (the caller falls back to ASE's neighbour list)."""
    from scipy.spatial import cKDTree

    if len(atoms) < 2:
        return np.full(len(atoms), np.inf)
    pos = atoms.positions
    if not atoms.pbc.any():
        return cKDTree(pos).query(pos, k=2)[0][:, 1]
    cell = atoms.cell.array
    if not atoms.pbc.all() or not np.allclose(cell, np.diag(np.diag(cell))):
        return None
    box = np.diag(cell).copy()
    wrapped = np.mod(pos, box)
    wrapped[wrapped >= box] = 0.0  # np.mod can round up to the box length
    return cKDTree(wrapped, boxsize=box).query(wrapped, k=2)[0][:, 1]


class MDBlowUp(RuntimeError):
    """The MD run blew up; ``step`` is the MD step where the guard saw it."""

    def __init__(self, step: int, what: str) -> None:
        super().__init__(f"step {step}: {what}")
        self.step = step
        self.what = what


class BlowUpGuard:
    """Checks of an MD run against its starting structure (see the module docstring).

    Args:
        atoms: the starting structure (positions in Å).
        cutoff: the potential's cutoff in Å.
        temperature: the target (Langevin) or initial (NVE) temperature in K.
        apart_factor: an atom with no neighbour within ``apart_factor * cutoff`` has left.
        bond_factor: a bond longer than ``bond_factor`` times the sum of covalent radii is torn.
        temperature_factor: the run stops above this multiple of the reference temperature.
        min_temperature: lower bound in K of the reference temperature (runs near 0 K).
        max_force: the largest force in eV/Å an atom may feel; MD that samples a thermal
            ensemble stays far below it, a potential outside its data or two atoms pressed
            together go above.
    """

    def __init__(
        self,
        atoms: Atoms,
        cutoff: float,
        temperature: float,
        apart_factor: float = 2.0,
        bond_factor: float = 2.0,
        temperature_factor: float = 5.0,
        min_temperature: float = 100.0,
        max_force: float = 50.0,
    ) -> None:
        self.cutoff = float(cutoff)
        self.max_force = float(max_force)
        self.apart_factor = float(apart_factor)
        self.apart = apart_factor * self.cutoff
        i, j, d = neighbor_list("ijd", atoms, self.cutoff)
        other = i != j  # an atom's own periodic image is no neighbour
        self.watched = np.unique(i[other])  # atoms with another atom within the cutoff at the start
        # a cheap first pass: atoms with a neighbour within 1.5x the largest starting nearest-neighbour
        # distance are fine; only the others are measured exactly
        nearest = np.full(len(atoms), np.inf)
        np.minimum.at(nearest, i[other], d[other])
        start = nearest[self.watched]
        self.first_radius = min(self.cutoff, 1.5 * float(start.max())) if len(start) else self.cutoff
        self.bonds = np.zeros((0, 2), dtype=int)
        self.bond_limits = np.zeros(0)
        if not atoms.pbc.any() and len(atoms) > 1:
            radii = covalent_radii[atoms.numbers]
            d = np.linalg.norm(atoms.positions[:, None] - atoms.positions[None], axis=-1)
            r_sum = radii[:, None] + radii[None]
            a, b = np.nonzero(np.triu(d < 1.2 * r_sum, k=1))
            self.bonds = np.stack([a, b], axis=1)
            self.start_lengths = d[a, b]
            self.bond_limits = bond_factor * r_sum[a, b]
        self.temperature_limit = temperature_factor * max(
            temperature, atoms.get_temperature(), min_temperature
        )

    @staticmethod
    def _nearest(atoms: Atoms, a: int) -> float:
        """Distance in Å from atom ``a`` to the nearest other atom (nearest periodic image)."""
        others = np.delete(np.arange(len(atoms)), a)
        if len(others) == 0:
            return np.inf
        return float(atoms.get_distances(a, others, mic=bool(atoms.pbc.any())).min())

    def check(self, atoms: Atoms, step: int, energy: float) -> None:
        """Raise :class:`MDBlowUp` if ``atoms`` (at MD step ``step``, potential energy
        ``energy`` in eV) shows one of the signs of a blown-up run."""
        if not np.isfinite(energy):
            raise MDBlowUp(step, f"the potential energy is {energy}")
        pos = atoms.positions
        if not np.isfinite(pos).all():
            bad = np.nonzero(~np.isfinite(pos).all(axis=1))[0]
            raise MDBlowUp(step, f"{len(bad)} atom(s) have non-finite positions (atom {bad[0]} first)")
        symbols = atoms.get_chemical_symbols()
        forces = getattr(atoms.calc, "results", {}).get("forces") if atoms.calc is not None else None
        if forces is not None:
            norms = np.linalg.norm(np.asarray(forces), axis=-1)
            bad = np.nonzero(~(norms <= self.max_force))[0]
            if len(bad):
                a = bad[np.argmax(np.nan_to_num(norms[bad], nan=np.inf))]
                raise MDBlowUp(
                    step,
                    f"the force on {symbols[a]}{a} is {norms[a]:.3g} eV/Å, above the bound "
                    f"{self.max_force:g} eV/Å ({len(bad)} atom(s))",
                )
        if len(self.bonds):
            lengths = np.linalg.norm(pos[self.bonds[:, 0]] - pos[self.bonds[:, 1]], axis=1)
            torn = np.nonzero(lengths > self.bond_limits)[0]
            if len(torn):
                k = torn[np.argmax(lengths[torn] / self.bond_limits[torn])]
                a, b = self.bonds[k]
                raise MDBlowUp(
                    step,
                    f"bond {symbols[a]}{a}-{symbols[b]}{b} torn apart ({lengths[k]:.2f} Å, "
                    f"{self.start_lengths[k]:.2f} Å at the start; {len(torn)} bond(s) torn)",
                )
        if len(self.watched):
            nearest = nearest_distances(atoms)
            if nearest is not None:
                gone = [int(a) for a in self.watched if not nearest[a] <= self.apart]
            else:
                i, j = neighbor_list("ij", atoms, self.first_radius)
                close = np.zeros(len(atoms), dtype=bool)
                close[i[i != j]] = True
                suspects = self.watched[~close[self.watched]]
                gone = [int(a) for a in suspects if self._nearest(atoms, int(a)) > self.apart]
            if gone:
                a = gone[0]
                raise MDBlowUp(
                    step,
                    f"{len(gone)} atom(s) flew apart: {symbols[a]}{a} has no neighbour within "
                    f"{self.apart:.3g} Å ({self.apart_factor:g}x the cutoff) although it started "
                    "within the cutoff of one",
                )
        temp = atoms.get_temperature()
        if not temp <= self.temperature_limit:
            raise MDBlowUp(step, f"temperature {temp:.0f} K, above {self.temperature_limit:.0f} K")
