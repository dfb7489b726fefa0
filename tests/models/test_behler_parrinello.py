"""Behler-Parrinello network through physnet's test kit, plus its own checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

import physnet
import physnet.models.behler_parrinello  # noqa: F401  (registers "behler_parrinello")
from physnet.data import keys as K
from physnet.testing import assert_kit, reference_structures, run_kit

SPECIES = ["H", "C", "O", "Cu", "Au"]


def _rattled(atoms: Atoms, n: int, seed: int) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = atoms.copy()
        a.positions += rng.normal(scale=0.1, size=a.positions.shape)
        out.append(a)
    return out


def _fitted(angular: str = "ani", dtype: torch.dtype = torch.float64) -> physnet.Potential:
    """A potential whose feature statistics come from rattled copies of the kit's structures,
    so the kit runs with a non-trivial normalisation."""
    torch.manual_seed(0)
    model = physnet.models.build("behler_parrinello", species=SPECIES, angular=angular, hidden=[32, 16])
    molecule, crystal = reference_structures()
    frames = _rattled(molecule, 4, 0) + _rattled(crystal, 4, 1)
    model.to(dtype).fit_statistics([physnet.data.from_ase(a, model.cutoff, dtype=dtype) for a in frames])
    return physnet.Potential(model)


@pytest.fixture(scope="module")
def potential() -> physnet.Potential:
    return _fitted()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_passes_kit(potential: physnet.Potential, dtype: torch.dtype) -> None:
    """float64 with fitted feature statistics; float32 as built (identity normalisation), as
    the other models' tests run it: standardising features that vary by ~1e-3 in 8 rattled
    frames makes a random network stiff, and float32 rounding of the inputs then moves the
    crystal's stress by up to ~7e-5 relative (see test_fitted_float32_kit_is_near_float_precision)."""
    molecule, crystal = reference_structures()
    if dtype == torch.float32:
        torch.manual_seed(0)
        potential = physnet.Potential(
            physnet.models.build("behler_parrinello", species=SPECIES, hidden=[32, 16])
        )
    report = run_kit(potential, molecule, crystal, dtype=dtype)
    assert_kit(report, dtype, complete=True)


def test_fitted_float32_kit_is_near_float_precision(potential: physnet.Potential) -> None:
    """With fitted statistics float32 stays within a few 1e-5 (measured: 7e-5 on the crystal's
    stress under reflection, 1e-6 on molecular forces vs finite differences); the guard is
    against gross losses such as an unfloored std amplifying round-off by 1e4."""
    molecule, crystal = reference_structures()
    report = run_kit(potential, molecule, crystal, dtype=torch.float32)
    assert max(report.values()) < 3e-4, report
    assert max(v for k, v in report.items() if not k.endswith("_periodic")) < 2e-5, report


@pytest.mark.parametrize("angular", ["g4", "g5", "none"])
def test_other_descriptors_pass_kit(angular: str) -> None:
    molecule, crystal = reference_structures()
    checks = ["rotation", "forces_fd", "stress_fd", "batch"]
    assert_kit(run_kit(_fitted(angular), molecule, crystal, checks=checks), torch.float64)


def test_registry_defaults_are_ani_sized_and_plain() -> None:
    assert "behler_parrinello" in physnet.models.available()
    model = physnet.models.build("behler_parrinello", species=["H", "C", "N", "O"])
    hp = model.hparams
    assert hp["name"] == "behler_parrinello" and hp["angular"] == "ani" and hp["activation"] == "celu"
    assert list(hp["hidden"]) == [160, 128, 96]
    assert model.cutoff == 5.2
    assert model.descriptor.n_features == 4 * 16 + 10 * 32  # ANI-1x's AEV length
    assert model.descriptor.radial.eta.unique().tolist() == [16.0]
    assert model.descriptor.radial.shift[:2].tolist() == pytest.approx([0.9, 0.9 + 4.3 / 16])
    assert [layer.out_features for layer in model.networks["H"] if hasattr(layer, "out_features")] == [
        160,
        128,
        96,
        1,
    ]
    json.loads(json.dumps(hp))  # plain types only
    rebuilt = physnet.models.build(hp["name"], **{k: v for k, v in hp.items() if k != "name"})
    assert rebuilt.descriptor.n_features == 384


