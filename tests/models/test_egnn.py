"""EGNN as a potential (through physnet's test kit) and as an N-body dynamics model."""

import numpy as np
import pytest
import torch
import yaml
from ase import Atoms

import physnet
import physnet.models.egnn  # noqa: F401  (registers "egnn")
from physnet.data import keys as K
from physnet.models.egnn import EGNN, EGNNDynamics, EGNNLayer, fully_connected_edges, polynomial_envelope
from physnet.testing import assert_kit, random_rotation, reference_structures, run_kit

SPECIES = ["H", "C", "O", "Cu", "Au"]


def _potential(seed: int = 0, **hparams: object) -> physnet.Potential:
    torch.manual_seed(seed)
    return physnet.Potential(physnet.models.build("egnn", species=SPECIES, **hparams))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_egnn_passes_kit(dtype: torch.dtype) -> None:
    report = run_kit(_potential(), *reference_structures(), dtype=dtype)
    assert_kit(report, dtype, complete=True)


def test_egnn_with_coordinate_updates_passes_kit() -> None:
    """With eq. (4) between layers (and attention, eq. 8) the energy stays E(3)-invariant."""
    pot = _potential(1, update_coords=True, attention=True)
    assert pot.model.layers[0].phi_x is not None and pot.model.layers[-1].phi_x is None
    assert_kit(run_kit(pot, *reference_structures(), dtype=torch.float64), torch.float64)


def _pair_graph(r: float, cutoff: float, dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    atoms = Atoms("H2", positions=[[0, 0, 0], [r, 0, 0]])
    return physnet.data.from_ase(atoms, cutoff, dtype=dtype)


@pytest.mark.parametrize("update_coords", [False, True], ids=["fixed", "updated"])
def test_energy_and_forces_smooth_at_cutoff(update_coords: bool) -> None:
    torch.manual_seed(2)
    model = physnet.models.build("egnn", species=["H"], cutoff=3.0, update_coords=update_coords)
    pot = physnet.Potential(model).double().eval()

    def energy_forces(r: float) -> tuple[float, float]:
        out = pot(_pair_graph(r, 3.0))
        return float(out[K.ENERGY]), float(out[K.FORCES].abs().max())

    isolated, _ = energy_forces(10.0)
    e_edge, f_edge = energy_forces(3.0 - 1e-4)
    assert abs(e_edge - isolated) < 1e-9 and f_edge < 1e-6  # energy and forces vanish at r_c
    assert abs(energy_forces(2.5)[0] - isolated) > 1e-6  # and the pair interacts inside


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("update_coords", [False, True], ids=["fixed", "updated"])
def test_coincident_atoms_give_finite_forces_and_gradients(dtype: torch.dtype, update_coords: bool) -> None:
    """Two atoms on the same spot: finite energy, forces, and parameter gradients of a force loss."""
    torch.manual_seed(3)
    pot = physnet.Potential(
        physnet.models.build("egnn", species=["H", "O"], update_coords=update_coords, attention=True)
    ).to(dtype)
    pot.train()
    atoms = Atoms("OHH", positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0.5, 0]])
    out = pot(physnet.data.from_ase(atoms, pot.cutoff, dtype=dtype))
    assert torch.isfinite(out[K.ENERGY]).all() and torch.isfinite(out[K.FORCES]).all()
    loss = out[K.ENERGY].sum() + (out[K.FORCES] ** 2).sum()
    loss.backward()
    for name, p in pot.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


def test_layer_normalized_coordinates_safe_at_zero_distance() -> None:
    torch.manual_seed(4)
    layer = EGNNLayer(8, normalize=True, tanh=True).double()
    vec = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    h, dx = layer(torch.randn(2, 8, dtype=torch.float64), vec, torch.tensor([[0, 1], [1, 0]]))
    (h.sum() + dx.sum()).backward()
    assert torch.isfinite(dx).all() and torch.isfinite(vec.grad).all()


def test_registry_build_and_plain_hparams() -> None:
    assert "egnn" in physnet.models.available()
    model = physnet.models.build("egnn", species=["H", "C", "O"], n_layers=2, n_features=16)
    assert isinstance(model, EGNN) and len(model.layers) == 2 and model.cutoff == 5.0
    assert yaml.safe_load(yaml.safe_dump(model.hparams)) == model.hparams
    rebuilt = physnet.models.build(**{k: v for k, v in model.hparams.items() if k != "name"}, name="egnn")
    assert rebuilt.hparams == model.hparams
    graph = physnet.data.from_smiles("CCO", cutoff=5.0)[0]
    assert model(graph).shape == (9,)


def test_forward_does_not_store_state() -> None:
    pot = _potential(update_coords=True)
    graph = physnet.data.from_smiles("CCO", cutoff=5.0)[0]
    before = {k: v for k, v in vars(pot.model).items() if not k.startswith("_")}
    pot(graph)
    after = {k: v for k, v in vars(pot.model).items() if not k.startswith("_")}
    assert before.keys() == after.keys()


