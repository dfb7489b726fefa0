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
    with pytest.raises(ValueError, match="unknown model 'painn'.*schnet"):
        physnet.models.build("painn", species=["H"])


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
