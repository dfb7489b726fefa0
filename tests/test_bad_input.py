"""Bad and edge inputs, as a new user gives them (issue 32): each case asserts the exact outcome,
the error type and the words that name the file, frame, key or argument, or the correct result.

Classes: poisoned training data, inconsistent inputs, units nobody checks, unphysical geometry,
corrupt or foreign files, config typos, bad arguments, MD that blows up, foreign databases.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

import physnet
from physnet.cli import main
from physnet.data import keys as K
from physnet.data.checks import close_pairs, plausibility
from physnet.data.datasets import GraphDataset, read_frames
from physnet.errors import UnknownKeyError, UserError
from physnet.train.config import load_config
from physnet.train.fit import split_size

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- fixtures


def labelled(n: int = 6, seed: int = 0) -> list[Atoms]:
    """``n`` rattled ethanol frames with made-up finite energies (eV) and forces (eV/Å)."""
    rng = np.random.default_rng(seed)
    base = physnet.data.from_smiles("CCO", seed=0)[0]
    frames = []
    for _ in range(n):
        a = base.copy()
        a.positions += rng.normal(scale=0.02, size=a.positions.shape)
        a.calc = SinglePointCalculator(
            a, energy=-300.0 + rng.normal(), forces=rng.normal(scale=0.5, size=(len(a), 3))
        )
        frames.append(a)
    return frames


def poison(frames: list[Atoms], k: int, key: str, value: float = np.nan) -> list[Atoms]:
    a = frames[k]
    results = dict(a.calc.results)
    if key == "energy":
        results["energy"] = value
    elif key == "forces":
        results["forces"] = results["forces"].copy()
        results["forces"][1, 2] = value
    elif key == "stress":
        results["stress"] = np.array([value, 0, 0, 0, 0, 0.0])
    elif key == "positions":
        a.positions[0, 0] = value
    a.calc = SinglePointCalculator(a, **results)
    return frames


@pytest.fixture(scope="module")
def pot_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = physnet.models.build(
        "schnet", species=["H", "C", "O"], n_features=8, n_filters=8, n_interactions=1, n_rbf=8
    )
    path = tmp_path_factory.mktemp("pot") / "potential.pt"
    physnet.Potential(model).save(path)
    return path


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"physnet {command}: error: "), err
    return err[0]


# --------------------------------------------------------------------------- poisoned data


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("energy", np.nan, "frame 3 has a non-finite energy nan"),
        ("energy", np.inf, "frame 3 has a non-finite energy inf"),
        ("forces", np.nan, "frame 3 has a non-finite force on atom 1"),
        ("forces", -np.inf, "frame 3 has a non-finite force on atom 1"),
        ("stress", np.nan, "frame 3 has a non-finite stress nan"),
        ("positions", np.nan, "frame 3, atom 0 has a non-finite position"),
    ],
)
def test_nonfinite_labels_are_refused_with_the_frame(tmp_path, key, value, words) -> None:
    path = tmp_path / "poisoned.extxyz"
    write(path, poison(labelled(), 3, key, value))
    with pytest.raises(ValueError, match=words):
        read_frames(path)


def test_nonfinite_in_npz_names_the_frame(tmp_path) -> None:
    frames = labelled()
    e = np.array([a.get_potential_energy() for a in frames])
    e[4] = np.nan
    np.savez(tmp_path / "x.npz", z=frames[0].numbers, R=np.stack([a.positions for a in frames]), E=e)
    with pytest.raises(UserError, match="frame 4 has a non-finite energy nan.*1 of 6"):
        read_frames(tmp_path / "x.npz")


def test_nonfinite_frames_are_dropped_loudly_when_asked(tmp_path, capsys) -> None:
    path = tmp_path / "poisoned.extxyz"
    write(path, poison(poison(labelled(), 1, "energy"), 4, "forces"))
    frames = read_frames(path, drop_nonfinite=True)
    assert len(frames) == 4
    assert "dropped 2 of 6 frames with non-finite values (frames 1, 4" in capsys.readouterr().out


def test_all_frames_nonfinite_cannot_be_dropped(tmp_path) -> None:
    path = tmp_path / "poisoned.extxyz"
    write(path, poison(poison(labelled(2), 0, "energy"), 1, "energy"))
    with pytest.raises(UserError, match="all 2 frames are non-finite"):
        read_frames(path, drop_nonfinite=True)


def test_graph_dataset_refuses_nonfinite_labels_from_the_api() -> None:
    with pytest.raises(UserError, match="toy: frame 2 has a non-finite energy"):
        GraphDataset(poison(labelled(), 2, "energy"), cutoff=4.0, source="toy")


def test_train_refuses_a_nan_energy_before_training(tmp_path, capsys) -> None:
    path = tmp_path / "poisoned.extxyz"
    write(path, poison(labelled(20), 7, "energy"))
    args = ["train", f"data.path={path}", "data.energy_unit=eV", "data.length_unit=Å"]
    assert main([*args, f"run_dir={tmp_path / 'run'}"]) == 2
    assert "frame 7 has a non-finite energy nan" in one_line_error(capsys, "train")
    assert not (tmp_path / "run" / "potential.pt").exists()


# --------------------------------------------------------------------------- corrupt and foreign files


def test_truncated_gzip_names_the_file(tmp_path) -> None:
    src = (ROOT / "data" / "ethanol_gfn2.extxyz.gz").read_bytes()
    path = tmp_path / "cut.extxyz.gz"
    path.write_bytes(src[:400])
    with pytest.raises(UserError, match=r"cut.extxyz.gz is not a readable gzip file.*truncated or corrupt"):
        read_frames(path)


def test_gzip_of_junk_is_one_clear_error(tmp_path) -> None:
    path = tmp_path / "junk.extxyz.gz"
    path.write_bytes(gzip.compress(b"junk\x00\x01 not xyz\n"))
    with pytest.raises(UserError, match="could not read .*junk.extxyz.gz with ase.io.read"):
        read_frames(path)


def test_not_gzip_at_all(tmp_path) -> None:
    path = tmp_path / "plain.extxyz.gz"
    path.write_text("3\n\nH 0 0 0\n")
    with pytest.raises(UserError, match="plain.extxyz.gz is not a readable gzip file"):
        read_frames(path)


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda p: p.write_bytes(b""), ValueError, "empty .0 bytes."),
        (lambda p: p.mkdir(), ValueError, "is a directory"),
        (lambda p: None, FileNotFoundError, "no such data file"),
    ],
)
def test_empty_missing_or_folder_data(tmp_path, make, error, words) -> None:
    path = tmp_path / "data.xyz"
    make(path)
    with pytest.raises(error, match=words):
        read_frames(path)


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda p, good: p.write_bytes(good.read_bytes()[:3000]), UserError, r"bytes\) is not a readable"),
        (lambda p, good: p.write_bytes(b""), UserError, r"is empty \(0 bytes\)"),
        (lambda p, good: None, FileNotFoundError, "no physnet potential or checkpoint file at"),
        (lambda p, good: torch.save({"weights": torch.ones(2)}, p), UserError, "not a physnet potential"),
        (lambda p, good: p.write_text("hello"), UserError, "truncated or corrupt"),
        (lambda p, good: p.mkdir(), UserError, "is a directory"),
    ],
)
def test_bad_potential_files_name_the_file(tmp_path, pot_file, make, error, words) -> None:
    path = tmp_path / "bad.pt"
    make(path, pot_file)
    with pytest.raises(error, match=words) as info:
        physnet.Potential.load(path)
    assert "bad.pt" in str(info.value)


def test_weights_that_do_not_match_their_hparams(tmp_path, pot_file) -> None:
    data = torch.load(pot_file, weights_only=True)
    data["model"]["n_features"] = 16  # hparams edited, weights of an 8-feature model
    torch.save(data, tmp_path / "mixed.pt")
    with pytest.raises(
        UserError, match=r"mixed.pt: the weights do not match the model .*schnet.*size mismatch"
    ):
        physnet.Potential.load(tmp_path / "mixed.pt")


def test_config_that_cannot_rebuild_its_model(tmp_path, pot_file) -> None:
    data = torch.load(pot_file, weights_only=True)
    data["model"]["name"] = "schnett"
    torch.save(data, tmp_path / "renamed.pt")
    with pytest.raises(UserError, match=r"renamed.pt: its config cannot rebuild .*did you mean 'schnet'"):
        physnet.Potential.load(tmp_path / "renamed.pt")


# --------------------------------------------------------------------------- config typos


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("data:\n  path: [a\n", r"bad.yaml, line 3 column 1: YAML syntax error"),
        ("data:\n  path: a\n   train: 3\n", r"bad.yaml, line 3 column \d+: YAML syntax error"),
        ("- a\n- b\n", "must hold a YAML mapping"),
    ],
)
def test_yaml_errors_name_file_and_line(tmp_path, text, words) -> None:
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(UserError, match=words):
        load_config(tmp_path / "bad.yaml")


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["trainr.max_epochs=3"], r"unknown config section\(s\) \['trainr'\] \(did you mean 'trainer'\?\)"),
        (["data.energy_units=eV"], r"\['energy_units'\] in section 'data' \(did you mean 'energy_unit'\?\)"),
        (["task.lr_rate=1"], r"\['lr_rate'\] in section 'task'"),
    ],
)
def test_unknown_config_keys_suggest_the_close_match(overrides, words) -> None:
    with pytest.raises(UnknownKeyError, match=words):
        load_config(None, overrides)


def test_override_value_that_is_not_yaml() -> None:
    with pytest.raises(UserError, match=r"override 'data.path=\[a': the value is not valid YAML"):
        load_config(None, ["data.path=[a"])


def test_model_key_typo_is_a_typeerror_and_names_the_key() -> None:
    with pytest.raises(TypeError, match=r"\['n_featres'\] \(did you mean 'n_features'\?\); it takes"):
        physnet.models.build("schnet", species=["H"], n_featres=3)


def test_unknown_model_suggests_the_close_match() -> None:
    with pytest.raises(UserError, match=r"unknown model 'shcnet' \(did you mean 'schnet'\?\)"):
        physnet.models.build("shcnet", species=["H"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.5, 0.5), (1.0, 1.0), (800.0, 800), (1e3, 1000), (None, None)],
)
def test_split_sizes_fraction_or_whole_count(value, expected) -> None:
    got = split_size("train", value)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("value", [1.5, 800.2, -1.0, float("nan")])
def test_split_sizes_never_rounded(value) -> None:
    with pytest.raises(UserError, match=f"data.train={value:g}"):
        split_size("train", value)


def test_train_refuses_fractional_count_before_reading_data(tmp_path, capsys) -> None:
    args = ["train", "data.path=nonexistent.xyz", "data.energy_unit=eV", "data.length_unit=Å"]
    assert main([*args, "data.train=1.5", f"run_dir={tmp_path}/r"]) == 2
    assert "data.train=1.5 is neither a fraction" in one_line_error(capsys, "train")


# --------------------------------------------------------------------------- inconsistent inputs


def test_graph_built_with_another_cutoff_is_refused(pot_file) -> None:
    pot = physnet.Potential.load(pot_file)
    atoms = physnet.data.from_smiles("CCO")[0]
    with pytest.raises(ValueError, match=r"graph was built with cutoff 2 but the potential's cutoff is 5"):
        pot(physnet.data.from_ase(atoms, 2.0))


def test_graph_with_the_right_cutoff_gives_the_calculator_energy(pot_file) -> None:
    pot = physnet.Potential.load(pot_file).double()
    atoms = physnet.data.from_smiles("CCO")[0]
    energy = float(pot(physnet.data.from_ase(atoms, pot.cutoff, dtype=torch.float64))[K.ENERGY][0])
    atoms.calc = physnet.Calculator(pot_file, dtype=torch.float64)
    assert atoms.get_potential_energy() == pytest.approx(energy, abs=1e-9)


def test_graph_of_another_dtype_is_refused(pot_file) -> None:
    pot = physnet.Potential.load(pot_file)
    atoms = physnet.data.from_smiles("CCO")[0]
    with pytest.raises(ValueError, match="positions are torch.float64 but the model is torch.float32"):
        pot(physnet.data.from_ase(atoms, pot.cutoff, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int32])
def test_calculator_refuses_low_precision(pot_file, dtype) -> None:
    with pytest.raises(UserError, match=f"float32 or float64, not {dtype}"):
        physnet.Calculator(pot_file, dtype=dtype)


# --------------------------------------------------------------------------- units nobody checks


@pytest.fixture(scope="module")
def ethanol() -> list[Atoms]:
    return physnet.data.embedded.load("ethanol_gfn2", index="::100")


def scaled(frames: list[Atoms], e: float = 1.0, length: float = 1.0) -> list[Atoms]:
    out = []
    for a in frames:
        b = a.copy()
        b.positions = a.positions * length
        b.calc = SinglePointCalculator(
            b, energy=a.get_potential_energy() * e, forces=a.get_forces() * e / length
        )
        out.append(b)
    return out


@pytest.mark.parametrize(
    ("e", "length", "units", "words"),
    [
        (23.06, 1.0, ("eV", "Å"), "RMS force component is 24.68 eV/Å"),  # kcal/mol declared as eV
        (314.0, 1.0, ("eV", "Å"), "larger than the all-electron energy"),  # MD17's -97195 kcal/mol as eV
        (96.49, 1.0, ("eV", "Å"), "larger than the all-electron energy"),  # kJ/mol declared as eV
        (1.0, 1.0 / 0.529177, ("eV", "Å"), "hydrogen atoms' median nearest-neighbour distance"),  # Bohr
        (1.0, 0.1, ("eV", "Å"), "median nearest-neighbour distance is 0.108 Å"),  # nm as Å
        (1.0, 1.0, ("eV", "Bohr"), "(Å declared as Bohr?)"),  # Å as Bohr: C-H bonds of 0.58 Å
        (1.0, 10.0, ("eV", "Å"), "no atom has a neighbour within the cutoff 5"),  # Å data as nm
    ],
)
def test_wrong_units_are_warned_with_the_numbers(ethanol, e, length, units, words) -> None:
    warnings = plausibility(scaled(ethanol, e, length), *units, cutoff=5.0)
    assert any(words in w for w in warnings), warnings


def test_force_rms_of_kcal_data_declared_as_ev() -> None:
    frames = labelled()
    for a in frames:
        a.calc = SinglePointCalculator(a, energy=-300.0, forces=a.calc.results["forces"] * 60)
    warnings = plausibility(frames, "eV", "Å")
    assert any("RMS force component is 3" in w and "eV/Å" in w for w in warnings), warnings


@pytest.mark.parametrize(
    ("name", "units"), [("ethanol_gfn2", ("eV", "Å")), ("cu_emt", ("eV", "Å")), ("aspirin_gfn2", ("eV", "Å"))]
)
def test_correct_units_give_no_warning(name, units) -> None:
    frames = physnet.data.embedded.load(name, index="::50")
    assert plausibility(frames, *units, cutoff=5.0) == []


def test_kcal_data_declared_in_kcal_gives_no_warning(ethanol) -> None:
    assert plausibility(scaled(ethanol, 23.06), "kcal/mol", "Å", cutoff=5.0) == []


# --------------------------------------------------------------------------- unphysical geometry


@pytest.mark.parametrize(
    ("numbers", "distance", "expected"),
    [([1, 1], 0.1, 1), ([1, 1], 0.0, 1), ([6, 8], 0.3, 1), ([1, 1], 0.74, 0), ([6, 6], 1.2, 0)],
)
def test_close_pairs(numbers, distance, expected) -> None:
    atoms = Atoms(numbers=numbers, positions=[[0, 0, 0], [distance, 0, 0]])
    pairs = close_pairs(atoms)
    assert len(pairs) == expected
    if expected:
        assert pairs[0][:2] == (0, 1) and pairs[0][2] == pytest.approx(distance)


def test_coincident_atoms_in_training_data_are_warned(ethanol) -> None:
    frames = scaled(ethanol)
    frames[0].positions[4] = frames[0].positions[3]
    warnings = plausibility(frames, "eV", "Å")
    assert any("frame 0: atoms H3 and H4 are 0 Å apart" in w for w in warnings), warnings


# --------------------------------------------------------------------------- foreign databases


def write_db(path: Path, frames: list[Atoms], energy_key: str = "energy", forces_key: str = "forces") -> None:
    from ase.db import connect

    with connect(str(path)) as db:
        for a in frames:
            bare = Atoms(numbers=a.numbers, positions=a.positions)
            data = {energy_key: np.array([a.get_potential_energy()]), forces_key: a.get_forces()}
            db.write(bare, data=data)


def test_schnetpack_database_labels_from_row_data(tmp_path, capsys) -> None:
    frames = labelled(4)
    write_db(tmp_path / "spk.db", frames)
    got = read_frames(tmp_path / "spk.db")
    assert [a.get_potential_energy() for a in got] == pytest.approx(
        [a.get_potential_energy() for a in frames]
    )
    np.testing.assert_allclose(got[2].get_forces(), frames[2].get_forces())
    assert "energy from row.data['energy'], forces from row.data['forces']" in capsys.readouterr().out


def test_database_key_map(tmp_path, capsys) -> None:
    frames = labelled(3)
    write_db(tmp_path / "named.db", frames, "E", "F")
    got = read_frames(tmp_path / "named.db", key_map={"energy": "E", "forces": "F"})
    assert got[1].get_potential_energy() == pytest.approx(frames[1].get_potential_energy())
    assert "energy from row.data['E'], forces from row.data['F']" in capsys.readouterr().out
    with pytest.raises(UserError, match=r"row 1 \(frame 0\) has no 'E2' \(data.keys maps energy to it\)"):
        read_frames(tmp_path / "named.db", key_map={"energy": "E2"})
    with pytest.raises(UserError, match=r"data.keys has \['energies'\]"):
        read_frames(tmp_path / "named.db", key_map={"energies": "E"})


def test_key_map_only_for_databases(tmp_path) -> None:
    write(tmp_path / "x.extxyz", labelled(2))
    with pytest.raises(UserError, match="applies to ASE databases"):
        read_frames(tmp_path / "x.extxyz", key_map={"energy": "E"})


def test_eval_of_a_database_without_labels_says_so(tmp_path, pot_file, capsys) -> None:
    from ase.db import connect

    with connect(str(tmp_path / "bare.db")) as db:
        db.write(physnet.data.from_smiles("CCO")[0])
    assert main(["eval", str(pot_file), str(tmp_path / "bare.db"), "--output", str(tmp_path / "e")]) == 2
    assert "bare.db has no reference energies or forces" in one_line_error(capsys, "eval")


# --------------------------------------------------------------------------- command line


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["CCO", "--dt", "-0.5"], "--dt must be a time step > 0 fs, got -0.5"),
        (["CCO", "--dt", "0"], "--dt must be a time step > 0 fs, got 0.0"),
        (["CCO", "--dt", "nan"], "--dt must be a time step > 0 fs, got nan"),
        (["CCO", "--temperature", "-300"], "--temperature must be >= 0 K, got -300.0"),
        (["CCO", "--steps", "0"], "--steps must be >= 1, got 0"),
        (["CCO", "--friction", "-1"], "--friction must be >= 0"),
        (["CCO", "--threads", "-1"], "--threads must be >= 0"),
        (["mol.xyz"], "structure file mol.xyz does not exist (nor is it a SMILES string)"),
        (["C1CC"], "'C1CC' is neither an existing structure file nor a SMILES string RDKit can parse"),
        (["CCN"], "element(s) N (Z=[7]) not in the model's species ['H', 'C', 'O']"),
    ],
)
def test_md_bad_arguments_are_one_line(tmp_path, pot_file, capsys, extra, words) -> None:
    traj = tmp_path / "md.traj"
    assert main(["md", str(pot_file), *extra, "--trajectory", str(traj), "--no-progress"]) == 2
    assert words in one_line_error(capsys, "md")
    assert not traj.exists()


def test_md_junk_pdb_is_not_called_empty_species(tmp_path, pot_file, capsys) -> None:
    (tmp_path / "junk.pdb").write_text("HELLO WORLD\n")
    assert main(["md", str(pot_file), str(tmp_path / "junk.pdb"), "--trajectory", str(tmp_path / "t")]) == 2
    assert "junk.pdb holds no atoms as ASE reads it" in one_line_error(capsys, "md")


def test_md_refuses_coincident_atoms(tmp_path, pot_file, capsys) -> None:
    atoms = physnet.data.from_smiles("CCO")[0]
    atoms.positions[4] = atoms.positions[3] + [0.1, 0, 0]
    write(tmp_path / "bad.xyz", atoms)
    assert main(["md", str(pot_file), str(tmp_path / "bad.xyz"), "--trajectory", str(tmp_path / "t")]) == 2
    assert "atoms H3 and H4 are 0.1 Å apart" in one_line_error(capsys, "md")


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p, good: p.write_bytes(good.read_bytes()[:3000]), "truncated or corrupt"),
        (lambda p, good: p.write_bytes(b""), "is empty (0 bytes)"),
    ],
)
def test_eval_bad_potential_is_one_line(tmp_path, pot_file, capsys, make, words) -> None:
    bad = tmp_path / "potential.pt"
    make(bad, pot_file)
    assert main(["eval", str(bad), "ethanol_gfn2"]) == 2
    line = one_line_error(capsys, "eval")
    assert words in line and str(bad) in line


def test_eval_takes_embedded_set_names(tmp_path, pot_file, capsys) -> None:
    out = tmp_path / "ev"
    assert main(["eval", str(pot_file), "ethanol_gfn2", "--output", str(out), "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "2000 frames, errors in eV" in text
    import json

    assert set(json.loads((out / "eval_metrics.json").read_text())) >= {"energy_mae", "forces_mae"}


def test_eval_split_needs_a_run_directory(tmp_path, pot_file, capsys) -> None:
    assert main(["eval", str(pot_file), "--split", "test"]) == 2
    assert "--split test needs the run directory" in one_line_error(capsys, "eval")


def test_cli_yaml_error_names_the_line(tmp_path, capsys) -> None:
    (tmp_path / "c.yaml").write_text("data:\n  path: x\n  train: [1\n")
    assert main(["train", str(tmp_path / "c.yaml")]) == 2
    assert "c.yaml, line 4 column 1: YAML syntax error" in one_line_error(capsys, "train")


def test_cli_model_key_typo(tmp_path, capsys) -> None:
    args = ["train", "data.path=ethanol_gfn2", "data.energy_unit=eV", "data.length_unit=Å"]
    assert main([*args, "model.n_featres=8", f"run_dir={tmp_path / 'r'}"]) == 2
    line = one_line_error(capsys, "train")
    assert "config section model: model 'schnet' got unknown argument(s) ['n_featres'] (did you mean " in line


def test_demo_refuses_elements_before_training(tmp_path, capsys) -> None:
    assert main(["demo", "--smiles", "CCN", "--run-dir", str(tmp_path / "demo")]) == 2
    assert "--smiles CCN has element(s) ['N'] that the training data ethanol_gfn2 lacks" in one_line_error(
        capsys, "demo"
    )
    assert not (tmp_path / "demo").exists()


def test_debug_shows_the_exception(tmp_path) -> None:
    (tmp_path / "c.yaml").write_text("a: [\n")
    with pytest.raises(UserError, match="YAML syntax error"):
        main(["train", str(tmp_path / "c.yaml"), "--debug"])


def test_unexpected_errors_are_one_line_with_status_1(monkeypatch, capsys) -> None:
    import physnet.cli as cli

    def boom(args):
        raise ZeroDivisionError("division by zero")

    parser = cli.build_parser

    def patched():
        p = parser()
        for action in p._subparsers._group_actions[0].choices.values():
            action.set_defaults(func=boom)
        return p

    monkeypatch.setattr(cli, "build_parser", patched)
    assert cli.main(["eval", "x.pt", "y.xyz"]) == 1
    line = one_line_error(capsys, "eval")
    assert "ZeroDivisionError: division by zero (unexpected; rerun with --debug" in line


# --------------------------------------------------------------------------- MD that blows up


def _cg_bonds(k: float) -> physnet.Potential:
    import physnet.models.cgnet  # noqa: F401  (registers "cgnet")
    from physnet.nn.priors import HarmonicBonds

    torch.manual_seed(0)
    model = physnet.models.build("cgnet", species=["C"], n_beads=3, n_layers=1, width=4)
    for p in model.net[-1].parameters():
        torch.nn.init.zeros_(p)
    bonds = HarmonicBonds(3, temperature=300.0, energy_unit="kcal/mol")
    bonds.k.fill_(k)
    bonds.x0.fill_(1.45)
    bonds.fitted.fill_(True)
    return physnet.Potential(model, {"bonds": bonds}, energy_unit="kcal/mol").double()


def _cg_start(n: int = 4) -> torch.Tensor:
    x = torch.zeros(n, 3, 3, dtype=torch.float64)
    x[:, 1, 0] = 1.45
    x[:, 2, 0] = 2.9
    return x


@pytest.mark.parametrize(
    ("dt", "k", "words"),
    [
        (0.05, 250.0, "step 10: force .* above the bound 596.2"),  # 50 fs steps: the energy runs away
        (0.002, 1e9, "step 10: force .* above the bound 596.2"),  # a prior far too stiff
    ],
)
def test_cg_langevin_blow_up_stops_and_keeps_the_good_frames(tmp_path, dt, k, words) -> None:
    from physnet.md.guard import MDBlowUp
    from physnet.md.langevin import langevin

    out = tmp_path / "traj.npy"
    start = _cg_start()
    if k > 1e6:
        start[:, 1, 0] = 1.5  # 0.05 Å off the bond length: 5e7 kcal/mol/Å
    with pytest.raises(MDBlowUp, match=words) as info:
        langevin(_cg_bonds(k), start, torch.tensor([6, 6, 6]), n_steps=400, dt=dt, save_every=10,
                 progress=False, output=out)  # fmt: skip
    assert isinstance(info.value, FloatingPointError)  # what callers caught before
    good = np.load(out)
    assert good.shape[0] == info.value.trajectory.shape[0] >= 1 and np.isfinite(good).all()


def test_cg_langevin_refuses_negative_dt() -> None:
    from physnet.md.langevin import langevin

    with pytest.raises(ValueError, match="dt must be a finite number > 0, got -0.5"):
        langevin(_cg_bonds(250.0), _cg_start(), torch.tensor([6, 6, 6]), n_steps=1, dt=-0.5, progress=False)


@pytest.mark.slow
def test_eval_split_test_of_a_run(tmp_path, emt_molecule_file, capsys) -> None:
    """``physnet eval RUN/potential.pt --split test`` evaluates the run's own test frames (~20 s)."""
    import json

    run = tmp_path / "run"
    args = ["train", f"data.path={emt_molecule_file}", "data.energy_unit=eV", "data.length_unit=Å"]
    args += [f"run_dir={run}", "data.train=40", "data.val=10", "model.n_features=8", "model.n_filters=8"]
    args += ["model.n_interactions=1", "trainer.max_steps=3", "trainer.progress_bar=false"]
    assert main(args) == 0
    n_test = len(json.loads((run / "split.json").read_text())["test"])
    capsys.readouterr()
    assert main(["eval", str(run / "potential.pt"), "--split", "test"]) == 0
    assert f"{n_test} frames (test split), errors in eV" in capsys.readouterr().out
    saved = json.loads((run / "test_metrics.json").read_text())["test"]
    got = json.loads((run / "eval_test" / "eval_metrics.json").read_text())
    assert got["forces_mae"] == pytest.approx(saved["forces_mae"], rel=1e-5)


