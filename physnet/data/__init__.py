"""Graphs as dicts of tensors, neighbour lists, conversion from ASE and RDKit."""

from physnet.data import embedded, keys
from physnet.data.datasets import GraphDataset, load_split, make_loader, make_split, read_frames, save_split
from physnet.data.embedded import load
from physnet.data.graph import (
    SpeciesIndex,
    atomic_number,
    check_positions,
    collate,
    from_ase,
    from_smiles,
    to_device,
)
from physnet.data.neighbors import edge_vectors, radius_graph

__all__ = [
    "embedded",
    "keys",
    "load",
    "GraphDataset",
    "load_split",
    "make_loader",
    "make_split",
    "read_frames",
    "save_split",
    "SpeciesIndex",
    "atomic_number",
    "check_positions",
    "collate",
    "from_ase",
    "from_smiles",
    "to_device",
    "edge_vectors",
    "radius_graph",
]
