"""Energy models and the name -> builder registry; learned simulators and theirs.

``physnet.models.available()`` lists energy-model names; ``physnet.models.build(name,
species=[...], **hparams)`` returns a model. Learned simulators (GNS), which are not energy
models, have their own registry: ``available_simulators()`` and ``build_simulator(name, **hparams)``
(see :mod:`physnet.models.simulator`).
"""

from physnet.models import behler_parrinello, cgnet, egnn, gns, schnet, se3_transformer  # noqa: F401  (register their names)
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
