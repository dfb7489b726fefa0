"""Symmetry and gradient test kit that every model's tests call.

Each ``check_*`` function evaluates a :class:`physnet.Potential` on ASE structures
and returns error figures (floats) rather than asserting, so the same code serves
tests (``assert_kit``), benchmarks and reports. :func:`run_kit` runs them all.

Errors are relative: energies against ``max(|E|, sum_i |e_i|)`` (the sum of
absolute per-atom energies, a scale that does not vanish when E happens to be near
zero), forces against ``max |F|``, stress against ``max |sigma|``. Every check runs
in the requested dtype with TF32 switched off; finite differences are always
taken in float64 so that a float32 model is compared against an accurate
reference.

Example:
    >>> import physnet, torch
    >>> from physnet.testing import run_kit
    >>> pot = physnet.Potential(physnet.models.build("schnet", species=["H", "C", "O"]))
    >>> report = run_kit(pot, physnet.data.from_smiles("CCO")[0], checks=["rotation", "forces_fd"])
    >>> report["rotation_energy"] < 1e-10 and report["forces_fd"] < 1e-6
    True
"""

from __future__ import annotations

import collections
import contextlib
import copy
import traceback
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from ase import Atoms

from physnet.data import keys as K
from physnet.data.graph import collate, from_ase
from physnet.potential import Potential

__all__ = [
    "random_rotation",
    "evaluate",
    "check_rotation",
    "check_reflection",
    "check_translation",
    "check_permutation",
    "check_forces_fd",
    "check_stress_fd",
    "check_batch",
    "check_additivity",
    "check_no_cross_gradients",
    "nve_drift",
    "run_kit",
    "assert_kit",
    "TOLERANCES",
    "reference_structures",
    "check_particle_symmetries",
    "PARTICLE_KINDS",
    "count_host_syncs",
    "HOST_SYNC_CALLS",
]

# Acceptance thresholds (relative errors) by dtype.
TOLERANCES: dict[torch.dtype, dict[str, float]] = {
    torch.float64: {"symmetry": 1e-10, "fd": 1e-6, "batch": 1e-10, "cross": 0.0},
    torch.float32: {"symmetry": 1e-5, "fd": 1e-5, "batch": 1e-5, "cross": 0.0},
}


@contextlib.contextmanager
def precise() -> Iterator[None]:
    """Switch TF32 off for matmuls and convolutions inside the block."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def random_rotation(rng: np.random.Generator, reflect: bool = False) -> np.ndarray:
    """A uniformly random 3x3 rotation (det +1), or an improper one (det -1) if ``reflect``."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    if reflect:
        q = q @ np.diag([1.0, 1.0, -1.0])
    return q


def _prepare(potential: Potential, dtype: torch.dtype, device: str | torch.device) -> Potential:
    return copy.deepcopy(potential).to(device=device, dtype=dtype).eval()


def evaluate(
    potential: Potential,
    atoms: Atoms | Sequence[Atoms],
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    stress: bool | None = None,
) -> dict[str, np.ndarray]:
    """Energy, per-atom energies, forces (and stress) of one structure or a batch, as float64 numpy."""
    structures = [atoms] if isinstance(atoms, Atoms) else list(atoms)
    graphs = [from_ase(a, potential.cutoff, dtype=dtype, device=device, targets=False) for a in structures]
    graph = collate(graphs) if len(graphs) > 1 else graphs[0]
    with precise():
        out = potential(graph, compute_forces=True, compute_stress=stress)
    return {k: v.detach().cpu().double().numpy() for k, v in out.items()}


def _energy_scale(out: dict[str, np.ndarray]) -> float:
    return max(float(np.abs(out[K.ENERGY]).max()), float(np.abs(out[K.ATOMIC_ENERGY]).sum()), 1e-300)


def _rel(a: np.ndarray, b: np.ndarray, scale: float) -> float:
    return float(np.abs(a - b).max() / max(scale, 1e-300))