def test_explicit_parameter_lists() -> None:
    model = physnet.models.build(
        "behler_parrinello",
        species=["H", "O"],
        cutoff=4.0,
        radial_eta=[0.5, 4.0],
        radial_shifts=[0.0, 1.0, 2.0],
        angular="g4",
        angular_cutoff=4.5,
        angular_eta=[0.01],
        angular_zeta=[1.0, 8.0],
        angular_lambda=[1.0, -1.0],
    )
    assert model.cutoff == 4.5  # the neighbour list must reach the longer angular cutoff
    assert model.descriptor.radial.n_features == 2 * 6
    assert model.descriptor.angular.n_features == 3 * 4


def test_per_element_hidden_sizes() -> None:
    hidden = {"H": [160, 128, 96], "C": [144, 112, 96], "O": [128, 112, 96]}  # ANI-1x
    model = physnet.models.build("behler_parrinello", species=["H", "C", "O"], hidden=hidden)
    assert model.networks["C"][0].out_features == 144 and model.networks["O"][2].out_features == 112
    json.loads(json.dumps(model.hparams))
    with pytest.raises(ValueError, match="N"):
        physnet.models.build("behler_parrinello", species=["H", "N"], hidden={"H": [8]})


def test_fit_statistics_sets_buffers_that_survive_save_and_load(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = physnet.models.build("behler_parrinello", species=["H", "C", "O", "N"], hidden=[16])
    assert bool((model.feature_mean == 0).all()) and bool((model.feature_std == 1).all())
    frames = [physnet.data.from_ase(a, model.cutoff) for a in _rattled(reference_structures()[0], 6, 2)]
    model.fit_statistics(frames)
    h, n = model.species.atomic_numbers.index(1), model.species.atomic_numbers.index(7)
    assert bool((model.feature_mean[h] != 0).any()) and bool((model.feature_std[h] != 1).any())
    # N is absent from the data: identity normalisation
    assert bool((model.feature_mean[n] == 0).all()) and bool((model.feature_std[n] == 1).all())
    # the training atoms of an element are standardised: mean 0, std 1 on non-constant features
    batch = physnet.data.collate(frames)
    x, species = model.descriptors(batch)
    xh = ((x[species == h] - model.feature_mean[h]) / model.feature_std[h]).double()
    assert xh.mean(0).abs().max() < 1e-4
    # features that vary clearly (std above the floors) come out with std 1, the others less
    std = xh.std(0, unbiased=False)
    mean = model.feature_mean[h].double()
    clear = x[species == h].double().std(0, unbiased=False) > torch.maximum(
        1e-2 * mean.abs(), torch.tensor(1e-3)
    )
    assert int(clear.sum()) > 10
    torch.testing.assert_close(std[clear], torch.ones(int(clear.sum()), dtype=std.dtype))
    assert bool((std <= 1 + 1e-6).all())

    pot = physnet.Potential(model)
    pot.save(tmp_path / "bp.pt")
    loaded = physnet.Potential.load(tmp_path / "bp.pt")
    torch.testing.assert_close(loaded.model.feature_mean, model.feature_mean, rtol=0, atol=0)
    torch.testing.assert_close(loaded.model.feature_std, model.feature_std, rtol=0, atol=0)
    graph = frames[0]
    torch.testing.assert_close(loaded(graph)[K.ENERGY], pot(graph)[K.ENERGY], rtol=0, atol=0)


def test_same_element_same_environment_same_energy() -> None:
    """Parameters are shared within an element: symmetric H atoms of water, and every atom of
    a perfect periodic fcc Cu crystal, get identical atomic energies."""
    torch.manual_seed(4)
    pot = physnet.Potential(physnet.models.build("behler_parrinello", species=["H", "O", "Cu"])).double()
    water = Atoms("OHH", positions=[[0, 0, 0], [0.76, 0.59, 0], [-0.76, 0.59, 0]])
    e = pot(physnet.data.from_ase(water, pot.cutoff, dtype=torch.float64))[K.ATOMIC_ENERGY]
    e = e.detach()
    assert float(e[1]) == pytest.approx(float(e[2]), rel=1e-13) and float(e[1]) != pytest.approx(float(e[0]))
    copper = bulk("Cu", "fcc", a=3.6, cubic=True)
    e = pot(physnet.data.from_ase(copper, pot.cutoff, dtype=torch.float64))[K.ATOMIC_ENERGY]
    torch.testing.assert_close(e, e[:1].expand(4), rtol=1e-13, atol=0)


def test_each_element_has_its_own_network() -> None:
    """Changing the H network changes H atomic energies only."""
    torch.manual_seed(5)
    model = physnet.models.build("behler_parrinello", species=["H", "C", "O"], hidden=[16, 16])
    graph = physnet.data.from_smiles("CCO", cutoff=model.cutoff)[0]
    before = model(graph).detach()
    with torch.no_grad():
        model.networks["H"][0].weight.mul_(1.5)
    after = model(graph).detach()
    is_h = graph[K.Z] == 1
    assert bool((after[is_h] != before[is_h]).all())
    torch.testing.assert_close(after[~is_h], before[~is_h], rtol=0, atol=0)


def test_unknown_element_is_named() -> None:
    pot = physnet.Potential(physnet.models.build("behler_parrinello", species=["H", "C", "O"], hidden=[8]))
    graph = physnet.data.from_ase(Atoms("CuO", positions=[[0, 0, 0], [1.8, 0, 0]]), pot.cutoff)
    with pytest.raises(ValueError, match="Cu"):
        pot(graph)


def test_bad_hparams() -> None:
    with pytest.raises(ValueError, match="angular kind"):
        physnet.models.build("behler_parrinello", species=["H"], angular="g3")
    with pytest.raises(ValueError, match="activation"):
        physnet.models.build("behler_parrinello", species=["H"], activation="relu6")
    with pytest.raises(TypeError, match="unknown argument"):
        physnet.models.build("behler_parrinello", species=["H"], n_features=3)


def test_energy_is_smooth_at_cutoff() -> None:
    torch.manual_seed(6)
    pot = (
        physnet.Potential(physnet.models.build("behler_parrinello", species=["H"], hidden=[8]))
        .double()
        .eval()
    )

    def energy(r: float) -> float:
        atoms = Atoms("H2", positions=[[0, 0, 0], [r, 0, 0]])
        return float(pot(physnet.data.from_ase(atoms, pot.cutoff, dtype=torch.float64))[K.ENERGY])

    isolated = energy(20.0)
    assert abs(energy(5.2 - 1e-6) - isolated) < 1e-9
    assert abs(energy(5.0) - isolated) > 1e-9


def test_calculator_periodic_stress(potential: physnet.Potential) -> None:
    atoms = bulk("Cu", "fcc", a=3.6).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=0)
    atoms.calc = physnet.Calculator(potential, dtype=torch.float64)
    stress = atoms.get_stress()
    assert stress.shape == (6,) and np.isfinite(stress).all() and np.abs(stress).max() > 0
    assert np.isfinite(atoms.get_forces()).all()


