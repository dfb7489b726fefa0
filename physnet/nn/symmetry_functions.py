"""Atom-centred symmetry functions: Behler's G2, G4, G5 and ANI's modified angular term.

Behler & Parrinello, PRL 98, 146401 (2007), eqs. (3) and (4) (radial and angular functions,
there named G^1 and G^2); Behler, J. Chem. Phys. 134, 074106 (2011), the functions it names
G^2 (radial), G^4 and G^5 (angular); Smith, Isayev & Roitberg, Chem. Sci. 8, 3192 (2017),
eqs. (3) (radial, = G^2) and (4) (modified angular term of ANI-1). Every function is
multiplied by Behler's cosine cutoff f_c(r) = 0.5 (cos(pi r / r_c) + 1) for r < r_c
(:class:`physnet.nn.CosineCutoff`); the radial and the angular functions have their own
cutoffs.

With ``i`` the centre atom, ``j`` and ``k`` its neighbours, ``r_ij = |r_ij|`` and
``cos theta_ijk = r_ij . r_ik / (r_ij r_ik)``::

    G2_i = sum_j exp(-eta (r_ij - r_s)^2) f_c(r_ij)
    G4_i = 2^(1-zeta) sum_{j<k} (1 + lambda cos theta_ijk)^zeta
               exp(-eta (r_ij^2 + r_ik^2 + r_jk^2)) f_c(r_ij) f_c(r_ik) f_c(r_jk)
    G5_i = 2^(1-zeta) sum_{j<k} (1 + lambda cos theta_ijk)^zeta
               exp(-eta (r_ij^2 + r_ik^2)) f_c(r_ij) f_c(r_ik)
    A_i  = 2^(1-zeta) sum_{j<k} (1 + cos(theta_ijk - theta_s))^zeta
               exp(-eta ((r_ij + r_ik) / 2 - r_s)^2) f_c(r_ij) f_c(r_ik)        (ANI)

**Pair counting.** The angular sums run over *unordered* neighbour pairs {j, k}, each once
(``j < k`` in edge order), as RuNNer/n2p2 and torchani count them. Every summand is symmetric
in j <-> k, so the papers' double sum over all ``j`` and all ``k != j`` read as ordered pairs
is exactly twice these values.

**Element resolution.** Radial functions are summed separately per neighbour element
(``n_species`` blocks); angular functions per unordered neighbour-element pair
(``n_species (n_species + 1) / 2`` blocks, in ``torch.triu_indices`` order: (0,0), (0,1), ...,
(1,1), ...), as in ANI. The descriptor of an atom is the concatenation
``[radial (n_species x n_radial), angular (n_pairs x n_angular)]``.

**Neighbours are edges.** Triplets are built once per call from ``edge_index`` as pairs of
*edge ids* sharing a centre, so two periodic images of the same atom ``j`` (two edges with
different shifts) are two different neighbours, and an atom may be its own neighbour through
an image. ``r_jk = r_ik - r_ij`` is computed from the two edge vectors, which handles images.

**Numerics.** ``cos theta`` is clamped to [-1, 1] and set to 0 (with zero gradient) where
``r_ij r_ik`` is below machine epsilon, so zero-length edges (coincident atoms) give finite
values and gradients. ANI's term needs ``sin theta``; like NeuroChem/torchani it uses
``theta' = arccos(c cos theta)`` with ``c = cos_scale = 0.95`` by default (deviation from
eq. (4), which has c = 1): then ``sin theta' >= sqrt(1 - c^2) > 0`` and the function is
smooth at collinear triplets. With c = 1 it has a cusp there (d theta / d cos theta is
infinite); ``sin^2 theta`` is then floored at machine epsilon so gradients stay finite.

Gaussian factors are evaluated as ``exp(max(a, -T)) - exp(-T)``
(:func:`physnet.nn.radial.truncated_exp`) and
the angular factor as ``max(2^(1-zeta) (1 + ...)^zeta - 2 exp(-T), 0)``, with T = 30 in float32
and 60 in float64: each is shifted by at most exp(-T) (9e-14 in float32, below its resolution;
9e-27 in float64) and is exactly 0 beyond. Without this, the Gaussian tails (exp(-16 d^2) reaches
exp(-400) inside the cutoff) underflow into subnormal numbers, which the CPU handles on a slow
path, for ``exp`` and for every product that touches them (figures in docs/benchmarks.md).
The functions stay continuous.

Parameter sets are explicit lists (one entry per function), or made by the generators
:func:`ani_radial`, :func:`ani_angular` and :func:`behler_angular`.

>>> p = ani_radial(n=4, r_min=1.0, cutoff=5.0, eta=16.0)
>>> p["shift"]
[1.0, 2.0, 3.0, 4.0]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch

from physnet.nn.cutoff import CosineCutoff
from physnet.nn.radial import floor_exponent, truncated_exp
from physnet.nn.scatter import scatter_sum

__all__ = [
    "ANGULAR_KINDS",
    "evenly_spaced",
    "ani_radial",
    "ani_sections",
    "ani_angular",
    "behler_angular",
    "angle_triplets",
    "RadialSymmetryFunctions",
    "AngularSymmetryFunctions",
    "SymmetryFunctions",
]

ANGULAR_KINDS = ("ani", "g4", "g5")


# ----------------------------------------------------------------------------- parameter sets
def evenly_spaced(n: int, start: float, stop: float) -> list[float]:
    """``n`` values ``start + k (stop - start) / n``, k = 0..n-1 (``stop`` excluded), as ANI
    places its radial and angular centres (torchani ``cover_linearly``).

    >>> evenly_spaced(4, 0.9, 3.5)
    [0.9, 1.55, 2.2, 2.85]
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    step = (stop - start) / n
    return [round(start + k * step, 12) for k in range(n)]


