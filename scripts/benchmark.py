"""physnet against its peers (schnetpack, torchani), measured side by side in one run.

Sections (``--only``, comma separated; all by default):

- ``md``: ASE velocity-Verlet MD steps/s through each code's ASE calculator, for ethanol
  (9 atoms), aspirin (21), a 500-atom and a 5,000-atom periodic Cu fcc box: physnet SchNet
  vs schnetpack SchNet of the same size (schnetpack with its default ASE neighbour list and
  with its skin list), physnet Behler-Parrinello vs torchani with the same descriptor and
  network widths.
- ``calls``: time per energy+forces call from ASE Atoms (neighbour list included, nothing
  reused) for the same systems and pairs.
- ``training``: training frames/s (forward, forces with create_graph, energy+force MSE,
  backward, AdamW) of SchNet on pre-built MD17 ethanol batches, physnet vs schnetpack.
- ``scaling``: time and peak memory per energy+forces call of every physnet energy model on
  Cu fcc boxes of ~10^2 to 10^5 atoms (each size in a fresh process), log-log slope over
  >= 10^3 atoms and a PNG with the linear reference line.
- ``export``: ASE velocity-Verlet MD steps/s of a potential exported with
  :func:`physnet.export.export_potential` (AOTInductor ``.pt2``) against the eager inference
  copy (:meth:`physnet.Potential.frozen`) it came from, both through ``physnet.Calculator`` with
  the same Verlet list, for SchNet and Behler-Parrinello on the ``md`` systems (no peers).
- ``peers``: MACE, NequIP and TensorNet (random weights of the accuracy configurations, through
  their own ASE calculators) against physnet's models of the MD17 configs (schnet,
  se3_transformer and any ``--physnet-configs``): energy+forces ms/call, peak memory per call
  and ASE MD steps/s for ethanol, aspirin and Cu 500, all contestants in turn.
- ``accuracy``: physnet's MD17 configs (``physnet train``), MACE (``mace_run_train``), NequIP
  (``nequip-train``), TensorNet (``torchmd-train``) and schnetpack's SchNet (its own Lightning
  task) trained for the same wall-clock budget (``--budget-minutes``, default 20; ``--parallel 2``
  runs two at once) on the shared MD17 ethanol split (1000/100/900, seed 0, written as extxyz
  for the peers and as .npy for torchmd-net); test energy and force MAE / RMSE, and the
  learning curve: each run's best-so-far model is copied every ``--snapshot-minutes`` and
  evaluated on the test split afterwards (``docs/learning_curve_md17.png``).

physnet runs in this interpreter; the peers run in their own virtual environments through
JSON-line workers: schnetpack 2.1.1 and torchani 2.9 with torch 2.4.1 in ``--peers-venv``
(``scripts/benchmark_peers_worker.py``), mace-torch 0.3.16 in ``<peers-venv>-mace``, nequip
0.19.1 in ``<peers-venv>-nequip`` and torchmd-net 3.1.0 in ``<peers-venv>-torchmdnet``, each with
torch 2.13 (``scripts/benchmark_e3_peers_worker.py``);
``--setup-peers`` creates the missing ones with ``python -m venv`` and pip, ``--peers`` picks
them. Each measurement alternates physnet and the peer (A B A B ...) and the report
gives medians and ratios, so a busy machine slows both alike. Both sides run with
``--threads`` torch threads (default 1) and ``OMP_NUM_THREADS`` set to it.

    .venv/bin/python scripts/benchmark.py --quick                    # a few minutes
    .venv/bin/python scripts/benchmark.py --only md,calls --repeats 7
    .venv/bin/python scripts/benchmark.py --only peers --repeats 3 --setup-peers
    .venv/bin/python scripts/benchmark.py --only accuracy --budget-minutes 20 --parallel 2 --setup-peers
    .venv/bin/python scripts/benchmark.py --only export --repeats 5
    .venv/bin/python scripts/benchmark.py --only scaling --device cuda --markdown docs/benchmarks_gpu.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "md17_ethanol_2000.xyz"
DEFAULT_VENV = Path(os.environ.get("PHYSNET_PEERS_VENV", Path.home() / ".cache" / "physnet-peers"))
WORKER = Path(__file__).resolve().parent / "benchmark_peers_worker.py"
PEER_PACKAGES = ["torch==2.4.1", "schnetpack==2.1.1", "torchani==2.9"]
SECTIONS = ("md", "calls", "training", "scaling", "export", "peers", "accuracy")

SPECIES = ["H", "C", "O", "Cu"]
# SchNet of the issue: 128 features and filters, 3 interactions, 20 Gaussians, 5 Å.
SCHNET = {"cutoff": 5.0, "n_features": 128, "n_filters": 128, "n_interactions": 3, "n_rbf": 20}
# ANI-1x-like descriptor (4 x 16 radial + 10 x 32 angular = 384 features) and torchani's
# default per-element widths (simple_ani's "default" container), on both sides.
BP = {
    "cutoff": 5.2,
    "angular_cutoff": 3.5,
    "radial_start": 0.9,
    "angular_start": 0.9,
    "radial_shifts": 16,
    "angular_shifts": 4,
    "angular_sections": 8,
    "radial_eta": 16.0,
    "angular_eta": 8.0,
    "angular_zeta": 32.0,
}
BP_HIDDEN = {"H": [256, 192, 160], "C": [224, 192, 160], "O": [192, 160, 128], "Cu": [160, 128, 96]}
ASPIRIN = "CC(=O)OC1=CC=CC=C1C(=O)O"


# ----------------------------------------------------------------------------- pure helpers
def loglog_slope(sizes: Sequence[float], values: Sequence[float], min_size: float = 1e3) -> float | None:
    """Least-squares slope of log(value) vs log(size) over sizes >= ``min_size``.

    Returns ``None`` with fewer than two such points.

    >>> round(loglog_slope([1e3, 1e4, 1e5], [1.0, 10.0, 100.0]), 6)
    1.0
    """
    pts = [(s, v) for s, v in zip(sizes, values, strict=True) if s >= min_size and v > 0]
    if len(pts) < 2:
        return None
    x = np.log([p[0] for p in pts])
    y = np.log([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0])


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    return float(statistics.median(values))


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; floats are shown with 3 significant digits (>= 100: integers).

    >>> print(markdown_table(["a", "b"], [["x", 1234.5], ["y", 0.01234]]))
    | a | b |
    |---|---|
    | x | 1234 |
    | y | 0.0123 |
    """

    def cell(v: Any) -> str:
        if isinstance(v, float):
            if not np.isfinite(v):
                return "n/a"
            return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"
        return "n/a" if v is None else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None if either is missing or b is 0."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def fcc_repeats(n_atoms: int) -> tuple[int, int, int]:
    """Repeats (a, b, c) of the 4-atom cubic fcc cell giving about ``n_atoms`` atoms, near cubic.

    >>> fcc_repeats(500), fcc_repeats(5000)
    ((5, 5, 5), (12, 13, 8))
    """
    cells = max(1, round(n_atoms / 4))
    k = max(1, round(cells ** (1 / 3)))
    best = (k, k, k)
    for a in range(max(1, k - 2), k + 3):
        for b in range(a, k + 3):
            c = max(1, round(cells / (a * b)))
            if abs(4 * a * b * c - n_atoms) < abs(4 * np.prod(best) - n_atoms):
                best = (a, b, c)
    return best


# ----------------------------------------------------------------------------- structures
def cu_box(n_atoms: int, seed: int = 0):
    """Periodic fcc Cu (a = 3.61 Å) of about ``n_atoms`` atoms, rattled by 0.05 Å."""
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(fcc_repeats(n_atoms))
    atoms.rattle(0.05, seed=seed)
    return atoms


def structures(quick: bool) -> dict[str, Any]:
    """The named MD / call systems, each with 300 K Maxwell-Boltzmann momenta (seed 0)."""
    from ase.md.velocitydistribution import Stationary

    import physnet
    from physnet.md.velocities import thermalize

    out = {
        "ethanol (9)": physnet.data.from_smiles("CCO")[0],
        "aspirin (21)": physnet.data.from_smiles(ASPIRIN)[0],
        "Cu box (500)": cu_box(500),
        "Cu box (5,000)": cu_box(5000),
    }
    for atoms in out.values():
        thermalize(atoms, 300.0, seed=0)
        Stationary(atoms)
    return out


def as_json(atoms) -> dict[str, Any]:
    """Structure as JSON for the peer worker."""
    return {
        "numbers": atoms.numbers.tolist(),
        "positions": atoms.positions.tolist(),
        "cell": np.asarray(atoms.cell).tolist(),
        "pbc": [bool(p) for p in atoms.pbc],
        "momenta": atoms.get_momenta().tolist(),
    }


# ----------------------------------------------------------------------------- physnet side
def physnet_model(kind: str, species: Sequence[str] = SPECIES):
    """physnet model of the benchmark (``schnet`` / ``behler_parrinello`` matched to the peers,
    others with their registry defaults), seeded."""
    import torch

    import physnet

    torch.manual_seed(0)
    if kind == "schnet":
        return physnet.models.build("schnet", species=species, **SCHNET)
    if kind == "behler_parrinello":
        hidden = {s: BP_HIDDEN[s] for s in species} if set(species) <= set(BP_HIDDEN) else BP_HIDDEN["H"]
        return physnet.models.build(
            "behler_parrinello",
            species=species,
            cutoff=BP["cutoff"],
            radial_eta=BP["radial_eta"],
            radial_shifts=BP["radial_shifts"],
            radial_start=BP["radial_start"],
            angular="ani",
            angular_cutoff=BP["angular_cutoff"],
            angular_eta=BP["angular_eta"],
            angular_zeta=BP["angular_zeta"],
            angular_shifts=BP["angular_shifts"],
            angular_start=BP["angular_start"],
            angular_sections=BP["angular_sections"],
            hidden=hidden,
            activation="celu",
        )
    return physnet.models.build(kind, species=species)


