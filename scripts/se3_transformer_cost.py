"""Cost of the SE(3)-Transformer potential: ms per energy + forces call and peak memory.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/se3_transformer_cost.py [--threads 1] [--repeats 20]
    OMP_NUM_THREADS=1 .venv/bin/python scripts/se3_transformer_cost.py --config CONFIG --scaling

Builds the model of ``examples/configs/se3_transformer_md17_ethanol.yaml`` (or of ``--config``, or
``--hparams``) with random weights (cost does not depend on them) and times :class:`physnet.Potential`
calls (energy and forces by autograd, no stress, eval mode) on two systems, each in a fresh subprocess:

- ethanol (RDKit geometry, 9 atoms, every pair within the 5 Å cutoff);
- a 500-atom periodic fcc Cu box (5 x 5 x 5 cubic cells, a = 3.61 Å, rattled by 0.05 Å).

With ``--scaling``: fcc Cu boxes of 864, 2048 and 4000 atoms (6^3, 8^3, 10^3 cubic cells) instead, and
the slope of log(ms/call) against log(atoms) fitted over them (1 = cost linear in the number of atoms).

Reported: the neighbour-list size, the median (and minimum) wall time of ``--repeats`` calls after
``--warmup`` calls (the graph is built once, outside the timing), the median process CPU time per call
(less sensitive to other processes on a shared machine), and peak memory as the increase of the process's
maximum resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) over its value just before
the first call, i.e. the transient memory of one forward + backward pass (edge-wise tensor products,
autograd buffers), with the model, the graph and torch's own footprint excluded.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[1] / "examples" / "configs" / "se3_transformer_md17_ethanol.yaml"


def _system(name: str):  # noqa: ANN202 (ase.Atoms, imported lazily)
    import numpy as np
    from ase.build import bulk

    import physnet

    if name == "ethanol":
        return physnet.data.from_smiles("CCO")[0]
    n = 5 if name == "cu500" else int(name.removeprefix("cu_n"))
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((n, n, n))
    atoms.positions += np.random.default_rng(0).normal(scale=0.05, size=atoms.positions.shape)
    return atoms


def worker(args: argparse.Namespace) -> dict[str, float]:
    """Measure one system in this process; returns the figures."""
    import torch
    import yaml

    import physnet
    from physnet.data import keys as K

    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    hparams = (
        json.loads(args.hparams) if args.hparams else yaml.safe_load(Path(args.config).read_text())["model"]
    )
    name = hparams.get("name", "se3_transformer")
    hparams = {k: v for k, v in hparams.items() if k != "name"}
    torch.manual_seed(0)
    model = physnet.models.build(name, species=["H", "C", "O", "Cu"], **hparams)
    potential = physnet.Potential(model).to(dtype).eval()
    atoms = _system(args.worker)
    graph = physnet.data.from_ase(atoms, potential.cutoff, dtype=dtype, targets=False)
    base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, cpu_times = [], []
    for n in range(args.warmup + args.repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        out = potential(graph, compute_forces=True, compute_stress=False)
        float(out[K.ENERGY].sum()), float(out[K.FORCES].abs().sum())  # noqa: B018 (force evaluation)
        if n >= args.warmup:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "atoms": len(atoms),
        "edges": int(graph[K.EDGE_INDEX].shape[1]),
        "ms_median": 1000 * statistics.median(times),
        "ms_min": 1000 * min(times),
        "cpu_ms_median": 1000 * statistics.median(cpu_times),
        "peak_mib": (peak_kib - base_kib) / 1024,
        "rss_mib": peak_kib / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--hparams", default="", help="JSON model keyword arguments (default: the example config)"
    )
    parser.add_argument(
        "--config",
        default=str(CONFIG),
        help="YAML config(s) whose model section is timed, comma separated (any energy model, e.g. a SchNet "
        "config as a reference); one table row per config and system",
    )
    parser.add_argument(
        "--scaling", action="store_true", help="time Cu boxes of 864-4000 atoms and print the log-log slope"
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args)))
        return 0

    print(f"SE(3)-Transformer cost, {args.dtype}, {args.threads} thread(s), median of {args.repeats} calls")
    header = ("config", "system", "atoms", "edges", "ms/call", "min ms", "CPU ms", "peak MiB")
    print(
        f"{header[0]:36s} {header[1]:28s} "
        + " ".join(f"{h:>{w}s}" for h, w in zip(header[2:], (6, 7, 9, 8, 8, 9), strict=True))
    )
    systems = [("ethanol", "ethanol (molecule)"), ("cu500", "Cu fcc 5x5x5 (periodic)")]
    if args.scaling:
        systems = [(f"cu_n{n}", f"Cu fcc {n}x{n}x{n} (periodic)") for n in (6, 8, 10)]
    configs = args.config.split(",")
    sizes: dict[str, list[int]] = {c: [] for c in configs}
    costs: dict[str, list[float]] = {c: [] for c in configs}
    for (name, label), config in ((s, c) for s in systems for c in configs):
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            name,
            "--threads",
            str(args.threads),
            "--dtype",
            args.dtype,
            "--config",
            config,
        ]
        cmd += ["--repeats", str(args.repeats), "--warmup", str(args.warmup), "--hparams", args.hparams]
        result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        print(
            f"{Path(config).stem[:36]:36s} {label:28s} {result['atoms']:6d} {result['edges']:7d} "
            f"{result['ms_median']:9.1f} "
            f"{result['ms_min']:8.1f} {result['cpu_ms_median']:8.1f} {result['peak_mib']:9.1f}"
        )
        sizes[config].append(result["atoms"])
        costs[config].append(result["cpu_ms_median"])
    if args.scaling:
        import numpy as np

        for config in configs:
            n, cost = sizes[config], costs[config]
            slope = np.polyfit(np.log(n), np.log(cost), 1)[0]
            print(
                f"{Path(config).stem}: log-log slope of CPU ms/call vs atoms, "
                f"{n[0]}-{n[-1]} atoms: {slope:.2f}"
            )
    print("ms/call, min ms: wall clock; CPU ms: median process CPU time per call (robust to a busy machine)")
    print("peak MiB = increase of the max resident set size during the calls (fresh process per system)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
