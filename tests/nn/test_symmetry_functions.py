"""Symmetry functions against hand-computed values, periodic images, gradients and edge cases.

The reference values are computed here with ``math`` only, atom by atom, from the formulas
(Behler 2011 G^2/G^4/G^5; Smith et al. 2017 eq. (4)), independently of the vectorised code.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from ase import Atoms

import physnet
from physnet.data.graph import SpeciesIndex
from physnet.data.neighbors import edge_vectors
from physnet.nn.symmetry_functions import (
    AngularSymmetryFunctions,
    RadialSymmetryFunctions,
    SymmetryFunctions,
    angle_triplets,
    ani_angular,
    ani_radial,
    ani_sections,
    behler_angular,
    evenly_spaced,
)

SPECIES = ["H", "C", "O"]
RC_RAD, RC_ANG = 3.0, 2.6
RADIAL = {"eta": [0.5, 2.0, 4.0], "shift": [0.0, 1.0, 1.5]}
BEHLER = {"eta": [0.1, 0.3, 0.3], "zeta": [1.0, 2.0, 4.0], "lambda": [1.0, -1.0, 1.0]}
ANI = {"eta": [3.0, 8.0], "zeta": [2.0, 32.0], "shift": [1.0, 1.4], "theta": [0.4, 2.0]}

# Mixed-element configurations (Å). In the 4-atom one, C-H3 (2.48 Å) is inside both cutoffs,
# H2-H3 (2.80 Å) inside the radial cutoff only, O-H3 (3.49 Å) outside both.
THREE = Atoms("HCO", positions=[[0.0, 0.0, 0.0], [1.1, 0.0, 0.0], [-0.4, 1.3, 0.35]])
FOUR = Atoms("COHH", positions=[[0.0, 0.0, 0.0], [1.2, 0.1, -0.1], [-0.5, 0.9, 0.2], [-1.7, -1.5, 1.0]])


def fc(r: float, rc: float) -> float:
    """Behler's cosine cutoff."""
    return 0.5 * (math.cos(math.pi * r / rc) + 1.0) if r < rc else 0.0


def dist(a: np.ndarray, b: np.ndarray) -> float:
    return math.sqrt(sum((float(x) - float(y)) ** 2 for x, y in zip(a, b, strict=True)))


def pair_index(a: int, b: int, n: int) -> int:
    """Index of the unordered element pair {a, b} in row-major upper-triangle order."""
    a, b = min(a, b), max(a, b)
    return a * n - a * (a - 1) // 2 + (b - a)


def reference_descriptor(
    positions: np.ndarray, species: list[int], kind: str, cos_scale: float = 1.0
) -> np.ndarray:
    """Atom-by-atom loops over all neighbours and all unordered neighbour pairs {j, k}."""
    n_s = len(SPECIES)
    n_pairs = n_s * (n_s + 1) // 2
    n_atoms = len(positions)
    params = BEHLER if kind in ("g4", "g5") else ANI
    n_rad, n_ang = len(RADIAL["eta"]), len(params["eta"])
    out = np.zeros((n_atoms, n_s * n_rad + n_pairs * n_ang))
    for i in range(n_atoms):
        others = [j for j in range(n_atoms) if j != i]
        for j in others:
            r = dist(positions[i], positions[j])
            for m, (eta, rs) in enumerate(zip(RADIAL["eta"], RADIAL["shift"], strict=True)):
                out[i, species[j] * n_rad + m] += math.exp(-eta * (r - rs) ** 2) * fc(r, RC_RAD)
        for j, k in itertools.combinations(others, 2):
            rij, rik = dist(positions[i], positions[j]), dist(positions[i], positions[k])
            rjk = dist(positions[j], positions[k])
            if rij >= RC_ANG or rik >= RC_ANG:
                continue
            vij, vik = positions[j] - positions[i], positions[k] - positions[i]
            cos = float(np.dot(vij, vik)) / (rij * rik)
            base = n_s * n_rad + pair_index(species[j], species[k], n_s) * n_ang
            for m in range(n_ang):
                eta, zeta = params["eta"][m], params["zeta"][m]
                if kind == "g4":
                    value = (1 + params["lambda"][m] * cos) ** zeta
                    value *= math.exp(-eta * (rij**2 + rik**2 + rjk**2)) * fc(rjk, RC_ANG)
                elif kind == "g5":
                    value = (1 + params["lambda"][m] * cos) ** zeta * math.exp(-eta * (rij**2 + rik**2))
                else:
                    theta = math.acos(cos_scale * cos)
                    value = (1 + math.cos(theta - params["theta"][m])) ** zeta
                    value *= math.exp(-eta * ((rij + rik) / 2 - params["shift"][m]) ** 2)
                out[i, base + m] += 2 ** (1 - zeta) * value * fc(rij, RC_ANG) * fc(rik, RC_ANG)
    return out


