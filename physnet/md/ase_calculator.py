"""ASE calculator for any physnet potential."""

from __future__ import annotations

import copy
import os

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator as _ASECalculator
from ase.calculators.calculator import all_changes

from physnet.data import keys as K
from physnet.data.graph import from_ase
from physnet.potential import Potential
from physnet.units import energy_factor, length_factor

__all__ = ["Calculator"]


class Calculator(_ASECalculator):
    """ASE calculator: energy, free_energy, forces and (periodic cells) stress.

    The structure goes through :func:`physnet.data.from_ase`, the same graph-building
    path as training. Outputs are converted from the potential's units to eV and Å.

    Args:
        potential: a :class:`physnet.Potential`, a bare model from
            :func:`physnet.models.build` (wrapped with eV / Å units), or the path of a
            file written by :meth:`Potential.save`.
        device: torch device for the model and graphs.
        dtype: float dtype for the model and graphs.

    Example:
        >>> import physnet
        >>> atoms = physnet.data.from_smiles("CCO")[0]
        >>> pot = physnet.Potential(physnet.models.build("schnet", species=["H", "C", "O"]))
        >>> atoms.calc = physnet.Calculator(pot)
        >>> atoms.get_forces().shape
        (9, 3)
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(
        self,
        potential: Potential | torch.nn.Module | str | os.PathLike,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(potential, (str, os.PathLike)):
            potential = Potential.load(potential, map_location=device)
        elif not isinstance(potential, Potential):
            potential = Potential(potential)
        # A private copy: casting or switching the caller's module would change it under them.
        self.potential = copy.deepcopy(potential).to(device=device, dtype=dtype).eval()
        self.device = torch.device(device)
        self.dtype = dtype
        self._e = energy_factor(potential.energy_unit)
        self._l = length_factor(potential.length_unit)

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        super().calculate(atoms, properties or ["energy"], system_changes)
        if self.potential.training:
            raise RuntimeError("physnet.Calculator needs the potential in eval mode; call potential.eval()")
        atoms = self.atoms
        scaled = atoms.copy()
        scaled.calc = None
        if self._l != 1.0:
            scaled.set_cell(np.asarray(atoms.cell) / self._l, scale_atoms=False)
            scaled.positions = atoms.positions / self._l
        graph = from_ase(scaled, self.potential.cutoff, dtype=self.dtype, device=self.device, targets=False)
        periodic = bool(atoms.pbc.any()) and atoms.cell.rank == 3
        out = self.potential(graph, compute_forces=True, compute_stress=periodic)
        e, l = self._e, self._l
        energy = float(out[K.ENERGY][0]) * e
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["energies"] = out[K.ATOMIC_ENERGY].cpu().double().numpy() * e
        self.results["forces"] = out[K.FORCES].cpu().double().numpy() * (e / l)
        if periodic:
            s = out[K.STRESS][0].cpu().double().numpy() * (e / l**3)
            self.results["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
