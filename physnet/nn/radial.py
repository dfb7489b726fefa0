"""Radial basis expansions of interatomic distances."""

from __future__ import annotations

import torch


class GaussianRBF(torch.nn.Module):
    """Gaussians exp(-gamma (r - mu_k)^2) on evenly spaced centres mu_k in [start, stop].

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
        return torch.exp(-self.gamma * diff * diff)