def ani_radial(
    n: int = 16, r_min: float = 0.9, cutoff: float = 5.2, eta: float = 16.0
) -> dict[str, list[float]]:
    """ANI-style radial set: ``n`` G2 functions of one width ``eta`` (1/length^2) centred at
    :func:`evenly_spaced` shifts from ``r_min`` to ``cutoff`` (length unit). Defaults are
    ANI-1x's (Smith et al. 2017 / torchani ``like_1x``: 16 shifts from 0.9 Å, eta = 16 Å^-2,
    r_c = 5.2 Å).

    Returns:
        ``{"eta": [n], "shift": [n]}`` (one entry per function).
    """
    return {"eta": [float(eta)] * n, "shift": evenly_spaced(n, r_min, cutoff)}


def ani_sections(n: int = 8) -> list[float]:
    """``n`` angle centres theta_s = pi / (2 n) + m pi / n, m = 0..n-1 (radians), as ANI
    (torchani ``cover_linearly``: pi/16, 3 pi/16, ..., 15 pi/16 for n = 8)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return [math.pi / (2 * n) + m * math.pi / n for m in range(n)]


def ani_angular(
    n_shifts: int = 4,
    n_sections: int = 8,
    r_min: float = 0.9,
    cutoff: float = 3.5,
    eta: float = 8.0,
    zeta: float = 32.0,
) -> dict[str, list[float]]:
    """ANI-style angular set (Smith et al. 2017, eq. (4)): the grid of ``n_shifts`` radial
    shifts r_s (:func:`evenly_spaced` from ``r_min`` to ``cutoff``) times ``n_sections`` angle
    centres theta_s = pi / (2 n_sections) + m pi / n_sections, shift-major as in torchani.
    Defaults are ANI-1x's (4 x 8 = 32 functions, eta = 8 Å^-2, zeta = 32, r_c = 3.5 Å).

    Returns:
        ``{"eta", "zeta", "shift", "theta"}``, each a list of ``n_shifts * n_sections`` floats.
    """
    shifts = evenly_spaced(n_shifts, r_min, cutoff)
    sections = ani_sections(n_sections)
    rows = list(itertools.product(shifts, sections))
    return {
        "eta": [float(eta)] * len(rows),
        "zeta": [float(zeta)] * len(rows),
        "shift": [r for r, _ in rows],
        "theta": [t for _, t in rows],
    }


def behler_angular(
    eta: Sequence[float] = (0.01, 0.05, 0.2),
    zeta: Sequence[float] = (1.0, 4.0, 16.0),
    lambdas: Sequence[float] = (1.0, -1.0),
) -> dict[str, list[float]]:
    """Behler-style G4/G5 set: the grid eta x zeta x lambda (eta-major).

    Args:
        eta: widths in 1/length^2 (Behler uses ~0.001-2 bohr^-2; the default suits Å).
        zeta: angular resolutions >= 1.
        lambdas: +1 and/or -1 (maxima at theta = 0 or pi).

    Returns:
        ``{"eta", "zeta", "lambda"}``, each a list of ``len(eta) len(zeta) len(lambdas)`` floats.
    """
    rows = list(itertools.product(eta, zeta, lambdas))
    return {
        "eta": [float(e) for e, _, _ in rows],
        "zeta": [float(z) for _, z, _ in rows],
        "lambda": [float(la) for _, _, la in rows],
    }


# ----------------------------------------------------------------------------- triplets
def angle_triplets(centre: torch.Tensor, n_atoms: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All unordered pairs of edges that share their centre atom, each pair once.

    Vectorised (no loop over atoms): edges are sorted by centre; an edge at position p of its
    centre's block of c edges is paired with positions p+1 .. c-1 of the same block.

    Args:
        centre: [n_edges] long, centre atom of each edge (``edge_index[0]`` or a subset).
        n_atoms: number of atoms (bins of ``centre``).

    Returns:
        ``(first, second)``, each [n_triplets] long, indices into ``centre`` with
        ``centre[first] == centre[second]`` and ``first != second``; sum_i c_i (c_i - 1) / 2
        pairs for c_i edges at atom i.

    >>> a, b = angle_triplets(torch.tensor([0, 1, 0, 0]), 2)
    >>> sorted(zip(a.tolist(), b.tolist()))
    [(0, 2), (0, 3), (2, 3)]
    """
    device = centre.device
    n_edges = centre.shape[0]
    order = torch.argsort(centre, stable=True)  # [n_edges], edge ids sorted by centre
    sorted_centre = centre[order]
    counts = torch.zeros(n_atoms, dtype=torch.long, device=device).index_add_(
        0, centre, torch.ones_like(centre)
    )  # [n_atoms]; not bincount, whose length depends on the data
    starts = torch.cumsum(counts, 0) - counts  # [n_atoms], first sorted position of each block
    position = torch.arange(n_edges, device=device)  # sorted positions
    n_partners = counts[sorted_centre] - (position - starts[sorted_centre]) - 1  # [n_edges]
    n_triplets = n_partners.sum().item()  # the one data-dependent size (unbacked when exported)
    torch._check(n_triplets >= 0)
    first = torch.repeat_interleave(position, n_partners, output_size=n_triplets)  # [n_triplets]
    offset_of_first = torch.cumsum(n_partners, 0) - n_partners  # [n_edges]
    second = first + 1 + torch.arange(n_triplets, device=device) - offset_of_first[first]  # [n_triplets]
    return order[first], order[second]


