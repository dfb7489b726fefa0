"""The GPU figures of issue 31, in one process, on one device (``--device cuda`` or ``cpu``).

Sections (``--only``, comma separated; all by default), each under a share of ``--budget-s``:

- ``training``: training-step frames/s (forward, forces by autograd with create_graph, per-atom
  energy + force MSE, backward, AdamW) on pre-built MD17 ethanol batches of 10 and 100 frames
  already on the device, for SchNet, Behler-Parrinello, EGNN and the SE(3)-Transformer with the
  sizes of ``examples/configs/<model>_md17_ethanol.yaml``; also the host syncs of one step
  (:func:`physnet.testing.count_host_syncs`). With ``--cpu-reference FILE`` (a JSON this
  script wrote with ``--device cpu``) the table adds device / CPU ratios.
- ``scaling``: energy + forces ms/call (the inference copy :meth:`physnet.Potential.frozen`,
  graph already built; its neighbour-list time apart) and peak device memory for SchNet and
  Behler-Parrinello (``scripts/benchmark.py``'s sizes) on periodic Cu fcc boxes from 10^3 atoms
  up to the largest that fits (an out-of-memory error ends the ladder), with the log-log slope
  over >= 10^3 atoms.
- ``md``: ASE velocity-Verlet steps/s through ``physnet.Calculator(device=...)`` (float32, 0.5 Å
  Verlet skin) with SchNet on Cu boxes of 500, 5,000 and 50,000 atoms.
- ``gns``: the GNS of ``examples/configs/gns_water.yaml`` at the paper's size (latent and hidden
  128, M = 10 message passing steps) on the embedded water fixture
  (``data/mpm_water/water_fixture.npz``): training steps/s (batch 2 windows, noise, Adam) and
  rollout steps/s of one trajectory.
- ``schnetpack``: the same training step with schnetpack's SchNet of the same size, where
  schnetpack imports (its wheels carried); else recorded as not available.

Timing: warm-up first, then the median of ``--repeats`` timed runs, each ended by a device
synchronisation. Writes ``benchmark.json`` (every number, the device and versions) and
``benchmark.md`` (the tables) into ``--out``, and prints the tables last.

    python scripts/gpu_benchmark.py --device cuda --out $OUT            # on the lent GPU (~5 min)
    python scripts/gpu_benchmark.py --device cpu --quick --out /tmp/b   # dry run, tiny sizes
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# run as a script, its own folder is importable (benchmark.py); physnet comes from the environment
from benchmark import BP, BP_HIDDEN, SCHNET, cu_box, loglog_slope, markdown_table

ROOT = Path(__file__).resolve().parents[1]

SECTIONS = ("training", "scaling", "md", "gns", "schnetpack")
MD17_CANDIDATES = (
    ROOT / ".gpu_carry" / "data" / "md17_ethanol_2000.xyz",  # carried to the lent machine
    ROOT / "downloads" / "md17_ethanol_2000.extxyz",  # physnet data md17_ethanol --frames 2000
    ROOT.parent / "shared" / "data" / "md17_ethanol_2000.xyz",  # the development machines
)
TRAIN_MODELS = ("schnet", "behler_parrinello", "egnn", "se3_transformer")
SCALING_SIZES = (1000, 4000, 13500, 32000, 108000, 256000, 500000, 1000000)
MD_SIZES = (500, 5000, 50000)
QUICK_SCALING_SIZES = (108, 256)
QUICK_MD_SIZES = (108,)


class Clock:
    """Wall-clock budget of the whole run; sections ask it whether to go on."""

    def __init__(self, budget_s: float) -> None:
        self.start, self.budget = time.perf_counter(), budget_s

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.start)


def sync(device: Any) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: Any, repeats: int, warmup: int = 1) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs, synchronised."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return float(statistics.median(times))


def model_config(name: str) -> dict[str, Any]:
    """The model section of ``examples/configs/<name>_md17_ethanol.yaml`` (without ``name``)."""
    import yaml

    raw = yaml.safe_load((ROOT / "examples" / "configs" / f"{name}_md17_ethanol.yaml").read_text())
    return {k: v for k, v in raw["model"].items() if k != "name"}


# ----------------------------------------------------------------------------- training
def training_step(potential: Any, optimizer: Any) -> Callable[[dict[str, Any]], Any]:
    """One optimiser step of PotentialTask's loss (weights 1 and 10) on a batch."""
    from physnet.data import keys as K

    def step(batch: dict[str, Any]) -> Any:
        out = potential(batch, compute_forces=True, compute_stress=False, check=False)
        n = batch[K.N_ATOMS].to(out[K.ENERGY].dtype)
        loss = ((out[K.ENERGY] - batch[K.ENERGY]) / n).pow(2).mean() + 10.0 * (
            out[K.FORCES] - batch[K.FORCES]
        ).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return step