def energy_models() -> list[str]:
    """physnet's registered per-atom energy models usable on atomistic boxes."""
    import physnet

    out = []
    for name in physnet.models.available():
        try:
            model = physnet.models.build(name, species=["Cu"])
        except Exception:  # needs other arguments: not an atomistic energy model
            continue
        if getattr(model, "per_atom", False):
            out.append(name)
    return out


class PhysnetSide:
    """physnet timings, with the same request vocabulary as the peer worker."""

    def __init__(self, device: str, dtype: str = "float32") -> None:
        import torch

        self.device = device
        self.dtype = getattr(torch, dtype)
        self.state: dict[str, dict[str, Any]] = {}

    def setup(self, key: str, kind: str, atoms, skin: float = 0.5, model=None) -> dict[str, Any]:
        import physnet

        model = physnet_model(kind) if model is None else model
        potential = physnet.Potential(model)
        calc = physnet.Calculator(potential, device=self.device, dtype=self.dtype, skin=skin)
        self.state[key] = {"atoms": atoms, "calc": calc, "potential": calc.potential}
        a = atoms.copy()
        a.calc = calc
        energy = a.get_potential_energy()
        return {"n_params": sum(p.numel() for p in model.parameters()), "energy": energy}

    def md(self, key: str, steps: int, timestep_fs: float = 0.5) -> float:
        from ase import units
        from ase.md.verlet import VelocityVerlet

        state = self.state[key]
        atoms = state["atoms"].copy()
        atoms.set_momenta(state["atoms"].get_momenta())
        atoms.calc = state["calc"]
        dyn = VelocityVerlet(atoms, timestep_fs * units.fs)
        start = time.perf_counter()
        dyn.run(steps)
        self._sync()
        return time.perf_counter() - start

    def call(self, key: str, n: int) -> float:
        import physnet

        state = self.state[key]
        atoms, potential = state["atoms"], state["potential"]
        periodic = bool(atoms.pbc.any())
        times = []
        for _ in range(n):
            start = time.perf_counter()
            graph = physnet.data.from_ase(
                atoms, potential.cutoff, dtype=self.dtype, device=self.device, targets=False
            )
            out = potential(graph, compute_forces=True, compute_stress=periodic)
            out["forces"].cpu().numpy()
            times.append(time.perf_counter() - start)
        return median(times)

    def call_peak(self, key: str, n: int) -> tuple[float, float | None]:
        """Median seconds per energy+forces call (as :meth:`call`) and the largest rise of the
        peak resident set during a call, MB (VmHWM reset before each call; None where the
        kernel does not allow the reset)."""
        import physnet

        state = self.state[key]
        atoms, potential = state["atoms"], state["potential"]
        periodic = bool(atoms.pbc.any())
        times, peaks = [], []
        for _ in range(n):
            reset = reset_peak_rss()
            base = current_rss()
            start = time.perf_counter()
            graph = physnet.data.from_ase(
                atoms, potential.cutoff, dtype=self.dtype, device=self.device, targets=False
            )
            out = potential(graph, compute_forces=True, compute_stress=periodic)
            out["forces"].cpu().numpy()
            times.append(time.perf_counter() - start)
            if reset:
                peaks.append(max(_peak_rss() - base, 0) / 2**20)
        return median(times), (max(peaks) if peaks else None)

    def _sync(self) -> None:
        import torch

        if str(self.device).startswith("cuda"):
            torch.cuda.synchronize()


class PeerWorker:
    """The peer worker subprocess in the peers' venv, one JSON line per request."""

    def __init__(self, python: Path, threads: int) -> None:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        env["BENCH_THREADS"] = str(threads)
        env.pop("PYTHONPATH", None)
        self.proc = subprocess.Popen(
            [str(python), str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=str(ROOT),
        )

    def request(self, op: str, **kwargs: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **kwargs}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"peer worker died during {op!r}")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(
                f"peer worker failed on {op!r}: {reply.get('error')}\n{reply.get('trace', '')}"
            )
        return reply

    def close(self) -> None:
        try:
            self.request("quit")
        except (RuntimeError, BrokenPipeError, json.JSONDecodeError):
            pass
        self.proc.wait(timeout=30)


