"""Keys of the graph dictionary, defined once.

A graph (or a batch of graphs) is a plain ``dict[str, torch.Tensor]``. Models and
the rest of physnet refer to its entries only through these constants, never by
string literals. Each constant carries the shape and dtype of its tensor.

Edge vector convention (see :func:`physnet.data.neighbors.edge_vectors`)::

    r_ij = pos[j] - pos[i] + edge_shift_ij @ cell[batch[i]]

with ``i = edge_index[0]`` the centre atom and ``j = edge_index[1]`` its neighbour.
"""

from __future__ import annotations

from typing import Final

# --- per-atom -------------------------------------------------------------
POS: Final[str] = "pos"  # [n_atoms, 3] float, length unit of the data set
Z: Final[str] = "z"  # [n_atoms] long, atomic number (or bead / particle type)
BATCH: Final[str] = "batch"  # [n_atoms] long, index of the graph each atom belongs to
FORCES: Final[str] = "forces"  # [n_atoms, 3] float, energy unit / length unit
ATOMIC_ENERGY: Final[str] = "atomic_energy"  # [n_atoms] float, energy unit

# --- per-graph ------------------------------------------------------------
N_ATOMS: Final[str] = "n_atoms"  # [n_graphs] long, atoms in each graph
CELL: Final[str] = "cell"  # [n_graphs, 3, 3] float, rows are lattice vectors (zeros if none)
PBC: Final[str] = "pbc"  # [n_graphs, 3] bool, periodic along each lattice vector
ENERGY: Final[str] = "energy"  # [n_graphs] float, total energy
STRESS: Final[str] = "stress"  # [n_graphs, 3, 3] float, energy unit / length unit^3 (ASE sign)
CUTOFF: Final[str] = "cutoff"  # [n_graphs] float, the cutoff the neighbour list was built with (length unit)

# --- per-edge -------------------------------------------------------------
EDGE_INDEX: Final[str] = "edge_index"  # [2, n_edges] long, row 0 = centre i, row 1 = neighbour j
EDGE_SHIFT: Final[str] = "edge_shift"  # [n_edges, 3] long, integer cell offsets of j

# --- learned simulators (GNS) -----------------------------------------------
POS_HISTORY: Final[str] = "pos_history"  # [n_particles, C, dim] float, last C positions, oldest first
NEXT_POS: Final[str] = "next_pos"  # [n_particles, dim] float, position one frame after the window
FUTURE_POS: Final[str] = "future_pos"  # [n_particles, U, dim] float, the U frames after NEXT_POS
TRAJECTORY: Final[str] = "trajectory"  # [n_frames, n_particles, dim] float, a whole trajectory

# --- N-body dynamics models (batches of B systems of N particles) --------------
VEL: Final[str] = "vel"  # [B, N, 3] float, velocities (length unit / time unit of the data)
CHARGES: Final[str] = "charges"  # [B, N] float, particle charges
TARGET_POS: Final[str] = "target_pos"  # [B, N, 3] float, the positions a dynamics model predicts

# Prefix of the separate energy terms a Potential returns, e.g. "energy_model",
# "energy_reference", "energy_prior_bonds"; each [n_graphs].
ENERGY_TERM_PREFIX: Final[str] = "energy_"

ATOM_KEYS: Final[frozenset[str]] = frozenset({POS, Z, BATCH, FORCES, ATOMIC_ENERGY})
GRAPH_KEYS: Final[frozenset[str]] = frozenset({N_ATOMS, CELL, PBC, ENERGY, STRESS, CUTOFF})
EDGE_KEYS: Final[frozenset[str]] = frozenset({EDGE_INDEX, EDGE_SHIFT})


def energy_term_key(name: str) -> str:
    """Key under which a Potential returns the energy term ``name`` [n_graphs]."""
    return ENERGY_TERM_PREFIX + name