# --------------------------------------------------------------------------- threads and throughput


@pytest.mark.parametrize(
    ("cores", "load", "expected"),
    [(2, 0.0, 1), (1, 0.0, 1), (8, 0.1, 4), (3, 0.2, 3), (8, 3.0, 1), (16, 0.5, 1)],
)
def test_auto_threads(cores, load, expected) -> None:
    from physnet.runtime import auto_threads

    assert auto_threads(cores=cores, load=load) == expected


def test_a_starved_run_says_so() -> None:
    from physnet.runtime import CpuShare

    share = CpuShare(threads=2)
    assert share.warning() is None  # too short to judge
    share.wall -= 20.0  # as if 20 s of wall time had passed with (almost) no CPU time
    message = share.warning()
    assert message is not None and "% of the CPU time its 2 thread(s) could use" in message
    assert "--threads 1" in message


@pytest.mark.parametrize(("distance", "warned"), [(0.1, True), (0.0, True), (0.74, False)])
def test_calculator_warns_about_overlapping_atoms(pot_file, distance, warned) -> None:
    import warnings

    atoms = Atoms("H2", positions=[[0, 0, 0], [distance, 0, 0]])
    atoms.calc = physnet.Calculator(pot_file)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert np.isfinite(atoms.get_potential_energy())
    messages = [str(w.message) for w in caught if "covalent" in str(w.message)]
    assert messages[0].startswith(f"atoms H0 and H1 are {distance:.3g} Å apart") if warned else messages == []