def make_descriptor(kind: str, cos_scale: float = 1.0) -> SymmetryFunctions:
    radial = RadialSymmetryFunctions(len(SPECIES), RADIAL["eta"], RADIAL["shift"], RC_RAD)
    if kind == "ani":
        angular = AngularSymmetryFunctions(len(SPECIES), "ani", RC_ANG, **ANI, cos_scale=cos_scale)
    else:
        angular = AngularSymmetryFunctions(
            len(SPECIES), kind, RC_ANG, BEHLER["eta"], BEHLER["zeta"], lambda_=BEHLER["lambda"]
        )
    return SymmetryFunctions(radial, angular).double()


def descriptor_of(sf: SymmetryFunctions, atoms: Atoms, species: list[str] = SPECIES) -> torch.Tensor:
    graph = physnet.data.from_ase(atoms, RC_RAD, dtype=torch.float64)
    return sf(edge_vectors(graph), graph["edge_index"], SpeciesIndex(species)(graph["z"]))


def species_of(atoms: Atoms) -> list[int]:
    return [SPECIES.index(s) for s in atoms.get_chemical_symbols()]


# ----------------------------------------------------------------------------- hand-computed values
def test_three_atom_values_written_out() -> None:
    """Single entries of the H atom's descriptor, computed by hand from the formulas."""
    p = THREE.positions
    r_hc = 1.1
    r_ho = math.sqrt(0.4**2 + 1.3**2 + 0.35**2)  # 1.4053...
    r_co = math.sqrt(1.5**2 + 1.3**2 + 0.35**2)  # 2.0154...
    cos_h = (1.1 * -0.4) / (r_hc * r_ho)  # angle C-H-O at H
    assert r_ho < RC_ANG and r_co < RC_ANG

    # G2 of H from its C neighbour, eta = 2.0, r_s = 1.0 (radial block of C = species 1, function 1)
    g2_h_c = math.exp(-2.0 * (r_hc - 1.0) ** 2) * 0.5 * (math.cos(math.pi * r_hc / 3.0) + 1)
    # G4 of H with the pair {C, O} (pair (1, 2) = index 4), eta = 0.3, zeta = 2, lambda = -1
    g4 = 2 ** (1 - 2.0) * (1 - cos_h) ** 2.0 * math.exp(-0.3 * (r_hc**2 + r_ho**2 + r_co**2))
    g4 *= fc(r_hc, 2.6) * fc(r_ho, 2.6) * fc(r_co, 2.6)
    # G5: the same without the r_jk terms
    g5 = (
        2 ** (1 - 2.0)
        * (1 - cos_h) ** 2.0
        * math.exp(-0.3 * (r_hc**2 + r_ho**2))
        * fc(r_hc, 2.6)
        * fc(r_ho, 2.6)
    )
    # ANI term, zeta = 32, theta_s = 2.0, eta = 8, r_s = 1.4, with theta = arccos(cos) (c = 1)
    theta = math.acos(cos_h)
    ani = (
        2 ** (1 - 32.0)
        * (1 + math.cos(theta - 2.0)) ** 32.0
        * math.exp(-8.0 * ((r_hc + r_ho) / 2 - 1.4) ** 2)
    )
    ani *= fc(r_hc, 2.6) * fc(r_ho, 2.6)

    n_rad = 3 * 3
    got_g4 = descriptor_of(make_descriptor("g4"), THREE)
    got_g5 = descriptor_of(make_descriptor("g5"), THREE)
    got_ani = descriptor_of(make_descriptor("ani"), THREE)
    assert float(got_g4[0, 1 * 3 + 1]) == pytest.approx(g2_h_c, rel=1e-12)
    assert float(got_g4[0, n_rad + 4 * 3 + 1]) == pytest.approx(g4, rel=1e-12)
    assert float(got_g5[0, n_rad + 4 * 3 + 1]) == pytest.approx(g5, rel=1e-12)
    assert float(got_ani[0, n_rad + 4 * 2 + 1]) == pytest.approx(ani, rel=1e-10)
    # H has one triplet, {C, O}: its other five pair blocks are zero.
    assert torch.count_nonzero(got_g4[0, n_rad:]) == 3
    assert dist(p[1], p[2]) == pytest.approx(r_co)


