"""Energy models, learned simulators and N-body dynamics models, each kind in a name -> builder table.

``physnet.models.available()`` lists energy-model names; ``physnet.models.build(name,
species=[...], **hparams)`` returns a model. Learned simulators (GNS) and dynamics models
(EGNN / SE(3)-Transformer on the N-body task), which are not energy models, have tables of their
own with the same mechanism (:class:`physnet.models.registry.Registry`):
``available_simulators()`` / ``build_simulator(name, **hparams)`` and ``available_dynamics()`` /
``build_dynamics(name, **hparams)``.

A model's module is imported the first time its name is built or its class is used (the
registries know the built-in names and their modules), so that a user of SchNet does not
pay for e3nn, which the SE(3)-Transformer needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from physnet._lazy import lazy_attributes

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "EnergyModel": "physnet.models.registry",
    "available": "physnet.models.registry",
    "build": "physnet.models.registry",
    "register": "physnet.models.registry",
    "SchNet": "physnet.models.schnet",
    "PaiNN": "physnet.models.painn",
    "BehlerParrinello": "physnet.models.behler_parrinello",
    "CGnet": "physnet.models.cgnet",
    "EGNN": "physnet.models.egnn",
    "EGNNDynamics": "physnet.models.egnn",
    "Simulator": "physnet.models.simulator",
    "GNS": "physnet.models.gns",
    "rollout": "physnet.models.simulator",
    "available_simulators": "physnet.models.simulator",
    "build_simulator": "physnet.models.simulator",
    "load_simulator": "physnet.models.simulator",
    "register_simulator": "physnet.models.simulator",
    "DynamicsModel": "physnet.models.dynamics",
    "available_dynamics": "physnet.models.dynamics",
    "build_dynamics": "physnet.models.dynamics",
    "load_dynamics": "physnet.models.dynamics",
    "register_dynamics": "physnet.models.dynamics",
    "Registry": "physnet.models.registry",
    "SE3Transformer": "physnet.models.se3_transformer",
    "SE3TransformerDynamics": "physnet.models.se3_transformer",
}

__all__ = [
    "EnergyModel",
    "available",
    "build",
    "register",
    "SchNet",
    "PaiNN",
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
    "DynamicsModel",
    "available_dynamics",
    "build_dynamics",
    "load_dynamics",
    "register_dynamics",
    "Registry",
    "SE3Transformer",
    "SE3TransformerDynamics",
]

# submodules reachable as attributes (``physnet.models.gns.GNS``) without their own import
_SUBMODULES = (
    "builtin",
    "registry",
    "simulator",
    "dynamics",
    "schnet",
    "painn",
    "behler_parrinello",
    "cgnet",
    "egnn",
    "gns",
    "se3_transformer",
)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from physnet.models.behler_parrinello import BehlerParrinello
    from physnet.models.cgnet import CGnet
    from physnet.models.dynamics import (
        DynamicsModel,
        available_dynamics,
        build_dynamics,
        load_dynamics,
        register_dynamics,
    )
    from physnet.models.egnn import EGNN, EGNNDynamics
    from physnet.models.gns import GNS
    from physnet.models.painn import PaiNN
    from physnet.models.registry import EnergyModel, Registry, available, build, register
    from physnet.models.schnet import SchNet
    from physnet.models.se3_transformer import SE3Transformer, SE3TransformerDynamics
    from physnet.models.simulator import (
        Simulator,
        available_simulators,
        build_simulator,
        load_simulator,
        register_simulator,
        rollout,
    )


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, _SUBMODULES, __all__)