def md17_batches(frames: list, batch_size: int, n_batches: int, cutoff: float, device: Any) -> list:
    """``n_batches`` batches of the fixed MD17 train split (perm[:1000]) of ``frames``, on ``device``."""
    import torch

    import physnet

    perm = np.random.default_rng(0).permutation(len(frames))[:1000]
    need = batch_size * n_batches
    chosen = [frames[int(perm[k % len(perm)])] for k in range(need)]
    graphs = [physnet.data.from_ase(a, cutoff, dtype=torch.float32) for a in chosen]
    batches = [physnet.data.collate(graphs[k : k + batch_size]) for k in range(0, need, batch_size)]
    return [physnet.data.to_device(b, device) for b in batches]


def section_training(args: argparse.Namespace, clock: Clock) -> dict[str, Any]:
    import torch

    import physnet
    from physnet.testing import count_host_syncs
    from physnet.train.tasks import adamw

    candidates = [Path(args.md17)] if args.md17 else list(MD17_CANDIDATES)
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        return {"skipped": f"no MD17 ethanol file (looked for {[str(p) for p in MD17_CANDIDATES]})"}
    from physnet.data.datasets import read_frames

    frames = read_frames(path)
    rows = []
    batch_sizes = (10, 100)
    for name in args.models.split(",") if args.models else TRAIN_MODELS:
        hparams = model_config(name)
        for bs in batch_sizes:
            if clock.left() < 0:
                rows.append({"model": name, "batch": bs, "skipped": "time budget"})
                continue
            n_batches = 2 if args.quick else 6
            batches = md17_batches(frames, bs, n_batches, float(hparams.get("cutoff", 5.0)), args.device)
            torch.manual_seed(0)
            potential = physnet.Potential(physnet.models.build(name, species=["H", "C", "O"], **hparams))
            potential = potential.to(args.device).train()
            step = training_step(potential, adamw(potential.parameters(), lr=1e-4))
            with count_host_syncs() as syncs:
                step(batches[0])

            def epoch(step: Callable = step, batches: list = batches) -> None:
                for batch in batches:
                    step(batch)

            seconds = timed(epoch, args.device, args.repeats)
            row = {
                "model": name,
                "batch": bs,
                "frames_per_s": bs * len(batches) / seconds,
                "ms_per_step": 1e3 * seconds / len(batches),
                "host_syncs_per_step": sum(syncs.values()),
                "params": sum(p.numel() for p in potential.parameters()),
            }
            rows.append(row)
            print(f"training {name:18s} batch {bs:4d}: {row['frames_per_s']:9.1f} frames/s", flush=True)
            del potential, batches
    ratio = {}
    if args.cpu_reference and Path(args.cpu_reference).is_file():
        ref = json.loads(Path(args.cpu_reference).read_text())
        cpu = {(r["model"], r["batch"]): r.get("frames_per_s") for r in ref["training"]["rows"]}
        for r in rows:
            base = cpu.get((r["model"], r["batch"]))
            if base and "frames_per_s" in r:
                r["cpu_frames_per_s"] = base
                r["speedup_vs_cpu"] = r["frames_per_s"] / base
        ratio = {"cpu_reference": str(args.cpu_reference), "cpu_machine": ref.get("machine", {})}
    return {"data": str(path), "rows": rows, **ratio}


# ----------------------------------------------------------------------------- scaling
def scaling_potential(kind: str, device: Any) -> Any:
    import torch

    import physnet

    torch.manual_seed(0)
    if kind == "schnet":
        model = physnet.models.build("schnet", species=["Cu"], **SCHNET)
    else:
        model = physnet.models.build("behler_parrinello", species=["Cu"], hidden=BP_HIDDEN["Cu"], **BP)
    return physnet.Potential(model).frozen(device=device, dtype=torch.float32)


