"""Radial basis expansions of interatomic distances, and a subnormal-free exponential."""

from __future__ import annotations

import math

import torch


def floor_exponent(dtype: torch.dtype) -> float:
    """T of :func:`truncated_exp`: exp(-T) is far below the resolution of the dtype."""
    return 60.0 if dtype == torch.float64 else 30.0


def truncated_exp(arg: torch.Tensor) -> torch.Tensor:
    """exp(arg) - exp(-T) for arg >= -T, else exactly 0 (T = 30 in float32, 60 in float64).

    For Gaussian tails exp(-gamma (r - mu)^2), which reach exp(-400) inside a cutoff. Plain exp
    returns subnormal numbers there, and the CPU handles those on a slow path: exp of such
    arguments and every later product or matrix product touching them slow down (SchNet
    training's filter-weight gradient among them; figures in docs/benchmarks.md). The shift by
    exp(-T) (9e-14 in float32, below its resolution; 9e-27 in float64) keeps the function
    continuous.

    >>> truncated_exp(torch.tensor([0.0, -1.0, -100.0])).tolist()
    [1.0, 0.3678794503211975, 0.0]
    """
    t = floor_exponent(arg.dtype)
    return torch.exp(arg.clamp(min=-t)) - math.exp(-t)


class GaussianRBF(torch.nn.Module):
    """Gaussians exp(-gamma (r - mu_k)^2) on evenly spaced centres mu_k in [start, stop].

    Evaluated with :func:`truncated_exp` (exactly 0 beyond exp(-T), no subnormal numbers).

    SchNet, Schütt et al., J. Chem. Phys. 148, 241722 (2018), eq. (9): centres every
    0.1 Å and gamma = 10 Å^-2. Here gamma = 1 / (2 spacing^2) by default unless given,
    which equals 50 Å^-2 for 0.1 Å spacing; pass ``gamma=10.0`` for the paper's value.

    Args:
        n_rbf: number of Gaussians.
        cutoff: last centre (length unit of the data).
        start: first centre.
        gamma: width parameter (1 / length^2); default 1 / (2 * spacing^2).
        trainable: learn centres and widths.
    """

    def __init__(
        self,
        n_rbf: int,
        cutoff: float,
        start: float = 0.0,
        gamma: float | None = None,
        trainable: bool = False,
    ) -> None:
        super().__init__()
        if n_rbf < 1:
            raise ValueError(f"n_rbf must be >= 1, got {n_rbf}")
        centres = torch.linspace(start, cutoff, n_rbf)
        spacing = (cutoff - start) / max(n_rbf - 1, 1)
        g = gamma if gamma is not None else 0.5 / spacing**2
        widths = torch.full((n_rbf,), float(g))
        if trainable:
            self.centres = torch.nn.Parameter(centres)
            self.gamma = torch.nn.Parameter(widths)
        else:
            self.register_buffer("centres", centres)
            self.register_buffer("gamma", widths)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """[n] distances -> [n, n_rbf]."""
        diff = r.unsqueeze(-1) - self.centres  # [n, n_rbf]
        return truncated_exp(-self.gamma * diff * diff)


class BesselRBF(torch.nn.Module):
    """Bessel radial basis sqrt(2 / r_c) sin(w_n r) / r with trainable frequencies w_n.

    DimeNet, Gasteiger, Gross & Günnemann, ICLR 2020 (arXiv:2003.03123), eq. (7):
    e_n(r) = sqrt(2 / c) sin(n pi r / c) / r, n = 1 .. N; the frequencies w_n start at n pi / c and
    are learned (as in DimeNet and NequIP, Batzner et al., Nat. Commun. 13, 2453 (2022), eq. (8)).
    Finite at r = 0 (limit sqrt(2 / c) w_n); callers pass a softened distance sqrt(r^2 + eps^2)
    so that gradients stay finite too. The smooth cutoff is the caller's (an envelope).

    Args:
        n_rbf: number of basis functions N.
        cutoff: c (length unit of the data).
        trainable: learn the frequencies.
    """

    def __init__(self, n_rbf: int, cutoff: float, trainable: bool = True) -> None:
        super().__init__()
        if n_rbf < 1:
            raise ValueError(f"n_rbf must be >= 1, got {n_rbf}")
        freq = torch.arange(1, n_rbf + 1, dtype=torch.get_default_dtype()) * math.pi / cutoff
        if trainable:
            self.freq = torch.nn.Parameter(freq)
        else:
            self.register_buffer("freq", freq)
        self.prefactor = math.sqrt(2.0 / cutoff)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """[n] distances (> 0) -> [n, n_rbf]."""
        r = r.unsqueeze(-1)  # [n, 1]
        return self.prefactor * torch.sin(self.freq * r) / r
