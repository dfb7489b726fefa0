"""Internal coordinates of coarse-grained molecules with a fixed bead order.

Shared by :mod:`physnet.models.cgnet` and the CG priors of :mod:`physnet.nn.priors`.
Every function takes bead positions shaped [n_graphs, n_beads, 3] (all graphs of a
batch have the same beads in the same order) and is safe against NaN gradients:
norms use the "double where" trick so that a zero vector (coincident beads, collinear
beads in a dihedral) gives a finite value and a zero gradient instead of NaN.

>>> pos = torch.tensor([[[0.0, 0, 0], [1.0, 0, 0], [1.0, 1, 0], [1.0, 1, 1]]])
>>> distances(pos, consecutive_pairs(4)).tolist()
[[1.0, 1.0, 1.0]]
>>> [round(a, 4) for a in angles(pos, consecutive_triples(4))[0].tolist()]
[1.5708, 1.5708]
>>> [round(a, 4) for a in dihedrals(pos, consecutive_quadruples(4))[0].tolist()]
[1.5708]
"""

from __future__ import annotations

import torch

from physnet.data import keys as K

__all__ = [
    "beads_per_graph",
    "bead_graph",
    "safe_norm",
    "all_pairs",
    "consecutive_pairs",
    "consecutive_triples",
    "consecutive_quadruples",
    "distances",
    "angles",
    "dihedrals",
    "dihedral_cos_sin",
]


def beads_per_graph(graph: dict[str, torch.Tensor], n_beads: int | None = None) -> torch.Tensor:
    """Positions of a (batched) graph reshaped to [n_graphs, n_beads, 3].

    Atoms of each graph must be contiguous and in bead order (as :func:`physnet.data.collate`
    makes them). ``ValueError`` if graphs have different bead counts or, when ``n_beads``
    is given, a count other than ``n_beads``.
    """
    counts = graph[K.N_ATOMS]  # [n_graphs]
    n_graphs, n_atoms = counts.shape[0], graph[K.POS].shape[0]
    first = n_atoms // max(n_graphs, 1)  # from shapes: no host sync
    uneven = "coarse-grained graphs of one batch must all have the same number of beads"
    if first * n_graphs != n_atoms:
        raise ValueError(f"{uneven}, got {counts.tolist()}")
    try:  # on the CPU this raises at once; on a GPU it is a device-side assert (no host sync)
        torch._assert_async((counts == first).all(), uneven)
    except RuntimeError:
        raise ValueError(f"{uneven}, got {counts.tolist()}") from None
    if n_beads is not None and first != n_beads:
        raise ValueError(
            f"the graph has {first} beads but this term was built / fitted for {n_beads} beads; "
            "CG molecules must keep the bead count and order of the training data"
        )
    return graph[K.POS].reshape(counts.shape[0], first, 3)


