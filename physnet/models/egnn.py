"""EGNN: E(n)-equivariant graph neural network, as a potential and as a dynamics model.

Satorras, Hoogeboom & Welling, "E(n) Equivariant Graph Neural Networks", ICML 2021
(arXiv:2102.09844). One equivariant graph convolutional layer (EGCL), eqs. (3)-(6)::

    m_ij    = phi_e(h_i, h_j, ||x_i - x_j||^2, a_ij)                    (3)
    x_i    <- x_i + C sum_{j != i} (x_i - x_j) phi_x(m_ij)              (4)
    m_i     = sum_{j != i} m_ij                                         (5)
    h_i    <- h_i + phi_h(h_i, m_i)                                     (6, residual form)

with the optional velocity form (eq. 7): x_i <- x_i + phi_v(h_i) v_i^init + C sum_j (x_i - x_j)
phi_x(m_ij), and optional soft edge weights (eq. 8): m_ij <- e_ij m_ij with
e_ij = sigmoid(phi_inf(m_ij)). The MLP shapes follow the authors' code (``E_GCL``): phi_e =
Linear-act-Linear-act, phi_h = Linear-act-Linear, phi_x = Linear-act-Linear(no bias, initialised
with gain 0.001).

Deviations and additions, all switchable:

- Edges come from the graph's ``edge_index`` and coordinate differences from the per-edge
  vectors r_ij = x_j - x_i of :func:`physnet.data.edge_vectors` (so periodic images work): a
  layer returns the per-atom displacement dx and the caller updates the edge vectors as
  r_ij <- r_ij + dx_j - dx_i, which equals recomputing x_j - x_i + shift @ cell.
- ``normalize``: (x_i - x_j) / sqrt(||x_i - x_j||^2 + eps^2) instead of (x_i - x_j); the
  authors' (||.|| + eps) has an infinite gradient of the norm when two atoms coincide, the
  safe norm here has none. ``tanh``: phi_x bounded as coord_range * tanh(.) (authors' option).
- ``edge_weight``: an external weight per edge (the smooth cutoff envelope of the potential)
  multiplies m_ij and the coordinate term, so every message vanishes smoothly at r_c.
- ``coord_aggregation``: C = coord_weight (``"sum"``) or C = coord_weight / n_neighbours
  (``"mean"``, the authors' code; C = 1/(M-1) for a fully connected graph of M nodes). The mean
  is discontinuous when a neighbour crosses a cutoff, so the potential uses ``"sum"``.
- ``length_scale``: ||x_i - x_j||^2 is fed to phi_e divided by length_scale^2 (the potential
  uses r_c, so the input lies in [0, 1]); 1 gives eq. (3) as printed.

:class:`EGNN` (registered ``"egnn"``) is the potential: species embedding -> EGCLs on the
cutoff graph -> invariant per-atom readout [n_atoms]; forces and stress follow by autograd in
:class:`physnet.Potential`. By default it does **not** update coordinates (as the paper's QM9
model, Sec. 5.3, which only uses the invariant h): the energy depends on positions only through
squared distances. With ``update_coords=True`` the updated coordinates feed the distances of
later layers; the energy stays E(3)-invariant (the updates are equivariant) and smooth at r_c
(the envelope always uses the *input* distances, so an edge entering the cutoff starts with zero
weight). Edge attributes a_ij are Gaussians of the (safe) distance, an addition to the paper's
QM9 model that used ||x_i - x_j||^2 alone; ``n_rbf=0`` removes them.

:class:`EGNNDynamics` is the N-body model of Sec. 5.1: positions, velocities and charges ->
positions some steps ahead, on a fully connected graph, node feature ||v_i||, edge attributes
q_i q_j and the input squared distance (as the authors' ``main_nbody.py``), velocity form of
the layer, C = 1/(M-1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from physnet.data import keys as K
from physnet.data.neighbors import edge_vectors
from physnet.models.dynamics import DynamicsModel, register_dynamics
from physnet.models.registry import EnergyModel, register
from physnet.nn import GaussianRBF, activation, mlp, scatter_sum
from physnet.nn.tracing import is_exporting

__all__ = [
    "EGNNLayer",
    "EGNN",
    "EGNNDynamics",
    "fully_connected_edges",
    "fully_connected_pairs",
    "polynomial_envelope",
]

# In eval mode, layers sum over the edges of graphs larger than this in chunks of this size.
CHUNK_EDGES = 65536


def polynomial_envelope(d2: torch.Tensor, cutoff: float, exponent: int = 3) -> torch.Tensor:
    """Smooth cutoff as a function of the squared distance: (1 - r^2 / r_c^2)^p for r < r_c, else 0.

    Written in r^2 so it needs no square root (finite derivatives of every order when two atoms
    coincide); its first p - 1 derivatives vanish at r_c (p = 3: energy, forces and force
    derivatives continuous).

    Args:
        d2: [n] squared distances (length unit^2).
        cutoff: r_c (length unit).
        exponent: p >= 1.
    """
    u = (1.0 - d2 / (cutoff * cutoff)).clamp(min=0.0)  # [n]
    return u**exponent


def fully_connected_edges(batch: torch.Tensor) -> torch.Tensor:
    """All ordered pairs i != j within each graph of a batch.

    Args:
        batch: [n_nodes] graph index of each node, sorted ascending.

    Returns:
        edge_index [2, n_edges] long (row 0 = centre i, row 1 = neighbour j).

    >>> fully_connected_edges(torch.tensor([0, 0, 1, 1])).tolist()
    [[0, 1, 2, 3], [1, 0, 3, 2]]
    """
    same = batch.unsqueeze(0) == batch.unsqueeze(1)  # [n, n]
    same.fill_diagonal_(False)
    i, j = torch.nonzero(same, as_tuple=True)
    return torch.stack([i, j])


def fully_connected_pairs(pos: torch.Tensor, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`fully_connected_edges` of ``batch`` [n] and the pair vectors ``x_j - x_i`` [n_edges, 3]
    of ``pos`` [n, 3]."""
    edge_index = fully_connected_edges(batch)
    return edge_index, pos[edge_index[1]] - pos[edge_index[0]]


