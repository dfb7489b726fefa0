"""ASE calculator for any physnet potential."""

from __future__ import annotations

import os

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator as _ASECalculator
from ase.calculators.calculator import all_changes

from physnet.data import keys as K
from physnet.data.graph import check_positions
from physnet.data.neighbors import radius_graph
from physnet.potential import Potential
from physnet.units import energy_factor, length_factor

__all__ = ["Calculator"]


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Exact equality of two arrays of the same shape (bytes; NaN equals NaN bit for bit)."""
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


class Calculator(_ASECalculator):
    """ASE calculator: energy, free_energy, forces and (periodic cells) stress.

    The graph is the one :func:`physnet.data.from_ase` builds (same keys, same
    :func:`physnet.data.radius_graph`), but the neighbour list is a Verlet list: it is
    built with ``cutoff + skin`` and reused while no atom has moved more than ``skin / 2``
    since the last build (and numbers, cell and pbc are unchanged); every call keeps only
    the pairs closer than the true cutoff, so results equal a fresh list's (to round-off
    of the summation order). Per-structure tensors (species, cell, batch) are cached with
    the list. Outputs are converted from the potential's units to eV and Å.

    The potential runs as :meth:`physnet.Potential.frozen`, a private inference copy: weights
    frozen, and weight-only quantities precomputed (a float32 SchNet evaluates its filters from
    a table, within float32 round-off of the networks; float64 keeps the networks).

    A committee adds to ``results`` its spread: ``energy_std`` (eV), ``forces_std`` [n_atoms]
    (eV/Å, per-atom force deviation, see :mod:`physnet.committee`), ``max_forces_std`` and the
    members' ``energy_members`` [K] and ``forces_members`` [K, n_atoms, 3]; energy, forces and
    stress are the members' means.

    An exported file (``.pt2`` from :func:`physnet.export.export_potential`, or an
    :class:`physnet.export.ExportedPotential`) runs the same way, with the same Verlet list.

    Args:
        potential: a :class:`physnet.Potential`, a :class:`physnet.committee.Committee`, a list of
            potentials or potential files (a committee), a committee directory from
            ``physnet train ... trainer.committee=K``, a bare model from
            :func:`physnet.models.build` (wrapped with eV / Å units), the path of a
            file written by :meth:`Potential.save` or a ``physnet train`` checkpoint, or
            an exported ``.pt2`` file.
        device: torch device for the model and graphs.
        dtype: float dtype for the model and graphs (default float32, or an exported file's
            own dtype; float64 for tight energy conservation or finite-difference checks).
        skin: Verlet skin in Å; 0 rebuilds the neighbour list at every call.

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
        dtype: torch.dtype | None = None,
        skin: float = 0.5,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        from physnet.committee import Committee, is_committee
        from physnet.export import ExportedPotential

        if isinstance(potential, (list, tuple)) or (
            isinstance(potential, (str, os.PathLike)) and is_committee(potential)
        ):
            potential = Committee(potential)
        if isinstance(potential, (str, os.PathLike)) and str(potential).endswith(".pt2"):
            potential = ExportedPotential(potential, device=device)
        elif isinstance(potential, (str, os.PathLike)):
            potential = Potential.load(potential, map_location=device)
        elif not isinstance(potential, (Potential, ExportedPotential, Committee)):
            potential = Potential(potential)
        if dtype is None:
            dtype = potential.dtype if isinstance(potential, ExportedPotential) else torch.float32
        if dtype not in (torch.float32, torch.float64):
            from physnet.errors import UserError

            raise UserError(
                f"physnet.Calculator runs in float32 or float64, not {dtype}: half precision gives wrong "
                "energies and forces (float16 keeps ~3 digits); pass dtype=torch.float32 or torch.float64"
            )
        if skin < 0:
            raise ValueError(f"skin must be >= 0 Å, got {skin}")
        # A private frozen copy (casting or switching the caller's module would change it under
        # them), with the model's inference tables (SchNet's tabulated filters in float32).
        self.potential = potential.frozen(device=device, dtype=dtype)
        self.device = torch.device(device)
        self.dtype = dtype
        self._e = energy_factor(potential.energy_unit)
        self._l = length_factor(potential.length_unit)
        self.skin = float(skin)
        self.n_neighbor_builds = 0  # how many times the Verlet list was (re)built
        self._geometry_warned = False  # overlapping atoms are reported once per calculator
        self._isolated_warned = False  # so are atoms with no neighbour (a structure come apart)
        self._nl: dict[str, object] | None = None

    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        """Changed properties since the last calculation, by exact comparison.

        ASE's ``compare_atoms`` (``np.isclose`` on every array) cost more than a SchNet
        step on a small molecule; an exact comparison can only report more changes than a
        1e-15 tolerance, never fewer.
        """
        old = self.atoms
        if old is None:
            return list(all_changes)
        changes = []
        same_size = len(old) == len(atoms)
        if not same_size or not _same(old.positions, atoms.positions):
            changes.append("positions")
        if not same_size or not _same(old.numbers, atoms.numbers):
            changes.append("numbers")
        if not _same(old.cell.array, atoms.cell.array):
            changes.append("cell")
        if not _same(old.pbc, atoms.pbc):
            changes.append("pbc")
        for name in ("initial_charges", "initial_magmoms"):  # the rest of ASE's all_changes
            a, b = old.arrays.get(name), atoms.arrays.get(name)
            if (a is None) != (b is None) or (a is not None and not np.array_equal(a, b)):
                changes.append(name)
        return changes

    def _neighbors(self, pos: torch.Tensor, cell: np.ndarray, pbc: np.ndarray, numbers: np.ndarray) -> None:
        """(Re)build the Verlet list and per-structure tensors if needed (potential's units)."""
        nl = self._nl
        skin = self.skin / self._l
        if nl is not None and skin > 0:
            same = (
                np.array_equal(nl["numbers"], numbers)
                and np.array_equal(nl["cell_np"], cell)
                and np.array_equal(nl["pbc_np"], pbc)
            )
            if same:
                moved = float(((pos - nl["ref_pos"]) ** 2).sum(-1).max())
                if moved <= (0.5 * skin) ** 2:
                    return
        device, dtype = self.device, self.dtype
        periodic = bool(pbc.any())
        cell64 = torch.tensor(cell if periodic else np.zeros((3, 3)), dtype=torch.float64, device=device)
        pbc_t = torch.tensor(pbc, dtype=torch.bool, device=device)
        z = torch.tensor(numbers, dtype=torch.long, device=device)
        self.potential.check_species(z)  # once per structure, not at every call
        edge_index, edge_shift = radius_graph(pos, self.potential.cutoff + skin, None, cell64, pbc_t)
        offset = edge_shift.to(torch.float64) @ cell64  # [n_candidates, 3]
        # Between rebuilds a pair distance changes by at most skin (each atom moves <= skin / 2):
        # if every candidate is closer than cutoff - skin, none can leave the cutoff and no pair
        # outside the list can enter it, so the per-call distance filter is skipped (molecules).
        filter_pairs = skin > 0
        if filter_pairs and edge_index.shape[1] > 0:
            vec = pos.index_select(0, edge_index[1]) - pos.index_select(0, edge_index[0]) + offset
            longest = float((vec * vec).sum(-1).max().sqrt())
            filter_pairs = longest >= self.potential.cutoff - skin
        if not self._geometry_warned and edge_index.shape[1] > 0:
            self._warn_close_pairs(pos, numbers, edge_index, offset)
        if not self._isolated_warned and len(numbers) > 1:
            self._warn_isolated(numbers, edge_index)
        self._nl = {
            "numbers": numbers.copy(),
            "cell_np": cell.copy(),
            "pbc_np": pbc.copy(),
            "ref_pos": pos.clone(),
            "edge_index": edge_index,
            "edge_shift": edge_shift,
            "offset": offset,
            "filter": filter_pairs,
            "periodic": periodic,
            "static": {
                K.Z: z,
                K.BATCH: torch.zeros(len(numbers), dtype=torch.long, device=device),
                K.N_ATOMS: torch.tensor([len(numbers)], dtype=torch.long, device=device),
                K.CELL: cell64.to(dtype).reshape(1, 3, 3),
                K.PBC: pbc_t.reshape(1, 3),
            },
        }
        self.n_neighbor_builds += 1

    def _warn_close_pairs(
        self, pos: torch.Tensor, numbers: np.ndarray, edge_index: torch.Tensor, offset: torch.Tensor
    ) -> None:
        """Warn once per calculator about atoms closer than 0.4x their covalent radii (coincident
        atoms, H-H at 0.1 Å): the potential gives finite numbers there that mean nothing."""
        import warnings

        from ase.data import covalent_radii

        i, j = edge_index
        d = (pos.index_select(0, j) - pos.index_select(0, i) + offset).norm(dim=-1) * self._l  # Å
        radii = torch.as_tensor(covalent_radii, dtype=d.dtype, device=d.device)
        z = torch.as_tensor(numbers, dtype=torch.long, device=d.device).clamp(0, len(covalent_radii) - 1)
        close = (d < 0.4 * (radii[z[i]] + radii[z[j]])) & (i < j)
        if bool(close.any()):
            k = int(torch.nonzero(close)[0, 0])
            a, b = int(i[k]), int(j[k])
            from ase.data import chemical_symbols

            self._geometry_warned = True
            warnings.warn(
                f"atoms {chemical_symbols[numbers[a]]}{a} and {chemical_symbols[numbers[b]]}{b} are "
                f"{float(d[k]):.3g} Å apart ({int(close.sum())} pair(s) closer than 0.4x their covalent "
                "radii): coincident or overlapping atoms, where the potential's energy means nothing",
                UserWarning,
                stacklevel=4,
            )

    def _warn_isolated(self, numbers: np.ndarray, edge_index: torch.Tensor) -> None:
        """Warn once per calculator about an atom with no other atom within the cutoff (plus skin):
        the potential gives it its free-atom energy and no force, so an MD run whose atoms fly apart
        (too large a time step) goes on with finite, meaningless numbers (issue 32)."""
        import warnings

        from ase.data import chemical_symbols

        degree = torch.bincount(edge_index[0], minlength=len(numbers))
        alone = torch.nonzero(degree == 0).flatten()
        if len(alone) == 0:
            return
        self._isolated_warned = True
        a = int(alone[0])
        warnings.warn(
            f"atom {chemical_symbols[numbers[a]]}{a} has no other atom within the potential's cutoff "
            f"{self.potential.cutoff * self._l:.3g} Å ({len(alone)} of {len(numbers)} atoms isolated): the "
            "potential sees a free atom; in MD this means the structure came apart (a time step too large, "
            "or geometries outside the training data): attach physnet.md.guard.BlowUpGuard or use physnet md",
            UserWarning,
            stacklevel=4,
        )

    def graph(self, atoms: Atoms) -> dict[str, torch.Tensor]:
        """The graph of ``atoms`` in the potential's units, from the (reused) Verlet list."""
        positions = atoms.positions
        if not np.isfinite(positions).all():
            check_positions(positions)
        numbers = atoms.numbers
        cell = np.asarray(atoms.cell.array, dtype=np.float64)
        pbc = np.asarray(atoms.pbc, dtype=bool)
        if self._l != 1.0:
            positions, cell = positions / self._l, cell / self._l
        if len(atoms) == 0:
            raise ValueError("the structure has no atoms; an empty Atoms object cannot become a graph")
        pos = torch.as_tensor(positions, dtype=torch.float64).to(self.device)  # [n_atoms, 3]
        self._neighbors(pos, cell, pbc, numbers)
        nl = self._nl
        edge_index, edge_shift = nl["edge_index"], nl["edge_shift"]
        if nl["filter"] and edge_index.shape[1] > 0:
            vec = pos.index_select(0, edge_index[1]) - pos.index_select(0, edge_index[0]) + nl["offset"]
            keep = torch.nonzero((vec * vec).sum(-1) < self.potential.cutoff**2).squeeze(-1)
            edge_index, edge_shift = edge_index.index_select(1, keep), edge_shift.index_select(0, keep)
        graph = dict(nl["static"])
        graph[K.POS] = pos.to(self.dtype)
        graph[K.EDGE_INDEX] = edge_index
        if nl["periodic"]:  # without periodicity every shift is zero: r_ij = pos[j] - pos[i]
            graph[K.EDGE_SHIFT] = edge_shift
        return graph

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
        graph = self.graph(atoms)
        periodic = bool(atoms.pbc.any()) and atoms.cell.rank == 3
        out = self.potential(graph, compute_forces=True, compute_stress=periodic, check=False)
        e, l = self._e, self._l
        energy = float(out[K.ENERGY][0]) * e
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["energies"] = out[K.ATOMIC_ENERGY].cpu().double().numpy() * e
        self.results["forces"] = out[K.FORCES].cpu().double().numpy() * (e / l)
        if not (np.isfinite(energy) and np.isfinite(self.results["forces"]).all()):
            raise FloatingPointError(
                f"the potential gave a non-finite energy ({energy}) or forces for this structure of "
                f"{len(atoms)} atoms: its weights hold NaN, or the geometry is far outside its training data"
            )
        if periodic:
            s = out[K.STRESS][0].cpu().double().numpy() * (e / l**3)
            self.results["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
        if "forces_std" in out:  # a committee: its spread, and each member's prediction
            self.results["energy_std"] = float(out["energy_std"][0]) * e
            self.results["forces_std"] = out["forces_std"].cpu().double().numpy() * (e / l)
            self.results["max_forces_std"] = float(self.results["forces_std"].max())
            self.results["energy_members"] = out["energy_members"][:, 0].cpu().double().numpy() * e
            self.results["forces_members"] = out["forces_members"].cpu().double().numpy() * (e / l)