def ensure_peers(venv: Path, allow_create: bool) -> Path | None:
    """Python of the peers' venv, creating it (python -m venv + pip) if missing and allowed."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import schnetpack, torchani, torch; print(torch.__version__)"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    if not allow_create:
        print(f"peers venv {venv} missing or broken; run with --setup-peers to create it")
        return None
    print(f"creating the peers venv {venv} ({' '.join(PEER_PACKAGES)}) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--no-cache-dir"]
    cpu = [
        "--index-url",
        "https://download.pytorch.org/whl/cpu",
        "--extra-index-url",
        "https://pypi.org/simple",
        "--retries",  # fail fast where the index is unreachable
        "1",
        "--timeout",
        "20",
    ]
    # torch's CPU wheel index first (small); PyPI's CUDA build of torch 2.4.1 if it is unreachable.
    if subprocess.run(pip + cpu + PEER_PACKAGES).returncode != 0:
        print("the CPU wheel index failed; installing from PyPI (torch with CUDA libraries, several GB)")
        subprocess.run(pip + PEER_PACKAGES, check=True)
    subprocess.run(check, check=True)
    return python


# ----------------------------------------------------------------------------- sections
def interleave(
    a: Callable[[], float], b: Callable[[], float], repeats: int
) -> tuple[list[float], list[float]]:
    """Alternate ``a`` and ``b`` (one untimed warm-up each), ``repeats`` timed runs each."""
    a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(a())
        tb.append(b())
    return ta, tb


PAIRS = {
    "SchNet": ("schnet", "spk_schnet", SCHNET),
    "Behler-Parrinello": ("behler_parrinello", "ani", {**BP, "symbols": SPECIES}),
}


def section_md_calls(args, peer: PeerWorker, which: str) -> tuple[list[list[Any]], dict[str, Any]]:
    """MD steps/s (``which="md"``) or energy+forces ms per call (``"calls"``) for every pair."""
    side = PhysnetSide(args.device)
    systems = structures(args.quick)
    md_steps = {"ethanol (9)": 200, "aspirin (21)": 100, "Cu box (500)": 10, "Cu box (5,000)": 2}
    n_calls = {"ethanol (9)": 30, "aspirin (21)": 30, "Cu box (500)": 3, "Cu box (5,000)": 1}
    if args.quick:
        md_steps = {k: max(2, v // 2) for k, v in md_steps.items()}
    rows, raw = [], {}
    wanted = set(args.models.split(",")) if args.models else None
    for model_name, (ours, theirs, params) in PAIRS.items():
        if wanted is not None and ours not in wanted:
            continue
        variants = [("", params)]
        if theirs == "spk_schnet" and which == "md":
            variants = [
                (" (ASE nl)", {**params, "neighbor_list": "ase"}),
                (" (skin nl)", {**params, "neighbor_list": "skin"}),
            ]
        for system, atoms in systems.items():
            key = f"{which}|{model_name}|{system}"
            info = side.setup(key, ours, atoms)
            peer_best = None
            for suffix, p in variants:
                pkey = key + suffix
                pinfo = peer.request("setup", key=pkey, kind=theirs, structure=as_json(atoms), params=p)
                if which == "md":
                    steps = md_steps[system]
                    ta, tb = interleave(
                        lambda k=key, s=steps: side.md(k, s),
                        lambda k=pkey, s=steps: peer.request("md", key=k, steps=s)["seconds"],
                        args.repeats,
                    )
                    ours_v, theirs_v = steps / median(ta), steps / median(tb)
                    unit_better = ours_v / theirs_v
                else:
                    n = n_calls[system]
                    ta, tb = interleave(
                        lambda k=key, n=n: side.call(k, n),
                        lambda k=pkey, n=n: peer.request("call", key=k, n=n)["seconds"],
                        args.repeats,
                    )
                    ours_v, theirs_v = 1e3 * median(ta), 1e3 * median(tb)
                    unit_better = theirs_v / ours_v
                peer_name = ("schnetpack" if theirs == "spk_schnet" else "torchani") + suffix
                rows.append(
                    [
                        model_name,
                        system,
                        peer_name,
                        ours_v,
                        theirs_v,
                        unit_better,
                        info["n_params"],
                        pinfo["n_params"],
                    ]
                )
                raw[pkey] = {"physnet": ta, "peer": tb}
                peer_best = unit_better if peer_best is None else min(peer_best, unit_better)
                print(markdown_table(_md_header(which), [rows[-1]]).splitlines()[-1], flush=True)
    return rows, raw


EXPORT_HEADER = ["model", "system", "eager steps/s", "exported steps/s", "exported / eager", "export s"]


def section_export(args) -> tuple[list[list[Any]], dict[str, Any]]:
    """ASE MD steps/s, exported .pt2 vs the eager inference copy, alternating (float32)."""
    import tempfile

    import torch

    import physnet
    from physnet.export import export_potential

    systems = structures(args.quick)
    md_steps = {"ethanol (9)": 200, "aspirin (21)": 100, "Cu box (500)": 10, "Cu box (5,000)": 2}
    if args.quick:
        md_steps = {k: max(2, v // 2) for k, v in md_steps.items()}
    wanted = set(args.models.split(",")) if args.models else {"schnet", "behler_parrinello"}
    rows, raw = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("schnet", "behler_parrinello"):
            if kind not in wanted:
                continue
            potential = physnet.Potential(physnet_model(kind)).to(torch.float32)
            start = time.perf_counter()
            path = export_potential(potential, Path(tmp) / f"{kind}.pt2", device=args.device)
            export_seconds = time.perf_counter() - start
            for system, atoms in systems.items():
                calcs = {
                    "eager": physnet.Calculator(potential, device=args.device, dtype=torch.float32),
                    "exported": physnet.Calculator(path, device=args.device),
                }
                steps = md_steps[system]

                def run(which: str, atoms=atoms, steps=steps, calcs=calcs) -> float:
                    from ase import units
                    from ase.md.verlet import VelocityVerlet

                    a = atoms.copy()
                    a.set_momenta(atoms.get_momenta())
                    a.calc = calcs[which]
                    dyn = VelocityVerlet(a, 0.5 * units.fs)
                    t0 = time.perf_counter()
                    dyn.run(steps)
                    return time.perf_counter() - t0

                ta, tb = interleave(lambda: run("eager"), lambda: run("exported"), args.repeats)
                eager, exported = steps / median(ta), steps / median(tb)
                rows.append([kind, system, eager, exported, exported / eager, export_seconds])
                raw[f"{kind}|{system}"] = {"eager": ta, "exported": tb, "steps": steps}
                print(markdown_table(EXPORT_HEADER, [rows[-1]]).splitlines()[-1], flush=True)
    return rows, raw


def _md_header(which: str) -> list[str]:
    if which == "md":
        return [
            "model",
            "system",
            "peer",
            "physnet steps/s",
            "peer steps/s",
            "speed-up",
            "physnet params",
            "peer params",
        ]
    return [
        "model",
        "system",
        "peer",
        "physnet ms/call",
        "peer ms/call",
        "speed-up",
        "physnet params",
        "peer params",
    ]


def section_training(args, peer: PeerWorker) -> tuple[list[list[Any]], dict[str, Any]]:
    """Training-step frames/s of SchNet, physnet vs schnetpack, same frames and batch size."""
    import torch

    import physnet
    from physnet.data import keys as K
    from physnet.data.datasets import make_split, read_frames
    from physnet.train.tasks import adamw

    frames_all = read_frames(args.data)
    split = make_split(len(frames_all), 1000, 100, 900, seed=0)
    steps = 20 if args.quick else 60
    bs = args.batch_size
    idx = [int(i) for i in split["train"][: steps * bs]]
    frames = [frames_all[i] for i in idx]
    species = sorted({int(z) for a in frames for z in a.numbers})
    torch.manual_seed(0)
    model = physnet.models.build("schnet", species=species, **SCHNET)
    potential = physnet.Potential(model).train()
    optimizer = adamw(potential.parameters(), lr=1e-4)  # physnet training's optimiser
    graphs = [physnet.data.from_ase(a, SCHNET["cutoff"], dtype=torch.float32) for a in frames]
    batches = [physnet.data.collate(graphs[k : k + bs]) for k in range(0, len(graphs) - bs + 1, bs)]

    def ours() -> float:
        start = time.perf_counter()
        for batch in batches:
            out = potential(batch)
            loss = (out[K.FORCES] - batch[K.FORCES]).pow(2).mean() + 1e-6 * (
                out[K.ENERGY] - batch[K.ENERGY]
            ).pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return time.perf_counter() - start

    req = {
        "key": "train",
        "params": SCHNET,
        "data": str(args.data),
        "frames": idx,
        "batch_size": bs,
        "steps": steps,
    }
    info = peer.request("train", **req)
    ta, tb = interleave(ours, lambda: peer.request("train", **req)["seconds"], args.repeats)
    n = len(batches) * bs
    ours_v, theirs_v = n / median(ta), info["frames"] / median(tb)
    row = [
        "SchNet",
        bs,
        ours_v,
        theirs_v,
        ours_v / theirs_v,
        sum(p.numel() for p in model.parameters()),
        info["n_params"],
    ]
    print(markdown_table(TRAIN_HEADER, [row]).splitlines()[-1], flush=True)
    return [row], {"physnet": ta, "peer": tb}


TRAIN_HEADER = [
    "model",
    "batch",
    "physnet frames/s",
    "schnetpack frames/s",
    "speed-up",
    "physnet params",
    "peer params",
]


def scaling_worker(kind: str, n_atoms: int, device: str, n_calls: int) -> dict[str, Any]:
    """One size in a fresh process: median seconds per energy+forces call and peak memory."""
    import torch

    import physnet

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    atoms = cu_box(n_atoms)
    # the inference copy physnet.Calculator uses: frozen weights, SchNet's tabulated filters
    potential = physnet.Potential(physnet_model(kind, ["Cu"])).frozen(device=device)
    cuda = device.startswith("cuda")

    def rss() -> int:  # current resident set, bytes
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    base = rss()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    times = []
    for _ in range(n_calls + 1):
        start = time.perf_counter()
        graph = physnet.data.from_ase(
            atoms, potential.cutoff, dtype=torch.float32, device=device, targets=False
        )
        out = potential(graph, compute_forces=True, compute_stress=True)
        out["forces"].cpu()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    # rise of the process's peak resident set (VmHWM) above the resident set before the calls;
    # meaningful in the fresh process the benchmark starts per size. Not ru_maxrss: Linux keeps
    # it across fork + exec, so a worker inherits the (large) parent's peak. In a process whose
    # earlier peak exceeds the current set (e.g. a test run), no rise shows and this is 0.
    peak = max(_peak_rss() - base, 0)
    result = {
        "model": kind,
        "n_atoms": len(atoms),
        "n_edges": int(graph["edge_index"].shape[1]),
        "seconds": median(times[1:]),
        "peak_mb": peak / 2**20,
    }
    if cuda:
        result["peak_mb"] = (torch.cuda.max_memory_allocated() - base_cuda) / 2**20
    return result


def current_rss() -> int:
    """Current resident set of this process, bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Return freed heap memory to the system (glibc ``malloc_trim(0)``), then reset this
    process's VmHWM to its current resident set (``/proc/self/clear_refs``, Linux >= 4.0), so
    that the VmHWM rise during a call counts the memory the call needs, not only what it adds to
    pages the allocator kept from earlier calls. False where the reset is not allowed."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss() -> int:
    """Peak resident set of this process's address space, bytes (VmHWM; ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def section_scaling(args) -> tuple[list[list[Any]], dict[str, Any]]:
    """Time and peak memory per call vs atoms, each size in a fresh subprocess; slope and PNG."""
    sizes = [108, 500, 1372, 4000, 13500, 42592, 97556]
    if args.quick:
        sizes = [108, 500, 1372, 4000]
    models = args.models.split(",") if args.models else energy_models()
    results: dict[str, list[dict[str, Any]]] = {}
    rows = []
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), BENCH_THREADS=str(args.threads))
    for kind in models:
        results[kind] = []
        for n in sizes:
            done = results[kind]
            if done:  # extrapolate linearly from the last size: skip what would not fit
                last = done[-1]
                est_s = last["seconds"] * n / last["n_atoms"]
                est_mb = last["peak_mb"] * n / last["n_atoms"]
                if est_s * 2 > args.max_call_seconds or est_mb > args.max_memory_gb * 1024:
                    print(
                        f"  {kind}: skipping {n} atoms "
                        f"(~{est_s:.0f} s/call, ~{est_mb / 1024:.1f} GB expected)"
                    )
                    break
            cmd = [sys.executable, __file__, "--scaling-worker", kind, str(n), "--device", args.device]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                print(f"  {kind} at {n} atoms failed: {proc.stderr.strip().splitlines()[-1:]}")
                break
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            done.append(res)
            print(
                f"  {kind:18s} {res['n_atoms']:7d} atoms {res['n_edges']:9d} edges "
                f"{1e3 * res['seconds']:10.1f} ms/call {res['peak_mb']:9.0f} MB",
                flush=True,
            )
        pts = results[kind]
        slope_t = loglog_slope([p["n_atoms"] for p in pts], [p["seconds"] for p in pts])
        slope_m = loglog_slope([p["n_atoms"] for p in pts], [p["peak_mb"] for p in pts])
        for p in pts:
            rows.append(
                [
                    kind,
                    p["n_atoms"],
                    p["n_edges"],
                    1e3 * p["seconds"],
                    1e6 * p["seconds"] / p["n_atoms"],
                    p["peak_mb"],
                ]
            )
        rows.append([kind, "slope (>= 10^3 atoms)", "", slope_t, "", slope_m])
    plot_scaling(
        results, Path(args.out_dir) / f"benchmark_scaling_{args.device.split(':')[0]}.png", args.device
    )
    return rows, results


SCALING_HEADER = ["model", "atoms", "edges", "ms/call", "µs/atom", "peak MB"]


def plot_scaling(results: dict[str, list[dict[str, Any]]], path: Path, device: str) -> None:
    """Log-log time and memory per call vs atoms, with a linear reference line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for kind, pts in results.items():
        if not pts:
            continue
        n = np.array([p["n_atoms"] for p in pts], dtype=float)
        for ax, key, scale in ((axes[0], "seconds", 1.0), (axes[1], "peak_mb", 1.0)):
            y = np.array([p[key] for p in pts]) * scale
            (line,) = ax.loglog(n, y, "o-", label=kind)
            ref = y[-1] * n / n[-1]
            ax.loglog(n, ref, ":", color=line.get_color(), alpha=0.6)
    axes[0].set_ylabel("seconds per energy+forces call")
    axes[1].set_ylabel("peak memory per call (MB)")
    for ax in axes:
        ax.set_xlabel("atoms (Cu fcc, 5 Å-class cutoffs)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].plot([], [], "k:", label="linear reference (slope 1)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"physnet energy models, {device}, float32")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"  plot: {path}")


