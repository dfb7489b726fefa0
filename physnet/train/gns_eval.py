"""Evaluation of a GNS learned simulator: one-step and rollout errors, walls, free fall, loss split.

:func:`evaluate` is what ``physnet gns-rollout`` and the end of ``physnet gns-train`` print
and save; :func:`wall_penetration` and :func:`loss_breakdown` are the metrics behind
``scripts/gns_wall_penetration.py`` and ``scripts/gns_loss_breakdown.py``. Positions are
in the data's length unit and time in frames (see :mod:`physnet.models.gns`).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from physnet.data import keys as K
from physnet.data.trajectories import Trajectories, WindowDataset, collate_windows
from physnet.models.gns import GNS
from physnet.models.simulator import RolloutDiverged, check_particle_type, rollout
from physnet.sim.box import escaped_particles, excursion, outside_depth, stays
from physnet.sim.frames import constant_velocity_rollout, is_free_fall, landing_acceleration

__all__ = [
    "check_rollout_data",
    "one_step_errors",
    "free_fall_response",
    "peak_neighbours",
    "selection_score",
    "rollout_errors",
    "evaluate",
    "rollout_for_animation",
    "report_line",
    "wall_penetration",
    "one_step_penetration",
    "loss_breakdown",
]


def check_rollout_data(model: GNS, data: Trajectories, indices: list[int] | None = None) -> None:
    """Raise a one-line ``ValueError`` if ``data`` cannot be rolled out with ``model``.

    Checks the frame step against the one the model was trained on (``model.frame_dt``: its
    accelerations are per frame^2), the trajectories' dimension, length (at least ``C + 1``
    frames) and particle types.
    """
    indices = list(range(len(data))) if indices is None else indices
    if model.frame_dt is not None and not math.isclose(data.frame_dt, model.frame_dt, rel_tol=1e-6):
        raise ValueError(
            f"the data's frames are {data.frame_dt:g} s apart but the model was trained on frames "
            f"{model.frame_dt:g} s apart: roll it out on data of its own frame step"
        )
    for k in indices:
        if not 0 <= k < len(data):
            raise ValueError(f"trajectory index {k} out of range; the data hold {len(data)} trajectories")
        pos = data.positions[k]
        if pos.dim() != 3 or pos.shape[-1] != model.dim or pos.shape[0] < model.window + 1:
            raise ValueError(
                f"trajectory {k} has positions {list(pos.shape)}; the model needs [frames >= "
                f"{model.window + 1}, n, {model.dim}] (a window of {model.window} frames and one to predict)"
            )
        check_particle_type(model, data.particle_type[k], pos.shape[1])


@torch.no_grad()
def one_step_errors(
    model: GNS, positions: torch.Tensor, particle_type: torch.Tensor, chunk: int = 8
) -> tuple[float, float]:
    """One-step position MSE of the model and of the constant-velocity baseline over every window
    of one true trajectory ``positions`` [T, n, dim], ``chunk`` windows per batch."""
    c = model.window
    data = Trajectories([positions], [particle_type], model.bounds.cpu().numpy(), model.frame_dt or 1.0)
    windows = WindowDataset(data, c)
    sq_model, sq_cv, count = 0.0, 0.0, 0
    for start in range(0, len(windows), chunk):
        batch = collate_windows([windows[i] for i in range(start, min(start + chunk, len(windows)))])
        history, truth = batch[K.POS_HISTORY], batch[K.NEXT_POS]
        pred = model.step(batch)
        sq_model += float((pred - truth).double().pow(2).sum())
        sq_cv += float((2 * history[:, -1] - history[:, -2] - truth).double().pow(2).sum())
        count += truth.numel()
    return sq_model / count, sq_cv / count


@torch.no_grad()
def free_fall_response(
    model: GNS, positions: torch.Tensor, particle_type: torch.Tensor, rtol: float = 1e-2
) -> dict[str, float]:
    """How much of a uniform body acceleration (gravity in free flight) the model predicts, from
    the true windows [T, n, dim] of the frames where every particle has the same true
    acceleration to within ``rtol`` (:func:`~physnet.sim.frames.is_free_fall`).

    Returns:
        ``free_fall_frames`` (how many), ``free_fall_ratio`` (mean over those frames and
        particles of ``a_pred . g / |g|^2``: 1 = the body force learnt, 0 = ignored) and
        ``free_fall_rms`` (rms of ``|a_pred - g|`` over ``|g|``); NaN when no frame qualifies.
    """
    c = model.window
    acc = positions[2:] - 2 * positions[1:-1] + positions[:-2]  # [T - 2, n, dim], acc[t - 1] at frame t
    free = is_free_fall(acc.double(), rtol)
    ratios, errors, frames = [], [], 0
    for t in range(c - 1, positions.shape[0] - 1):
        if not free[t - 1]:
            continue
        g = acc[t - 1].double().mean(dim=0)
        size = float(torch.linalg.vector_norm(g))
        window = positions[t - c + 1 : t + 1].transpose(0, 1)  # [n, C, dim]
        pred = model({K.POS_HISTORY: window, K.Z: particle_type}).double()
        ratios.append(float((pred @ g).mean()) / size**2)
        errors.append(float((pred - g).norm(dim=-1).pow(2).mean()) / size**2)
        frames += 1
    nan = float("nan")
    return {
        "free_fall_frames": frames,
        "free_fall_ratio": float(np.mean(ratios)) if ratios else nan,
        "free_fall_rms": math.sqrt(float(np.mean(errors))) if errors else nan,
    }


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def runaway_excursion(model: GNS, box_lengths: float = 10.0) -> float:
    """How far outside the box (length unit) a rollout may carry a particle before it counts as
    diverged: ``box_lengths`` times the longest side of ``model.bounds`` (a runaway grows
    exponentially past any finished rollout's excursion)."""
    return box_lengths * float((model.bounds[:, 1] - model.bounds[:, 0]).max())


def peak_neighbours(model: GNS, positions: torch.Tensor, every: int = 10) -> float:
    """Largest mean number of neighbours per particle within ``model.radius`` over frames ``0,
    every, ...`` of ``positions`` [T, n, dim] (0.0 without frames)."""
    n = positions.shape[1]
    frames = range(0, positions.shape[0], every)
    return max((model.build_edges(positions[t]).shape[1] / n for t in frames), default=0.0)


def selection_score(rollouts: list[dict[str, float]]) -> float:
    """Model-selection key (lower is better) of one validation's ``rollouts`` (:func:`rollout_errors`'
    dicts with ``n_steps``), lexicographic in (diverged rollouts, rollout error): ``n_diverged + f``
    with ``f = m / (1 + m)``, ``m`` the finished rollouts' mean MSE, or if all diverged
    ``f = 1 - mean(stop step / n_steps)`` (a later divergence ranks better)."""
    finished = [r["rollout_mse"] for r in rollouts if r["diverged_at_step"] < 0]
    n_diverged = len(rollouts) - len(finished)
    if finished:
        m = float(np.mean(finished))
        return n_diverged + m / (1.0 + m)
    return n_diverged + 1.0 - float(np.mean([r["diverged_at_step"] / r["n_steps"] for r in rollouts]))


def _rollout(
    model: GNS, positions: torch.Tensor, particle_type: torch.Tensor, clamp: bool, limit: float | None
) -> tuple[torch.Tensor, RolloutDiverged | None]:
    """Roll ``positions`` [T, n, dim] out from its first ``C`` frames with the divergence limits;
    returns the predicted frames [<= T - C, n, dim] and the stop (None: finished)."""
    c = model.window
    try:
        pred = rollout(
            model,
            positions[:c].transpose(0, 1),
            positions.shape[0] - c,
            particle_type,
            clamp_to_bounds=clamp,
            max_mean_neighbours=limit,
            max_excursion=runaway_excursion(model),
        )
    except RolloutDiverged as stop:
        return stop.positions, stop
    return pred, None


@torch.no_grad()
def rollout_errors(
    model: GNS,
    positions: torch.Tensor,
    particle_type: torch.Tensor,
    clamp_to_bounds: bool = False,
    neighbour_factor: float | None = 10.0,
    escape_tolerance: float | None = None,
) -> dict[str, float]:
    """Roll one trajectory [T, n, dim] (model dtype) out from its first ``C`` frames and score it.

    Args:
        clamp_to_bounds: see :func:`~physnet.models.simulator.rollout`.
        neighbour_factor: stop as diverged once the prediction has more than this many times the
            neighbours per particle of the densest true frame (``None``: never).
        escape_tolerance: ``escaped_beyond_tolerance`` counts particles more than this (length
            unit) outside the box; ``None``: ``0.1 * model.radius`` (the MPM truth rests
            particles exactly on the walls).

    Returns:
        ``rollout_mse`` / ``cv_rollout_mse`` (model / constant velocity, length unit^2 over the
        ``T - C`` predicted frames; ``inf`` if diverged), ``max_excursion`` (length unit),
        ``escaped_particles``, ``escaped_beyond_tolerance``, ``diverged_at_step`` (-1: finished),
        ``peak_neighbours`` and ``true_peak_neighbours`` (per particle, predicted / true).
    """
    c = model.window
    window = positions[:c].transpose(0, 1)  # [n, C, dim]
    n_steps = positions.shape[0] - c
    true_peak = peak_neighbours(model, positions)
    limit = None if neighbour_factor is None else neighbour_factor * true_peak
    pred, stop = _rollout(model, positions, particle_type, clamp_to_bounds, limit)
    diverged_at = -1 if stop is None else stop.step
    mse = math.inf if stop is not None else float((pred - positions[c:]).double().pow(2).mean())
    cv = constant_velocity_rollout(window, n_steps)
    bounds = model.bounds.to(positions.dtype)
    tolerance = 0.1 * model.radius if escape_tolerance is None else float(escape_tolerance)
    return {
        "rollout_mse": mse,
        "cv_rollout_mse": float((cv - positions[c:]).double().pow(2).mean()),
        "max_excursion": excursion(pred, bounds),
        "escaped_particles": escaped_particles(pred, bounds),
        "escaped_beyond_tolerance": escaped_particles(pred, bounds, tolerance),
        "diverged_at_step": diverged_at,
        "peak_neighbours": peak_neighbours(model, pred, every=1),
        "true_peak_neighbours": true_peak,
    }


_REDUCE = {  # how evaluate() summarises each per-trajectory list (default: the mean)
    "max_excursion": np.max,
    "peak_neighbours": np.max,
    "true_peak_neighbours": np.max,
    "escaped_particles": np.sum,
    "escaped_beyond_tolerance": np.sum,
    "free_fall_frames": np.sum,
    "free_fall_ratio": _nanmean,
    "free_fall_rms": _nanmean,
}


def report_line(r: dict[str, Any], tolerance: str) -> str:
    """One line of the rollout scores in ``r`` (:func:`rollout_errors`' keys, any subset, or
    ``compression`` for the peak-neighbour ratio); ``tolerance`` names the escape tolerance."""
    parts = []
    if "one_step_mse" in r:
        parts.append(f"one-step MSE {r['one_step_mse']:.3e} (constant velocity {r['cv_one_step_mse']:.3e})")
    if "rollout_mse" in r:
        ratio = r["cv_rollout_mse"] / max(r["rollout_mse"], 1e-300)
        parts.append(
            f"rollout MSE {r['rollout_mse']:.3e} (constant velocity {r['cv_rollout_mse']:.3e} = "
            f"{ratio:.1f}x the model's)"
        )
    if "max_excursion" in r:
        parts.append(f"max excursion outside the domain {r['max_excursion']:.3e}")
    if "escaped_particles" in r:
        parts.append(
            f"{r['escaped_particles']:.0f} particles left the domain ({r['escaped_beyond_tolerance']:.0f} "
            f"by more than {tolerance})"
        )
    if "free_fall_ratio" in r:
        if np.isfinite(r["free_fall_ratio"]):
            parts.append(f"free fall {r['free_fall_ratio']:.2f}x the true acceleration")
        else:
            parts.append("no free-fall frames")
    if "compression" in r:
        parts.append(f"peak neighbours per particle {r['compression']:.1f}x the truth's")
    elif "peak_neighbours" in r:
        parts.append(
            f"neighbours per particle up to {r['peak_neighbours']:.1f} "
            f"(truth {r['true_peak_neighbours']:.1f})"
        )
    return "; ".join(parts)


@torch.no_grad()
def evaluate(
    model: GNS,
    data: Trajectories,
    indices: list[int] | None = None,
    verbose: bool = True,
    clamp_to_bounds: bool = False,
    neighbour_factor: float | None = 10.0,
    escape_tolerance: float | None = None,
) -> dict[str, Any]:
    """:func:`one_step_errors`, :func:`rollout_errors` (with the options of the same names) and
    :func:`free_fall_response` of the trajectories ``indices`` (default: all).

    Returns:
        ``trajectories``, ``clamp_to_bounds``, ``escape_tolerance``, per-trajectory lists of
        those functions' keys and each ``mean_<key>`` (the mean; the largest for
        ``max_excursion`` and ``*peak_neighbours``, the total for counts, the mean over the
        trajectories with free-fall frames for the free-fall ratios);
        ``rollout_mse_ratio_cv_over_model``.
    """
    model = model.eval()
    dtype = next(model.parameters()).dtype
    indices = list(range(len(data))) if indices is None else indices
    check_rollout_data(model, data, indices)
    tolerance = 0.1 * model.radius if escape_tolerance is None else float(escape_tolerance)
    rows: dict[str, list[Any]] = {}
    for k in indices:
        pos, ptype = data.positions[k].to(dtype), data.particle_type[k]
        one, one_cv = one_step_errors(model, pos, ptype)
        start = time.perf_counter()
        r = {"one_step_mse": one, "cv_one_step_mse": one_cv}
        r.update(rollout_errors(model, pos, ptype, clamp_to_bounds, neighbour_factor, escape_tolerance))
        seconds = time.perf_counter() - start
        r.update(free_fall_response(model, pos, ptype))
        for key, value in r.items():
            rows.setdefault(key, []).append(value)
        if verbose:
            steps = pos.shape[0] - model.window
            stop = f"; DIVERGED before frame {r['diverged_at_step']}" if r["diverged_at_step"] >= 0 else ""
            head = f"trajectory {k}: {pos.shape[1]} particles, {steps} rollout steps ({seconds:.1f} s): "
            print(head + report_line(r, f"{tolerance:.2e}") + stop, flush=True)
    diverged = [int(d) for d in rows.pop("diverged_at_step")]
    summary: dict[str, Any] = {
        "trajectories": indices,
        "clamp_to_bounds": clamp_to_bounds,
        "escape_tolerance": tolerance,
        **rows,
        "diverged_at_step": diverged,
    }
    for key, value in rows.items():
        summary[f"mean_{key}"] = float(_REDUCE.get(key, np.mean)(value))
    summary["rollout_mse_ratio_cv_over_model"] = summary["mean_cv_rollout_mse"] / max(
        summary["mean_rollout_mse"], 1e-300
    )
    if verbose:
        n_diverged = sum(d >= 0 for d in diverged)
        means = {k[5:]: v for k, v in summary.items() if k.startswith("mean_")}
        line = f"mean over {len(indices)} trajectories: " + report_line(means, f"{tolerance:.2e}")
        print(line + (f"; {n_diverged} rollout(s) diverged" if n_diverged else ""), flush=True)
    return summary


def rollout_for_animation(
    model: GNS,
    data: Trajectories,
    index: int,
    clamp_to_bounds: bool = False,
    neighbour_factor: float | None = 10.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted and true positions [n_frames, n, dim] of trajectory ``index`` (first ``C`` frames shared).

    A rollout that diverges (see :func:`rollout_errors`) is animated up to the frame where
    it stopped: both arrays then end there.
    """
    check_rollout_data(model, data, [index])
    dtype = next(model.parameters()).dtype
    pos = data.positions[index].to(dtype)
    c = model.window
    limit = None if neighbour_factor is None else neighbour_factor * peak_neighbours(model, pos)
    pred, stop = _rollout(model, pos, data.particle_type[index], clamp_to_bounds, limit)
    if stop is not None:
        print(f"trajectory {index}: {stop}; animating the {stop.step} frames before it", flush=True)
    return torch.cat([pos[:c], pred]), pos[: c + pred.shape[0]]


# --------------------------------------------------------------------------- walls and loss


@torch.no_grad()
def wall_penetration(
    model: GNS, positions: torch.Tensor, particle_type: torch.Tensor, tolerance: float = 1.5e-3
) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Where a rollout's particles leave the box: per wall, how many, how long and how deep.

    Rolls ``positions`` [T, n, dim] out from its first ``C`` frames (no divergence limit).

    Returns:
        the depth behind each wall [T - C, n, 2 dim] (length unit, 0 inside) and per wall
        (:func:`wall_distances`' order) :func:`stays` of the particles more than ``tolerance``
        behind it, with ``deepest`` (length unit) added.
    """
    check_particle_type(model, particle_type, positions.shape[1])
    c = model.window
    pred = rollout(model, positions[:c].transpose(0, 1), positions.shape[0] - c, particle_type)
    depth = outside_depth(pred, model.bounds)  # [T - C, n, 2 dim]
    walls = depth.unbind(-1)  # per wall [T - C, n]
    return depth, [{**stays(d > tolerance), "deepest": float(d.max())} for d in walls]


@torch.no_grad()
def one_step_penetration(
    model: GNS, positions: torch.Tensor, particle_type: torch.Tensor, tolerance: float = 1.5e-3
) -> dict[str, Any]:
    """One-step predictions from the true windows that land behind a wall.

    Returns:
        ``count`` [2 dim] particle-frames more than ``tolerance`` behind each wall,
        ``deepest`` [2 dim] (length unit) and ``truth``: the true frames' particle-frames
        more than ``tolerance`` outside.
    """
    check_particle_type(model, particle_type, positions.shape[1])
    c = model.window
    pred = torch.stack(
        [
            model.step({K.POS_HISTORY: positions[t - c : t].transpose(0, 1), K.Z: particle_type})
            for t in range(c, len(positions))
        ]
    )
    depth = outside_depth(pred, model.bounds)  # [T - C, n, 2 dim]
    truth = int((outside_depth(positions[c:], model.bounds).amax(-1) > tolerance).sum())
    return {"count": (depth > tolerance).sum(dim=(0, 1)), "deepest": depth.amax(dim=(0, 1)), "truth": truth}


@torch.no_grad()
def loss_breakdown(model: GNS, data: Trajectories, stride: int = 3, rtol: float = 1e-2) -> dict[str, float]:
    """Which particles the one-step loss comes from, on true (noise-free) input windows.

    The loss is the squared error of the normalised acceleration, summed over components.

    Returns:
        ``samples`` (particle-frames), ``loss`` (its mean), ``mean_prediction_loss`` (what
        predicting ``acc_mean`` would score), ``top1_loss_share`` / ``top10_loss_share`` (the
        share of the loss carried by the 1 % / 10 % of particle-frames with the largest true
        normalised acceleration) with ``top1_target_share`` / ``top10_target_share`` (their
        share of the target's second moment), ``free_fall_share`` (particle-frames in
        free-fall frames, :func:`is_free_fall`) and ``free_fall_loss_share``.
    """
    check_rollout_data(model, data)
    c = model.window
    errors, targets, free = [], [], []
    for pos, ptype in zip(data.positions, data.particle_type, strict=True):
        pos = pos.to(model.acc_std.dtype)
        for t in range(c - 1, pos.shape[0] - 1, stride):
            window = pos[t - c + 1 : t + 1].transpose(0, 1)  # [n, C, dim]
            acc = landing_acceleration(window, pos[t + 1])  # [n, dim] true acceleration at frame t
            pred = model({K.POS_HISTORY: window, K.Z: ptype})
            errors.append(((pred - acc) / model.acc_std).pow(2).sum(-1).double())
            targets.append(((acc - model.acc_mean) / model.acc_std).pow(2).sum(-1).double())
            free.append(torch.full_like(errors[-1], float(is_free_fall(acc[None], rtol)[0])).bool())
    e, y, f = torch.cat(errors), torch.cat(targets), torch.cat(free)
    out = {"samples": float(e.numel()), "loss": float(e.mean()), "mean_prediction_loss": float(y.mean())}
    for name, q in (("top1", 0.99), ("top10", 0.9)):
        top = y >= torch.quantile(y, q)
        out[f"{name}_loss_share"] = float(e[top].sum() / e.sum())
        out[f"{name}_target_share"] = float(y[top].sum() / y.sum())
    out["free_fall_share"] = float(f.double().mean())
    out["free_fall_loss_share"] = float(e[f].sum() / e.sum())
    return out
