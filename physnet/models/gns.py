"""Graph Network-based Simulator (GNS): a learned particle simulator.

Sanchez-Gonzalez, Godwin, Pfaff, Ying, Leskovec & Battaglia, "Learning to Simulate
Complex Physics with Graph Networks", ICML 2020 (arXiv:2002.09405); the reference code is
DeepMind's ``learning_to_simulate``. Positions are in the data's length unit and time in
frames (:mod:`physnet.sim.frames`). The parts, chosen by name: the wall representation
(:data:`WALLS`), the encode-process-decode network (:class:`InteractionNetwork`, the decoder
from :data:`DECODERS`), the optional :class:`WallDamping`, and the update by
:func:`~physnet.sim.frames.euler_step`; :class:`GNS` documents how they fit together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from physnet.data import keys as K
from physnet.models.simulator import Simulator, register_simulator
from physnet.nn.mlp import mlp
from physnet.nn.scatter import scatter_sum
from physnet.sim.box import wall_distances, wall_midpoints, wall_normals
from physnet.sim.frames import velocities_and_accelerations

__all__ = [
    "GNS",
    "WALLS",
    "DECODERS",
    "NoWalls",
    "WallFeatures",
    "WallNodes",
    "NodeDecoder",
    "PairwiseDecoder",
    "WallDamping",
    "InteractionNetwork",
]


def _mlp(n_in: int, hidden: int, n_hidden: int, n_out: int, layer_norm: bool) -> torch.nn.Sequential:
    """``n_hidden`` ReLU hidden layers of width ``hidden``, a linear output, then LayerNorm if asked."""
    net = mlp([n_in, *([hidden] * n_hidden), n_out], act="relu")
    if layer_norm:
        net.append(torch.nn.LayerNorm(n_out))
    return net


def _project_nodes(node: torch.Tensor, w: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A first layer's receiver and sender terms [n, hidden] each, from its weight ``w``'s columns
    ``start ..`` (receiver) and the next ``latent`` (sender): the nodes are projected before
    they are gathered per edge (the same function, with no per-edge concatenation)."""
    latent, hidden = node.shape[-1], w.shape[0]
    receiver, sender = w[:, start : start + latent], w[:, start + latent : start + 2 * latent]
    projected = node @ torch.cat([receiver, sender]).t()  # [n, 2 hidden]
    return projected[:, :hidden], projected[:, hidden:]


# --------------------------------------------------------------------------- walls


