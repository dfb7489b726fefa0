"""SE(3)-Transformer on e3nn: potential through physnet's test kit, l = 1 outputs, N-body dynamics."""

import json
import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase import units as ase_units
from ase.md.verlet import VelocityVerlet
from e3nn import o3

import physnet
from physnet.data import keys as K
from physnet.models.se3_transformer import (
    EquivariantLayerNorm,
    ProductBasis,
    SE3Transformer,
    SE3TransformerDynamics,
    hidden_irreps,
    safe_spherical_harmonics,
)
from physnet.nn import BesselRBF
from physnet.testing import (
    assert_kit,
    check_particle_symmetries,
    check_reflection,
    check_rotation,
    random_rotation,
    reference_structures,
    run_kit,
)

SPECIES = ["H", "C", "O", "Cu", "Au"]
SMALL = {"channels": [8, 4, 2], "n_layers": 2, "n_heads": 2, "n_rbf": 8, "radial_hidden": [16]}


def _potential(seed: int = 0, **hparams: object) -> physnet.Potential:
    torch.manual_seed(seed)
    return physnet.Potential(physnet.models.build("se3_transformer", species=SPECIES, **{**SMALL, **hparams}))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_se3_transformer_passes_kit(dtype: torch.dtype) -> None:
    """Built in float32 (the default dtype) and cast: the kit must still reach float64 precision."""
    report = run_kit(_potential(), *reference_structures(), dtype=dtype)
    assert_kit(report, dtype, complete=True)


def test_wigner_3j_buffers_exact_after_casts() -> None:
    layer = _potential().float().double().model.backbone.layers[1]
    buffers = {n.rsplit(".", 1)[-1]: b for n, b in layer.tp.named_buffers() if "_w3j_" in n}
    assert buffers  # the l = 1, 2 paths have 3j symbols
    for name, buf in buffers.items():
        l1, l2, l3 = (int(x) for x in name.split("_")[-3:])
        assert buf.dtype == torch.float64 and torch.equal(buf, o3.wigner_3j(l1, l2, l3, dtype=torch.float64))


def _wigner_d(irreps: o3.Irreps, rot: np.ndarray) -> torch.Tensor:
    """D(R) of ``irreps`` in float64 (e3nn builds its generators in the default dtype)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return irreps.D_from_matrix(torch.as_tensor(rot, dtype=torch.float64))
    finally:
        torch.set_default_dtype(old)


def _graph(atoms: Atoms, dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    return physnet.data.from_ase(atoms, 5.0, dtype=dtype, targets=False)


@pytest.mark.parametrize("reflect", [False, True], ids=["rotation", "reflection"])
def test_features_and_l1_head_transform_by_wigner_d(reflect: bool) -> None:
    """Every hidden irrep (l = 0, 1, 2) and the l = 1 head rotate with the input (D(R) of e3nn)."""
    model = _potential(1).model.double()
    assert isinstance(model, SE3Transformer)
    molecule, crystal = reference_structures()
    rng = np.random.default_rng(2)
    for atoms in (molecule, crystal):
        feats, vecs = model.node_features(_graph(atoms)), model.vectors(_graph(atoms))
        assert vecs.shape == (len(atoms), 3) and vecs.abs().max() > 1e-3
        for _ in range(2):
            rot = random_rotation(rng, reflect=reflect)
            moved = atoms.copy()
            moved.positions = atoms.positions @ rot.T
            if atoms.pbc.any():
                moved.set_cell(np.asarray(atoms.cell) @ rot.T, scale_atoms=False)
            r = torch.as_tensor(rot)
            d = _wigner_d(model.irreps_hidden, rot)  # parity included: det R = -1 flips odd irreps
            assert (model.node_features(_graph(moved)) - feats @ d.T).abs().max() <= 1e-10 * feats.abs().max()
            assert (model.vectors(_graph(moved)) - vecs @ r.T).abs().max() <= 1e-10 * vecs.abs().max()


def test_without_parity_is_se3_not_e3() -> None:
    """parity=False is the paper's SE(3) model: rotation-invariant, but it tells mirror images apart."""
    pot = _potential(3, parity=False)
    assert str(pot.model.irreps_hidden) == "8x0e+4x1e+2x2e"
    molecule = reference_structures()[0]
    assert max(check_rotation(pot, molecule).values()) <= 1e-10
    assert check_reflection(pot, molecule)["reflection_energy"] > 1e-6