class EGNNLayer(torch.nn.Module):
    """One equivariant graph convolutional layer, eqs. (3)-(8) of Satorras et al. (2021).

    Args:
        n_features: width F of h (and of the messages m_ij).
        n_edge_attr: width of the edge attributes a_ij (0 for none).
        act: activation name (:func:`physnet.nn.activation`); the paper uses SiLU.
        update_coords: compute the coordinate update of eq. (4) (or eq. (7)); if False the layer
            returns no displacement and phi_x is not built.
        velocity: eq. (7): add phi_v(h_i) v_i (v the *input* velocities) to the displacement.
        attention: eq. (8): multiply m_ij by e_ij = sigmoid(phi_inf(m_ij)).
        normalize: use (x_i - x_j) / sqrt(||x_i - x_j||^2 + eps^2) in eq. (4).
        tanh: bound phi_x as ``coord_range * tanh(.)``.
        coord_range: bound of phi_x when ``tanh`` (length unit); authors' code: 15.
        coord_weight: constant C of eq. (4) (times 1/n_neighbours for ``"mean"``).
        coord_aggregation: ``"sum"`` or ``"mean"`` over neighbours in eq. (4).
        length_scale: ||x_i - x_j||^2 enters phi_e divided by length_scale^2.
        eps: softening length of the safe norm used by ``normalize`` (length unit).
    """

    def __init__(
        self,
        n_features: int,
        n_edge_attr: int = 0,
        act: str = "silu",
        update_coords: bool = True,
        velocity: bool = False,
        attention: bool = False,
        normalize: bool = False,
        tanh: bool = False,
        coord_range: float = 15.0,
        coord_weight: float = 1.0,
        coord_aggregation: str = "mean",
        length_scale: float = 1.0,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if coord_aggregation not in ("sum", "mean"):
            raise ValueError(f"coord_aggregation must be 'sum' or 'mean', got {coord_aggregation!r}")
        if velocity and not update_coords:
            raise ValueError("velocity (eq. 7) needs update_coords=True")
        f = n_features
        self.phi_e = torch.nn.Sequential(
            torch.nn.Linear(2 * f + 1 + n_edge_attr, f),
            activation(act),
            torch.nn.Linear(f, f),
            activation(act),
        )
        self.phi_h = torch.nn.Sequential(torch.nn.Linear(2 * f, f), activation(act), torch.nn.Linear(f, f))
        self.phi_inf = torch.nn.Linear(f, 1) if attention else None
        self.phi_x: torch.nn.Sequential | None = None
        self.phi_v: torch.nn.Sequential | None = None
        if update_coords:
            last = torch.nn.Linear(f, 1, bias=False)
            torch.nn.init.xavier_uniform_(last.weight, gain=0.001)  # authors' init: start near x
            self.phi_x = torch.nn.Sequential(torch.nn.Linear(f, f), activation(act), last)
            if velocity:
                self.phi_v = torch.nn.Sequential(
                    torch.nn.Linear(f, f), activation(act), torch.nn.Linear(f, 1)
                )
        self.n_edge_attr = n_edge_attr
        self.normalize = normalize
        self.tanh = tanh
        self.coord_range = float(coord_range)
        self.coord_weight = float(coord_weight)
        self.coord_aggregation = coord_aggregation
        self.length_scale = float(length_scale)
        self.eps = float(eps)

    def forward(
        self,
        h: torch.Tensor,
        vec: torch.Tensor,
        edge_index: torch.Tensor,
        edge_attr: torch.Tensor | None = None,
        edge_weight: torch.Tensor | None = None,
        vel: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Update node features and compute the coordinate displacement.

        Args:
            h: [n_nodes, F] node features.
            vec: [n_edges, 3] edge vectors r_ij = x_j - x_i (physnet's convention).
            edge_index: [2, n_edges], row 0 = i (receives the message), row 1 = j.
            edge_attr: [n_edges, n_edge_attr] a_ij, or None when ``n_edge_attr == 0``.
            edge_weight: [n_edges] weights multiplying m_ij and the coordinate term (envelope).
            vel: [n_nodes, 3] initial velocities, required when the layer has ``velocity``.

        Returns:
            h' [n_nodes, F] and the displacement dx [n_nodes, 3] with x_i' = x_i + dx_i (None if
            the layer does not update coordinates).
        """
        n_edges = edge_index.shape[1]
        if not self.training and not is_exporting() and n_edges > CHUNK_EDGES:
            # inference on a large graph: the same sums over edges, CHUNK_EDGES at a time, so that
            # every [edges, F] buffer is chunk-sized (13,500 Cu atoms: no multi-GB temporaries)
            dx = None
            m_i = torch.zeros_like(h)
            for start in range(0, n_edges, CHUNK_EDGES):
                part = slice(start, start + CHUNK_EDGES)
                m_part, dx_part = self._edges(
                    h,
                    vec[part],
                    edge_index[:, part],
                    None if edge_attr is None else edge_attr[part],
                    None if edge_weight is None else edge_weight[part],
                )
                m_i = m_i + m_part
                if dx_part is not None:
                    dx = dx_part if dx is None else dx + dx_part
            return self._nodes(h, m_i, dx, edge_index, vel)
        m_i, dx = self._edges(h, vec, edge_index, edge_attr, edge_weight)
        return self._nodes(h, m_i, dx, edge_index, vel)

    def _edges(
        self,
        h: torch.Tensor,
        vec: torch.Tensor,
        edge_index: torch.Tensor,
        edge_attr: torch.Tensor | None,
        edge_weight: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Sums over the given edges: m_i [n_nodes, F] (eq. 5) and sum_j (x_i - x_j) phi_x
        [n_nodes, 3] (eq. 4, before the 1 / n_neighbours of the mean), or None."""
        i, j = edge_index[0], edge_index[1]
        n_nodes = h.shape[0]
        d2 = (vec * vec).sum(-1, keepdim=True)  # [n_edges, 1]
        inputs = [h[i], h[j], d2 / (self.length_scale * self.length_scale)]
        if self.n_edge_attr:
            if edge_attr is None:
                raise ValueError(f"this layer expects edge attributes of width {self.n_edge_attr}")
            inputs.append(edge_attr)
        m = self.phi_e(torch.cat(inputs, dim=-1))  # [n_edges, F], eq. (3)
        if self.phi_inf is not None:
            m = m * torch.sigmoid(self.phi_inf(m))  # eq. (8)
        if edge_weight is not None:
            m = m * edge_weight.unsqueeze(-1)

        dx = None
        if self.phi_x is not None:
            diff = -vec  # [n_edges, 3], x_i - x_j
            if self.normalize:
                diff = diff / torch.sqrt(d2 + self.eps * self.eps)  # safe norm: finite at r = 0
            phi = self.phi_x(m)  # [n_edges, 1]
            if self.tanh:
                phi = self.coord_range * torch.tanh(phi)
            if edge_weight is not None:
                phi = phi * edge_weight.unsqueeze(-1)
            dx = scatter_sum(diff * phi, i, n_nodes) * self.coord_weight  # [n_nodes, 3], eq. (4)
        return scatter_sum(m, i, n_nodes), dx  # m_i [n_nodes, F], eq. (5)

    def _nodes(
        self,
        h: torch.Tensor,
        m_i: torch.Tensor,
        dx: torch.Tensor | None,
        edge_index: torch.Tensor,
        vel: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Finish the coordinate update (mean, eq. 7) and the node update, eq. (6)."""
        n_nodes = h.shape[0]
        if dx is not None:
            if self.coord_aggregation == "mean":
                ones = torch.ones(edge_index.shape[1], 1, dtype=h.dtype, device=h.device)
                count = scatter_sum(ones, edge_index[0], n_nodes).clamp(min=1.0)  # [n_nodes, 1]
                dx = dx / count
            if self.phi_v is not None:
                if vel is None:
                    raise ValueError("this layer uses velocities (eq. 7); pass vel")
                dx = dx + self.phi_v(h) * vel  # eq. (7)
        h = h + self.phi_h(torch.cat([h, m_i], dim=-1))  # eq. (6), residual
        return h, dx


@register("egnn")
class EGNN(EnergyModel):
    """EGNN potential returning per-atom energies [n_atoms] (see the module docstring).

    Args:
        species: elements (symbols or atomic numbers) the model handles.
        cutoff: cutoff radius r_c in Å (or the data's length unit); default 5.0.
        n_features: width F of h and of the messages; paper: 128 for QM9, 64 for N-body.
        n_layers: number of EGCLs; paper: 7 for QM9, 4 for N-body.
        n_rbf: Gaussian distance features on [0, r_c] used as edge attributes a_ij (0: none,
            the paper's QM9 model).
        update_coords: apply the coordinate update eq. (4) between layers (default False).
        coord_weight: C of eq. (4) (sum over neighbours) when ``update_coords``.
        attention: soft edge weights of eq. (8).
        normalize: normalised coordinate differences in eq. (4) (safe norm).
        tanh: bound phi_x by ``coord_range * tanh``; default range 1 length unit.
        coord_range: bound of phi_x when ``tanh``.
        envelope_exponent: p of the envelope (1 - r^2/r_c^2)^p multiplying every message.
        activation: activation name; paper: ``"silu"``.
    """

    def __init__(
        self,
        species: Sequence[int | str],
        cutoff: float = 5.0,
        n_features: int = 64,
        n_layers: int = 4,
        n_rbf: int = 16,
        update_coords: bool = False,
        coord_weight: float = 0.1,
        attention: bool = False,
        normalize: bool = True,
        tanh: bool = True,
        coord_range: float = 1.0,
        envelope_exponent: int = 3,
        activation: str = "silu",
    ) -> None:
        super().__init__(species, cutoff)
        self.embedding = torch.nn.Embedding(len(self.species), n_features)
        self.rbf = GaussianRBF(n_rbf, cutoff) if n_rbf > 0 else None
        self.layers = torch.nn.ModuleList(
            EGNNLayer(
                n_features,
                n_edge_attr=n_rbf,
                act=activation,
                # the last layer's displacement would be unused
                update_coords=update_coords and n < n_layers - 1,
                attention=attention,
                normalize=normalize,
                tanh=tanh,
                coord_range=coord_range,
                coord_weight=coord_weight,
                coord_aggregation="sum",
                length_scale=cutoff,
            )
            for n in range(n_layers)
        )
        self.readout = mlp([n_features, n_features, 1], act=activation)
        self.envelope_exponent = int(envelope_exponent)
        self.eps = 1e-6

    @property
    def interaction_range(self) -> float:
        """n_layers x cutoff: each layer reaches one cutoff further."""
        return len(self.layers) * self.cutoff

    def forward(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        """graph -> per-atom energies [n_atoms]."""
        edge_index = graph[K.EDGE_INDEX]
        vec = edge_vectors(graph)  # [n_edges, 3], r_ij = x_j - x_i
        d2 = (vec * vec).sum(-1)  # [n_edges]
        weight = polynomial_envelope(d2, self.cutoff, self.envelope_exponent)  # [n_edges]
        edge_attr = None
        if self.rbf is not None:
            edge_attr = self.rbf(torch.sqrt(d2 + self.eps * self.eps))  # [n_edges, n_rbf], safe norm
        h = self.embedding(self.species(graph[K.Z]))  # [n_atoms, F]
        i, j = edge_index[0], edge_index[1]
        for layer in self.layers:
            h, dx = layer(h, vec, edge_index, edge_attr=edge_attr, edge_weight=weight)
            if dx is not None:
                vec = vec + dx[j] - dx[i]  # = x_j' - x_i' + shift @ cell
        return self.readout(h).squeeze(-1)  # [n_atoms]


@register_dynamics("egnn")
class EGNNDynamics(DynamicsModel):
    """EGNN for N-body dynamics (Satorras et al. 2021, Sec. 5.1): predicts positions ahead.

    Fully connected graph of each system; h^0 = Linear(||v_i||); edge attributes
    [q_i q_j, ||x_i - x_j||^2 of the input positions] (authors' ``main_nbody.py``); velocity
    form (eq. 7) of every layer with C = 1/(M-1); output x^L. E(n)-equivariant: rotating,
    reflecting or translating positions (and rotating/reflecting velocities) transforms the
    predicted positions alike; permuting particles permutes them.

    Args:
        n_features: width of h; paper: 64.
        n_layers: number of layers; paper: 4.
        act: activation name; paper: ``"silu"``.
        attention: soft edge weights, eq. (8); paper's N-body model: off.
        normalize: normalised coordinate differences; paper: off.
        tanh: bounded phi_x; paper: off.
        coord_range: bound of phi_x when ``tanh``.

    >>> model = EGNNDynamics(n_features=8, n_layers=2)
    >>> x, v, q = torch.randn(5, 3), torch.randn(5, 3), torch.tensor([1.0, -1, 1, -1, 1])
    >>> model(x, v, q, torch.zeros(5, dtype=torch.long)).shape
    torch.Size([5, 3])
    """

    def __init__(
        self,
        n_features: int = 64,
        n_layers: int = 4,
        act: str = "silu",
        attention: bool = False,
        normalize: bool = False,
        tanh: bool = False,
        coord_range: float = 15.0,
    ) -> None:
        super().__init__()
        self.embedding = torch.nn.Linear(1, n_features)
        self.layers = torch.nn.ModuleList(
            EGNNLayer(
                n_features,
                n_edge_attr=2,
                act=act,
                update_coords=True,
                velocity=True,
                attention=attention,
                normalize=normalize,
                tanh=tanh,
                coord_range=coord_range,
                coord_weight=1.0,
                coord_aggregation="mean",
            )
            for _ in range(n_layers)
        )

    def forward(
        self, pos: torch.Tensor, vel: torch.Tensor, charges: torch.Tensor, batch: torch.Tensor
    ) -> torch.Tensor:
        """Future positions [n_nodes, 3] (shapes: :class:`~physnet.models.dynamics.DynamicsModel`)."""
        edge_index, vec = fully_connected_pairs(pos, batch)  # vec = x_j - x_i [n_edges, 3]
        i, j = edge_index[0], edge_index[1]
        d2_input = (vec * vec).sum(-1, keepdim=True)  # [n_edges, 1]
        edge_attr = torch.cat([(charges[i] * charges[j]).unsqueeze(-1).to(pos.dtype), d2_input], dim=-1)
        h = self.embedding(torch.linalg.vector_norm(vel, dim=-1, keepdim=True))  # [n_nodes, F]
        x = pos
        for layer in self.layers:
            h, dx = layer(h, vec, edge_index, edge_attr=edge_attr, vel=vel)
            assert dx is not None
            x = x + dx
            vec = vec + dx[j] - dx[i]
        return x
