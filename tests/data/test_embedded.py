"""The embedded data sets in data/: names, loading, units, provenance and physics checks."""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import units

from physnet.data import embedded
from physnet.data.checks import finite_difference_errors

ROOT = Path(__file__).resolve().parents[2]
MOLECULAR_MD = ["ethanol_gfn2", "aspirin_gfn2", "malonaldehyde_gfn2"]
METALS = ["cu_emt", "cuau_emt"]
PROPERTIES = ["nci_gfn2_properties"]
CG = ["ala2_cg_amber"]
ALL_SETS = MOLECULAR_MD + METALS + PROPERTIES + CG


@functools.cache
def frames_of(name: str) -> list:
    return embedded.load(name)


def _temperatures_from_momenta(atoms) -> float:
    """2 E_kin / ((3N - 3) k_B) from the stored momenta [K] (centre of mass fixed in these sets)."""
    p = atoms.get_momenta()
    ekin = 0.5 * float((p**2 / atoms.get_masses()[:, None]).sum())
    return 2 * ekin / ((3 * len(atoms) - 3) * units.kB)


def test_available_lists_every_shipped_set() -> None:
    assert set(ALL_SETS) <= set(embedded.available())
    for name in ALL_SETS:
        assert embedded.path(name).is_file()
        assert embedded.path(name).parent == ROOT / "data"


def test_load_ethanol_by_name_has_2000_frames_with_targets() -> None:
    frames = frames_of("ethanol_gfn2")
    assert len(frames) == 2000
    for atoms in (frames[0], frames[-1]):
        assert atoms.get_chemical_formula() == "C2H6O"
        assert np.isfinite(atoms.get_potential_energy())
        assert atoms.get_forces().shape == (9, 3)
        assert not atoms.pbc.any()


def test_load_by_path_and_index_match_load_by_name(tmp_path: Path) -> None:
    by_path = embedded.load(embedded.path("ethanol_gfn2"), index="0:5")
    by_name = embedded.load("ethanol_gfn2", index="0:5")
    assert len(by_path) == 5
    np.testing.assert_array_equal(by_path[4].positions, by_name[4].positions)
    # any file read_frames reads
    from ase.io import write

    write(tmp_path / "two.xyz", by_name[:2], format="extxyz")
    assert len(embedded.load(tmp_path / "two.xyz")) == 2


def test_unknown_name_lists_available_sets() -> None:
    with pytest.raises(embedded.UnknownDataSetError) as err:
        embedded.path("ethanol_dft")
    message = str(err.value)
    assert "ethanol_dft" in message and "ethanol_gfn2" in message and "cu_emt" in message
    assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)
    with pytest.raises(KeyError, match="embedded sets: .*aspirin_gfn2"):
        embedded.load("no_such_set_or_file.xyz")
    with pytest.raises(ValueError, match="not an embedded data set"):
        embedded.info("nope")


def test_fit_resolves_embedded_names() -> None:
    from physnet.train.fit import _resolve_data_path

    assert Path(_resolve_data_path("ethanol_gfn2")) == embedded.path("ethanol_gfn2")
    with pytest.raises(FileNotFoundError):
        _resolve_data_path("no_such_set")


def test_data_dir_can_be_overridden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHYSNET_DATA_DIR", str(tmp_path))
    assert embedded.data_dir() == tmp_path.resolve()
    assert embedded.available() == []
    with pytest.raises(KeyError, match="no data sets found"):
        embedded.path("ethanol_gfn2")


@pytest.mark.parametrize("name", ALL_SETS)
def test_info_has_units_provenance_and_checksum(name: str) -> None:
    meta = embedded.info(name)
    assert meta["units"]["energy"] == "eV" and meta["units"]["length"] == "Å"
    assert meta["units"]["forces"] == "eV/Å"
    prov = meta["provenance"]
    for key in ("method", "software", "seed", "command"):
        assert key in prov, key
    assert prov["command"].startswith("python scripts/generate_")
    assert "ase" in prov["software"] and "numpy" in prov["software"]
    if name in MOLECULAR_MD + METALS + CG:
        for key in ("timestep_fs", "stride_steps", "equilibration_steps", "friction_per_fs"):
            assert prov[key] > 0, key
        assert "temperature_K" in prov or "temperatures_K" in prov
    if prov["method"] == "GFN2-xTB":
        assert prov["software"]["tblite"] != "not installed"
    assert embedded.sha256(meta["path"]) == meta["sha256"], "data file differs from its sidecar's checksum"
    for extra, about in meta.get("extra_files", {}).items():
        assert embedded.sha256(ROOT / "data" / extra) == about["sha256"], extra
    assert meta["n_frames"] == len(frames_of(name))


def test_total_data_stays_small() -> None:
    total = sum(f.stat().st_size for f in (ROOT / "data").iterdir() if f.name != "README.md")
    assert total < 20e6


@pytest.mark.parametrize("name", MOLECULAR_MD)
def test_molecular_md_mean_temperature_within_5_percent(name: str) -> None:
    frames = frames_of(name)
    target = embedded.info(name)["provenance"]["temperature_K"]
    temps = np.array([_temperatures_from_momenta(a) for a in frames])
    np.testing.assert_allclose(temps, [a.info["temperature_K"] for a in frames], rtol=1e-6)
    assert abs(temps.mean() / target - 1) < 0.05, f"mean T {temps.mean():.1f} K vs target {target} K"