def test_energy_and_forces_smooth_at_cutoff() -> None:
    torch.manual_seed(4)
    model = physnet.models.build("se3_transformer", species=["H"], cutoff=3.0, **SMALL)
    pot = physnet.Potential(model).double().eval()

    def energy_forces(r: float) -> tuple[float, float]:
        atoms = Atoms("H3", positions=[[0, 0, 0], [r, 0, 0], [0.0, 0.9, 0.0]])  # a lone pair and a bond
        out = pot(physnet.data.from_ase(atoms, 3.0, dtype=torch.float64))
        return float(out[K.ENERGY]), float(out[K.FORCES][1].abs().max())

    far, _ = energy_forces(10.0)
    e_edge, f_edge = energy_forces(3.0 - 1e-4)
    assert abs(e_edge - far) < 1e-9 and f_edge < 1e-6  # atom 1's interaction fades out at r_c
    assert abs(energy_forces(2.5)[0] - far) > 1e-6  # and it interacts inside


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_coincident_atoms_give_finite_forces_and_gradients(dtype: torch.dtype) -> None:
    pot = _potential(5).to(dtype).train()
    atoms = Atoms("OHH", positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0.5, 0]])
    out = pot(physnet.data.from_ase(atoms, pot.cutoff, dtype=dtype))
    assert torch.isfinite(out[K.ENERGY]).all() and torch.isfinite(out[K.FORCES]).all()
    (out[K.ENERGY].sum() + (out[K.FORCES] ** 2).sum()).backward()
    for name, p in pot.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


def test_safe_spherical_harmonics_at_zero_and_on_unit_vectors() -> None:
    vec = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    sh = safe_spherical_harmonics(vec, 2)
    sh.pow(2).sum().backward()
    assert torch.equal(sh.detach(), torch.tensor([[1.0] + [0.0] * 8], dtype=torch.float64))
    assert torch.isfinite(vec.grad).all()
    x = torch.randn(5, 3, dtype=torch.float64) * 2.0
    ref = o3.spherical_harmonics([0, 1, 2], x, normalize=True, normalization="component")
    assert torch.allclose(safe_spherical_harmonics(x, 2), ref, atol=1e-11)


def test_isolated_atom_and_no_edges() -> None:
    pot = _potential(6).double()
    for atoms in (Atoms("Cu"), Atoms("CO", positions=[[0, 0, 0], [20.0, 0, 0]])):
        graph = physnet.data.from_ase(atoms, pot.cutoff, dtype=torch.float64)
        assert graph[K.EDGE_INDEX].shape[1] == 0
        out = pot(graph)
        assert torch.isfinite(out[K.ENERGY]).all()
        assert torch.equal(out[K.FORCES], torch.zeros(len(atoms), 3, dtype=torch.float64))


def test_layer_norm_is_equivariant_and_finite_at_zero() -> None:
    irreps = hidden_irreps([4, 2, 2])
    norm = EquivariantLayerNorm(irreps).double()
    x = torch.randn(3, irreps.dim, dtype=torch.float64)
    d = _wigner_d(irreps, random_rotation(np.random.default_rng(7), reflect=True))
    assert torch.allclose(norm(x @ d.T), norm(x) @ d.T, atol=1e-12)
    assert torch.isfinite(norm(torch.zeros(1, irreps.dim, dtype=torch.float64))).all()


def test_heads_must_divide_multiplicities() -> None:
    with pytest.raises(ValueError, match="divisible"):
        physnet.models.build("se3_transformer", species=["H"], channels=[6, 3], n_heads=2)


