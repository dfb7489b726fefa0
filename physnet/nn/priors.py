"""Physical prior energy terms that :class:`physnet.Potential` adds to any model.

A prior is a module with ``forward(graph) -> energy`` returning per-atom energies
[n_atoms] (``per_atom = True``) or per-graph energies [n_graphs]; ``cutoff`` is the
neighbour radius it needs (0 if it uses no neighbour list) and ``hparams`` rebuilds
it with :func:`build_prior`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from physnet.data import keys as K
from physnet.data.graph import atomic_number
from physnet.data.neighbors import edge_vectors
from physnet.nn.scatter import scatter_sum
from physnet.units import energy_factor, length_factor

__all__ = ["Prior", "ZBLRepulsion", "build_prior", "PRIORS"]


class Prior(torch.nn.Module):
    """Base of prior energy terms (see module docstring)."""

    per_atom: bool = True
    cutoff: float = 0.0

    def __init__(self) -> None:
        super().__init__()
        self.hparams: dict[str, Any] = {}


class ZBLRepulsion(Prior):
    """Ziegler-Biersack-Littmark universal screened nuclear repulsion.

    E_ij = k_e Z_i Z_j / r phi(r / a), a = 0.46850 Å / (Z_i^0.23 + Z_j^0.23),
    phi(x) = 0.18175 e^{-3.19980 x} + 0.50986 e^{-0.94229 x} + 0.28022 e^{-0.40290 x}
    + 0.02817 e^{-0.20162 x} (Ziegler, Biersack & Littmark, The Stopping and Range of
    Ions in Solids, 1985, eq. 2-59). Deviation: multiplied by a smooth polynomial
    envelope 1 - 28 x^6 + 48 x^7 - 21 x^8 (x = r / r_c) so it vanishes smoothly at
    ``cutoff``, as in nequip/MACE. It keeps atoms from collapsing where the data
    has no examples; half of each pair energy goes to each atom.

    Args:
        species: elements, in the model's order (symbols or atomic numbers).
        cutoff: r_c in ``length_unit``; default 2.0 Å-equivalent.
        energy_unit: energy unit the term returns (the model's).
        length_unit: length unit of positions.
    """

    def __init__(
        self,
        species: Sequence[int | str],
        cutoff: float = 2.0,
        energy_unit: str = "eV",
        length_unit: str = "Å",
    ) -> None:
        super().__init__()
        numbers = torch.tensor([atomic_number(s) for s in species], dtype=torch.float64)
        table = torch.zeros(119, dtype=torch.float64)
        table[numbers.long()] = numbers
        self.register_buffer("z_table", table, persistent=False)
        self.cutoff = float(cutoff)
        self.to_angstrom = length_factor(length_unit)
        self.from_ev = 1.0 / energy_factor(energy_unit)
        self.hparams = {
            "name": "zbl",
            "species": list(species),
            "cutoff": cutoff,
            "energy_unit": energy_unit,
            "length_unit": length_unit,
        }

    def forward(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        """graph -> per-atom repulsion energies [n_atoms]."""
        edge_index = graph[K.EDGE_INDEX]
        r = torch.linalg.vector_norm(edge_vectors(graph), dim=-1)  # [n_edges]
        inside = r < self.cutoff
        zi = self.z_table.to(r.dtype)[graph[K.Z][edge_index[0]]]
        zj = self.z_table.to(r.dtype)[graph[K.Z][edge_index[1]]]
        r_a = (r * self.to_angstrom).clamp_min(1e-6)  # Å; clamp keeps coincident atoms finite
        a = 0.46850 / (zi**0.23 + zj**0.23)
        x = r_a / a
        phi = (
            0.18175 * torch.exp(-3.19980 * x)
            + 0.50986 * torch.exp(-0.94229 * x)
            + 0.28022 * torch.exp(-0.40290 * x)
            + 0.02817 * torch.exp(-0.20162 * x)
        )
        u = (r / self.cutoff).clamp(max=1.0)
        envelope = 1.0 - 28.0 * u**6 + 48.0 * u**7 - 21.0 * u**8
        pair = 14.399645 * zi * zj / r_a * phi * envelope * inside.to(r.dtype)  # eV
        # full neighbour list: each pair appears twice, give each atom half.
        return scatter_sum(0.5 * pair * self.from_ev, edge_index[0], graph[K.POS].shape[0])


PRIORS: dict[str, type[Prior]] = {"zbl": ZBLRepulsion}


def build_prior(hparams: dict[str, Any]) -> Prior:
    """Rebuild a prior from its ``hparams`` (``{"name": ..., **kwargs}``)."""
    kwargs = dict(hparams)
    name = kwargs.pop("name")
    if name not in PRIORS:
        raise ValueError(f"unknown prior {name!r}; available: {sorted(PRIORS)}")
    return PRIORS[name](**kwargs)