class NoWalls(torch.nn.Module):
    """``walls="none"``: the model does not see the walls (translation invariant).

    Every wall representation has this interface: ``n_features`` node-input columns from
    :meth:`features`, ``n_types`` extra type-embedding rows, and :meth:`wall_graph`: the
    sender-only wall nodes and edges that :meth:`add_nodes` appends to the graph.
    """

    n_features = 0
    n_types = 0

    def __init__(self, bounds: torch.Tensor, radius: float, cutoff: float, reach: float) -> None:
        super().__init__()
        self.register_buffer("bounds", bounds.clone())  # [dim, 2]

    def features(self, pos: torch.Tensor) -> torch.Tensor:
        """Node-input columns [n, n_features] for particles at ``pos`` [n, dim]."""
        return pos.new_zeros(pos.shape[0], 0)

    def wall_graph(self, last: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
        """Wall nodes and edges for particles at ``last`` [n, dim]: ``(points [m, dim], receiver,
        wall [n_edges], edge features [n_edges, dim + 1])``, or None (no wall nodes, here)."""
        return None

    def add_nodes(
        self,
        last: torch.Tensor,
        node_in: torch.Tensor,
        edge_in: torch.Tensor,
        edge_index: torch.Tensor,
        static_input: Callable[[torch.Tensor], torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Append the nodes of :meth:`wall_graph` (indices ``n ..``) and their edges after the pair
        edges; returns ``(node_in, edge_in, edge_index)``."""
        graph = self.wall_graph(last)
        if graph is None:
            return node_in, edge_in, edge_index
        points, receiver, wall, features = graph
        n = node_in.shape[0]
        return (
            torch.cat([node_in, static_input(points)]),
            torch.cat([edge_in, features]),
            torch.cat([edge_index, torch.stack([receiver, wall + n])], dim=1),
        )


class WallFeatures(NoWalls):
    """``walls="features"``: the paper's wall input (Sec. 3, "Input and output representations").

    Each particle gets its distances to the ``2 dim`` walls (:func:`wall_distances`) divided by
    ``cutoff`` and clipped to ``[-1, 1]``. The paper divides by ``R``; a larger ``cutoff``
    (model argument ``wall_cutoff``, a deviation) lets a particle that moves a sizeable
    fraction of ``R`` per frame see a wall before it reaches it.

    Args:
        bounds: [dim, 2] box (length unit).
        radius: connectivity radius ``R`` (length unit).
        cutoff: length over which the walls are seen.
        reach: unused here (see :class:`WallNodes`).
    """

    def __init__(self, bounds: torch.Tensor, radius: float, cutoff: float, reach: float) -> None:
        super().__init__(bounds, radius, cutoff, reach)
        self.n_features = 2 * bounds.shape[0]
        self.cutoff = float(cutoff)

    def features(self, pos: torch.Tensor) -> torch.Tensor:
        return (wall_distances(pos, self.bounds) / self.cutoff).clamp(-1.0, 1.0)


class WallNodes(WallFeatures):
    """``walls="nodes"``: wall features plus one sender-only node per wall (a deviation).

    Every particle closer than ``reach`` to a wall (or behind it) receives one edge from that
    wall's node, as FIGNet joins particles to mesh faces (Allen, Lopez-Guevara, Stachenfeld et
    al., "Learning rigid dynamics with face interaction graph networks", ICLR 2023). The
    edge's features are the displacement ``d = (p - x_i) / R`` to the particle's nearest point
    ``p`` on the wall's plane and the signed distance ``|d|`` (negative behind the wall, where
    ``d`` points back into the box), so a flat wall acts the same all along it and a particle
    that crossed it sees how far. A ``reach`` above the farthest move per frame lets a wall see
    a particle before it can cross. The wall nodes' input is zero velocity, the wall type's
    embedding (one extra row) and the wall features of the wall's midpoint; they receive no
    messages.

    Args:
        bounds, radius, cutoff: as :class:`WallFeatures`.
        reach: how far the walls reach (length unit).
    """

    n_types = 1

    def __init__(self, bounds: torch.Tensor, radius: float, cutoff: float, reach: float) -> None:
        super().__init__(bounds, radius, cutoff, reach)
        self.radius = float(radius)
        self.reach = float(reach)

    def edges(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Wall edges of the particles at ``pos`` [n, dim].

        Returns:
            ``(receiver, wall, disp, distance)``: [n_edges] particle and wall indices,
            [n_edges, dim] displacements to the nearest point on the wall and [n_edges] signed
            distances, both in units of ``R``.
        """
        dim = pos.shape[-1]
        inside = wall_distances(pos, self.bounds)  # [n, 2 dim]
        receiver, wall = torch.nonzero(inside < self.reach, as_tuple=True)
        distance = inside[receiver, wall] / self.radius  # [n_edges], signed
        disp = wall_normals(dim, pos.dtype, pos.device)[wall] * distance[:, None]
        return receiver, wall, disp, distance

    def wall_graph(self, last: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The ``2 dim`` wall nodes at the walls' midpoints and the edges of :meth:`edges`."""
        receiver, wall, disp, distance = self.edges(last)
        points = wall_midpoints(self.bounds.to(last.dtype))
        return points, receiver, wall, torch.cat([disp, distance[:, None]], dim=-1)


WALLS: dict[str, type[NoWalls]] = {"none": NoWalls, "features": WallFeatures, "nodes": WallNodes}


# --------------------------------------------------------------------------- decoders


class NodeDecoder(torch.nn.Module):
    """``decoder="node"``: the paper's decoder, an MLP of each particle's processed latent.

    Args:
        latent, hidden, n_hidden: latent width, hidden width and hidden layers of the MLP.
        dim: spatial dimension (output width).
    """

    def __init__(self, latent: int, hidden: int, n_hidden: int, dim: int) -> None:
        super().__init__()
        self.mlp = _mlp(latent, hidden, n_hidden, dim, layer_norm=False)

    def forward(
        self, node: torch.Tensor, edge_in: torch.Tensor, edge_index: torch.Tensor, n: int
    ) -> torch.Tensor:
        """Normalised accelerations [n, dim] of the first ``n`` nodes (the particles)."""
        return self.mlp(node[:n])


class PairwiseDecoder(torch.nn.Module):
    """``decoder="pairwise"``: the acceleration as a sum of antisymmetric pair terms (a deviation).

    ``a_i = body_acceleration + acc_std * sum_j f_ij`` with ``f_ij = phi(v_i, v_j, d_ij, |d_ij|)
    - phi(v_j, v_i, -d_ij, |d_ij|)``, ``v`` the processed latents, ``d_ij`` the edge
    displacement (wall edges included) and ``phi`` an MLP. Then ``f_ji = -f_ij`` (Newton's
    third law): away from the walls the particles' accelerations sum to ``n *
    body_acceleration``, so a block in flight falls with exactly the known body acceleration
    and only the walls can hold water up. The momentum-conserving construction of Prantl,
    Ummenhofer, Koltun & Thuerey, NeurIPS 2022 (antisymmetric convolutions), on GNS's graph.

    Args:
        latent, hidden, n_hidden, dim: as :class:`NodeDecoder`.
    """

    def __init__(self, latent: int, hidden: int, n_hidden: int, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.mlp = _mlp(2 * latent + dim + 1, hidden, n_hidden, dim, layer_norm=False)

    def forward(
        self, node: torch.Tensor, edge_in: torch.Tensor, edge_index: torch.Tensor, n: int
    ) -> torch.Tensor:
        """``sum_j f_ij`` [n, dim] for the first ``n`` nodes; ``phi``'s first layer projects the nodes
        before gathering (:func:`_project_nodes`) and the displacement once per edge, with both signs."""
        i, j = edge_index[0], edge_index[1]
        first, rest = self.mlp[0], self.mlp[1:]
        latent, dim = node.shape[-1], self.dim
        w = first.weight  # [hidden, 2 latent + dim + 1]: columns for v_i, v_j, d_ij, |d_ij|
        receiver, sender = _project_nodes(node, w, 0)
        odd = edge_in[:, :dim] @ w[:, 2 * latent : 2 * latent + dim].t()  # [n_edges, hidden], flips with d
        even = torch.addmm(first.bias, edge_in[:, dim:], w[:, 2 * latent + dim :].t())
        ri, rj, si, sj = receiver[i], receiver[j], sender[i], sender[j]
        f = rest(ri + sj + odd + even) - rest(rj + si - odd + even)  # [n_edges, dim]
        return scatter_sum(f, i, node.shape[0])[:n]


DECODERS: dict[str, type[torch.nn.Module]] = {"node": NodeDecoder, "pairwise": PairwiseDecoder}


# --------------------------------------------------------------------------- wall damping


class WallDamping(torch.nn.Module):
    """Walls that remove a learned fraction of the outward velocity (a deviation; needs wall nodes).

    ``a_i += -sum_w g_iw e_iw max(0, u_i . n_w) n_w`` over the walls ``w`` with an edge to
    particle ``i``: ``u_i = x_t - x_{t-1} + a'_i`` is the velocity after the decoder's
    acceleration ``a'_i`` (where the MPM solver applies its wall condition: grid nodes at a
    wall lose the outward part of their velocity after the forces), ``n_w`` the wall's outward
    normal, ``g_iw = sigmoid(psi(v_i, e_iw))`` in (0, 1) from the processed latents of the
    particle and its wall edge, and ``e_iw = clip(1 - d'_iw / range, 0, 1)`` with ``d'_iw`` the
    distance of the arrival point ``x_t + u_i`` inside the wall: full weight for a particle
    that would land on or behind the wall, none for one that stays ``range`` or more inside
    (``range = 1.5`` grid cells is the reach of an MPM wall node through a particle's
    quadratic B-spline). Stopping an impact is then a gate in (0, 1) to learn, not an
    acceleration of many ``acc_std`` to regress; the gate cannot push a particle back in.

    Args:
        latent, hidden, n_hidden: latent width, hidden width and hidden layers of ``psi``.
        bounds: [dim, 2] box (length unit).
        range: length (> 0) from the wall over which the damping fades in.
    """

    def __init__(self, latent: int, hidden: int, n_hidden: int, bounds: torch.Tensor, range: float) -> None:
        super().__init__()
        if not (math.isfinite(range) and range > 0):
            raise ValueError(f"wall_damping_range must be a length > 0 (or null: no damping), got {range}")
        self.range = float(range)
        self.register_buffer("bounds", bounds.clone())
        self.gate = _mlp(2 * latent, hidden, n_hidden, 1, layer_norm=False)
        with torch.no_grad():  # start near g = 0.12: the walls damp little until trained
            self.gate[-1].bias.fill_(-2.0)

    def forward(
        self,
        pos_history: torch.Tensor,
        acceleration: torch.Tensor,
        node: torch.Tensor,
        wall_edge: torch.Tensor,
        wall_index: torch.Tensor,
    ) -> torch.Tensor:
        """The acceleration [n, dim] (length / frame^2) by which the walls remove outward speed.

        Args:
            pos_history: [n, C, dim] input positions.
            acceleration: [n, dim] the decoder's acceleration.
            node: [n_nodes, latent] processed node latents (particles first).
            wall_edge: [n_wall_edges, latent] processed latents of the wall edges.
            wall_index: [2, n_wall_edges] particle index and wall index of each wall edge.
        """
        receiver, wall = wall_index[0], wall_index[1]
        dim = pos_history.shape[-1]
        axis = wall % dim
        outward = torch.where(wall < dim, -1.0, 1.0).to(pos_history.dtype)  # normal's sign along its axis
        velocity = pos_history[:, -1] - pos_history[:, -2] + acceleration  # [n, dim] after the forces
        speed_out = (outward * velocity[receiver, axis]).clamp_min(0.0)  # [n_wall_edges]
        gate = torch.sigmoid(self.gate(torch.cat([node[receiver], wall_edge], dim=-1))).squeeze(-1)
        arrival = wall_distances(pos_history[:, -1] + velocity, self.bounds)  # [n, 2 dim]
        gate = gate * (1.0 - arrival[receiver, wall] / self.range).clamp(0.0, 1.0)
        removed = torch.zeros_like(velocity)
        removed.index_put_((receiver, axis), -(gate * speed_out * outward), accumulate=True)
        return removed


# --------------------------------------------------------------------------- processor


class InteractionNetwork(torch.nn.Module):
    """One GN block with residual updates (paper Sec. 2 "Processor"; Battaglia et al. 2018, Alg. 1).

    ``e'_ij = e_ij + phi_e(e_ij, v_i, v_j)``, ``v'_i = v_i + phi_v(v_i, sum_j e'_ij)``.

    Args:
        latent, hidden, n_hidden: latent width, hidden width and hidden layers of both MLPs.
    """

    def __init__(self, latent: int, hidden: int, n_hidden: int) -> None:
        super().__init__()
        self.edge_mlp = _mlp(3 * latent, hidden, n_hidden, latent, layer_norm=True)
        self.node_mlp = _mlp(2 * latent, hidden, n_hidden, latent, layer_norm=True)

    def forward(
        self, node: torch.Tensor, edge: torch.Tensor, edge_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """node [n, latent], edge [n_edges, latent], edge_index [2, n_edges] (row 0 = receiver i);
        the edge MLP's first layer is ``W_e e_ij + (W_r v)_i + (W_s v)_j + b`` (:func:`_project_nodes`)."""
        i, j = edge_index[0], edge_index[1]
        first = self.edge_mlp[0]
        w = first.weight  # [hidden, 3 latent]: columns for e_ij, v_i (receiver), v_j (sender)
        receiver, sender = _project_nodes(node, w, edge.shape[-1])
        h = torch.addmm(first.bias, edge, w[:, : edge.shape[-1]].t())  # [n_edges, hidden]
        h = h + receiver.index_select(0, i) + sender.index_select(0, j)
        new_edge = self.edge_mlp[1:](h)  # [n_edges, latent]
        aggregated = scatter_sum(new_edge, i, node.shape[0])  # [n, latent], sum over senders j
        new_node = self.node_mlp(torch.cat([node, aggregated], dim=-1))  # [n, latent]
        return node + new_node, edge + new_edge


# --------------------------------------------------------------------------- model


@register_simulator("gns")
class GNS(Simulator):
    """Graph Network-based Simulator (Sanchez-Gonzalez et al., ICML 2020).

    Inputs (Sec. 3): the ``C - 1`` finite-difference velocities of the window, normalised, the
    particle type's embedding and the walls' node features; edges join particles closer than
    ``R`` (:func:`physnet.data.radius_graph` on the last positions, 2D padded with z = 0), with
    features ``(x_j - x_i) / R`` and its norm. Encoder MLPs -> ``M`` residual
    :class:`InteractionNetwork` steps (unshared) -> decoder; every MLP has two ReLU hidden
    layers, all but the decoders end in LayerNorm. ``forward`` returns the acceleration
    (length / frame^2): decoder output times ``acc_std`` plus ``acc_mean`` (or the known
    ``body_acceleration``). The statistics are buffers (:meth:`fit_statistics`).

    Args:
        dim: spatial dimension of the positions (2 or 3).
        bounds: ``[[lo, hi]] * dim`` the box walls (length unit); default the unit box.
        radius: connectivity radius ``R`` (length unit). Paper's WATER: 0.015.
        window: number ``C`` of past positions in the input. Paper: 6.
        n_particle_types: particle types. Paper: 9.
        type_embedding_size: size of the learned type embedding. Paper: 16.
        walls: how the model sees the walls, a key of :data:`WALLS`: ``"none"``,
            ``"features"`` (the paper's) or ``"nodes"``.
        wall_cutoff: length over which wall distances are seen (:class:`WallFeatures`);
            ``None``: ``radius``, the paper's choice.
        wall_reach: how far the wall nodes reach (:class:`WallNodes`); ``None``: ``radius``.
        decoder: a key of :data:`DECODERS`: ``"node"`` (the paper's) or ``"pairwise"``.
        body_acceleration: a known uniform body acceleration [dim] in length / frame^2
            (gravity: ``[0, -g dt^2]``), or ``None``. The decoder's output is added to it
            instead of to the training data's mean acceleration, so zero output is free fall.
            With the pairwise decoder it is the only uniform acceleration the model can
            produce (``None`` = zeros: no external field).
        wall_damping_range: ``None`` (the paper: no damping), or the range (length unit) of
            :class:`WallDamping`; needs ``walls="nodes"``.
        latent_size: node and edge latent width. Paper: 128.
        hidden_size: hidden width of every MLP. Paper: 128.
        n_hidden_layers: hidden layers per MLP. Paper: 2.
        n_message_passing: message-passing steps ``M`` (unshared). Paper: 10.
        noise_std: std of the training noise on the last input position (length unit); here
            it only widens the normalisation stds (:meth:`fit_statistics`). Paper: 6.7e-4.
        frame_dt: time between the frames the model was trained on (s), set from the training
            data; rollouts refuse data of another frame step. ``None``: not checked.
    """

    def __init__(
        self,
        dim: int = 2,
        bounds: Sequence[Sequence[float]] | None = None,
        radius: float = 0.015,
        window: int = 6,
        n_particle_types: int = 1,
        type_embedding_size: int = 16,
        walls: str = "features",
        wall_cutoff: float | None = None,
        wall_reach: float | None = None,
        decoder: str = "node",
        body_acceleration: Sequence[float] | None = None,
        wall_damping_range: float | None = None,
        latent_size: int = 128,
        hidden_size: int = 128,
        n_hidden_layers: int = 2,
        n_message_passing: int = 10,
        noise_std: float = 6.7e-4,
        frame_dt: float | None = None,
    ) -> None:
        super().__init__()
        if dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {dim}")
        if radius <= 0 or window < 2 or n_particle_types < 1:
            raise ValueError("need radius > 0, window >= 2 and n_particle_types >= 1")
        bounds_t = torch.as_tensor(
            [[0.0, 1.0]] * dim if bounds is None else bounds, dtype=torch.get_default_dtype()
        )
        if bounds_t.shape != (dim, 2) or not bool((bounds_t[:, 1] > bounds_t[:, 0]).all()):
            raise ValueError(f"bounds must be [[lo, hi]] * {dim} with hi > lo, got {bounds}")
        for name, choice, table in (("walls", walls, WALLS), ("decoder", decoder, DECODERS)):
            if choice not in table:
                raise ValueError(f"{name} must be one of {sorted(table)}, got {choice!r}")
        if wall_damping_range is not None and walls != "nodes":
            raise ValueError(
                'wall_damping_range acts through the wall edges: set walls="nodes" or wall_damping_range=null'
            )
        cutoff, reach = (float(radius if v is None else v) for v in (wall_cutoff, wall_reach))
        if not (cutoff > 0 and reach > 0):
            raise ValueError(f"wall_cutoff and wall_reach must be lengths > 0, got {cutoff}, {reach}")
        if frame_dt is not None and not (math.isfinite(frame_dt) and frame_dt > 0):
            raise ValueError(f"frame_dt must be a time > 0 (s) or null, got {frame_dt}")
        self.dim, self.radius, self.window, self.n_particle_types = (
            dim,
            float(radius),
            window,
            n_particle_types,
        )
        self.noise_std = float(noise_std)
        self.frame_dt = None if frame_dt is None else float(frame_dt)
        self.register_buffer("bounds", bounds_t)  # [dim, 2]
        # statistics: identity until fit_statistics (per component, length/frame and length/frame^2)
        self.register_buffer("vel_mean", torch.zeros(dim))
        self.register_buffer("vel_std", torch.ones(dim))
        self.register_buffer("acc_mean", torch.zeros(dim))
        self.register_buffer("acc_std", torch.ones(dim))
        if body_acceleration is None and decoder == "pairwise":
            body_acceleration = [0.0] * dim
        self.body_acceleration = None if body_acceleration is None else tuple(map(float, body_acceleration))
        if self.body_acceleration is not None:
            if len(self.body_acceleration) != dim or not all(map(math.isfinite, self.body_acceleration)):
                raise ValueError(
                    f"body_acceleration must be {dim} finite numbers (length / frame^2, e.g. "
                    f"[0, -g dt^2]), got {body_acceleration}"
                )
            self.acc_mean.copy_(torch.tensor(self.body_acceleration))
        self.walls = WALLS[walls](bounds_t, self.radius, cutoff, reach)
        # (parameters are created in this order: a seed gives the same weights as before the split)
        self.type_embedding = torch.nn.Embedding(n_particle_types + self.walls.n_types, type_embedding_size)
        n_node_in = (window - 1) * dim + type_embedding_size + self.walls.n_features
        self.node_encoder = _mlp(n_node_in, hidden_size, n_hidden_layers, latent_size, layer_norm=True)
        self.edge_encoder = _mlp(dim + 1, hidden_size, n_hidden_layers, latent_size, layer_norm=True)
        self.processor = torch.nn.ModuleList(
            InteractionNetwork(latent_size, hidden_size, n_hidden_layers) for _ in range(n_message_passing)
        )
        self.decoder = DECODERS[decoder](latent_size, hidden_size, n_hidden_layers, dim)
        self.damping = (
            None
            if wall_damping_range is None
            else WallDamping(latent_size, hidden_size, n_hidden_layers, bounds_t, wall_damping_range)
        )

    @torch.no_grad()
    def fit_statistics(self, trajectories: Sequence[torch.Tensor | np.ndarray]) -> None:
        """Velocity and acceleration mean / std (per component) from training trajectories.

        Args:
            trajectories: each [n_frames, n_particles, dim] positions.

        The stds are combined with ``noise_std`` as ``sqrt(std^2 + noise_std^2)``
        (``learning_to_simulate/train.py``, ``_combine_std``). With ``body_acceleration`` the
        acceleration offset stays the body acceleration instead of the data's mean.
        """
        v_all, a_all = velocities_and_accelerations(trajectories)
        noise = self.noise_std**2
        for name, value in (
            ("vel_mean", v_all.mean(0)),
            ("vel_std", (v_all.var(0) + noise).sqrt()),
            ("acc_mean", a_all.mean(0) if self.body_acceleration is None else self.acc_mean),
            ("acc_std", (a_all.var(0) + noise).sqrt()),
        ):
            buf = getattr(self, name)
            buf.copy_(value.to(buf.dtype))

    def features(
        self, pos_history: torch.Tensor, particle_type: torch.Tensor, edge_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Node features [n, n_node_in] and edge features [n_edges, dim + 1] (paper Sec. 3)."""
        last = pos_history[:, -1]  # [n, dim]
        vel = (pos_history[:, 1:] - pos_history[:, :-1] - self.vel_mean) / self.vel_std  # [n, C-1, dim]
        i, j = edge_index[0], edge_index[1]
        disp = (last[j] - last[i]) / self.radius  # [n_edges, dim]
        edge = torch.cat([disp, torch.linalg.vector_norm(disp, dim=-1, keepdim=True)], dim=-1)
        return self._node_input(vel.flatten(1), particle_type, last), edge

    def _node_input(self, vel: torch.Tensor, types: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """``[normalised velocities, type embedding, wall features]`` [m, n_node_in] of nodes at ``pos``."""
        return torch.cat([vel, self.type_embedding(types), self.walls.features(pos)], dim=-1)

    def _static_node_input(self, points: torch.Tensor) -> torch.Tensor:
        """Node input [m, n_node_in] of static wall nodes at ``points`` [m, dim]: zero velocity
        (normalised) and the walls' type (one past the particle types)."""
        m = points.shape[0]
        vel = (-self.vel_mean / self.vel_std).to(points.dtype).repeat(self.window - 1)  # zero, normalised
        wall_type = torch.full((m,), self.n_particle_types, dtype=torch.long, device=points.device)
        return self._node_input(vel.expand(m, -1), wall_type, points)

    def forward(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        """Accelerations [n, dim] (length / frame^2).

        Args:
            graph: ``K.POS_HISTORY`` [n, C, dim] positions (oldest first), ``K.Z`` [n] long
                particle type, optional ``K.BATCH`` [n] sorted system index and
                ``K.EDGE_INDEX`` [2, n_edges] (built from the last positions if absent).
        """
        pos_history = graph[K.POS_HISTORY]
        if pos_history.dim() != 3 or pos_history.shape[1:] != (self.window, self.dim):
            raise ValueError(
                f"{K.POS_HISTORY} must be [n, {self.window}, {self.dim}], got {list(pos_history.shape)}"
            )
        last = pos_history[:, -1]
        edge_index = graph.get(K.EDGE_INDEX)
        if edge_index is None:
            edge_index = self.build_edges(last, graph.get(K.BATCH))
        node_in, edge_in = self.features(pos_history, graph[K.Z], edge_index)
        n, n_pair_edges = node_in.shape[0], edge_index.shape[1]
        node_in, edge_in, edge_index = self.walls.add_nodes(
            last, node_in, edge_in, edge_index, self._static_node_input
        )
        node, edge = self.node_encoder(node_in), self.edge_encoder(edge_in)
        for block in self.processor:
            node, edge = block(node, edge, edge_index)
        acceleration = self.decoder(node, edge_in, edge_index, n) * self.acc_std + self.acc_mean  # [n, dim]
        if self.damping is not None:
            wall_index = edge_index[:, n_pair_edges:]  # the wall edges, appended last
            wall_index = torch.stack([wall_index[0], wall_index[1] - n])
            acceleration = acceleration + self.damping(
                pos_history, acceleration, node, edge[n_pair_edges:], wall_index
            )
        return acceleration
