"""Graphs as dicts of tensors, neighbour lists, conversion from ASE and RDKit.

The names below load on first use (PEP 562): ``from physnet.data import keys`` does not
import ASE, RDKit or the dataset readers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from physnet._lazy import lazy_attributes

# public name -> module that defines it (a submodule maps to itself)
_LAZY: dict[str, str] = {
    "embedded": "physnet.data.embedded",
    "keys": "physnet.data.keys",
    "load": "physnet.data.embedded",
    "GraphDataset": "physnet.data.datasets",
    "load_split": "physnet.data.datasets",
    "make_loader": "physnet.data.datasets",
    "make_split": "physnet.data.datasets",
    "read_frames": "physnet.data.datasets",
    "save_split": "physnet.data.datasets",
    "SpeciesIndex": "physnet.data.graph",
    "atomic_number": "physnet.data.graph",
    "check_positions": "physnet.data.graph",
    "collate": "physnet.data.graph",
    "from_ase": "physnet.data.graph",
    "from_smiles": "physnet.data.graph",
    "to_device": "physnet.data.graph",
    "edge_vectors": "physnet.data.neighbors",
    "radius_graph": "physnet.data.neighbors",
}

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

_SUBMODULES = ("datasets", "embedded", "graph", "keys", "neighbors")

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from physnet.data import embedded, keys
    from physnet.data.datasets import (
        GraphDataset,
        load_split,
        make_loader,
        make_split,
        read_frames,
        save_split,
    )
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


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, _SUBMODULES, __all__)
