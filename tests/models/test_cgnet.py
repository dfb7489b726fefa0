"""CGnet through physnet's test kit, with the CG priors, plus its own contract checks."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms

import physnet
import physnet.models.cgnet  # noqa: F401  (registers "cgnet")
from physnet.data import keys as K
from physnet.data.graph import collate, from_ase
from physnet.models.cgnet import CGnet, cg_features, n_cg_features
from physnet.nn.cg_geometry import bead_graph
from physnet.nn.priors import fit_cg_priors
from physnet.testing import assert_kit, check_permutation, check_reflection, evaluate, run_kit

SYMBOLS = "CNCCN"  # C(ACE) N CA C N(NME)
Z = torch.tensor([6, 7, 6, 6, 7])
# one alanine dipeptide CG frame (Å), from the embedded ala2_cg_amber set
FRAME = np.array(
    [
        [-0.01365985, 2.15312977, -0.12781153],
        [-0.51455306, 0.97692344, -0.51461703],
        [-0.82608707, -0.15108568, 0.38653772],
        [0.09768050, -1.29051121, 0.06201323],
        [0.08469149, -2.27714167, 0.98159515],
    ]
)
KIT_CHECKS = ["rotation", "translation", "forces_fd", "batch", "cross_gradients"]


def synthetic_frames(n: int = 200, seed: int = 0) -> np.ndarray:
    """[n, 5, 3] thermal-looking perturbations of FRAME (Å)."""
    rng = np.random.default_rng(seed)
    return FRAME[None] + rng.normal(scale=0.08, size=(n, 5, 3))


def make_potential(reflection_invariant: bool = False, priors: bool = True) -> physnet.Potential:
    torch.manual_seed(0)
    model = physnet.models.build(
        "cgnet", species=["C", "N"], n_beads=5, width=32, reflection_invariant=reflection_invariant
    )
    frames = synthetic_frames()
    model.fit_statistics([bead_graph(torch.tensor(f[None], dtype=torch.float32), Z) for f in frames])
    fitted = fit_cg_priors(frames, temperature=300.0, energy_unit="kcal/mol") if priors else {}
    return physnet.Potential(model, fitted, energy_unit="kcal/mol")


@pytest.fixture(scope="module")
def potential() -> physnet.Potential:
    return make_potential()


def ev(potential: physnet.Potential, atoms: Atoms) -> dict[str, np.ndarray]:
    """float64 evaluation of a copy of ``potential``."""
    return evaluate(copy.deepcopy(potential).double().eval(), atoms)


def molecule() -> Atoms:
    return Atoms(SYMBOLS, positions=synthetic_frames(1, seed=7)[0])


def test_cgnet_with_priors_passes_kit(potential: physnet.Potential) -> None:
    report = run_kit(potential, molecule(), checks=KIT_CHECKS)
    assert {"rotation_energy", "rotation_forces", "translation_energy", "forces_fd"} <= set(report)
    assert_kit(report, torch.float64)


def test_reflection_invariant_option_passes_reflection() -> None:
    report = check_reflection(make_potential(reflection_invariant=True), molecule())
    assert_kit(report, torch.float64)


def test_default_cgnet_is_chiral(potential: physnet.Potential) -> None:
    """Dihedral sines make the default model tell a molecule from its mirror image (alanine is chiral)."""
    report = check_reflection(potential, molecule())
    assert report["reflection_energy"] > 1e-6


def test_not_permutation_invariant_by_design(potential: physnet.Potential) -> None:
    """Documented: the features follow the bead order, so permuting beads changes the energy."""
    report = check_permutation(potential, molecule(), same_element=False)
    assert report["permutation_energy"] > 1e-6


def test_bead_count_mismatch_is_rejected(potential: physnet.Potential) -> None:
    four = from_ase(Atoms("CNCC", positions=FRAME[:4]), potential.cutoff, dtype=torch.float32)
    with pytest.raises(ValueError, match="beads"):
        potential(four)
    five = from_ase(Atoms(SYMBOLS, positions=FRAME), potential.cutoff, dtype=torch.float32)
    with pytest.raises(ValueError, match="same number of beads"):
        potential(collate([five, four]))


def test_energy_terms_reported_separately(potential: physnet.Potential) -> None:
    out = ev(potential, molecule())
    terms = ["model", "reference", "bonds", "angles", "repulsion"]
    for name in terms:
        assert K.energy_term_key(name) in out
    total = sum(out[K.energy_term_key(name)] for name in terms)
    np.testing.assert_allclose(out[K.ENERGY], total, rtol=1e-12)
    assert out[K.energy_term_key("bonds")][0] > 0


def test_no_nan_for_collinear_beads(potential: physnet.Potential) -> None:
    line = np.array([[0.0, 0, 0], [1.4, 0, 0], [2.8, 0, 0], [4.2, 0, 0], [5.6, 0, 0]])
    out = ev(potential, Atoms(SYMBOLS, positions=line))
    assert np.isfinite(out[K.ENERGY]).all() and np.isfinite(out[K.FORCES]).all()


def test_fit_statistics_normalises_features() -> None:
    model = CGnet(["C", "N"], n_beads=5, width=8, n_layers=1)
    frames = torch.tensor(synthetic_frames(300))
    model.fit_statistics([bead_graph(frames.float(), Z)])
    assert model.feature_mean.shape == (n_cg_features(5),) == (17,)  # 10 distances, 3 angles, 2 cos, 2 sin
    x = (cg_features(frames.float()) - model.feature_mean) / model.feature_std
    torch.testing.assert_close(x.mean(0), torch.zeros(17), atol=1e-4, rtol=0)
    torch.testing.assert_close(x.std(0, unbiased=False), torch.ones(17), atol=1e-4, rtol=0)


def test_defaults_follow_paper() -> None:
    model = physnet.models.build("cgnet", species=["C", "N"], n_beads=5)
    linears = [m for m in model.net if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [160] * 5 + [1]
    assert isinstance(model.net[1], torch.nn.Tanh)
    assert model.per_atom is False
    assert model.hparams["n_beads"] == 5


def test_save_load_round_trip(potential: physnet.Potential, tmp_path: Path) -> None:
    path = tmp_path / "cgnet.pt"
    potential.save(path)
    loaded = physnet.Potential.load(path)
    a, b = ev(potential, molecule()), ev(loaded, molecule())
    for key in (K.ENERGY, K.FORCES, "energy_model", "energy_bonds", "energy_angles", "energy_repulsion"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-12, atol=0)
    torch.testing.assert_close(loaded.model.feature_std, potential.model.feature_std)


def test_calculator_runs_ase_md_on_beads(potential: physnet.Potential) -> None:
    """The CG potential (network + priors) works through physnet.Calculator on bead Atoms: energies
    and forces in eV / eV/Å match the potential's kcal/mol, forces match ASE's finite differences,
    and a short ASE Langevin run keeps every bond intact."""
    from ase import units
    from ase.calculators.fd import calculate_numerical_forces
    from ase.md.langevin import Langevin

    atoms = molecule()
    atoms.calc = physnet.Calculator(potential, dtype=torch.float64)
    kcal = units.kcal / units.mol  # eV per kcal/mol
    ref = ev(potential, atoms)
    assert atoms.get_potential_energy() == pytest.approx(float(ref["energy"][0]) * kcal, rel=1e-10)
    np.testing.assert_allclose(atoms.get_forces(), ref["forces"] * kcal, rtol=1e-9, atol=1e-12)
    numeric = calculate_numerical_forces(atoms, eps=1e-5)
    np.testing.assert_allclose(atoms.get_forces(), numeric, rtol=1e-5, atol=1e-6)
    atoms.set_masses([12.011, 14.007, 12.011, 12.011, 14.007])
    Langevin(
        atoms,
        2 * units.fs,
        temperature_K=300,
        friction=0.01 / units.fs,
        fixcm=False,
        rng=np.random.default_rng(0),
    ).run(200)
    bonds = np.linalg.norm(np.diff(atoms.positions, axis=0), axis=1)
    assert np.isfinite(atoms.get_potential_energy()) and (bonds < 2.5).all() and (bonds > 0.9).all()