@pytest.mark.parametrize("kind", ["g4", "g5", "ani"])
@pytest.mark.parametrize("atoms", [THREE, FOUR], ids=["3-atom", "4-atom"])
def test_full_descriptor_matches_loops(kind: str, atoms: Atoms) -> None:
    sf = make_descriptor(kind)
    expected = reference_descriptor(atoms.positions, species_of(atoms), kind)
    np.testing.assert_allclose(descriptor_of(sf, atoms).numpy(), expected, rtol=1e-10, atol=1e-14)
    assert np.count_nonzero(expected[:, 9:]) > 0  # the angular block is exercised


def test_ani_cos_scale_matches_arccos_form() -> None:
    """theta' = arccos(0.95 cos theta), as NeuroChem / torchani."""
    expected = reference_descriptor(FOUR.positions, species_of(FOUR), "ani", cos_scale=0.95)
    got = descriptor_of(make_descriptor("ani", cos_scale=0.95), FOUR)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-14)


def test_four_atom_pair_counting_written_out() -> None:
    """C with neighbours O, H2, H3: its {H, H} block has the one triplet (H2, H3), counted once;
    the papers' double sum over j and k != j read as ordered pairs would give twice this. G4
    of that triplet is 0 (r_jk = 2.80 Å > r_c), G5 is not."""
    p = FOUR.positions
    r1 = math.sqrt(0.5**2 + 0.9**2 + 0.2**2)  # C-H2, 1.0488 Å
    r2 = math.sqrt(1.7**2 + 1.5**2 + 1.0**2)  # C-H3, 2.4779 Å
    r3 = math.sqrt(1.2**2 + 2.4**2 + 0.8**2)  # H2-H3, 2.8000 Å
    cos = ((-0.5) * (-1.7) + 0.9 * (-1.5) + 0.2 * 1.0) / (r1 * r2)
    assert r3 > RC_ANG and dist(p[2], p[3]) == pytest.approx(r3)
    # G5 with eta = 0.1, zeta = 1, lambda = +1 (function 0): 2^0 (1 + cos) e^{-0.1 (r1^2 + r2^2)} fc fc
    once = 2 ** (1 - 1.0) * (1 + cos) * math.exp(-0.1 * (r1**2 + r2**2)) * fc(r1, RC_ANG) * fc(r2, RC_ANG)
    hh = 9 + pair_index(0, 0, 3) * 3  # the {H, H} block of C
    g5 = descriptor_of(make_descriptor("g5"), FOUR)
    g4 = descriptor_of(make_descriptor("g4"), FOUR)
    assert float(g5[0, hh + 0]) == pytest.approx(once, rel=1e-12)
    assert float(g4[0, hh + 0]) == 0.0
    # C's {H, O} block (pair index 2) sums the two triplets (O, H2) and (O, H3)
    assert float(g5[0, 9 + 2 * 3]) > 0 and float(g4[0, 9 + 2 * 3]) > 0