@pytest.mark.parametrize("name", METALS)
def test_metal_sets_have_stress_and_temperatures_within_5_percent(name: str) -> None:
    frames = frames_of(name)
    prov = embedded.info(name)["provenance"]
    assert len(frames) == len(prov["temperatures_K"]) * prov["runs_per_temperature"] * prov["frames_per_run"]
    for atoms in frames[:: len(frames) // 5]:
        assert len(atoms) == 108 and atoms.pbc.all()
        assert atoms.get_stress().shape == (6,)
    for target in prov["temperatures_K"]:
        temps = [_temperatures_from_momenta(a) for a in frames if a.info["target_temperature_K"] == target]
        assert abs(np.mean(temps) / target - 1) < 0.05, f"{name}: mean T {np.mean(temps):.1f} K at {target} K"


def test_property_set_fields_and_units() -> None:
    frames = frames_of("nci_gfn2_properties")
    meta = embedded.info("nci_gfn2_properties")
    assert len(frames) == meta["provenance"]["n_molecules"] >= 400
    for atoms in frames:
        assert set(atoms.get_chemical_symbols()) <= {"C", "N", "O", "F", "H"}
        assert sum(atoms.numbers > 1) <= 9
    gaps = np.array([a.info["homo_lumo_gap_eV"] for a in frames])
    assert (gaps > 0).all()
    dip = frames[0].get_dipole_moment()  # e·Å
    assert dip.shape == (3,)
    np.testing.assert_allclose(np.linalg.norm(dip) / units.Debye, frames[0].info["dipole_debye"], rtol=1e-8)
    assert sum(bool(a.info["converged"]) for a in frames) >= 0.95 * len(frames)


def test_alanine_cg_set_beads_forces_dihedrals_and_temperature() -> None:
    frames = frames_of("ala2_cg_amber")
    meta = embedded.info("ala2_cg_amber")
    assert len(frames) == meta["provenance"]["n_frames"]
    assert frames[0].get_chemical_symbols() == ["C", "N", "C", "C", "N"]
    assert frames[0].get_forces().shape == (5, 3) and "energy" not in frames[0].calc.results
    allatom = np.load(ROOT / "data" / "ala2_cg_amber_allatom.npz")
    assert allatom["positions"].shape == (len(frames), 22, 3)
    k = len(frames) // 2
    np.testing.assert_allclose(
        allatom["positions"][k][allatom["bead_indices"]], frames[k].positions, atol=1e-7
    )
    temps = np.array([a.info["temperature_K"] for a in frames])
    target = meta["provenance"]["temperature_K"]
    assert abs(temps.mean() / target - 1) < 0.05, f"mean T {temps.mean():.1f} K vs {target} K"
    phi = np.array([a.info["phi_deg"] for a in frames])
    assert (phi < 0).mean() > 0.5  # alanine dipeptide lives mostly at negative phi (beta, alpha_R)


def test_forces_match_finite_differences_ethanol_one_frame() -> None:
    pytest.importorskip(
        "tblite", reason="tblite (pip install 'physnet[data]') is needed to recompute GFN2-xTB"
    )
    atoms = frames_of("ethanol_gfn2")[1234]
    out = finite_difference_errors(atoms, embedded.calculator("ethanol_gfn2"), h=1e-3)
    assert out["force_max_abs_error"] < 2e-3, out
    assert out["energy_abs_error"] < 1e-4, out


def test_forces_and_stress_match_finite_differences_emt_one_frame() -> None:
    atoms = frames_of("cuau_emt")[100]
    comps = np.random.default_rng(0).choice(3 * len(atoms), size=12, replace=False)
    out = finite_difference_errors(atoms, embedded.calculator("cuau_emt"), h=1e-3, components=comps)
    assert out["force_max_abs_error"] < 1e-4, out
    assert out["stress_max_abs_error"] < 1e-5, out
    assert out["energy_abs_error"] < 1e-6, out  # positions are stored to 1e-8 Å


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_SETS)
def test_forces_match_finite_differences_three_frames(name: str) -> None:
    if embedded.info(name)["provenance"]["method"] == "GFN2-xTB":
        pytest.importorskip("tblite", reason="tblite (pip install 'physnet[data]') is needed for GFN2-xTB")
    if (
        name in CG
    ):  # all-atom OpenMM forces on beads: scripts/check_embedded_forces.py runs the generator's check
        pytest.importorskip("openmm", reason="OpenMM (pip install 'physnet[cg]') is needed for the CG set")
        cmd = [sys.executable, str(ROOT / "scripts" / "check_embedded_forces.py"), "--sets", name]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, proc.stderr[-2000:]
        error = float(re.search(r"force max \|FD - stored\| (\S+) eV/Å", proc.stdout).group(1))
        assert error < 2e-3, proc.stdout
        return
    out = embedded.check_set(name, n_frames=3, h=1e-3)
    assert out["force_max_abs_error"] < 2e-3, out
    if "stress_max_abs_error" in out:
        assert out["stress_max_abs_error"] < 1e-5, out


def test_sidecars_are_valid_json_with_matching_names() -> None:
    sidecars = list((ROOT / "data").glob("*.json"))
    assert len(sidecars) == len(ALL_SETS)
    for sidecar in sidecars:
        meta = json.loads(sidecar.read_text())
        assert meta["name"] == sidecar.stem
        assert (ROOT / "data" / meta["file"]).is_file()
