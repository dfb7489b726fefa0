"""Box geometry (physnet.sim.box): wall distances and normals, excursions, stays outside."""

from __future__ import annotations

import pytest
import torch

from physnet.sim.box import escaped_particles, excursion, outside_depth, stays, wall_distances, wall_normals


def test_wall_distances_and_normals_follow_one_convention() -> None:
    """``wall_distances``: lower walls along each axis, then upper ones, > 0 inside, < 0 behind;
    ``wall_normals`` point out of the box in the same order."""
    bounds = torch.tensor([[0.0, 1.0], [0.0, 2.0]], dtype=torch.float64)
    pos = torch.tensor([[0.25, 0.5], [-0.1, 2.5]], dtype=torch.float64)
    expected = torch.tensor([[0.25, 0.5, 0.75, 1.5], [-0.1, 2.5, 1.1, -0.5]], dtype=torch.float64)
    torch.testing.assert_close(wall_distances(pos, bounds), expected, rtol=0, atol=1e-15)
    normals = wall_normals(2, torch.float64)
    torch.testing.assert_close(
        normals, torch.tensor([[-1.0, 0], [0, -1], [1, 0], [0, 1]], dtype=torch.float64)
    )
    # moving a point along a wall's outward normal lowers its distance inside that wall by as much
    for w in range(4):
        moved = wall_distances(pos + 0.01 * normals[w], bounds)
        torch.testing.assert_close(moved[:, w], expected[:, w] - 0.01, rtol=0, atol=1e-12)


def test_outside_depth_per_wall() -> None:
    bounds = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    pos = torch.tensor([[[0.5, 0.5], [-0.02, 0.5], [0.5, -0.01], [1.03, 1.2]]])  # [1, 4, 2]
    depth = outside_depth(pos, bounds)  # left, floor, right, lid
    expected = torch.tensor([[[0, 0, 0, 0], [0.02, 0, 0, 0], [0, 0.01, 0, 0], [0, 0, 0.03, 0.2]]])
    torch.testing.assert_close(depth, expected, atol=1e-6, rtol=0)


def test_excursion_and_escaped_particles() -> None:
    bounds = torch.tensor([[0.0, 1.0], [0.0, 2.0]])
    pos = torch.full((3, 4, 2), 0.5)  # [T, n, dim], all inside
    assert excursion(pos, bounds) == 0.0 and escaped_particles(pos, bounds) == 0
    pos[1, 0, 0] = -0.25  # particle 0 leaves through x_lo in frame 1 only
    pos[2, 2, 1] = 2.5  # particle 2 through y_hi
    pos[0, 2, 0] = 1.125  # and through x_hi earlier
    assert excursion(pos, bounds) == pytest.approx(0.5)
    assert escaped_particles(pos, bounds) == 2
    pos[:, 3] = bounds[:, 1]  # exactly on the wall counts as inside
    assert escaped_particles(pos, bounds) == 2
    # with a tolerance: particle 0 reaches 0.25 beyond x_lo, particle 2 0.5 beyond y_hi
    assert escaped_particles(pos, bounds, tolerance=0.2) == 2
    assert escaped_particles(pos, bounds, tolerance=0.3) == 1
    assert escaped_particles(pos, bounds, tolerance=0.5) == 0


def test_stays_counts_runs_of_frames_outside() -> None:
    # 3 particles, 6 frames: the first is out twice (2 frames, then 1), the second once for 3 frames
    outside = torch.tensor(
        [[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=torch.bool
    )
    assert stays(outside) == {"particles": 2, "frames": 6, "stays": 3, "longest": 3}
    assert stays(torch.zeros(4, 2, dtype=torch.bool)) == {
        "particles": 0,
        "frames": 0,
        "stays": 0,
        "longest": 0,
    }
