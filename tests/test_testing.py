"""The test kit must catch models that break each symmetry or gradient property."""

import numpy as np
import pytest
import torch

import physnet
from physnet.data import keys as K
from physnet.data.neighbors import edge_vectors
from physnet.models.registry import EnergyModel
from physnet.testing import (
    assert_kit,
    check_additivity,
    check_batch,
    check_forces_fd,
    check_no_cross_gradients,
    check_permutation,
    check_reflection,
    check_rotation,
    check_stress_fd,
    check_translation,
    nve_drift,
    random_rotation,
    reference_structures,
)

SPECIES = ["H", "C", "O", "Cu", "Au"]


class _Pairwise(EnergyModel):
    """A smooth invariant pair model, the base the broken variants perturb."""

    def __init__(self) -> None:
        super().__init__(SPECIES, cutoff=5.0)
        self.scale = torch.nn.Parameter(torch.tensor(0.3))

    def pair_energy(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        r = torch.linalg.vector_norm(edge_vectors(graph), dim=-1)
        fcut = 0.5 * (torch.cos(torch.pi * r / self.cutoff) + 1) * (r < self.cutoff)
        e = self.scale * torch.exp(-r) * fcut
        return physnet.nn.scatter_sum(e, graph[K.EDGE_INDEX][0], graph[K.POS].shape[0])

    def forward(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.pair_energy(graph)


class _DependsOnX(_Pairwise):
    def forward(self, graph):
        return self.pair_energy(graph) + 0.01 * graph[K.POS][:, 0] ** 2


class _Chiral(_Pairwise):
    """Adds a pseudo-scalar (triple product of two edge vectors and their cross product)."""

    def forward(self, graph):
        vec = edge_vectors(graph)
        triple = (vec[:-2] * torch.cross(vec[1:-1], vec[2:], dim=-1)).sum(-1)
        e = physnet.nn.scatter_sum(0.001 * triple, graph[K.EDGE_INDEX][0, :-2], graph[K.POS].shape[0])
        return self.pair_energy(graph) + e


class _DetachedPart(_Pairwise):
    def forward(self, graph):
        g = dict(graph)
        g[K.POS] = graph[K.POS].detach()
        return self.pair_energy(graph) + 0.5 * self.pair_energy(g)


class _CrossTalk(_Pairwise):
    def forward(self, graph):
        return self.pair_energy(graph) + 1e-3 * (graph[K.POS] ** 2).sum()


class _IndexDependent(_Pairwise):
    def forward(self, graph):
        n = graph[K.POS].shape[0]
        weight = torch.arange(n, dtype=graph[K.POS].dtype) / n
        return self.pair_energy(graph) * (1 + weight)


@pytest.fixture(scope="module")
def structures():
    return reference_structures()


def test_invariant_pair_model_passes(structures) -> None:
    molecule, crystal = structures
    report = physnet.testing.run_kit(physnet.Potential(_Pairwise()), molecule, crystal)
    assert_kit(report)


def test_rotation_and_translation_catch_absolute_coordinates(structures) -> None:
    pot = physnet.Potential(_DependsOnX())
    molecule, _ = structures
    assert check_rotation(pot, molecule)["rotation_energy"] > 1e-6
    assert check_translation(pot, molecule)["translation_energy"] > 1e-6
    with pytest.raises(AssertionError, match="rotation_energy"):
        assert_kit(check_rotation(pot, molecule))


def test_reflection_catches_a_chiral_model(structures) -> None:
    pot = physnet.Potential(_Chiral())
    molecule, _ = structures
    assert check_rotation(pot, molecule)["rotation_energy"] < 1e-10
    assert check_reflection(pot, molecule)["reflection_energy"] > 1e-8


def test_finite_differences_catch_detached_energy(structures) -> None:
    molecule, crystal = structures
    pot = physnet.Potential(_DetachedPart())
    assert check_forces_fd(pot, molecule) > 1e-3
    assert check_stress_fd(pot, crystal) > 1e-3


def test_batch_and_cross_gradients_catch_crosstalk(structures) -> None:
    molecule, _ = structures
    pot = physnet.Potential(_CrossTalk())
    assert check_no_cross_gradients(pot, [molecule, molecule]) > 0
    assert check_batch(pot, [molecule, molecule])["batch_energy"] > 1e-6
    assert check_additivity(pot, molecule, molecule) > 1e-6


def test_permutation_catches_index_dependence(structures) -> None:
    molecule, _ = structures
    pot = physnet.Potential(_IndexDependent())
    assert check_permutation(pot, molecule)["permutation_energy"] > 1e-6


def test_random_rotation_is_orthogonal_with_right_determinant() -> None:
    rng = np.random.default_rng(0)
    for reflect, det in ((False, 1.0), (True, -1.0)):
        q = random_rotation(rng, reflect=reflect)
        np.testing.assert_allclose(q @ q.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(q) == pytest.approx(det)


def test_nve_drift_reports_figures(structures) -> None:
    molecule, _ = structures
    out = nve_drift(physnet.Potential(_Pairwise()), molecule, steps=20)
    assert set(out) == {"drift_meV_per_atom_per_ps", "max_excursion_meV_per_atom"}
    assert np.isfinite(list(out.values())).all()


def test_unknown_check_name_is_refused(structures) -> None:
    with pytest.raises(ValueError, match="unknown check"):
        physnet.testing.run_kit(physnet.Potential(_Pairwise()), structures[0], checks=["rotaton"])


def test_complete_kit_refuses_a_partial_report(structures) -> None:
    partial = physnet.testing.run_kit(physnet.Potential(_Pairwise()), structures[0], checks=["rotation"])
    assert_kit(partial)  # what is there passes
    with pytest.raises(AssertionError, match="lacks"):
        assert_kit(partial, complete=True)