# ----------------------------------------------------------------------------- periodic images
@pytest.mark.parametrize("kind", ["g4", "ani"])
def test_periodic_images_match_cluster(kind: str) -> None:
    """A 2-atom triclinic cell of ~2.3 Å, smaller than the cutoffs, where atoms see their own
    images (and several images of the other atom) vs an explicit non-periodic cluster."""
    cell = np.array([[2.3, 0.0, 0.0], [0.4, 2.4, 0.0], [0.2, -0.3, 2.5]])
    crystal = Atoms("CuAu", scaled_positions=[[0.1, 0.05, 0.0], [0.55, 0.45, 0.6]], cell=cell, pbc=True)
    radial = RadialSymmetryFunctions(2, RADIAL["eta"], RADIAL["shift"], RC_RAD)
    if kind == "ani":
        angular = AngularSymmetryFunctions(2, "ani", RC_ANG, **ANI)
    else:
        angular = AngularSymmetryFunctions(
            2, "g4", RC_ANG, BEHLER["eta"], BEHLER["zeta"], lambda_=BEHLER["lambda"]
        )
    sf = SymmetryFunctions(radial, angular).double()
    periodic = descriptor_of(sf, crystal, ["Cu", "Au"])
    # every image within 3 cells covers the cutoff (the shortest cell height is > 2 Å)
    cluster = crystal.repeat((7, 7, 7))
    cluster.translate(-3 * cell.sum(0))
    cluster.pbc = False
    cluster.cell = np.zeros((3, 3))
    centre = [n for n in range(len(cluster)) if np.allclose(cluster.positions[n], crystal.positions[n % 2])][
        :2
    ]
    assert len(centre) == 2
    explicit = descriptor_of(sf, cluster, ["Cu", "Au"])[centre]
    np.testing.assert_allclose(periodic.numpy(), explicit.numpy(), rtol=1e-10, atol=1e-12)
    graph = physnet.data.from_ase(crystal, RC_RAD)
    self_images = graph["edge_index"][0] == graph["edge_index"][1]
    assert bool(self_images.any())  # the test exercises own images


