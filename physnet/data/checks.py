"""Checks of data and structures where they enter: non-finite labels, implausible units and
unphysical geometry.

- :func:`nonfinite` finds frames whose positions, energy, forces or stress are not finite;
  :func:`check_finite` refuses them with the frame index (or drops them, with a count).
- :func:`plausibility` looks, once per data set and cheaply (at most ``max_frames`` frames),
  at numbers that give away a wrong unit: the total energy per frame against the all-electron
  energy of the frame's free atoms, the RMS force, and the nearest-neighbour distances. It
  returns warnings that quote the numbers.
- :func:`close_pairs` finds atoms closer than a fraction of the sum of their covalent radii
  (coincident atoms, H-H at 0.1 Å).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms

from physnet.errors import UserError

__all__ = [
    "nonfinite",
    "check_finite",
    "plausibility",
    "close_pairs",
    "nearest_neighbour_distances",
    "finite_difference_errors",
]

# Thomas-Fermi energy of a neutral atom, -0.7687 Z^(7/3) Hartree = -20.92 Z^(7/3) eV, is within
# ~50 % of the true all-electron energies (H: 20.9 vs 13.6 eV, C: 1380 vs 1030 eV, O: 2680 vs
# 2040 eV); no electronic-structure method gives a bound molecule more than 1.5x that below 0.
_THOMAS_FERMI_EV = 20.92
# RMS force components of MD and relaxation data lie well below this in eV/Å (MD17 ethanol at
# 500 K: 1.2 eV/Å); the same data in kcal/mol/Å read as eV/Å gives 27.
_MAX_FORCE_RMS_EV_A = 10.0
# median nearest-neighbour distance of condensed matter and molecules in Å (H2: 0.74,
# bulk metals 2.2-3.0, ionic solids up to ~3.5; Bohr read as Å makes them 1.9x longer)
_NN_RANGE_A = (0.5, 4.0)
_NN_H_MAX_A = 1.6  # an H atom's nearest neighbour (H-X bonds 0.74-1.5 Å; 1.4-2.8 Bohr)
_NN_H_MIN_A = 0.65  # ... and its lower bound (Å read as Bohr makes a C-H bond 0.58 Å)


def nonfinite(frames: Sequence[Atoms]) -> list[tuple[int, str]]:
    """``(frame index, what)`` for every frame with a non-finite position, energy, force or
    stress, e.g. ``(17, "energy nan")``."""
    bad = []
    for k, atoms in enumerate(frames):
        pos = atoms.positions
        if not np.isfinite(pos).all():
            atom = int(np.flatnonzero(~np.isfinite(pos).all(axis=1))[0])
            bad.append((k, f"position of atom {atom} {pos[atom].tolist()}"))
            continue
        results = getattr(atoms.calc, "results", None) or {}
        for key in ("energy", "forces", "stress"):
            value = results.get(key)
            if value is None:
                continue
            arr = np.asarray(value, dtype=float)
            if not np.isfinite(arr).all():
                if key == "forces" and arr.ndim == 2:
                    atom = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
                    bad.append((k, f"force on atom {atom} {arr[atom].tolist()}"))
                else:
                    bad.append((k, f"{key} {arr.reshape(-1)[~np.isfinite(arr.reshape(-1))][0]}"))
                break
    return bad


def check_finite(frames: Sequence[Atoms], source: str = "", drop: bool = False) -> list[Atoms]:
    """``frames`` if all are finite; else ``UserError`` naming the first bad frame, or, with
    ``drop``, the finite frames and a printed count of the dropped ones."""
    frames = list(frames)
    bad = nonfinite(frames)
    if not bad:
        return frames
    where = f"{source}: " if source else ""
    k, what = bad[0]
    if not drop:
        raise UserError(
            f"{where}frame {k} has a non-finite {what} ({len(bad)} of {len(frames)} frame(s) are "
            "non-finite); fix or remove them, or drop them with data.drop_nonfinite=true"
        )
    keep = sorted(set(range(len(frames))) - {b[0] for b in bad})
    if not keep:
        raise UserError(f"{where}all {len(frames)} frames are non-finite (frame {k}: {what})")
    shown = ", ".join(str(b[0]) for b in bad[:10]) + (" ..." if len(bad) > 10 else "")
    print(
        f"data: dropped {len(bad)} of {len(frames)} frames with non-finite values "
        f"(frames {shown}; first: frame {k} {what})",
        flush=True,
    )
    return [frames[i] for i in keep]


def nearest_neighbour_distances(atoms: Atoms) -> np.ndarray:
    """[n_atoms] distance of each atom to its nearest other atom (nearest periodic image);
    ``inf`` for an atom alone."""
    from physnet.md.guard import nearest_distances

    nearest = nearest_distances(atoms)
    if nearest is not None:
        return nearest
    from ase.neighborlist import neighbor_list

    # any other cell: a neighbour list out to a radius that grows until every atom has one
    radius = 3.0 * max(1.0, float(np.abs(atoms.cell.lengths()).max()) / max(len(atoms), 1) ** (1 / 3))
    for _ in range(6):
        i, j, d = neighbor_list("ijd", atoms, radius, self_interaction=False)
        out = np.full(len(atoms), np.inf)
        np.minimum.at(out, i, d)
        if np.isfinite(out).all():
            break
        radius *= 2.0
    return out


def close_pairs(
    atoms: Atoms, factor: float = 0.4, length_factor: float = 1.0
) -> list[tuple[int, int, float]]:
    """Pairs ``(i, j, distance)`` closer than ``factor`` times the sum of their covalent radii,
    closest first.

    Args:
        atoms: the structure; positions in Å times ``length_factor`` (e.g. 0.529 for Bohr).
        factor: fraction of the sum of covalent radii (0.4: H-H below 0.25 Å, C-C below 0.61 Å).
        length_factor: Å per length unit of ``atoms``.
    """
    from ase.data import covalent_radii
    from ase.neighborlist import neighbor_list

    if len(atoms) < 2:
        return []
    z = atoms.numbers
    radii = covalent_radii[np.clip(z, 0, len(covalent_radii) - 1)]
    reach = 2.0 * factor * float(radii.max()) / length_factor
    i, j, d = neighbor_list("ijd", atoms, reach, self_interaction=False)
    keep = (i < j) & (d * length_factor < factor * (radii[i] + radii[j]))
    order = np.argsort(d[keep])
    pairs = zip(i[keep][order], j[keep][order], d[keep][order], strict=True)
    return [(int(a), int(b), float(c)) for a, b, c in pairs]


def _label_warnings(
    frames: Sequence[Atoms],
    picks: np.ndarray,
    sample: list[Atoms],
    energy_unit: str,
    length_unit: str,
    e_fac: float,
    l_fac: float,
) -> list[str]:
    """:func:`plausibility`'s energy and force checks on the frames ``sample`` (indices ``picks``)."""
    warnings: list[str] = []
    worst, worst_k = 0.0, -1
    forces = []
    for k, atoms in zip(picks, sample, strict=True):
        results = getattr(atoms.calc, "results", None) or {}
        if results.get("energy") is not None:
            bound = 1.5 * _THOMAS_FERMI_EV * float((atoms.numbers.astype(float) ** (7 / 3)).sum())
            ratio = abs(float(np.asarray(results["energy"]).reshape(()))) * e_fac / bound
            if ratio > worst:
                worst, worst_k = ratio, int(k)
        if results.get("forces") is not None:
            forces.append(np.asarray(results["forces"], dtype=float).reshape(-1))
    if worst > 1.0:
        e = float(np.asarray(frames[worst_k].calc.results["energy"]).reshape(()))
        warnings.append(
            f"frame {worst_k}'s energy {e:.6g} {energy_unit} is {worst:.3g}x larger than the all-electron "
            f"energy of its free atoms: the energies are probably not in {energy_unit} (kcal/mol or kJ/mol "
            "declared as eV?); set data.energy_unit to the file's unit"
        )
    if forces:
        rms = float(np.sqrt(np.mean(np.concatenate(forces) ** 2))) * e_fac / l_fac
        if rms > _MAX_FORCE_RMS_EV_A:
            shown = rms * l_fac / e_fac
            warnings.append(
                f"the RMS force component is {shown:.4g} {energy_unit}/{length_unit} ({rms:.3g} eV/Å, "
                f"above {_MAX_FORCE_RMS_EV_A:g} eV/Å for typical data): are the energies really in "
                f"{energy_unit} and the positions in {length_unit}?"
            )
    return warnings


