"""Committees: mean and spread against members evaluated by hand, vmap = loop, training K members,
the Calculator's results, and refusal of mismatched members."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import physnet
from physnet.committee import Committee
from physnet.train.config import load_config
from physnet.train.fit import train
from tests.conftest import emt_frames


def _members(species: list[str], k: int = 3, **hparams) -> list[physnet.Potential]:
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        model = physnet.models.build(
            "schnet", species=species, n_features=16, n_filters=16, n_rbf=8, **hparams
        )
        pot = physnet.Potential(model)
        pot.atom_refs.normal_()  # members differ in every term
        out.append(pot.double())
    return out


def _graph(atoms, cutoff: float) -> dict[str, torch.Tensor]:
    return physnet.data.from_ase(atoms, cutoff, dtype=torch.float64)


@pytest.mark.parametrize("kind", ["molecule", "metal"])
def test_mean_and_spread_match_the_members(kind: str) -> None:
    atoms = emt_frames(kind, 1)[0]
    members = _members(sorted(set(atoms.get_chemical_symbols())))
    graph = _graph(atoms, members[0].cutoff)
    periodic = kind == "metal"
    ref = [m.eval()(graph, compute_stress=periodic) for m in members]
    energies = torch.stack([r["energy"].detach() for r in ref])  # [K, 1]
    forces = torch.stack([r["forces"].detach() for r in ref])  # [K, n, 3]
    for mode in ("loop", "vmap"):
        out = Committee(members, mode=mode).frozen(dtype=torch.float64)(graph, compute_stress=periodic)
        torch.testing.assert_close(out["energy"], energies.mean(0))
        torch.testing.assert_close(out["forces"], forces.mean(0))
        torch.testing.assert_close(out["energy_std"], energies.std(0, unbiased=False))
        by_hand = torch.sqrt(((forces - forces.mean(0)) ** 2).sum(-1).mean(0))
        torch.testing.assert_close(out["forces_std"], by_hand)
        assert float(out["forces_std"].min()) > 0
        if periodic:
            stress = torch.stack([r["stress"].detach() for r in ref])
            torch.testing.assert_close(out["stress"], stress.mean(0))


def test_calculator_reports_the_spread(tmp_path: Path) -> None:
    atoms = physnet.data.from_smiles("CCO")[0]
    members = _members(["H", "C", "O"], k=2)
    paths = []
    for k, m in enumerate(members):
        paths.append(tmp_path / f"m{k}.pt")
        m.save(paths[-1])
    (tmp_path / "committee.json").write_text(json.dumps({"members": ["m0.pt", "m1.pt"]}))
    results = []
    for source in (members, paths, tmp_path, tmp_path / "committee.json"):
        atoms.calc = physnet.Calculator(source, dtype=torch.float64)
        atoms.get_forces()
        results.append(dict(atoms.calc.results))
    single = []
    for m in members:
        atoms.calc = physnet.Calculator(m, dtype=torch.float64)
        single.append(atoms.get_forces())
    for r in results:
        np.testing.assert_allclose(r["forces"], np.mean(single, axis=0), atol=1e-10)
        np.testing.assert_allclose(r["forces_members"], np.stack(single), atol=1e-10)
        assert r["forces_std"].shape == (len(atoms),) and r["max_forces_std"] == r["forces_std"].max()
        assert r["energy_std"] > 0
        np.testing.assert_allclose(r["forces_std"], results[0]["forces_std"], atol=1e-10)


def test_mismatched_members_are_refused(tmp_path: Path) -> None:
    base = _members(["H", "C", "O"], k=1)[0]
    other_species = _members(["H", "C", "N"], k=1)[0]
    other_cutoff = _members(["H", "C", "O"], k=1, cutoff=4.0)[0]
    kcal = physnet.Potential(physnet.models.build("schnet", species=["H", "C", "O"]), energy_unit="kcal/mol")
    for other, match in (
        (other_species, r"member 1 has species \['H', 'C', 'N'\] but member 0 has \['H', 'C', 'O'\]"),
        (other_cutoff, "member 1 has cutoff 4.0 but member 0 has 5.0"),
        (kcal, "member 1 has energy unit 'kcal/mol' but member 0 has 'eV'"),
    ):
        with pytest.raises(ValueError, match=match):
            physnet.Calculator([base, other])
    with pytest.raises(ValueError, match="at least 2"):
        Committee([base])
    with pytest.raises(ValueError, match="one architecture"):
        Committee([base, _members(["H", "C", "O"], k=1, n_interactions=2)[0]], mode="vmap")
    with pytest.raises(ValueError, match="exported .pt2"):
        Committee([tmp_path / "a.pt2", tmp_path / "b.pt2"])
    with pytest.raises(FileNotFoundError, match="is not a committee"):
        Committee.load(tmp_path)


def _committee_config(emt_molecule_file: Path, run: Path):
    return load_config(
        None,
        [
            f"run_dir={run}",
            f"data.path={emt_molecule_file}",
            "data.energy_unit=eV",
            "data.length_unit=Å",
            "data.train=30",
            "data.val=10",
            "data.batch_size=5",
            "model.n_features=8",
            "model.n_filters=8",
            "model.n_interactions=1",
            "model.n_rbf=8",
            "trainer.max_steps=4",
            "trainer.progress_bar=false",
            "trainer.threads=1",
            "trainer.committee=2",
            "trainer.bootstrap=true",
            "task.ema_decay=0",
        ],
    )


def test_train_committee(emt_molecule_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "committee"
    cfg = _committee_config(emt_molecule_file, run)
    train(cfg)
    record = json.loads((run / "committee.json").read_text())
    assert record["members"] == ["member_0/potential.pt", "member_1/potential.pt"]
    assert record["seeds"] == [0, 1] and record["bootstrap"] is True
    splits = [json.loads((run / f"member_{k}" / "split.json").read_text()) for k in range(2)]
    assert splits[0] == splits[1]  # one split; bootstrap only resamples the training frames
    metrics = json.loads((run / "committee_metrics.json").read_text())
    assert len(metrics["members"]) == 2 and len(metrics["frame_force_mae"]) == 20  # 60 - 30 - 10 test frames
    assert -1 <= metrics["spearman_deviation_error"] <= 1
    weights = [
        physnet.Potential.load(run / m).state_dict()["model.embedding.weight"] for m in record["members"]
    ]
    assert not torch.equal(weights[0], weights[1])
    committee = Committee.load(run)
    assert len(committee) == 2
    with pytest.raises(FileExistsError, match="already holds a committee"):
        train(cfg)


@pytest.mark.slow
def test_resume_committee(emt_molecule_file: Path, tmp_path: Path) -> None:
    # --resume: finished members are kept, a member without its final potential is resumed
    run = tmp_path / "committee"
    cfg = _committee_config(emt_molecule_file, run)
    train(cfg)
    kept = (run / "member_0" / "potential.pt").stat().st_mtime_ns
    (run / "member_1" / "potential.pt").unlink()
    cfg.run_dir = str(run)
    train(cfg, resume=True)
    assert (run / "member_1" / "potential.pt").is_file()
    assert (run / "member_0" / "potential.pt").stat().st_mtime_ns == kept
