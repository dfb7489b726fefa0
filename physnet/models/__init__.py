"""Energy models and the name -> builder registry.

``physnet.models.available()`` lists names; ``physnet.models.build(name, species=[...], **hparams)``
returns a model.
"""

from physnet.models import behler_parrinello, cgnet, egnn, schnet  # noqa: F401  (register their names)
from physnet.models.behler_parrinello import BehlerParrinello
from physnet.models.cgnet import CGnet
from physnet.models.egnn import EGNN, EGNNDynamics
from physnet.models.registry import EnergyModel, available, build, register
from physnet.models.schnet import SchNet

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
]