def section_scaling(args: argparse.Namespace, clock: Clock) -> dict[str, Any]:
    import torch

    import physnet

    cuda = torch.device(args.device).type == "cuda"
    sizes = QUICK_SCALING_SIZES if args.quick else SCALING_SIZES
    out: dict[str, Any] = {"rows": [], "slopes": {}}
    for kind in ("schnet", "behler_parrinello"):
        potential = scaling_potential(kind, args.device)
        points = []
        for n in sizes:
            if clock.left() < 0:
                out["rows"].append({"model": kind, "n_atoms": n, "skipped": "time budget"})
                break
            atoms = cu_box(n)
            graph = None
            try:
                if cuda:
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(args.device)
                base = torch.cuda.memory_allocated(args.device) if cuda else 0
                start = time.perf_counter()
                graph = physnet.data.from_ase(
                    atoms, potential.cutoff, dtype=torch.float32, device=args.device, targets=False
                )
                sync(args.device)
                neighbour_s = time.perf_counter() - start

                def call(graph: dict = graph, potential: Any = potential) -> None:
                    potential(graph, compute_forces=True, compute_stress=False, check=False)

                seconds = timed(call, args.device, args.repeats)
                peak = (torch.cuda.max_memory_allocated(args.device) - base) / 2**20 if cuda else None
            except torch.cuda.OutOfMemoryError as err:
                out["rows"].append({"model": kind, "n_atoms": len(atoms), "oom": str(err).splitlines()[0]})
                print(f"scaling {kind:18s} {len(atoms):8d} atoms: out of memory", flush=True)
                break
            finally:
                del graph
            row = {
                "model": kind,
                "n_atoms": len(atoms),
                "ms_per_call": 1e3 * seconds,
                "us_per_atom": 1e6 * seconds / len(atoms),
                "neighbour_list_ms": 1e3 * neighbour_s,
                "peak_mb": peak,
            }
            points.append(row)
            out["rows"].append(row)
            print(f"scaling {kind:18s} {len(atoms):8d} atoms: {row['ms_per_call']:10.2f} ms/call", flush=True)
            if seconds * (args.repeats + 1) * 4 > max(clock.left(), 0):  # the next size (~4x) would not fit
                out["rows"].append({"model": kind, "n_atoms": None, "skipped": "time budget for larger"})
                break
        n = [p["n_atoms"] for p in points]
        out["slopes"][kind] = {
            "time": loglog_slope(n, [p["ms_per_call"] for p in points], min_size=100 if args.quick else 1e3),
            "memory": loglog_slope(n, [p["peak_mb"] for p in points], min_size=1e3) if cuda else None,
        }
        del potential
    return out


# ----------------------------------------------------------------------------- MD
def section_md(args: argparse.Namespace, clock: Clock) -> dict[str, Any]:
    import torch
    from ase import units
    from ase.md.verlet import VelocityVerlet

    import physnet
    from physnet.md.velocities import thermalize

    rows = []
    torch.manual_seed(0)
    potential = physnet.Potential(physnet.models.build("schnet", species=["Cu"], **SCHNET))
    for n in QUICK_MD_SIZES if args.quick else MD_SIZES:
        if clock.left() < 0:
            rows.append({"n_atoms": n, "skipped": "time budget"})
            continue
        atoms = cu_box(n)
        thermalize(atoms, 300.0, seed=0)
        try:
            atoms.calc = physnet.Calculator(potential, device=args.device, dtype=torch.float32)
            dyn = VelocityVerlet(atoms, 1.0 * units.fs)
            steps = 2 if args.quick else (20 if n <= 5000 else 10)
            seconds = timed(
                lambda dyn=dyn, steps=steps: dyn.run(steps), args.device, max(args.repeats - 1, 1)
            )
        except torch.cuda.OutOfMemoryError as err:
            rows.append({"n_atoms": len(atoms), "oom": str(err).splitlines()[0]})
            continue
        rows.append(
            {
                "n_atoms": len(atoms),
                "steps_per_s": steps / seconds,
                "ms_per_step": 1e3 * seconds / steps,
                "neighbour_builds": atoms.calc.n_neighbor_builds,
            }
        )
        print(f"md Cu {len(atoms):7d} atoms: {steps / seconds:8.2f} steps/s", flush=True)
    return {"model": "schnet", "params": SCHNET, "rows": rows}


