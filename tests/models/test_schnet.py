"""SchNet through physnet's test kit, plus its own architecture checks."""

import pytest
import torch

import physnet
from physnet.data import keys as K
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
