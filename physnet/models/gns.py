"""Graph Network-based Simulator (GNS): a learned particle simulator.

Sanchez-Gonzalez, Godwin, Pfaff, Ying, Leskovec & Battaglia, "Learning to Simulate
Complex Physics with Graph Networks", ICML 2020 (arXiv:2002.09405); the reference code is
DeepMind's ``learning_to_simulate`` (``learned_simulator.py``, ``graph_network.py``).

Units: positions in the data's length unit; time in *frames*: velocities are
``x_t - x_{t-1}`` (length per frame) and accelerations ``x_{t+1} - 2 x_t + x_{t-1}``
(length per frame^2), as in the paper (Sec. 3: "we use dt = 1").

- **Inputs** (Sec. 3, "Input and output representations"): the last ``C`` (paper: 6)
  positions ``[n, C, dim]`` give ``C - 1`` finite-difference velocities, normalised with
  the training-set statistics; a learned embedding of the particle type; the distances
  to the lower and upper domain walls divided by the connectivity radius ``R`` (or by
  ``wall_cutoff``, see the deviations below) and clipped to ``[-1, 1]`` (switchable:
  ``wall_features=False`` makes the model translation invariant). Edges join particles
  closer than ``R`` (``physnet.data.radius_graph`` on the most recent positions; 2D
  positions are padded with ``z = 0``, no periodicity); edge features are the
  displacement ``(x_j - x_i) / R`` and its norm.
- **Encode-process-decode** (Sec. 2, Fig. 2; Battaglia et al. 2018 GN blocks): node and
  edge encoder MLPs -> ``M`` (paper: 10) message-passing steps with *unshared*
  parameters, each ``e'_ij = e_ij + phi_e(e_ij, v_i, v_j)``,
  ``v'_i = v_i + phi_v(v_i, sum_j e'_ij)`` (residual) -> decoder MLP to the
  normalised acceleration. Every MLP has two hidden layers (paper: 128 wide, ReLU);
  all but the decoder end in LayerNorm (Sec. 4, "Training").
- **Update**: semi-implicit Euler with ``dt = 1`` (Sec. 3, eq. in "Update mechanism"):
  ``v_{t+1} = v_t + a_t``, ``x_{t+1} = x_t + v_{t+1}`` (:meth:`GNS.step`).
- **Normalisation**: mean and standard deviation of velocities and accelerations over
  the training set, each std combined with the training noise as
  ``sqrt(std^2 + noise_std^2)`` as in ``learning_to_simulate/train.py``
  (:meth:`GNS.fit_statistics`); they are buffers, so ``state_dict`` carries them.

Deviations: ``wall_cutoff`` may set the wall-distance scale apart from ``R`` (default:
``R``, as in the paper); the water data here move up to ~R per frame, and clipping at
``R`` would hide a wall from a particle until one frame before it hits it. Optionally
(``wall_lookahead``) the node also sees the wall distances of its constant-velocity next
position, negative for a particle about to cross a wall. Optionally (``boundary_particles``) static
wall particles on and outside the walls join the graph as sender-only nodes, the way the
paper's WATERRAMPS obstacles and LagrangeBench's walls are particles (see :class:`GNS`), or
(``wall_edges``) each wall is one sender node joined to every particle within reach at the
particle's nearest point on it, as FIGNet joins particles to mesh faces, with the distance
clamped onto the wall or (``signed_wall_distance``) negative behind it. Optionally
(``pairwise_decoder``) the acceleration is a sum of antisymmetric pair terms, which conserves
momentum (Prantl et al., NeurIPS 2022): a block out of reach of the walls falls with exactly
the known body acceleration (see :class:`GNS`). Optionally (``wall_damping``) each wall
edge also removes a learned fraction of the particle's outward speed, the form of the MPM
solver's own wall condition, optionally (``wall_damping_range``) only for particles that
arrive within the solver's reach of a wall (see :class:`GNS`). ``forward``
returns the acceleration in physical units (length / frame^2), i.e. the decoder output
times the std plus the mean; the training loss divides the error by the std again,
which is the paper's loss on normalised accelerations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from physnet.data import keys as K
from physnet.data.neighbors import radius_graph
from physnet.models.simulator import Simulator, register_simulator
from physnet.nn.mlp import mlp
from physnet.nn.scatter import scatter_sum

__all__ = [
    "GNS",
    "RolloutDiverged",
    "rollout",
    "random_walk_noise",
    "noisy_target_acceleration",
    "constant_velocity_rollout",
]


def _mlp(n_in: int, hidden: int, n_hidden: int, n_out: int, layer_norm: bool) -> torch.nn.Sequential:
    """``n_hidden`` ReLU hidden layers of width ``hidden``, a linear output, then LayerNorm if asked."""
    net = mlp([n_in, *([hidden] * n_hidden), n_out], act="relu")
    if layer_norm:
        net.append(torch.nn.LayerNorm(n_out))
    return net


class InteractionNetwork(torch.nn.Module):
    """One GN block with residual updates (paper Sec. 2 "Processor"; Battaglia et al. 2018, Alg. 1).

    Args:
        latent: width of node and edge latents.
        hidden: width of the hidden layers of both MLPs.
        n_hidden: hidden layers per MLP.
    """

    def __init__(self, latent: int, hidden: int, n_hidden: int) -> None:
        super().__init__()
        self.edge_mlp = _mlp(3 * latent, hidden, n_hidden, latent, layer_norm=True)
        self.node_mlp = _mlp(2 * latent, hidden, n_hidden, latent, layer_norm=True)

    def forward(
        self, node: torch.Tensor, edge: torch.Tensor, edge_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """node [n, latent], edge [n_edges, latent], edge_index [2, n_edges] (row 0 = receiver i).

        The edge MLP's first layer acts on ``[e_ij, v_i, v_j]``; it is evaluated as
        ``W_e e_ij + (W_r v)_i + (W_s v)_j + b``, projecting the nodes before gathering
        them (the same function and parameters as on the concatenation, with no
        ``[n_edges, 3 latent]`` tensor and a third of the edge-sized products).
        """
        i, j = edge_index[0], edge_index[1]
        first = self.edge_mlp[0]
        latent = edge.shape[-1]
        w = first.weight  # [hidden, 3 latent]: columns for e_ij, v_i (receiver), v_j (sender)
        projected = node @ torch.cat([w[:, latent : 2 * latent], w[:, 2 * latent :]]).t()  # [n, 2 hidden]
        hidden = w.shape[0]
        h = torch.addmm(first.bias, edge, w[:, :latent].t())  # [n_edges, hidden]
        h = h + projected[:, :hidden].index_select(0, i) + projected[:, hidden:].index_select(0, j)
        new_edge = self.edge_mlp[1:](h)  # [n_edges, latent]
        aggregated = scatter_sum(new_edge, i, node.shape[0])  # [n, latent], sum over senders j
        new_node = self.node_mlp(torch.cat([node, aggregated], dim=-1))  # [n, latent]
        return node + new_node, edge + new_edge


@register_simulator("gns")
class GNS(Simulator):
    """Graph Network-based Simulator (Sanchez-Gonzalez et al., ICML 2020).

    Args:
        dim: spatial dimension of the positions (2 or 3).
        bounds: ``[[lo, hi]] * dim`` domain walls (length unit); needed with ``wall_features``.
        radius: connectivity radius ``R`` (length unit). Paper's WATER: 0.015 in a box of side 0.8.
        window: number ``C`` of past positions in the input. Paper: 6.
        n_particle_types: particle types (materials, boundary particles ...). Paper: 9.
        type_embedding_size: size of the learned type embedding. Paper: 16.
        wall_features: add the clipped, normalised distances to the walls.
        wall_cutoff: length over which the walls are seen: distances are divided by it and
            clipped to ``[-1, 1]``. ``None`` (default) = ``radius``, the paper's choice; a
            larger value lets particles that move a sizeable fraction of ``R`` per frame see
            a wall before they reach it (a deviation from the paper).
        wall_lookahead: also give the clipped, normalised distances to the walls of the
            constant-velocity next position ``x_t + (x_t - x_{t-1})`` (a deviation from the
            paper, off by default). A particle that would cross a wall within the coming
            frame sees a negative distance, the depth it would end up beyond the wall,
            which is the acceleration the wall must supply; with the plain distance the
            model has to infer it from a normalised velocity and a clipped distance.
        boundary_particles: add static wall particles to the graph (off by default; the
            paper's WATER uses only the wall distances, its WATERRAMPS obstacles are static
            particles, and LagrangeBench's data sets all carry wall particles). Rows of
            points ``boundary_spacing`` apart on and outside the walls (:meth:`boundary_points`)
            are *senders only*: a particle within ``radius`` of one receives a message from it
            through the same edge features as from a fluid neighbour, so the wall acts on the
            fluid by the interaction the model must learn for the fluid itself. Their node
            input is zero velocity, their own type embedding and their wall distances; they
            receive no messages, so their latents depend only on where they sit, and they get
            no acceleration.
        boundary_spacing: distance between wall particles (length unit). ``None``: ``radius / 2``
            (about the fluid's particle spacing in the data here).
        boundary_radius: how far the wall particles reach (length unit): a particle receives
            a message from each wall particle closer than this. ``None``: ``radius``. Larger
            (a deviation from the paper) lets the walls act on a particle that will reach them
            within the coming frame from further than ``R`` (the 4 ms water frames move a
            particle up to 0.058 m = 3.9 R); with ``pairwise_decoder`` such a particle has no other way to
            be stopped.
        boundary_layers: rows of wall particles on each wall, the first on the wall, the
            others further out. ``None``: ``ceil(boundary_radius / boundary_spacing)``, so a particle
            at the wall sees wall particles over its whole radius.
        wall_edges: represent each wall by one sender node instead of wall particles (a
            deviation from the paper, off by default; exclusive with ``boundary_particles``):
            every particle within ``boundary_radius`` of a wall gets one edge from that
            wall's node whose displacement ``d = (p - x_i) / R`` points to ``p``, the
            particle's nearest point on the wall, which is how FIGNet joins particles to
            mesh faces (Allen, Lopez-Guevara, Stachenfeld et al., "Learning rigid dynamics
            with face interaction graph networks", ICLR 2023). A flat wall then acts the same
            all along its length (no bumps between wall particles), costs one edge per
            particle and wall within reach whatever the reach, so the reach can exceed the
            farthest move per frame, and is one-sided: for a particle behind the wall the
            distance is clamped to 0, so it feels what it would feel on the wall instead
            of an input no training frame had (see ``signed_wall_distance``). The wall nodes'
            input is zero velocity, the wall type's embedding and, with ``wall_features``,
            the wall distances of the wall's midpoint; they receive no messages.
        signed_wall_distance: with ``wall_edges``, do not clamp a particle behind a wall onto
            it: its wall edge's displacement points back to the wall (into the box) and the
            distance column holds the signed distance, negative behind the wall. Both then
            continue linearly through the wall, so a particle that crossed it gets an input
            that says how far, from which the model can push it back; clamped, every depth
            looks like standing on the wall. Off by default (the models trained before it
            clamp).
        latent_size: node and edge latent width. Paper: 128.
        hidden_size: hidden width of every MLP. Paper: 128.
        n_hidden_layers: hidden layers per MLP. Paper: 2.
        n_message_passing: message-passing steps ``M`` (unshared). Paper: 10.
        noise_std: std of the training noise on the last input position (length unit);
            only used here to widen the normalisation stds (:meth:`fit_statistics`). Paper: 6.7e-4.
        body_acceleration: a known uniform body acceleration [dim] in length / frame^2 (gravity:
            ``[0, -g dt^2]``, ``[0, -1.568e-4]`` m/frame^2 for the 4 ms water frames), or
            ``None`` (the paper: everything learnt). When given, the decoder's output is
            added to it instead of to the training data's mean acceleration, so that zero
            output is free fall and the network learns what the interactions (pressure,
            walls) add. In the water data the mean acceleration is ~0 (water at rest is
            held up by the floor) and the free-flight particles, whose acceleration is
            exactly ``g dt^2``, carry a quarter of a percent of the loss
            (``scripts/gns_loss_breakdown.py``): trained models predicted 0.1-0.3 of it.
            Measured with the per-node decoder, the network learnt to cancel the offset
            (0.43 g in free flight after 45 minutes); see the README's GNS section.
        pairwise_decoder: decode the acceleration as a sum of antisymmetric pair terms
            instead of per node (a deviation from the paper, off by default):
            ``a_i = body_acceleration + acc_std * sum_j f_ij`` with
            ``f_ij = phi(v_i, v_j, d_ij, |d_ij|) - phi(v_j, v_i, -d_ij, |d_ij|)``, ``v`` the
            processed node latents, ``d_ij = (x_j - x_i) / R`` and ``phi`` the decoder MLP.
            Then ``f_ji = -f_ij`` exactly (Newton's third law), so for equal particle masses
            the particles' accelerations sum to ``n * body_acceleration`` plus what the wall
            particles add: a block that touches no wall falls with exactly the body
            acceleration whatever the network has learnt, and only the walls can hold water
            up. This is the momentum-conserving construction of Prantl, Ummenhofer, Koltun &
            Thuerey, "Guaranteed conservation of momentum for learning particle-based fluid
            dynamics", NeurIPS 2022 (antisymmetric convolutions), on GNS's pair graph. Needs
            ``body_acceleration`` (zeros for no external field): it is the only uniform
            acceleration the model can produce.
        wall_damping: with ``wall_edges``, each wall within ``boundary_radius`` of a particle
            also removes a learned fraction of its outward normal velocity (a deviation from
            the paper; ``None``, the default, = off):
            ``a_i += -sum_w g_iw max(0, u_i . n_w) n_w``, ``n_w`` the wall's outward unit
            normal and ``g_iw = sigmoid(psi(v_i, e_iw))`` in (0, 1) from the processed latents
            of the particle and of its wall edge. ``"velocity"``: ``u_i = x_t - x_{t-1}``, the
            particle's velocity; ``"step"``: ``u_i = x_t - x_{t-1} + a'_i``, the velocity it
            would have after the decoder's acceleration ``a'_i``, which is where the MPM
            solver applies its own wall condition (the grid nodes next to a wall lose the
            outward part of their velocity after the forces; a particle gets the part of that
            loss its interpolation weights give it), so the wall can also hold a particle that
            the water above pushes into the floor. Either way the wall's reaction scales with
            the impact: stopping a particle that arrives at ``u`` m/frame takes an acceleration
            of about ``u``, more than 20 ``acc_std`` at the fastest impacts of the water data,
            which the decoder must otherwise produce in normalised units from a handful of
            examples; here it only has to learn a fraction between 0 and 1. The gate cannot
            push a particle back in or reverse its velocity; that is left to the decoder.
        wall_damping_range: with ``wall_damping``, confine it to particles that arrive near a
            wall (length; ``None`` = anywhere within ``boundary_radius``). The removed
            fraction is ``g_iw e_iw`` with ``e_iw = clip(1 - d'_iw / range, 0, 1)``, ``d'_iw``
            the distance of the arrival point ``x_t + u_i`` inside wall ``w`` (negative
            behind it): full weight for a particle that would land on or behind the wall,
            none for one that stays ``range`` or more inside. The MPM wall condition acts
            only on the grid nodes of the wall layer, which a particle's quadratic B-spline
            reaches from 1.5 grid cells away, so ``range = 1.5 dx`` is the solver's own
            reach; without the envelope a gate that is not exactly 0 brakes every particle
            moving towards a wall up to ``boundary_radius`` away, every step.
    """

    def __init__(
        self,
        dim: int = 2,
        bounds: Sequence[Sequence[float]] | None = None,
        radius: float = 0.015,
        window: int = 6,
        n_particle_types: int = 1,
        type_embedding_size: int = 16,
        wall_features: bool = True,
        wall_cutoff: float | None = None,
        wall_lookahead: bool = False,
        boundary_particles: bool = False,
        boundary_spacing: float | None = None,
        boundary_radius: float | None = None,
        boundary_layers: int | None = None,
        wall_edges: bool = False,
        signed_wall_distance: bool = False,
        latent_size: int = 128,
        hidden_size: int = 128,
        n_hidden_layers: int = 2,
        n_message_passing: int = 10,
        noise_std: float = 6.7e-4,
        body_acceleration: Sequence[float] | None = None,
        pairwise_decoder: bool = False,
        wall_damping: str | None = None,
        wall_damping_range: float | None = None,
    ) -> None:
        super().__init__()
        if dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {dim}")
        if radius <= 0 or window < 2 or n_particle_types < 1:
            raise ValueError("need radius > 0, window >= 2 and n_particle_types >= 1")
        if bounds is None:
            bounds = [[0.0, 1.0]] * dim
        bounds_t = torch.as_tensor(bounds, dtype=torch.get_default_dtype())
        if bounds_t.shape != (dim, 2) or not bool((bounds_t[:, 1] > bounds_t[:, 0]).all()):
            raise ValueError(f"bounds must be [[lo, hi]] * {dim} with hi > lo, got {bounds}")
        self.dim = dim
        self.radius = float(radius)
        self.window = window
        self.wall_features = wall_features
        if wall_lookahead and not wall_features:
            raise ValueError("wall_lookahead adds to the wall features: it needs wall_features=True")
        self.wall_lookahead = wall_lookahead
        self.wall_cutoff = float(radius if wall_cutoff is None else wall_cutoff)
        if self.wall_cutoff <= 0:
            raise ValueError(f"wall_cutoff must be > 0, got {wall_cutoff}")
        self.noise_std = float(noise_std)
        self.register_buffer("bounds", bounds_t)  # [dim, 2]
        # statistics: identity until fit_statistics (per component, length/frame and length/frame^2)
        self.register_buffer("vel_mean", torch.zeros(dim))
        self.register_buffer("vel_std", torch.ones(dim))
        self.register_buffer("acc_mean", torch.zeros(dim))
        self.body_acceleration = (
            None if body_acceleration is None else tuple(float(a) for a in body_acceleration)
        )
        if self.body_acceleration is not None:
            if len(self.body_acceleration) != dim or not all(map(math.isfinite, self.body_acceleration)):
                raise ValueError(
                    f"body_acceleration must be {dim} finite numbers (length / frame^2, e.g. "
                    f"[0, -g dt^2]), got {body_acceleration}"
                )
            self.acc_mean.copy_(torch.tensor(self.body_acceleration))
        if pairwise_decoder and self.body_acceleration is None:
            raise ValueError(
                "pairwise_decoder conserves momentum, so the body acceleration is the only uniform "
                "acceleration it can produce: give body_acceleration ([0, -g dt^2] in length / frame^2 "
                "for gravity, zeros for no external field)"
            )
        self.pairwise_decoder = pairwise_decoder
        self.register_buffer("acc_std", torch.ones(dim))
        self.n_particle_types = n_particle_types
        self.boundary_particles = boundary_particles
        if wall_edges and boundary_particles:
            raise ValueError(
                "wall_edges and boundary_particles are two representations of the same walls: choose one"
            )
        self.wall_edges = wall_edges
        if signed_wall_distance and not wall_edges:
            raise ValueError("signed_wall_distance is a property of the wall edges: it needs wall_edges=True")
        self.signed_wall_distance = signed_wall_distance
        spacing = radius / 2 if boundary_spacing is None else float(boundary_spacing)
        self.boundary_radius = float(radius if boundary_radius is None else boundary_radius)
        if self.boundary_radius <= 0:
            raise ValueError(f"boundary_radius must be > 0, got {boundary_radius}")
        if boundary_particles:
            if spacing <= 0:
                raise ValueError(f"boundary_spacing must be > 0, got {boundary_spacing}")
            layers = (
                math.ceil(self.boundary_radius / spacing) if boundary_layers is None else int(boundary_layers)
            )
            if layers < 1:
                raise ValueError(f"boundary_layers must be >= 1, got {boundary_layers}")
            points = self.boundary_points(bounds_t, spacing, layers)
        else:
            points = torch.zeros(0, dim, dtype=bounds_t.dtype)
        self.register_buffer("boundary_pos", points)  # [n_boundary, dim], fixed wall particles
        # Wall particles receive no messages, so two with the same node input have the same latent
        # in every layer: the graph carries one sender node per distinct input (its wall distances),
        # ``boundary_class`` [n_boundary] maps each wall particle to it, and ``boundary_class_pos``
        # [n_class, dim] holds one wall particle of each class (tens of nodes instead of hundreds).
        if wall_features and boundary_particles:
            _, first, inverse = self._unique_rows(self._wall_distances_in(points, bounds_t, self.wall_cutoff))
        else:
            first = torch.zeros(min(1, points.shape[0]), dtype=torch.long)
            inverse = torch.zeros(points.shape[0], dtype=torch.long)
        self.register_buffer("boundary_class", inverse)
        self.register_buffer("boundary_class_pos", points[first])
        # one extra embedding row, the walls' type, when wall particles or wall nodes are on
        self.type_embedding = torch.nn.Embedding(
            n_particle_types + int(boundary_particles or wall_edges), type_embedding_size
        )
        n_walls = (2 * dim if wall_features else 0) * (2 if wall_lookahead else 1)
        n_node_in = (window - 1) * dim + type_embedding_size + n_walls
        self.node_encoder = _mlp(n_node_in, hidden_size, n_hidden_layers, latent_size, layer_norm=True)
        self.edge_encoder = _mlp(dim + 1, hidden_size, n_hidden_layers, latent_size, layer_norm=True)
        self.processor = torch.nn.ModuleList(
            InteractionNetwork(latent_size, hidden_size, n_hidden_layers) for _ in range(n_message_passing)
        )
        n_decoder_in = 2 * latent_size + dim + 1 if pairwise_decoder else latent_size
        self.decoder = _mlp(n_decoder_in, hidden_size, n_hidden_layers, dim, layer_norm=False)
        if wall_damping is True:  # the first form, before "step" existed
            wall_damping = "velocity"
        if wall_damping not in (None, False, "velocity", "step"):
            raise ValueError(f'wall_damping must be null, "velocity" or "step", got {wall_damping!r}')
        if wall_damping and not wall_edges:
            raise ValueError("wall_damping acts through the wall edges: it needs wall_edges=True")
        self.wall_damping = wall_damping or None
        if wall_damping_range is not None:
            if not self.wall_damping:
                raise ValueError("wall_damping_range confines wall_damping: set wall_damping as well")
            if not (math.isfinite(wall_damping_range) and wall_damping_range > 0):
                raise ValueError(f"wall_damping_range must be a length > 0, got {wall_damping_range}")
        self.wall_damping_range = None if wall_damping_range is None else float(wall_damping_range)
        if self.wall_damping:
            self.wall_gate = _mlp(2 * latent_size, hidden_size, n_hidden_layers, 1, layer_norm=False)
            with torch.no_grad():  # start near g = 0.12: the walls damp little until trained
                self.wall_gate[-1].bias.fill_(-2.0)

    # ------------------------------------------------------------------ statistics
    @torch.no_grad()
    def fit_statistics(self, trajectories: Sequence[torch.Tensor | np.ndarray]) -> None:
        """Velocity and acceleration mean / std (per component) from training trajectories.

        Args:
            trajectories: each [n_frames, n_particles, dim] positions.

        The stds are combined with ``noise_std`` as ``sqrt(std^2 + noise_std^2)``, as in
        ``learning_to_simulate/train.py`` (``_combine_std``). With ``body_acceleration`` the
        acceleration offset stays the body acceleration instead of the data's mean.
        """
        vel, acc = [], []
        for traj in trajectories:
            x = torch.as_tensor(np.asarray(traj), dtype=torch.float64)  # [T, n, dim]
            v = x[1:] - x[:-1]  # [T-1, n, dim]
            vel.append(v.reshape(-1, self.dim))
            acc.append((v[1:] - v[:-1]).reshape(-1, self.dim))
        v_all, a_all = torch.cat(vel), torch.cat(acc)
        noise = self.noise_std**2
        for name, value in (
            ("vel_mean", v_all.mean(0)),
            ("vel_std", (v_all.var(0) + noise).sqrt()),
            ("acc_mean", a_all.mean(0) if self.body_acceleration is None else self.acc_mean),
            ("acc_std", (a_all.var(0) + noise).sqrt()),
        ):
            buf = getattr(self, name)
            buf.copy_(value.to(buf.dtype))

    # ------------------------------------------------------------------ graph and features
    @staticmethod
    def boundary_points(bounds: torch.Tensor, spacing: float, layers: int) -> torch.Tensor:
        """Wall particles [n_boundary, dim]: a lattice of ``layers`` rows on and outside the walls.

        Along each axis the ticks divide ``[lo, hi]`` evenly at a spacing of at most
        ``spacing`` (so the walls themselves carry particles) and continue ``layers - 1``
        ticks beyond each end; the points of the tick lattice that lie on or outside a wall
        are kept, corners included.

        Args:
            bounds: [dim, 2] domain ``[[lo, hi]] * dim``.
            spacing: largest distance between neighbouring wall particles (length unit).
            layers: rows per wall (>= 1).
        """
        ticks = []
        for lo, hi in bounds.tolist():
            m = max(1, math.ceil((hi - lo) / spacing - 1e-9))
            step = (hi - lo) / m
            k = torch.arange(-(layers - 1), m + layers, dtype=torch.float64)
            ticks.append(lo + step * k)
        grid = torch.stack(torch.meshgrid(*ticks, indexing="ij"), dim=-1).reshape(-1, len(ticks))
        lo, hi = bounds[:, 0].double(), bounds[:, 1].double()
        tol = 1e-9 * float((hi - lo).max())
        outside = ((grid <= lo + tol) | (grid >= hi - tol)).any(dim=-1)
        return grid[outside].to(bounds.dtype)

    def boundary_edges(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Edges from wall particles to the particles within ``boundary_radius`` of them.

        Args:
            pos: [n, dim] most recent particle positions (any number of systems: the walls
                are the same for all).

        Returns:
            ``(receiver, wall)``: [n_edges] particle indices and [n_edges] indices into
            ``boundary_pos``, sorted by receiver.
        """
        if not self.boundary_particles or pos.shape[0] == 0:
            empty = torch.zeros(0, dtype=torch.long, device=pos.device)
            return empty, empty
        walls = self.boundary_pos.to(pos.dtype)
        dist = torch.minimum(pos - self.bounds[:, 0].to(pos.dtype), self.bounds[:, 1].to(pos.dtype) - pos)
        near = torch.nonzero(dist.min(dim=-1).values < self.boundary_radius).squeeze(
            -1
        )  # only these can reach a wall particle
        within = torch.cdist(pos[near], walls) < self.boundary_radius  # [n_near, n_boundary]
        row, wall = torch.nonzero(within, as_tuple=True)
        return near[row], wall

    def build_edges(self, pos: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        """``edge_index`` [2, n_edges] of pairs closer than ``radius`` (row 0 = receiver i).

        Args:
            pos: [n, dim] most recent positions; 2D ones are padded with z = 0.
            batch: [n] sorted system index, or None for one system.
        """
        pad = torch.zeros(pos.shape[0], 3 - self.dim, dtype=pos.dtype, device=pos.device)
        edge_index, _shift = radius_graph(torch.cat([pos, pad], dim=-1), self.radius, batch)
        return edge_index

    def features(
        self, pos_history: torch.Tensor, particle_type: torch.Tensor, edge_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Node features [n, n_node_in] and edge features [n_edges, dim + 1] (paper Sec. 3)."""
        last = pos_history[:, -1]  # [n, dim]
        vel = pos_history[:, 1:] - pos_history[:, :-1]  # [n, C-1, dim]
        vel = (vel - self.vel_mean) / self.vel_std
        parts = [vel.flatten(1), self.type_embedding(particle_type)]
        if self.wall_features:
            parts.append(self._wall_distances(last))
            if self.wall_lookahead:
                parts.append(self._wall_distances(2 * last - pos_history[:, -2]))
        i, j = edge_index[0], edge_index[1]
        disp = (last[j] - last[i]) / self.radius  # [n_edges, dim]
        edge = torch.cat([disp, torch.linalg.vector_norm(disp, dim=-1, keepdim=True)], dim=-1)
        return torch.cat(parts, dim=-1), edge

    def _wall_distances(self, pos: torch.Tensor) -> torch.Tensor:
        """[n, 2 dim] clipped distances of ``pos`` [n, dim] to the lower, then upper walls."""
        return self._wall_distances_in(pos, self.bounds, self.wall_cutoff)

    @staticmethod
    def _wall_distances_in(pos: torch.Tensor, bounds: torch.Tensor, cutoff: float) -> torch.Tensor:
        lower = (pos - bounds[:, 0]) / cutoff  # [n, dim]
        upper = (bounds[:, 1] - pos) / cutoff  # [n, dim]
        return torch.cat([lower, upper], dim=-1).clamp(-1.0, 1.0)

    @staticmethod
    def _unique_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Distinct rows of [n, k] (to 1e-9): (unique [m, k], first index of each [m], inverse [n])."""
        key = torch.round(rows.double() * 1e9)
        unique, inverse = torch.unique(key, dim=0, return_inverse=True)
        first = torch.full((unique.shape[0],), rows.shape[0], dtype=torch.long)
        first = first.scatter_reduce(0, inverse, torch.arange(rows.shape[0]), reduce="amin")
        return rows[first], first, inverse

    # ------------------------------------------------------------------ forward
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
        edge_index = graph.get(K.EDGE_INDEX)
        if edge_index is None:
            edge_index = self.build_edges(pos_history[:, -1], graph.get(K.BATCH))
        node_in, edge_in = self.features(pos_history, graph[K.Z], edge_index)
        n, n_pair_edges = node_in.shape[0], edge_index.shape[1]
        if self.boundary_particles:
            node_in, edge_in, edge_index = self._add_boundary(
                pos_history[:, -1], node_in, edge_in, edge_index
            )
        elif self.wall_edges:
            node_in, edge_in, edge_index = self._add_wall_nodes(
                pos_history[:, -1], node_in, edge_in, edge_index
            )
        node, edge = self.node_encoder(node_in), self.edge_encoder(edge_in)
        for block in self.processor:
            node, edge = block(node, edge, edge_index)
        if self.pairwise_decoder:
            out = self._pair_sum(node, edge_in, edge_index)[:n]
        else:
            out = self.decoder(node[:n])
        acceleration = out * self.acc_std + self.acc_mean  # [n, dim]
        if self.wall_damping:
            wall_index = edge_index[:, n_pair_edges:]  # the wall edges, appended last
            wall_index = torch.stack([wall_index[0], wall_index[1] - n])
            acceleration = acceleration + self._wall_damping(
                pos_history, acceleration, node, edge[n_pair_edges:], wall_index
            )
        return acceleration

    def _wall_damping(
        self,
        pos_history: torch.Tensor,
        acceleration: torch.Tensor,
        node: torch.Tensor,
        wall_edge: torch.Tensor,
        wall_index: torch.Tensor,
    ) -> torch.Tensor:
        """The walls' removal of outward speed [n, dim] (length / frame^2; ``wall_damping``).

        Args:
            pos_history: [n, C, dim] input positions.
            acceleration: [n, dim] the decoder's acceleration (used by ``"step"``).
            node: [n_nodes, latent] processed node latents (particles first).
            wall_edge: [n_wall_edges, latent] processed latents of the wall edges.
            wall_index: [2, n_wall_edges] particle index and wall index (``0 .. dim-1`` the
                lower walls, then the upper ones) of each wall edge.
        """
        receiver, wall = wall_index[0], wall_index[1]
        dim = self.dim
        axis = wall % dim
        outward = torch.where(wall < dim, -1.0, 1.0).to(pos_history.dtype)  # normal's sign along its axis
        velocity = pos_history[:, -1] - pos_history[:, -2]  # [n, dim] length / frame
        if self.wall_damping == "step":
            velocity = velocity + acceleration  # after the forces, as in the MPM grid update
        speed_out = (outward * velocity[receiver, axis]).clamp_min(0.0)  # [n_wall_edges]
        gate = torch.sigmoid(self.wall_gate(torch.cat([node[receiver], wall_edge], dim=-1))).squeeze(-1)
        if self.wall_damping_range is not None:
            bounds = self.bounds.to(velocity.dtype)
            arrival = pos_history[receiver, -1, axis] + velocity[receiver, axis]  # [n_wall_edges]
            wall_at = bounds[axis, (wall >= dim).long()]  # the wall's coordinate on its axis
            depth_inside = -outward * (arrival - wall_at)  # d' > 0 inside the box, < 0 behind the wall
            gate = gate * (1.0 - depth_inside / self.wall_damping_range).clamp(0.0, 1.0)
        removed = torch.zeros_like(velocity)
        removed.index_put_((receiver, axis), -(gate * speed_out * outward), accumulate=True)
        return removed

    def _pair_sum(self, node: torch.Tensor, edge_in: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """``sum_j f_ij`` [n_nodes, dim] of the antisymmetric pair terms (``pairwise_decoder``).

        ``f_ij = phi([v_i, v_j, d_ij, |d_ij|]) - phi([v_j, v_i, -d_ij, |d_ij|])``; the first
        layer of ``phi`` is applied to the nodes before gathering them (as in
        :class:`InteractionNetwork`), the displacement columns once per edge with both signs.
        """
        i, j = edge_index[0], edge_index[1]
        first, rest = self.decoder[0], self.decoder[1:]
        latent, dim = node.shape[-1], self.dim
        w = first.weight  # [hidden, 2 latent + dim + 1]: columns for v_i, v_j, d_ij, |d_ij|
        hidden = w.shape[0]
        projected = node @ torch.cat([w[:, :latent], w[:, latent : 2 * latent]]).t()  # [n, 2 hidden]
        receiver, sender = projected[:, :hidden], projected[:, hidden:]
        odd = edge_in[:, :dim] @ w[:, 2 * latent : 2 * latent + dim].t()  # [n_edges, hidden], flips with d
        even = torch.addmm(first.bias, edge_in[:, dim:], w[:, 2 * latent + dim :].t())
        ri, rj, si, sj = receiver[i], receiver[j], sender[i], sender[j]
        f = rest(ri + sj + odd + even) - rest(rj + si - odd + even)  # [n_edges, dim]
        return scatter_sum(f, i, node.shape[0])

    def _static_node_input(self, points: torch.Tensor) -> torch.Tensor:
        """Node input [m, n_node_in] of static wall nodes at ``points`` [m, dim]: zero velocity
        (normalised), the walls' type embedding and, with ``wall_features``, their wall distances."""
        m = points.shape[0]
        vel = (-self.vel_mean / self.vel_std).to(points.dtype).repeat(self.window - 1)  # zero, normalised
        wall_type = torch.full((m,), self.n_particle_types, dtype=torch.long, device=points.device)
        parts = [vel.expand(m, -1), self.type_embedding(wall_type)]
        if self.wall_features:
            parts.append(self._wall_distances(points))
            if self.wall_lookahead:
                parts.append(self._wall_distances(points))
        return torch.cat(parts, dim=-1)

    def _add_boundary(
        self, last: torch.Tensor, node_in: torch.Tensor, edge_in: torch.Tensor, edge_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Append the wall particles as sender-only nodes, with their edges to the particles.

        One node per class of wall particles with the same input (``boundary_class``) is
        appended (nodes ``n ..``): zero velocity, the wall type's embedding and the wall
        distances. Each edge keeps the displacement of its own wall particle.
        """
        receiver, wall = self.boundary_edges(last)
        n = node_in.shape[0]
        walls = self.boundary_class_pos.to(last.dtype)  # [n_class, dim] one wall particle per distinct input
        disp = (self.boundary_pos[wall].to(last.dtype) - last[receiver]) / self.radius  # [n_edges, dim]
        edge_b = torch.cat([disp, torch.linalg.vector_norm(disp, dim=-1, keepdim=True)], dim=-1)
        index_b = torch.stack([receiver, self.boundary_class[wall] + n])
        return (
            torch.cat([node_in, self._static_node_input(walls)]),
            torch.cat([edge_in, edge_b]),
            torch.cat([edge_index, index_b], dim=1),
        )

    def wall_node_edges(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Edges from the wall nodes to the particles within ``boundary_radius`` (``wall_edges``).

        Args:
            pos: [n, dim] most recent particle positions.

        Returns:
            ``(receiver, wall, disp, distance)``: [n_edges] particle indices, [n_edges] wall
            indices (``0 .. dim-1`` the lower walls along each axis, ``dim .. 2 dim - 1`` the
            upper ones), [n_edges, dim] displacements from the particle to its nearest point
            on the wall and [n_edges] distances to the wall, both in units of ``radius``.
            Behind a wall the distance is clamped to 0 (the particle is put on the wall), or
            with ``signed_wall_distance`` it is negative and the displacement points back
            into the box.
        """
        dim = self.dim
        bounds = self.bounds.to(pos.dtype)
        inside = torch.cat([pos - bounds[:, 0], bounds[:, 1] - pos], dim=-1)  # [n, 2 dim], > 0 inside
        receiver, wall = torch.nonzero(inside < self.boundary_radius, as_tuple=True)
        distance = inside[receiver, wall] / self.radius  # [n_edges], signed
        if not self.signed_wall_distance:
            distance = distance.clamp_min(0.0)
        outward = torch.where(wall < dim, -1.0, 1.0).to(pos.dtype)  # the lower wall lies below
        disp = torch.nn.functional.one_hot(wall % dim, dim).to(pos.dtype) * (outward * distance)[:, None]
        return receiver, wall, disp, distance

    def _add_wall_nodes(
        self, last: torch.Tensor, node_in: torch.Tensor, edge_in: torch.Tensor, edge_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Append one sender node per wall (nodes ``n .. n + 2 dim - 1``) and its edges."""
        receiver, wall, disp, distance = self.wall_node_edges(last)
        n, dim = node_in.shape[0], self.dim
        bounds = self.bounds.to(last.dtype)
        mid = bounds.mean(-1).expand(2 * dim, dim).clone()  # [2 dim, dim] each wall's midpoint
        mid[torch.arange(2 * dim), torch.arange(2 * dim) % dim] = bounds.t().reshape(-1)
        edge_w = torch.cat([disp, distance[:, None]], dim=-1)  # distance = |disp| unless signed behind
        return (
            torch.cat([node_in, self._static_node_input(mid)]),
            torch.cat([edge_in, edge_w]),
            torch.cat([edge_index, torch.stack([receiver, wall + n])], dim=1),
        )

    def step(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        """Next positions [n, dim] by semi-implicit Euler with dt = 1 frame (paper Sec. 3)."""
        return euler_step(graph[K.POS_HISTORY], self(graph))


def euler_step(pos_history: torch.Tensor, acceleration: torch.Tensor) -> torch.Tensor:
    """``x_{t+1} = x_t + (x_t - x_{t-1}) + a_t``, semi-implicit Euler with dt = 1 frame.

    Args:
        pos_history: [n, C, dim] positions, oldest first.
        acceleration: [n, dim] length / frame^2.

    Returns:
        [n, dim] next positions.
    """
    last = pos_history[:, -1]
    return last + (last - pos_history[:, -2]) + acceleration


class RolloutDiverged(RuntimeError):
    """A rollout stopped because its particles clumped or flew away (see :func:`rollout`).

    Attributes:
        step: index of the frame (0-based, counted from the first predicted one) that would
            have been predicted next; frames ``0 .. step - 1`` were predicted.
        positions: [step, n, dim] the frames predicted before the stop; the last of them
            is the one that broke the limit.
        mean_neighbours: neighbours per particle in the last frame's graph (``nan`` when the
            rollout stopped because a particle flew away, before the graph was built).
        excursion: how far the furthest particle of the last frame is outside the domain
            (length unit; ``inf`` for a non-finite position).
    """

    def __init__(
        self,
        step: int,
        positions: torch.Tensor,
        reason: str,
        mean_neighbours: float = math.nan,
        excursion: float = 0.0,
    ) -> None:
        super().__init__(f"rollout stopped before predicting frame {step}: {reason}")
        self.step = step
        self.positions = positions
        self.mean_neighbours = mean_neighbours
        self.excursion = excursion


@torch.no_grad()
def rollout(
    model: GNS,
    initial_window: torch.Tensor,
    n_steps: int,
    particle_type: torch.Tensor | None = None,
    batch: torch.Tensor | None = None,
    clamp_to_bounds: bool = False,
    max_mean_neighbours: float | None = None,
    max_excursion: float | None = None,
) -> torch.Tensor:
    """Roll the simulator out for ``n_steps`` frames, rebuilding the graph every step.

    Args:
        model: a trained :class:`GNS`.
        initial_window: [n, C, dim] the first ``C`` ground-truth positions.
        n_steps: frames to predict.
        particle_type: [n] long (default: all type 0).
        batch: [n] sorted system index to roll several systems at once.
        clamp_to_bounds: project every predicted position into ``model.bounds`` (off by
            default). This imposes the walls instead of learning them: it is the boundary
            condition of the MPM solver that made the data (positions clamped to the box
            after each substep), applied once per frame, like the kinematic boundary nodes
            of MeshGraphNets (Pfaff et al., ICLR 2021). With it, "no particle leaves the
            box" holds by construction and says nothing about the learned model.
        max_mean_neighbours: stop with :class:`RolloutDiverged` when a step's radius graph
            has more edges per particle than this (``None``: no limit). A diverged model
            can pile particles together; the graph then approaches all ``n^2`` pairs and a
            300-step rollout of 500 particles was seen to take tens of minutes instead of
            seconds. :func:`physnet.train.gns.rollout_errors` sets it from the data.
        max_excursion: stop with :class:`RolloutDiverged` once a particle is further than
            this outside ``model.bounds`` (length unit), or not finite (``None``: only the
            latter). A model that pushes particles further out the further out they are
            runs them away exponentially; their coordinates soon span so many connectivity
            radii that the neighbour list refuses them (:func:`physnet.data.neighbors.radius_graph`).
            :func:`physnet.train.gns.rollout_errors` sets it to 10 box lengths.

    Returns:
        [n_steps, n, dim] predicted positions of frames ``C .. C + n_steps - 1``.

    Raises:
        RolloutDiverged: a limit was exceeded; it carries the frames predicted so far.
    """
    window = initial_window
    n = window.shape[0]
    lo, hi = model.bounds[:, 0].to(window.dtype), model.bounds[:, 1].to(window.dtype)  # [dim]
    if particle_type is None:
        particle_type = torch.zeros(n, dtype=torch.long, device=window.device)
    out: list[torch.Tensor] = []
    limit = math.inf if max_excursion is None else float(max_excursion)
    for step in range(n_steps):
        last = window[:, -1]
        outside = torch.maximum(lo - last, last - hi).amax().nan_to_num(nan=math.inf)  # length unit
        if not math.isfinite(float(outside)) or float(outside) > limit:
            done = torch.stack(out) if out else initial_window.new_zeros(0, n, initial_window.shape[-1])
            raise RolloutDiverged(
                step,
                done,
                f"a particle is {float(outside):.3g} outside the domain, beyond the limit of {limit:.3g} "
                "(length unit). The model pushes particles that crossed a wall further out; train it "
                "longer, with more noise or pushforward, or raise max_excursion to let it go on.",
                excursion=float(outside),
            )
        edge_index = model.build_edges(last, batch)
        if max_mean_neighbours is not None and edge_index.shape[1] > max_mean_neighbours * n:
            done = torch.stack(out) if out else initial_window.new_zeros(0, n, initial_window.shape[-1])
            mean = edge_index.shape[1] / n
            raise RolloutDiverged(
                step,
                done,
                f"{mean:.1f} neighbours per particle within the connectivity radius, above the limit of "
                f"{max_mean_neighbours:.1f}. The predicted particles have clumped (a model this far outside "
                "its training data has diverged, and the radius graph grows towards all pairs, each step "
                "slower than the last). Train longer or with more noise, or raise max_mean_neighbours to "
                "let the rollout go on.",
                mean_neighbours=mean,
                excursion=float(outside),
            )
        graph = {K.POS_HISTORY: window, K.Z: particle_type, K.EDGE_INDEX: edge_index}
        if batch is not None:
            graph[K.BATCH] = batch
        nxt = model.step(graph)  # [n, dim]
        if clamp_to_bounds:
            nxt = torch.maximum(torch.minimum(nxt, hi), lo)
        out.append(nxt)
        window = torch.cat([window[:, 1:], nxt.unsqueeze(1)], dim=1)
    return torch.stack(out) if out else initial_window.new_zeros(0, *initial_window.shape[::2])


def constant_velocity_rollout(initial_window: torch.Tensor, n_steps: int) -> torch.Tensor:
    """Baseline: ``x_{t+k} = x_t + k v_t`` from the last velocity; [n_steps, n, dim]."""
    last = initial_window[:, -1]
    vel = last - initial_window[:, -2]
    k = torch.arange(1, n_steps + 1, dtype=last.dtype, device=last.device).view(-1, 1, 1)
    return last + k * vel


def random_walk_noise(
    pos_history: torch.Tensor, noise_std: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random-walk noise [n, C, dim] for the input positions (paper Sec. 4, "Training noise").

    Each of the ``C - 1`` velocities gets independent Gaussian noise of std
    ``noise_std / sqrt(C - 1)``; its running sum is the position noise (zero on the oldest
    position), so the noise on the most recent position has std ``noise_std``
    (``learning_to_simulate/noise_utils.py``).
    """
    n, c, dim = pos_history.shape
    # drawn where the generator lives (without one: on the data's device, no host round trip)
    device = pos_history.device if generator is None else generator.device
    vel_noise = torch.randn(n, c - 1, dim, generator=generator, dtype=pos_history.dtype, device=device)
    vel_noise = (vel_noise * (noise_std / math.sqrt(c - 1))).to(pos_history.device)
    return torch.cat([torch.zeros_like(vel_noise[:, :1]), vel_noise.cumsum(dim=1)], dim=1)


def noisy_target_acceleration(
    pos_history: torch.Tensor, next_pos: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """Target acceleration [n, dim] for noisy inputs ``pos_history + noise``.

    The target next position is shifted by the noise of the last input position
    (``next_position_adjusted = next_position + position_noise[:, -1]`` in
    ``learning_to_simulate/train.py``), so that the Euler step from the noisy window with
    this acceleration reproduces the true next *velocity* ``x_{t+1} - x_t``: the model
    learns to undo the velocity noise and keeps the position noise. Equals
    ``a_t - (n_t - n_{t-1})``.
    """
    noisy = pos_history + noise
    adjusted_next = next_pos + noise[:, -1]
    return adjusted_next - 2 * noisy[:, -1] + noisy[:, -2]