# ----------------------------------------------------------------------------- GNS
def section_gns(args: argparse.Namespace, clock: Clock) -> dict[str, Any]:
    import torch

    from physnet.data import keys as K
    from physnet.data.trajectories import WindowDataset, collate_windows, load_trajectories
    from physnet.models.simulator import rollout
    from physnet.train.gns import GNSTask, build_from_data, load_gns_config

    fixture = ROOT / "data" / "mpm_water" / "water_fixture.npz"
    overrides = [
        "model.latent_size=128",
        "model.hidden_size=128",
        "model.n_message_passing=10",
        "model.body_acceleration=[0.0, -3.92e-5]",  # gravity for the fixture's 2 ms frames
    ]
    if args.quick:
        overrides += ["model.latent_size=16", "model.hidden_size=16", "model.n_message_passing=2"]
    cfg = load_gns_config(ROOT / "examples" / "configs" / "gns_water.yaml", overrides)
    data = load_trajectories(fixture)
    torch.manual_seed(0)
    model = build_from_data(cfg, data).to(args.device)
    task = GNSTask(model, lr=1e-4, noise_std=cfg.task.noise_std, seed=0)
    windows = WindowDataset(data, model.window)
    rng = np.random.default_rng(0)
    n_steps = 3 if args.quick else 20
    batches = []
    for _ in range(n_steps):
        batch = collate_windows([windows[int(i)] for i in rng.integers(0, len(windows), 2)])
        batches.append({k: v.to(args.device) for k, v in batch.items()})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def train() -> None:
        for batch in batches:
            inputs, target, _ = task.training_example(batch)
            loss = task.loss(model({**batch, K.POS_HISTORY: inputs}), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    model.train()
    train_s = timed(train, args.device, args.repeats)
    model.eval()
    window = data.positions[0][: model.window].transpose(0, 1).contiguous().to(args.device)  # [n, C, dim]
    ptype = data.particle_type[0].to(args.device)
    roll_steps = 5 if args.quick else 50

    @torch.no_grad()
    def roll() -> None:
        rollout(model, window, roll_steps, particle_type=ptype)

    roll_s = timed(roll, args.device, max(args.repeats - 1, 1))
    out = {
        "particles": int(window.shape[0]),
        "latent_size": model.hparams.get("latent_size"),
        "message_passing": model.hparams.get("n_message_passing"),
        "params": sum(p.numel() for p in model.parameters()),
        "train_steps_per_s": n_steps / train_s,
        "rollout_steps_per_s": roll_steps / roll_s,
        "batch_windows": 2,
    }
    print(
        f"gns: {out['train_steps_per_s']:.1f} train steps/s, {out['rollout_steps_per_s']:.1f} rollout steps/s"
    )
    return out


# ----------------------------------------------------------------------------- schnetpack
def section_schnetpack(args: argparse.Namespace, clock: Clock) -> dict[str, Any]:
    """schnetpack's SchNet of the same size as physnet's (examples/configs/schnet_md17_ethanol.yaml)
    in the same training step on the same MD17 frames; its batches (ASE neighbour list) are
    built on the CPU and moved to the device before timing, as physnet's are."""
    import typing

    import torch
    import torch.utils.data.dataloader as dataloader

    # schnetpack 2.1.1 imports a type variable that torch's dataloader no longer defines
    if not hasattr(dataloader, "T_co"):
        dataloader.T_co = typing.TypeVar("T_co", covariant=True)
    try:
        import schnetpack as spk
        import schnetpack.transform as trn
    except Exception as err:  # not carried, or does not load with this torch
        return {"skipped": f"schnetpack does not import here: {type(err).__name__}: {err}"[:300]}
    from physnet.data.datasets import read_frames

    candidates = [Path(args.md17)] if args.md17 else list(MD17_CANDIDATES)
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        return {"skipped": "no MD17 ethanol file"}
    frames = read_frames(path)
    perm = np.random.default_rng(0).permutation(len(frames))[:1000]
    hp = model_config("schnet")
    cutoff = float(hp["cutoff"])
    rows = []
    for bs in (10, 100):
        if clock.left() < 0:
            rows.append({"batch": bs, "skipped": "time budget"})
            continue
        torch.manual_seed(0)
        model = spk.model.NeuralNetworkPotential(
            representation=spk.representation.SchNet(
                n_atom_basis=hp["n_features"],
                n_interactions=hp["n_interactions"],
                radial_basis=spk.nn.GaussianRBF(n_rbf=hp["n_rbf"], cutoff=cutoff),
                cutoff_fn=spk.nn.CosineCutoff(cutoff),
                n_filters=hp["n_filters"],
            ),
            input_modules=[spk.atomistic.PairwiseDistances()],
            output_modules=[
                spk.atomistic.Atomwise(n_in=hp["n_features"], output_key="energy"),
                spk.atomistic.Forces(energy_key="energy", force_key="forces"),
            ],
        ).to(args.device)
        converter = spk.interfaces.AtomsConverter(
            neighbor_list=trn.ASENeighborList(cutoff=cutoff), dtype=torch.float32
        )
        n_batches = 2 if args.quick else 6
        chosen = [frames[int(perm[k % len(perm)])] for k in range(bs * n_batches)]
        batches = []
        for k in range(0, len(chosen), bs):
            chunk = chosen[k : k + bs]
            inputs = converter(chunk)
            inputs["energy_t"] = torch.tensor([a.get_potential_energy() for a in chunk], dtype=torch.float32)
            inputs["forces_t"] = torch.tensor(
                np.concatenate([a.get_forces() for a in chunk]), dtype=torch.float32
            )
            batches.append({k: v.to(args.device) for k, v in inputs.items()})
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        n_atoms = batches[0]["_n_atoms"].to(torch.float32)

        def epoch(
            model: Any = model, batches: list = batches, optimizer: Any = optimizer, n_atoms: Any = n_atoms
        ) -> None:
            for inputs in batches:
                out = model(dict(inputs))
                loss = ((out["energy"] - inputs["energy_t"]) / n_atoms).pow(2).mean() + 10.0 * (
                    out["forces"] - inputs["forces_t"]
                ).pow(2).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

        seconds = timed(epoch, args.device, args.repeats)
        rows.append(
            {
                "batch": bs,
                "frames_per_s": bs * len(batches) / seconds,
                "params": sum(p.numel() for p in model.parameters()),
            }
        )
        print(f"schnetpack SchNet batch {bs:4d}: {rows[-1]['frames_per_s']:9.1f} frames/s", flush=True)
    return {"version": spk.__version__ if hasattr(spk, "__version__") else "?", "rows": rows}


# ----------------------------------------------------------------------------- report
def machine(device: str) -> dict[str, Any]:
    import torch

    info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "device": device,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    if torch.device(device).type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda
        )
    return info


