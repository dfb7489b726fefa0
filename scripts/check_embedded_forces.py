"""Check embedded data sets against their own engine: forces vs central finite differences.

For each set, ``--frames`` frames are drawn at random (``numpy.random.default_rng(seed)``);
on each, the engine that made the set (:func:`physnet.data.embedded.calculator`) gives
``-(E(x + h) - E(x - h)) / 2h`` for every Cartesian component (or ``--components`` random
ones), compared with the stored forces. Periodic sets also compare the stored stress with
``(E(ε + h) - E(ε - h)) / (2h V)`` for the 6 symmetric strain components.

Example::

    python scripts/check_embedded_forces.py                   # all sets, 3 frames each
    python scripts/check_embedded_forces.py --sets ethanol_gfn2 --frames 5
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np


def _strained(atoms, eps: np.ndarray):  # -> ase.Atoms
    out = atoms.copy()
    out.calc = atoms.calc
    out.set_cell(atoms.get_cell()[:] @ (np.eye(3) + eps), scale_atoms=True)
    return out


def check_frame(atoms, calc, h: float = 1e-3, components: np.ndarray | None = None) -> dict[str, float]:
    """Finite-difference check of one frame's stored forces (and stress, if periodic).

    Args:
        atoms: a frame with stored results (energy eV, forces [n_atoms, 3] eV/Å, stress Voigt eV/Å^3).
        calc: the engine's ASE calculator.
        h: displacement, Å (and strain step for the stress).
        components: flat indices into forces.ravel() to check (default: all).

    Returns:
        ``force_max_abs_error`` (eV/Å), ``force_max_abs`` (largest |stored component| checked),
        ``energy_abs_error`` (recomputed minus stored, eV) and, for periodic frames,
        ``stress_max_abs_error`` (eV/Å^3).
    """
    stored = atoms.calc.results
    f_ref = np.asarray(stored["forces"]).ravel()  # [3 n_atoms]
    idx = np.arange(f_ref.size) if components is None else np.asarray(components)
    work = atoms.copy()
    work.calc = calc
    e0 = work.get_potential_energy()
    pos0 = work.get_positions()
    fd = np.empty(idx.size)
    for n, c in enumerate(idx):
        i, k = divmod(int(c), 3)
        energies = []
        for sign in (+1, -1):
            p = pos0.copy()
            p[i, k] += sign * h
            work.set_positions(p)
            energies.append(work.get_potential_energy())
        fd[n] = -(energies[0] - energies[1]) / (2 * h)
    work.set_positions(pos0)
    out = {
        "force_max_abs_error": float(np.abs(fd - f_ref[idx]).max()),
        "force_max_abs": float(np.abs(f_ref[idx]).max()),
        "energy_abs_error": float(abs(e0 - float(stored["energy"]))),
    }
    if atoms.pbc.any() and "stress" in stored:
        s_ref = np.asarray(stored["stress"]).reshape(-1)
        if s_ref.size == 9:
            m = s_ref.reshape(3, 3)
            s_ref = np.array([m[0, 0], m[1, 1], m[2, 2], m[1, 2], m[0, 2], m[0, 1]])
        volume = work.get_volume()
        fd_s = np.empty(6)
        for v, (a, b) in enumerate([(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]):
            energies = []
            for sign in (+1, -1):
                eps = np.zeros((3, 3))
                if a == b:
                    eps[a, a] = sign * h
                else:  # symmetric strain ε_ab = ε_ba = h/2, so dE = V σ_ab h
                    eps[a, b] = eps[b, a] = sign * h / 2
                energies.append(_strained(work, eps).get_potential_energy())
            fd_s[v] = (energies[0] - energies[1]) / (2 * h) / volume
        out["stress_max_abs_error"] = float(np.abs(fd_s - s_ref).max())
    return out


def check_set(
    name: str, n_frames: int = 3, h: float = 1e-3, n_components: int | None = None, seed: int = 0
) -> dict[str, Any]:
    """:func:`check_frame` on ``n_frames`` random frames of embedded set ``name``; maxima over frames."""
    from physnet.data import embedded

    if embedded.info(name).get("kind") == "cg_md":  # all-atom OpenMM forces on beads: the generator checks
        import sys
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from generate_alanine_cg import check_forces

        return check_forces(name, n_frames=n_frames, h=h, seed=seed)
    frames = embedded.load(name)
    rng = np.random.default_rng(seed)
    picks = sorted(rng.choice(len(frames), size=min(n_frames, len(frames)), replace=False).tolist())
    results = []
    for k in picks:
        atoms = frames[k]
        comps = None
        if n_components is not None and n_components < 3 * len(atoms):
            comps = np.sort(rng.choice(3 * len(atoms), size=n_components, replace=False))
        results.append(check_frame(atoms, embedded.calculator(name), h=h, components=comps))
    summary: dict[str, Any] = {"name": name, "frames": picks, "h": h}
    for key in results[0]:
        summary[key] = max(r[key] for r in results)
    return summary


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", nargs="*", default=None, help="set names (default: all)")
    p.add_argument("--frames", type=int, default=3, help="frames per set (default 3)")
    p.add_argument("--h", type=float, default=1e-3, help="displacement, Å (default 1e-3)")
    p.add_argument("--components", type=int, default=None, help="random components per frame (default all)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from physnet.data import embedded

    for name in args.sets or embedded.available():
        r = check_set(name, args.frames, args.h, args.components, args.seed)
        extra = (
            f", stress max err {r['stress_max_abs_error']:.2e} eV/Å^3" if "stress_max_abs_error" in r else ""
        )
        print(
            f"{name}: frames {r['frames']}: force max |FD - stored| {r['force_max_abs_error']:.2e} eV/Å"
            + (f" (max |F| {r['force_max_abs']:.2f})" if "force_max_abs" in r else "")
            + (f", |E - stored| {r['energy_abs_error']:.1e} eV" if "energy_abs_error" in r else "")
            + extra,
            flush=True,
        )


if __name__ == "__main__":
    main()