def bead_graph(pos: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
    """A batched graph of CG frames without a neighbour list (for models and priors that use none).

    Args:
        pos: [n_frames, n_beads, 3] bead positions (length unit of the data).
        z: [n_beads] bead types as atomic numbers (e.g. C N C C N for alanine dipeptide).

    Returns:
        a graph dict (see :mod:`physnet.data.keys`) with empty ``edge_index``, zero cells, no pbc.
    """
    n_frames, n_beads, _ = pos.shape
    device = pos.device
    return {
        K.POS: pos.reshape(n_frames * n_beads, 3),
        K.Z: z.to(device).repeat(n_frames),
        K.BATCH: torch.arange(n_frames, device=device).repeat_interleave(n_beads),
        K.N_ATOMS: torch.full((n_frames,), n_beads, dtype=torch.long, device=device),
        K.CELL: torch.zeros(n_frames, 3, 3, dtype=pos.dtype, device=device),
        K.PBC: torch.zeros(n_frames, 3, dtype=torch.bool, device=device),
        K.EDGE_INDEX: torch.zeros(2, 0, dtype=torch.long, device=device),
        K.EDGE_SHIFT: torch.zeros(0, 3, dtype=torch.long, device=device),
    }


def safe_norm(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Euclidean norm along ``dim``; exactly 0 with zero gradient for a zero vector (no NaN)."""
    sq = x.pow(2).sum(dim)
    positive = sq > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, sq, torch.ones_like(sq))), 0.0)


def all_pairs(n_beads: int) -> torch.Tensor:
    """[n_pairs, 2] long, every pair i < j in row-major order; n_pairs = n (n - 1) / 2."""
    return torch.triu_indices(n_beads, n_beads, offset=1).T.contiguous()


def _consecutive(n_beads: int, size: int) -> torch.Tensor:
    n = max(n_beads - size + 1, 0)
    return torch.arange(n).unsqueeze(1) + torch.arange(size).unsqueeze(0)


def consecutive_pairs(n_beads: int) -> torch.Tensor:
    """[n_beads - 1, 2] long, bonded pairs (i, i+1)."""
    return _consecutive(n_beads, 2)


def consecutive_triples(n_beads: int) -> torch.Tensor:
    """[n_beads - 2, 3] long, angle triples (i, i+1, i+2)."""
    return _consecutive(n_beads, 3)


def consecutive_quadruples(n_beads: int) -> torch.Tensor:
    """[n_beads - 3, 4] long, dihedral quadruples (i, ..., i+3)."""
    return _consecutive(n_beads, 4)


def distances(pos: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """pos [n_graphs, n_beads, 3], pairs [n_pairs, 2] -> |x_j - x_i| [n_graphs, n_pairs]."""
    pairs = pairs.to(pos.device)
    return safe_norm(pos[:, pairs[:, 1]] - pos[:, pairs[:, 0]])


def angles(pos: torch.Tensor, triples: torch.Tensor) -> torch.Tensor:
    """Bend angles theta_ijk in radians [n_graphs, n_triples], at the middle bead j.

    theta = atan2(|a x b|, a . b) with a = x_i - x_j, b = x_k - x_j: accurate over [0, pi]
    (unlike arccos near 0 and pi) and NaN-free for collinear beads.
    """
    triples = triples.to(pos.device)
    a = pos[:, triples[:, 0]] - pos[:, triples[:, 1]]  # [n_graphs, n_triples, 3]
    b = pos[:, triples[:, 2]] - pos[:, triples[:, 1]]
    return torch.atan2(safe_norm(torch.linalg.cross(a, b)), (a * b).sum(-1))


def _dihedral_xy(pos: torch.Tensor, quads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    quads = quads.to(pos.device)
    b1 = pos[:, quads[:, 1]] - pos[:, quads[:, 0]]  # [n_graphs, n_quads, 3]
    b2 = pos[:, quads[:, 2]] - pos[:, quads[:, 1]]
    b3 = pos[:, quads[:, 3]] - pos[:, quads[:, 2]]
    n1 = torch.linalg.cross(b1, b2)
    n2 = torch.linalg.cross(b2, b3)
    # IUPAC sign: phi = atan2(|b2| b1 . (b2 x b3), (b1 x b2) . (b2 x b3))
    y = safe_norm(b2) * (b1 * n2).sum(-1)
    x = (n1 * n2).sum(-1)
    return x, y


def dihedrals(pos: torch.Tensor, quads: torch.Tensor) -> torch.Tensor:
    """Dihedral angles in radians, in (-pi, pi], [n_graphs, n_quads] (IUPAC sign convention)."""
    x, y = _dihedral_xy(pos, quads)
    return torch.atan2(y, x)


def dihedral_cos_sin(pos: torch.Tensor, quads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the dihedral angles, each [n_graphs, n_quads].

    For collinear beads the dihedral is undefined; then cos = 1, sin = 0 with a zero
    gradient (finite, never NaN).
    """
    x, y = _dihedral_xy(pos, quads)
    r = safe_norm(torch.stack([x, y], dim=-1))
    ok = r > 0
    r_safe = torch.where(ok, r, torch.ones_like(r))
    cos = torch.where(ok, x / r_safe, torch.ones_like(x))
    sin = torch.where(ok, y / r_safe, torch.zeros_like(y))
    return cos, sin
