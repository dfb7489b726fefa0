"""PaiNN: polarizable atom interaction neural network, equivariant message passing with vectors.

Schütt, Unke & Gastegger, "Equivariant message passing for the prediction of tensorial properties
and molecular spectra", ICML 2021 (arXiv:2102.03150).

Each atom carries scalar features s_i [F] and vector features v_i [3, F] (v_i^0 = 0, s_i^0 an
embedding of the species). A block is a message step then an update step, both residual:

- message (eq. 7-8, Fig. 2a): phi_s(s_j) = Dense(SiLU(Dense(s_j))) [3F] times a filter
  W(r_ij) = Dense(rbf(r_ij)) f_cut(r_ij) [3F], split into (a_s, a_vv, a_vs):
  Δs_i = sum_j a_s,  Δv_i = sum_j a_vv ∘ v_j + a_vs ∘ r_ij / |r_ij|;
- update (eq. 9-11, Fig. 2b): U v_i, V v_i (linear over features, no bias, so equivariant);
  (b_vv, b_sv, b_ss) = Dense(SiLU(Dense([s_i, |V v_i|]))),
  Δv_i = b_vv ∘ U v_i,  Δs_i = b_sv ∘ <U v_i, V v_i> + b_ss.

The radial basis is sin(n pi r / r_c) / r, n = 1..20 (Sec. 5, as DimeNet), times the cosine cutoff;
the filters of all blocks come from one dense layer of the basis (as schnetpack's implementation
does; the paper's Fig. 2 draws one per block, which is the same map split by block). The
per-atom energy is a SiLU MLP F -> F/2 -> 1 of the last scalars (Sec. 5). Vectors enter only
through norms and dot products, so the energy is invariant and forces equivariant; the model is
strictly local within T x r_c (T blocks).

Target scaling and references are applied by :class:`physnet.Potential`, not here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from physnet.data import keys as K
from physnet.data.neighbors import edge_vectors
from physnet.models.registry import EnergyModel, register
from physnet.nn import BesselRBF, CosineCutoff, mlp, scatter_sum
from physnet.nn.tracing import is_exporting

# |V v| = sqrt(sum_k (V v)_k^2 + EPS): finite gradient where a vector feature is zero (v^0 = 0)
NORM_EPS = 1e-8
# In eval mode, the message step sums over the edges of graphs larger than this in chunks of this
# size, so that no [edges, 3, F] temporary is larger than a chunk's.
CHUNK_EDGES = 16384


class Message(torch.nn.Module):
    """PaiNN message step, eq. (7)-(8): neighbours' scalars and vectors, filtered by distance.

    Args:
        n_features: feature width F.
    """

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.n_features = n_features
        self.phi = mlp([n_features, n_features, 3 * n_features], act="silu")

    def forward(
        self,
        s: torch.Tensor,
        v: torch.Tensor,
        filters: Callable[[slice], torch.Tensor],
        unit: torch.Tensor,
        edge_index: torch.Tensor,
        first: bool = False,
        chunk: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """s [N, F], v [N, 3, F], ``filters(edges)`` -> W [edges, 3F] of a slice of the edges,
        unit vectors r_ij/|r_ij| [E, 3] -> (Δs [N, F], Δv [N, 3, F]). ``first``: v is zero (the
        first block), its term is skipped. ``chunk``: sum over the edges this many at a time (the
        same sums; no [E, 3, F] temporaries)."""
        n_edges = edge_index.shape[1]
        phi = self.phi(s)  # [N, 3F]
        if chunk is None or n_edges <= chunk:
            return self._sums(phi, v, filters(slice(None)), unit, edge_index, first)
        ds, dv = torch.zeros_like(s), torch.zeros_like(v)
        for start in range(0, n_edges, chunk):
            part = slice(start, start + chunk)
            ds_part, dv_part = self._sums(phi, v, filters(part), unit[part], edge_index[:, part], first)
            ds, dv = ds + ds_part, dv + dv_part
        return ds, dv

    def _sums(
        self,
        phi: torch.Tensor,
        v: torch.Tensor,
        w: torch.Tensor,
        unit: torch.Tensor,
        edge_index: torch.Tensor,
        first: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. (7)-(8) summed over the given edges: phi(s) [N, 3F], W [E, 3F] -> (Δs, Δv)."""
        i, j = edge_index[0], edge_index[1]
        n, f = phi.shape[0], self.n_features
        x = phi.index_select(0, j) * w  # [E, 3F]
        a_s, a_vv, a_vs = torch.split(x, f, dim=-1)  # 3 x [E, F]
        dv = unit.unsqueeze(-1) * a_vs.unsqueeze(1)  # [E, 3, F]
        if not first:
            dv = dv + v.index_select(0, j) * a_vv.unsqueeze(1)
        ds = scatter_sum(a_s, i, n)  # [N, F]
        dv = scatter_sum(dv.reshape(-1, 3 * f), i, n).reshape(n, 3, f)  # [N, 3, F]
        return ds, dv