def test_forward_does_not_store_state(potential: physnet.Potential) -> None:
    graph = physnet.data.from_smiles("CCO", cutoff=potential.cutoff, dtype=torch.float64)[0]
    before = {k: v for k, v in vars(potential.model).items() if not k.startswith("_")}
    potential(graph)
    after = {k: v for k, v in vars(potential.model).items() if not k.startswith("_")}
    assert before.keys() == after.keys()


def test_frozen_copy_folds_normalisation_and_matches() -> None:
    torch.manual_seed(0)
    model = physnet.models.build("behler_parrinello", species=["H", "C", "O"], hidden=[16, 8])
    graphs = [physnet.data.from_ase(a, model.cutoff) for a in physnet.data.from_smiles("CCO", n_conformers=3)]
    model.fit_statistics(graphs)
    pot = physnet.Potential(model).double().eval()
    frozen = pot.frozen()
    assert frozen.model._identity_normalization and not pot.model._identity_normalization
    assert torch.equal(frozen.model.feature_std, torch.ones_like(frozen.model.feature_std))
    graph = physnet.data.from_ase(physnet.data.from_smiles("OCC=O")[0], model.cutoff, dtype=torch.float64)
    a, b = pot(graph), frozen(graph)
    assert torch.allclose(a["energy"], b["energy"], rtol=1e-12, atol=1e-12)
    assert torch.allclose(a["forces"], b["forces"], rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="folded"):
        frozen.model.fit_statistics(graphs)


def test_frozen_copy_in_atom_chunks_matches_whole_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    import physnet.models.behler_parrinello as bp

    torch.manual_seed(0)
    model = physnet.models.build("behler_parrinello", species=["Cu", "Au"], hidden=[16, 8])
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True).repeat((3, 3, 3))
    atoms.numbers[::5] = 79
    atoms.rattle(0.05, seed=0)
    frozen = physnet.Potential(model).double().frozen()
    graph = physnet.data.from_ase(atoms, model.cutoff, dtype=torch.float64)
    whole = frozen(graph)
    monkeypatch.setattr(bp, "CHUNK_ATOMS", 10)  # 108 atoms in 11 chunks
    chunked = frozen(graph)
    for key in [K.ENERGY, K.FORCES, K.STRESS]:
        torch.testing.assert_close(chunked[key], whole[key], rtol=1e-12, atol=1e-12)
