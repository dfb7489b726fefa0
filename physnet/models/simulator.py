"""Learned simulators and their own name -> builder registry.

A simulator is not an energy model: it maps a window of past positions to
accelerations and has no :class:`physnet.Potential`, forces or ASE calculator. It
therefore joins a table of its own, :data:`SIMULATORS`, separate from the energy models'
(whose builders take ``species`` and return an :class:`EnergyModel`), built by the same
:class:`physnet.models.registry.Registry`:

>>> import physnet
>>> "gns" in physnet.models.available_simulators()
True
>>> sim = physnet.models.build_simulator("gns", dim=2, latent_size=16, hidden_size=16, n_message_passing=2)
>>> sim.hparams["n_message_passing"]
2
>>> "gns" in physnet.models.available()  # not among the energy models
False
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from physnet.data import keys as K
from physnet.data.neighbors import radius_graph
from physnet.models import builtin
from physnet.models.registry import Registry, SavedModel
from physnet.sim.box import wall_distances
from physnet.sim.frames import euler_step

__all__ = [
    "Simulator",
    "SIMULATORS",
    "register_simulator",
    "build_simulator",
    "available_simulators",
    "load_simulator",
    "RolloutDiverged",
    "check_particle_type",
    "rollout",
]


class Simulator(SavedModel):
    """Base of learned particle simulators, time in frames (:mod:`physnet.sim.frames`).

    ``forward(graph) -> acceleration [n_particles, dim]`` (length / frame^2) from the graph's
    window ``K.POS_HISTORY`` [n, C, dim] of past positions, particle types ``K.Z`` and
    ``K.EDGE_INDEX``; data statistics live in buffers (saved with ``state_dict``); ``forward``
    stores nothing on the module. :func:`rollout` drives any simulator through this contract.

    Attributes:
        hparams: the name and keyword arguments that rebuild the model with :func:`build_simulator`.
        dim, window, radius, n_particle_types: spatial dimension, ``C``, connectivity radius
            (length unit) and number of particle types.
        bounds: [dim, 2] buffer, the box walls (length unit).
    """

    dim: int
    window: int
    radius: float
    n_particle_types: int
    bounds: torch.Tensor

    def build_edges(self, pos: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        """``edge_index`` [2, n_edges] of pairs closer than ``radius`` (row 0 = receiver i).

        Args:
            pos: [n, dim] most recent positions; 2D ones are padded with z = 0.
            batch: [n] sorted system index, or None for one system.
        """
        pad = torch.zeros(pos.shape[0], 3 - self.dim, dtype=pos.dtype, device=pos.device)
        edge_index, _shift = radius_graph(torch.cat([pos, pad], dim=-1), self.radius, batch)
        return edge_index

    def step(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        """Next positions [n, dim] by semi-implicit Euler with dt = 1 frame (:func:`euler_step`)."""
        return euler_step(graph[K.POS_HISTORY], self(graph))


SIMULATORS = Registry("simulator", builtin.SIMULATORS)
S = TypeVar("S", bound=Callable[..., Any])


def register_simulator(name: str) -> Callable[[S], S]:
    """Class decorator adding a simulator builder under ``name``."""
    return SIMULATORS.register(name)


def available_simulators() -> list[str]:
    """Names of the registered simulators (built-in ones included, imported or not), sorted."""
    return SIMULATORS.available()


def build_simulator(name: str, **hparams: Any) -> Simulator:
    """Build a registered simulator; unknown keyword arguments are an error.

    Returns:
        the model, with ``model.hparams`` holding ``name`` and every keyword argument
        (defaults filled in) so that a checkpoint can rebuild it.
    """
    return SIMULATORS.build(name, **hparams)


def load_simulator(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Simulator:
    """Rebuild a simulator written by :meth:`Simulator.save` (weights and statistics buffers)."""
    return SIMULATORS.load(path, map_location)


class RolloutDiverged(RuntimeError):
    """A rollout stopped because its particles clumped or flew away (see :func:`rollout`).

    Attributes:
        step: index of the frame (0-based, counted from the first predicted one) that would
            have been predicted next; frames ``0 .. step - 1`` were predicted.
        positions: [step, n, dim] the frames predicted before the stop.
        mean_neighbours: neighbours per particle in the last frame's graph (``nan`` when the
            rollout stopped because a particle flew away, before the graph was built).
        excursion: how far the furthest particle of the last frame is outside the box
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


