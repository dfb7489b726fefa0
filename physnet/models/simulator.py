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

import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from physnet.models import builtin
from physnet.models.registry import Registry, SavedModel

__all__ = [
    "Simulator",
    "SIMULATORS",
    "register_simulator",
    "build_simulator",
    "available_simulators",
    "load_simulator",
]


class Simulator(SavedModel):
    """Base of learned particle simulators.

    ``forward(graph) -> acceleration [n_particles, dim]`` from the graph's window of past
    positions; data statistics live in buffers (saved with ``state_dict``); ``forward``
    stores nothing on the module.

    Attributes:
        hparams: the name and keyword arguments that rebuild the model with :func:`build_simulator`.
    """


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
