"""SchNet through physnet's test kit, plus its own architecture checks."""

import pytest
import torch

import physnet
from physnet.data import keys as K
from physnet.models.schnet import PAIR_MIN_EDGES
from physnet.testing import assert_kit, reference_structures, run_kit

SPECIES = ["H", "C", "O", "Cu", "Au"]


@pytest.fixture(scope="module")
def potential() -> physnet.Potential:
    torch.manual_seed(0)
    return physnet.Potential(physnet.models.build("schnet", species=SPECIES))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_schnet_passes_kit(potential: physnet.Potential, dtype: torch.dtype) -> None:
    molecule, crystal = reference_structures()
    report = run_kit(potential, molecule, crystal, dtype=dtype)
    assert_kit(report, dtype, complete=True)


def test_defaults_follow_paper() -> None:
    model = physnet.models.build("schnet", species=["H"])
    assert model.hparams["n_features"] == 64 and model.hparams["n_interactions"] == 3
    assert model.cutoff == 5.0
    # Gaussians every 0.1 Å on [0, 5] Å with gamma = 10 Å^-2
    centres = model.rbf.centres
    assert len(centres) == 50 and torch.allclose(centres[1] - centres[0], torch.tensor(5.0 / 49))
    assert float(model.rbf.gamma[0]) == 10.0


def test_energy_is_smooth_at_cutoff() -> None:
    """The cosine cutoff makes an atom pair's interaction vanish continuously at r_c."""
    torch.manual_seed(1)
    pot = physnet.Potential(physnet.models.build("schnet", species=["H"], cutoff=3.0)).double().eval()
    from ase import Atoms

    def energy(r: float) -> float:
        graph = physnet.data.from_ase(Atoms("H2", positions=[[0, 0, 0], [r, 0, 0]]), 3.0, dtype=torch.float64)
        return float(pot(graph)[K.ENERGY])

    isolated = energy(10.0)  # the two atoms do not see each other
    assert abs(energy(3.0 - 1e-6) - isolated) < 1e-9
    assert abs(energy(2.9) - isolated) > 1e-9  # and it does interact inside


def test_interactions_change_energy() -> None:
    """Each interaction block contributes: zeroing one block's output weights changes E."""
    torch.manual_seed(2)
    model = physnet.models.build("schnet", species=["H", "C", "O"])
    pot = physnet.Potential(model).eval()
    graph = physnet.data.from_smiles("CCO", cutoff=5.0)[0]
    before = pot(graph)[K.ENERGY]
    with torch.no_grad():
        model.interactions[1].f2out[2].weight.zero_()
        model.interactions[1].f2out[2].bias.zero_()
    assert not torch.allclose(before, pot(graph)[K.ENERGY])


def test_forward_does_not_store_state(potential: physnet.Potential) -> None:
    graph = physnet.data.from_smiles("CCO", cutoff=5.0)[0]
    before = {k: v for k, v in vars(potential.model).items() if not k.startswith("_")}
    potential(graph)
    after = {k: v for k, v in vars(potential.model).items() if not k.startswith("_")}
    assert before.keys() == after.keys()


def _box():
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=1)
    return atoms


@pytest.mark.parametrize("structure", ["ethanol", "box"])
def test_frozen_copy_tabulates_filters_within_float32_round_off(structure: str) -> None:
    torch.manual_seed(0)
    model = physnet.models.build(
        "schnet", species=["H", "C", "O", "Cu"], n_features=32, n_filters=32, n_rbf=20
    )
    pot = physnet.Potential(model)
    frozen = pot.frozen()
    assert frozen.model.filter_table is not None and pot.model.filter_table is None
    assert not any("filter_table" in k for k in frozen.state_dict())  # never saved
    atoms = physnet.data.from_smiles("CCO")[0] if structure == "ethanol" else _box()
    periodic = structure == "box"
    exact64 = pot.frozen(dtype=torch.float64)
    assert exact64.model.filter_table is None  # float64 keeps the exact networks
    g32 = physnet.data.from_ase(atoms, pot.cutoff, targets=False)
    g64 = physnet.data.from_ase(atoms, pot.cutoff, targets=False, dtype=torch.float64)
    if periodic:
        assert g32[K.EDGE_INDEX].shape[1] >= PAIR_MIN_EDGES  # the per-pair path
    ref = exact64(g64, compute_stress=periodic)
    got = frozen(g32, compute_stress=periodic)
    plain = pot.eval()(g32, compute_stress=periodic)
    for key in [K.ENERGY, K.FORCES] + ([K.STRESS] if periodic else []):
        scale = float(ref[key].abs().max())
        err_table = float((got[key].double() - ref[key]).abs().max())
        err_plain = float((plain[key].double() - ref[key]).abs().max())
        # the table adds less than float32 round-off to float32's own error
        assert err_table <= max(4 * err_plain, 1e-6 * scale), (key, err_table, err_plain, scale)


def test_filter_table_is_dropped_when_training_or_weights_change() -> None:
    model = physnet.models.build("schnet", species=["H", "C", "O"], n_features=16, n_filters=16, n_rbf=10)
    frozen = physnet.Potential(model).frozen()
    graph = physnet.data.from_ase(physnet.data.from_smiles("CO")[0], 5.0, targets=False)
    before = frozen(graph)[K.ENERGY]
    with torch.no_grad():
        frozen.model.interactions[0].conv.filter_net[0].weight.mul_(1.5)
    after = frozen(graph)[K.ENERGY]  # a stale table would give the old energy
    assert frozen.model.filter_table is None
    assert not torch.allclose(before, after)
    frozen.model.prepare_inference()
    assert frozen.model.filter_table is not None
    frozen.train()
    assert frozen.model.filter_table is None


@pytest.mark.parametrize("structure", ["ethanol", "box"])
def test_fused_tabulated_convolution_matches_unfused(structure: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import physnet.models.schnet as schnet_module

    torch.manual_seed(0)
    model = physnet.models.build(
        "schnet", species=["H", "C", "O", "Cu"], n_features=32, n_filters=32, n_rbf=20
    )
    frozen = physnet.Potential(model).frozen()
    atoms = physnet.data.from_smiles("CCO")[0] if structure == "ethanol" else _box()
    periodic = structure == "box"
    graph = physnet.data.from_ase(atoms, 5.0, targets=False)
    unfused = frozen(graph, compute_stress=periodic)
    monkeypatch.setattr(schnet_module, "FUSED_MIN_EDGES", 0)
    fused = frozen(graph, compute_stress=periodic)
    for key in [K.ENERGY, K.FORCES] + ([K.STRESS] if periodic else []):
        torch.testing.assert_close(fused[key], unfused[key], rtol=1e-5, atol=1e-6)
    # chunk boundaries do not matter
    from physnet.nn.tabulate import tabulated_convolution

    table = frozen.model.filter_table
    y = torch.randn(len(atoms), 32)
    r = torch.linalg.vector_norm(physnet.data.edge_vectors(graph), dim=-1)
    block = table.block(1, 3)
    a = tabulated_convolution(y, r, block, table.inv_dx, graph[K.EDGE_INDEX], chunk=7)
    b = tabulated_convolution(y, r, block, table.inv_dx, graph[K.EDGE_INDEX], chunk=100000)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
