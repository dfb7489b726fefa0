"""Physical prior energy terms that :class:`physnet.Potential` adds to any model.

A prior is a module with ``forward(graph) -> energy`` returning per-atom energies
[n_atoms] (``per_atom = True``) or per-graph energies [n_graphs]; ``cutoff`` is the
neighbour radius it needs (0 if it uses no neighbour list) and ``hparams`` rebuilds
it with :func:`build_prior`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from physnet.data import keys as K
from physnet.data.graph import atomic_number
from physnet.data.neighbors import edge_vectors
from physnet.nn.cg_geometry import (
    all_pairs,
    angles,
    beads_per_graph,
    consecutive_pairs,
    consecutive_quadruples,
    consecutive_triples,
    dihedrals,
    distances,
)
from physnet.nn.scatter import scatter_sum
from physnet.nn.tracing import is_exporting
from physnet.units import energy_factor, length_factor

__all__ = [
    "Prior",
    "ZBLRepulsion",
    "HarmonicBonds",
    "HarmonicAngles",
    "BeadRepulsion",
    "FourierDihedrals",
    "fit_cg_priors",
    "boltzmann_inversion",
    "boltzmann_constant",
    "build_prior",
    "PRIORS",
]


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


# --------------------------------------------------------------------------- CG priors
K_B_EV_PER_K = 8.617333262e-5  # Boltzmann constant, eV/K (CODATA 2018)


def boltzmann_constant(energy_unit: str) -> float:
    """k_B in ``energy_unit`` per kelvin (0.0019872 for kcal/mol).

    >>> round(boltzmann_constant("kcal/mol"), 7)
    0.0019872
    """
    return K_B_EV_PER_K / energy_factor(energy_unit)


def boltzmann_inversion(samples: torch.Tensor, kT: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Harmonic constants from samples of internal coordinates by Boltzmann inversion.

    If x ~ exp(-E(x) / kT) with E = k/2 (x - x0)^2, then x is Gaussian with mean x0 and
    variance kT / k. Hence x0 = mean(x), k = kT / var(x) (Wang et al., ACS Cent. Sci. 5,
    755 (2019), "prior energy").

    Args:
        samples: [n_frames, n_terms] coordinate values (e.g. bond lengths).
        kT: thermal energy, in the energy unit wanted for k.

    Returns:
        k [n_terms] (energy / unit of x^2) and x0 [n_terms].
    """
    if samples.ndim != 2 or samples.shape[0] < 2:
        raise ValueError(f"need samples of shape [n_frames >= 2, n_terms], got {tuple(samples.shape)}")
    x0 = samples.mean(0)
    var = samples.var(0, unbiased=False)
    if bool((var <= 0).any()):
        raise ValueError("a coordinate has zero variance in the data; Boltzmann inversion needs fluctuations")
    return kT / var, x0


def _positions(data: torch.Tensor | np.ndarray | Sequence[dict[str, torch.Tensor]]) -> torch.Tensor:
    """Frames as [n_frames, n_beads, 3] float64: from an array, a tensor or a list of graphs."""
    if isinstance(data, (torch.Tensor, np.ndarray)):
        pos = torch.as_tensor(data)
    else:
        pos = torch.cat([beads_per_graph(g) for g in data])
    if pos.ndim != 3 or pos.shape[-1] != 3:
        raise ValueError(f"positions must have shape [n_frames, n_beads, 3], got {tuple(pos.shape)}")
    return pos.detach().to(torch.float64)


