"""The data generators in scripts/ reproduce the first frames of the shipped sets.

Each test reruns the command recorded in the set's sidecar, shortened (fewer frames,
runs or molecules) and written to a temporary folder, in a subprocess with one OpenMP
thread, and compares its frames with the first frames of the shipped file. Exact
reproduction needs the software versions the set was made with; the test skips,
saying which version differs, otherwise.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

from physnet.data import embedded

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"


def _installed(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _skip_unless_same_software(meta: dict) -> None:
    recorded = meta["provenance"]["software"]
    extras = {"tblite": "physnet[data]", "openmm": "physnet[cg]"}
    for name, extra in extras.items():
        if recorded.get(name, "not installed") != "not installed" and _installed(name) == "not installed":
            pytest.skip(f"{name} is not installed (optional extra: pip install '{extra}')")
    for name, version in recorded.items():
        if name in ("python", "physnet"):
            continue
        if _installed(name) != version:
            pytest.skip(f"{meta['name']} was made with {name} {version}; installed {_installed(name)}")


def _rerun(name: str, extra: list[str], tmp_path: Path) -> list:
    """Run the sidecar's command with ``extra`` arguments appended (later ones win) into tmp_path."""
    meta = embedded.info(name)
    _skip_unless_same_software(meta)
    argv = shlex.split(meta["provenance"]["command"])
    assert argv[0] == "python" and argv[1].startswith("scripts/generate_"), argv
    cmd = [
        sys.executable,
        str(ROOT / argv[1]),
        *argv[2:],
        *extra,
        "--out-dir",
        str(tmp_path),
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return read(tmp_path / f"{name}.extxyz.gz", index=":")


def _assert_same_frames(new: list, shipped: list, atol: float = 1.5e-8) -> None:
    """Frames agree to the files' precision: extxyz keeps 8 decimals, so a round-off-sized
    difference between machines (the Cu cell differed by 3e-11 here) can flip the last digit,
    1e-8; ``atol`` allows one flip and the float error of reading it back."""
    assert len(new) >= 1
    for k, (a, b) in enumerate(zip(new, shipped[: len(new)], strict=True)):
        assert a.get_chemical_symbols() == b.get_chemical_symbols(), k
        np.testing.assert_allclose(a.positions, b.positions, atol=atol, rtol=0, err_msg=f"frame {k}")
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=atol, rtol=0, err_msg=f"frame {k}")
        assert abs(a.get_potential_energy() - b.get_potential_energy()) < atol, k
        if "momenta" in b.arrays:
            np.testing.assert_allclose(a.get_momenta(), b.get_momenta(), atol=atol, rtol=0)
        if b.pbc.any():
            np.testing.assert_allclose(a.cell[:], b.cell[:], atol=atol, rtol=0)
            np.testing.assert_allclose(a.get_stress(), b.get_stress(), atol=atol, rtol=0)


def test_ethanol_md_reproduces_first_frames(tmp_path: Path) -> None:
    new = _rerun("ethanol_gfn2", ["--frames", "3"], tmp_path)
    assert len(new) == 3
    _assert_same_frames(new, embedded.load("ethanol_gfn2", index="0:3"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["aspirin_gfn2", "malonaldehyde_gfn2"])
def test_molecular_md_reproduces_first_frames(name: str, tmp_path: Path) -> None:
    new = _rerun(name, ["--frames", "5"], tmp_path)
    _assert_same_frames(new, embedded.load(name, index="0:5"))


def test_cu_emt_reproduces_first_frames(tmp_path: Path) -> None:
    new = _rerun("cu_emt", ["--max-runs", "1", "--frames-per-run", "3"], tmp_path)
    assert len(new) == 3
    _assert_same_frames(new, embedded.load("cu_emt", index="0:3"))


@pytest.mark.slow
def test_cuau_emt_reproduces_first_run(tmp_path: Path) -> None:
    prov = embedded.info("cuau_emt")["provenance"]
    new = _rerun("cuau_emt", ["--max-runs", "1"], tmp_path)
    assert len(new) == prov["frames_per_run"]
    _assert_same_frames(new, embedded.load("cuau_emt", index=f"0:{len(new)}"))


def test_property_set_reproduces_first_molecules(tmp_path: Path) -> None:
    new = _rerun("nci_gfn2_properties", ["--limit", "2"], tmp_path)
    assert len(new) == 2
    provenance = json.loads((tmp_path / "nci_gfn2_properties.json").read_text())["provenance"]
    assert 400 <= provenance["n_selected"] <= 440  # the selection of RDKit's NCI list
    assert (
        provenance["dropped_by_filter"]["elements"] > 0 and provenance["dropped_by_filter"]["heavy_atoms"] > 0
    )
    shipped = embedded.load("nci_gfn2_properties", index="0:2")
    # geometry optimisations amplify round-off: on another CPU the optimised coordinates moved
    # by 2e-8 Å; 1e-6 (Å, eV, eV/Å) still catches any change of method, settings or molecule
    _assert_same_frames(new, shipped, atol=1e-6)
    for a, b in zip(new, shipped, strict=True):
        for key in ("smiles", "nci_id", "opt_steps", "converged"):
            assert a.info[key] == b.info[key], key
        for key in ("homo_lumo_gap_eV", "dipole_debye"):
            assert a.info[key] == pytest.approx(b.info[key], abs=1e-8), key


@pytest.mark.slow
def test_alanine_cg_reproduces_first_frames(tmp_path: Path) -> None:
    new = _rerun("ala2_cg_amber", ["--frames", "3"], tmp_path)
    assert len(new) == 3
    shipped = embedded.load("ala2_cg_amber", index="0:3")
    _assert_same_frames_without_energy(new, shipped)
    for a, b in zip(new, shipped, strict=True):
        for key in ("phi_deg", "psi_deg", "temperature_K", "aa_energy_eV"):
            assert a.info[key] == pytest.approx(b.info[key], abs=1e-8), key


def _assert_same_frames_without_energy(new: list, shipped: list, atol: float = 1e-8) -> None:
    for k, (a, b) in enumerate(zip(new, shipped, strict=True)):
        np.testing.assert_allclose(a.positions, b.positions, atol=atol, rtol=0, err_msg=f"frame {k}")
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=atol, rtol=0, err_msg=f"frame {k}")


def test_emt_generator_refuses_elements_without_emt_parameters(tmp_path: Path) -> None:
    cmd = [sys.executable, str(SCRIPTS / "generate_emt_metals.py"), "--composition", "Fe=1", "--name", "x"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "EMT has parameters" in proc.stderr, proc.stderr[-2000:]