def test_registry_round_trip_and_calculator(tmp_path) -> None:
    """build -> hparams (plain types) -> Potential.save/load -> same numbers; ASE MD runs."""
    assert "se3_transformer" in physnet.models.available()
    pot = _potential(8)
    hp = pot.model.hparams
    assert hp["name"] == "se3_transformer" and hp["channels"] == [8, 4, 2] and hp["parity"] is True
    json.loads(json.dumps(hp))
    pot.save(tmp_path / "se3.pt")
    loaded = physnet.Potential.load(tmp_path / "se3.pt")
    molecule = reference_structures()[0]
    graph = physnet.data.from_ase(molecule, pot.cutoff)
    a, b = pot.eval()(graph), loaded.eval()(graph)
    assert torch.equal(a[K.ENERGY], b[K.ENERGY]) and torch.equal(a[K.FORCES], b[K.FORCES])

    atoms = molecule.copy()
    atoms.calc = physnet.Calculator(tmp_path / "se3.pt", dtype=torch.float64)
    e0 = atoms.get_potential_energy() + atoms.get_kinetic_energy()
    VelocityVerlet(atoms, 0.1 * ase_units.fs).run(5)
    forces = atoms.get_forces()
    assert forces.shape == (9, 3) and np.isfinite(forces).all()
    assert abs(atoms.get_potential_energy() + atoms.get_kinetic_energy() - e0) < 1e-3 * max(abs(e0), 1.0)


def test_forward_does_not_store_state() -> None:
    pot = _potential()
    graph = physnet.data.from_smiles("CCO", cutoff=5.0)[0]
    before = {k: v for k, v in vars(pot.model).items() if not k.startswith("_")}
    pot(graph)
    after = {k: v for k, v in vars(pot.model).items() if not k.startswith("_")}
    assert before.keys() == after.keys()


# --- dynamics model -------------------------------------------------------------------------------


def _systems(n_systems: int = 3, n: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "pos": torch.randn(n_systems * n, 3, generator=g, dtype=torch.float64),
        "vel": 0.5 * torch.randn(n_systems * n, 3, generator=g, dtype=torch.float64),
        "charges": torch.randint(0, 2, (n_systems * n,), generator=g).double() * 2 - 1,
        "batch": torch.arange(n_systems).repeat_interleave(n),
    }


KINDS = {"pos": "position", "vel": "vector", "charges": "invariant", "batch": "invariant"}


def _dynamics(parity: bool = True) -> SE3TransformerDynamics:
    torch.manual_seed(9)
    return SE3TransformerDynamics(channels=(8, 4, 2), n_layers=2, n_heads=2, parity=parity).double()


def test_dynamics_is_e3_and_permutation_equivariant() -> None:
    model, inputs = _dynamics(), _systems()
    assert (model(**inputs) - inputs["pos"]).abs().max() > 1e-3  # it does move the particles
    report = check_particle_symmetries(model, inputs, KINDS, "position")
    assert max(report.values()) <= 1e-10, report


def test_dynamics_without_parity_is_only_rotation_equivariant() -> None:
    model, inputs = _dynamics(parity=False), _systems()
    report = check_particle_symmetries(model, inputs, KINDS, "position", checks=("rotation", "reflection"))
    assert report["rotation"] <= 1e-10 and report["reflection"] > 1e-6, report


def test_dynamics_batch_equals_single_and_charges_matter() -> None:
    model, inputs = _dynamics(), _systems()
    ref = model(**inputs)
    one = model(
        inputs["pos"][5:10], inputs["vel"][5:10], inputs["charges"][5:10], torch.zeros(5, dtype=torch.long)
    )
    assert (one - ref[5:10]).abs().max() <= 1e-12
    flipped = {**inputs, "charges": -inputs["charges"].abs()}
    assert not torch.allclose(model(**flipped), ref)


# --- later-work options: plain sum (NequIP/MACE), MACE product basis, Bessel radial basis --------

MACE_LIKE = {"attention": False, "correlation": 3, "product_channels": 4, "radial_basis": "bessel"}


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"attention": False}, id="sum", marks=pytest.mark.slow),
        pytest.param({"correlation": 3, "product_channels": 4}, id="product", marks=pytest.mark.slow),
        pytest.param(MACE_LIKE, id="mace_like", marks=pytest.mark.slow),
        pytest.param({**MACE_LIKE, "channels": [8, 4]}, id="mace_like_lmax1"),  # the shipped options
    ],
)
def test_options_pass_kit_in_float64(options: dict) -> None:
    """Rotation, reflection, translation, permutation to 1e-12, forces and stress vs finite differences."""
    pot = _potential(10, **options)
    if not options.get("attention", True):  # a data-set neighbour count, not 1, divides the sum
        pot.model.fit_statistics([_graph(a) for a in reference_structures()])
        assert float(pot.model.avg_neighbors) > 1.0
    report = run_kit(pot, *reference_structures(), dtype=torch.float64)
    assert_kit(report, torch.float64, complete=True)
    symmetry = {k: v for k, v in report.items() if k.split("_")[0] in SYMMETRIES}
    assert len(symmetry) == 18 and max(symmetry.values()) <= 1e-12, symmetry


