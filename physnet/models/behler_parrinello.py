"""Behler-Parrinello neural network potential: symmetry functions + per-element atomic networks.

Behler & Parrinello, "Generalized neural-network representation of high-dimensional
potential-energy surfaces", PRL 98, 146401 (2007): the energy is a sum of atomic energies
E = sum_i E_i (eq. (1)), each the output of a feed-forward network of the atom's element fed
with atom-centred symmetry functions of its neighbourhood (Fig. 1 there: one network copy
per atom, parameters shared between atoms of the same element). Behler, J. Chem. Phys. 134,
074106 (2011) for the symmetry functions G^2, G^4, G^5; Smith, Isayev & Roitberg, Chem. Sci. 8,
3192 (2017) (ANI-1) for the modified angular term (eq. (4)), the evenly spaced parameter grids
and the default sizes and activation.

- descriptor: element-resolved radial G2 (``radial_*``) and angular ``"ani"``, ``"g4"``,
  ``"g5"`` or no angular functions (``angular_*``), see :mod:`physnet.nn.symmetry_functions`;
- normalisation: per element and per feature, x' = (G - mean) / std with mean and (floored)
  std of the atoms of that element in the training split
  (:meth:`BehlerParrinello.fit_statistics`; identity before it is called). Deviation: the
  papers scale features to [-1, 1] with minima and maxima (RuNNer) or not at all (ANI);
  standardising plays the same role;
- one MLP per element ``[n_features, *hidden, 1]`` (ANI-1x H network: 384 -> 160 -> 128 ->
  96 -> 1, CELU with alpha = 0.1), evaluated once per element on all its atoms;
- per-atom energies [n_atoms]; :class:`physnet.Potential` scales, shifts, adds reference
  energies and sums (the target scaling is common to all models, not done here).

With the defaults, the descriptor for H, C, N, O has 4 x 16 radial + 10 x 32 angular = 384
features, ANI-1x's AEV length (ANI-1x's parameters: radial eta = 16 Å^-2, 16 shifts from
0.9 Å, r_c = 5.2 Å; angular eta = 8 Å^-2, zeta = 32, 4 shifts from 0.9 Å, 8 angle sections,
r_c = 3.5 Å). Two differences from torchani's AEV remain: torchani multiplies its radial
terms by 0.25 (NeuroChem's convention, absorbed here by the normalisation) and uses one
network size per element (ANI-1x: H 160-128-96, C 144-112-96, N and O 128-112-96), whereas
``hidden`` here is shared by all elements.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from physnet.data import keys as K
from physnet.data.graph import collate
from physnet.data.neighbors import edge_vectors
from physnet.models.registry import EnergyModel, register
from physnet.nn import mlp
from physnet.nn.symmetry_functions import (
    ANGULAR_KINDS,
    AngularSymmetryFunctions,
    RadialSymmetryFunctions,
    SymmetryFunctions,
    ani_sections,
    behler_angular,
    evenly_spaced,
)
from physnet.nn.tracing import is_exporting

__all__ = ["BehlerParrinello"]

# Floors of the per-feature std used for normalisation: std' = max(std, 1e-2 |mean|, 1e-3).
# Without them, features that barely vary in the training split (a radial shell in a crystal,
# an angular function with zeta = 32 far from its theta_s) would be scaled by 1e4-1e6, which
# amplifies float32 round-off of (G - mean) and any extrapolation at test time alike.
# Frozen copies (Potential.frozen) evaluate graphs of more atoms than this in chunks of this many
# atoms: every temporary is chunk-sized (42,592 Cu atoms, energy + forces, 1 thread: 5.5 s and
# 4.2 GB whole, 3.7 s and 3.3 GB in chunks; checkpointing the chunks cut the memory to 0.8 GB
# but recomputing them took 6.0 s).
CHUNK_ATOMS = 4096
_STD_FLOOR_RELATIVE = 1e-2
_STD_FLOOR_ABSOLUTE = 1e-3
# Features with std at most this (relative to max(1, |mean|)) are constant in the training split
# (e.g. O-O angular functions of a molecule with one O): they are centred, not scaled (std' = 1).
_CONSTANT_FEATURE = 1e-9


def _floats(value: float | Sequence[float]) -> list[float]:
    return [float(value)] if isinstance(value, (int, float)) else [float(v) for v in value]


def _centres(value: int | Sequence[float], start: float, stop: float) -> list[float]:
    """An int n -> n evenly spaced centres on [start, stop) (ANI); a list -> itself."""
    if isinstance(value, int):
        return evenly_spaced(value, start, stop)
    return [float(v) for v in value]


@register("behler_parrinello")
class BehlerParrinello(EnergyModel):
    """Behler-Parrinello / ANI-style network potential returning per-atom energies [n_atoms].

    Parameter grids are outer products of the lists given (one function per combination);
    every argument is a plain number, string or list, so ``hparams`` rebuild the model.

    Args:
        species: elements (symbols or atomic numbers) the model handles.
        cutoff: radial cutoff r_c in Å (or the data's length unit); ANI-1x: 5.2.
        radial_eta: radial width(s) eta in 1/length^2; ANI-1x: 16.
        radial_shifts: radial centres r_s (length unit), or an int n for n centres evenly spaced
            on [``radial_start``, ``cutoff``) (ANI); ANI-1x: 16.
        radial_start: first radial centre when ``radial_shifts`` is an int; ANI-1x: 0.9.
        angular: ``"ani"`` (Smith et al. 2017, eq. (4)), ``"g4"``, ``"g5"`` (Behler 2011) or
            ``"none"`` (radial functions only).
        angular_cutoff: angular cutoff (length unit); ANI-1x: 3.5. The model's neighbour
            cutoff is ``max(cutoff, angular_cutoff)``.
        angular_eta: angular width(s) in 1/length^2; ``None``: 8.0 for ``"ani"`` (ANI-1x),
            [0.01, 0.05, 0.2] for ``"g4"``/``"g5"``.
        angular_zeta: angular exponent(s) >= 1; ``None``: 32 for ``"ani"``, [1, 4, 16] otherwise.
        angular_shifts: ``"ani"`` only: radial centres of (r_ij + r_ik) / 2, or an int n for n
            centres on [``angular_start``, ``angular_cutoff``); ANI-1x: 4.
        angular_start: ``"ani"`` only: first centre when ``angular_shifts`` is an int; 0.9.
        angular_sections: ``"ani"`` only: angle centres theta_s in radians, or an int n for
            theta_s = pi / 2n + m pi / n; ANI-1x: 8.
        angular_lambda: ``"g4"``/``"g5"`` only: lambda values, each +1 or -1.
        angle_cos_scale: ``"ani"`` only: c in theta' = arccos(c cos theta); 0.95 as
            NeuroChem/torchani (smooth at collinear triplets), 1.0 for eq. (4) as printed.
        hidden: hidden layer widths of every element's network (ANI-1x H: [160, 128, 96]), or
            a mapping element symbol -> widths for per-element sizes (ANI-1x: C [144, 112, 96],
            N and O [128, 112, 96]); every species must appear in the mapping.
        activation: ``"celu"`` (alpha 0.1, ANI's), ``"silu"``, ``"ssp"``, ``"tanh"`` or ``"gelu"``.

    Example:
        >>> import physnet
        >>> model = physnet.models.build("behler_parrinello", species=["H", "C", "N", "O"])
        >>> model.descriptor.n_features, model.cutoff
        (384, 5.2)
    """

    def __init__(
        self,
        species: Sequence[int | str],
        cutoff: float = 5.2,
        radial_eta: float | Sequence[float] = 16.0,
        radial_shifts: int | Sequence[float] = 16,
        radial_start: float = 0.9,
        angular: str = "ani",
        angular_cutoff: float = 3.5,
        angular_eta: float | Sequence[float] | None = None,
        angular_zeta: float | Sequence[float] | None = None,
        angular_shifts: int | Sequence[float] = 4,
        angular_start: float = 0.9,
        angular_sections: int | Sequence[float] = 8,
        angular_lambda: Sequence[float] = (1.0, -1.0),
        angle_cos_scale: float = 0.95,
        hidden: Sequence[int] | Mapping[str, Sequence[int]] = (160, 128, 96),
        activation: str = "celu",
    ) -> None:
        if angular not in ANGULAR_KINDS + ("none",):
            raise ValueError(f"unknown angular kind {angular!r}; choose from {ANGULAR_KINDS + ('none',)}")
        full_cutoff = max(float(cutoff), float(angular_cutoff) if angular != "none" else 0.0)
        super().__init__(species, full_cutoff)
        n_species = len(self.species)

        r_eta, r_shift = _floats(radial_eta), _centres(radial_shifts, radial_start, cutoff)
        rows = [(e, s) for e in r_eta for s in r_shift]
        radial = RadialSymmetryFunctions(n_species, [e for e, _ in rows], [s for _, s in rows], cutoff)

        angular_block = None
        if angular == "ani":
            a_eta = _floats(8.0 if angular_eta is None else angular_eta)
            a_zeta = _floats(32.0 if angular_zeta is None else angular_zeta)
            shifts = _centres(angular_shifts, angular_start, angular_cutoff)
            sections = (
                ani_sections(angular_sections)
                if isinstance(angular_sections, int)
                else [float(t) for t in angular_sections]
            )
            grid = [(e, z, s, t) for e in a_eta for z in a_zeta for s in shifts for t in sections]
            angular_block = AngularSymmetryFunctions(
                n_species,
                "ani",
                angular_cutoff,
                eta=[g[0] for g in grid],
                zeta=[g[1] for g in grid],
                shift=[g[2] for g in grid],
                theta=[g[3] for g in grid],
                cos_scale=angle_cos_scale,
            )
        elif angular in ("g4", "g5"):
            params = behler_angular(
                eta=_floats((0.01, 0.05, 0.2) if angular_eta is None else angular_eta),
                zeta=_floats((1.0, 4.0, 16.0) if angular_zeta is None else angular_zeta),
                lambdas=_floats(angular_lambda),
            )
            angular_block = AngularSymmetryFunctions(
                n_species, angular, angular_cutoff, params["eta"], params["zeta"], lambda_=params["lambda"]
            )
        self.descriptor = SymmetryFunctions(radial, angular_block)
        n_features = self.descriptor.n_features

        # Per element, per feature statistics of the training split (identity until fitted).
        self.register_buffer("feature_mean", torch.zeros(n_species, n_features))
        self.register_buffer("feature_std", torch.ones(n_species, n_features))
        if isinstance(hidden, Mapping):
            missing = [s for s in self.species.symbols if s not in hidden]
            if missing:
                raise ValueError(f"hidden has no layer sizes for element(s) {missing}")
            widths = {s: [int(h) for h in hidden[s]] for s in self.species.symbols}
        else:
            widths = {s: [int(h) for h in hidden] for s in self.species.symbols}
        self._identity_normalization = False  # set when the statistics are folded into the networks
        self._chunked_inference = False  # frozen copies evaluate large graphs in atom chunks
        # one network per element, in species order, keyed by symbol ("networks.H.0.weight")
        self.networks = torch.nn.ModuleDict(
            {s: mlp([n_features, *widths[s], 1], act=activation) for s in self.species.symbols}
        )

    def descriptors(self, graph: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Symmetry functions before normalisation [n_atoms, n_features] and species indices
        [n_atoms] of a (batched) graph."""
        species = self.species(graph[K.Z])  # [n_atoms]
        x = self.descriptor(edge_vectors(graph), graph[K.EDGE_INDEX], species)  # [n_atoms, n_features]
        return x, species

    def forward(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        """graph -> per-atom energies [n_atoms]."""
        n_atoms = graph[K.Z].shape[0]
        if self._chunked_inference and not self.training and not is_exporting() and n_atoms > CHUNK_ATOMS:
            return self._forward_chunked(graph)
        x, species = self.descriptors(graph)
        return self._atomic_energies(x, species)

    def _atomic_energies(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Networks of each element on descriptors x [n, n_features] -> energies [n]."""
        n_atoms = x.shape[0]
        exporting = is_exporting()  # traced: data-dependent sizes, no branch on the counts
        n_species = len(self.species)
        # a fixed-length count (bincount's length depends on the data); one sync
        counts = torch.zeros(n_species, dtype=torch.long, device=x.device).index_add_(
            0, species, torch.ones_like(species)
        )
        counts = counts.tolist()
        # Atoms grouped by element with one sort: one batched network call per element present.
        if len(self.species) == 1:
            order = None
        elif exporting:
            order = torch.argsort(species, stable=True)
        else:
            present = [s for s, c in enumerate(counts) if c > 0]
            order = torch.argsort(species, stable=True) if len(present) > 1 else None
        parts = []
        start = 0
        for s, network in enumerate(self.networks.values()):
            if not exporting and counts[s] == 0:
                continue
            if order is None:
                xs = x
            else:
                xs = x.index_select(0, order[start : start + counts[s]])  # [n_s, n_features]
            start = start + counts[s]
            if not self._identity_normalization:
                xs = (xs - self.feature_mean[s]) / self.feature_std[s]
            parts.append(network(xs).squeeze(-1))  # [n_s]
        if order is None:
            return parts[0] if parts else x.new_zeros(n_atoms)
        return x.new_zeros(n_atoms).index_copy(0, order, torch.cat(parts))

    def _forward_chunked(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-atom energies computed CHUNK_ATOMS atoms at a time.

        Exact: an atom's energy depends on its own edges only (strictly local descriptors), so
        the edges sorted by centre split into independent chunks. Every buffer is then
        chunk-sized, which avoids faulting in fresh multi-GB buffers at every call.
        """
        species = self.species(graph[K.Z])  # [n_atoms]
        n_atoms = species.shape[0]
        vectors = edge_vectors(graph)  # [n_edges, 3]
        centre, neighbour = graph[K.EDGE_INDEX][0], graph[K.EDGE_INDEX][1]
        order = torch.argsort(centre, stable=True)  # edges by centre
        ends = torch.cumsum(torch.bincount(centre, minlength=n_atoms), 0).tolist()  # one sync
        neighbour_species = species.index_select(0, neighbour)
        energies = []
        for a0 in range(0, n_atoms, CHUNK_ATOMS):
            a1 = min(a0 + CHUNK_ATOMS, n_atoms)
            e0, e1 = (ends[a0 - 1] if a0 > 0 else 0), ends[a1 - 1]
            edges = order[e0:e1]
            args = (
                vectors.index_select(0, edges),
                centre.index_select(0, edges) - a0,
                neighbour_species.index_select(0, edges),
                species[a0:a1],
            )
            energies.append(self._chunk_energies(*args))
        return torch.cat(energies)

    def _chunk_energies(
        self,
        vectors: torch.Tensor,
        centre: torch.Tensor,
        neighbour_species: torch.Tensor,
        species: torch.Tensor,
    ) -> torch.Tensor:
        x = self.descriptor.compute(vectors, centre, neighbour_species, species.shape[0])
        return self._atomic_energies(x, species)

    def prepare_inference(self) -> None:
        """Fold the feature normalisation into each element's first layer (frozen copies only).

        W (x - mu) / sigma + b = (W / sigma) x + (b - W mu / sigma): two fewer operations per
        element and call, same function to round-off; the statistics become the identity.
        """
        with torch.no_grad():
            for s, network in enumerate(self.networks.values()):
                first = next(m for m in network.modules() if isinstance(m, torch.nn.Linear))
                inv_std = 1.0 / self.feature_std[s]
                first.bias -= first.weight @ (self.feature_mean[s] * inv_std)
                first.weight *= inv_std
            self.feature_mean.zero_()
            self.feature_std.fill_(1.0)
        self._identity_normalization = True
        self._chunked_inference = True

    @torch.no_grad()
    def fit_statistics(self, graphs: Sequence[dict[str, torch.Tensor]], batch_size: int = 64) -> None:
        """Set ``feature_mean`` and ``feature_std`` [n_species, n_features] from training graphs.

        Mean and standard deviation over the atoms of each element (accumulated in float64).
        The std is floored at max(1e-2 |mean|, 1e-3) so that features which hardly vary in the
        training split are not blown up (float32 round-off, extrapolation); features constant
        for an element keep std 1, and elements absent from ``graphs`` keep mean 0 and std 1.
        """
        if self._identity_normalization:
            raise ValueError(
                "this model's feature statistics were folded into its networks by prepare_inference "
                "(a Potential.frozen() copy); fit statistics on the original model"
            )
        n_species, n_features = self.feature_mean.shape
        total = torch.zeros(n_species, n_features, dtype=torch.float64)
        total_sq = torch.zeros_like(total)
        count = torch.zeros(n_species, dtype=torch.float64)
        dtype, device = self.feature_mean.dtype, self.feature_mean.device
        for start in range(0, len(graphs), batch_size):
            chunk = [
                {
                    k: (v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device))
                    for k, v in g.items()
                }
                for g in graphs[start : start + batch_size]
            ]
            self.species.check(torch.cat([g[K.Z] for g in chunk]))
            x, species = self.descriptors(collate(chunk) if len(chunk) > 1 else chunk[0])
            x, species = x.double().cpu(), species.cpu()
            total.index_add_(0, species, x)
            total_sq.index_add_(0, species, x * x)
            count += torch.bincount(species, minlength=n_species).double()
        seen = count > 0
        n = count.clamp_min(1.0).unsqueeze(-1)
        mean = total / n
        std = (total_sq / n - mean * mean).clamp_min(0.0).sqrt()
        constant = std <= _CONSTANT_FEATURE * mean.abs().clamp_min(1.0)
        floor = (_STD_FLOOR_RELATIVE * mean.abs()).clamp_min(_STD_FLOOR_ABSOLUTE)
        std = torch.where(constant, torch.ones_like(std), torch.maximum(std, floor))
        mean[~seen] = 0.0
        std[~seen] = 1.0
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std)
