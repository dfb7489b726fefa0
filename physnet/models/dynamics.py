"""N-body dynamics models and their name -> builder table.

A dynamics model maps the positions, velocities and charges of particles to their positions a
fixed time later (the N-body task of Satorras et al., ICML 2021, Sec. 5.1). It is neither an
energy model nor a simulator of trajectories, so it joins a table of its own,
:data:`DYNAMICS_MODELS`, built by the same :class:`physnet.models.registry.Registry` as the
others:

>>> import physnet
>>> "egnn" in physnet.models.available_dynamics()
True
>>> model = physnet.models.build_dynamics("egnn", n_features=8, n_layers=2)
>>> model.hparams["n_layers"]
2
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from physnet.models import builtin
from physnet.models.registry import Registry, SavedModel

__all__ = [
    "DynamicsModel",
    "DYNAMICS_MODELS",
    "register_dynamics",
    "build_dynamics",
    "available_dynamics",
    "load_dynamics",
]


class DynamicsModel(SavedModel):
    """Base of dynamics models: ``forward(pos, vel, charges, batch) -> future positions``.

    Shapes: ``pos``, ``vel`` [n_particles, 3], ``charges`` [n_particles], ``batch``
    [n_particles] (system index, sorted ascending); returns [n_particles, 3] in the length unit
    of ``pos``. A batch of B systems of N particles in the graph keys ``POS``, ``VEL``,
    ``CHARGES`` [B, N, ...] is flattened by :func:`physnet.train.dynamics.flatten_systems`.

    Attributes:
        hparams: the name and keyword arguments that rebuild the model with :func:`build_dynamics`.
    """


DYNAMICS_MODELS = Registry("dynamics model", builtin.DYNAMICS_MODELS)
D = TypeVar("D", bound=Callable[..., Any])


def register_dynamics(name: str) -> Callable[[D], D]:
    """Class decorator adding a dynamics-model builder under ``name``."""
    return DYNAMICS_MODELS.register(name)


def available_dynamics() -> list[str]:
    """Names of the registered dynamics models (built-in ones included, imported or not), sorted."""
    return DYNAMICS_MODELS.available()


def build_dynamics(name: str, **hparams: Any) -> DynamicsModel:
    """Build a registered dynamics model; unknown keyword arguments are an error.

    Returns:
        the model, with ``model.hparams`` holding ``name`` and every keyword argument
        (defaults filled in) so that :func:`load_dynamics` can rebuild it.
    """
    return DYNAMICS_MODELS.build(name, **hparams)


def load_dynamics(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> DynamicsModel:
    """Rebuild a dynamics model written by :meth:`DynamicsModel.save`, in eval mode."""
    return DYNAMICS_MODELS.load(path, map_location)
