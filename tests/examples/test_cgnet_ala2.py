"""examples/cgnet_ala2.py and cgnet_ala2_simulate.py run from a clone alone (embedded data)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from physnet.data import embedded
from physnet.units import energy_factor

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _example_module():
    spec = importlib.util.spec_from_file_location("cgnet_ala2_example", EXAMPLES / "cgnet_ala2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_default_data_is_the_embedded_set_in_kcal_per_mol(tmp_path: Path) -> None:
    example = _example_module()
    positions, forces, label = example.load()
    assert label.startswith("ala2_cg_amber")
    meta = embedded.info("ala2_cg_amber")
    assert meta["units"]["forces"] == "eV/Å" and meta["units"]["length"] == "Å"
    assert positions.shape == forces.shape == (meta["n_frames"], 5, 3)
    frames = embedded.load("ala2_cg_amber", index=":50")
    np.testing.assert_allclose(positions[:50], np.stack([a.positions for a in frames]))
    # eV/Å -> kcal/mol/Å: 1 eV = 23.06 kcal/mol
    ev_forces = np.stack([a.get_forces() for a in frames])
    np.testing.assert_allclose(forces[:50], ev_forces / energy_factor("kcal/mol"), rtol=1e-12)
    np.testing.assert_allclose(forces[0, 0], ev_forces[0, 0] * 23.0605, rtol=1e-4)

    # --data-dir: the .npy pair, read as it is (Å, kcal/mol/Å)
    np.save(tmp_path / "ala2_cg_coordinates.npy", positions[:10].astype(np.float32))
    np.save(tmp_path / "ala2_cg_forces.npy", forces[:10].astype(np.float32))
    pos_npy, forces_npy, _ = example.load(data_dir=tmp_path)
    np.testing.assert_array_equal(forces_npy, forces[:10].astype(np.float32))
    np.testing.assert_array_equal(pos_npy, positions[:10].astype(np.float32))
    with pytest.raises(SystemExit, match="ala2_cg_forces.npy not found in"):
        example.load(data_dir=tmp_path / "missing")
    with pytest.raises(SystemExit, match="not an embedded data set"):
        example.load("no_such_set")


def test_time_blocks_follow_the_number_of_frames() -> None:
    example = _example_module()
    train, test = example.block_split(5000)
    assert len(train) == 4000 and len(test) == 1000
    assert test.min() == 2000 and test.max() == 4999  # blocks 4 and 9 of 500 frames
    assert list(example.time_blocks(5000)[2][[0, -1]]) == [1000, 1499]


@pytest.mark.slow
def test_train_then_simulate_from_a_clone(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "cgnet_ala2.py"), "--minutes", "0.02", "--width", "32"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "data: ala2_cg_amber" in run.stdout
    assert "4000 training frames (500 of them, block 2, for early stopping), 1000 held-out" in run.stdout
    zero = float(re.search(r"zero force\s+(\S+)", run.stdout).group(1))
    # forces of a few tens of kcal/mol/Å per component; in eV/Å this would be ~23^2 times smaller
    assert 500.0 < zero < 5000.0, zero
    for name in ("cgnet_ala2.pt", "cgnet_ala2_netonly.pt", "cgnet_ala2_prioronly.pt"):
        assert (tmp_path / name).is_file()

    png = tmp_path / "fes.png"
    sim = subprocess.run(
        [sys.executable, str(EXAMPLES / "cgnet_ala2_simulate.py")]
        + ["--potential", "cgnet_ala2.pt", "--potential", "cgnet_ala2_prioronly.pt"]
        + ["--replicas", "4", "--steps", "200", "--save-every", "20", "--png", str(png)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert sim.returncode == 0, sim.stdout[-3000:] + sim.stderr[-3000:]
    assert len(re.findall(r"mean \|ΔF\| = \d+\.\d+ kcal/mol", sim.stdout)) == 2, sim.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