def tables(results: dict[str, Any]) -> str:
    parts = [f"device: {json.dumps(results['machine'])}"]
    t = results.get("training", {})
    if "rows" in t:
        keys = ("frames_per_s", "ms_per_step", "host_syncs_per_step", "cpu_frames_per_s", "speedup_vs_cpu")
        rows = [[r["model"], r["batch"], *(r.get(k) for k in keys), r.get("skipped", "")] for r in t["rows"]]
        header = [
            "model",
            "batch",
            "frames/s",
            "ms/step",
            "host syncs/step",
            "CPU frames/s",
            "vs CPU",
            "note",
        ]
        parts.append("### Training on MD17 ethanol\n\n" + markdown_table(header, rows))
    s = results.get("scaling", {})
    if "rows" in s:
        keys = ("n_atoms", "ms_per_call", "us_per_atom", "neighbour_list_ms", "peak_mb")
        rows = [
            [r["model"], *(r.get(k) for k in keys), "out of memory" if "oom" in r else r.get("skipped", "")]
            for r in s["rows"]
        ]
        for kind, slope in s["slopes"].items():
            rows.append([kind, "slope", slope["time"], "", "", slope["memory"], "log-log"])
        header = ["model", "atoms", "E+F ms/call", "µs/atom", "neighbour list ms", "peak MB", "note"]
        parts.append("### Energy + forces vs system size (Cu fcc)\n\n" + markdown_table(header, rows))
    m = results.get("md", {})
    if "rows" in m:
        rows = [[r["n_atoms"], r.get("steps_per_s"), r.get("ms_per_step"), r.get("skipped", r.get("oom", ""))]
                for r in m["rows"]]  # fmt: skip
        parts.append(
            "### ASE MD through physnet.Calculator (SchNet, float32)\n\n"
            + markdown_table(["Cu atoms", "steps/s", "ms/step", "note"], rows)
        )
    g = results.get("gns", {})
    if "train_steps_per_s" in g:
        rows = [[g["particles"], g["latent_size"], g["message_passing"], g["train_steps_per_s"],
                 g["rollout_steps_per_s"]]]  # fmt: skip
        header = ["particles", "latent", "M", "train steps/s", "rollout steps/s"]
        parts.append("### GNS on the water fixture\n\n" + markdown_table(header, rows))
    p = results.get("schnetpack", {})
    if "rows" in p:
        ours = {r["batch"]: r.get("frames_per_s") for r in t.get("rows", []) if r.get("model") == "schnet"}
        rows = []
        for r in p["rows"]:
            mine, theirs = ours.get(r["batch"]), r.get("frames_per_s")
            ratio = mine / theirs if mine and theirs else None
            rows.append([r["batch"], mine, theirs, ratio, r.get("params"), r.get("skipped", "")])
        header = [
            "batch",
            "physnet frames/s",
            "schnetpack frames/s",
            "physnet / schnetpack",
            "spk params",
            "note",
        ]
        parts.append(
            f"### SchNet training step, physnet vs schnetpack {p.get('version')}\n\n"
            + markdown_table(header, rows)
        )
    for name in SECTIONS:
        sec = results.get(name, {})
        if isinstance(sec, dict) and ("skipped" in sec or "error" in sec):
            parts.append(f"{name}: {sec.get('skipped') or sec.get('error')}")
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="torch device (cuda, cuda:1, cpu)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few steps: a dry run")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS}")
    parser.add_argument("--models", default="", help="training: comma-separated models (default: all four)")
    parser.add_argument("--out", default=os.environ.get("OUT", "gpu_benchmark_out"), help="output folder")
    parser.add_argument("--budget-s", type=float, default=300.0, help="wall-clock budget of the whole run")
    parser.add_argument("--repeats", type=int, default=0, help="timed repeats (default 3, quick 2)")
    parser.add_argument(
        "--md17", default="", help="MD17 ethanol extxyz (default: .gpu_carry/data, downloads/ or ../shared)"
    )
    parser.add_argument(
        "--cpu-reference", default="", help="benchmark.json of a --device cpu run, for ratios"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 (default: off, as physnet train)")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (2 if args.quick else 3)
    unknown = set(args.only.split(",")) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}; choose from {SECTIONS}")

    import torch

    from physnet.train.config import apply_tf32

    if args.threads:
        torch.set_num_threads(args.threads)
    apply_tf32(args.tf32)
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here; use --device cpu", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    clock = Clock(args.budget_s)
    results: dict[str, Any] = {"machine": machine(args.device), "args": vars(args)}
    runners = {"training": section_training, "scaling": section_scaling, "md": section_md, "gns": section_gns,
               "schnetpack": section_schnetpack}  # fmt: skip
    selected = [s for s in SECTIONS if s in args.only.split(",")]
    for k, name in enumerate(selected):
        share = Clock(clock.left() / (len(selected) - k))  # what is left, split over what is left
        start = time.perf_counter()
        try:
            results[name] = runners[name](args, share)
        except Exception as err:  # one section's failure must not cost the others
            results[name] = {"error": f"{type(err).__name__}: {err}"[:500]}
            print(f"{name} failed: {results[name]['error']}", flush=True)
        results[name]["seconds"] = round(time.perf_counter() - start, 1)
        (out_dir / "benchmark.json").write_text(json.dumps(results, indent=1, default=str))
    text = tables(results)
    (out_dir / "benchmark.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
