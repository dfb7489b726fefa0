"""CGnet on alanine dipeptide: priors by Boltzmann inversion, force matching, held-out losses.

Reads a 5-bead alanine dipeptide CG data set (beads C(ACE) N CA C N(NME), 300 K):
by default the embedded set ``ala2_cg_amber`` (OpenMM amber14 + OBC2 implicit solvent,
5,000 frames, stored in eV and Å and converted here to kcal/mol and Å), or, with
``--data-dir DIR``, the pair ``ala2_cg_coordinates.npy`` (Å) / ``ala2_cg_forces.npy``
(kcal/mol/Å) in DIR (e.g. the CGnet paper's explicit-solvent subset). It splits the
frames 80/20 by time-contiguous blocks (10 equal blocks; blocks 4 and 9 are held
out), fits the harmonic bond / angle priors, the bead repulsion and (unless
``--no-dihedral-prior``) a Fourier dihedral prior (Boltzmann inversion of the φ and ψ
marginals) on the training frames, then trains two CGnets by force matching
(Wang et al., ACS Cent. Sci. 5, 755 (2019)): one on top of the prior, one alone.
Block 2 of the training part is the validation set of early stopping (the weights
with the lowest validation loss are kept); ``--lipschitz`` applies the paper's
Lipschitz projection of the weights after each step. The held-out frames are used
only for the final figures.

It prints the held-out force-matching loss  L = mean over frames and beads of
|F_model - F_mapped|^2  in (kcal/mol/Å)^2 for: prior only, network only, prior +
network (and, for scale, a model predicting zero force). The instantaneous mapped
forces are noisy, so L has a large floor that no model can go below (the mean
force is what is learnt); differences between models are what matters.

Usage::

    python examples/cgnet_ala2.py --minutes 2 --output cgnet_ala2.pt
    python examples/cgnet_ala2.py --data-dir DIR --minutes 2   # a folder with the .npy pair
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch

import physnet
import physnet.models.cgnet  # noqa: F401  (registers "cgnet")
from physnet.data import keys as K
from physnet.models.cgnet import lipschitz_projection
from physnet.nn.cg_geometry import bead_graph
from physnet.nn.priors import fit_cg_priors

Z = torch.tensor([6, 7, 6, 6, 7])  # C(ACE) N CA C N(NME)
TEMPERATURE = 300.0  # K


def load(data: str = "ala2_cg_amber", data_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Bead positions [n_frames, 5, 3] in Å, mapped forces [n_frames, 5, 3] in kcal/mol/Å, and a label.

    With ``data_dir``, reads ``ala2_cg_coordinates.npy`` (Å) and ``ala2_cg_forces.npy``
    (kcal/mol/Å) there. Otherwise reads the embedded set ``data`` and converts its forces
    from the units its sidecar json declares (``ala2_cg_amber``: eV/Å) to kcal/mol/Å.
    """
    if data_dir is not None:
        pos_file, force_file = data_dir / "ala2_cg_coordinates.npy", data_dir / "ala2_cg_forces.npy"
        if not pos_file.is_file() or not force_file.is_file():
            raise SystemExit(
                f"ala2_cg_coordinates.npy / ala2_cg_forces.npy not found in {data_dir}; "
                "give the folder that holds them, or leave out --data-dir to use the embedded set"
            )
        positions, forces = np.load(pos_file), np.load(force_file)
        label = f"{data_dir}/ala2_cg_*.npy"
    else:
        from physnet.data import embedded
        from physnet.units import energy_factor, length_factor

        try:
            meta = embedded.info(data)
        except embedded.UnknownDataSetError as err:
            raise SystemExit(f"--data: {err}") from None
        units = meta["units"]
        to_angstrom = length_factor(units["length"])
        to_kcal_per_angstrom = energy_factor(units["energy"]) / energy_factor("kcal/mol") / to_angstrom
        frames = embedded.load(data)
        if any(list(a.numbers) != Z.tolist() for a in frames):
            raise SystemExit(f"--data {data}: the beads are not C(ACE) N CA C N(NME) (elements C N C C N)")
        positions = np.stack([a.positions for a in frames]) * to_angstrom
        forces = np.stack([a.get_forces() for a in frames]) * to_kcal_per_angstrom
        label = f"{data} ({units['energy']}, {units['length']} -> kcal/mol, Å)"
    if positions.ndim != 3 or positions.shape[1:] != (5, 3) or forces.shape != positions.shape:
        raise SystemExit(
            f"expected positions and forces of shape [n_frames, 5, 3] (beads C(ACE) N CA C N(NME)), "
            f"got {positions.shape} and {forces.shape}"
        )
    return positions, forces, label


