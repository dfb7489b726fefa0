"""GNS evaluation (physnet.train.gns_eval): rollout scores, walls, free fall, loss split, data checks."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import physnet
from physnet.data import keys as K
from physnet.data.trajectories import Trajectories, load_trajectories
from physnet.models.gns import GNS
from physnet.train.gns_eval import (
    check_rollout_data,
    evaluate,
    free_fall_response,
    loss_breakdown,
    one_step_penetration,
    peak_neighbours,
    rollout_errors,
    rollout_for_animation,
    selection_score,
    wall_penetration,
)
from physnet.train.plots import animate_rollout

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "data" / "mpm_water" / "water_fixture.npz"
BOUNDS = [[0.0, 1.0], [0.0, 1.0]]


def collapsing(model: GNS, centre: float = 0.5) -> GNS:
    """``model`` with its network replaced by an acceleration that stops every particle and
    pulls it halfway to ``centre``: the predicted particles pile up within a few frames."""

    def forward(g: dict[str, torch.Tensor]) -> torch.Tensor:
        last, prev = g[K.POS_HISTORY][:, -1], g[K.POS_HISTORY][:, -2]
        return -(last - prev) - 0.5 * (last - centre)

    model.forward = forward  # type: ignore[method-assign]
    return model


def test_free_fall_response_measures_the_learnt_body_force() -> None:
    """A block in free fall (all particles share g dt^2) is scored against g; frames with a
    contact (one particle accelerated differently) are left out."""
    torch.manual_seed(0)
    model = physnet.models.build_simulator(
        "gns", bounds=[[0.0, 1.0], [0.0, 1.0]], latent_size=8, hidden_size=8, n_message_passing=1
    ).double()
    g = torch.tensor([0.0, -1.5e-4], dtype=torch.float64)
    t = torch.arange(20, dtype=torch.float64)[:, None, None]
    grid = torch.stack(torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij"), -1).reshape(-1, 2)
    pos = 0.4 + 0.0075 * grid.double() + 2e-3 * t + 0.5 * g * t * (t + 1)  # [20, 16, 2], acc = g
    pos[15:, 0] += 1e-3 * (t[15:, 0] - 14) ** 2  # particle 0 hit something: frames 14.. are not free fall
    ptype = torch.zeros(16, dtype=torch.long)
    torch.nn.init.zeros_(model.decoder.mlp[-1].weight)
    torch.nn.init.zeros_(model.decoder.mlp[-1].bias)
    model.acc_mean.copy_(g)  # the model predicts exactly g everywhere
    out = free_fall_response(model, pos, ptype)
    assert out["free_fall_frames"] == 14 - 5  # windows ending at frames 5..13 (frame t needs t + 1)
    assert out["free_fall_ratio"] == pytest.approx(1.0) and out["free_fall_rms"] == pytest.approx(
        0.0, abs=1e-12
    )
    model.acc_mean.zero_()  # ignores gravity
    out = free_fall_response(model, pos, ptype)
    assert out["free_fall_ratio"] == pytest.approx(0.0, abs=1e-12) and out["free_fall_rms"] == pytest.approx(
        1.0
    )
    still = pos[:1].expand(20, -1, -1)  # at rest: no acceleration, no free-fall frame
    assert math.isnan(free_fall_response(model, still, ptype)["free_fall_ratio"])


def test_evaluate_and_animation(tmp_path: Path) -> None:
    from PIL import Image

    data = load_trajectories(FIXTURE)
    data.positions = [p[:20] for p in data.positions[:1]]
    data.particle_type = data.particle_type[:1]
    model = physnet.models.build_simulator(
        "gns", bounds=data.bounds.tolist(), latent_size=8, hidden_size=8, n_message_passing=1
    )
    model.fit_statistics(data.positions)
    summary = evaluate(copy.deepcopy(model), data, verbose=False)
    for key in ("mean_one_step_mse", "mean_cv_one_step_mse", "mean_rollout_mse", "mean_cv_rollout_mse"):
        assert np.isfinite(summary[key]) and summary[key] >= 0
    assert summary["mean_max_excursion"] >= 0
    assert summary["mean_escaped_particles"] == sum(summary["escaped_particles"])
    assert summary["escape_tolerance"] == pytest.approx(0.1 * model.radius)
    assert summary["mean_free_fall_frames"] == sum(summary["free_fall_frames"])
    assert all(
        b <= a for a, b in zip(summary["escaped_particles"], summary["escaped_beyond_tolerance"], strict=True)
    )
    truth = data.positions[0].numpy()
    gif = animate_rollout(truth + 0.01, truth, data.bounds, tmp_path / "a.gif", every=5)
    with Image.open(gif) as im:
        assert im.n_frames == 4
    with pytest.raises(ValueError):
        animate_rollout(truth[:3], truth, data.bounds, tmp_path / "b.gif")


def test_a_clumping_rollout_scores_as_diverged(tmp_path: Path) -> None:
    """``rollout_errors``/``evaluate`` score a clumping rollout as diverged (MSE = inf, the step it
    stopped at) instead of running it to the end; the animation ends where the rollout stopped."""
    data = load_trajectories(FIXTURE, torch.float64)
    data.positions = [p[:40] for p in data.positions[:1]]
    data.particle_type = data.particle_type[:1]
    model = physnet.models.build_simulator(
        "gns", bounds=data.bounds.tolist(), latent_size=8, hidden_size=8, n_message_passing=1
    ).double()
    model.fit_statistics(data.positions)
    pos, ptype = data.positions[0], data.particle_type[0]
    assert 2 < peak_neighbours(model, pos) < 30
    healthy = rollout_errors(model, pos, ptype)
    assert healthy["diverged_at_step"] == -1 and np.isfinite(healthy["rollout_mse"])
    model = collapsing(model, centre=0.3)
    errors = rollout_errors(model, pos, ptype)
    assert errors["rollout_mse"] == float("inf") and 0 < errors["diverged_at_step"] < 34
    assert errors["cv_rollout_mse"] == healthy["cv_rollout_mse"]  # the baseline is still scored
    assert errors["true_peak_neighbours"] == healthy["true_peak_neighbours"] == peak_neighbours(model, pos)
    assert (
        errors["peak_neighbours"] > 4 * errors["true_peak_neighbours"]
    )  # the last frame kept is the clumped one
    unguarded = rollout_errors(model, pos, ptype, neighbour_factor=None)
    assert unguarded["diverged_at_step"] == -1 and np.isfinite(unguarded["rollout_mse"])
    assert unguarded["peak_neighbours"] == pos.shape[1] - 1  # clumped into one blob: all pairs
    summary = evaluate(model, data, verbose=False)
    assert summary["diverged_at_step"] == [errors["diverged_at_step"]]
    assert summary["mean_peak_neighbours"] == errors["peak_neighbours"]
    assert summary["mean_rollout_mse"] == float("inf") and summary["rollout_mse_ratio_cv_over_model"] == 0
    pred, truth = rollout_for_animation(model, data, 0)
    assert pred.shape == truth.shape == (6 + errors["diverged_at_step"], *pos.shape[1:])


def test_selection_score_ranks_diverged_rollouts_last() -> None:
    """Fewer clumped rollouts always win; among equals the mean MSE decides (monotonically);
    when every rollout diverged the later stop wins."""

    def r(mse: float, stop: int = -1) -> dict[str, float]:
        return {"rollout_mse": math.inf if stop >= 0 else mse, "diverged_at_step": stop, "n_steps": 100.0}

    clean_bad, clean_good = [r(0.5), r(0.7)], [r(0.05), r(0.07)]
    one_diverged = [r(0.001), r(0.0, stop=90)]
    all_early, all_late = [r(0, stop=10), r(0, stop=20)], [r(0, stop=80), r(0, stop=99)]
    scores = [selection_score(x) for x in (clean_good, clean_bad, one_diverged, all_late, all_early)]
    assert scores == sorted(scores) and len(set(scores)) == 5
    assert selection_score(clean_good) == pytest.approx(0.06 / 1.06)
    assert (
        1 <= selection_score(one_diverged) < 2 <= selection_score(all_late) < selection_score(all_early) < 3
    )


def _falling_model() -> GNS:
    """A model that predicts free fall: one particle alone gets exactly the body acceleration."""
    return physnet.models.build_simulator(
        "gns",
        bounds=BOUNDS,
        latent_size=8,
        hidden_size=8,
        n_message_passing=1,
        decoder="pairwise",
        body_acceleration=[0.0, -0.01],
        walls="none",
    ).eval()


def test_penetration_counts_particles_that_fall_through_the_floor() -> None:
    """A particle at rest on the floor under a free-fall model: every one-step prediction lands
    0.01 below the floor, and the rollout carries it out for good, deeper every frame."""
    model = _falling_model()
    frames = torch.tensor([[[0.5, 0.0]]]).expand(9, 1, 2)  # [T, n, dim] at rest on the floor
    ptype = torch.zeros(1, dtype=torch.long)
    one = one_step_penetration(model, frames, ptype, tolerance=5e-3)
    assert one["count"].tolist() == [0, 9 - model.window, 0, 0] and one["truth"] == 0
    assert float(one["deepest"][1]) == pytest.approx(0.01)
    depth, cells = wall_penetration(model, frames, ptype, tolerance=5e-3)
    assert depth.shape == (3, 1, 4)
    torch.testing.assert_close(depth[:, 0, 1], torch.tensor([0.01, 0.03, 0.06]), rtol=1e-5, atol=0)
    assert cells[1] == {"particles": 1, "frames": 3, "stays": 1, "longest": 3, "deepest": pytest.approx(0.06)}
    assert all(c["particles"] == 0 for k, c in enumerate(cells) if k != 1)


def test_loss_breakdown_shares() -> None:
    """Shares lie in [0, 1], the top 1 % is part of the top 10 %, and a model that predicts the
    mean acceleration scores exactly the mean-prediction loss."""
    data = load_trajectories(FIXTURE)
    model = physnet.models.build_simulator(
        "gns", bounds=data.bounds.tolist(), latent_size=8, hidden_size=8, n_message_passing=1
    )
    model.fit_statistics(data.positions)
    torch.nn.init.zeros_(model.decoder.mlp[-1].weight)
    torch.nn.init.zeros_(model.decoder.mlp[-1].bias)
    r = loss_breakdown(model, data, stride=40)
    assert r["samples"] > 0 and r["loss"] == pytest.approx(r["mean_prediction_loss"], rel=1e-6)
    assert 0 <= r["top1_loss_share"] <= r["top10_loss_share"] <= 1
    assert 0 <= r["top1_target_share"] <= r["top10_target_share"] <= 1
    assert 0 < r["free_fall_share"] < 1 and 0 <= r["free_fall_loss_share"] <= 1


def test_rollout_data_is_checked_against_the_model() -> None:
    """Another frame step, too few frames, the wrong dimension, a type array of the wrong length or
    an unknown type: one line naming the problem, before any rollout (issue 32)."""
    data = load_trajectories(FIXTURE)
    model = physnet.models.build_simulator(
        "gns", bounds=data.bounds.tolist(), latent_size=8, hidden_size=8, n_message_passing=1, frame_dt=4e-3
    )
    with pytest.raises(ValueError, match=r"0.002 s apart but the model was trained on frames 0.004 s apart"):
        evaluate(model, data, [0], verbose=False)
    model.frame_dt = data.frame_dt
    check_rollout_data(model, data)
    short = Trajectories([data.positions[0][:6]], [data.particle_type[0]], data.bounds, data.frame_dt)
    with pytest.raises(ValueError, match=r"needs \[frames >= 7"):
        evaluate(model, short, verbose=False)
    flat = Trajectories([data.positions[0][..., :1]], [data.particle_type[0]], data.bounds, data.frame_dt)
    with pytest.raises(ValueError, match="needs"):
        check_rollout_data(model, flat)
    wrong = Trajectories([data.positions[0]], [data.particle_type[0][:-1]], data.bounds, data.frame_dt)
    with pytest.raises(ValueError, match="one type per particle"):
        check_rollout_data(model, wrong)
    unknown = Trajectories([data.positions[0]], [data.particle_type[0] + 3], data.bounds, data.frame_dt)
    with pytest.raises(ValueError, match="model knows 0..0"):
        rollout_for_animation(model, unknown, 0)
    with pytest.raises(ValueError, match="out of range"):
        check_rollout_data(model, data, [7])


def test_report_line_names_a_trajectory_without_free_fall() -> None:
    from physnet.train.gns_eval import report_line

    assert "free fall 0.97x the true acceleration" in report_line({"free_fall_ratio": 0.97}, "1.5 mm")
    line = report_line({"free_fall_ratio": float("nan")}, "1.5 mm")
    assert "no free-fall frames" in line and "nan" not in line