class Update(torch.nn.Module):
    """PaiNN update step, eq. (9)-(11): mixes each atom's scalars and vectors.

    Args:
        n_features: feature width F.
    """

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.n_features = n_features
        self.uv = torch.nn.Linear(n_features, 2 * n_features, bias=False)  # U and V, stacked
        self.mix = mlp([2 * n_features, n_features, 3 * n_features], act="silu")

    def forward(self, s: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """s [N, F], v [N, 3, F] -> (Δs [N, F], Δv [N, 3, F])."""
        f = self.n_features
        u, vv = torch.split(self.uv(v), f, dim=-1)  # [N, 3, F] each
        norm = torch.sqrt(vv.square().sum(dim=1) + NORM_EPS)  # [N, F]
        b_vv, b_sv, b_ss = torch.split(self.mix(torch.cat([s, norm], dim=-1)), f, dim=-1)
        dv = b_vv.unsqueeze(1) * u
        ds = b_sv * (u * vv).sum(dim=1) + b_ss
        return ds, dv


@register("painn")
class PaiNN(EnergyModel):
    """PaiNN energy model returning per-atom energies [n_atoms].

    Args:
        species: elements (symbols or atomic numbers) the model handles.
        cutoff: cutoff radius r_c in Å (or the data's length unit); paper (MD17): 5 Å.
        n_features: scalar and vector feature width F; paper: 128.
        n_interactions: message + update blocks T; paper: 3.
        n_rbf: radial basis functions sin(n pi r / r_c) / r; paper: 20.
        trainable_rbf: learn the basis frequencies (DimeNet's choice; the paper keeps them fixed).
    """

    def __init__(
        self,
        species: Sequence[int | str],
        cutoff: float = 5.0,
        n_features: int = 128,
        n_interactions: int = 3,
        n_rbf: int = 20,
        trainable_rbf: bool = False,
    ) -> None:
        super().__init__(species, cutoff)
        if n_features < 2 or n_interactions < 1:
            raise ValueError(
                f"painn needs n_features >= 2 and n_interactions >= 1, got n_features={n_features}, "
                f"n_interactions={n_interactions}; raise model.n_features / model.n_interactions"
            )
        self.n_features = n_features
        self.embedding = torch.nn.Embedding(len(self.species), n_features)
        self.rbf = BesselRBF(n_rbf, cutoff, trainable=trainable_rbf)
        self.fcut = CosineCutoff(cutoff)
        self.filters = torch.nn.Linear(n_rbf, n_interactions * 3 * n_features)
        self.messages = torch.nn.ModuleList(Message(n_features) for _ in range(n_interactions))
        self.updates = torch.nn.ModuleList(Update(n_features) for _ in range(n_interactions))
        self.readout = mlp([n_features, n_features // 2, 1], act="silu")

    @property
    def interaction_range(self) -> float:
        """T x cutoff: each block reaches one cutoff further."""
        return len(self.messages) * self.cutoff

    def forward(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        """graph -> per-atom energies [n_atoms]."""
        edge_index = graph[K.EDGE_INDEX]
        vectors = edge_vectors(graph)  # [E, 3]
        r = torch.linalg.vector_norm(vectors, dim=-1)  # [E]
        unit = vectors / r.unsqueeze(-1)  # [E, 3]
        rbf, fcut = self.rbf(r), self.fcut(r).unsqueeze(-1)  # [E, n_rbf], [E, 1]
        n_edges = edge_index.shape[1]
        chunk = CHUNK_EDGES if not self.training and not is_exporting() and n_edges > CHUNK_EDGES else None
        s = self.embedding(self.species(graph[K.Z]))  # [N, F]
        v = s.new_zeros(s.shape[0], 3, self.n_features)  # [N, 3, F]
        width = 3 * self.n_features
        for t, (message, update) in enumerate(zip(self.messages, self.updates, strict=True)):
            weight = self.filters.weight[t * width : (t + 1) * width]  # block t's rows of the filter layer
            bias = self.filters.bias[t * width : (t + 1) * width]

            def filters(
                part: slice, weight: torch.Tensor = weight, bias: torch.Tensor = bias
            ) -> torch.Tensor:
                return torch.nn.functional.linear(rbf[part], weight, bias) * fcut[part]  # [edges, 3F]

            ds, dv = message(s, v, filters, unit, edge_index, first=t == 0, chunk=chunk)
            s, v = s + ds, v + dv
            ds, dv = update(s, v)
            s, v = s + ds, v + dv
        return self.readout(s).squeeze(-1)  # [N]
