"""Energy models and the name -> builder registry; learned simulators and theirs.

``physnet.models.available()`` lists energy-model names; ``physnet.models.build(name,
species=[...], **hparams)`` returns a model. Learned simulators (GNS), which are not energy
models, have their own registry: ``available_simulators()`` and ``build_simulator(name, **hparams)``
(see :mod:`physnet.models.simulator`).

A model's module is imported the first time its name is built or its class is used (the
registries know the built-in names and their modules), so that a user of SchNet does not
pay for e3nn, which the SE(3)-Transformer needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "EnergyModel": "physnet.models.registry",
    "available": "physnet.models.registry",
    "build": "physnet.models.registry",
    "register": "physnet.models.registry",
    "SchNet": "physnet.models.schnet",
    "BehlerParrinello": "physnet.models.behler_parrinello",
    "CGnet": "physnet.models.cgnet",
    "EGNN": "physnet.models.egnn",
    "EGNNDynamics": "physnet.models.egnn",
    "Simulator": "physnet.models.simulator",
    "GNS": "physnet.models.gns",
    "rollout": "physnet.models.gns",
    "available_simulators": "physnet.models.simulator",
    "build_simulator": "physnet.models.simulator",
    "load_simulator": "physnet.models.simulator",
    "register_simulator": "physnet.models.simulator",
    "SE3Transformer": "physnet.models.se3_transformer",
    "SE3TransformerDynamics": "physnet.models.se3_transformer",
}

__all__ = [
    "EnergyModel",
    "available",
    "build",
    "register",
    "SchNet",
    "BehlerParrinello",
    "CGnet",
    "EGNN",
    "EGNNDynamics",
    "Simulator",
    "GNS",
    "rollout",
    "available_simulators",
    "build_simulator",
    "load_simulator",
    "register_simulator",
    "SE3Transformer",
    "SE3TransformerDynamics",
]

# submodules reachable as attributes (``physnet.models.gns.rollout``) without their own import
_SUBMODULES = (
    "registry",
    "simulator",
    "schnet",
    "behler_parrinello",
    "cgnet",
    "egnn",
    "gns",
    "se3_transformer",
)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from physnet.models.behler_parrinello import BehlerParrinello
    from physnet.models.cgnet import CGnet
    from physnet.models.egnn import EGNN, EGNNDynamics
    from physnet.models.gns import GNS, rollout
    from physnet.models.registry import EnergyModel, available, build, register
    from physnet.models.schnet import SchNet
    from physnet.models.se3_transformer import SE3Transformer, SE3TransformerDynamics
    from physnet.models.simulator import (
        Simulator,
        available_simulators,
        build_simulator,
        load_simulator,
        register_simulator,
    )


def __getattr__(name: str) -> Any:
    """Import the module of a public name (or a submodule) the first time it is used."""
    if name in _SUBMODULES:
        return importlib.import_module(f"physnet.models.{name}")  # the import binds the attribute
    if name not in _LAZY:
        raise AttributeError(f"module 'physnet.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