def _pair_table(n_species: int) -> torch.Tensor:
    """[n_species, n_species] symmetric table of unordered-pair indices in triu order."""
    rows, cols = torch.triu_indices(n_species, n_species)
    table = torch.empty(n_species, n_species, dtype=torch.long)
    index = torch.arange(rows.numel())
    table[rows, cols] = index
    table[cols, rows] = index
    return table


def _unique_columns(*params: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct tuples of parallel parameter lists, in order of first appearance:
    ([n_unique, n_params] float64, [n] index of each row's tuple)."""
    rows = list(zip(*params, strict=True))
    unique = list(dict.fromkeys(rows))
    lookup = {row: n for n, row in enumerate(unique)}
    table = torch.tensor(unique, dtype=torch.float64).reshape(len(unique), len(params))
    return table, torch.tensor([lookup[row] for row in rows], dtype=torch.long)


def _as_list(name: str, values: Sequence[float] | None, n: int | None = None) -> list[float]:
    if values is None:
        raise ValueError(f"{name} is required for this kind of symmetry function")
    out = [float(v) for v in values]
    if not out:
        raise ValueError(f"{name} is empty")
    if n is not None and len(out) != n:
        raise ValueError(f"{name} has {len(out)} entries but eta has {n}; give one entry per function")
    return out


# ----------------------------------------------------------------------------- modules
class RadialSymmetryFunctions(torch.nn.Module):
    """Element-resolved radial functions G2 (Behler 2011, G^2; Smith et al. 2017, eq. (3)).

    Args:
        n_species: number of elements S (neighbour blocks).
        eta: widths, one per function, 1/length^2.
        shift: centres r_s, one per function, length unit.
        cutoff: r_c of the cosine cutoff, length unit.
    """

    def __init__(self, n_species: int, eta: Sequence[float], shift: Sequence[float], cutoff: float) -> None:
        super().__init__()
        eta_l = _as_list("radial eta", eta)
        shift_l = _as_list("radial shift", shift, len(eta_l))
        if min(eta_l) < 0:
            raise ValueError(f"radial eta must be >= 0, got {eta_l}")
        self.n_species = int(n_species)
        self.n_functions = len(eta_l)
        self.fcut = CosineCutoff(cutoff)
        self.cutoff = self.fcut.cutoff
        # Parameters are fixed by the constructor's arguments (hparams), so the buffers are not
        # saved; they are made in float64 so that a float64 model uses them unrounded.
        self.register_buffer("eta", torch.tensor(eta_l, dtype=torch.float64), persistent=False)  # [n_radial]
        self.register_buffer("shift", torch.tensor(shift_l, dtype=torch.float64), persistent=False)

    @property
    def n_features(self) -> int:
        return self.n_species * self.n_functions

    def forward(
        self, r: torch.Tensor, centre: torch.Tensor, neighbour_species: torch.Tensor, n_atoms: int
    ) -> torch.Tensor:
        """r [n_edges], centre [n_edges], neighbour_species [n_edges] -> [n_atoms, S * n_radial]."""
        d = r.unsqueeze(-1) - self.shift.to(r.dtype)  # [n_edges, n_radial]
        terms = truncated_exp(-self.eta.to(r.dtype) * d * d) * self.fcut(r).unsqueeze(
            -1
        )  # [n_edges, n_radial]
        index = centre * self.n_species + neighbour_species  # [n_edges]
        out = scatter_sum(terms, index, n_atoms * self.n_species)  # [n_atoms * S, n_radial]
        return out.reshape(n_atoms, self.n_features)


class AngularSymmetryFunctions(torch.nn.Module):
    """Element-pair-resolved angular functions: Behler's G4 or G5, or ANI's term.

    See the module docstring for the formulas, the pair counting (each unordered pair once)
    and the numerics. Each function is a row of the parameter lists.

    Args:
        n_species: number of elements S; the output has S (S + 1) / 2 pair blocks.
        kind: ``"g4"``, ``"g5"`` (Behler 2011, G^4 and G^5) or ``"ani"`` (Smith et al. 2017,
            eq. (4)).
        cutoff: r_c of the cosine cutoff, length unit (only edges shorter than it form triplets).
        eta: widths, 1/length^2, one per function.
        zeta: angular exponents >= 1 (a fractional zeta is allowed; the base is clamped >= 0).
        lambda_: G4/G5 only: +1 or -1 per function.
        shift: ANI only: radial centres r_s of the mean distance, length unit.
        theta: ANI only: angle centres theta_s in radians.
        cos_scale: ANI only: c in theta' = arccos(c cos theta); 0.95 as NeuroChem/torchani,
            1.0 for eq. (4) as printed.
    """

    def __init__(
        self,
        n_species: int,
        kind: str,
        cutoff: float,
        eta: Sequence[float],
        zeta: Sequence[float],
        lambda_: Sequence[float] | None = None,
        shift: Sequence[float] | None = None,
        theta: Sequence[float] | None = None,
        cos_scale: float = 0.95,
    ) -> None:
        super().__init__()
        if kind not in ANGULAR_KINDS:
            raise ValueError(f"unknown angular kind {kind!r}; choose from {ANGULAR_KINDS}")
        eta_l = _as_list("angular eta", eta)
        n = len(eta_l)
        zeta_l = _as_list("angular zeta", zeta, n)
        if min(eta_l) < 0 or min(zeta_l) < 1:
            raise ValueError(f"angular eta must be >= 0 and zeta >= 1, got eta={eta_l}, zeta={zeta_l}")
        self.kind = kind
        self.n_species = int(n_species)
        self.n_functions = n
        self.fcut = CosineCutoff(cutoff)
        self.cutoff = self.fcut.cutoff
        self.register_buffer("pair_table", _pair_table(self.n_species), persistent=False)
        # Rows factor into an angular part (zeta and lambda, or zeta and theta_s) and a radial
        # part (eta, and r_s for ANI); each distinct part is evaluated once per triplet and the
        # rows combine them (ANI-1x: 8 angular x 4 radial parts for 32 functions).
        if kind == "ani":
            shift_l = _as_list("angular shift", shift, n)
            theta_l = _as_list("angular theta", theta, n)
            if not 0 < cos_scale <= 1:
                raise ValueError(f"cos_scale must be in (0, 1], got {cos_scale}")
            self.cos_scale = float(cos_scale)
            ang, ang_index = _unique_columns(zeta_l, theta_l)
            rad, rad_index = _unique_columns(eta_l, shift_l)
            self.register_buffer("ang_zeta", ang[:, 0].contiguous(), persistent=False)
            self.register_buffer("ang_cos_theta", torch.cos(ang[:, 1]), persistent=False)
            self.register_buffer("ang_sin_theta", torch.sin(ang[:, 1]), persistent=False)
            self.register_buffer("rad_eta", rad[:, 0].contiguous(), persistent=False)
            self.register_buffer("rad_shift", rad[:, 1].contiguous(), persistent=False)
        else:
            lambda_l = _as_list("angular lambda", lambda_, n)
            if any(abs(la) != 1.0 for la in lambda_l):
                raise ValueError(f"lambda must be +1 or -1, got {lambda_l}")
            self.cos_scale = 1.0
            ang, ang_index = _unique_columns(zeta_l, lambda_l)
            rad, rad_index = _unique_columns(eta_l)
            self.register_buffer("ang_zeta", ang[:, 0].contiguous(), persistent=False)
            self.register_buffer("ang_lambda", ang[:, 1].contiguous(), persistent=False)
            self.register_buffer("rad_eta", rad[:, 0].contiguous(), persistent=False)
        self.register_buffer("ang_index", ang_index, persistent=False)  # [n_angular]
        self.register_buffer("rad_index", rad_index, persistent=False)  # [n_angular]
        # Function f = (radial part rad_index[f]) x (angular part ang_index[f]): the columns are
        # gathered by products with 0/1 selection matrices, [n, n_parts] @ [n_parts, n_angular]
        # (one BLAS call each, backward too): with a contiguous product of the two, faster on the
        # CPU than a broadcast outer product or index_select (docs/benchmarks.md).
        n_ang, n_rad = ang.shape[0], rad.shape[0]
        self.register_buffer(
            "rad_select", torch.nn.functional.one_hot(rad_index, n_rad).T.double(), persistent=False
        )  # [n_rad_parts, n_angular]
        self.register_buffer(
            "ang_select", torch.nn.functional.one_hot(ang_index, n_ang).T.double(), persistent=False
        )  # [n_ang_parts, n_angular]

    @property
    def n_pairs(self) -> int:
        return self.n_species * (self.n_species + 1) // 2

    @property
    def n_features(self) -> int:
        return self.n_pairs * self.n_functions

    def forward(
        self,
        vectors: torch.Tensor,
        r: torch.Tensor,
        centre: torch.Tensor,
        neighbour_species: torch.Tensor,
        n_atoms: int,
    ) -> torch.Tensor:
        """vectors [n_edges, 3], r [n_edges], centre [n_edges], neighbour_species [n_edges]
        -> [n_atoms, n_pairs * n_angular]."""
        inside = torch.nonzero(r < self.cutoff).squeeze(-1)  # [n_inside] edge ids
        first, second = angle_triplets(centre.index_select(0, inside), n_atoms)
        e1, e2 = inside.index_select(0, first), inside.index_select(0, second)  # [n_triplets] edge ids
        # index_select rather than [] indexing: its backward is index_add, much faster on CPU
        v1, v2 = vectors.index_select(0, e1), vectors.index_select(0, e2)  # [n_triplets, 3] r_ij, r_ik
        r1, r2 = r.index_select(0, e1), r.index_select(0, e2)  # [n_triplets]
        dot = (v1 * v2).sum(-1)
        denom = r1 * r2
        ok = denom > torch.finfo(r.dtype).eps  # a zero-length edge has no direction: cos := 0
        cos = torch.where(ok, dot / torch.where(ok, denom, torch.ones_like(denom)), torch.zeros_like(dot))
        cos = cos.clamp(-1.0, 1.0)  # [n_triplets]
        fc = self.fcut(r1) * self.fcut(r2)  # [n_triplets]

        zeta = self.ang_zeta.to(r.dtype)
        if self.kind == "ani":
            c = self.cos_scale * cos  # cos theta'
            sin2 = (1.0 - c * c).clamp_min(torch.finfo(r.dtype).eps)
            s = torch.sqrt(sin2)  # sin theta' (> 0)
            # 1 + cos(theta' - theta_s) = 1 + cos theta' cos theta_s + sin theta' sin theta_s
            base = (
                1.0
                + c.unsqueeze(-1) * self.ang_cos_theta.to(r.dtype)
                + s.unsqueeze(-1) * self.ang_sin_theta.to(r.dtype)
            )  # [n_triplets, n_ang_parts]
            mean_r = 0.5 * (r1 + r2)
            d = mean_r.unsqueeze(-1) - self.rad_shift.to(r.dtype)  # [n_triplets, n_rad_parts]
            radial = truncated_exp(-self.rad_eta.to(r.dtype) * d * d)
        else:
            base = 1.0 + cos.unsqueeze(-1) * self.ang_lambda.to(r.dtype)  # [n_triplets, n_ang_parts]
            r_sq = r1 * r1 + r2 * r2
            if self.kind == "g4":
                v3 = v2 - v1  # r_jk = r_ik - r_ij, [n_triplets, 3]
                r3 = torch.linalg.vector_norm(v3, dim=-1)
                r_sq = r_sq + r3 * r3
                fc = fc * self.fcut(r3)
            radial = truncated_exp(
                -self.rad_eta.to(r.dtype) * r_sq.unsqueeze(-1)
            )  # [n_triplets, n_rad_parts]
        # 2^(1 - zeta) base^zeta in [0, 2], shifted and floored like truncated_exp (no subnormals)
        tiny = 2.0 * math.exp(-floor_exponent(r.dtype))
        angular = torch.exp2(1.0 - zeta) * base.clamp_min(0.0).pow(zeta)  # [n_triplets, n_ang_parts]
        angular = (angular - tiny).clamp_min(0.0)
        radial = radial * fc.unsqueeze(-1)  # [n_triplets, n_rad_parts]
        # [n_triplets, n_angular]: radial part times angular part of every function
        terms = (radial @ self.rad_select.to(r.dtype)) * (angular @ self.ang_select.to(r.dtype))

        pair = self.pair_table[neighbour_species.index_select(0, e1), neighbour_species.index_select(0, e2)]
        index = centre.index_select(0, e1) * self.n_pairs + pair  # [n_triplets]
        out = scatter_sum(terms, index, n_atoms * self.n_pairs)  # [n_atoms * n_pairs, n_angular]
        return out.reshape(n_atoms, self.n_features)


class SymmetryFunctions(torch.nn.Module):
    """Radial plus (optionally) angular symmetry functions of every atom.

    Args:
        radial: the radial block.
        angular: the angular block, or ``None`` for a radial-only descriptor.

    Example:
        >>> import physnet
        >>> from physnet.data.neighbors import edge_vectors
        >>> sf = SymmetryFunctions(
        ...     RadialSymmetryFunctions(3, **ani_radial(), cutoff=5.2),
        ...     AngularSymmetryFunctions(3, "ani", 3.5, **ani_angular()),
        ... )
        >>> g = physnet.data.from_smiles("CCO", cutoff=5.2)[0]
        >>> species = physnet.data.graph.SpeciesIndex(["H", "C", "O"])(g["z"])
        >>> sf(edge_vectors(g), g["edge_index"], species).shape  # 3 x 16 + 6 x 32
        torch.Size([9, 240])
    """

    def __init__(
        self, radial: RadialSymmetryFunctions, angular: AngularSymmetryFunctions | None = None
    ) -> None:
        super().__init__()
        if angular is not None and angular.n_species != radial.n_species:
            raise ValueError("radial and angular blocks must have the same number of species")
        self.radial = radial
        self.angular = angular

    @property
    def n_species(self) -> int:
        return self.radial.n_species

    @property
    def n_features(self) -> int:
        return self.radial.n_features + (self.angular.n_features if self.angular is not None else 0)

    @property
    def cutoff(self) -> float:
        """Largest cutoff of the blocks: the neighbour list must reach it."""
        return max(self.radial.cutoff, self.angular.cutoff if self.angular is not None else 0.0)

    def forward(self, vectors: torch.Tensor, edge_index: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Descriptors of every atom.

        Args:
            vectors: [n_edges, 3] edge vectors r_ij from :func:`physnet.data.edge_vectors`.
            edge_index: [2, n_edges], row 0 the centre i, row 1 the neighbour j (full list).
            species: [n_atoms] species indices 0..S-1.

        Returns:
            [n_atoms, n_features]: radial block then angular block.
        """
        neighbour_species = species[edge_index[1]]  # [n_edges]
        return self.compute(vectors, edge_index[0], neighbour_species, species.shape[0])

    def compute(
        self, vectors: torch.Tensor, centre: torch.Tensor, neighbour_species: torch.Tensor, n_atoms: int
    ) -> torch.Tensor:
        """Descriptors of atoms 0..n_atoms-1 from their edges: vectors [n_edges, 3], centre
        [n_edges] in [0, n_atoms), neighbour_species [n_edges] -> [n_atoms, n_features].

        Every edge of an atom must be given (a subset of centres is fine: the descriptors of an
        atom depend on its own edges only)."""
        r = torch.linalg.vector_norm(vectors, dim=-1)  # [n_edges]
        parts = [self.radial(r, centre, neighbour_species, n_atoms)]
        if self.angular is not None:
            parts.append(self.angular(vectors, r, centre, neighbour_species, n_atoms))
        return torch.cat(parts, dim=-1)