def test_eval_of_poisoned_data_names_the_frame(tmp_path, pot_file, capsys) -> None:
    write(tmp_path / "p.extxyz", poison(labelled(), 2, "energy"))
    assert main(["eval", str(pot_file), str(tmp_path / "p.extxyz"), "--output", str(tmp_path / "e")]) == 2
    assert "frame 2 has a non-finite energy nan" in one_line_error(capsys, "eval")


@pytest.mark.parametrize("fill", ["zeros", "random"])
def test_gzip_with_a_damaged_middle_is_one_clear_error(tmp_path, fill) -> None:
    raw = bytearray((ROOT / "data" / "ethanol_gfn2.extxyz.gz").read_bytes())
    middle = len(raw) // 2
    junk = bytes(256) if fill == "zeros" else np.random.default_rng(0).bytes(256)
    raw[middle : middle + 256] = junk  # a CRC error (zeros) or zlib.error (random bytes)
    path = tmp_path / "damaged.extxyz.gz"
    path.write_bytes(bytes(raw))
    with pytest.raises(
        UserError, match=r"damaged.extxyz.gz is not a readable gzip file: .*truncated or corrupt"
    ):
        read_frames(path)


# --------------------------------------------------------------------------- second try (issue 32)
# Inputs a new user tried in the second round (docs/experiments/bad_input_retry.md, row ids in
# brackets) that ended in an unexpected error, a misleading one or a silent wrong answer.


