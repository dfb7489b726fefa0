from pathlib import Path

import pytest

from physnet.train.config import describe, load_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "configs"


def test_defaults_and_dotted_overrides() -> None:
    cfg = load_config(
        None,
        [
            "model.n_features=128",
            "data.train=1000",
            "trainer.devices=[0, 1]",
            "task.lr=5e-4",
            "run_dir=runs/x",
        ],
    )
    assert cfg.model == {"name": "schnet", "n_features": 128}
    assert cfg.data.train == 1000 and cfg.trainer.devices == [0, 1] and cfg.task.lr == 5e-4
    assert cfg.run_dir == "runs/x" and cfg.data.batch_size == 10


def test_yaml_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model: {name: schnet, n_interactions: 2}\ndata: {path: a.xyz, energy_unit: eV}\n")
    cfg = load_config(path, ["data.energy_unit=kcal/mol"])
    assert (
        cfg.model["n_interactions"] == 2 and cfg.data.path == "a.xyz" and cfg.data.energy_unit == "kcal/mol"
    )


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("data: {pathh: a.xyz}", [], r"unknown key\(s\) \['pathh'\] in section 'data'"),
        ("dataa: {}", [], "unknown config section"),
        ("data: 3", [], "must be a mapping"),
        ("", ["data.path"], "section.key=value"),
        ("", ["task.lr=fast"], "task.lr must be float, got 'fast'"),
        ("", ["data.batch_size=2.5"], "data.batch_size must be int"),
    ],
)
def test_config_errors_are_clear(tmp_path: Path, text: str, overrides: list[str], message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_config(path, overrides)


def test_missing_config_file() -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config("/no/such/config.yaml")


def test_describe_lists_every_field_with_default() -> None:
    text = describe()
    for field in (
        "data.energy_unit",
        "task.forces_weight: 10.0",
        "trainer.max_time_minutes",
        "task.ema_decay",
    ):
        assert field in text


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_load(path: Path) -> None:
    import yaml

    from physnet.train.config import job_of, load_dynamics_config, load_gns_config

    job = job_of(yaml.safe_load(path.read_text()))
    if job == "gns":
        gns = load_gns_config(path)
        assert gns.data.train and gns.model["name"] == "gns"
        return
    if job == "dynamics":
        dyn = load_dynamics_config(path)
        assert dyn.data.path and dyn.model["name"] in ("egnn", "se3_transformer")
        return
    cfg = load_config(path)
    assert cfg.data.energy_unit and cfg.data.length_unit


def test_the_job_key_picks_the_config_and_names_a_wrong_one() -> None:
    """``job`` chooses potential | gns | dynamics; without it a GNS config is known by its model."""
    from physnet.errors import UserError
    from physnet.train.config import job_of, load_dynamics_config, load_gns_config

    assert job_of({}) == "potential" and job_of({"model": {"name": "gns"}}) == "gns"
    assert job_of({"job": "dynamics", "model": {"name": "egnn"}}) == "dynamics"
    with pytest.raises(UserError, match="job must be one of potential, gns, dynamics, got 'dynamic'"):
        job_of({"job": "dynamic"})
    with pytest.raises(UserError, match="for job 'gns', not 'potential'"):
        load_config(None, ["job=gns"])
    cfg = load_dynamics_config(None, ["model.n_layers=6", "task.ema_decay=0.999"])
    assert cfg.job == "dynamics" and cfg.model == {"name": "egnn", "n_layers": 6}
    assert cfg.task.ema_decay == 0.999
    assert load_gns_config(None, []).job == "gns"
