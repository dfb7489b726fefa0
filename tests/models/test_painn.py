"""PaiNN through physnet's test kit, plus its own architecture checks."""

import pytest
import torch

import physnet
from physnet.data import keys as K
from physnet.testing import assert_kit, reference_structures, run_kit

SPECIES = ["H", "C", "O", "Cu", "Au"]


@pytest.fixture(scope="module")
def potential() -> physnet.Potential:
    torch.manual_seed(0)
    return physnet.Potential(physnet.models.build("painn", species=SPECIES, n_features=32))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_painn_passes_kit(potential: physnet.Potential, dtype: torch.dtype) -> None:
    molecule, crystal = reference_structures()
    report = run_kit(potential, molecule, crystal, dtype=dtype)
    assert_kit(report, dtype, complete=True)


def test_defaults_follow_paper() -> None:
    model = physnet.models.build("painn", species=["H"])
    assert model.hparams["n_features"] == 128 and model.hparams["n_interactions"] == 3
    assert model.hparams["n_rbf"] == 20 and model.cutoff == 5.0
    assert model.interaction_range == 15.0
    freq = model.rbf.freq
    assert not freq.requires_grad and torch.allclose(freq[2], torch.tensor(3 * torch.pi / 5.0))


def test_energy_is_smooth_at_cutoff() -> None:
    torch.manual_seed(1)
    pot = physnet.Potential(physnet.models.build("painn", species=["H"], cutoff=3.0, n_features=16)).double()
    from ase import Atoms

    def energy(r: float) -> float:
        graph = physnet.data.from_ase(Atoms("H2", positions=[[0, 0, 0], [r, 0, 0]]), 3.0, dtype=torch.float64)
        return float(pot.eval()(graph)[K.ENERGY])

    isolated = energy(10.0)
    assert abs(energy(3.0 - 1e-6) - isolated) < 1e-9
    assert abs(energy(2.9) - isolated) > 1e-9


def test_vector_features_carry_angular_information() -> None:
    """A bent and a straight triatomic with equal distances to the centre differ in energy: the
    vectors v_i see angles, which scalar-only message passing of one block cannot."""
    torch.manual_seed(2)
    pot = physnet.Potential(
        physnet.models.build("painn", species=["H", "O"], cutoff=1.5, n_features=16, n_interactions=1)
    )
    pot = pot.double().eval()
    from ase import Atoms

    def energy(angle_deg: float) -> float:
        a = torch.deg2rad(torch.tensor(angle_deg, dtype=torch.float64))
        pos = [[0, 0, 0], [1.0, 0, 0], [float(torch.cos(a)), float(torch.sin(a)), 0]]
        graph = physnet.data.from_ase(Atoms("OHH", positions=pos), 1.5, dtype=torch.float64)
        return float(pot(graph)[K.ENERGY])

    # with cutoff 1.5 Å the two H (1.0 Å from O) see each other only at small angles; at 120 and
    # 180 degrees they are 1.73 and 2 Å apart, so every distance in the graph is the same
    assert abs(energy(120.0) - energy(180.0)) > 1e-8


def test_zero_vectors_have_finite_gradients() -> None:
    """v^0 = 0 enters |V v|; its gradient must not be NaN (the eps in the norm)."""
    torch.manual_seed(3)
    pot = physnet.Potential(physnet.models.build("painn", species=["H", "C", "O"], n_features=16))
    graph = physnet.data.from_smiles("CCO", cutoff=5.0)[0]
    out = pot(graph)
    out[K.ENERGY].sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in pot.parameters() if p.grad is not None)
    assert torch.isfinite(out[K.FORCES]).all()


def test_chunked_message_sums_match_unchunked(monkeypatch: pytest.MonkeyPatch) -> None:
    """In eval mode a large graph's edges are summed in chunks: the same energy, forces and stress."""
    from ase.build import bulk

    import physnet.models.painn as painn_module

    torch.manual_seed(4)
    pot = physnet.Potential(physnet.models.build("painn", species=["Cu"], cutoff=4.0, n_features=8))
    pot = pot.double().eval()
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=1)
    graph = physnet.data.from_ase(atoms, 4.0, targets=False, dtype=torch.float64)
    whole = pot(graph, compute_stress=True)
    monkeypatch.setattr(painn_module, "CHUNK_EDGES", 97)  # not a divisor of the edge count
    assert graph[K.EDGE_INDEX].shape[1] > 3 * 97
    chunked = pot(graph, compute_stress=True)
    for key in (K.ENERGY, K.FORCES, K.STRESS):
        torch.testing.assert_close(chunked[key], whole[key], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("key", "value"), [("n_features", 1), ("n_interactions", 0)])
def test_too_small_widths_are_refused(key: str, value: int) -> None:
    with pytest.raises(ValueError, match=f"{key}={value}[;,].*raise model.n_features"):
        physnet.models.build("painn", species=["H"], **{key: value})
