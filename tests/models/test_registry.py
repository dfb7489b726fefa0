import pytest

import physnet


def test_available_lists_schnet() -> None:
    assert "schnet" in physnet.models.available()


def test_build_records_hparams_with_defaults() -> None:
    model = physnet.models.build("schnet", species=["H", "O"], n_interactions=2)
    assert model.hparams["name"] == "schnet"
    assert model.hparams["species"] == ["H", "O"]
    assert model.hparams["n_interactions"] == 2 and model.hparams["cutoff"] == 5.0
    rebuilt = physnet.models.build(**{k: v for k, v in model.hparams.items()})
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in model.parameters())


def test_unknown_model_names_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown model 'dimenet'.*schnet"):
        physnet.models.build("dimenet", species=["H"])


def test_unknown_hparam_is_an_error() -> None:
    with pytest.raises(TypeError, match="n_layers"):
        physnet.models.build("schnet", species=["H"], n_layers=3)


def test_duplicate_registration_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        physnet.models.register("schnet")(physnet.models.SchNet)


def test_species_by_number_or_symbol() -> None:
    a = physnet.models.build("schnet", species=[1, 8])
    b = physnet.models.build("schnet", species=["H", "O"])
    assert a.species.atomic_numbers == b.species.atomic_numbers == [1, 8]


def test_dynamics_models_build_save_and_load_through_their_registry(tmp_path) -> None:
    """A dynamics model is built by name, records plain hparams and comes back with its weights."""
    import json

    import torch

    assert {"egnn", "se3_transformer"} <= set(physnet.models.available_dynamics())
    torch.manual_seed(0)
    model = physnet.models.build_dynamics("egnn", n_features=8, n_layers=2).double()
    assert model.hparams["name"] == "egnn" and model.hparams["n_layers"] == 2
    assert model.hparams["act"] == "silu"  # a default, filled in
    json.loads(json.dumps(model.hparams))
    model.save(tmp_path / "dyn.pt")
    loaded = physnet.models.load_dynamics(tmp_path / "dyn.pt")
    x, v = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    q, batch = torch.tensor([1.0, -1, 1, -1, 1]), torch.zeros(5, dtype=torch.long)
    assert loaded.hparams == model.hparams
    assert torch.equal(loaded(x, v, q, batch), model.eval()(x, v, q, batch))


def test_dynamics_registry_refuses_unknown_names_and_arguments() -> None:
    with pytest.raises(ValueError, match="unknown dynamics model 'egn'.*did you mean 'egnn'"):
        physnet.models.build_dynamics("egn")
    with pytest.raises(TypeError, match=r"\['n_feature'\] \(did you mean 'n_features'\?\)"):
        physnet.models.build_dynamics("egnn", n_feature=8)
    with pytest.raises(ValueError, match="already registered"):
        physnet.models.register_dynamics("egnn")(physnet.models.EGNNDynamics)
