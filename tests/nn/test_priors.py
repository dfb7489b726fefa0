import numpy as np
import pytest
import torch
from ase import Atoms

import physnet
from physnet.data import keys as K
from physnet.nn.priors import ZBLRepulsion, build_prior
from physnet.testing import assert_kit, reference_structures, run_kit


def _pair_energy(prior: ZBLRepulsion, r: float, symbols: str = "CO") -> float:
    graph = physnet.data.from_ase(Atoms(symbols, positions=[[0, 0, 0], [r, 0, 0]]), 5.0, dtype=torch.float64)
    return float(prior.double()(graph).sum())


def test_zbl_matches_formula_inside_switching_free_region() -> None:
    prior = ZBLRepulsion(["C", "O"], cutoff=4.0)
    r = 0.5
    a = 0.46850 / (6**0.23 + 8**0.23)
    x = r / a
    phi = 0.18175 * np.exp(-3.19980 * x) + 0.50986 * np.exp(-0.94229 * x)
    phi += 0.28022 * np.exp(-0.40290 * x) + 0.02817 * np.exp(-0.20162 * x)
    u = r / 4.0
    env = 1 - 28 * u**6 + 48 * u**7 - 21 * u**8
    expected = 14.399645 * 6 * 8 / r * phi * env
    assert _pair_energy(prior, r) == pytest.approx(expected, rel=1e-12)


def test_zbl_vanishes_at_cutoff_and_is_repulsive() -> None:
    prior = ZBLRepulsion(["C", "O"], cutoff=2.0)
    assert _pair_energy(prior, 2.0 - 1e-9) < 1e-12
    assert _pair_energy(prior, 0.3) > _pair_energy(prior, 0.6) > 0


def test_zbl_units() -> None:
    ev = ZBLRepulsion(["C", "O"], cutoff=2.0)
    kcal = ZBLRepulsion(["C", "O"], cutoff=2.0, energy_unit="kcal/mol")
    assert _pair_energy(kcal, 0.7) == pytest.approx(_pair_energy(ev, 0.7) * 23.0605478, rel=1e-6)
    bohr = ZBLRepulsion(["C", "O"], cutoff=2.0 / 0.52917721, length_unit="Bohr")
    assert _pair_energy(bohr, 0.7 / 0.52917721) == pytest.approx(_pair_energy(ev, 0.7), rel=1e-6)


def test_potential_with_zbl_passes_kit_and_reports_the_term() -> None:
    torch.manual_seed(0)
    species = ["H", "C", "O", "Cu", "Au"]
    pot = physnet.Potential(
        physnet.models.build("schnet", species=species), priors={"zbl": ZBLRepulsion(species, cutoff=3.0)}
    )
    molecule, crystal = reference_structures()
    assert_kit(run_kit(pot, molecule, crystal, checks=["rotation", "forces_fd", "stress_fd"]))
    out = pot(physnet.data.from_ase(molecule, pot.cutoff))
    assert float(out[K.energy_term_key("zbl")]) > 0
    total = (
        out[K.energy_term_key("model")] + out[K.energy_term_key("reference")] + out[K.energy_term_key("zbl")]
    )
    torch.testing.assert_close(out[K.ENERGY], total)


def test_build_prior_round_trip_and_errors() -> None:
    prior = ZBLRepulsion(["H", "O"], cutoff=1.5, energy_unit="kcal/mol")
    again = build_prior(prior.hparams)
    assert isinstance(again, ZBLRepulsion) and again.cutoff == 1.5 and again.hparams == prior.hparams
    with pytest.raises(ValueError, match="unknown prior"):
        build_prior({"name": "lennard_jones"})
