"""Device-cleanliness on the CPU: models run on the 'meta' device (any tensor made on the CPU
inside a forward pass would meet the meta inputs and fail), and training steps read back only
the values whose sizes depend on the data (counted with physnet.testing.count_host_syncs).

The same properties on a real GPU are tested in tests/gpu (``pytest -m gpu``)."""

from __future__ import annotations

import pytest
import torch
from ase.build import bulk, molecule

import physnet
from physnet.data import keys as K
from physnet.testing import count_host_syncs

SPECIES = ["H", "C", "O", "Cu"]


def _potential(name: str) -> physnet.Potential:
    torch.manual_seed(0)
    return physnet.Potential(physnet.models.build(name, species=SPECIES))


@pytest.mark.parametrize("name", ["schnet", "egnn", "se3_transformer"])
@pytest.mark.parametrize("periodic", [False, True], ids=["molecule", "crystal"])
def test_forward_and_forces_on_the_meta_device(name: str, periodic: bool) -> None:
    """Energy, forces (and stress) on meta tensors: every tensor the model makes is created on
    its input's device. (SchNet's edge pairing reads the data, so its graphs stay below
    PAIR_MIN_EDGES here; Behler-Parrinello's per-element grouping reads counts, so it cannot run
    on meta at all.)"""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) if periodic else molecule("CH3CH2OH")
    pot = _potential(name)
    graph = physnet.data.from_ase(atoms, 3.0 if name == "schnet" else pot.cutoff)
    if name == "schnet":
        from physnet.models.schnet import PAIR_MIN_EDGES

        assert graph[K.EDGE_INDEX].shape[1] < PAIR_MIN_EDGES
    meta = {k: v.to("meta") for k, v in graph.items()}
    out = pot.to("meta")(meta, compute_forces=True, compute_stress=periodic, check=False)
    assert out[K.FORCES].device.type == "meta" and out[K.FORCES].shape == (len(atoms), 3)
    assert (K.STRESS in out) == periodic


def _cg_potential() -> physnet.Potential:
    """CGnet with fitted harmonic-bond, angle and repulsion priors on 5 beads."""
    import numpy as np

    from physnet.nn.priors import fit_cg_priors

    frames = np.random.default_rng(0).normal(scale=0.1, size=(50, 5, 3)) + np.arange(5)[None, :, None] * 1.5
    torch.manual_seed(0)
    model = physnet.models.build("cgnet", species=["C", "N"], n_beads=5, width=16, n_layers=2)
    priors = fit_cg_priors(frames, temperature=300.0, energy_unit="kcal/mol")
    return physnet.Potential(model, priors, energy_unit="kcal/mol")


def test_cgnet_with_priors_on_the_meta_device() -> None:
    from physnet.nn.cg_geometry import bead_graph

    pot = _cg_potential()
    z = torch.tensor([6, 7, 6, 6, 7])
    pot(bead_graph(torch.randn(2, 5, 3), z))  # the priors read their 'fitted' flag once, here
    out = pot.to("meta")(
        bead_graph(torch.randn(4, 5, 3, device="meta"), z), compute_stress=False, check=False
    )
    assert out[K.FORCES].device.type == "meta" and out[K.FORCES].shape == (20, 3)


@pytest.mark.parametrize("walls", [False, True], ids=["no_walls", "walls"])
def test_gns_forward_on_the_meta_device(walls: bool) -> None:
    """The GNS forward pass (edges given: the neighbour list itself cannot run on meta)."""
    model = physnet.models.build_simulator(
        "gns", dim=2, bounds=[[0.0, 1.0], [0.0, 1.0]], radius=0.15, latent_size=8, hidden_size=8,
        n_message_passing=2, walls="features" if walls else "none",
    )  # fmt: skip
    window = torch.rand(30, 6, 2)
    edges = model.build_edges(window[:, -1])
    graph = {K.POS_HISTORY: window, K.Z: torch.zeros(30, dtype=torch.long), K.EDGE_INDEX: edges}
    out = model.to("meta")({k: v.to("meta") for k, v in graph.items()})
    assert out.device.type == "meta" and out.shape == (30, 2)


#: host syncs of a training step on 10 ethanol molecules (tests/gpu/test_training_on_device.py
#: explains each); the CUDA suite holds the GPU to the same budget
SYNC_BUDGET = {"schnet": 2, "behler_parrinello": 3, "egnn": 0, "se3_transformer": 0}


@pytest.mark.parametrize("name", sorted(SYNC_BUDGET))
def test_training_step_reads_back_only_data_dependent_sizes(name: str) -> None:
    pot = _potential(name).train()
    batch = physnet.data.collate([physnet.data.from_ase(molecule("CH3CH2OH"), pot.cutoff)] * 10)
    with count_host_syncs() as counts:
        out = pot(batch, compute_forces=True, compute_stress=False, check=False)
        (out[K.ENERGY].pow(2).mean() + out[K.FORCES].pow(2).mean()).backward()
    assert sum(counts.values()) == SYNC_BUDGET[name], dict(counts)
    with count_host_syncs() as checked:
        pot(batch, compute_forces=True, compute_stress=False)  # check=True: the species check syncs
    assert sum(checked.values()) > sum(counts.values())


def test_langevin_checks_species_once_not_per_step() -> None:
    from physnet.md.langevin import langevin

    pot = _cg_potential()
    z = torch.tensor([6, 7, 6, 6, 7])
    x0 = torch.randn(4, 5, 3) * 0.1 + torch.arange(5.0).view(1, 5, 1) * 1.5
    langevin(pot, x0, z, n_steps=1, progress=False)  # the priors read their 'fitted' flag once
    with count_host_syncs() as short:
        langevin(pot, x0, z, n_steps=2, save_every=100, progress=False)
    with count_host_syncs() as long:
        langevin(pot, x0, z, n_steps=40, save_every=100, progress=False)
    assert sum(long.values()) == sum(short.values()), dict(long)  # nothing per step
    with pytest.raises(ValueError, match="not in the model's species"):
        langevin(pot, x0, torch.tensor([6, 7, 6, 6, 8]), n_steps=2, progress=False)
