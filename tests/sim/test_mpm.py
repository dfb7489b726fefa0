"""MLS-MPM water (physnet.sim.mpm): conservation, walls, determinism, free fall, generator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from physnet.data.embedded import sha256
from physnet.sim.mpm import MPMWater, simulate_water

ROOT = Path(__file__).resolve().parents[2]


def block(sim: MPMWater, x0: float, y0: float, nx: int, ny: int) -> np.ndarray:
    h = sim.spacing * sim.dx
    gx, gy = np.meshgrid((np.arange(nx) + 0.5) * h, (np.arange(ny) + 0.5) * h, indexing="ij")
    return np.stack([x0 + gx.ravel(), y0 + gy.ravel()], axis=1)


def test_mass_is_conserved_on_particles_and_grid() -> None:
    traj = simulate_water(seed=3, n_particles=200, n_frames=40)
    assert traj.positions.shape[1:] == (traj.particle_type.shape[0], 2)
    # quadratic B-spline weights sum to one: P2G puts exactly the particle mass on the grid
    np.testing.assert_allclose(traj.grid_mass, traj.mass, rtol=1e-12)
    assert np.all(np.isfinite(traj.positions))


def test_particles_stay_in_the_box_without_leaning_on_the_clamp() -> None:
    sim = MPMWater()
    rng = np.random.default_rng(7)
    pos, vel = sim.water_blocks(rng, n_particles=300, max_speed=3.0)
    frames, substeps = 80, 10
    traj = sim.run(pos, vel, frames, substeps)
    lo, hi = traj.bounds[0]
    assert traj.positions.min() >= lo and traj.positions.max() <= hi
    # the grid's wall condition does the work; the clamp is a rare safety net
    assert traj.n_clamped < 0.01 * pos.shape[0] * frames * substeps, traj.n_clamped
    # the water reached the floor (it fell) and no particle left through the top
    assert traj.positions[-1, :, 1].min() < lo + 2 * sim.dx


def test_deterministic_in_the_seed() -> None:
    a = simulate_water(seed=11, n_particles=150, n_frames=15)
    b = simulate_water(seed=11, n_particles=150, n_frames=15)
    c = simulate_water(seed=12, n_particles=150, n_frames=15)
    assert np.array_equal(a.positions, b.positions)
    assert a.positions.shape != c.positions.shape or not np.array_equal(a.positions, c.positions)


def test_free_fall_of_a_block_follows_g_t2_over_2() -> None:
    """A block released high in the box falls freely until it meets the floor: its centre of
    mass follows x0 + vx t, y0 - g t^2 / 2 (with the symplectic-Euler substep sum)."""
    sim = MPMWater()
    pos = block(sim, 0.4, 0.7, 12, 12)
    vx = 0.5
    vel = np.tile([vx, 0.0], (pos.shape[0], 1))
    frames, substeps = 25, 10  # 0.1 s: the block falls ~5 cm, far from the floor
    traj = sim.run(pos, vel, frames, substeps)
    com = traj.positions.mean(axis=1)  # [frames, 2]
    k = np.arange(frames) * substeps  # substeps done
    dt = sim.dt
    y_expected = com[0, 1] - sim.gravity * dt**2 * k * (k + 1) / 2  # sum_{s=1..k} g s dt * dt
    x_expected = com[0, 0] + vx * k * dt
    np.testing.assert_allclose(com[:, 1], y_expected, atol=1e-10, rtol=0)
    np.testing.assert_allclose(com[:, 0], x_expected, atol=1e-10, rtol=0)
    t = k * dt  # and the continuous-time law within the O(dt) discretisation term g t dt / 2
    assert (
        np.abs(com[:, 1] - (com[0, 1] - sim.gravity * t**2 / 2)).max()
        <= sim.gravity * t.max() * dt / 2 + 1e-12
    )
    # the block keeps its shape while falling (no pressure without compression): size unchanged
    extent = traj.positions.max(axis=1) - traj.positions.min(axis=1)
    np.testing.assert_allclose(extent[-1], extent[0], atol=1e-9)


def test_fixture_matches_its_sidecar() -> None:
    folder = ROOT / "data" / "mpm_water"
    meta = json.loads((folder / "water_fixture.json").read_text())
    npz = folder / meta["file"]
    assert sha256(npz) == meta["sha256"]
    assert npz.stat().st_size < 2e6
    from physnet.data.trajectories import load_trajectories

    data = load_trajectories(npz)
    assert len(data) == meta["n_trajectories"]
    assert data.positions[0].shape[0] == meta["n_frames"]
    np.testing.assert_allclose(data.bounds, meta["provenance"]["engine_settings"]["domain_m"])
    for pos in data.positions:
        assert float(pos.min()) >= data.bounds[0, 0] and float(pos.max()) <= data.bounds[0, 1]


def test_generator_script_writes_npz_and_sidecar(tmp_path: Path) -> None:
    out = tmp_path / "tiny.npz"
    cmd = [sys.executable, str(ROOT / "scripts" / "generate_mpm_water.py"), "--out", str(out)]
    cmd += ["--trajectories", "2", "--frames", "6", "--particles", "60", "--seed", "5"]
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["n_trajectories"] == 2 and meta["provenance"]["seed"] == 5
    assert "generate_mpm_water.py" in meta["provenance"]["command"]
    assert meta["sha256"] == sha256(out)
    with np.load(out) as raw:
        assert raw["positions_0"].shape[0] == 6 and raw["positions_0"].dtype == np.float32
        first = raw["positions_0"].copy()
    # same seed, same first trajectory as the library call with the spawned seed
    rng = np.random.default_rng(np.random.SeedSequence(5).spawn(2)[0])
    sim = MPMWater()
    pos, vel = sim.water_blocks(rng, n_particles=60)
    expected = sim.run(pos, vel, 6, 10).positions.astype(np.float32)  # the script's default: 10 substeps
    np.testing.assert_array_equal(first, expected)
    assert torch.get_num_threads() >= 1