def _distance_warnings(
    sample: list[Atoms], length_unit: str, l_fac: float, cutoff: float | None
) -> list[str]:
    """:func:`plausibility`'s nearest-neighbour and cutoff checks on the frames ``sample``."""
    warnings: list[str] = []
    nearest = [nearest_neighbour_distances(a) * l_fac for a in sample if len(a) > 1]
    if nearest:
        flat = np.concatenate(nearest)
        finite = flat[np.isfinite(flat)]
        hydrogen = np.concatenate(
            [d[a.numbers == 1] for d, a in zip(nearest, [s for s in sample if len(s) > 1], strict=True)]
        )
        hydrogen = hydrogen[np.isfinite(hydrogen)]
        if len(finite):
            median = float(np.median(finite))
            lo, hi = _NN_RANGE_A
            if not lo <= median <= hi:
                hint = "nm declared as Å?" if median < lo else "Bohr or pm? Å declared as nm?"
                warnings.append(
                    f"the median nearest-neighbour distance is {median / l_fac:.3g} {length_unit} "
                    f"({median:.3g} Å, outside {lo}-{hi} Å for molecules and materials): are the positions "
                    f"in {length_unit} ({hint}); set data.length_unit to the file's unit"
                )
            elif len(hydrogen) and float(np.median(hydrogen)) < _NN_H_MIN_A:
                h = float(np.median(hydrogen))
                warnings.append(
                    f"hydrogen atoms' median nearest-neighbour distance is {h / l_fac:.3g} {length_unit} "
                    f"({h:.3g} Å; no H-X bond is shorter than H2's 0.74 Å): are the positions in "
                    f"{length_unit} (Å declared as Bohr?); set data.length_unit to the file's unit"
                )
            elif len(hydrogen) and float(np.median(hydrogen)) > _NN_H_MAX_A:
                h = float(np.median(hydrogen))
                warnings.append(
                    f"hydrogen atoms' median nearest-neighbour distance is {h / l_fac:.3g} {length_unit} "
                    f"({h:.3g} Å; H-X bonds are 0.74-1.5 Å): are the positions in {length_unit} (Bohr "
                    "declared as Å?); set data.length_unit to the file's unit"
                )
        if cutoff is not None and len(finite) and float(finite.min()) > cutoff * l_fac:
            warnings.append(
                f"no atom has a neighbour within the cutoff {cutoff:g} {length_unit} (the closest pair is "
                f"{float(finite.min()) / l_fac:.4g} {length_unit} apart): the model sees isolated atoms; "
                f"are the positions in {length_unit}?"
            )
    return warnings


