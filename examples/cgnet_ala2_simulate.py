"""Langevin simulation of CGnet alanine dipeptide and its φ/ψ free-energy surface.

Loads potentials written by ``examples/cgnet_ala2.py``, runs ``--replicas`` copies in
parallel with BAOAB Langevin dynamics at 300 K (replicas start from training frames
of the data, drawn at random), saves the trajectory, and compares the simulated φ/ψ
free energy F = -kT ln p (kcal/mol; 30 x 30 bins over [-180°, 180°)^2) with the
reference one of the data. The data are those ``examples/cgnet_ala2.py`` reads: the
embedded set ``ala2_cg_amber`` by default (``--data``), or the ``.npy`` pair in
``--data-dir``; give the same data the potentials were trained on. The printed figure
is the mean |ΔF| over bins populated in both, after aligning the two surfaces by their
mean difference over those bins (F is defined up to a constant). The PNG shows
reference and simulation side by side.

Usage::

    python examples/cgnet_ala2.py --minutes 2                       # writes cgnet_ala2*.pt
    python examples/cgnet_ala2_simulate.py --potential cgnet_ala2.pt --replicas 100 --steps 20000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from cgnet_ala2 import load, time_blocks  # examples/cgnet_ala2.py, next to this file

import physnet
import physnet.models.cgnet  # noqa: F401  (registers "cgnet")
from physnet.md.langevin import langevin
from physnet.nn.cg_geometry import dihedrals, distances
from physnet.nn.priors import boltzmann_constant

Z = torch.tensor([6, 7, 6, 6, 7])  # C(ACE) N CA C N(NME)
PHI_PSI = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]])
BONDS = torch.tensor([[0, 1], [1, 2], [2, 3], [3, 4]])
EDGES = np.linspace(-180.0, 180.0, 31)


def phi_psi(pos: np.ndarray | torch.Tensor) -> np.ndarray:
    """[..., 5, 3] positions -> [n, 2] φ, ψ in degrees."""
    pos = torch.as_tensor(pos, dtype=torch.float64).reshape(-1, 5, 3)
    return np.degrees(dihedrals(pos, PHI_PSI).numpy())


def free_energy(angles: np.ndarray, kT: float) -> np.ndarray:
    """F = -kT ln p on the 30 x 30 grid (kcal/mol, min 0); NaN where a bin is empty."""
    hist, _, _ = np.histogram2d(angles[:, 0], angles[:, 1], bins=[EDGES, EDGES], density=True)
    with np.errstate(divide="ignore"):
        f = -kT * np.log(hist)
    f[~np.isfinite(f)] = np.nan
    return f - np.nanmin(f)


def compare(ref: np.ndarray, sim: np.ndarray) -> tuple[float, int]:
    """Mean |ΔF| over bins populated in both, after removing the mean offset; and that bin count."""
    both = np.isfinite(ref) & np.isfinite(sim)
    diff = sim[both] - ref[both]
    return float(np.abs(diff - diff.mean()).mean()), int(both.sum())


def plot(surfaces: dict[str, np.ndarray], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(surfaces), figsize=(4.6 * len(surfaces), 4.0), constrained_layout=True)
    vmax = max(float(np.nanmax(f)) for f in surfaces.values())
    for ax, (label, f) in zip(np.atleast_1d(axes), surfaces.items(), strict=True):
        im = ax.pcolormesh(EDGES, EDGES, f.T, vmin=0, vmax=vmax, cmap="viridis")
        ax.set_title(label)
        ax.set_xlabel("φ (deg)")
        ax.set_ylabel("ψ (deg)")
        ax.set_aspect("equal")
    fig.colorbar(im, ax=axes, label="F (kcal/mol)")
    fig.suptitle(title)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data", default="ala2_cg_amber", help="embedded 5-bead CG set (default: %(default)s)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="read ala2_cg_coordinates.npy (Å) and ala2_cg_forces.npy (kcal/mol/Å) here instead",
    )
    parser.add_argument("--potential", type=Path, action="append", help="potential file(s); repeatable")
    parser.add_argument("--label", action="append", help="plot label of each potential (default: file name)")
    parser.add_argument("--replicas", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--dt", type=float, default=0.002, help="ps")
    parser.add_argument("--friction", type=float, default=1.0, help="1/ps")
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    parser.add_argument("--save-every", type=int, default=50)
    parser.add_argument("--burn-in", type=int, default=2, help="saved frames dropped at the start")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--png", type=Path, default=Path("cgnet_ala2_fes.png"), help="picture to write")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    potentials = args.potential or [Path("cgnet_ala2.pt")]

    data, _, data_label = load(args.data, args.data_dir)
    print(f"data: {data_label}, {len(data)} frames")
    kT = boltzmann_constant("kcal/mol") * args.temperature
    ref = free_energy(phi_psi(data), kT)
    rng = np.random.default_rng(args.seed)
    blocks = time_blocks(len(data))
    train = np.concatenate([blocks[b] for b in range(len(blocks)) if b not in (4, 9)])
    if args.replicas > len(train):
        raise SystemExit(f"--replicas {args.replicas} is more than the {len(train)} training frames")
    start = torch.tensor(data[rng.choice(train, size=args.replicas, replace=False)], device=args.device)
    r0 = distances(torch.tensor(data[blocks[0]], dtype=torch.float64), BONDS).max().item()

    surfaces = {f"reference ({len(data):,} frames)": ref}
    summary = []
    labels = args.label or [p.stem for p in potentials]
    if len(labels) != len(potentials):
        raise SystemExit("give one --label per --potential")
    for path, label in zip(potentials, labels, strict=True):
        pot = physnet.Potential.load(path).to(args.device)
        t0 = time.perf_counter()
        try:
            traj = langevin(
                pot,
                start.to(next(pot.parameters()).dtype),
                Z,
                n_steps=args.steps,
                dt=args.dt,
                temperature=args.temperature,
                friction=args.friction,
                save_every=args.save_every,
                seed=args.seed,
                output=path.with_suffix(".traj.npy"),
            )
        except FloatingPointError as err:
            summary.append(f"{label}: blew up ({err})")
            continue
        wall = time.perf_counter() - t0
        frames = traj[args.burn_in :]
        bonds = distances(frames.reshape(-1, 5, 3).double(), BONDS)
        broken = int((bonds > 2.0 * r0).any(-1).sum())
        sim = free_energy(phi_psi(frames), kT)
        mad, n_bins = compare(ref, sim)
        surfaces[f"{label} ({args.replicas} x {args.steps * args.dt:.0f} ps)"] = sim
        summary.append(
            f"{label}: {args.replicas} replicas x {args.steps} steps of {args.dt * 1e3:.1f} fs "
            f"({wall:.0f} s, {wall / args.steps * 1e3:.2f} ms/step); "
            f"longest bond {float(bonds.max()):.2f} Å, "
            f"frames with a bond > {2 * r0:.2f} Å: {broken}/{frames.shape[0] * frames.shape[1]}; "
            f"mean |ΔF| = {mad:.3f} kcal/mol over {n_bins} bins populated in both"
        )
    plot(surfaces, args.png, f"alanine dipeptide φ/ψ free energy, {args.temperature:.0f} K")
    print("\n".join(summary))
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
