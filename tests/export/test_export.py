"""physnet.export: the compiled file reproduces the eager Potential, runs without physnet, and
refuses what it cannot serve."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.md.verlet import VelocityVerlet

import physnet
from physnet.data import keys as K
from physnet.data.graph import collate, from_ase
from physnet.export import ExportedPotential, export_potential, exported_inputs, read_metadata

MODELS = ("schnet", "painn", "behler_parrinello", "egnn", "se3_transformer", "cgnet")
ATOMIC = MODELS[:5]


def _structures(name: str, potential: physnet.Potential, triclinic_box) -> dict[str, dict[str, torch.Tensor]]:
    """A molecule, a periodic triclinic box and a batch of both (CG: one molecule and two)."""
    cutoff = potential.cutoff
    if name == "cgnet":
        rng = np.random.default_rng(1)
        chain = np.cumsum(rng.normal(0, 0.3, (5, 3)) + [1.5, 0, 0], axis=0)
        mol = Atoms(numbers=[6, 7, 6, 6, 7], positions=chain)
        g = from_ase(mol, cutoff, dtype=torch.float64, targets=False)
        mol2 = mol.copy()
        mol2.positions += rng.normal(0, 0.1, (5, 3))
        return {
            "molecule": g,
            "batch": collate([g, from_ase(mol2, cutoff, dtype=torch.float64, targets=False)]),
        }
    ethanol = physnet.data.from_smiles("CCO")[0]
    box = triclinic_box()
    g_mol = from_ase(ethanol, cutoff, dtype=torch.float64, targets=False)
    g_box = from_ase(box, cutoff, dtype=torch.float64, targets=False)
    return {"molecule": g_mol, "box": g_box, "batch": collate([g_mol, g_box])}


@pytest.mark.parametrize("name", MODELS)
def test_exported_file_matches_the_eager_potential_without_physnet(
    name: str, exported: dict, tmp_path: Path, triclinic_box
) -> None:
    """Energy, per-atom energy, forces and stress of the .pt2, loaded by torch alone in a process
    where ``import physnet`` fails, equal the eager Potential's within 1e-6 relative (float64)."""
    potential, path = exported[name]
    cases = {}
    for label, graph in _structures(name, potential, triclinic_box).items():
        periodic = bool(graph[K.PBC].any(dim=1).all())
        ref = potential(graph, compute_stress=periodic)
        cases[label] = {
            "inputs": exported_inputs(graph),
            "reference": {k: ref[k] for k in (K.ENERGY, K.ATOMIC_ENERGY, K.FORCES, K.STRESS) if k in ref},
        }
    torch.save(cases, tmp_path / "cases.pt")
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["physnet"] = None  # import physnet must fail: the file needs torch alone
        try:
            import physnet
            raise SystemExit("physnet imported")
        except ImportError:
            pass
        import torch
        runner = torch._inductor.aoti_load_package({str(path)!r})
        assert runner.get_metadata()["format"] == "physnet.export/1"
        cases = torch.load({str(tmp_path / "cases.pt")!r})
        for label, case in cases.items():
            energy, atomic_energy, forces, virial = runner(*case["inputs"])
            got = {{"energy": energy, "atomic_energy": atomic_energy, "forces": forces}}
            ref = case["reference"]
            if "stress" in ref:
                got["stress"] = -virial / torch.linalg.det(case["inputs"][3]).abs().view(-1, 1, 1)
            for key, value in ref.items():
                error = float((got[key] - value).abs().max() / value.abs().max())
                print(label, key, f"{{error:.2e}}")
                assert error < 1e-6, (label, key, error)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    checked = result.stdout.split("\n")
    expected = 3 * len(cases) + sum("stress" in c["reference"] for c in cases.values())
    assert len([line for line in checked if line.strip()]) == expected, result.stdout


def test_metadata_records_what_an_engine_needs(exported: dict) -> None:
    potential, path = exported["schnet"]
    meta = read_metadata(path)
    assert meta["format"] == "physnet.export/1"
    assert meta["model"] == "schnet" and meta["species"] == "H C O" and meta["atomic_numbers"] == "1 6 8"
    assert float(meta["cutoff"]) == 4.0
    assert float(meta["interaction_range"]) == 12.0  # 3 interactions x 4 Å
    assert meta["energy_unit"] == "eV" and meta["length_unit"] == "Å" and meta["dtype"] == "float64"
    assert meta["per_atom"] == "1" and meta["physnet_version"] == physnet.__version__
    assert float(read_metadata(exported["behler_parrinello"][1])["interaction_range"]) == 4.0
    cg = read_metadata(exported["cgnet"][1])
    assert cg["per_atom"] == "0" and cg["n_beads"] == "5" and cg["energy_unit"] == "kcal/mol"


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt")
def test_loading_a_file_keeps_freed_memory_for_the_next_call(exported: dict) -> None:
    import physnet.export as export

    ExportedPotential(exported["egnn"][1])
    assert export._MALLOC_TUNED  # set by loading; without it large calls fault their buffers in again


