"""Coarse-grained priors: Boltzmann inversion, units, kit, save/load, shared-data fit."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms

import physnet
import physnet.models.cgnet  # noqa: F401  (registers "cgnet")
from physnet.nn.cg_geometry import (
    angles,
    bead_graph,
    consecutive_pairs,
    consecutive_triples,
    dihedrals,
    distances,
)
from physnet.nn.priors import (
    BeadRepulsion,
    FourierDihedrals,
    HarmonicAngles,
    HarmonicBonds,
    boltzmann_constant,
    boltzmann_inversion,
    build_prior,
    fit_cg_priors,
)
from physnet.testing import assert_kit, evaluate, run_kit

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
KT = 0.0019872 * 300.0  # kcal/mol at 300 K


def harmonic_chains(n: int, k_bond: float, r0: float, k_angle: float, theta0: float, seed: int = 0):
    """[n, 3, 3] three-bead chains whose bond lengths and angle are independent Gaussians with
    the Boltzmann variances kT/k of E = k/2 (x - x0)^2 (an exact sample of that distribution)."""
    rng = np.random.default_rng(seed)
    r1 = rng.normal(r0, np.sqrt(KT / k_bond), n)
    r2 = rng.normal(r0, np.sqrt(KT / k_bond), n)
    theta = rng.normal(theta0, np.sqrt(KT / k_angle), n)
    pos = np.zeros((n, 3, 3))
    pos[:, 0, 0] = r1
    pos[:, 2, 0] = r2 * np.cos(theta)
    pos[:, 2, 1] = r2 * np.sin(theta)
    return pos


def test_boltzmann_constant_in_kcal_per_mol() -> None:
    assert boltzmann_constant("kcal/mol") == pytest.approx(0.0019872, rel=1e-4)
    assert boltzmann_constant("eV") == pytest.approx(8.617333e-5, rel=1e-6)


def test_boltzmann_inversion_recovers_gaussian() -> None:
    rng = np.random.default_rng(0)
    samples = torch.tensor(rng.normal([1.5, 2.0], np.sqrt(KT / np.array([300.0, 50.0])), (200_000, 2)))
    k, x0 = boltzmann_inversion(samples, KT)
    np.testing.assert_allclose(k.numpy(), [300.0, 50.0], rtol=0.01)
    np.testing.assert_allclose(x0.numpy(), [1.5, 2.0], atol=1e-3)


def test_priors_recover_known_constants() -> None:
    pos = harmonic_chains(100_000, k_bond=250.0, r0=1.45, k_angle=40.0, theta0=1.9)
    bonds = HarmonicBonds(3, temperature=300.0).fit(pos)
    angle = HarmonicAngles(3, temperature=300.0).fit(pos)
    np.testing.assert_allclose(bonds.k.numpy(), [250.0, 250.0], rtol=0.02)
    np.testing.assert_allclose(bonds.x0.numpy(), [1.45, 1.45], atol=1e-3)
    np.testing.assert_allclose(angle.k.numpy(), [40.0], rtol=0.02)
    np.testing.assert_allclose(angle.x0.numpy(), [1.9], atol=1e-3)


def test_energy_unit_scales_constants() -> None:
    pos = harmonic_chains(1000, 250.0, 1.45, 40.0, 1.9)
    kcal = HarmonicBonds(3, energy_unit="kcal/mol").fit(pos)
    ev = HarmonicBonds(3, energy_unit="eV").fit(pos)
    ratio = physnet.units.energy_factor("kcal/mol")
    torch.testing.assert_close(ev.k, kcal.k * ratio)


def test_prior_energies_by_hand() -> None:
    pos = torch.tensor(harmonic_chains(500, 250.0, 1.45, 40.0, 1.9), dtype=torch.float32)
    graph = bead_graph(pos[:4], torch.tensor([6, 7, 6]))
    bonds = HarmonicBonds(3).fit(pos)
    angle = HarmonicAngles(3).fit(pos)
    r = distances(pos[:4], consecutive_pairs(3))
    theta = angles(pos[:4], consecutive_triples(3))
    torch.testing.assert_close(bonds(graph), (0.5 * bonds.k * (r - bonds.x0) ** 2).sum(-1))
    torch.testing.assert_close(angle(graph), (0.5 * angle.k * (theta - angle.x0) ** 2).sum(-1))


def test_repulsion_is_kT_at_closest_approach() -> None:
    rng = np.random.default_rng(1)
    pos = np.cumsum(rng.normal(size=(300, 5, 3)), axis=1)
    rep = BeadRepulsion(5, min_separation=3, temperature=300.0).fit(pos)
    assert rep.index.tolist() == [[0, 3], [0, 4], [1, 4]]
    r = distances(torch.tensor(pos), rep.index)
    frame = int(r[:, 0].argmin())
    energy = rep(bead_graph(torch.tensor(pos[frame : frame + 1], dtype=torch.float32), torch.full((5,), 6)))
    assert float(energy[0]) >= KT * (1 - 1e-4)  # the closest pair alone contributes kT
    assert rep.sigma[0] == pytest.approx(float(r[:, 0].min()), rel=1e-6)


def test_unfitted_prior_refuses() -> None:
    with pytest.raises(RuntimeError, match="not been fitted"):
        HarmonicBonds(3)(bead_graph(torch.zeros(1, 3, 3), torch.tensor([6, 6, 6])))


def test_unit_mismatch_with_potential() -> None:
    model = physnet.models.build("cgnet", species=["C"], n_beads=3, width=8, n_layers=1)
    with pytest.raises(ValueError, match="energy_unit"):
        physnet.Potential(model, {"bonds": HarmonicBonds(3, energy_unit="eV")}, energy_unit="kcal/mol")


def test_build_prior_rebuilds_with_buffers() -> None:
    pos = np.cumsum(np.random.default_rng(2).normal(size=(100, 5, 3)), axis=1)
    graph = bead_graph(torch.tensor(pos[:3], dtype=torch.float32), torch.full((5,), 6))
    for prior in fit_cg_priors(pos).values():
        again = build_prior(prior.hparams)
        again.load_state_dict(prior.state_dict())
        torch.testing.assert_close(again(graph), prior(graph))


def test_prior_only_potential_passes_kit() -> None:
    """The priors alone (network output zeroed) are invariant with exact forces."""
    torch.manual_seed(0)
    pos = np.cumsum(np.random.default_rng(3).normal(scale=0.9, size=(200, 5, 3)), axis=1)
    model = physnet.models.build("cgnet", species=["C", "N"], n_beads=5, width=8, n_layers=1)
    torch.nn.init.zeros_(model.net[-1].weight)
    torch.nn.init.zeros_(model.net[-1].bias)
    pot = physnet.Potential(model, fit_cg_priors(pos), energy_unit="kcal/mol")
    atoms = Atoms("CNCCN", positions=pos[5])
    report = run_kit(pot, atoms, checks=["rotation", "reflection", "translation", "forces_fd"])
    assert_kit(report, torch.float64)
    out = evaluate(copy.deepcopy(pot).double(), atoms)
    assert out["energy_model"][0] == 0.0 and out["energy_bonds"][0] > 0


@pytest.fixture(scope="module")
def shared_positions() -> np.ndarray:
    path = SHARED / "ala2_cg_coordinates.npy"
    if not path.is_file():
        pytest.skip(
            f"shared alanine dipeptide data not found at {path.resolve()} (see ../shared/data/README.md)"
        )
    return np.load(path)


def test_priors_on_shared_alanine_dipeptide(shared_positions: np.ndarray) -> None:
    priors = fit_cg_priors(shared_positions[:8000], temperature=300.0, energy_unit="kcal/mol")
    x0 = priors["bonds"].x0.numpy()
    assert ((x0 > 1.2) & (x0 < 1.6)).all()  # backbone bond lengths, Å
    assert (priors["bonds"].k.numpy() > 50).all()  # stiff bonds, kcal/mol/Å^2
    theta0 = np.degrees(priors["angles"].x0.numpy())
    assert ((theta0 > 100) & (theta0 < 130)).all()
    held_out = bead_graph(torch.tensor(shared_positions[8000:]), torch.tensor([6, 7, 6, 6, 7]))
    energy = sum(p(held_out) for p in priors.values())
    assert torch.isfinite(energy).all()
    # mean prior energy of held-out frames ~ (n_bonds + n_angles) kT / 2 by equipartition
    assert float(energy.mean()) == pytest.approx(7 * KT / 2, rel=0.5)


def _chains_with_dihedral(phi: np.ndarray) -> np.ndarray:
    """[n, 4, 3] unit-bond chains with right bend angles and dihedral ``phi`` (radians)."""
    n = len(phi)
    pos = np.zeros((n, 4, 3))
    pos[:, 0] = [0.0, 1.0, 0.0]
    pos[:, 2] = [1.0, 0.0, 0.0]
    pos[:, 3] = np.stack([np.ones(n), np.cos(phi), np.sin(phi)], axis=1)
    return pos


def test_fourier_dihedral_prior_recovers_the_pmf() -> None:
    """Frames drawn from p(phi) ~ exp(-U(phi)/kT) with a 2-term U: the fitted prior is U + const."""
    rng = np.random.default_rng(0)

    def u(phi: np.ndarray) -> np.ndarray:
        return 0.8 * np.cos(phi) - 0.5 * np.sin(2 * phi)  # kcal/mol

    grid = np.linspace(-np.pi, np.pi, 20001)[:-1]
    p = np.exp(-u(grid) / KT)
    phi = rng.choice(grid, size=200_000, p=p / p.sum())
    pos = _chains_with_dihedral(phi)
    measured = dihedrals(torch.tensor(pos[:5]), torch.tensor([[0, 1, 2, 3]]))[:, 0].numpy()
    assert np.allclose(np.abs(measured), np.abs(phi[:5]), atol=1e-9)
    sign = float(np.sign(measured[0] * phi[0]))
    prior = FourierDihedrals(4, n_terms=3, temperature=300.0).double().fit(pos)
    test_phi = np.linspace(-3.0, 3.0, 13)
    energy = prior(bead_graph(torch.tensor(_chains_with_dihedral(test_phi)), torch.full((4,), 6)))
    expected = u(sign * test_phi)
    shift = float((energy.numpy() - expected).mean())
    np.testing.assert_allclose(energy.numpy() - shift, expected, atol=0.03)
    assert prior.hparams["name"] == "fourier_dihedrals" and bool(prior.fitted)
    with pytest.raises(ValueError, match="4 beads"):
        FourierDihedrals(3)


def test_fourier_dihedral_prior_keeps_its_minimum_where_the_data_are() -> None:
    """Data only in -120..-20 degrees (half the bins empty, as in a short alanine-dipeptide run):
    the fitted series has its minimum inside the sampled range and is high where no frame went
    (empty bins count as half a visit; left out, the minimum can fall in the empty half)."""
    rng = np.random.default_rng(1)
    phi = np.deg2rad(np.concatenate([rng.normal(-70.0, 15.0, 4000), rng.uniform(-120.0, -20.0, 500)]))
    phi = phi[(phi > np.deg2rad(-120)) & (phi < np.deg2rad(-20))]
    pos = _chains_with_dihedral(phi)
    sign = float(np.sign(dihedrals(torch.tensor(pos[:1]), torch.tensor([[0, 1, 2, 3]]))[0, 0] * phi[0]))
    prior = FourierDihedrals(4, n_terms=3, temperature=300.0).double().fit(pos)
    grid = np.deg2rad(np.arange(-180.0, 180.0, 1.0))
    energy = prior(bead_graph(torch.tensor(_chains_with_dihedral(sign * grid)), torch.full((4,), 6))).numpy()
    lowest = np.rad2deg(grid[np.argmin(energy)])
    assert -120.0 < lowest < -20.0, f"prior minimum at {lowest:.0f} degrees, outside the data"
    unseen = (grid > np.deg2rad(20)) & (grid < np.deg2rad(160))
    assert energy[unseen].min() - energy.min() > 3 * KT  # the empty half is uphill