class _BeadPrior(Prior):
    """Common part of the CG priors: per-graph energy of molecules with a fixed bead order,
    constants fitted from data with :meth:`fit` and kept in buffers (``fitted`` says so)."""

    per_atom = False
    cutoff = 0.0
    _name = ""

    def __init__(self, n_beads: int, temperature: float, energy_unit: str, length_unit: str) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0 K, got {temperature}")
        length_factor(length_unit)
        self.n_beads = int(n_beads)
        self.kT = boltzmann_constant(energy_unit) * float(temperature)  # energy_unit
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self._fitted_seen = False  # the buffer read True once: no host sync per call after that
        self.hparams = {
            "name": self._name,
            "n_beads": int(n_beads),
            "temperature": float(temperature),
            "energy_unit": energy_unit,
            "length_unit": length_unit,
        }

    def _beads(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        if is_exporting():  # checked when the file was written; the shape is the bead order
            return graph[K.POS].reshape(-1, self.n_beads, 3)
        if not self._fitted_seen:
            if not bool(self.fitted):
                raise RuntimeError(
                    f"prior {self._name!r} has not been fitted; call .fit(training_positions) first "
                    "(or load it from a saved potential)"
                )
            self._fitted_seen = True
        return beads_per_graph(graph, self.n_beads)  # [n_graphs, n_beads, 3]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001
        self._fitted_seen = False  # the loaded buffer may say otherwise: read it again
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _check_beads(self, pos: torch.Tensor) -> None:
        if pos.shape[1] != self.n_beads:
            raise ValueError(f"prior {self._name!r} is for {self.n_beads} beads, data has {pos.shape[1]}")


class HarmonicBonds(_BeadPrior):
    """Harmonic bonds between consecutive beads, from Boltzmann inversion.

    E = sum_b k_b / 2 (r_b - r0_b)^2 over bonds b = (i, i+1), with k_b = kT / var(r_b)
    and r0_b = mean(r_b) over the training frames (:func:`boltzmann_inversion`).
    Buffers ``k`` [n_beads - 1] (energy_unit / length_unit^2) and ``x0`` [n_beads - 1]
    (length_unit). Returns per-graph energies [n_graphs].

    Args:
        n_beads: beads per molecule.
        temperature: temperature of the training data in K.
        energy_unit: energy unit of the term (the potential's).
        length_unit: length unit of positions.
    """

    _name = "harmonic_bonds"

    def __init__(
        self, n_beads: int, temperature: float = 300.0, energy_unit: str = "kcal/mol", length_unit: str = "Å"
    ) -> None:
        super().__init__(n_beads, temperature, energy_unit, length_unit)
        self.register_buffer("index", consecutive_pairs(self.n_beads), persistent=False)
        self.register_buffer("k", torch.zeros(self.index.shape[0]))
        self.register_buffer("x0", torch.zeros(self.index.shape[0]))

    def coordinates(self, pos: torch.Tensor) -> torch.Tensor:
        """Bond lengths [n_graphs, n_bonds] of positions [n_graphs, n_beads, 3]."""
        return distances(pos, self.index)

    @torch.no_grad()
    def fit(self, data: torch.Tensor | np.ndarray | Sequence[dict[str, torch.Tensor]]) -> _BeadPrior:
        """Fit k and x0 from training frames [n_frames, n_beads, 3] (or graphs); returns self."""
        pos = _positions(data)
        self._check_beads(pos)
        k, x0 = boltzmann_inversion(self.coordinates(pos), self.kT)
        self.k.copy_(k)
        self.x0.copy_(x0)
        self.fitted.fill_(True)
        return self

    def forward(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        """graph -> per-graph energies [n_graphs]."""
        x = self.coordinates(self._beads(graph))  # [n_graphs, n_terms]
        return (0.5 * self.k * (x - self.x0) ** 2).sum(-1)


class HarmonicAngles(HarmonicBonds):
    """Harmonic bend angles of consecutive triples, from Boltzmann inversion.

    E = sum_a k_a / 2 (theta_a - theta0_a)^2 over triples (i, i+1, i+2), theta in
    radians, k_a = kT / var(theta_a), theta0_a = mean(theta_a). Buffers ``k``
    [n_beads - 2] (energy_unit / rad^2) and ``x0`` [n_beads - 2] (rad). Same arguments
    as :class:`HarmonicBonds`.
    """

    _name = "harmonic_angles"

    def __init__(
        self, n_beads: int, temperature: float = 300.0, energy_unit: str = "kcal/mol", length_unit: str = "Å"
    ) -> None:
        _BeadPrior.__init__(self, n_beads, temperature, energy_unit, length_unit)
        self.register_buffer("index", consecutive_triples(self.n_beads), persistent=False)
        self.register_buffer("k", torch.zeros(self.index.shape[0]))
        self.register_buffer("x0", torch.zeros(self.index.shape[0]))

    def coordinates(self, pos: torch.Tensor) -> torch.Tensor:
        """Bend angles [n_graphs, n_angles] in radians."""
        return angles(pos, self.index)


class BeadRepulsion(_BeadPrior):
    """Soft-sphere repulsion between beads at least ``min_separation`` apart along the chain.

    E = sum_p kT (sigma_p / r_p)^n over pairs p = (i, j), j - i >= ``min_separation``
    (pairs closer along the chain are held by bonds and angles), with sigma_p the
    smallest distance of that pair in the training frames: the energy is kT at the
    closest approach the data has seen and rises steeply below it. This plays the role
    of the repulsive part of the CGnet prior (Wang et al. 2019); the paper's exact form
    differs. Buffer ``sigma`` [n_pairs] (length_unit). Returns per-graph energies.

    Args:
        n_beads: beads per molecule.
        min_separation: smallest index difference j - i of the pairs that repel; default 3.
        exponent: n; default 6.
        temperature: temperature of the training data in K (sets the strength kT).
        energy_unit: energy unit of the term (the potential's).
        length_unit: length unit of positions.
    """

    _name = "bead_repulsion"

    def __init__(
        self,
        n_beads: int,
        min_separation: int = 3,
        exponent: float = 6.0,
        temperature: float = 300.0,
        energy_unit: str = "kcal/mol",
        length_unit: str = "Å",
    ) -> None:
        super().__init__(n_beads, temperature, energy_unit, length_unit)
        if min_separation < 1:
            raise ValueError(f"min_separation must be >= 1, got {min_separation}")
        pairs = all_pairs(self.n_beads)
        pairs = pairs[(pairs[:, 1] - pairs[:, 0]) >= min_separation]
        self.register_buffer("index", pairs, persistent=False)
        self.register_buffer("sigma", torch.zeros(pairs.shape[0]))
        self.exponent = float(exponent)
        self.hparams.update({"min_separation": int(min_separation), "exponent": float(exponent)})

    @torch.no_grad()
    def fit(self, data: torch.Tensor | np.ndarray | Sequence[dict[str, torch.Tensor]]) -> _BeadPrior:
        """Set sigma to each pair's smallest distance in training frames; returns self."""
        pos = _positions(data)
        self._check_beads(pos)
        if self.index.shape[0]:
            self.sigma.copy_(distances(pos, self.index).min(0).values)
        self.fitted.fill_(True)
        return self

    def forward(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        """graph -> per-graph energies [n_graphs]."""
        r = distances(self._beads(graph), self.index).clamp_min(1e-6)  # [n_graphs, n_pairs]
        return self.kT * ((self.sigma / r) ** self.exponent).sum(-1)


class FourierDihedrals(_BeadPrior):
    """Dihedral prior of consecutive quadruples by Boltzmann inversion of each dihedral's histogram.

    E = sum_d sum_{n=1}^{N} a_dn cos(n phi_d) + b_dn sin(n phi_d), the truncated Fourier series
    of the potential of mean force -kT ln p(phi_d) of each dihedral's marginal distribution in
    the training frames (``n_bins`` histogram bins over [-pi, pi), weighted least squares with
    weights sqrt(count)). Every bin gets a pseudo-count of ``EMPTY_BIN_COUNT`` (half a visit), so
    a bin the data never reached has a high free energy -kT ln(0.5 / n_frames) in the fit: left
    out, nothing would constrain the series there, and its minimum can fall in a region without
    data, which drives Langevin runs there. It gives the network a prior with the right
    basin depths along each backbone dihedral, as the dihedral priors of later CG force fields
    do (Charron et al., arXiv:2310.18278 (2023), Sec. "Prior"), where the harmonic bond and
    angle priors of Wang et al. (2019) are flat. Buffers ``a`` and ``b`` [n_dihedrals, N]
    (energy_unit). Returns per-graph energies [n_graphs].

    Args:
        n_beads: beads per molecule (at least 4).
        n_terms: N, the highest harmonic; default 3 (smooth, cannot resolve narrow features).
        n_bins: histogram bins of the fit; default 72 (5 degrees).
        temperature: temperature of the training data in K.
        energy_unit: energy unit of the term (the potential's).
        length_unit: length unit of positions.
    """

    _name = "fourier_dihedrals"
    #: pseudo-count added to every histogram bin before the Boltzmann inversion
    EMPTY_BIN_COUNT = 0.5

    def __init__(
        self,
        n_beads: int,
        n_terms: int = 3,
        n_bins: int = 72,
        temperature: float = 300.0,
        energy_unit: str = "kcal/mol",
        length_unit: str = "Å",
    ) -> None:
        super().__init__(n_beads, temperature, energy_unit, length_unit)
        if n_beads < 4:
            raise ValueError(f"a dihedral prior needs at least 4 beads, got n_beads={n_beads}")
        if n_terms < 1 or n_bins < 2 * n_terms + 2:
            raise ValueError(f"need n_terms >= 1 and n_bins >= 2 n_terms + 2, got {n_terms}, {n_bins}")
        self.register_buffer("index", consecutive_quadruples(self.n_beads), persistent=False)
        self.register_buffer("a", torch.zeros(self.index.shape[0], n_terms))
        self.register_buffer("b", torch.zeros(self.index.shape[0], n_terms))
        self.register_buffer("harmonics", torch.arange(1, n_terms + 1, dtype=torch.float32), persistent=False)
        self.n_bins = int(n_bins)
        self.hparams.update({"n_terms": int(n_terms), "n_bins": int(n_bins)})

    @torch.no_grad()
    def fit(self, data: torch.Tensor | np.ndarray | Sequence[dict[str, torch.Tensor]]) -> _BeadPrior:
        """Fit a and b from training frames [n_frames, n_beads, 3] (or graphs); returns self."""
        pos = _positions(data)
        self._check_beads(pos)
        phi = dihedrals(pos, self.index).numpy()  # [n_frames, n_dihedrals], radians
        edges = np.linspace(-np.pi, np.pi, self.n_bins + 1)
        centres = 0.5 * (edges[1:] + edges[:-1])
        n = self.harmonics.double().numpy()
        design = np.concatenate(
            [np.cos(np.outer(centres, n)), np.sin(np.outer(centres, n)), np.ones((len(centres), 1))], axis=1
        )
        for d in range(phi.shape[1]):
            count, _ = np.histogram(phi[:, d], bins=edges)
            seen = count > 0
            if seen.sum() < design.shape[1]:
                raise ValueError(f"dihedral {d} visits only {int(seen.sum())} of {self.n_bins} bins; too few")
            filled = count + self.EMPTY_BIN_COUNT
            pmf = -self.kT * np.log(filled / filled.sum())
            w = np.sqrt(filled)[:, None]
            coef, *_ = np.linalg.lstsq(design * w, pmf * w[:, 0], rcond=None)
            k = len(n)
            self.a[d] = torch.as_tensor(coef[:k])
            self.b[d] = torch.as_tensor(coef[k : 2 * k])
        self.fitted.fill_(True)
        return self

    def forward(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        """graph -> per-graph energies [n_graphs]."""
        phi = dihedrals(self._beads(graph), self.index)  # [n_graphs, n_dihedrals]
        arg = phi.unsqueeze(-1) * self.harmonics.to(phi.dtype)  # [n_graphs, n_dihedrals, N]
        return (self.a * torch.cos(arg) + self.b * torch.sin(arg)).sum((-1, -2))


def fit_cg_priors(
    data: torch.Tensor | np.ndarray | Sequence[dict[str, torch.Tensor]],
    temperature: float = 300.0,
    energy_unit: str = "kcal/mol",
    length_unit: str = "Å",
    repulsion: bool = True,
    dihedral: bool = False,
) -> dict[str, Prior]:
    """The CGnet prior set fitted on training frames [n_frames, n_beads, 3] (or graphs).

    Returns ``{"bonds": HarmonicBonds, "angles": HarmonicAngles, "repulsion": BeadRepulsion}``
    (the last only with ``repulsion``), plus ``"dihedrals": FourierDihedrals`` with
    ``dihedral``, ready for :class:`physnet.Potential`, which reports each as
    ``energy_bonds``, ``energy_angles``, ``energy_repulsion``, ``energy_dihedrals``.
    """
    pos = _positions(data)
    n_beads = pos.shape[1]
    kw = {"temperature": temperature, "energy_unit": energy_unit, "length_unit": length_unit}
    priors: dict[str, Prior] = {
        "bonds": HarmonicBonds(n_beads, **kw).fit(pos),
        "angles": HarmonicAngles(n_beads, **kw).fit(pos),
    }
    if repulsion:
        priors["repulsion"] = BeadRepulsion(n_beads, **kw).fit(pos)
    if dihedral:
        priors["dihedrals"] = FourierDihedrals(n_beads, **kw).fit(pos)
    return priors


PRIORS: dict[str, type[Prior]] = {
    "zbl": ZBLRepulsion,
    "harmonic_bonds": HarmonicBonds,
    "harmonic_angles": HarmonicAngles,
    "bead_repulsion": BeadRepulsion,
    "fourier_dihedrals": FourierDihedrals,
}


def build_prior(hparams: dict[str, Any]) -> Prior:
    """Rebuild a prior from its ``hparams`` (``{"name": ..., **kwargs}``)."""
    kwargs = dict(hparams)
    name = kwargs.pop("name")
    if name not in PRIORS:
        raise ValueError(f"unknown prior {name!r}; available: {sorted(PRIORS)}")
    return PRIORS[name](**kwargs)
