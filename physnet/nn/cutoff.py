"""Smooth cutoff functions."""

from __future__ import annotations

import math

import torch


class CosineCutoff(torch.nn.Module):
    """Behler's cosine cutoff, f(r) = 0.5 (cos(pi r / r_c) + 1) for r < r_c, else 0.

    Behler & Parrinello, PRL 98, 146401 (2007); Behler, J. Chem. Phys. 134, 074106
    (2011), eq. (4). Used by SchNet (Schütt et al., J. Chem. Phys. 148, 241722
    (2018)) for its filters.

    Args:
        cutoff: r_c in the length unit of the data (Å for physnet's embedded sets).
    """

    def __init__(self, cutoff: float) -> None:
        super().__init__()
        if cutoff <= 0:
            raise ValueError(f"cutoff must be > 0, got {cutoff}")
        self.cutoff = float(cutoff)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """[n] distances -> [n] cutoff weights in [0, 1]."""
        f = 0.5 * (torch.cos(r * (math.pi / self.cutoff)) + 1.0)
        return f * (r < self.cutoff).to(r.dtype)

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff}"
