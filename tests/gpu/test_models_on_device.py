"""Every model on the device: the symmetry kit in float64, and agreement with the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

import physnet
from physnet.data import keys as K
from physnet.nn.cg_geometry import bead_graph
from physnet.testing import assert_kit, check_particle_symmetries, evaluate, run_kit

from .conftest import SMALL, crystal, ethanol, potential

pytestmark = pytest.mark.gpu

CG_SYMBOLS = "CNCCN"
CG_FRAME = np.array(  # one alanine dipeptide CG frame (Å), as tests/models/test_cgnet.py
    [
        [-0.01365985, 2.15312977, -0.12781153],
        [-0.51455306, 0.97692344, -0.51461703],
        [-0.82608707, -0.15108568, 0.38653772],
        [0.09768050, -1.29051121, 0.06201323],
        [0.08469149, -2.27714167, 0.98159515],
    ]
)


def cg_potential() -> physnet.Potential:
    """CGnet with fitted feature statistics and the CG priors (harmonic bonds and angles)."""
    from physnet.nn.priors import fit_cg_priors

    torch.manual_seed(0)
    model = physnet.models.build("cgnet", species=["C", "N"], n_beads=5, width=32, n_layers=3)
    frames = CG_FRAME[None] + np.random.default_rng(0).normal(scale=0.08, size=(200, 5, 3))
    z = torch.tensor([6, 7, 6, 6, 7])
    model.fit_statistics([bead_graph(torch.tensor(f[None], dtype=torch.float32), z) for f in frames])
    priors = fit_cg_priors(frames, temperature=300.0, energy_unit="kcal/mol")
    return physnet.Potential(model, priors, energy_unit="kcal/mol")


def cg_molecule() -> Atoms:
    return Atoms(CG_SYMBOLS, positions=CG_FRAME + np.random.default_rng(7).normal(scale=0.08, size=(5, 3)))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_kit_in_float64_on_the_device(name: str, device: torch.device) -> None:
    """The whole kit (rotation, reflection, translation, permutation, finite differences,
    batching, additivity, stress) on a molecule and a periodic cell, on the device."""
    report = run_kit(potential(name), ethanol(), crystal(), dtype=torch.float64, device=device)
    assert_kit(report, torch.float64, complete=True)


def test_cgnet_kit_in_float64_on_the_device(device: torch.device) -> None:
    checks = ["rotation", "translation", "forces_fd", "batch", "cross_gradients"]
    report = run_kit(cg_potential(), cg_molecule(), checks=checks, device=device)
    assert_kit(report, torch.float64)


@pytest.mark.parametrize("name", [*sorted(SMALL), "cgnet"])
def test_device_equals_cpu_in_float64(name: str, device: torch.device) -> None:
    """Energies, per-atom energies, forces and stress on the device within 1e-10 (relative)
    of the CPU's, in float64, on a batch of a molecule and a cell (a CG molecule for CGnet)."""
    if name == "cgnet":
        pot, structures = cg_potential(), [cg_molecule(), cg_molecule()]
    else:
        pot, structures = potential(name), [crystal(1), crystal(2)]
        structures[1].positions += 0.02
    pot = pot.double().eval()
    cpu = evaluate(pot, structures, torch.float64, "cpu")
    dev = evaluate(pot.to(device), structures, torch.float64, device)
    assert set(cpu) == set(dev)
    for key in cpu:
        scale = max(float(np.abs(cpu[key]).max()), 1e-300)
        err = float(np.abs(dev[key] - cpu[key]).max()) / scale
        assert err <= 1e-10, f"{name} {key}: relative difference {err:.3g} between {device} and cpu"
    if name != "cgnet":
        assert K.STRESS in dev


def test_gns_symmetries_and_cpu_agreement_on_the_device(device: torch.device) -> None:
    """GNS (no walls) on the device: translation invariance and permutation equivariance of
    the accelerations (float64), and the device's accelerations equal the CPU's to 1e-10."""
    torch.manual_seed(0)
    model = physnet.models.build_simulator(
        "gns", dim=3, bounds=[[0.0, 1.0]] * 3, radius=0.2, latent_size=16, hidden_size=16,
        n_message_passing=3, walls="none",
    ).double().eval()  # fmt: skip
    g = torch.Generator().manual_seed(1)
    start = 0.2 + 0.6 * torch.rand(60, 1, 3, generator=g, dtype=torch.float64)
    t = torch.arange(6, dtype=torch.float64).view(1, 6, 1)
    window = start + 0.01 * torch.randn(60, 1, 3, generator=g, dtype=torch.float64) * t
    ptype = torch.zeros(60, dtype=torch.long)
    cpu = model({K.POS_HISTORY: window, K.Z: ptype}).detach()
    model = model.to(device)
    window, ptype = window.to(device), ptype.to(device)

    @torch.no_grad()
    def fn(window: torch.Tensor, ptype: torch.Tensor) -> torch.Tensor:
        return model({K.POS_HISTORY: window, K.Z: ptype})

    dev = fn(window, ptype)
    assert dev.device.type == device.type
    assert float((dev.cpu() - cpu).abs().max()) <= 1e-10 * float(cpu.abs().max())
    report = check_particle_symmetries(
        fn, {"window": window, "ptype": ptype}, {"window": "position", "ptype": "invariant"}, "vector",
        ("translation", "permutation"), group_key=None,
    )  # fmt: skip
    assert max(report.values()) <= 1e-10 * max(float(cpu.abs().max()), 1.0), report