def plausibility(
    frames: Sequence[Atoms],
    energy_unit: str,
    length_unit: str,
    cutoff: float | None = None,
    max_frames: int = 50,
) -> list[str]:
    """Warnings (with the numbers) for data whose values suggest a wrong unit or geometry.

    Looks at up to ``max_frames`` frames spread over the set (one pass, milliseconds):

    - ``|E|`` per frame above 1.5x the Thomas-Fermi all-electron energy of its atoms
      (kcal/mol or kJ/mol data declared as eV; a reference energy can never be this large);
    - RMS force component above 10 eV/Å (kcal/mol/Å declared as eV/Å);
    - median nearest-neighbour distance outside 0.5-4 Å, or an H atom's outside 0.65-1.6 Å
      (Bohr declared as Å, Å as Bohr, nm as Å, Å as nm);
    - no atom with a neighbour within ``cutoff`` (a model would see only isolated atoms);
    - atoms closer than 0.4x the sum of their covalent radii (:func:`close_pairs`).

    Args:
        frames: the structures with their labels (see :func:`physnet.data.read_frames`).
        energy_unit, length_unit: the units the data is declared in.
        cutoff: the model's cutoff in ``length_unit``, if known.
        max_frames: frames looked at.
    """
    from physnet.units import energy_factor, length_factor

    if not frames:
        return []
    e_fac, l_fac = energy_factor(energy_unit), length_factor(length_unit)
    picks = np.unique(np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).astype(int))
    sample = [frames[int(k)] for k in picks]
    warnings = _label_warnings(frames, picks, sample, energy_unit, length_unit, e_fac, l_fac)
    warnings += _distance_warnings(sample, length_unit, l_fac, cutoff)
    for k, atoms in zip(picks, sample, strict=True):
        pairs = close_pairs(atoms, length_factor=l_fac)
        if pairs:
            i, j, d = pairs[0]
            s = atoms.get_chemical_symbols()
            warnings.append(
                f"frame {k}: atoms {s[i]}{i} and {s[j]}{j} are {d:.3g} {length_unit} apart (below 0.4x "
                f"their covalent radii; {len(pairs)} such pair(s)): coincident or overlapping atoms"
            )
            break
    return warnings


def _strained(atoms: Atoms, eps: np.ndarray) -> Atoms:
    out = atoms.copy()
    out.calc = atoms.calc
    out.set_cell(atoms.get_cell()[:] @ (np.eye(3) + eps), scale_atoms=True)
    return out


def finite_difference_errors(
    atoms: Atoms, calc: Any, h: float = 1e-3, components: np.ndarray | None = None
) -> dict[str, float]:
    """Finite-difference check of one frame's stored forces (and stress, if periodic) against ``calc``:
    ``-(E(x + h) - E(x - h)) / 2h`` per Cartesian component, ``(E(ε + h) - E(ε - h)) / (2h V)``
    per symmetric strain component.

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