def _transformed(atoms: Atoms, matrix: np.ndarray | None = None, shift: np.ndarray | None = None) -> Atoms:
    new = atoms.copy()
    new.calc = None
    if matrix is not None:
        new.positions = atoms.positions @ matrix.T
        if atoms.pbc.any():
            new.set_cell(np.asarray(atoms.cell) @ matrix.T, scale_atoms=False)
    if shift is not None:
        new.positions = new.positions + shift
    return new


def _check_orthogonal(
    potential: Potential, atoms: Atoms, n_trials: int, seed: int, reflect: bool, dtype, device
) -> dict[str, float]:
    pot = _prepare(potential, dtype, device)
    ref = evaluate(pot, atoms, dtype, device)
    rng = np.random.default_rng(seed)
    e_err = f_err = s_err = 0.0
    for _ in range(n_trials):
        rot = random_rotation(rng, reflect=reflect)
        out = evaluate(pot, _transformed(atoms, rot), dtype, device)
        e_err = max(e_err, _rel(out[K.ENERGY], ref[K.ENERGY], _energy_scale(ref)))
        f_scale = float(np.abs(ref[K.FORCES]).max())
        f_err = max(f_err, _rel(out[K.FORCES], ref[K.FORCES] @ rot.T, f_scale))
        if K.STRESS in ref:
            expected = rot @ ref[K.STRESS][0] @ rot.T
            s_err = max(s_err, _rel(out[K.STRESS][0], expected, float(np.abs(ref[K.STRESS]).max())))
    name = "reflection" if reflect else "rotation"
    report = {f"{name}_energy": e_err, f"{name}_forces": f_err}
    if K.STRESS in ref:
        report[f"{name}_stress"] = s_err
    return report


