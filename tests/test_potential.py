"""The Potential wrapper: terms, references, forces/stress helper, dtypes, I/O, bad input."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

import physnet
from physnet.data import keys as K
from physnet.nn.priors import ZBLRepulsion
from physnet.potential import compute_forces_and_stress, strain_graph


@pytest.fixture()
def pot() -> physnet.Potential:
    torch.manual_seed(0)
    return physnet.Potential(physnet.models.build("schnet", species=["H", "C", "O"])).double()


@pytest.fixture()
def ethanol() -> Atoms:
    return physnet.data.from_smiles("CCO")[0]


def test_outputs_and_shapes(pot: physnet.Potential, ethanol: Atoms) -> None:
    graphs = [physnet.data.from_ase(ethanol, 5.0, dtype=torch.float64)] * 2
    out = pot.eval()(physnet.data.collate(graphs))
    assert out[K.ENERGY].shape == (2,) and out[K.FORCES].shape == (18, 3)
    assert out[K.ATOMIC_ENERGY].shape == (18,)
    assert K.STRESS not in out  # molecules: no stress
    assert not out[K.ENERGY].requires_grad  # eval mode: detached


def test_reference_energies_add_per_element(pot: physnet.Potential, ethanol: Atoms) -> None:
    refs = {"H": -13.6, "C": -1030.0, 8: -2040.0}
    with_refs = physnet.Potential(pot.model, atom_refs=refs).eval()
    graph = physnet.data.from_ase(ethanol, 5.0, dtype=torch.float64)
    a, b = pot.eval()(graph), with_refs(graph)
    expected = 6 * -13.6 + 2 * -1030.0 + -2040.0
    assert float(b[K.energy_term_key("reference")]) == pytest.approx(expected)
    assert float(b[K.ENERGY] - a[K.ENERGY]) == pytest.approx(expected)
    torch.testing.assert_close(a[K.FORCES], b[K.FORCES])  # constants carry no force
    with pytest.raises(ValueError, match="not in the model's species"):
        physnet.Potential(pot.model, atom_refs={"N": 1.0})


def test_training_mode_keeps_graph_for_force_loss(pot: physnet.Potential, ethanol: Atoms) -> None:
    graph = physnet.data.from_ase(ethanol, 5.0, dtype=torch.float64)
    out = pot.train()(graph)
    loss = (out[K.FORCES] ** 2).sum() + out[K.ENERGY].sum()
    loss.backward()
    grads = [p.grad for p in pot.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)


def test_user_positions_requiring_grad_stay_differentiable(pot: physnet.Potential, ethanol: Atoms) -> None:
    """A Hessian row by double backward through the forces, checked against finite differences."""
    graph = physnet.data.from_ase(ethanol, 5.0, dtype=torch.float64)
    pos = graph[K.POS].clone().requires_grad_(True)
    forces = pot.eval()({**graph, K.POS: pos})[K.FORCES]
    (row,) = torch.autograd.grad(forces[0, 0], pos)
    h = 1e-5
    shifted = []
    for s in (h, -h):
        p = graph[K.POS].clone()
        p[0, 0] += s
        shifted.append(pot({**graph, K.POS: p})[K.FORCES])
    fd = (shifted[0] - shifted[1]) / (2 * h)  # dF/dx_00 = -H[:, 00]
    # d F_00 / d pos = -H[00, :]; the Hessian is symmetric, so the two must agree.
    assert float(row.abs().max()) > 0
    torch.testing.assert_close(row, fd, rtol=1e-6, atol=1e-9)


def test_stress_helper_matches_definition() -> None:
    """E = sum over a strained cell of c * V: dE/deps / V recovers c on the diagonal."""
    cell = torch.eye(3, dtype=torch.float64).unsqueeze(0) * 3.0
    graph = {
        K.POS: torch.zeros(1, 3, dtype=torch.float64),
        K.CELL: cell,
        K.BATCH: torch.zeros(1, dtype=torch.long),
    }
    strained, eps = strain_graph(graph)
    energy = 2.5 * torch.linalg.det(strained[K.CELL])  # [1]
    pos = graph[K.POS].requires_grad_(True)
    _, stress = compute_forces_and_stress(energy, pos, eps, cell, training=False)
    torch.testing.assert_close(stress[0], 2.5 * torch.eye(3, dtype=torch.float64))


def test_float32_and_float64_agree(ethanol: Atoms) -> None:
    torch.manual_seed(0)
    pot = physnet.Potential(physnet.models.build("schnet", species=["H", "C", "O"])).eval()
    e32 = pot.float()(physnet.data.from_ase(ethanol, 5.0, dtype=torch.float32))
    e64 = pot.double()(physnet.data.from_ase(ethanol, 5.0, dtype=torch.float64))
    assert e32[K.ENERGY].dtype == torch.float32
    torch.testing.assert_close(e32[K.ENERGY].double(), e64[K.ENERGY], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(e32[K.FORCES].double(), e64[K.FORCES], rtol=1e-4, atol=1e-6)


def test_dtype_mismatch_is_explained(pot: physnet.Potential, ethanol: Atoms) -> None:
    with pytest.raises(ValueError, match="float32 but the model is torch.float64"):
        pot(physnet.data.from_ase(ethanol, 5.0, dtype=torch.float32))


def test_unknown_element_names_element_and_species(pot: physnet.Potential) -> None:
    graph = physnet.data.from_ase(Atoms("CN", positions=[[0, 0, 0], [1.2, 0, 0]]), 5.0, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"N \(Z=\[7\]\) not in the model's species \['H', 'C', 'O'\]"):
        pot(graph)


def test_isolated_atom_has_finite_energy_and_zero_force(pot: physnet.Potential) -> None:
    out = pot.eval()(physnet.data.from_ase(Atoms("O"), 5.0, dtype=torch.float64))
    assert torch.isfinite(out[K.ENERGY]).all()
    assert torch.equal(out[K.FORCES], torch.zeros(1, 3, dtype=torch.float64))


def test_coincident_atoms_give_finite_forces(pot: physnet.Potential) -> None:
    atoms = Atoms("OHH", positions=[[0, 0, 0], [0, 0, 0], [0.9, 0.3, 0]])
    with_zbl = physnet.Potential(pot.model, priors={"zbl": ZBLRepulsion(["H", "C", "O"])}).eval()
    for p in (pot.eval(), with_zbl):
        out = p(physnet.data.from_ase(atoms, 5.0, dtype=torch.float64))
        assert torch.isfinite(out[K.ENERGY]).all() and torch.isfinite(out[K.FORCES]).all()


def test_stress_requested_for_molecule_is_an_error(pot: physnet.Potential, ethanol: Atoms) -> None:
    with pytest.raises(ValueError, match="non-singular cell"):
        pot(physnet.data.from_ase(ethanol, 5.0, dtype=torch.float64), compute_stress=True)


def test_mixed_batch_of_crystal_and_molecule(ethanol: Atoms) -> None:
    torch.manual_seed(0)
    pot = physnet.Potential(physnet.models.build("schnet", species=["H", "C", "O", "Cu"])).double().eval()
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    graphs = [physnet.data.from_ase(a, 5.0, dtype=torch.float64) for a in (ethanol, cu)]
    out = pot(physnet.data.collate(graphs))
    assert K.STRESS not in out
    alone = pot(graphs[1])
    torch.testing.assert_close(out[K.ENERGY][1], alone[K.ENERGY][0])
    assert K.STRESS in alone


def test_reserved_prior_names(pot: physnet.Potential) -> None:
    with pytest.raises(ValueError, match="reserved"):
        physnet.Potential(pot.model, priors={"model": ZBLRepulsion(["H"])})


def test_prior_cutoff_beyond_model_is_refused(pot: physnet.Potential) -> None:
    with pytest.raises(ValueError, match="cutoff"):
        physnet.Potential(pot.model, priors={"zbl": ZBLRepulsion(["H"], cutoff=6.0)})


def test_save_load_round_trip(tmp_path, ethanol: Atoms) -> None:
    torch.manual_seed(3)
    species = ["H", "C", "O"]
    pot = physnet.Potential(
        physnet.models.build("schnet", species=species, n_interactions=2),
        priors={"zbl": ZBLRepulsion(species, cutoff=1.0, energy_unit="kcal/mol")},
        atom_refs={"C": -5.0},
        energy_unit="kcal/mol",
    ).double()
    path = tmp_path / "pot.pt"
    pot.save(path)
    loaded = physnet.Potential.load(path)
    assert loaded.energy_unit == "kcal/mol" and next(loaded.parameters()).dtype == torch.float64
    graph = physnet.data.from_ase(ethanol, 5.0, dtype=torch.float64)
    torch.testing.assert_close(loaded.eval()(graph)[K.ENERGY], pot.eval()(graph)[K.ENERGY], rtol=0, atol=0)
    with pytest.raises(FileNotFoundError):
        physnet.Potential.load(tmp_path / "missing.pt")
    torch.save({"something": "else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a physnet potential"):
        physnet.Potential.load(tmp_path / "other.pt")


def test_unknown_units_are_refused(pot: physnet.Potential) -> None:
    with pytest.raises(ValueError, match="unknown energy unit 'kcal'"):
        physnet.Potential(pot.model, energy_unit="kcal")
    with pytest.raises(ValueError, match="unknown length unit"):
        physnet.Potential(pot.model, length_unit="inch")
    assert np.isclose(physnet.units.energy_factor("kcal/mol"), 0.0433641, rtol=1e-5)


def test_prior_units_must_match_the_potential(pot: physnet.Potential) -> None:
    with pytest.raises(ValueError, match="prior 'zbl' has energy_unit='eV' but the potential has 'kcal/mol'"):
        physnet.Potential(pot.model, priors={"zbl": ZBLRepulsion(["H"])}, energy_unit="kcal/mol")


def test_calculator_leaves_the_callers_potential_alone(pot: physnet.Potential, ethanol: Atoms) -> None:
    pot.train()
    calc = physnet.Calculator(pot, dtype=torch.float32)
    assert pot.training and next(pot.parameters()).dtype == torch.float64
    assert not calc.potential.training and next(calc.potential.parameters()).dtype == torch.float32