def time_blocks(n_frames: int, n_blocks: int = 10) -> list[np.ndarray]:
    """Frame indices of ``n_blocks`` time-contiguous blocks of (nearly) equal length."""
    return np.array_split(np.arange(n_frames), n_blocks)


def block_split(
    n_frames: int, n_blocks: int = 10, test_blocks: tuple[int, ...] = (4, 9)
) -> tuple[np.ndarray, np.ndarray]:
    """Train / test frame indices from time-contiguous blocks (20 % held out by default)."""
    blocks = time_blocks(n_frames, n_blocks)
    test = np.concatenate([blocks[b] for b in test_blocks])
    train = np.concatenate([blocks[b] for b in range(n_blocks) if b not in test_blocks])
    return train, test


def force_loss(
    potential: physnet.Potential, pos: torch.Tensor, forces: torch.Tensor, chunk: int = 2000
) -> float:
    """mean over frames and beads of |F_model - F_ref|^2, evaluated in chunks (eval mode)."""
    potential.eval()
    total = 0.0
    for start in range(0, pos.shape[0], chunk):
        out = potential(bead_graph(pos[start : start + chunk], Z))
        diff = out[K.FORCES] - forces[start : start + chunk].reshape(-1, 3)
        total += float(diff.pow(2).sum())
    return total / (pos.shape[0] * pos.shape[1])


