"""Pictures of a run: learning curves and parity plots (PNG, matplotlib Agg)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np


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
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return Path(out)


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
    for a in axes.ravel():
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return Path(out)
