"""Neighbour lists and edge vectors: the one place where both are computed.

Every part of physnet that needs neighbours (data sets, the ASE calculator, the
GNS rollout) calls :func:`radius_graph`, backed by vesin (Luthi et al.,
https://github.com/Luthaf/vesin), which runs on CPU and GPU tensors without a
round trip, supports triclinic cells of any size and per-axis periodicity, and
never caps the number of neighbours.

Convention (written once, here)::

    r_ij = pos[j] - pos[i] + edge_shift_ij @ cell[batch[i]]

``edge_index[0]`` is the centre ``i``, ``edge_index[1]`` the neighbour ``j``; the
list is *full* (both ``i->j`` and ``j->i`` appear). ``i == j`` appears only with a
non-zero shift (an atom's own periodic images).
"""

from __future__ import annotations

import torch

try:
    from vesin_torch import NeighborList
except ImportError:  # vesin-torch < 0.6 ships it as vesin.torch
    from vesin.torch import NeighborList

from physnet.data import keys as K

__all__ = ["radius_graph", "edge_vectors", "check_cell", "edge_pairs"]


def check_cell(cell: torch.Tensor, pbc: torch.Tensor, graph_index: int = 0) -> None:
    """Raise ``ValueError`` if a periodic cell is singular.

    Args:
        cell: [3, 3] lattice vectors as rows.
        pbc: [3] bool periodicity along each lattice vector.
        graph_index: used in the message only.
    """
    if not bool(pbc.any()):
        return
    lengths = torch.linalg.vector_norm(cell, dim=1)  # [3]
    for axis in range(3):
        if bool(pbc[axis]) and float(lengths[axis]) == 0.0:
            raise ValueError(
                f"graph {graph_index}: lattice vector {axis} is zero but pbc[{axis}] is True; "
                "give the cell a non-zero vector along every periodic direction or set that pbc to False"
            )
    # Gram determinant of the periodic rows, relative to their squared lengths: ~ the squared
    # sine of the smallest angle between them. Catches parallel vectors under mixed pbc (which
    # crash vesin) and nearly flat cells (which would make it loop over ~1e9 images).
    periodic_rows = cell.double()[pbc.bool()]  # [k, 3]
    gram = float(torch.linalg.det(periodic_rows @ periodic_rows.T))
    if gram <= 1e-12 * float((lengths.double()[pbc.bool()] ** 2).prod()):
        raise ValueError(
            f"graph {graph_index}: periodic cell is singular or nearly flat: its periodic lattice "
            "vectors are (nearly) linearly dependent"
        )


MAX_SPAN_IN_CUTOFFS = 1.0e4


def check_span(pos: torch.Tensor, periodic: torch.Tensor, cutoff: float, graph: int = 0) -> None:
    """Refuse positions that are not finite or span more than ``MAX_SPAN_IN_CUTOFFS`` cutoffs
    along a non-periodic axis, with a message that names the fix.

    vesin-torch 0.6.2 kills the process (SIGFPE) on such input: points spread over 1e5 cutoffs
    along two axes of a flat system crashed it here (a GNS rollout whose particles ran away).
    No real system without periodicity is ten thousand cutoffs wide; positions that are have
    blown up or are in the wrong unit.

    Args:
        pos: [n, 3] positions of one graph.
        periodic: [3] bool.
        cutoff: the neighbour cutoff, same length unit.
        graph: the graph's index, for the message.
    """
    if pos.shape[0] == 0:
        return
    if not bool(torch.isfinite(pos).all()):
        bad = int(torch.nonzero(~torch.isfinite(pos).all(-1))[0])
        raise ValueError(
            f"graph {graph}: atom {bad} has a non-finite position {pos[bad].tolist()}; a simulation "
            "that produced it has blown up (check its time step and the model's forces)"
        )
    span = (pos.amax(0) - pos.amin(0)) / cutoff  # [3]
    span = torch.where(periodic, torch.zeros_like(span), span)
    if float(span.max()) > MAX_SPAN_IN_CUTOFFS:
        axis = int(span.argmax())
        raise ValueError(
            f"graph {graph}: positions span {float(span[axis]):.3g} cutoffs along axis {axis} "
            f"(more than {MAX_SPAN_IN_CUTOFFS:.0e}), which the neighbour list cannot handle. Atoms or "
            "particles this far apart mean a simulation that blew up or positions in the wrong length "
            "unit; check them."
        )