def test_model_argument_of_the_wrong_type_names_it(tmp_path, capsys) -> None:
    """[A13] model.n_features=abc ended as an unexpected TypeError from torch.empty."""
    with pytest.raises(UserError, match=r"model 'schnet' argument n_features='abc' is not a whole number"):
        physnet.models.build("schnet", species=["H"], n_features="abc")
    with pytest.raises(UserError, match=r"argument cutoff='five' is not a number \(default 5.0\)"):
        physnet.models.build("schnet", species=["H"], cutoff="five")
    assert physnet.models.build("schnet", species=["H"], cutoff=4, n_features=8).hparams["cutoff"] == 4
    # numbers YAML reads as strings (5e-4 without a dot) are taken; lists where a list is allowed too
    assert (
        physnet.models.build("schnet", species=["H"], cutoff="4e0", n_features="8").hparams["cutoff"] == 4.0
    )
    model = physnet.models.build("behler_parrinello", species=["H"], radial_eta=[0.5, 4.0])
    assert model.hparams["radial_eta"] == [0.5, 4.0]


def test_calculator_warns_when_an_atom_is_left_alone(pot_file) -> None:
    """[A21] ASE MD with the Calculator at 100 fs steps threw atoms 1000 Å apart with finite
    energies and no word; the Calculator now warns once when an atom has no neighbour."""
    import warnings

    atoms = physnet.data.from_smiles("CCO")[0]
    atoms.calc = physnet.Calculator(pot_file)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        atoms.get_potential_energy()
        atoms.positions[8] += [30.0, 0, 0]
        atoms.get_potential_energy()
        atoms.positions[7] += [0, 30.0, 0]
        atoms.get_potential_energy()
    lonely = [str(w.message) for w in caught if "no other atom within" in str(w.message)]
    assert lonely == [
        "atom H8 has no other atom within the potential's cutoff 5 Å (1 of 9 atoms isolated): the potential "
        "sees a free atom; in MD this means the structure came apart (a time step too large, or geometries "
        "outside the training data): attach physnet.md.guard.BlowUpGuard or use physnet md"
    ]