def test_ghost_weights_count_only_local_energies_but_give_forces_on_all_atoms(exported: dict) -> None:
    """An engine that splits space gives ghosts weight 0: the energy is the local atoms' sum and
    the forces are its gradient, ghosts included (what LAMMPS sums back to their owners)."""
    potential, path = exported["schnet"]
    graph = from_ase(physnet.data.from_smiles("CCO")[0], potential.cutoff, dtype=torch.float64)
    weight = torch.zeros(9, dtype=torch.float64)
    weight[:4] = 1.0
    runner = torch._inductor.aoti_load_package(str(path))
    energy, atomic_energy, forces, _ = runner(*exported_inputs(graph, weight))
    torch.testing.assert_close(energy, atomic_energy[:4].sum().view(1), rtol=1e-12, atol=1e-12)
    pos = graph[K.POS].clone().requires_grad_(True)
    local = potential.energy_terms({**graph, K.POS: pos})[0]
    e_local = torch.stack(list(local.values()), -1).sum(-1)[:4].sum()
    (grad,) = torch.autograd.grad(e_local, pos)
    torch.testing.assert_close(forces, -grad, rtol=1e-10, atol=1e-12)
    assert float(forces[4:].abs().max()) > 0  # ghosts feel the local atoms' energy


def test_float32_export_matches_float32_potential(tmp_path: Path, make_potential, triclinic_box) -> None:
    """float32 (SchNet's tabulated filters included) within 1e-4 relative of the eager float32 model."""
    potential = make_potential("schnet", dtype=torch.float32)
    path = export_potential(potential, tmp_path / "schnet32.pt2")
    exported = ExportedPotential(path)
    assert exported.dtype == torch.float32
    box = from_ase(triclinic_box(), potential.cutoff, dtype=torch.float32)
    ref, got = potential(box, compute_stress=True), exported(box)
    for key in (K.ENERGY, K.FORCES, K.STRESS):
        error = float((got[key] - ref[key]).abs().max() / ref[key].abs().max())
        assert error < 1e-4, (key, error)
    # tracing left no tracer tensors in caches: the eager inference copy (tabulated filters) still runs
    atoms = triclinic_box()
    atoms.calc = physnet.Calculator(potential)
    eager = atoms.get_forces()
    atoms.calc = physnet.Calculator(path)
    np.testing.assert_allclose(atoms.get_forces(), eager, rtol=0, atol=1e-4 * np.abs(eager).max())


@pytest.mark.parametrize("name", ATOMIC)
def test_calculator_runs_the_exported_file_like_the_potential(
    name: str, exported: dict, triclinic_box
) -> None:
    """physnet.Calculator on the .pt2 (same Verlet list) follows the eager calculator's MD."""
    potential, path = exported[name]
    trajectories = []
    for calc in (physnet.Calculator(potential, dtype=torch.float64), physnet.Calculator(path)):
        atoms = triclinic_box(seed=3)
        atoms.calc = calc
        atoms.set_momenta(np.zeros((len(atoms), 3)))
        VelocityVerlet(atoms, 0.1 * units.fs).run(5)
        trajectories.append((atoms.positions.copy(), atoms.get_stress(), atoms.get_potential_energies()))
    (x0, s0, e0), (x1, s1, e1) = trajectories
    np.testing.assert_allclose(x1, x0, rtol=0, atol=1e-10)
    np.testing.assert_allclose(s1, s0, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(e1, e0, rtol=1e-7, atol=1e-10)


def test_exported_potential_refuses_what_it_cannot_serve(exported: dict, tmp_path: Path) -> None:
    potential, path = exported["schnet"]
    exported_potential = ExportedPotential(path)
    with pytest.raises(ValueError, match=r"N \(Z=\[7\]\) not in the model's species \['H', 'C', 'O'\]"):
        physnet.Calculator(path).get_potential_energy(Atoms("CN", positions=[[0, 0, 0], [1.2, 0, 0]]))
    with pytest.raises(ValueError, match="exported in float64; use dtype=torch.float64"):
        physnet.Calculator(path, dtype=torch.float32)
    graph32 = from_ase(Atoms("CO", positions=[[0, 0, 0], [1.2, 0, 0]]), 4.0, dtype=torch.float32)
    with pytest.raises(
        ValueError, match="positions are torch.float32 but schnet.pt2 was exported in float64"
    ):
        exported_potential(graph32)
    with pytest.raises(FileExistsError, match="exists; choose another name or pass overwrite=True"):
        export_potential(potential, path)
    with pytest.raises(ValueError, match=r"must end in .pt2"):
        export_potential(potential, tmp_path / "model.pt")
    text = tmp_path / "notes.pt2"
    text.write_text("not a model")
    with pytest.raises(ValueError, match="is not a physnet export"):
        ExportedPotential(text)
    with pytest.raises(FileNotFoundError, match="no exported potential at"):
        ExportedPotential(tmp_path / "missing.pt2")
    with pytest.raises(ValueError, match="compiled for cpu, not cuda"):
        ExportedPotential(path, device="cuda")
    cg = ExportedPotential(exported["cgnet"][1])
    six = from_ase(Atoms("C6", positions=np.arange(18.0).reshape(6, 3)), 5.0, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"CG model of 5 beads per molecule; the graph has \[6\]"):
        cg(six)


def test_cli_export_writes_a_file_and_refuses_to_overwrite(tmp_path: Path, capsys, make_potential) -> None:
    from physnet.cli import main

    potential = make_potential("egnn")
    potential.save(tmp_path / "potential.pt")
    out = tmp_path / "egnn.pt2"
    assert main(["export", str(tmp_path / "potential.pt"), str(out), "--dtype", "float64"]) == 0
    printed = capsys.readouterr().out
    assert "egnn, species H C O, cutoff 4.0 Å, interaction range 8.0 Å, eV, float64, cpu" in printed
    graph = from_ase(physnet.data.from_smiles("CCO")[0], 4.0, dtype=torch.float64)
    torch.testing.assert_close(ExportedPotential(out)(graph)[K.FORCES], potential(graph)[K.FORCES])
    assert main(["export", str(tmp_path / "potential.pt"), str(out)]) == 2
    assert "exists; choose another name or pass overwrite=True (--overwrite)" in capsys.readouterr().err