def check_rotation(
    potential: Potential,
    atoms: Atoms,
    n_trials: int = 3,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Energy invariance and force (and stress) equivariance under random proper rotations.

    A periodic cell is rotated with the atoms. Returns ``rotation_energy``,
    ``rotation_forces`` (and ``rotation_stress``) relative errors.
    """
    return _check_orthogonal(potential, atoms, n_trials, seed, False, dtype, device)


def check_reflection(
    potential: Potential,
    atoms: Atoms,
    n_trials: int = 3,
    seed: int = 1,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """As :func:`check_rotation` with improper rotations (det = -1): ``reflection_*``.

    Models that are only SE(3)- (not E(3)-) invariant are expected to fail this one.
    """
    return _check_orthogonal(potential, atoms, n_trials, seed, True, dtype, device)


def check_translation(
    potential: Potential,
    atoms: Atoms,
    n_trials: int = 3,
    seed: int = 2,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Energy and force invariance under random translations (by up to 10 length units;
    atoms of a periodic cell are not wrapped, so images are exercised too)."""
    pot = _prepare(potential, dtype, device)
    ref = evaluate(pot, atoms, dtype, device)
    rng = np.random.default_rng(seed)
    e_err = f_err = 0.0
    for _ in range(n_trials):
        out = evaluate(pot, _transformed(atoms, shift=rng.uniform(-10, 10, size=3)), dtype, device)
        e_err = max(e_err, _rel(out[K.ENERGY], ref[K.ENERGY], _energy_scale(ref)))
        f_err = max(f_err, _rel(out[K.FORCES], ref[K.FORCES], float(np.abs(ref[K.FORCES]).max())))
    return {"translation_energy": e_err, "translation_forces": f_err}


def check_permutation(
    potential: Potential,
    atoms: Atoms,
    n_trials: int = 3,
    seed: int = 3,
    same_element: bool = True,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Permuting atoms (within each element if ``same_element``, else all atoms with their
    numbers) leaves the energy unchanged and permutes forces and per-atom energies."""
    pot = _prepare(potential, dtype, device)
    ref = evaluate(pot, atoms, dtype, device)
    rng = np.random.default_rng(seed)
    e_err = f_err = 0.0
    for _ in range(n_trials):
        if same_element:
            perm = np.arange(len(atoms))
            for z in np.unique(atoms.numbers):
                idx = np.flatnonzero(atoms.numbers == z)
                perm[idx] = rng.permutation(idx)
        else:
            perm = rng.permutation(len(atoms))
        permuted = atoms[perm]
        permuted.calc = None
        out = evaluate(pot, permuted, dtype, device)
        scale = _energy_scale(ref)
        e_err = max(
            e_err,
            _rel(out[K.ENERGY], ref[K.ENERGY], scale),
            _rel(out[K.ATOMIC_ENERGY], ref[K.ATOMIC_ENERGY][perm], scale),
        )
        f_err = max(f_err, _rel(out[K.FORCES], ref[K.FORCES][perm], float(np.abs(ref[K.FORCES]).max())))
    return {"permutation_energy": e_err, "permutation_forces": f_err}


def check_forces_fd(
    potential: Potential,
    atoms: Atoms,
    h: float = 1e-5,
    max_atoms: int = 8,
    seed: int = 4,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> float:
    """Max |F - F_fd| / max |F_fd| over up to ``max_atoms`` atoms, where F_fd is the central
    finite difference (step ``h``) of the float64 energy and F the autograd forces in ``dtype``."""
    pot64 = _prepare(potential, torch.float64, device)
    forces = evaluate(_prepare(potential, dtype, device), atoms, dtype, device)[K.FORCES]
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(atoms), size=min(max_atoms, len(atoms)), replace=False)
    fd = np.zeros((len(chosen), 3))
    for n, a in enumerate(chosen):
        for d in range(3):
            energies = []
            for sign in (1.0, -1.0):
                moved = atoms.copy()
                moved.calc = None
                moved.positions[a, d] += sign * h
                energies.append(float(evaluate(pot64, moved, torch.float64, device)[K.ENERGY][0]))
            fd[n, d] = -(energies[0] - energies[1]) / (2 * h)
    return _rel(forces[chosen], fd, float(np.abs(fd).max()))


def check_stress_fd(
    potential: Potential,
    atoms: Atoms,
    h: float = 1e-6,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> float:
    """Max |sigma - sigma_fd| / max |sigma_fd| for a periodic cell, with sigma_fd the central
    finite difference of the float64 energy under symmetric strains, divided by the volume."""
    if not atoms.pbc.all():
        raise ValueError("check_stress_fd needs a fully periodic structure")
    pot64 = _prepare(potential, torch.float64, device)
    stress = evaluate(_prepare(potential, dtype, device), atoms, dtype, device, stress=True)[K.STRESS][0]
    volume = atoms.get_volume()
    fd = np.zeros((3, 3))
    for a in range(3):
        for b in range(a, 3):
            energies = []
            for sign in (1.0, -1.0):
                eps = np.zeros((3, 3))
                eps[a, b] = eps[b, a] = 0.5 * sign * h if a != b else sign * h
                strained = atoms.copy()
                strained.calc = None
                strained.set_cell(np.asarray(atoms.cell) @ (np.eye(3) + eps), scale_atoms=True)
                energies.append(float(evaluate(pot64, strained, torch.float64, device)[K.ENERGY][0]))
            # d E / d eps_ab with eps symmetric: off-diagonal strain moves both (a,b) and (b,a)
            value = (energies[0] - energies[1]) / (2 * h) / volume
            fd[a, b] = fd[b, a] = value
    return _rel(stress, fd, float(np.abs(fd).max()))


def check_batch(
    potential: Potential,
    structures: Sequence[Atoms],
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """A batch of several graphs gives each graph's energy, forces (and stress) as alone."""
    pot = _prepare(potential, dtype, device)
    batched = evaluate(pot, structures, dtype, device)
    e_err = f_err = s_err = 0.0
    start = 0
    for n, atoms in enumerate(structures):
        alone = evaluate(pot, atoms, dtype, device, stress=K.STRESS in batched or None)
        stop = start + len(atoms)
        e_err = max(e_err, _rel(batched[K.ENERGY][n], alone[K.ENERGY][0], _energy_scale(alone)))
        f_err = max(
            f_err, _rel(batched[K.FORCES][start:stop], alone[K.FORCES], float(np.abs(alone[K.FORCES]).max()))
        )
        if K.STRESS in batched:
            s_err = max(
                s_err, _rel(batched[K.STRESS][n], alone[K.STRESS][0], float(np.abs(alone[K.STRESS]).max()))
            )
        start = stop
    report = {"batch_energy": e_err, "batch_forces": f_err}
    if K.STRESS in batched:
        report["batch_stress"] = s_err
    return report


def check_additivity(
    potential: Potential,
    first: Atoms,
    second: Atoms,
    distance: float = 100.0,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> float:
    """Two molecules ``distance`` apart (beyond the cutoff) have the sum of their energies."""
    if first.pbc.any() or second.pbc.any():
        raise ValueError("check_additivity is for non-periodic structures")
    pot = _prepare(potential, dtype, device)
    far = second.copy()
    far.positions = far.positions - far.positions.mean(0) + first.positions.mean(0) + [distance, 0, 0]
    both = first + far
    both.calc = None
    e_a = evaluate(pot, first, dtype, device)
    e_b = evaluate(pot, second, dtype, device)
    e_ab = evaluate(pot, both, dtype, device)
    scale = _energy_scale(e_a) + _energy_scale(e_b)
    return _rel(e_ab[K.ENERGY][0], e_a[K.ENERGY][0] + e_b[K.ENERGY][0], scale)


def check_no_cross_gradients(
    potential: Potential,
    structures: Sequence[Atoms],
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> float:
    """Max |dE_g / d pos_a| over atoms a outside graph g, in a batch: must be exactly 0."""
    pot = _prepare(potential, dtype, device)
    graphs = [from_ase(a, pot.cutoff, dtype=dtype, device=device, targets=False) for a in structures]
    graph = collate(graphs)
    pos = graph[K.POS].detach().requires_grad_(True)
    graph[K.POS] = pos
    with precise():
        energy = pot(graph, compute_forces=False, compute_stress=False)[K.ENERGY]
    worst = 0.0
    batch = graph[K.BATCH]
    for g in range(len(structures)):
        (grad,) = torch.autograd.grad(energy[g], pos, retain_graph=True)
        worst = max(worst, float(grad[batch != g].abs().max()) if bool((batch != g).any()) else 0.0)
    return worst


def nve_drift(
    potential: Potential,
    atoms: Atoms,
    steps: int = 200,
    dt_fs: float = 0.5,
    temperature_K: float = 300.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Short NVE run (ASE VelocityVerlet): total-energy drift as a linear-fit slope in
    meV/atom/ps and the largest excursion |E_tot - E_tot(0)| in meV/atom. A figure, not a test."""
    from ase import units
    from ase.md.verlet import VelocityVerlet

    from physnet.md.ase_calculator import Calculator
    from physnet.md.velocities import thermalize

    system = atoms.copy()
    system.calc = Calculator(potential, device=device, dtype=dtype)
    thermalize(system, temperature_K, seed)
    dyn = VelocityVerlet(system, timestep=dt_fs * units.fs)
    totals = [system.get_total_energy()]
    for _ in range(steps):
        dyn.run(1)
        totals.append(system.get_total_energy())
    t_ps = np.arange(len(totals)) * dt_fs * 1e-3
    etot = np.asarray(totals) / len(system) * 1e3  # meV/atom
    slope = float(np.polyfit(t_ps, etot, 1)[0]) if steps > 1 else 0.0
    return {
        "drift_meV_per_atom_per_ps": slope,
        "max_excursion_meV_per_atom": float(np.abs(etot - etot[0]).max()),
    }


ALL_CHECKS = (
    "rotation",
    "reflection",
    "translation",
    "permutation",
    "forces_fd",
    "stress_fd",
    "batch",
    "additivity",
    "cross_gradients",
)


def run_kit(
    potential: Potential,
    molecule: Atoms,
    periodic: Atoms | None = None,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    checks: Sequence[str] = ALL_CHECKS,
) -> dict[str, float]:
    """Run the kit on a molecule (and a periodic cell, for stress and images).

    Returns a flat dict of relative errors; keys from the periodic cell end in
    ``_periodic``. Pass it to :func:`assert_kit`.
    """
    unknown = set(checks) - set(ALL_CHECKS)
    if unknown:
        raise ValueError(f"unknown check(s) {sorted(unknown)}; choose from {ALL_CHECKS}")
    report: dict[str, float] = {}
    systems = [("", molecule)] + ([("_periodic", periodic)] if periodic is not None else [])
    for suffix, atoms in systems:
        part: dict[str, float] = {}
        if "rotation" in checks:
            part.update(check_rotation(potential, atoms, dtype=dtype, device=device))
        if "reflection" in checks:
            part.update(check_reflection(potential, atoms, dtype=dtype, device=device))
        if "translation" in checks:
            part.update(check_translation(potential, atoms, dtype=dtype, device=device))
        if "permutation" in checks:
            part.update(check_permutation(potential, atoms, dtype=dtype, device=device))
        if "forces_fd" in checks:
            part["forces_fd"] = check_forces_fd(potential, atoms, dtype=dtype, device=device)
        if "stress_fd" in checks and atoms.pbc.all():
            part["stress_fd"] = check_stress_fd(potential, atoms, dtype=dtype, device=device)
        other = _displaced(atoms, seed=5)
        if "batch" in checks:
            part.update(check_batch(potential, [atoms, other, atoms], dtype=dtype, device=device))
        if "additivity" in checks and not atoms.pbc.any():
            part["additivity"] = check_additivity(potential, atoms, other, dtype=dtype, device=device)
        if "cross_gradients" in checks:
            part["cross_gradients"] = check_no_cross_gradients(
                potential, [atoms, other], dtype=dtype, device=device
            )
        report.update({k + suffix: v for k, v in part.items()})
    return report


def reference_structures(seed: int = 0) -> tuple[Atoms, Atoms]:
    """The kit's standard inputs: RDKit ethanol (9 atoms, H/C/O) and a triclinic, rattled
    CuAu cell of 4 atoms (smaller than twice a 5 Å cutoff, so atoms see their own images)."""
    from ase.build import bulk

    from physnet.data.graph import from_smiles

    molecule = from_smiles("CCO", seed=seed)[0]
    crystal = bulk("CuAu", "rocksalt", a=4.1).repeat((1, 1, 2))
    crystal.rattle(0.15, seed=seed + 1)
    crystal.set_cell(np.asarray(crystal.cell) @ [[1, 0.1, 0], [0, 1, 0.05], [0, 0, 1]], scale_atoms=True)
    return molecule, crystal


def _displaced(atoms: Atoms, seed: int, scale: float = 0.05) -> Atoms:
    other = atoms.copy()
    other.calc = None
    other.positions = other.positions + np.random.default_rng(seed).normal(
        scale=scale, size=other.positions.shape
    )
    return other


_MOLECULE_KEYS = (
    "rotation_energy", "rotation_forces", "reflection_energy", "reflection_forces", "translation_energy",
    "translation_forces", "permutation_energy", "permutation_forces", "forces_fd", "batch_energy",
    "batch_forces", "additivity", "cross_gradients",
)  # fmt: skip
_PERIODIC_KEYS = tuple(f"{k}_periodic" for k in _MOLECULE_KEYS if k != "additivity") + (
    "rotation_stress_periodic",
    "reflection_stress_periodic",
    "stress_fd_periodic",
    "batch_stress_periodic",
)


def assert_kit(report: dict[str, float], dtype: torch.dtype = torch.float64, complete: bool = False) -> None:
    """Raise ``AssertionError`` listing every figure of ``report`` above the dtype's tolerance.

    With ``complete``, also require every figure of the full kit on a molecule and a periodic
    cell (as :func:`run_kit` with both structures and all checks produces), so a model test
    cannot pass by skipping checks.
    """
    if complete:
        missing = [k for k in (*_MOLECULE_KEYS, *_PERIODIC_KEYS) if k not in report]
        if missing:
            raise AssertionError(
                f"kit report lacks {missing}; run run_kit with a molecule and a periodic cell"
            )
    tol = TOLERANCES[dtype]
    failures = []
    for key, value in report.items():
        if key.startswith("forces_fd") or key.startswith("stress_fd"):
            limit = tol["fd"]
        elif key.startswith("batch") or key.startswith("additivity"):
            limit = tol["batch"]
        elif key.startswith("cross_gradients"):
            limit = tol["cross"]
        else:
            limit = tol["symmetry"]
        if not np.isfinite(value) or value > limit:
            failures.append(f"{key} = {value:.3g} > {limit:.1g}")
    if failures:
        raise AssertionError("test kit failed for " + str(dtype) + ": " + "; ".join(failures))


# ----------------------------------------------------------------------------------------
# Particle models with vector outputs (dynamics models, GNS, l = 1 heads)
# ----------------------------------------------------------------------------------------

#: How an input or output transforms under x -> x R^T + t: ``"position"`` rotates and
#: translates, ``"vector"`` (velocities, displacements, accelerations) rotates only,
#: ``"invariant"`` (charges, types, system index) is unchanged.
PARTICLE_KINDS = ("position", "vector", "invariant")


def _transform(value: torch.Tensor, kind: str, rot: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    if kind == "invariant":
        return value
    out = value @ rot.T.to(device=value.device, dtype=value.dtype)
    return out + shift.to(device=value.device, dtype=value.dtype) if kind == "position" else out


def _permutation_within(groups: torch.Tensor | None, n: int, generator: torch.Generator) -> torch.Tensor:
    """A random permutation of ``n`` particles that keeps each contiguous group in place."""
    if groups is None:
        return torch.randperm(n, generator=generator)
    parts = []
    for g in torch.unique_consecutive(groups):
        members = torch.nonzero(groups == g).flatten()
        parts.append(members[torch.randperm(len(members), generator=generator)])
    return torch.cat(parts)


def check_particle_symmetries(
    fn: Callable[..., torch.Tensor],
    inputs: dict[str, torch.Tensor],
    kinds: dict[str, str],
    output_kind: str,
    checks: Sequence[str] = ("rotation", "reflection", "translation", "permutation"),
    group_key: str | None = "batch",
    n_trials: int = 3,
    seed: int = 0,
) -> dict[str, float]:
    """Maximum absolute error of a particle model under E(3) and permutations.

    ``fn(**inputs)`` returns a per-particle tensor ``[n, ..., 3]`` (or ``[n, ...]`` for an
    invariant output). Every input has the particle index first; ``kinds`` names how each
    transforms (see :data:`PARTICLE_KINDS`; the last dimension of a ``"position"`` or
    ``"vector"`` input is x, y, z, so a history ``[n, C, 3]`` works). Rotation and
    reflection apply random orthogonal matrices (with a random shift for positions);
    translation shifts positions only; permutation reorders particles inside each group
    of ``inputs[group_key]`` (a sorted system index) and expects the output reordered.

    Returns:
        ``{check: max |fn(g x) - g fn(x)|}`` over ``n_trials`` random transformations.

    >>> fn = lambda pos, vel: pos + 0.1 * vel  # a constant-velocity step
    >>> x, v = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    >>> r = check_particle_symmetries(fn, {"pos": x, "vel": v}, {"pos": "position", "vel": "vector"},
    ...                               "position", group_key=None)
    >>> max(r.values()) < 1e-12
    True
    """
    unknown = {k: v for k, v in kinds.items() if v not in PARTICLE_KINDS}
    if unknown or output_kind not in PARTICLE_KINDS:
        raise ValueError(f"kinds must be among {PARTICLE_KINDS}; got {unknown or output_kind}")
    missing = set(inputs) - set(kinds)
    if missing:
        raise ValueError(f"no kind given for inputs {sorted(missing)}")
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    ref = fn(**inputs)
    dtype = ref.dtype
    eye = torch.eye(3, dtype=dtype)
    checks_known = "rotation, reflection, translation, permutation"
    report: dict[str, float] = {}
    for check in checks:
        err = 0.0
        for _ in range(n_trials):
            if check in ("rotation", "reflection", "translation"):
                if check == "translation":
                    rot, shift = eye, torch.as_tensor(rng.uniform(-10, 10, 3), dtype=dtype)
                else:
                    rot = torch.as_tensor(random_rotation(rng, reflect=check == "reflection"), dtype=dtype)
                    shift = torch.as_tensor(rng.uniform(-10, 10, 3), dtype=dtype)
                moved = {k: _transform(v, kinds[k], rot, shift) for k, v in inputs.items()}
                expected = _transform(ref, output_kind, rot, shift)
                out = fn(**moved)
            elif check == "permutation":
                groups = inputs.get(group_key) if group_key is not None else None
                n = next(iter(inputs.values())).shape[0]
                perm = _permutation_within(groups, n, generator)
                out = fn(**{k: v[perm] for k, v in inputs.items()})
                expected = ref[perm]
            else:
                raise ValueError(f"unknown check {check!r}; use {checks_known}")
            err = max(err, float((out - expected).detach().abs().max()))
        report[check] = err
    return report


# ----------------------------------------------------------------------------------------
# Host-device synchronisation
# ----------------------------------------------------------------------------------------

#: torch calls that read a tensor's values on the host (``.item()``, ``bool(t)``, ``.tolist()``,
#: copies to the CPU) or need them to size their output (``nonzero``, ``unique``, boolean-mask
#: indexing, ``repeat_interleave`` with tensor repeats and no ``output_size``): on CUDA each one
#: waits for every queued kernel, a host sync.
HOST_SYNC_CALLS = frozenset(
    {
        "item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy",
        "nonzero", "argwhere", "masked_select", "unique", "unique_consecutive", "bincount",
    }
)  # fmt: skip


def _reads_mask(args: tuple, kwargs: dict) -> bool:
    """``x[mask]`` / ``x[mask] = v``: a bool tensor among the indices."""
    index = args[1] if len(args) > 1 else None
    items = index if isinstance(index, (tuple, list)) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)


class _SyncCounter(torch.overrides.TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        syncs = name in HOST_SYNC_CALLS
        if name in ("__getitem__", "__setitem__", "index_put_", "index_put"):
            syncs = _reads_mask(args, kwargs)
        elif name == "repeat_interleave":
            repeats = args[1] if len(args) > 1 else kwargs.get("repeats")
            syncs = isinstance(repeats, torch.Tensor) and kwargs.get("output_size") is None
        elif name == "to" and args and isinstance(args[0], torch.Tensor) and args[0].device.type != "cpu":
            target = [a for a in (*args[1:], kwargs.get("device")) if isinstance(a, (str, torch.device))]
            syncs = any(torch.device(t).type == "cpu" for t in target)  # a copy to the host
        if syncs:
            self.counts[(name, _caller())] += 1
        return func(*args, **kwargs)


def _caller() -> str:
    """``path:line`` of the innermost physnet frame (outside this module) on the stack."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        path = frame.filename.replace("\\", "/")
        if "/physnet/" in path and not path.endswith("physnet/testing.py"):
            return f"physnet/{path.rsplit('/physnet/', 1)[1]}:{frame.lineno}"
    return "?"


@contextlib.contextmanager
def count_host_syncs() -> Iterator[collections.Counter[tuple[str, str]]]:
    """Count the calls in :data:`HOST_SYNC_CALLS` made inside the block, on any device.

    Yields a ``Counter`` keyed by ``(call, "physnet/<file>:<line>")`` (the innermost physnet
    frame that made it), filled as the block runs. A stand-in for
    ``torch.cuda.set_sync_debug_mode`` that works on the CPU, so a test there can hold a hot
    path to a budget of syncs; it counts calls on CPU tensors too (they would be syncs on a
    device) and cannot see syncs inside C++ kernels or other libraries (vesin's neighbour list
    returns data-sized outputs, so it syncs once per call).

    >>> with count_host_syncs() as syncs:
    ...     _ = torch.arange(4).sum().item()
    >>> sum(syncs.values())
    1
    """
    counter = _SyncCounter()
    with counter:
        yield counter.counts
