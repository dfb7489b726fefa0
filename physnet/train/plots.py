"""Pictures of a run: learning curves and parity plots (PNG), rollout animations (GIF); matplotlib Agg."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(
    log_dir: str | os.PathLike, out: str | os.PathLike, energy_unit: str = "", length_unit: str = ""
) -> Path | None:
    """Loss and MAEs per epoch from Lightning's CSV logs in ``log_dir`` (``metrics_part*.csv`` of
    earlier, resumed parts first, then ``metrics.csv``); returns the PNG path, or None without logs."""
    log_dir = Path(log_dir)
    files = sorted(log_dir.glob("metrics_part*.csv")) + [log_dir / "metrics.csv"]
    rows = []
    for path in files:
        if path.is_file():
            with path.open() as fh:
                rows.extend(csv.DictReader(fh))
    if not rows:
        return None

    def series(key: str) -> tuple[np.ndarray, np.ndarray]:
        pts = [(float(r["epoch"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
        return (
            (np.array([p[0] for p in pts]), np.array([p[1] for p in pts]))
            if pts
            else (np.array([]), np.array([]))
        )

    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for key, label in (("train/loss_epoch", "train"), ("val/loss", "val")):
        x, y = series(key)
        if len(x):
            axes[0].plot(x, y, label=label)
    axes[0].set(yscale="log", xlabel="epoch", ylabel="loss", title="loss")
    for ax, name, unit in (
        (axes[1], "energy", energy_unit),
        (axes[2], "forces", f"{energy_unit}/{length_unit}"),
    ):
        for stage in ("train", "val"):
            x, y = series(f"{stage}/{name}_mae")
            if len(x):
                ax.plot(x, y, label=stage)
        ax.set(yscale="log", xlabel="epoch", ylabel=f"MAE ({unit})", title=f"{name} MAE")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    return _save_figure(fig, axes, out)


def _save_figure(fig: Any, axes: Any, out: str | os.PathLike) -> Path:
    """Grid every axis, lay the figure out, write it to ``out`` (110 dpi) and close it."""
    import matplotlib.pyplot as plt

    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return Path(out)


def plot_test_curves(
    curves: dict[str, list[dict[str, Any]]], out: str | os.PathLike, title: str = "", unit: str = "kcal/mol/Å"
) -> Path:
    """Test force MAE against training wall-clock minutes and against epochs, one line per run.

    Args:
        curves: run name -> its snapshots, each a dict with ``minutes`` (training wall clock at
            the snapshot), ``forces_mae`` (test force MAE, ``unit``) and optionally ``epoch``
            (epochs done); snapshots without ``forces_mae`` are skipped.
        out: the PNG path.
        title: the figure's title.
        unit: the force unit for the y label.

    Returns the PNG path. The y axes are logarithmic.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, snaps in curves.items():
        pts = [s for s in snaps if s.get("forces_mae") is not None]
        if not pts:
            continue
        (line,) = axes[0].plot([s["minutes"] for s in pts], [s["forces_mae"] for s in pts], "o-", label=name)
        ep = [s for s in pts if s.get("epoch") is not None]
        if ep:
            axes[1].plot(
                [s["epoch"] for s in ep],
                [s["forces_mae"] for s in ep],
                "o-",
                color=line.get_color(),
                label=name,
            )
    axes[0].set_xlabel("training wall clock (minutes)")
    axes[1].set_xlabel("epochs")
    axes[1].set_xscale("log")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_ylabel(f"test force MAE ({unit})")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_parity(
    pred: dict[str, np.ndarray],
    out: str | os.PathLike,
    energy_unit: str = "",
    length_unit: str = "",
    title: str = "",
) -> Path:
    """Predicted vs reference energy (per atom, mean removed) and force components, MAE in the titles."""
    plt = _plt()
    has_energy, has_forces = "energy" in pred, "forces" in pred
    n_panels = int(has_energy) + int(has_forces)
    if n_panels == 0:
        raise ValueError("nothing to plot: the predictions have neither reference energies nor forces")
    fig, axes = plt.subplots(1, n_panels, figsize=(5 * n_panels, 4.6), squeeze=False)
    panels = iter(axes.ravel())
    if has_energy:
        e_ref, e_pred = pred["energy"], pred["energy_pred"]
        offset = e_ref.mean()
        mae = np.abs(e_pred - e_ref).mean()
        ax = next(panels)
        ax.scatter(e_ref - offset, e_pred - offset, s=6, alpha=0.6)
        lim = [
            min((e_ref - offset).min(), (e_pred - offset).min()),
            max((e_ref - offset).max(), (e_pred - offset).max()),
        ]
        ax.plot(lim, lim, "k--", lw=1)
        ax.set(
            xlabel=f"reference E - {offset:.6g} ({energy_unit})",
            ylabel=f"predicted ({energy_unit})",
            title=f"{title} energy: MAE {mae:.3g} {energy_unit}",
        )
    if has_forces:
        f_ref, f_pred = pred["forces"].ravel(), pred["forces_pred"].ravel()
        fmae = np.abs(f_pred - f_ref).mean()
        ax = next(panels)
        ax.scatter(f_ref, f_pred, s=2, alpha=0.3)
        lim = [min(f_ref.min(), f_pred.min()), max(f_ref.max(), f_pred.max())]
        ax.plot(lim, lim, "k--", lw=1)
        unit = f"{energy_unit}/{length_unit}"
        ax.set(
            xlabel=f"reference F ({unit})",
            ylabel=f"predicted F ({unit})",
            title=f"{title} forces: MAE {fmae:.3g} {unit}",
        )
    return _save_figure(fig, axes.ravel(), out)