# ----------------------------------------------------------------------------- peers (MACE, NequIP)
def physnet_config_model(config: Path, species: Sequence[str] = SPECIES):
    """The model of a ``physnet train`` config (its ``model:`` section), seeded, for ``species``."""
    import torch
    import yaml

    import physnet

    hp = dict(yaml.safe_load(Path(config).read_text())["model"])
    name = hp.pop("name")
    for key in ("species", "init_from", "references", "scale", "freeze", "add_species", "priors"):
        hp.pop(key, None)
    torch.manual_seed(0)
    return name, physnet.models.build(name, species=species, **hp)


PEERS_HEADER = [
    "system",
    "model",
    "params",
    "ms/call",
    "peak MB/call",
    "MD steps/s",
    "MD vs MACE",
    "MD vs NequIP",
    "MD vs TensorNet",
    "call vs MACE",
    "call vs NequIP",
    "call vs TensorNet",
]


def section_peers(args) -> tuple[list[list[Any]], dict[str, Any]]:
    """MACE, NequIP and TensorNet (their ASE calculators, random weights of the accuracy configurations)
    against physnet's models of the MD17 configs: energy+forces ms/call with peak memory and
    ASE MD steps/s on ethanol, aspirin and Cu 500, all contestants in turn (A B C D A B C D ...)."""
    systems = {k: v for k, v in structures(args.quick).items() if k != "Cu box (5,000)"}
    md_steps = {"ethanol (9)": 100, "aspirin (21)": 50, "Cu box (500)": 4}
    n_calls = {"ethanol (9)": 20, "aspirin (21)": 20, "Cu box (500)": 2}
    side = PhysnetSide(args.device)
    workers: dict[str, E3Worker] = {}
    versions: dict[str, Any] = {}
    for p in args.e3_peers:
        python = ensure_e3_peer(p, e3_venv(p, Path(args.peers_venv)), args.setup_peers)
        if python is not None:
            workers[p] = E3Worker(python, p, args.threads)
            versions[p] = workers[p].request("info")
    configs = [ROOT / "examples" / "configs" / PHYSNET_MD17_CONFIGS[m] for m in args.physnet_models]
    configs += [Path(c).resolve() for c in args.physnet_configs]
    rows, raw = [], {"versions": versions, "configs": {p: E3_PARAMS[p] for p in workers}}
    try:
        for system, atoms in systems.items():
            contestants: dict[str, dict[str, Any]] = {}
            for config in configs:
                name, model = physnet_config_model(config)
                label = (
                    f"physnet {name}" if f"physnet {name}" not in contestants else f"physnet {config.stem}"
                )
                key = f"peers|{label}|{system}"
                info = side.setup(key, name, atoms, model=model)
                contestants[label] = {
                    "params": info["n_params"],
                    "call": lambda k=key, n=n_calls[system]: side.call_peak(k, n),
                    "md": lambda k=key, s=md_steps[system]: side.md(k, s),
                }
            for p, worker in workers.items():
                key = f"peers|{p}|{system}"
                pinfo = worker.request("setup", key=key, structure=as_json(atoms), params=E3_PARAMS[p])

                def call(w=worker, k=key, n=n_calls[system]) -> tuple[float, float | None]:
                    r = w.request("call", key=k, n=n)
                    return r["seconds"], r["peak_mb"]

                contestants[E3_LABELS[p]] = {
                    "params": pinfo["n_params"],
                    "call": call,
                    "md": lambda w=worker, k=key, s=md_steps[system]: w.request("md", key=k, steps=s)[
                        "seconds"
                    ],
                }
            res: dict[str, dict[str, list[Any]]] = {
                c: {"call": [], "peak": [], "md": []} for c in contestants
            }
            for c in contestants.values():  # untimed warm-up of each
                c["call"](), c["md"]()
            for _ in range(args.repeats):
                for name, c in contestants.items():
                    t, peak = c["call"]()
                    res[name]["call"].append(t)
                    res[name]["peak"].append(peak)
                for name, c in contestants.items():
                    res[name]["md"].append(c["md"]())
            summary = {}
            for name, r in res.items():
                peaks = [v for v in r["peak"] if v is not None]
                summary[name] = {
                    "ms": 1e3 * median(r["call"]),
                    "peak_mb": max(peaks) if peaks else None,
                    "md": md_steps[system] / median(r["md"]),
                }
            for name, v in summary.items():
                row = [system, name, contestants[name]["params"], v["ms"], v["peak_mb"], v["md"]]
                for which in ("md", "ms"):
                    for peer_label in E3_LABELS.values():
                        other = summary.get(peer_label)
                        if other is None or name == peer_label:
                            row.append(None)
                        elif which == "md":
                            row.append(v["md"] / other["md"])
                        else:
                            row.append(other["ms"] / v["ms"])
                rows.append(row)
                print(markdown_table(PEERS_HEADER, [row]).splitlines()[-1], flush=True)
            raw[system] = {"steps": md_steps[system], "calls": n_calls[system], **res}
    finally:
        for w in workers.values():
            w.close()
    return rows, raw


# ----------------------------------------------------------------------------- accuracy
# MACE as issue 34 runs it: 32 channels, max_L 1, correlation 3, r 5 Å, 2 interactions, batch 5,
# lr 0.01, AMSGrad, EMA 0.99, weights energy 1 / forces 1000, float32, no SWA. E0s: per-element
# reference energies fitted to the training energies by least squares (``training_e0s``); MACE's
# own "average" leaves a one-composition set's energies off by a constant.
MACE_CONFIG = {"num_channels": 32, "max_L": 1, "correlation": 3, "r_max": 5.0, "num_interactions": 2}
MACE_TRAIN = {
    "model": "MACE",
    "batch_size": 5,
    "valid_batch_size": 10,
    "lr": 0.01,
    "ema_decay": 0.99,
    "energy_weight": 1.0,
    "forces_weight": 1000.0,
    "default_dtype": "float32",
    "max_num_epochs": 100000,
    "eval_interval": 1,
    "num_workers": 0,
    "seed": 0,
}
# NequIP's documented tutorial configuration (configs/tutorial.yaml of nequip 0.19): 4 layers,
# l_max 1, 32 features, parity, 8 Bessels, p = 6, radial MLP 2 x 64, r 5 Å, batch 5, Adam lr 0.01,
# EMA 0.999, ReduceLROnPlateau(0.6, patience 5), loss energy per atom 1 + forces 1; no ZBL and
# no torch.compile (CPU).
NEQUIP_CONFIG = {
    "r_max": 5.0,
    "num_layers": 4,
    "l_max": 1,
    "parity": True,
    "num_features": 32,
    "num_bessels": 8,
    "polynomial_cutoff_p": 6,
    "radial_mlp_depth": 2,
    "radial_mlp_width": 64,
}
# TensorNet (Simeon & De Fabritiis 2023) with torchmd-net's documented rMD17 configuration,
# examples/TensorNet-rMD17.yaml of the torchmd-net repository (unchanged since commit a5d921b,
# 2023-11-20): 2 layers, 128 channels, 32 expnorm RBFs (not trainable), r 0 - 4.5 Å, O(3), silu,
# at most 32 neighbours, scalar output summed over atoms, energy standardised with the training
# set's mean and std; batch 8 (inference 64), lr 1e-3 with 500 warm-up steps, ReduceLROnPlateau
# (0.8, patience 25, min 1e-8), early stopping after 300 epochs, gradient clipping 40, loss
# weights energy 0.5 / forces 0.5 with loss EMAs 0.01 / 1.0, float32. Changed for this
# benchmark: the benchmark's split files instead of its MD17 download and 950/50 split, seed 0
# (as the other peers), a checkpoint every epoch (save_interval 1, its yaml has 10) so the
# snapshots see every improvement, no test set during training (the 900 test frames are
# evaluated afterwards), 0 data-loader workers and the CPU.
TENSORNET_CONFIG = {
    "model": "tensornet",
    "embedding_dimension": 128,
    "num_layers": 2,
    "num_rbf": 32,
    "rbf_type": "expnorm",
    "trainable_rbf": False,
    "activation": "silu",
    "cutoff_lower": 0.0,
    "cutoff_upper": 4.5,
    "max_z": 100,
    "max_num_neighbors": 32,
    "equivariance_invariance_group": "O(3)",
    "output_model": "Scalar",
    "reduce_op": "add",
    "aggr": "add",
    "atom_filter": -1,
    "derivative": True,
    "precision": 32,
    "prior_model": None,
    "box_vecs": None,
    "charge": False,
    "spin": False,
}
TENSORNET_TRAIN = {
    "batch_size": 8,
    "inference_batch_size": 64,
    "lr": 1.0e-3,
    "lr_factor": 0.8,
    "lr_min": 1.0e-8,
    "lr_patience": 25,
    "lr_warmup_steps": 500,
    "early_stopping_patience": 300,
    "ema_alpha_y": 0.01,
    "ema_alpha_neg_dy": 1.0,
    "y_weight": 0.5,
    "neg_dy_weight": 0.5,
    "gradient_clipping": 40.0,
    "weight_decay": 0.0,
    "standardize": True,
    "num_epochs": 10000,
    "seed": 0,
    "save_interval": 1,
    "test_interval": -1,
    "num_workers": 0,
    "ngpus": 1,
    "num_nodes": 1,
    "redirect": False,
}
E3_PEERS = ("mace", "nequip", "tensornet")
E3_PACKAGES = {
    "mace": ["torch==2.13.0", "mace-torch==0.3.16"],
    "nequip": ["torch==2.13.0", "nequip==0.19.1"],
    "tensornet": ["torch==2.13.0", "torchmd-net==3.1.0"],
}
E3_MODULES = {
    "mace": "mace.calculators",
    "nequip": "nequip.integrations.ase",
    "tensornet": "torchmdnet.calculators",
}
E3_LABELS = {"mace": "MACE", "nequip": "NequIP", "tensornet": "TensorNet"}
E3_PARAMS = {"mace": MACE_CONFIG, "nequip": NEQUIP_CONFIG, "tensornet": TENSORNET_CONFIG}
E3_WORKER = Path(__file__).resolve().parent / "benchmark_e3_peers_worker.py"
PHYSNET_MD17_CONFIGS = {
    "schnet": "schnet_md17_ethanol.yaml",
    "painn": "painn_md17_ethanol.yaml",
    "behler_parrinello": "behler_parrinello_md17_ethanol.yaml",
    "egnn": "egnn_md17_ethanol.yaml",
    "se3_transformer": "se3_transformer_md17_ethanol.yaml",
}


