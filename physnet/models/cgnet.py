"""CGnet: a coarse-grained force field learned by force matching.

Wang, Olsson, Wehmeyer, Pérez, Charron, de Fabritiis, Noé & Clementi, "Machine
learning of coarse-grained molecular dynamics force fields", ACS Cent. Sci. 5, 755
(2019).

- features of one CG molecule with a fixed bead order (Sec. "CGnet", Fig. 2): all
  pairwise bead distances, bend angles of consecutive triples, and cos / sin of the
  dihedrals of consecutive quadruples; invariant under rotations and translations
  (for reflections see below);
- z-score normalisation of each feature with the training mean and standard
  deviation, stored as buffers and set by :meth:`CGnet.fit_statistics`;
- a dense network (paper: 5 hidden layers of 160 tanh units) giving the free energy U
  of the molecule, one number per graph; forces F = -grad U come from
  :class:`physnet.Potential`, which also adds the prior (harmonic bonds / angles and
  repulsion of :mod:`physnet.nn.priors`, the paper's "prior energy").

Deviations and caveats:

- *Not permutation invariant, by design* (as in the paper): the features depend on
  the bead order, which must be that of the training data. A graph with another bead
  count raises ``ValueError``; a permutation of beads of the same count cannot be
  detected and gives a different energy. The kit's ``check_permutation`` does not apply.
- Reflections: dihedral sines are odd under a mirror image, so U(mirror x) != U(x) in
  general, which is physically right for chiral molecules (alanine dipeptide is
  chiral). ``reflection_invariant=True`` drops the sines (features become E(3)
  invariant) for users who want full E(3) invariance.
- The paper's Lipschitz regularisation of the weights is not part of the model; a
  training loop may apply :func:`lipschitz_projection` after each optimiser step.

Example:
    >>> import physnet, torch
    >>> model = physnet.models.build("cgnet", species=["C", "N"], n_beads=5, n_layers=2, width=16)
    >>> from physnet.nn.cg_geometry import bead_graph
    >>> graph = bead_graph(torch.randn(3, 5, 3), torch.tensor([6, 7, 6, 6, 7]))
    >>> model(graph).shape
    torch.Size([3])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from physnet.data import keys as K
from physnet.data.graph import collate
from physnet.models.registry import EnergyModel, register
from physnet.nn import mlp
from physnet.nn.cg_geometry import (
    all_pairs,
    angles,
    beads_per_graph,
    consecutive_quadruples,
    consecutive_triples,
    dihedral_cos_sin,
    distances,
)
from physnet.nn.tracing import is_exporting

__all__ = ["CGnet", "cg_features", "n_cg_features", "lipschitz_projection"]


def n_cg_features(n_beads: int, reflection_invariant: bool = False) -> int:
    """Number of CGnet features of an ``n_beads`` molecule."""
    n_pairs = n_beads * (n_beads - 1) // 2
    n_angles = max(n_beads - 2, 0)
    n_dihedrals = max(n_beads - 3, 0)
    return n_pairs + n_angles + n_dihedrals * (1 if reflection_invariant else 2)


def cg_features(pos: torch.Tensor, reflection_invariant: bool = False) -> torch.Tensor:
    """CGnet features of bead positions [n_graphs, n_beads, 3] -> [n_graphs, n_features].

    Order: distances of all pairs i < j (length unit), angles of triples (i, i+1, i+2)
    in radians, cos of dihedrals of (i, ..., i+3), then their sin (unless
    ``reflection_invariant``).
    """
    n_beads = pos.shape[1]
    parts = [distances(pos, all_pairs(n_beads)), angles(pos, consecutive_triples(n_beads))]
    if n_beads >= 4:
        cos, sin = dihedral_cos_sin(pos, consecutive_quadruples(n_beads))
        parts.append(cos)
        if not reflection_invariant:
            parts.append(sin)
    return torch.cat(parts, dim=-1)


@register("cgnet")
class CGnet(EnergyModel):
    """CGnet energy model returning one energy per graph [n_graphs] (``per_atom = False``).

    Args:
        species: bead types as elements (symbols or atomic numbers), e.g. ``["C", "N"]``.
        n_beads: beads per molecule; fixes the feature count (and the buffers' shapes).
        cutoff: neighbour cutoff in the length unit; CGnet uses no neighbour list, so
            this only tells graph builders how far to look (default 0.5: no edges).
        n_layers: hidden layers of the network; paper: 5.
        width: units per hidden layer; paper: 160.
        activation: hidden activation; paper: ``"tanh"``.
        reflection_invariant: drop the dihedral sines (E(3)- rather than SE(3)-invariant).
    """

    per_atom = False

    def __init__(
        self,
        species: Sequence[int | str],
        n_beads: int,
        cutoff: float = 0.5,
        n_layers: int = 5,
        width: int = 160,
        activation: str = "tanh",
        reflection_invariant: bool = False,
    ) -> None:
        super().__init__(species, cutoff)
        if n_beads < 2:
            raise ValueError(f"CGnet needs at least 2 beads, got n_beads={n_beads}")
        self.n_beads = int(n_beads)
        self.reflection_invariant = bool(reflection_invariant)
        n_in = n_cg_features(self.n_beads, self.reflection_invariant)
        self.register_buffer("feature_mean", torch.zeros(n_in))  # [n_features]
        self.register_buffer("feature_std", torch.ones(n_in))  # [n_features]
        self.net = mlp([n_in] + [width] * n_layers + [1], act=activation)

    @property
    def interaction_range(self) -> float:
        """Unbounded: the features couple every pair of beads of the molecule."""
        return float("inf")

    def features(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        """Raw (unnormalised) features of a batched graph, [n_graphs, n_features]."""
        if is_exporting():  # no host sync; the caller of the exported file checks the bead count
            pos = graph[K.POS].reshape(-1, self.n_beads, 3)
        else:
            pos = beads_per_graph(graph, self.n_beads)  # [n_graphs, n_beads, 3]
        return cg_features(pos, self.reflection_invariant)

    @torch.no_grad()
    def fit_statistics(self, graphs: Sequence[dict[str, torch.Tensor]]) -> None:
        """Set ``feature_mean`` and ``feature_std`` from training graphs (a std below 1e-6 -> 1)."""
        if len(graphs) == 0:
            raise ValueError("fit_statistics got no graphs")
        batch = collate(list(graphs)) if len(graphs) > 1 else graphs[0]
        feats = self.features(batch).to(self.feature_mean.dtype)  # [n_graphs, n_features]
        std = feats.std(0, unbiased=False) if feats.shape[0] > 1 else torch.ones_like(feats[0])
        self.feature_mean.copy_(feats.mean(0))
        self.feature_std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def forward(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        """graph -> per-graph energies [n_graphs]."""
        x = (self.features(graph) - self.feature_mean) / self.feature_std  # [n_graphs, n_features]
        return self.net(x).squeeze(-1)  # [n_graphs]


@torch.no_grad()
def lipschitz_projection(module: torch.nn.Module, strength: float = 10.0) -> None:
    """Lipschitz regularisation of Wang et al. (2019), Sec. "Regularization": after an
    optimiser step, rescale each dense weight matrix W to W / max(1, ||W||_2 / strength),
    where ||W||_2 is its spectral norm, bounding the network's Lipschitz constant."""
    for layer in module.modules():
        if isinstance(layer, torch.nn.Linear):
            sigma = torch.linalg.matrix_norm(layer.weight, ord=2)
            layer.weight.div_(torch.clamp(sigma / strength, min=1.0))
