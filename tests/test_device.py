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

    model = physnet.models.build("cgnet", species=["C"], n_beads=3, n_layers=1, width=8)
    pot = physnet.Potential(model, energy_unit="kcal/mol")
    x0 = torch.randn(4, 3, 3)
    with count_host_syncs() as short:
        langevin(pot, x0, torch.tensor([6, 6, 6]), n_steps=2, save_every=100, progress=False)
    with count_host_syncs() as long:
        langevin(pot, x0, torch.tensor([6, 6, 6]), n_steps=40, save_every=100, progress=False)
    assert sum(long.values()) == sum(short.values())  # nothing per step
    with pytest.raises(ValueError, match="not in the model's species"):
        langevin(pot, x0, torch.tensor([6, 7, 6]), n_steps=2, progress=False)