SYMMETRIES = ("rotation", "reflection", "translation", "permutation")


def test_product_basis_is_equivariant_and_element_dependent() -> None:
    torch.manual_seed(11)
    irreps = hidden_irreps([4, 4, 4])
    basis = ProductBasis(irreps, irreps, channels=4, l_max=2, correlation=3, n_species=2).double()
    x = torch.randn(6, irreps.dim, dtype=torch.float64)
    species = torch.tensor([0, 1, 0, 1, 1, 0])
    for reflect in (False, True):
        d = _wigner_d(irreps, random_rotation(np.random.default_rng(12), reflect=reflect))
        out = basis(x, species)
        assert (basis(x @ d.T, species) - out @ d.T).abs().max() <= 1e-12 * out.abs().max()
    # the same features on another element give another output (element-dependent weights)
    assert not torch.allclose(
        basis(x, torch.zeros(6, dtype=torch.long)), basis(x, torch.ones(6, dtype=torch.long))
    )
    # a cubic polynomial of the input: out(s x) = c1 s + c2 s^2 + c3 s^3 with c3 != 0 (4 points fit it)
    s = torch.tensor([1.0, 2.0, -1.0, 0.5], dtype=torch.float64)
    outs = torch.stack([basis(si * x, species) for si in s]).reshape(4, -1)  # [4, n * dim]
    vander = torch.stack([s, s**2, s**3], dim=1)  # [4, 3]
    coef = torch.linalg.lstsq(vander, outs).solution  # [3, n * dim]
    assert (vander @ coef - outs).abs().max() <= 1e-10 * outs.abs().max()
    assert coef[2].abs().max() > 1e-3 * coef[0].abs().max()


def test_product_basis_buffers_exact_after_casts() -> None:
    layer = _potential(correlation=3, product_channels=4).float().double().model.backbone.layers[1]
    buffers = {n: b for n, b in layer.product.named_buffers() if "_w3j_" in n}
    assert buffers
    for name, buf in buffers.items():
        l1, l2, l3 = (int(x) for x in name.split("_")[-3:])
        assert buf.dtype == torch.float64 and torch.equal(buf, o3.wigner_3j(l1, l2, l3, dtype=torch.float64))


def test_without_attention_no_query_and_avg_neighbors_from_data() -> None:
    pot = _potential(13, attention=False)
    assert all(layer.query is None for layer in pot.model.backbone.layers)
    graphs = [_graph(a) for a in reference_structures()]
    pot.model.fit_statistics(graphs)
    edges = sum(int(g[K.EDGE_INDEX].shape[1]) for g in graphs)
    atoms = sum(len(a) for a in reference_structures())
    assert float(pot.model.avg_neighbors) == pytest.approx(edges / atoms)
    assert "avg_neighbors" in pot.model.state_dict()


def test_bessel_basis_values_and_trainable_frequencies() -> None:
    rbf = BesselRBF(4, 5.0).double()
    r = torch.tensor([0.5, 1.0, 4.0], dtype=torch.float64)
    n = torch.arange(1, 5, dtype=torch.float64)
    ref = math.sqrt(2 / 5.0) * torch.sin(n * math.pi * r[:, None] / 5.0) / r[:, None]
    assert torch.allclose(rbf(r), ref, atol=1e-14)
    assert rbf.freq.requires_grad
    with pytest.raises(ValueError, match="radial_basis"):
        physnet.models.build("se3_transformer", species=["H"], radial_basis="gauss")
    with pytest.raises(ValueError, match="correlation"):
        physnet.models.build("se3_transformer", species=["H"], correlation=0)