def radius_graph(
    pos: torch.Tensor,
    cutoff: float,
    batch: torch.Tensor | None = None,
    cell: torch.Tensor | None = None,
    pbc: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """All pairs closer than ``cutoff``, with periodic images.

    Args:
        pos: [n_atoms, 3] positions (length unit of the data).
        cutoff: neighbour cutoff radius, same length unit, > 0.
        batch: [n_atoms] graph index of each atom, sorted ascending; ``None`` for
            a single graph.
        cell: [n_graphs, 3, 3] (or [3, 3] for one graph) lattice vectors as rows;
            ``None`` or zeros for a molecule.
        pbc: [n_graphs, 3] (or [3]) bool; ``None`` means no periodicity.

    Returns:
        ``edge_index`` [2, n_edges] long (row 0 = centre ``i``, row 1 = neighbour
        ``j``, indices into the batch) and ``edge_shift`` [n_edges, 3] long, the
        integer cell offsets such that ``r_ij = pos[j] - pos[i] + shift @ cell``.
        Both are on ``pos.device``.
    """
    if cutoff <= 0:
        raise ValueError(f"cutoff must be > 0, got {cutoff}")
    device = pos.device
    n_atoms = pos.shape[0]
    if batch is not None and batch.numel() > 1 and bool((batch[1:] < batch[:-1]).any()):
        raise ValueError(
            "batch must be sorted ascending (each graph's atoms contiguous), as collate makes it"
        )
    if batch is None:
        counts = [n_atoms]
    else:
        counts = torch.bincount(batch).tolist() if n_atoms > 0 else []
    n_graphs = len(counts)
    if cell is None:
        cell = torch.zeros(n_graphs, 3, 3, dtype=pos.dtype, device=device)
    elif cell.dim() == 2:
        cell = cell.unsqueeze(0)
    if pbc is None:
        pbc = torch.zeros(n_graphs, 3, dtype=torch.bool, device=device)
    elif pbc.dim() == 1:
        pbc = pbc.unsqueeze(0)
    if cell.shape[0] != n_graphs or pbc.shape[0] != n_graphs:
        raise ValueError(
            f"batch has {n_graphs} graphs but cell has {cell.shape[0]} and pbc {pbc.shape[0]} entries"
        )

    calculator = NeighborList(cutoff=float(cutoff), full_list=True)
    edge_indices, edge_shifts = [], []
    start = 0
    # vesin works in float64 for exact agreement with reference neighbour lists.
    pos64 = pos.detach().to(torch.float64)
    cell64 = cell.detach().to(torch.float64)
    for g, count in enumerate(counts):
        if count == 0:
            continue
        periodic = pbc[g].to(torch.bool)
        check_cell(cell64[g], periodic, g)
        check_span(pos64[start : start + count], periodic, cutoff, g)
        i, j, shift = calculator.compute(
            points=pos64[start : start + count],
            box=cell64[g],
            periodic=periodic if bool(periodic.any()) else False,
            quantities="ijS",
        )
        edge_indices.append(torch.stack([i, j]).to(torch.long) + start)
        edge_shifts.append(shift.to(torch.long))
        start += count
    if not edge_indices:
        return (
            torch.zeros(2, 0, dtype=torch.long, device=device),
            torch.zeros(0, 3, dtype=torch.long, device=device),
        )
    return torch.cat(edge_indices, dim=1).to(device), torch.cat(edge_shifts).to(device)


def edge_vectors(graph: dict[str, torch.Tensor]) -> torch.Tensor:
    """Edge vectors ``r_ij = pos[j] - pos[i] + edge_shift_ij @ cell[batch[i]]``.

    Computed from ``graph[POS]`` inside the forward pass so that gradients reach
    positions (forces) and the cell (stress).

    Returns:
        [n_edges, 3] in the length unit of ``pos``.
    """
    pos = graph[K.POS]
    edge_index = graph[K.EDGE_INDEX]
    i, j = edge_index[0], edge_index[1]
    vec = pos[j] - pos[i]  # [n_edges, 3]
    shift = graph.get(K.EDGE_SHIFT)
    if shift is not None and shift.numel() > 0:
        cell = graph[K.CELL]  # [n_graphs, 3, 3]
        if (
            cell.shape[0] == 1
        ):  # one graph: one [n_edges, 3] @ [3, 3] product (einsum's batched path is far slower)
            return vec + shift.to(pos.dtype) @ cell[0]
        batch = graph[K.BATCH]
        edge_cell = cell.index_select(0, batch.index_select(0, i))  # [n_edges, 3, 3]
        vec = vec + torch.einsum("ek,ekl->el", shift.to(pos.dtype), edge_cell)
    return vec


def edge_pairs(
    edge_index: torch.Tensor, edge_shift: torch.Tensor | None, n_atoms: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Match each edge of a full list with its reverse: one representative edge per pair.

    In a full list every pair appears twice, ``i -> j`` with shift ``s`` and ``j -> i`` with
    ``-s``, and both have the same length (``r_ji = -r_ij`` exactly in floating point). A model
    whose edge features depend on the length only can compute them once per pair and gather
    them to both edges. Costs one sort of the edges.

    Args:
        edge_index: [2, n_edges] (row 0 centre, row 1 neighbour), indices into the batch.
        edge_shift: [n_edges, 3] integer cell offsets, or ``None`` (all zero).
        n_atoms: number of atoms in the batch.

    Returns:
        ``(rep, pair)``: ``rep`` [n_pairs] the id of one edge of each pair and ``pair``
        [n_edges] the pair of every edge (``rep[pair[e]]`` is ``e`` or its reverse), or
        ``None`` if the list is not symmetric (some edge has no reverse) or the key would
        overflow.

    >>> ei = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    >>> rep, pair = edge_pairs(ei, None, 3)
    >>> rep.tolist(), pair.tolist()
    ([0, 2], [0, 0, 1, 1])
    """
    n_edges = edge_index.shape[1]
    if n_edges == 0 or n_edges % 2:
        return None
    i, j = edge_index[0], edge_index[1]
    if edge_shift is None or edge_shift.numel() == 0:
        n_codes, code = 1, torch.zeros_like(i)
    else:
        s_max = int(edge_shift.abs().max())
        base = 2 * s_max + 1
        n_codes = base**3
        digits = edge_shift + s_max  # [n_edges, 3] in [0, base)
        code = (digits[:, 0] * base + digits[:, 1]) * base + digits[:, 2]  # reverse shift: n_codes - 1 - code
    if n_atoms * n_atoms * n_codes >= 2**62:
        return None
    # canonical direction: i < j, or (own periodic image) the lexicographically positive shift
    canonical = (i < j) | ((i == j) & (2 * code > n_codes - 1))
    lo, hi = torch.where(canonical, i, j), torch.where(canonical, j, i)
    key = (lo * n_atoms + hi) * n_codes + torch.where(canonical, code, n_codes - 1 - code)  # [n_edges]
    order = torch.argsort(key)
    sorted_key = key.index_select(0, order)
    if not bool((sorted_key[0::2] == sorted_key[1::2]).all()):
        return None
    rep = order[0::2]  # [n_pairs]
    index = torch.arange(rep.shape[0], device=key.device)
    pair = torch.empty_like(key)
    pair[rep] = index
    pair[order[1::2]] = index
    return rep, pair