@pytest.mark.parametrize(
    ("atoms", "words"),
    [
        (Atoms("C", positions=[[0, 0, 0]]), "has 1 atom: the MD holds the centre of mass fixed"),
        (
            Atoms("CO", positions=[[0, 0, 0], [1.2, 0, 0]], pbc=True),
            "is periodic along cell vector(s) [1, 2, 3], which are zero",
        ),
    ],
)
def test_md_refuses_a_lone_atom_and_a_zero_cell(tmp_path, pot_file, capsys, atoms, words) -> None:
    """[A46] one atom ended as 'MD blew up at step 0: temperature nan K'; [A47] a periodic
    structure without a cell as 'atoms C0 and O1 are 0.2 Å apart'."""
    write(tmp_path / "s.extxyz", atoms)
    traj = tmp_path / "t.traj"
    assert main(["md", str(pot_file), str(tmp_path / "s.extxyz"), "--trajectory", str(traj)]) == 2
    assert words in one_line_error(capsys, "md")
    assert not traj.exists()


def test_eval_warns_when_energies_are_off_by_electronvolts_per_atom(tmp_path, pot_file, capsys) -> None:
    """[A40] eV data evaluated with --energy-unit kcal/mol printed an energy MAE of 33 eV per atom
    and nothing else. Here the labels are the potential's own predictions (in eV)."""
    import json
    import re

    frames = labelled()
    for a in frames:
        a.calc = physnet.Calculator(pot_file)
        a.calc = SinglePointCalculator(a, energy=a.get_potential_energy(), forces=a.get_forces())
    write(tmp_path / "d.extxyz", frames)
    args = ["eval", str(pot_file), str(tmp_path / "d.extxyz"), "--length-unit", "Å", "--threads", "1"]
    assert main([*args, "--energy-unit", "eV", "--output", str(tmp_path / "a")]) == 0
    assert "eV per atom (MAE)" not in capsys.readouterr().err
    assert main([*args, "--energy-unit", "Ha", "--output", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    found = re.search(r"the energies are off by ([\d.]+) eV per atom \(MAE\): is the data really in Ha ", err)
    mae = json.loads((tmp_path / "b" / "eval_metrics.json").read_text())["energy_per_atom_mae"]
    assert found and mae > 1.0 and float(found.group(1)) == pytest.approx(mae, rel=1e-2)


TRAIN = ["train", "data.path=ethanol_gfn2", "data.energy_unit=eV", "data.length_unit=Å"]


@pytest.mark.parametrize(
    ("args", "command", "words"),
    [
        # [B11, B12] a committee of 0 or -2 trained one potential without a word
        (
            [*TRAIN, "trainer.committee=0"],
            "train",
            "trainer.committee=0: the number of potentials to train must be >= 1",
        ),
        ([*TRAIN, "trainer.committee=-2"], "train", "trainer.committee=-2: the number of potentials"),
        # [B48] the model's error listed only its own arguments
        (
            [*TRAIN, "model.init_form=x.pt"],
            "train",
            "model.init_form is neither an argument of model 'schnet' nor a fine-tuning option "
            "(did you mean 'init_from'?)",
        ),
        # [B26] the list of names left out nbody_charged5
        (["data", "nbdy_charged5"], "data", "(did you mean 'nbody_charged5'?); available: md17_aspirin"),
        # [B27, B30] checked only after a download attempt ("could not download ...")
        (["data", "md17_ethanol", "--frames", "-5"], "data", "--frames must be >= 0 (0: no subset), got -5"),
        (["data", "md17_ethanol", "--sha256", "xyz"], "data", "the SHA-256 must be 64 hexadecimal digits"),
        # [B42] without DATA, eval complained about the earlier results in its output folder
        (
            ["eval", "POT"],
            "eval",
            "give the DATA to evaluate on (a file or an embedded set), or --split test",
        ),
    ],
)
def test_second_try_arguments_are_named(
    tmp_path, pot_file, capsys, monkeypatch, args, command, words
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "eval_metrics.json").write_text("{}")
    args = [str(pot_file) if a == "POT" else a for a in args]
    if command == "data":
        args += ["--output", str(tmp_path / "dl")]
    if command == "train":
        args += [f"run_dir={tmp_path / 'run'}"]
    assert main(args) == 2
    assert words in one_line_error(capsys, command)
    assert not (tmp_path / "dl").exists() and not (tmp_path / "run").exists()


def test_config_that_is_a_directory_or_not_utf8(tmp_path, capsys) -> None:
    """[B61] a directory was 'config file runs does not exist'; [B65] a Latin-1 config ended with
    Python's "'utf-8' codec can't decode byte 0xe9" and no file named."""
    assert main(["train", str(tmp_path)]) == 2
    assert f"config file {tmp_path} is a directory; give a YAML file" in one_line_error(capsys, "train")
    (tmp_path / "c.yaml").write_bytes("run_dir: r\n# café\n".encode("latin-1"))
    assert main(["train", str(tmp_path / "c.yaml")]) == 2
    line = one_line_error(capsys, "train")
    assert (
        f"config file {tmp_path / 'c.yaml'} is not UTF-8 text (byte 0xe9 at offset 16); save it as UTF-8"
        in line
    )


def test_resume_of_a_missing_run_and_with_a_config(tmp_path, capsys) -> None:
    """[B56] a missing run directory was 'config file runs/nothere/config.yaml does not exist';
    [B58] `train C.yaml --resume RUN key=value` was 'unrecognized arguments: key=value'."""
    assert main(["train", "--resume", str(tmp_path / "none")]) == 2
    assert f"--resume {tmp_path / 'none'}: no such run directory" in one_line_error(capsys, "train")
    (tmp_path / "c.yaml").write_text("run_dir: r\n")
    assert main(["train", str(tmp_path / "c.yaml"), "--resume", str(tmp_path), "trainer.max_steps=30"]) == 2
    line = one_line_error(capsys, "train")
    assert f"--resume {tmp_path} uses the run's own config.yaml, not {tmp_path / 'c.yaml'}" in line


def test_eval_of_an_exported_file_says_what_it_is(tmp_path, capsys) -> None:
    """[B38] a good .pt2 was called 'truncated or corrupt (RuntimeError: PytorchStreamReader ...)'."""
    (tmp_path / "m.pt2").write_bytes(b"PK\x03\x04 an AOTInductor package")
    assert main(["eval", str(tmp_path / "m.pt2"), "ethanol_gfn2", "--output", str(tmp_path / "e")]) == 2
    line = one_line_error(capsys, "eval")
    assert f"{tmp_path / 'm.pt2'} is an exported .pt2 file (compiled code, no weights to load)" in line


def test_more_threads_than_cores_are_warned(capsys) -> None:
    """[B53] --threads 1000 on a 2-core machine ran without a word."""
    import os

    from physnet.runtime import set_threads

    before = torch.get_num_threads()
    try:
        cores = os.cpu_count() or 1
        assert set_threads(cores + 1) == cores + 1
        assert f"--threads {cores + 1} is more than the {cores} CPU core(s) here" in capsys.readouterr().err
        set_threads(1)
        assert capsys.readouterr().err == ""
    finally:
        torch.set_num_threads(before)


def test_split_file_is_readable_like_the_other_run_files(tmp_path) -> None:
    """split.json came out 0600 (mkstemp's mode) while config.yaml and potential.pt are 0644, so a
    colleague's `physnet eval --split test` of the run failed to read it."""
    import stat

    from physnet.data.datasets import save_split

    save_split(
        {"train": np.arange(3), "val": np.arange(3, 5), "test": np.arange(5, 6)}, tmp_path / "split.json"
    )
    assert stat.S_IMODE((tmp_path / "split.json").stat().st_mode) == 0o644


# ------------------------------------------------------------------ third try (B18, B75, B55, B67, B70)


def test_run_directory_is_read_for_its_potential(tmp_path, pot_file, capsys) -> None:
    """[B18, B75] a run directory was refused as 'a directory'; its potential.pt is used (the CLI
    says so in one line)."""
    run = pot_file.parent  # holds potential.pt, as a physnet train run directory does
    atoms = physnet.data.from_smiles("CCO", seed=0)[0]
    atoms.calc = physnet.Calculator(run)
    from_dir = atoms.get_potential_energy()
    atoms.calc = physnet.Calculator(pot_file)
    assert from_dir == pytest.approx(atoms.get_potential_energy(), abs=0)
    said = f"using {pot_file}, the potential of run directory {run}"
    assert main(["md", str(run), "CCO", "--steps", "2", "--trajectory", str(tmp_path / "t.traj")]) == 0
    assert said in capsys.readouterr().out.splitlines()
    assert (tmp_path / "t.traj").is_file()
    write(tmp_path / "d.extxyz", labelled(3))
    assert main(["eval", str(run), str(tmp_path / "d.extxyz"), "--output", str(tmp_path / "ev")]) == 0
    assert said in capsys.readouterr().out.splitlines()
    assert (tmp_path / "ev" / "eval_metrics.json").is_file()


def test_directory_without_a_potential_names_what_it_looked_for(tmp_path, capsys) -> None:
    """[B18, B75] a directory with neither potential.pt nor committee.json is refused, naming both;
    an unfinished run points to its last.ckpt; a committee directory is named as one where a
    single potential is needed."""
    with pytest.raises(
        UserError, match=f"{tmp_path} is a directory with neither potential.pt nor committee.json; "
    ):
        physnet.Calculator(tmp_path)
    args = ["md", str(tmp_path), "CCO", "--steps", "2", "--trajectory", str(tmp_path / "t.traj")]
    assert main(args) == 2
    line = one_line_error(capsys, "md")
    assert (
        f"{tmp_path} is a directory with neither potential.pt nor committee.json; give the run directory"
        in line
    )
    assert not (tmp_path / "t.traj").exists()
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    with pytest.raises(
        UserError, match="last.ckpt is there: the run did not finish; give it, or --resume the run"
    ):
        physnet.Potential.load(tmp_path)
    (tmp_path / "committee.json").write_text('{"members": ["member_0/potential.pt"]}')
    with pytest.raises(
        UserError, match=f"{tmp_path} is a committee directory \\(committee.json, no potential.pt\\)"
    ):
        physnet.Potential.load(tmp_path)


def test_resume_of_a_finished_run_trains_nothing(tmp_path, emt_molecule_file, capsys) -> None:
    """[B55] `train --resume RUN` of a finished run trained nothing and rewrote the same results
    without a word; it says the run had finished, how to go on, and leaves its files alone (~3 s)."""
    run = tmp_path / "run"
    args = ["train", f"data.path={emt_molecule_file}", "data.energy_unit=eV", "data.length_unit=Å"]
    args += [f"run_dir={run}", "data.train=20", "data.val=10", "model.n_features=8", "model.n_filters=8"]
    args += ["model.n_interactions=1", "trainer.max_steps=2", "trainer.progress_bar=false"]
    assert main(args) == 0
    files = [run / n for n in ("potential.pt", "config.yaml", "test_metrics.json", "split.json")]
    before = [(f.read_bytes(), f.stat().st_mtime_ns) for f in files]
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 0
    out = capsys.readouterr().out
    assert (
        f"physnet train: {run} had already finished (step 2 of trainer.max_steps=2); nothing trained, its "
        f"files are unchanged; to train on, raise the limit: physnet train --resume {run} trainer.max_steps=4"
    ) in out.splitlines()
    assert "data:" not in out
    assert [(f.read_bytes(), f.stat().st_mtime_ns) for f in files] == before


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ({"max_steps": 60}, ("step 60 of trainer.max_steps=60", "trainer.max_steps=120")),
        ({"max_steps": 61}, None),
        ({"max_epochs": 5}, ("epoch 5 of trainer.max_epochs=5", "trainer.max_epochs=10")),
        ({"max_epochs": 6}, None),
        ({"max_time_minutes": 2.0}, ("2 min of trainer.max_time_minutes=2", "trainer.max_time_minutes=4")),
        ({"max_time_minutes": 3.0}, None),
    ],
)
def test_finished_limit_reads_the_checkpoint(tmp_path, limits, expected) -> None:
    """The limit a saved run reached, as Lightning's fit loop and Timer judge it (B55)."""
    from physnet.train.config import TrainerConfig
    from physnet.train.runner import finished_limit

    ckpt = {
        "global_step": 60,
        "loops": {"fit_loop": {"epoch_progress": {"current": {"processed": 5}}}},
        "callbacks": {"Timer": {"time_elapsed": {"train": 120.0}}},
    }
    torch.save(ckpt, tmp_path / "last.ckpt")
    t = TrainerConfig(**{"max_epochs": 1000, "max_steps": -1, **limits})
    assert finished_limit(t, tmp_path / "last.ckpt") == expected


