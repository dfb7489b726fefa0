"""Building blocks shared by the models."""

from physnet.nn.cutoff import CosineCutoff
from physnet.nn.mlp import ShiftedSoftplus, activation, mlp
from physnet.nn.radial import BesselRBF, GaussianRBF
from physnet.nn.scatter import scatter_max, scatter_sum, segment_softmax

__all__ = [
    "BesselRBF",
    "CosineCutoff",
    "GaussianRBF",
    "ShiftedSoftplus",
    "activation",
    "mlp",
    "scatter_max",
    "scatter_sum",
    "segment_softmax",
]
