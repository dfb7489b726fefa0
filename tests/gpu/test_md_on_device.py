"""Neighbour lists, the ASE calculator, batched CG Langevin and the GNS rollout on the device."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk
from ase.md.verlet import VelocityVerlet

import physnet
from physnet.data.neighbors import radius_graph
from physnet.md.langevin import langevin
from physnet.md.velocities import thermalize

from .conftest import host_syncs, potential

pytestmark = pytest.mark.gpu


def _edges(edge_index: torch.Tensor, edge_shift: torch.Tensor) -> list[tuple[int, ...]]:
    rows = torch.cat([edge_index.t(), edge_shift], dim=1).cpu().tolist()
    return sorted(map(tuple, rows))


@pytest.mark.parametrize("seed", range(6))
def test_neighbour_list_on_the_device_equals_the_cpu(seed: int, device: torch.device) -> None:
    """A batch of random triclinic cells (mixed periodicity, some smaller than the cutoff, and
    a molecule): the device's neighbour list holds exactly the CPU's pairs and shifts."""
    rng = np.random.default_rng(seed)
    pos, cells, pbcs, batch = [], [], [], []
    for g in range(4):
        n = int(rng.integers(1, 40))
        cell = np.diag(rng.uniform(2.0, 9.0, 3)) + np.triu(rng.uniform(-1.5, 1.5, (3, 3)), 1)
        pbc = rng.random(3) < 0.7 if g < 3 else np.zeros(3, dtype=bool)
        pos.append(rng.random((n, 3)) @ cell + rng.normal(scale=0.5, size=(n, 3)))
        cells.append(cell if pbc.any() else np.zeros((3, 3)))
        pbcs.append(pbc)
        batch += [g] * n
    args = (
        torch.tensor(np.concatenate(pos)),
        float(rng.uniform(2.5, 5.0)),
        torch.tensor(batch),
        torch.tensor(np.stack(cells)),
        torch.tensor(np.stack(pbcs)),
    )
    cpu = radius_graph(*args)
    dev = radius_graph(args[0].to(device), args[1], *(a.to(device) for a in args[2:]))
    assert dev[0].device.type == device.type and dev[1].device.type == device.type
    assert _edges(*dev) == _edges(*cpu)
    assert cpu[0].shape[1] > 0


@pytest.mark.parametrize("name", ["schnet", "behler_parrinello"])
def test_calculator_md_on_the_device(name: str, device: torch.device) -> None:
    """``physnet.Calculator(device=...)`` in 20 steps of NVE on a 108-atom Cu box in float64:
    forces equal the CPU calculator's at the start, and energy is conserved."""
    pot = potential(name).double()
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((3, 3, 3))
    atoms.rattle(0.05, seed=0)
    reference = atoms.copy()
    reference.calc = physnet.Calculator(pot, device="cpu", dtype=torch.float64)
    atoms.calc = physnet.Calculator(pot, device=device, dtype=torch.float64)
    assert atoms.calc.potential.atom_refs.device.type == device.type
    f_cpu, f_dev = reference.get_forces(), atoms.get_forces()
    assert np.abs(f_dev - f_cpu).max() <= 1e-10 * max(np.abs(f_cpu).max(), 1e-300)
    assert (
        np.abs(atoms.get_stress() - reference.get_stress()).max()
        <= 1e-10 * np.abs(reference.get_stress()).max()
    )
    thermalize(atoms, 300.0, seed=0)
    e0 = atoms.get_total_energy()
    VelocityVerlet(atoms, 1.0 * units.fs).run(20)
    drift = abs(atoms.get_total_energy() - e0) / len(atoms)
    assert np.isfinite(drift) and drift < 1e-3, f"{drift:.3g} eV/atom after 20 steps"


def test_batched_cg_langevin_on_the_device(device: torch.device) -> None:
    """64 replicas of a 5-bead CG molecule with CGnet and harmonic priors, 50 BAOAB steps on
    the device (random forces drawn there): finite frames, and every molecule held together."""
    from physnet.nn.priors import fit_cg_priors

    rng = np.random.default_rng(0)
    frame = np.array([[0, 2.15, -0.13], [-0.51, 0.98, -0.51], [-0.83, -0.15, 0.39], [0.1, -1.29, 0.06],
                      [0.08, -2.28, 0.98]])  # fmt: skip
    frames = frame[None] + rng.normal(scale=0.08, size=(200, 5, 3))
    torch.manual_seed(0)
    model = physnet.models.build("cgnet", species=["C", "N"], n_beads=5, width=16, n_layers=2)
    pot = physnet.Potential(model, fit_cg_priors(frames, temperature=300.0, energy_unit="kcal/mol"),
                            energy_unit="kcal/mol").double().to(device)  # fmt: skip
    z = torch.tensor([6, 7, 6, 6, 7], device=device)
    x0 = torch.tensor(frames[:64], device=device)
    traj = langevin(pot, x0, z, n_steps=50, dt=0.001, save_every=10, progress=False)
    assert traj.shape == (6, 64, 5, 3) and torch.isfinite(traj).all()
    bonds = torch.linalg.vector_norm(traj[-1, :, 1:] - traj[-1, :, :-1], dim=-1)
    assert float(bonds.min()) > 0.5 and float(bonds.max()) < 3.0  # the molecules held together
    counts = []
    for n_steps in (2, 20):  # the steps themselves make no host sync (saving a frame does)
        with host_syncs(device) as syncs:
            langevin(pot, x0, z, n_steps=n_steps, dt=0.001, save_every=100, progress=False)
        counts.append(syncs)
    assert len(counts[1]) == len(counts[0]), counts[1]


def test_gns_rollout_on_the_device_equals_the_cpu(device: torch.device) -> None:
    """A 20-step GNS rollout (graph rebuilt every step by the neighbour list on the device)
    equals the CPU's in float64, to 1e-9 of the box."""
    torch.manual_seed(0)
    model = physnet.models.build_simulator(
        "gns", dim=2, bounds=[[0.0, 1.0], [0.0, 1.0]], radius=0.15, latent_size=16, hidden_size=16,
        n_message_passing=2,
    ).double().eval()  # fmt: skip
    model.acc_std.fill_(1e-4)  # small accelerations: the particles stay in the box
    g = torch.Generator().manual_seed(0)
    start = 0.2 + 0.6 * torch.rand(80, 1, 2, generator=g, dtype=torch.float64)
    window = start + 0.002 * torch.arange(6, dtype=torch.float64).view(1, 6, 1)
    with torch.no_grad():
        cpu = physnet.models.rollout(model, window, 20)
        dev = physnet.models.rollout(model.to(device), window.to(device), 20)
    assert dev.device.type == device.type and dev.shape == (20, 80, 2)
    assert float((dev.cpu() - cpu).abs().max()) <= 1e-9