def e3_venv(peer: str, root: Path) -> Path:
    """The venv of one E(3)-equivariant peer: ``<root>-<peer>`` (``~/.cache/physnet-peers-mace``;
    TensorNet's is torchmd-net's, ``<root>-torchmdnet``)."""
    return Path(f"{root}-{'torchmdnet' if peer == 'tensornet' else peer}")


def ensure_e3_peer(peer: str, venv: Path, allow_create: bool) -> Path | None:
    """Python of a MACE / NequIP / TensorNet (torchmd-net) venv, made with ``python -m venv`` +
    pip if missing and allowed."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", f"import {E3_MODULES[peer]}"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    if not allow_create:
        print(f"{peer} venv {venv} missing or broken; run with --setup-peers to create it")
        return None
    print(f"creating the {peer} venv {venv} ({' '.join(E3_PACKAGES[peer])}) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", *E3_PACKAGES[peer]], check=True)
    subprocess.run(check, check=True)
    return python


class E3Worker(PeerWorker):
    """``benchmark_e3_peers_worker.py`` in a MACE, NequIP or torchmd-net venv, one JSON line per
    request."""

    def __init__(self, python: Path, peer: str, threads: int) -> None:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        env["BENCH_THREADS"] = str(threads)
        env.pop("PYTHONPATH", None)
        self.peer = peer
        self.proc = subprocess.Popen(
            [str(python), str(E3_WORKER), peer],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=str(ROOT),
        )


def write_split_files(data: str | os.PathLike, out_dir: Path, seed: int = 0) -> dict[str, Path]:
    """The MD17 ethanol split of physnet's configs (1000/100/900 of 2000, ``seed``) as extxyz.

    ``{train,val,test}.xyz`` carry ``energy`` / ``forces`` (ASE's calculator keys, what NequIP
    and ASE read); ``mace_{train,val,test}.xyz`` carry ``REF_energy`` / ``REF_forces`` (MACE's
    documented keys). Units are the file's (kcal/mol, Å for MD17). ``tmdnet_*`` are the
    train and val frames for torchmd-net's ``Custom`` dataset (see :func:`write_torchmdnet_files`).
    """
    import ase.io

    from physnet.data.datasets import make_split, read_frames

    frames = read_frames(data)
    split = make_split(len(frames), 1000, 100, 900, seed=seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    stages: dict[str, list[Any]] = {}
    for stage in ("train", "val", "test"):
        chosen = stages[stage] = [frames[int(i)] for i in split[stage]]
        paths[stage] = out_dir / f"{stage}.xyz"
        ase.io.write(paths[stage], chosen, format="extxyz")
        plain = []
        for atoms in chosen:
            a = atoms.copy()
            a.info["REF_energy"] = float(atoms.get_potential_energy())
            a.arrays["REF_forces"] = atoms.get_forces().copy()
            plain.append(a)
        paths[f"mace_{stage}"] = out_dir / f"mace_{stage}.xyz"
        ase.io.write(paths[f"mace_{stage}"], plain, format="extxyz")
    paths.update(write_torchmdnet_files(stages["train"], stages["val"], out_dir))
    return paths


def training_e0s(train_file: Path) -> dict[int, float]:
    """Per-element reference energies {Z: E0} (the file's energy unit) that best reproduce the
    training energies as sum_i E0(Z_i): the minimum-norm least-squares fit over the compositions,
    so that with one composition (MD17) their sum is the mean training energy."""
    import ase.io
    import numpy as np

    frames = ase.io.read(train_file, index=":")
    elements = sorted({int(z) for a in frames for z in a.numbers})
    counts = np.array([[np.count_nonzero(a.numbers == z) for z in elements] for a in frames], dtype=float)
    energies = np.array([float(a.info["REF_energy"]) for a in frames])
    e0, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return {z: float(e) for z, e in zip(elements, e0, strict=True)}


def write_torchmdnet_files(train: Sequence[Any], val: Sequence[Any], out_dir: Path) -> dict[str, Path]:
    """The train and val frames (ASE Atoms with energy and forces, all of one molecule in one
    atom order) as torchmd-net's ``Custom`` dataset: ``tmdnet_pos.npy`` [n, atoms, 3] Å,
    ``tmdnet_z.npy`` [atoms] atomic numbers, ``tmdnet_energy.npy`` [n, 1] and ``tmdnet_forces.npy``
    [n, atoms, 3] in the frames' units (kcal/mol, kcal/mol/Å for MD17), float32, train frames
    first; and ``tmdnet_splits.npz`` (``idx_train`` the train frames, ``idx_val`` the val frames,
    ``idx_test`` empty: the test frames stay out of torchmd-net, they are evaluated afterwards)."""
    frames = list(train) + list(val)
    numbers = frames[0].numbers
    for i, atoms in enumerate(frames):
        if not np.array_equal(atoms.numbers, numbers):
            raise ValueError(
                f"frame {i} has other atoms than frame 0; torchmd-net's Custom dataset needs one "
                "molecule in one atom order per file (split the data by molecule)"
            )
    arrays = {
        "pos": np.stack([a.positions for a in frames]).astype(np.float32),
        "z": np.asarray(numbers, dtype=np.int64),
        "energy": np.array([[a.get_potential_energy()] for a in frames], dtype=np.float32),
        "forces": np.stack([a.get_forces() for a in frames]).astype(np.float32),
    }
    paths = {}
    for key, value in arrays.items():
        paths[f"tmdnet_{key}"] = out_dir / f"tmdnet_{key}.npy"
        np.save(paths[f"tmdnet_{key}"], value)
    paths["tmdnet_splits"] = out_dir / "tmdnet_splits.npz"
    np.savez(
        paths["tmdnet_splits"],
        idx_train=np.arange(len(train)),
        idx_val=np.arange(len(train), len(frames)),
        idx_test=np.zeros(0, dtype=np.int64),
    )
    return paths


def tensornet_config(files: dict[str, Path], log_dir: Path) -> dict[str, Any]:
    """``torchmd-train --conf`` of TensorNet: ``TENSORNET_CONFIG`` and ``TENSORNET_TRAIN`` on the
    benchmark split (the ``tmdnet_*`` files of :func:`write_split_files`), logs and checkpoints
    in ``log_dir``. torchmd-train has no time limit: the benchmark stops it at the budget."""
    return {
        **TENSORNET_CONFIG,
        **TENSORNET_TRAIN,
        "dataset": "Custom",
        "coord_files": str(files["tmdnet_pos"]),
        "embed_files": str(files["tmdnet_z"]),
        "energy_files": str(files["tmdnet_energy"]),
        "force_files": str(files["tmdnet_forces"]),
        "splits": str(files["tmdnet_splits"]),
        "train_size": None,
        "val_size": None,
        "test_size": None,
        "log_dir": str(log_dir),
    }


def tensornet_best(log_dir: Path) -> Path | None:
    """torchmd-train's best checkpoint so far in ``log_dir``: the lowest validation loss among
    its ``epoch=<N>-val_loss=<L>.ckpt`` files (it keeps the 10 best), None before the first."""
    best: tuple[float, Path] | None = None
    for path in log_dir.glob("epoch=*-val_loss=*.ckpt"):
        try:
            loss = float(path.stem.split("val_loss=", 1)[1].split("-", 1)[0])
        except ValueError:
            continue
        if best is None or loss < best[0]:
            best = (loss, path)
    return best[1] if best else None


def mace_command(python: Path, work: Path, files: dict[str, Path], epochs: int | None = None) -> list[str]:
    """``mace_run_train`` with the issue's configuration (``MACE_CONFIG``, ``MACE_TRAIN``) and
    E0s from :func:`training_e0s` of the training file."""
    exe = python.parent / "mace_run_train"
    e0s = "{" + ", ".join(f"{z}: {e!r}" for z, e in training_e0s(files["mace_train"]).items()) + "}"
    opts = {**MACE_CONFIG, **MACE_TRAIN, "E0s": e0s, "name": "mace", "work_dir": str(work)}
    if epochs is not None:
        opts["max_num_epochs"] = epochs
    cmd = [str(exe), f"--train_file={files['mace_train']}", f"--valid_file={files['mace_val']}"]
    cmd += ["--energy_key=REF_energy", "--forces_key=REF_forces", "--device=cpu", "--ema", "--amsgrad"]
    return cmd + [f"--{k}={v}" for k, v in opts.items()]


def nequip_config(files: dict[str, Path], budget_minutes: float) -> dict[str, Any]:
    """nequip-train config: its tutorial configuration on the benchmark split, CPU, time budget."""
    seconds = int(round(budget_minutes * 60))
    max_time = f"00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    metric = "val0_epoch/weighted_sum"
    c = NEQUIP_CONFIG
    loader = {"_target_": "torch.utils.data.DataLoader", "num_workers": 0}
    return {
        "run": ["train"],
        "data": {
            "_target_": "nequip.data.datamodule.ASEDataModule",
            "seed": 0,
            "train_file_path": str(files["train"]),
            "val_file_path": str(files["val"]),
            "transforms": [
                {
                    "_target_": "nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper",
                    "model_type_names": ["H", "C", "O"],
                    "chemical_species_to_atom_type_map": {"H": "H", "C": "C", "O": "O"},
                },
                {"_target_": "nequip.data.transforms.NeighborListTransform", "r_max": c["r_max"]},
            ],
            "train_dataloader": {**loader, "batch_size": 5, "shuffle": True},
            "val_dataloader": {**loader, "batch_size": 10},
            "stats_manager": {
                "_target_": "nequip.data.CommonDataStatisticsManager",
                "dataloader_kwargs": {"batch_size": 10},
                "type_names": ["H", "C", "O"],
            },
        },
        "trainer": {
            "_target_": "lightning.Trainer",
            "accelerator": "cpu",
            "devices": 1,
            "enable_checkpointing": True,
            "max_epochs": 100000,
            "max_time": max_time,
            "check_val_every_n_epoch": 1,
            "log_every_n_steps": 20,
            "enable_progress_bar": False,
            "logger": {
                "_target_": "lightning.pytorch.loggers.CSVLogger",
                "save_dir": "${hydra:runtime.output_dir}",
            },
            "callbacks": [
                {
                    "_target_": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "monitor": metric,
                    "dirpath": "${hydra:runtime.output_dir}",
                    "filename": "best",
                    "save_last": True,
                }
            ],
        },
        "training_module": {
            "_target_": "nequip.train.EMALightningModule",
            "ema_decay": 0.999,
            "loss": {
                "_target_": "nequip.train.EnergyForceLoss",
                "per_atom_energy": True,
                "coeffs": {"total_energy": 1.0, "forces": 1.0},
            },
            "val_metrics": {
                "_target_": "nequip.train.EnergyForceMetrics",
                "coeffs": {"total_energy_mae": 1.0, "forces_mae": 1.0},
            },
            "train_metrics": "${training_module.val_metrics}",
            "test_metrics": "${training_module.val_metrics}",
            "optimizer": {"_target_": "torch.optim.Adam", "lr": 0.01},
            "lr_scheduler": {
                "scheduler": {
                    "_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau",
                    "factor": 0.6,
                    "patience": 5,
                    "threshold": 0.2,
                    "min_lr": 1e-6,
                },
                "monitor": metric,
                "interval": "epoch",
                "frequency": 1,
            },
            "model": {
                "_target_": "nequip.model.NequIPGNNModel",
                "seed": 0,
                "model_dtype": "float32",
                "type_names": ["H", "C", "O"],
                **c,
                "bessel_trainable": False,
                "avg_num_neighbors": "${training_data_stats:num_neighbors_mean}",
                "per_type_energy_scales": "${training_data_stats:per_type_forces_rms}",
                "per_type_energy_shifts": "${training_data_stats:per_atom_energy_mean}",
                "per_type_energy_scales_trainable": False,
                "per_type_energy_shifts_trainable": False,
            },
        },
        "global_options": {"allow_tf32": False},
    }


class TrainingRun:
    """One training process of the accuracy section, with wall-clock snapshots of its model.

    Args:
        name: the row label (``physnet schnet``, ``mace``, ``nequip``).
        cmd: the training command; ``env`` its environment; ``work`` its directory (the log
            ``train.log`` and ``snapshots/`` go there).
        source: returns the file holding the run's current model (best so far on validation),
            or None before the first one exists.
        marker: a line of the log that shows training has begun; the training clock (budget,
            snapshot minutes) starts there (at the process start where it never shows).
        budget_s: the training budget; ``kill_at_budget`` ends the process when it is spent
            (for trainers without a time limit of their own), else it stops itself.
    """

    def __init__(
        self,
        name: str,
        cmd: list[str],
        env: dict[str, str],
        work: Path,
        source: Callable[[], Path | None],
        marker: str,
        budget_s: float,
        kill_at_budget: bool,
    ) -> None:
        self.name, self.cmd, self.env, self.work = name, cmd, env, work
        self.source, self.marker, self.budget_s, self.kill_at_budget = (
            source,
            marker,
            budget_s,
            kill_at_budget,
        )
        self.snapshots: list[dict[str, Any]] = []
        self.proc: subprocess.Popen | None = None
        self.started = self.train_start = self.ended = None
        self.killed = False
        self.config: Path | None = None  # the physnet train config, for physnet runs
        self.next_due = 0.0  # training seconds of the last snapshot point

    @property
    def log(self) -> Path:
        return self.work / "train.log"

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / "snapshots").mkdir(exist_ok=True)
        self._log = self.log.open("w")
        self.proc = subprocess.Popen(
            self.cmd, stdout=self._log, stderr=subprocess.STDOUT, env=self.env, cwd=str(self.work)
        )
        self.started = time.time()

    def training_seconds(self, now: float) -> float:
        return now - (self.train_start or self.started)

    def snapshot(self, minutes: float) -> None:
        """Copy the run's current model file, labelled with the training minutes it was taken at."""
        import shutil

        src = self.source()
        if src is None or not src.is_file():
            return
        dst = self.work / "snapshots" / f"{len(self.snapshots):03d}_{minutes:.2f}min{src.suffix}"
        shutil.copy2(src, dst)
        written = src.stat().st_mtime - (self.train_start or self.started or 0.0)
        self.snapshots.append(
            {"minutes": minutes, "file": str(dst), "source": src.name, "model_written_s": written}
        )

    def poll(self, every_s: float) -> bool:
        """Advance the run: start the clock, take due snapshots, stop it at the budget.
        Returns True while the process runs."""
        assert self.proc is not None
        now = time.time()
        if self.train_start is None and self.log.is_file():
            if self.marker in self.log.read_text(errors="replace"):
                self.train_start = now
        trained = self.training_seconds(now)
        if self.train_start is not None and trained >= self.next_due + every_s and trained < self.budget_s:
            # a point with no model file yet (no epoch finished) is skipped, not taken late
            self.next_due = every_s * (trained // every_s)
            self.snapshot(self.next_due / 60)
        if self.kill_at_budget and self.train_start is not None and trained >= self.budget_s:
            self.proc.terminate()
            self.killed = True
        if self.proc.poll() is None and trained > self.budget_s + 900:  # a hung run
            self.proc.kill()
            self.killed = True
        if self.proc.poll() is not None:
            self.ended = now
            n = len(self.snapshots)
            self.snapshot(min(trained, self.budget_s) / 60)
            if len(self.snapshots) > n:
                self.snapshots[-1]["final"] = True
            self._log.close()
            return False
        return True


def alternate_sides(runs: list[TrainingRun]) -> list[TrainingRun]:
    """physnet and peer runs interleaved (physnet 1, peer 1, physnet 2, peer 2, ...), in their own
    orders, so that with ``--parallel 2`` each physnet model trains beside a peer."""
    ours = [r for r in runs if r.name.startswith("physnet")]
    theirs = [r for r in runs if not r.name.startswith("physnet")]
    out: list[TrainingRun] = []
    for k in range(max(len(ours), len(theirs))):
        out += ours[k : k + 1] + theirs[k : k + 1]
    return out


def run_trainings(
    runs: list[TrainingRun], parallel: int, snapshot_minutes: float, poll_s: float = 2.0
) -> None:
    """Run ``runs``, ``parallel`` at a time, polling every ``poll_s`` for snapshots and budgets."""
    pending, active = list(runs), []
    try:
        _run_all(pending, active, parallel, snapshot_minutes, poll_s)
    finally:  # an interrupted benchmark leaves no training behind
        for run in active:
            if run.proc is not None and run.proc.poll() is None:
                run.proc.kill()


def _run_all(
    pending: list[TrainingRun],
    active: list[TrainingRun],
    parallel: int,
    snapshot_minutes: float,
    poll_s: float,
) -> None:
    while pending or active:
        while pending and len(active) < parallel:
            run = pending.pop(0)
            print(f"  training {run.name} ({run.budget_s / 60:g} min) -> {run.work}", flush=True)
            run.start()
            active.append(run)
        for run in list(active):
            if not run.poll(snapshot_minutes * 60):
                active.remove(run)
                took = run.ended - run.started
                setup = (run.train_start or run.started) - run.started
                print(
                    f"  {run.name}: done, {took:.0f} s in all, training clock from "
                    f"{setup:.0f} s, {len(run.snapshots)} snapshots, "
                    f"exit {run.proc.returncode}{' (stopped at the budget)' if run.killed else ''}",
                    flush=True,
                )
        time.sleep(poll_s)


def _newest(pattern_dir: Path, glob: str) -> Path | None:
    files = sorted(pattern_dir.glob(glob), key=lambda p: p.stat().st_mtime)
    return files[-1] if files else None


def evaluate_physnet_snapshots(
    snapshots: list[dict[str, Any]], test_file: Path, steps_per_epoch: int
) -> None:
    """Test errors of physnet checkpoints (``Potential.load``) and the epochs done (optimiser
    steps / ``steps_per_epoch``), written into each snapshot."""
    import torch

    import physnet
    from physnet.data.datasets import GraphDataset, read_frames
    from physnet.train.fit import error_table, predict

    frames = read_frames(test_file)
    datasets: dict[float, Any] = {}
    for snap in snapshots:
        potential = physnet.Potential.load(snap["file"])
        cutoff = float(potential.cutoff)
        if cutoff not in datasets:
            datasets[cutoff] = GraphDataset(frames, cutoff, dtype=torch.float32, progress=False)
        ds = datasets[cutoff]
        table = error_table(predict(potential.to(torch.float32), ds, np.arange(len(ds)), 50))
        snap.update({k: table[k] for k in ("energy_mae", "energy_rmse", "forces_mae", "forces_rmse")})
        # epochs done: optimiser steps over steps per epoch (a time limit stops mid-epoch)
        step = int(torch.load(snap["file"], map_location="cpu", weights_only=False)["global_step"])
        snap["epoch"] = step / steps_per_epoch


def section_accuracy(args, peer: PeerWorker | None) -> tuple[list[list[Any]], dict[str, Any]]:
    """Equal wall-clock budget on the MD17 ethanol split: physnet models, MACE, NequIP, TensorNet
    (schnetpack too with its venv): test energy and force MAE / RMSE, and the learning curve
    (test force MAE of snapshots taken every ``--snapshot-minutes``)."""
    import yaml

    budget_s = args.budget_minutes * 60
    run_root = Path(args.run_root)
    files = write_split_files(args.data, run_root / "split")
    threads = str(args.threads)
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    runs: list[TrainingRun] = []
    configs = [ROOT / "examples" / "configs" / PHYSNET_MD17_CONFIGS[m] for m in args.physnet_models]
    configs += [Path(c).resolve() for c in args.physnet_configs]
    for config in configs:
        name = "physnet " + yaml.safe_load(config.read_text())["model"]["name"]
        if any(r.name == name for r in runs):
            name = f"physnet {config.stem}"
        work = run_root / name.replace(" ", "_")
        if work.exists():
            import shutil

            shutil.rmtree(work)
        run_dir = work / "run"
        cmd = [
            str(Path(sys.executable).parent / "physnet"),
            "train",
            str(config),
            f"run_dir={run_dir}",
            f"data.path={Path(args.data).resolve()}",
            f"trainer.max_time_minutes={args.budget_minutes}",
            f"trainer.threads={args.threads}",
            "trainer.accelerator=" + ("gpu" if args.device.startswith("cuda") else "cpu"),
        ]
        runs.append(
            TrainingRun(
                name,
                cmd,
                env,
                work,
                lambda d=run_dir: d / "checkpoints" / "best.ckpt",
                "split train/val/test",
                budget_s,
                kill_at_budget=False,
            )
        )
        runs[-1].config = config
    pythons = {
        p: ensure_e3_peer(p, e3_venv(p, Path(args.peers_venv)), args.setup_peers) for p in args.e3_peers
    }
    for p, python in pythons.items():
        if python is None:
            continue
        work = run_root / p
        if work.exists():
            import shutil

            shutil.rmtree(work)
        peer_env = dict(env)
        peer_env.pop("PYTHONPATH", None)
        if p == "mace":
            runs.append(
                TrainingRun(
                    "mace",
                    mace_command(python, work / "run", files),
                    peer_env,
                    work,
                    lambda w=work: _newest(w / "run" / "checkpoints", "*_epoch-*.pt"),
                    "Started training",
                    budget_s,
                    kill_at_budget=True,
                )
            )
        elif p == "tensornet":
            work.mkdir(parents=True)
            conf = work / "tensornet.yaml"
            conf.write_text(yaml.safe_dump(tensornet_config(files, work / "run")))
            runs.append(
                TrainingRun(
                    "tensornet",
                    [str(python.parent / "torchmd-train"), "--conf", str(conf)],
                    peer_env,
                    work,
                    lambda w=work: tensornet_best(w / "run"),
                    "Total params",  # Lightning's model summary: fit begins
                    budget_s,
                    kill_at_budget=True,
                )
            )
        else:
            work.mkdir(parents=True)
            (work / "nequip.yaml").write_text(yaml.safe_dump(nequip_config(files, args.budget_minutes)))
            cmd = [
                str(python.parent / "nequip-train"),
                "-cp",
                str(work),
                "-cn",
                "nequip",
                f"hydra.run.dir={work / 'run'}",
            ]
            runs.append(
                TrainingRun(
                    "nequip",
                    cmd,
                    peer_env,
                    work,
                    lambda w=work: w / "run" / "best.ckpt",
                    "Total params",  # Lightning's model summary: fit begins
                    budget_s,
                    kill_at_budget=False,
                )
            )
    run_trainings(alternate_sides(runs), args.parallel, args.snapshot_minutes)

    # evaluation of every snapshot on the 900 test frames (not part of the budget)
    raw: dict[str, Any] = {"split_files": {k: str(v) for k, v in files.items()}, "runs": {}}
    rows = []

    def evaluate(run: TrainingRun) -> None:
        snaps = run.snapshots
        try:
            if run.name.startswith("physnet"):
                batch = int(yaml.safe_load(run.config.read_text())["data"].get("batch_size", 10))
                evaluate_physnet_snapshots(snaps, files["test"], -(-1000 // batch))
            elif snaps:
                peer_name = run.name
                python = pythons[peer_name]
                assert python is not None
                template = None
                if peer_name == "mace":  # a model object to load the checkpoints' weights into
                    tdir = run.work / "template"
                    (tdir / "checkpoints").mkdir(parents=True, exist_ok=True)  # it saves there
                    proc = subprocess.run(
                        mace_command(python, tdir, files, epochs=0),
                        env=run.env,
                        cwd=str(run.work),
                        capture_output=True,
                        text=True,
                    )
                    # it saves checkpoints/mace_run-<seed>.model, then evaluates (which may fail)
                    found = next(
                        (
                            m
                            for m in sorted(tdir.glob("**/*.model"))
                            if not m.name.endswith("_compiled.model")
                        ),
                        None,
                    )
                    if found is None:
                        raise RuntimeError(f"mace_run_train wrote no model: {proc.stderr[-2000:]}")
                    template = str(found)
                worker = E3Worker(python, peer_name, args.threads)
                try:
                    res = worker.request(
                        "evaluate",
                        snapshots=[s["file"] for s in snaps],
                        test=str(files["test"]),
                        template=template,
                    )["results"]
                finally:
                    worker.close()
                for snap, r in zip(snaps, res, strict=True):
                    snap.update({k: r[k] for k in ("energy_mae", "energy_rmse", "forces_mae", "forces_rmse")})
                    if peer_name == "mace":  # <name>_run-<seed>_epoch-<N>.pt, written after epoch N (from 0)
                        snap["epoch"] = int(snap["source"].rsplit("epoch-", 1)[1].split(".")[0]) + 1
                    elif peer_name == "tensornet":  # written at the end of an epoch: steps / (1000 / 8)
                        snap["epoch"] = r["global_step"] / -(-1000 // TENSORNET_TRAIN["batch_size"])
                    else:  # optimiser steps / steps per epoch (batch 5): a time limit stops mid-epoch
                        snap["epoch"] = r["global_step"] / 200
        except Exception as err:  # noqa: BLE001 -- one failed evaluation must not lose the other runs
            print(f"  evaluating {run.name} failed: {err}")

    # the peers evaluate in their own worker processes: ``--parallel`` runs at once
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        list(pool.map(evaluate, runs))
    for run in runs:
        snaps = run.snapshots
        raw["runs"][run.name] = {
            "cmd": run.cmd,
            "log": str(run.log),
            "exit": run.proc.returncode if run.proc else None,
            "stopped_at_budget": run.killed,
            "setup_s": (run.train_start or run.started) - run.started,
            "total_s": (run.ended or run.started) - run.started,
            "snapshots": snaps,
        }
        final = snaps[-1] if snaps and "forces_mae" in snaps[-1] else None
        if final is None:
            rows.append([run.name, None, None, None, None, None, None])
            continue
        rows.append(
            [
                run.name,
                final["energy_mae"],
                final["energy_rmse"],
                final["forces_mae"],
                final["forces_rmse"],
                final.get("epoch"),
                final["minutes"],
            ]
        )
        print(markdown_table(ACC_HEADER, [rows[-1]]).splitlines()[-1], flush=True)
    if peer is not None:  # schnetpack's SchNet with its own Lightning task
        from physnet.data.datasets import make_split

        split = make_split(2000, 1000, 100, 900, seed=0)
        print(f"  training schnetpack SchNet for {args.budget_minutes} min ...", flush=True)
        res = peer.request(
            "accuracy",
            params=SCHNET,
            data=str(args.data),
            train=split["train"].tolist(),
            val=split["val"].tolist(),
            test=split["test"].tolist(),
            batch_size=10,
            budget_minutes=args.budget_minutes,
            workdir=str(run_root),
        )
        rows.append(
            [
                "schnetpack schnet",
                res["energy_mae"],
                None,
                res["forces_mae"],
                None,
                res["epochs"],
                res["train_seconds"] / 60,
            ]
        )
        raw["runs"]["schnetpack"] = res
    from physnet.train.plots import plot_test_curves

    curves = {
        name: r["snapshots"] for name, r in raw["runs"].items() if isinstance(r, dict) and r.get("snapshots")
    }
    png = Path(args.out_dir) / "learning_curve_md17.png"
    if curves:
        plot_test_curves(
            curves, png, f"MD17 ethanol, 1000 training frames, {args.budget_minutes:g} min budget, 1 thread"
        )
        print(f"  plot: {png}")
    return rows, raw


def replot_accuracy(files: Sequence[Path], out_dir: Path) -> list[list[Any]]:
    """The learning curves of the accuracy runs in several ``--json`` files on one plot
    (``out_dir/learning_curve_md17.png``); returns their table rows, in file order."""
    from physnet.train.plots import plot_test_curves

    rows: list[list[Any]] = []
    curves: dict[str, list[dict[str, Any]]] = {}
    budgets = set()
    for f in files:
        report = json.loads(Path(f).read_text())
        if "accuracy" not in report:
            raise SystemExit(f"{f} has no accuracy section; give a JSON written by --only accuracy --json")
        budgets.add(report["args"]["budget_minutes"])
        rows += report["accuracy"]["rows"]
        for name, run in report["accuracy"]["raw"]["runs"].items():
            if isinstance(run, dict) and run.get("snapshots"):
                curves[name] = run["snapshots"]
    budget = "/".join(f"{b:g}" for b in sorted(budgets))
    title = f"MD17 ethanol, 1000 training frames, {budget} min budget, 1 thread"
    plot_test_curves(curves, out_dir / "learning_curve_md17.png", title)
    return rows


ACC_HEADER = [
    "model",
    "test energy MAE (kcal/mol)",
    "energy RMSE",
    "test force MAE (kcal/mol/Å)",
    "force RMSE",
    "epochs",
    "minutes",
]


# ----------------------------------------------------------------------------- report
def machine_info(device: str) -> dict[str, str]:
    """Machine, versions and date for the report."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "physnet torch": torch.__version__,
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        info["load average (start)"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        pass
    return info


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS}")
    parser.add_argument("--quick", action="store_true", help="fewer steps, sizes and repeats")
    parser.add_argument("--repeats", type=int, default=0, help="timed repeats per side (default 5, quick 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch / OpenMP threads of both sides")
    parser.add_argument("--device", default="cpu", help="physnet's device (cpu, cuda); peers use the CPU")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="MD17 ethanol extxyz (kcal/mol, Å)")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument(
        "--budget-minutes", type=float, default=20.0, help="accuracy: training budget per model (minutes)"
    )
    parser.add_argument(
        "--snapshot-minutes", type=float, default=2.0, help="accuracy: learning-curve snapshot interval"
    )
    parser.add_argument("--parallel", type=int, default=1, help="accuracy: trainings run at once")
    parser.add_argument(
        "--physnet-configs",
        default="",
        help="peers, accuracy: more physnet train configs (comma separated) beside the shipped md17 ones",
    )
    parser.add_argument(
        "--peers",
        default="schnetpack,mace,nequip,tensornet",
        help="peers to run, comma separated: schnetpack (with torchani), mace, nequip, tensornet",
    )
    parser.add_argument(
        "--run-root", default=str(ROOT / "runs" / "benchmark_accuracy"), help="accuracy: runs go here"
    )
    parser.add_argument("--models", default="", help="physnet models to run in every section (default: all)")
    parser.add_argument("--max-memory-gb", type=float, default=6.0, help="scaling: skip sizes expected above")
    parser.add_argument(
        "--max-call-seconds", type=float, default=60.0, help="scaling: skip sizes expected above"
    )
    parser.add_argument("--peers-venv", default=str(DEFAULT_VENV), help="the peers' virtual environment")
    parser.add_argument("--setup-peers", action="store_true", help="create the peers' venv if it is missing")
    parser.add_argument("--no-peers", action="store_true", help="physnet only (peer columns empty)")
    parser.add_argument("--out-dir", default=str(ROOT / "docs"), help="where PNGs go")
    parser.add_argument("--json", default="", help="also write raw results to this JSON file")
    parser.add_argument(
        "--plot-from",
        nargs="+",
        default=[],
        metavar="JSON",
        help="accuracy: one learning-curve plot and table from earlier --json files; trains nothing",
    )
    parser.add_argument("--scaling-worker", nargs=2, metavar=("MODEL", "N_ATOMS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    if args.scaling_worker:
        kind, n = args.scaling_worker
        print(json.dumps(scaling_worker(kind, int(n), args.device, 1 if int(n) > 20000 else 3)))
        return 0
    if args.plot_from:
        missing = [f for f in args.plot_from if not Path(f).is_file()]
        if missing:
            parser.error(f"--plot-from: {missing[0]} is not a file; give JSON files written by --json")
        print(
            markdown_table(ACC_HEADER, replot_accuracy([Path(f) for f in args.plot_from], Path(args.out_dir)))
        )
        return 0
    if not args.repeats:
        args.repeats = 3 if args.quick else 5
    peers = {p.strip() for p in args.peers.split(",") if p.strip()}
    unknown_peers = peers - {"schnetpack", *E3_PEERS}
    if unknown_peers:
        parser.error(
            f"unknown peer(s) {sorted(unknown_peers)}; choose from schnetpack, {', '.join(E3_PEERS)}"
        )
    args.e3_peers = [] if args.no_peers else [p for p in E3_PEERS if p in peers]
    wanted = args.models.split(",") if args.models else ["schnet", "se3_transformer"]
    args.physnet_models = [m for m in wanted if m in PHYSNET_MD17_CONFIGS]
    args.physnet_configs = [c for c in args.physnet_configs.split(",") if c.strip()]
    for c in args.physnet_configs:
        if not Path(c).is_file():
            parser.error(f"--physnet-configs: {c} is not a file; give a physnet train config (YAML)")
    if args.parallel < 1:
        parser.error("--parallel must be >= 1")
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}; choose from {SECTIONS}")

    info = machine_info(args.device)
    needs_peer = (
        bool({"md", "calls", "training", "accuracy"} & set(sections))
        and not args.no_peers
        and "schnetpack" in peers
    )
    peer = None
    if needs_peer:
        python = ensure_peers(Path(args.peers_venv), args.setup_peers)
        if python is None:
            return 1
        peer = PeerWorker(python, args.threads)
        pinfo = peer.request("info")
        info["peers torch"] = pinfo["torch"]
        info["schnetpack"] = pinfo["schnetpack"]
        info["torchani"] = pinfo["torchani"]
    info["threads"] = f"{args.threads} (torch.set_num_threads and OMP_NUM_THREADS, both sides)"
    print("\n".join(f"- {k}: {v}" for k, v in info.items()), flush=True)
    report: dict[str, Any] = {"info": info, "args": vars(args)}
    out = []
    try:
        for name in sections:
            t0 = time.perf_counter()
            print(f"\n## {name}", flush=True)
            if name in ("md", "calls"):
                if peer is None:
                    print("  needs the peers; skipped")
                    continue
                rows, raw = section_md_calls(args, peer, name)
                table = markdown_table(_md_header(name), rows)
            elif name == "training":
                if peer is None:
                    print("  needs the peers; skipped")
                    continue
                rows, raw = section_training(args, peer)
                table = markdown_table(TRAIN_HEADER, rows)
            elif name == "scaling":
                rows, raw = section_scaling(args)
                table = markdown_table(SCALING_HEADER, rows)
            elif name == "export":
                rows, raw = section_export(args)
                table = markdown_table(EXPORT_HEADER, rows)
            elif name == "peers":
                rows, raw = section_peers(args)
                table = markdown_table(PEERS_HEADER, rows)
                for p, v in raw["versions"].items():
                    e3nn = f", e3nn {v['e3nn']}" if v.get("e3nn") else ""
                    info[f"{p} venv"] = f"{p} {v['version']}, torch {v['torch']}{e3nn}"
            else:
                rows, raw = section_accuracy(args, peer)
                table = markdown_table(ACC_HEADER, rows)
            report[name] = {"rows": rows, "raw": raw}
            how = "one training run per model" if name == "accuracy" else f"medians of {args.repeats}"
            out.append(f"### {name} ({time.perf_counter() - t0:.0f} s, {how})\n\n{table}\n")
            if args.json:  # after every section: a killed run keeps what it has measured
                Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    finally:
        if peer is not None:
            peer.close()
    print("\n# Results\n")
    print("\n".join(f"- {k}: {v}" for k, v in info.items()))
    print()
    print("\n".join(out))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