def test_envelope_and_fully_connected_edges() -> None:
    d2 = torch.tensor([0.0, 4.0, 9.0, 16.0])
    assert torch.allclose(polynomial_envelope(d2, 3.0), torch.tensor([1.0, (5 / 9) ** 3, 0.0, 0.0]))
    edges = fully_connected_edges(torch.tensor([0, 0, 0, 1, 1]))
    assert edges.shape == (2, 8) and not bool((edges[0] == edges[1]).any())


# --- dynamics model -------------------------------------------------------------------------------


def _systems(n_systems: int = 3, n: int = 5, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(n_systems * n, 3, generator=g, dtype=torch.float64)
    vel = 0.5 * torch.randn(n_systems * n, 3, generator=g, dtype=torch.float64)
    charges = torch.randint(0, 2, (n_systems * n,), generator=g).double() * 2 - 1
    batch = torch.arange(n_systems).repeat_interleave(n)
    return pos, vel, charges, batch


@pytest.fixture(
    params=[{}, {"attention": True, "normalize": True, "tanh": True}], ids=["paper", "attention_normalized"]
)
def dynamics(request: pytest.FixtureRequest) -> EGNNDynamics:
    torch.manual_seed(5)
    model = EGNNDynamics(n_features=16, n_layers=3, **request.param).double()
    # larger last-layer weights than the authors' near-zero init, so the updates are not trivial
    for layer in model.layers:
        torch.nn.init.normal_(layer.phi_x[-1].weight, std=0.3)
    return model


@pytest.mark.parametrize("reflect", [False, True], ids=["rotation", "reflection"])
def test_dynamics_is_e3_equivariant(dynamics: EGNNDynamics, reflect: bool) -> None:
    pos, vel, charges, batch = _systems()
    ref = dynamics(pos, vel, charges, batch)
    assert (ref - pos).abs().max() > 1e-3  # it does move the particles
    rng = np.random.default_rng(6)
    for _ in range(3):
        rot = torch.as_tensor(random_rotation(rng, reflect=reflect))
        shift = torch.as_tensor(rng.uniform(-10, 10, size=3))
        out = dynamics(pos @ rot.T + shift, vel @ rot.T, charges, batch)
        assert (out - (ref @ rot.T + shift)).abs().max() <= 1e-10


def test_dynamics_permutation_equivariant(dynamics: EGNNDynamics) -> None:
    pos, vel, charges, batch = _systems()
    ref = dynamics(pos, vel, charges, batch)
    # permute particles within each system (a batch keeps each system's particles contiguous)
    perm = torch.cat(
        [torch.randperm(5, generator=torch.Generator().manual_seed(s)) + 5 * s for s in range(3)]
    )
    out = dynamics(pos[perm], vel[perm], charges[perm], batch)
    assert (out - ref[perm]).abs().max() <= 1e-10


def test_dynamics_batch_equals_single(dynamics: EGNNDynamics) -> None:
    pos, vel, charges, batch = _systems()
    ref = dynamics(pos, vel, charges, batch)
    one = dynamics(pos[5:10], vel[5:10], charges[5:10], torch.zeros(5, dtype=torch.long))
    assert (one - ref[5:10]).abs().max() <= 1e-12


def test_dynamics_charges_matter(dynamics: EGNNDynamics) -> None:
    pos, vel, charges, batch = _systems()
    assert not torch.allclose(dynamics(pos, vel, charges, batch), dynamics(pos, vel, -charges.abs(), batch))


@pytest.mark.parametrize("update_coords", [False, True])
def test_eval_mode_sums_large_graphs_in_edge_chunks(
    update_coords: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ase.build import bulk

    import physnet.models.egnn as egnn_module

    torch.manual_seed(0)
    model = physnet.models.build(
        "egnn", species=["Cu"], n_features=16, n_layers=3, update_coords=update_coords, attention=True
    )
    pot = physnet.Potential(model).double().eval()
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=0)
    graph = physnet.data.from_ase(atoms, model.cutoff, dtype=torch.float64)
    whole = pot(graph)
    monkeypatch.setattr(egnn_module, "CHUNK_EDGES", 100)
    chunked = pot(graph)
    for key in ["energy", "forces", "stress"]:
        torch.testing.assert_close(chunked[key], whole[key], rtol=1e-12, atol=1e-12)
    # N-body dynamics model (mean aggregation, velocities) in chunks too
    dyn = egnn_module.EGNNDynamics(n_features=8, n_layers=2).double().eval()
    x, v = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 3, dtype=torch.float64)
    q, batch = torch.tensor([1.0, -1.0] * 5, dtype=torch.float64), torch.zeros(10, dtype=torch.long)
    monkeypatch.setattr(egnn_module, "CHUNK_EDGES", 1 << 30)
    a = dyn(x, v, q, batch)
    monkeypatch.setattr(egnn_module, "CHUNK_EDGES", 7)
    torch.testing.assert_close(dyn(x, v, q, batch), a, rtol=1e-12, atol=1e-12)
