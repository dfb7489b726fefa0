"""Activations and small multi-layer perceptrons."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


class ShiftedSoftplus(torch.nn.Module):
    """ssp(x) = ln(1 + e^x) - ln 2, SchNet's activation (ssp(0) = 0)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(x) - math.log(2.0)


class CELU(torch.nn.CELU):
    """celu(x) = max(0, x) + min(0, alpha (e^(x / alpha) - 1)) with alpha = 0.1, the activation
    of ANI's atomic networks (Smith et al., Chem. Sci. 8, 3192 (2017); torchani, NeuroChem)."""

    def __init__(self) -> None:
        super().__init__(alpha=0.1)


ACTIVATIONS: dict[str, type[torch.nn.Module]] = {
    "ssp": ShiftedSoftplus,
    "celu": CELU,
    "silu": torch.nn.SiLU,
    "tanh": torch.nn.Tanh,
    "gelu": torch.nn.GELU,
    "relu": torch.nn.ReLU,
}


def activation(name: str) -> torch.nn.Module:
    """An activation module by name: ``ssp``, ``celu`` (alpha 0.1), ``silu``, ``tanh``, ``gelu``, ``relu``."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def mlp(sizes: Sequence[int], act: str = "ssp", bias_last: bool = True) -> torch.nn.Sequential:
    """Dense layers of the given sizes with ``act`` between them (none after the last).

    >>> mlp([4, 8, 1])(torch.zeros(2, 4)).shape
    torch.Size([2, 1])
    """
    if len(sizes) < 2:
        raise ValueError(f"an MLP needs at least input and output sizes, got {list(sizes)}")
    layers: list[torch.nn.Module] = []
    for n, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        last = n == len(sizes) - 2
        layers.append(torch.nn.Linear(a, b, bias=bias_last or not last))
        if not last:
            layers.append(activation(act))
    return torch.nn.Sequential(*layers)