def animate_rollout(
    predicted: np.ndarray | torch.Tensor,
    truth: np.ndarray | torch.Tensor,
    bounds: np.ndarray | torch.Tensor,
    path: str | os.PathLike,
    frame_dt: float = 1.0,
    every: int = 2,
    fps: int = 25,
    title: str = "",
) -> Path:
    """GIF of a 2D rollout: ground truth (left) and prediction (right), side by side.

    Args:
        predicted: [n_frames, n, 2] positions.
        truth: [n_frames, n, 2] positions of the same frames.
        bounds: [2, 2] domain, drawn as a box.
        path: output ``.gif`` (written with matplotlib's PillowWriter).
        frame_dt: seconds per frame, for the clock in the title.
        every: draw every ``every``-th frame.
        fps: frames per second of the GIF.
    """
    plt = _plt()
    from matplotlib.animation import FuncAnimation, PillowWriter

    pred = np.asarray(predicted, dtype=float)
    true = np.asarray(truth, dtype=float)
    box = np.asarray(bounds, dtype=float)
    if pred.shape != true.shape or pred.shape[-1] != 2:
        raise ValueError(f"need two [frames, n, 2] arrays of one shape, got {pred.shape} and {true.shape}")
    frames = list(range(0, pred.shape[0], every))
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.3))
    pad = 0.02 * float(box[0, 1] - box[0, 0])
    scatters = []
    for ax, label, data in zip(axes, ("ground truth (MPM)", "GNS rollout"), (true, pred), strict=True):
        ax.add_patch(
            plt.Rectangle(box[:, 0], *(box[:, 1] - box[:, 0]), fill=False, edgecolor="k", linewidth=1)
        )
        ax.set_xlim(box[0, 0] - pad, box[0, 1] + pad)
        ax.set_ylim(box[1, 0] - pad, box[1, 1] + pad)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(label)
        scatters.append(
            ax.scatter(data[0, :, 0], data[0, :, 1], s=4, c="tab:blue" if "truth" in label else "tab:orange")
        )
    suptitle = fig.suptitle("")

    def update(f: int) -> list[Any]:
        for sc, data in zip(scatters, (true, pred), strict=True):
            sc.set_offsets(data[f])
        suptitle.set_text(f"{title}  frame {f}  t = {f * frame_dt:.3f} s".strip())
        return [*scatters, suptitle]

    anim = FuncAnimation(fig, update, frames=frames, blit=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    anim.save(path, writer=PillowWriter(fps=fps))
    plt.close(fig)
    return path