def check_particle_type(model: Simulator, particle_type: torch.Tensor, n: int) -> None:
    """Raise a one-line ``ValueError`` unless ``particle_type`` is [n] with types the model knows."""
    if particle_type.shape != (n,):
        raise ValueError(
            f"particle_type has shape {list(particle_type.shape)} but the window holds {n} particles: "
            "give one type per particle"
        )
    if n and not (0 <= int(particle_type.min()) and int(particle_type.max()) < model.n_particle_types):
        raise ValueError(
            f"particle types {int(particle_type.min())}..{int(particle_type.max())} but the model knows "
            f"0..{model.n_particle_types - 1}: use data of the materials it was trained on"
        )


@torch.no_grad()
def rollout(
    model: Simulator,
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
        model: a trained simulator.
        initial_window: [n, C, dim] the first ``C`` ground-truth positions.
        n_steps: frames to predict.
        particle_type: [n] long (default: all type 0).
        batch: [n] sorted system index to roll several systems at once.
        clamp_to_bounds: project every predicted position into ``model.bounds`` (off by
            default): the MPM solver's own wall condition, once per frame, like the kinematic
            boundary nodes of MeshGraphNets (Pfaff et al., ICLR 2021). It imposes the walls
            instead of learning them, so "no particle leaves the box" then holds by construction.
        max_mean_neighbours: stop with :class:`RolloutDiverged` when a step's radius graph has
            more edges per particle than this (``None``: no limit). Clumped particles make the
            radius graph approach all ``n^2`` pairs and every step slower than the last.
        max_excursion: stop with :class:`RolloutDiverged` once a particle is further than this
            outside ``model.bounds`` (length unit), or not finite (``None``: only the latter);
            a runaway particle soon spans more radii than the neighbour list accepts.

    Returns:
        [n_steps, n, dim] predicted positions of frames ``C .. C + n_steps - 1``.

    Raises:
        RolloutDiverged: a limit was exceeded; it carries the frames predicted so far.
    """
    window = initial_window
    n = window.shape[0]
    if particle_type is None:
        particle_type = torch.zeros(n, dtype=torch.long, device=window.device)
    check_particle_type(model, particle_type, n)
    out: list[torch.Tensor] = []
    limit = math.inf if max_excursion is None else float(max_excursion)

    def stop(step: int, reason: str, **info: float) -> RolloutDiverged:
        done = torch.stack(out) if out else initial_window.new_zeros(0, n, initial_window.shape[-1])
        return RolloutDiverged(step, done, reason, **info)

    for step in range(n_steps):
        last = window[:, -1]
        outside = float((-wall_distances(last, model.bounds)).amax().nan_to_num(nan=math.inf))  # length unit
        if not math.isfinite(outside) or outside > limit:
            raise stop(
                step,
                f"a particle is {outside:.3g} outside the box, beyond the limit of {limit:.3g} "
                "(length unit). The model pushes particles that crossed a wall further out; train it longer, "
                "with more noise or pushforward, or raise max_excursion to let it go on.",
                excursion=outside,
            )
        edge_index = model.build_edges(last, batch)
        if max_mean_neighbours is not None and edge_index.shape[1] > max_mean_neighbours * n:
            mean = edge_index.shape[1] / n
            raise stop(
                step,
                f"{mean:.1f} neighbours per particle within the connectivity radius, above the limit of "
                f"{max_mean_neighbours:.1f}. The predicted particles have clumped and the radius graph grows "
                "towards all pairs. Train longer or with more noise, or raise max_mean_neighbours.",
                mean_neighbours=mean,
                excursion=outside,
            )
        graph = {K.POS_HISTORY: window, K.Z: particle_type, K.EDGE_INDEX: edge_index}
        if batch is not None:
            graph[K.BATCH] = batch
        nxt = model.step(graph)  # [n, dim]
        if clamp_to_bounds:
            bounds = model.bounds.to(nxt.dtype)
            nxt = torch.maximum(torch.minimum(nxt, bounds[:, 1]), bounds[:, 0])
        out.append(nxt)
        window = torch.cat([window[:, 1:], nxt.unsqueeze(1)], dim=1)
    return torch.stack(out) if out else initial_window.new_zeros(0, *initial_window.shape[::2])
