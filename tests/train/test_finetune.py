"""Fine-tuning (model.init_from): weights carried over, references/scale, freezing, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.io import write

import physnet
from physnet.train.config import load_config
from physnet.train.fit import train
from tests.conftest import SHARED_DATA, emt_frames

SMALL = [
    "model.n_features=16",
    "model.n_filters=16",
    "model.n_interactions=1",
    "model.n_rbf=8",
    "model.cutoff=4.0",
]


def _cfg(data: Path, run_dir: Path, *extra: str):
    return load_config(
        None,
        [
            f"run_dir={run_dir}",
            f"data.path={data}",
            "data.energy_unit=eV",
            "data.length_unit=Å",
            "data.train=30",
            "data.val=10",
            "data.batch_size=5",
            "trainer.progress_bar=false",
            "trainer.threads=1",
            "task.warmup_steps=2",
            "task.ema_decay=0",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def pretrained(emt_molecule_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("pre") / "run"
    train(_cfg(emt_molecule_file, run, *SMALL, "trainer.max_steps=12"))
    return run / "potential.pt"


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return physnet.Potential.load(path).state_dict()


def test_init_from_starts_at_the_trained_weights(pretrained: Path, emt_molecule_file: Path, tmp_path: Path):
    # no training step: the first-step weights equal the file's (lr 0), references kept
    run = tmp_path / "ft"
    cfg = _cfg(
        emt_molecule_file,
        run,
        f"model.init_from={pretrained}",
        "model.references=keep",
        "task.lr=0",
        "task.min_lr=0",
        "trainer.max_steps=1",
    )
    train(cfg)
    old, new = _weights(pretrained), _weights(run / "potential.pt")
    assert old.keys() == new.keys()
    for key in old:
        torch.testing.assert_close(new[key], old[key], msg=key)
    record = json.loads((run / "init_from.json").read_text())
    assert record["init_from"] == str(pretrained) and len(record["sha256"]) == 64
    saved = load_config(run / "config.yaml")
    assert saved.model["n_features"] == 16 and saved.model["init_from"] == str(pretrained)


def test_refit_references_fits_what_the_model_leaves(pretrained: Path, tmp_path: Path):
    # the same frames shifted by a constant per atom (another zero of energy): refitted references
    # absorb the shift, so the fine-tuned potential before any step predicts the shifted energies
    frames = emt_frames("molecule", 50, seed=3)
    for atoms in frames:
        atoms.calc.results["energy"] += -2.5 * len(atoms)
    data = tmp_path / "shifted.xyz"
    write(data, frames)
    run = tmp_path / "ft"
    train(
        _cfg(data, run, f"model.init_from={pretrained}", "task.lr=0", "task.min_lr=0", "trainer.max_steps=1")
    )
    base, tuned = (
        physnet.Potential.load(pretrained).eval(),
        physnet.Potential.load(run / "potential.pt").eval(),
    )
    graph = physnet.data.from_ase(frames[0], base.cutoff)
    diff = float(tuned(graph)["energy"] - base(graph)["energy"])
    assert abs(diff - (-2.5 * len(frames[0]))) < 0.5
    torch.testing.assert_close(tuned.energy_scale, base.energy_scale)  # scale kept by default


def test_kcal_data_converts_kept_scale(pretrained: Path, emt_molecule_file: Path, tmp_path: Path):
    frames = physnet.data.read_frames(emt_molecule_file)
    kcal = 1.0 / physnet.units.energy_factor("kcal/mol")
    for atoms in frames:
        atoms.calc.results["energy"] *= kcal
        atoms.calc.results["forces"] = atoms.calc.results["forces"] * kcal
    data = tmp_path / "kcal.xyz"
    write(data, frames)
    run = tmp_path / "ft"
    cfg = _cfg(
        data, run, f"model.init_from={pretrained}", "trainer.max_steps=1", "task.lr=0", "task.min_lr=0"
    )
    cfg.data.energy_unit = "kcal/mol"
    train(cfg)
    base, tuned = (
        physnet.Potential.load(pretrained).eval(),
        physnet.Potential.load(run / "potential.pt").eval(),
    )
    assert tuned.energy_unit == "kcal/mol"
    assert float(tuned.energy_scale) == pytest.approx(float(base.energy_scale) * kcal, rel=1e-5)
    graph = physnet.data.from_ase(frames[0], base.cutoff)
    np.testing.assert_allclose(
        tuned(graph)["forces"].detach().numpy(),
        base(graph)["forces"].detach().numpy() * kcal,
        rtol=1e-4,
        atol=1e-4,
    )


def test_freeze_keeps_named_parts(pretrained: Path, emt_molecule_file: Path, tmp_path: Path):
    run = tmp_path / "ft"
    train(
        _cfg(
            emt_molecule_file,
            run,
            f"model.init_from={pretrained}",
            "model.freeze=[embedding, interactions]",
            "trainer.max_steps=4",
        )
    )
    old, new = _weights(pretrained), _weights(run / "potential.pt")
    for key in old:
        if key.startswith(("model.embedding", "model.interactions")):
            torch.testing.assert_close(new[key], old[key], msg=key)
    assert any(not torch.equal(new[k], old[k]) for k in old if k.startswith("model.readout"))
    assert json.loads((run / "init_from.json").read_text())["frozen_parameters"] > 0


def test_add_species(pretrained: Path, tmp_path: Path):
    frames = emt_frames("molecule", 40, seed=5)
    for atoms in frames:  # a nitrogen in place of the oxygen
        atoms.numbers[atoms.numbers == 8] = 7
    data = tmp_path / "with_n.xyz"
    write(data, frames)
    with pytest.raises(ValueError, match=r"\['N'\] are not in the trained model's species.*add_species=true"):
        train(_cfg(data, tmp_path / "a", f"model.init_from={pretrained}", "trainer.max_steps=1"))
    run = tmp_path / "b"
    train(_cfg(data, run, f"model.init_from={pretrained}", "model.add_species=true", "trainer.max_steps=2"))
    tuned = physnet.Potential.load(run / "potential.pt")
    assert tuned.species[-1] == "N" and len(tuned.species) == 4


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["model.n_features=32"], r"differs from the trained schnet: n_features=32 \(trained: 16\)"),
        (["model.name=egnn"], r"holds a 'schnet' model but the config asks for 'egnn'"),
        (["model.freeze=[nothing]"], r"no part 'nothing'; parts with weights: \['embedding'"),
        (["model.references=maybe"], r"model.references must be keep or refit"),
    ],
)
def test_bad_finetune_config(pretrained, emt_molecule_file, tmp_path, extra, match):
    with pytest.raises(ValueError, match=match):
        train(
            _cfg(
                emt_molecule_file,
                tmp_path / "r",
                f"model.init_from={pretrained}",
                "trainer.max_steps=1",
                *extra,
            )
        )


def test_refuses_files_that_are_not_potentials(emt_molecule_file: Path, tmp_path: Path):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    exported = tmp_path / "model.pt2"
    exported.write_bytes(b"PK")
    for path, match in (
        (text, "is not a physnet potential or checkpoint"),
        (other, r"is not a physnet potential or checkpoint \(format None"),
        (exported, "exported .pt2 file"),
    ):
        with pytest.raises(ValueError, match=match):
            train(_cfg(emt_molecule_file, tmp_path / "r", f"model.init_from={path}", "trainer.max_steps=1"))
    with pytest.raises(ValueError, match="only applies when fine-tuning"):
        train(_cfg(emt_molecule_file, tmp_path / "r", *SMALL, "model.freeze=[embedding]"))


@pytest.mark.skipif(
    not (SHARED_DATA / "md17_ethanol_2000.xyz").is_file(), reason="shared MD17 ethanol file absent"
)
def test_finetune_gfn2_schnet_on_md17_runs(pretrained: Path, tmp_path: Path):
    # kcal/mol DFT data on top of an eV model: units convert and the run finishes
    frames = physnet.data.read_frames(SHARED_DATA / "md17_ethanol_2000.xyz", index=":40")
    data = tmp_path / "md17_40.xyz"
    write(data, frames)
    run = tmp_path / "ft"
    cfg = _cfg(data, run, f"model.init_from={pretrained}", "trainer.max_steps=3")
    cfg.data.energy_unit = "kcal/mol"
    train(cfg)
    metrics = json.loads((run / "test_metrics.json").read_text())
    assert np.isfinite(metrics["val"]["forces_mae"])