# ----------------------------------------------------------------------------- gradients and numerics
@pytest.mark.parametrize("kind,cos_scale", [("g4", 1.0), ("g5", 1.0), ("ani", 0.95), ("ani", 1.0)])
def test_gradients_match_finite_differences(kind: str, cos_scale: float) -> None:
    sf = make_descriptor(kind, cos_scale)
    graph = physnet.data.from_ase(FOUR, RC_RAD, dtype=torch.float64)
    species = SpeciesIndex(SPECIES)(graph["z"])

    def descriptor(pos: torch.Tensor) -> torch.Tensor:
        return sf(edge_vectors({**graph, "pos": pos}), graph["edge_index"], species)

    pos = graph["pos"].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(descriptor, (pos,), eps=1e-6, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("kind,cos_scale", [("g4", 1.0), ("g5", 1.0), ("ani", 0.95), ("ani", 1.0)])
def test_collinear_and_coincident_atoms_give_finite_gradients(kind: str, cos_scale: float) -> None:
    """Collinear triplets (cos theta = +-1) and a zero-length edge (two atoms on one spot)."""
    sf = make_descriptor(kind, cos_scale)
    atoms = Atoms("HCOH", positions=[[0, 0, 0], [1.0, 0, 0], [-1.2, 0, 0], [1.0, 0, 0]])
    graph = physnet.data.from_ase(atoms, RC_RAD, dtype=torch.float64)
    pos = graph["pos"].clone().requires_grad_(True)
    x = sf(edge_vectors({**graph, "pos": pos}), graph["edge_index"], SpeciesIndex(SPECIES)(graph["z"]))
    (grad,) = torch.autograd.grad(x.sum(), pos)
    assert torch.isfinite(x).all() and torch.isfinite(grad).all()


@pytest.mark.parametrize("kind", ["g4", "ani"])
def test_no_triplets_and_no_edges(kind: str) -> None:
    """A pair (no angle) and an isolated atom (no edge at all) give zero angular blocks."""
    sf = make_descriptor(kind)
    atoms = Atoms("HOC", positions=[[0, 0, 0], [0.97, 0, 0], [20.0, 0, 0]])
    x = descriptor_of(sf, atoms)
    assert x.shape == (3, sf.n_features) and float(x[:, 9:].abs().max()) == 0.0
    assert float(x[2].abs().max()) == 0.0 and float(x[0, 2 * 3]) > 0  # H sees O


def test_edge_order_does_not_matter() -> None:
    sf = make_descriptor("g4")
    graph = physnet.data.from_ase(FOUR, RC_RAD, dtype=torch.float64)
    species = SpeciesIndex(SPECIES)(graph["z"])
    perm = torch.randperm(graph["edge_index"].shape[1], generator=torch.Generator().manual_seed(0))
    shuffled = {**graph, "edge_index": graph["edge_index"][:, perm], "edge_shift": graph["edge_shift"][perm]}
    torch.testing.assert_close(
        sf(edge_vectors(graph), graph["edge_index"], species),
        sf(edge_vectors(shuffled), shuffled["edge_index"], species),
        rtol=1e-13,
        atol=1e-15,
    )


def test_angle_triplets_are_all_unordered_pairs() -> None:
    rng = np.random.default_rng(0)
    centre = torch.tensor(rng.integers(0, 6, size=40))
    first, second = angle_triplets(centre, 7)  # atom 6 has no edges
    got = {tuple(sorted(p)) for p in zip(first.tolist(), second.tolist(), strict=True)}
    expected = {(a, b) for a in range(40) for b in range(a + 1, 40) if centre[a] == centre[b]}
    assert got == expected and len(first) == len(expected)
    empty = angle_triplets(torch.zeros(0, dtype=torch.long), 3)
    assert empty[0].numel() == 0 and empty[1].numel() == 0


# ----------------------------------------------------------------------------- parameter sets
def test_parameter_generators() -> None:
    assert evenly_spaced(16, 0.9, 5.2)[:2] == pytest.approx([0.9, 0.9 + 4.3 / 16])
    assert ani_sections(8) == pytest.approx([math.pi / 16 + m * math.pi / 8 for m in range(8)])
    radial, angular = ani_radial(), ani_angular()
    assert len(radial["shift"]) == 16 and set(radial["eta"]) == {16.0}
    assert len(angular["theta"]) == 32 and angular["shift"][:9:8] == pytest.approx([0.9, 1.55])
    g = behler_angular(eta=[0.1], zeta=[1.0, 2.0], lambdas=[1.0, -1.0])
    assert g["lambda"] == [1.0, -1.0, 1.0, -1.0] and g["zeta"] == [1.0, 1.0, 2.0, 2.0]


def test_bad_parameters_are_rejected() -> None:
    with pytest.raises(ValueError, match="lambda must be"):
        AngularSymmetryFunctions(2, "g4", 3.0, [0.1], [1.0], lambda_=[0.5])
    with pytest.raises(ValueError, match="one entry per function"):
        RadialSymmetryFunctions(2, [1.0, 2.0], [0.0], 3.0)
    with pytest.raises(ValueError, match="unknown angular kind"):
        AngularSymmetryFunctions(2, "g3", 3.0, [0.1], [1.0])
    with pytest.raises(ValueError, match="zeta"):
        AngularSymmetryFunctions(2, "ani", 3.0, [0.1], [0.5], shift=[1.0], theta=[0.0])