def test_unwritable_run_dir_is_refused_before_the_data_is_read(tmp_path, emt_molecule_file, capsys) -> None:
    """[B67, B70] an unwritable run_dir was reported only after the data was read and the graphs
    built. A path under a regular file: no user (root included) can create it."""
    (tmp_path / "afile").write_text("")
    run = tmp_path / "afile" / "run"
    args = ["train", f"data.path={emt_molecule_file}", f"run_dir={run}", "trainer.max_steps=1"]
    assert main(args) == 2
    line = one_line_error(capsys, "train")
    assert (
        f"run_dir {run} cannot be created: {tmp_path / 'afile'} is a file, not a folder; "
        "choose another run_dir" in line
    )
    assert "data:" not in capsys.readouterr().out
    args = [
        "eval",
        str(tmp_path / "no.pt"),
        str(emt_molecule_file),
        "--output",
        str(tmp_path / "afile" / "ev"),
    ]
    assert main(args) == 2  # refused before the (missing) potential is read
    assert f"--output {tmp_path / 'afile' / 'ev'} cannot be created" in one_line_error(capsys, "eval")


def test_check_writable_leaves_nothing_behind(tmp_path) -> None:
    from physnet.errors import check_writable

    assert check_writable(tmp_path / "a" / "b", "run_dir") == tmp_path / "a" / "b"
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(
        UserError,
        match="run_dir /proc/physnet_nope/x cannot be created \\(/proc/physnet_nope: No such file or",
    ):
        check_writable("/proc/physnet_nope/x", "run_dir")
    with pytest.raises(UserError, match="run_dir /proc/physnet_nope cannot be created \\(No such file or"):
        check_writable("/proc/physnet_nope", "run_dir")


def test_check_writable_names_a_folder_it_cannot_write_in(tmp_path, monkeypatch) -> None:
    """A folder that exists but refuses new files (chattr +i, read-only mounts; root ignores modes)."""
    import errno
    import tempfile

    from physnet.errors import check_writable

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EPERM, "Operation not permitted", str(tmp_path / "tmpabc"))

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with pytest.raises(
        UserError, match=f"^--output {tmp_path} cannot be written in \\(Operation not permitted\\); "
    ):
        check_writable(tmp_path, "--output")