def train(
    potential: physnet.Potential,
    pos: torch.Tensor,
    forces: torch.Tensor,
    val: tuple[torch.Tensor, torch.Tensor],
    seconds: float,
    batch_size: int,
    lr: float,
    lipschitz: float | None,
    seed: int,
    label: str,
) -> None:
    """Adam on the force-matching loss for ``seconds`` of wall time; lr halves at 50 % and 75 %.

    After each epoch the loss on ``val`` (frames of the training part, never the held-out
    test frames) is measured; the weights with the lowest one are restored at the end.
    """
    best = (float("inf"), copy.deepcopy(potential.state_dict()), 0)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(potential.parameters(), lr=lr)
    start = time.perf_counter()
    step = epoch = 0
    while True:
        elapsed = time.perf_counter() - start
        if elapsed > seconds:
            break
        potential.train()
        for group in opt.param_groups:
            group["lr"] = (
                lr * (0.5 if elapsed > 0.5 * seconds else 1.0) * (0.5 if elapsed > 0.75 * seconds else 1.0)
            )
        for idx in torch.randperm(pos.shape[0], generator=gen).split(batch_size):
            out = potential(bead_graph(pos[idx], Z))
            loss = (out[K.FORCES] - forces[idx].reshape(-1, 3)).pow(2).sum(-1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if lipschitz is not None:
                lipschitz_projection(potential.model, lipschitz)
            step += 1
            if time.perf_counter() - start > seconds:
                break
        epoch += 1
        val_loss = force_loss(potential, *val)
        if val_loss < best[0]:
            best = (val_loss, copy.deepcopy(potential.state_dict()), epoch)
        print(
            f"[{label}] epoch {epoch:3d}  step {step:6d}  {time.perf_counter() - start:6.1f} s  "
            f"last batch loss {float(loss.detach()):8.2f}  validation {val_loss:8.2f}",
            flush=True,
        )
    potential.load_state_dict(best[1])
    print(f"[{label}] restored epoch {best[2]} (validation loss {best[0]:.2f})")


def make_potential(train_pos: torch.Tensor, priors: dict, args: argparse.Namespace) -> physnet.Potential:
    model = physnet.models.build(
        "cgnet", species=["C", "N"], n_beads=5, n_layers=args.layers, width=args.width
    )
    model.fit_statistics([bead_graph(train_pos, Z)])
    return physnet.Potential(model, priors, energy_unit="kcal/mol", length_unit="Å")


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
    parser.add_argument("--minutes", type=float, default=2.0, help="training wall time per model")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--layers", type=int, default=5, help="hidden layers (paper: 5)")
    parser.add_argument("--width", type=int, default=160, help="hidden width (paper: 160)")
    parser.add_argument("--lipschitz", type=float, default=None, help="spectral-norm bound per layer")
    parser.add_argument(
        "--no-dihedral-prior",
        dest="dihedral_prior",
        action="store_false",
        help="leave out the Fourier dihedral prior (the paper's prior: bonds, angles, repulsion only)",
    )
    parser.add_argument(
        "--no-early-stopping",
        dest="early_stopping",
        action="store_false",
        help="train on all 8 training blocks and keep the last weights (validation = held-out)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--output", type=Path, default=Path("cgnet_ala2.pt"), help="prior + network potential"
    )
    parser.add_argument("--output-net-only", type=Path, default=Path("cgnet_ala2_netonly.pt"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    positions, forces, label = load(args.data, args.data_dir)
    print(f"data: {label}, {len(positions)} frames")
    train_idx, test_idx = block_split(len(positions))
    pos = torch.tensor(positions, dtype=torch.float32)
    frc = torch.tensor(forces, dtype=torch.float32)
    tr = (pos[train_idx], frc[train_idx])
    te = (pos[test_idx], frc[test_idx])
    # early-stopping validation: one time block of the training part (block 2 of 10)
    is_val = np.isin(train_idx, time_blocks(len(positions))[2]) & args.early_stopping
    fit = (tr[0][~is_val], tr[1][~is_val])
    va = (tr[0][is_val], tr[1][is_val]) if args.early_stopping else te
    print(
        f"{len(train_idx)} training frames ({int(is_val.sum())} of them, block 2, for early stopping), "
        f"{len(test_idx)} held-out frames (time blocks 4 and 9 of 10)"
    )

    priors = fit_cg_priors(
        tr[0].double(), temperature=TEMPERATURE, energy_unit="kcal/mol", dihedral=args.dihedral_prior
    )
    priors = {name: p.float() for name, p in priors.items()}
    paper_priors = {name: p for name, p in priors.items() if name != "dihedrals"}
    print(
        "bonds  k (kcal/mol/Å^2):",
        np.round(priors["bonds"].k.numpy(), 1),
        " r0 (Å):",
        np.round(priors["bonds"].x0.numpy(), 3),
    )
    print(
        "angles k (kcal/mol/rad^2):",
        np.round(priors["angles"].k.numpy(), 1),
        " θ0 (deg):",
        np.round(np.degrees(priors["angles"].x0.numpy()), 1),
    )
    print("repulsion σ (Å):", np.round(priors["repulsion"].sigma.numpy(), 3))
    if "dihedrals" in priors:
        d = priors["dihedrals"]
        print("dihedral Fourier a_n, b_n (kcal/mol):", np.round(d.a.numpy(), 2), np.round(d.b.numpy(), 2))

    prior_only = make_potential(tr[0], priors, args)
    paper_prior_only = make_potential(tr[0], paper_priors, args)
    for pot in (prior_only, paper_prior_only):
        for p in pot.model.net[-1].parameters():
            torch.nn.init.zeros_(p)

    seconds = args.minutes * 60
    torch.manual_seed(args.seed)
    net_only = make_potential(tr[0], {}, args)
    train(net_only, *fit, va, seconds, args.batch_size, args.lr, args.lipschitz, args.seed, "network only")
    torch.manual_seed(args.seed)
    combined = make_potential(tr[0], priors, args)
    train(combined, *fit, va, seconds, args.batch_size, args.lr, args.lipschitz, args.seed, "prior + network")
    combined.save(args.output)
    net_only.save(args.output_net_only)
    prior_only.save(args.output.with_name(args.output.stem + "_prioronly.pt"))

    zero = float(te[1].pow(2).sum(-1).mean())
    print("\nheld-out force-matching loss, mean over frames and beads of |F_model - F_mapped|^2")
    print("[(kcal/mol/Å)^2]:")
    print(f"  zero force       {zero:9.2f}")
    if "dihedrals" in priors:
        print(f"  prior only (bonds, angles, repulsion)             {force_loss(paper_prior_only, *te):9.2f}")
        print(f"  prior only (bonds, angles, repulsion, dihedrals)  {force_loss(prior_only, *te):9.2f}")
    else:
        print(f"  prior only       {force_loss(prior_only, *te):9.2f}")
    print(f"  network only     {force_loss(net_only, *te):9.2f}")
    print(f"  prior + network  {force_loss(combined, *te):9.2f}")
    print(
        f"saved {args.output} (prior + network), {args.output_net_only} (network only) and "
        f"{args.output.stem}_prioronly.pt (prior only)"
    )


if __name__ == "__main__":
    main()
