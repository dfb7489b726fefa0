"""Parallel CG Langevin dynamics: sampling the right Boltzmann distribution of a harmonic prior."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import physnet
import physnet.models.cgnet  # noqa: F401  (registers "cgnet")
from physnet.md.langevin import langevin
from physnet.nn.cg_geometry import consecutive_pairs, distances
from physnet.nn.priors import HarmonicBonds

KT = 0.0019872 * 300.0  # kcal/mol


def bonds_only(k: float = 250.0, r0: float = 1.45) -> physnet.Potential:
    """Two harmonic bonds (3 beads) and a CGnet whose output is zeroed."""
    torch.manual_seed(0)
    model = physnet.models.build("cgnet", species=["C"], n_beads=3, n_layers=1, width=4)
    for p in model.net[-1].parameters():
        torch.nn.init.zeros_(p)
    bonds = HarmonicBonds(3, temperature=300.0, energy_unit="kcal/mol")
    bonds.k.fill_(k)
    bonds.x0.fill_(r0)
    bonds.fitted.fill_(True)
    return physnet.Potential(model, {"bonds": bonds}, energy_unit="kcal/mol").double()


def start(n: int = 200) -> torch.Tensor:
    x = torch.zeros(n, 3, 3, dtype=torch.float64)
    x[:, 1, 0] = 1.45
    x[:, 2, 0] = 1.45 + 1.45 * np.cos(1.0)
    x[:, 2, 1] = 1.45 * np.sin(1.0)
    return x


@pytest.mark.parametrize("integrator", ["baoab", "overdamped"])
def test_bond_fluctuations_match_kT_over_k(integrator: str, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "traj.npy"
    # Euler-Maruyama inflates the variance by ~1 / (1 - k D_rel dt / 2kT): keep that below 5 %
    dt = 0.002 if integrator == "baoab" else 0.0001
    traj = langevin(
        bonds_only(), start(), torch.tensor([6, 6, 6]), n_steps=1000, dt=dt, friction=20.0,
        integrator=integrator, save_every=10, seed=1, progress=False, output=out,
    )  # fmt: skip
    assert traj.shape == (101, 200, 3, 3)
    assert np.load(out).shape == (101, 200, 3, 3)
    r = distances(traj[30:].reshape(-1, 3, 3), consecutive_pairs(3))
    assert float(r.mean()) == pytest.approx(1.45, abs=0.01)
    # a 3D bond has variance kT/k up to O((kT/k)/r0^2) corrections
    assert float(r.var()) == pytest.approx(KT / 250.0, rel=0.15)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="integrator"):
        langevin(bonds_only(), start(2), torch.tensor([6, 6, 6]), n_steps=1, integrator="verlet")
    with pytest.raises(ValueError, match="n_replicas"):
        langevin(bonds_only(), start(2)[0], torch.tensor([6, 6, 6]), n_steps=1)
