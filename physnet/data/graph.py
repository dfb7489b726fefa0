"""Build graphs (dicts of tensors) from ASE Atoms and SMILES, and batch them.

A graph holds the per-atom, per-graph and per-edge entries named in
:mod:`physnet.data.keys`. Every graph carries ``cell`` and ``pbc`` (zeros and
``False`` for a molecule) so that graphs of molecules and crystals batch together.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols

from physnet.data import keys as K
from physnet.data.neighbors import radius_graph

__all__ = [
    "from_ase",
    "from_smiles",
    "collate",
    "check_positions",
    "to_device",
    "SpeciesIndex",
    "atomic_number",
]

Graph = dict[str, torch.Tensor]


def atomic_number(species: int | str) -> int:
    """Atomic number of an element symbol (``"C"``) or a number (``6``)."""
    if isinstance(species, (int, np.integer)):
        if not 0 < int(species) < len(chemical_symbols):
            raise ValueError(f"atomic number {species} is outside 1..{len(chemical_symbols) - 1}")
        return int(species)
    if isinstance(species, str) and species in atomic_numbers and species != "X":
        return atomic_numbers[species]
    raise ValueError(f"unknown element {species!r}; give a symbol such as 'C' or an atomic number")


def _symbol(z: int) -> str:
    return chemical_symbols[z] if 0 <= z < len(chemical_symbols) else str(z)


class SpeciesIndex(torch.nn.Module):
    """Maps atomic numbers to the model's species indices 0..n_species-1.

    Args:
        species: elements the model is built for, as symbols or atomic numbers;
            their order fixes the indices.

    >>> idx = SpeciesIndex(["H", "C", "O"])
    >>> idx(torch.tensor([8, 1, 6])).tolist()
    [2, 0, 1]
    """

    def __init__(self, species: Sequence[int | str]) -> None:
        super().__init__()
        numbers = [atomic_number(s) for s in species]
        if not numbers:
            raise ValueError(
                "species is empty; give the elements the model must handle, e.g. ['H', 'C', 'O']"
            )
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"species has duplicates: {species}")
        self.atomic_numbers: list[int] = numbers
        table = torch.full((len(chemical_symbols),), -1, dtype=torch.long)
        table[torch.tensor(numbers)] = torch.arange(len(numbers))
        self.register_buffer("table", table, persistent=False)

    @property
    def symbols(self) -> list[str]:
        return [_symbol(z) for z in self.atomic_numbers]

    def __len__(self) -> int:
        return len(self.atomic_numbers)

    def check(self, z: torch.Tensor) -> None:
        """Raise ``ValueError`` naming any element in ``z`` the model was not built for."""
        bad = (z < 0) | (z >= self.table.numel())
        if not bool(bad.any()):
            bad = self.table[z] < 0
        if bool(bad.any()):
            unknown = sorted({int(v) for v in z[bad].tolist()})
            names = ", ".join(_symbol(v) for v in unknown)
            raise ValueError(
                f"element(s) {names} (Z={unknown}) not in the model's species {self.symbols}; "
                "build the model with these elements in `species`, or remove those atoms"
            )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """[n_atoms] atomic numbers -> [n_atoms] species indices (call :meth:`check` first)."""
        return self.table[z]

    def extra_repr(self) -> str:
        return f"species={self.symbols}"


def check_positions(pos: torch.Tensor | np.ndarray) -> None:
    """Raise ``ValueError`` naming the first atom with a NaN or infinite coordinate."""
    pos_t = torch.as_tensor(pos)
    finite = torch.isfinite(pos_t).all(dim=-1)
    if not bool(finite.all()):
        atom = int(torch.nonzero(~finite)[0, 0])
        raise ValueError(
            f"atom {atom} has a non-finite position {pos_t[atom].tolist()}; check the structure or trajectory"
        )


def from_ase(
    atoms: Atoms,
    cutoff: float,
    dtype: torch.dtype | None = None,
    device: torch.device | str = "cpu",
    targets: bool = True,
) -> Graph:
    """One ASE ``Atoms`` -> one graph with its neighbour list.

    Args:
        atoms: the structure; its cell and pbc are used as they are.
        cutoff: neighbour cutoff, in the length unit of ``atoms.positions``.
        dtype: float dtype of positions, cell and targets (default: torch's default dtype).
        device: where the tensors live; the neighbour list is built there.
        targets: also copy energy / forces / stress from ``atoms.calc`` if it holds them
            (converted from ASE's Voigt stress to [1, 3, 3]).

    Returns:
        a graph dict, see :mod:`physnet.data.keys`; ``cutoff`` [1] records the cutoff, which
        :meth:`physnet.Potential.check` compares with the potential's.
    """
    if len(atoms) == 0:
        raise ValueError("the structure has no atoms; an empty Atoms object cannot become a graph")
    check_positions(atoms.positions)
    dtype = dtype or torch.get_default_dtype()
    pos = torch.tensor(atoms.positions, dtype=dtype, device=device)
    z = torch.tensor(atoms.numbers, dtype=torch.long, device=device)
    cell = torch.tensor(np.asarray(atoms.cell), dtype=dtype, device=device).reshape(1, 3, 3)
    pbc = torch.tensor(np.asarray(atoms.pbc, dtype=bool), device=device).reshape(1, 3)
    if not bool(pbc.any()):
        cell = torch.zeros_like(cell)
    edge_index, edge_shift = radius_graph(pos, cutoff, None, cell, pbc)
    graph: Graph = {
        K.POS: pos,
        K.Z: z,
        K.BATCH: torch.zeros(len(atoms), dtype=torch.long, device=device),
        K.N_ATOMS: torch.tensor([len(atoms)], dtype=torch.long, device=device),
        K.CELL: cell,
        K.PBC: pbc,
        K.EDGE_INDEX: edge_index,
        K.EDGE_SHIFT: edge_shift,
        K.CUTOFF: torch.tensor([float(cutoff)], dtype=dtype, device=device),
    }
    if targets and atoms.calc is not None:
        results = getattr(atoms.calc, "results", {})
        if "energy" in results:
            graph[K.ENERGY] = torch.tensor([results["energy"]], dtype=dtype, device=device)
        if "forces" in results:
            forces = np.asarray(results["forces"])
            if forces.shape != (len(atoms), 3):
                raise ValueError(f"forces have shape {forces.shape} but the structure has {len(atoms)} atoms")
            graph[K.FORCES] = torch.tensor(forces, dtype=dtype, device=device)
        if "stress" in results:
            stress = np.asarray(results["stress"])
            if stress.shape == (6,):
                xx, yy, zz, yz, xz, xy = stress
                stress = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
            graph[K.STRESS] = torch.tensor(stress, dtype=dtype, device=device).reshape(1, 3, 3)
    return graph


def from_smiles(
    smiles: str,
    n_conformers: int = 1,
    seed: int = 0,
    optimize: bool = True,
    cutoff: float | None = None,
    dtype: torch.dtype | None = None,
) -> list[Atoms] | list[Graph]:
    """3D conformers of a molecule from SMILES with RDKit (ETKDGv3, then MMFF94).

    Hydrogens are added; conformers are embedded with ETKDG (Riniker & Landrum,
    J. Chem. Inf. Model. 55, 2562 (2015)) and, if ``optimize``, relaxed with MMFF94
    (UFF if MMFF has no parameters for the molecule).

    Args:
        smiles: the molecule, e.g. ``"CCO"``.
        n_conformers: how many conformers to embed.
        seed: random seed of the embedding, for reproducible geometries.
        optimize: relax each conformer with the force field.
        cutoff: if given, return graphs built with this cutoff (Å) instead of Atoms.
        dtype: float dtype of the graphs.

    Returns:
        ``n_conformers`` ASE ``Atoms`` (positions in Å, no cell), or graphs if ``cutoff`` is set.
    """
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"RDKit could not parse the SMILES {smiles!r}")
    if n_conformers < 1:
        raise ValueError(f"n_conformers must be >= 1, got {n_conformers}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    mol = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    # RDKit treats randomSeed=0 like "no seed per conformer": every conformer comes out the same.
    params.randomSeed = int(seed) + 1
    conf_ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=n_conformers, params=params))
    if len(conf_ids) < n_conformers:
        params.useRandomCoords = True
        conf_ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=n_conformers, params=params))
    if len(conf_ids) < n_conformers:
        raise RuntimeError(f"RDKit embedded {len(conf_ids)} of {n_conformers} conformers for {smiles!r}")
    if optimize:
        if AllChem.MMFFHasAllMoleculeParams(mol):
            AllChem.MMFFOptimizeMoleculeConfs(mol, maxIters=2000)
        else:
            AllChem.UFFOptimizeMoleculeConfs(mol, maxIters=2000)
    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    structures = [
        Atoms(numbers=numbers, positions=mol.GetConformer(cid).GetPositions(), info={"smiles": smiles})
        for cid in conf_ids
    ]
    if cutoff is None:
        return structures
    return [from_ase(a, cutoff, dtype=dtype) for a in structures]


def collate(graphs: Sequence[Graph]) -> Graph:
    """Batch graphs into one disjoint graph.

    Per-atom and per-edge entries are concatenated, ``edge_index`` is offset by the
    atoms before each graph and ``batch`` is rebuilt. A batch of one graph gives the
    same tensors as the graph itself.
    """
    if len(graphs) == 0:
        raise ValueError("collate got an empty list of graphs")
    keys = set(graphs[0])
    for n, g in enumerate(graphs):
        if set(g) != keys:
            raise ValueError(f"graph {n} has keys {sorted(g)} but graph 0 has {sorted(keys)}; all must match")
    unknown = keys - K.ATOM_KEYS - K.GRAPH_KEYS - K.EDGE_KEYS
    if unknown:
        raise ValueError(
            f"collate does not know how to batch key(s) {sorted(unknown)}; see physnet.data.keys"
        )
    counts = torch.cat([g[K.N_ATOMS] for g in graphs])  # [n_graphs]
    out: Graph = {}
    for key in keys - {K.EDGE_INDEX, K.BATCH}:
        out[key] = torch.cat([g[key] for g in graphs])
    offsets = torch.cumsum(counts, 0) - counts  # [n_graphs]
    if K.EDGE_INDEX in keys:
        out[K.EDGE_INDEX] = torch.cat([g[K.EDGE_INDEX] + offsets[n] for n, g in enumerate(graphs)], dim=1)
    # torch.full per graph, not repeat_interleave: the latter's parallel kernel is slow on a
    # loaded CPU (docs/benchmarks.md).
    out[K.BATCH] = torch.cat([torch.full_like(g[K.Z], n) for n, g in enumerate(graphs)])
    out[K.N_ATOMS] = counts
    return out


def to_device(graph: Graph, device: torch.device | str, dtype: torch.dtype | None = None) -> Graph:
    """Move every tensor to ``device``; cast floating tensors to ``dtype`` if given."""
    out = {}
    for key, value in graph.items():
        if dtype is not None and value.is_floating_point():
            out[key] = value.to(device=device, dtype=dtype)
        else:
            out[key] = value.to(device)
    return out
