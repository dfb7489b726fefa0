"""One round of active learning on the embedded cu_emt set (108-atom fcc Cu, EMT, 300-900 K).

1. train a committee of SchNets (``trainer.committee``) on ``--train`` frames;
2. run ``physnet md`` with the committee, hotter than the data (``--temperature``), from a few
   training frames; every ``--log-every`` steps the frames whose largest per-atom force
   deviation exceeds the threshold are written out, and a run stops above the stop threshold;
3. label those frames with the set's own engine (ASE's EMT, as the set was made);
4. retrain the committee from scratch, same budget, on the training frames plus the new ones;
5. compare the test force MAE of the committee mean before and after (same test frames).

The selection threshold is ``--select-factor`` times the largest per-atom force deviation the
first committee shows on the validation frames (data it was not trained on, but from the
set's own distribution); the stop threshold ``--stop-factor`` times that.

    python examples/active_learning_cu_emt.py            # about 10 CPU-minutes at 1 thread
    python examples/active_learning_cu_emt.py --quick    # a smoke run of a few seconds
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import physnet
from physnet.cli import main as physnet_main
from physnet.data import embedded
from physnet.train.config import load_config
from physnet.train.fit import train


def train_committee(run: Path, data: Path, split: Path, args: argparse.Namespace) -> dict:
    overrides = [
        f"run_dir={run}",
        f"data.path={data}",
        "data.energy_unit=eV",
        "data.length_unit=Å",
        f"data.split_file={split}",
        "data.batch_size=5",
        "model.name=schnet",
        "model.cutoff=4.0",
        f"model.n_features={args.features}",
        f"model.n_filters={args.features}",
        "model.n_interactions=2",
        "model.n_rbf=16",
        "task.warmup_steps=20",
        f"trainer.committee={args.members}",
        f"trainer.max_steps={args.steps}",
        "trainer.max_epochs=100000",
        "trainer.threads=1",
        "trainer.progress_bar=false",
        f"trainer.seed={args.seed}",
    ]
    train(load_config(None, overrides))
    return json.loads((run / "committee_metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/active_learning_cu_emt")
    parser.add_argument("--train", type=int, default=100, help="initial training frames")
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--steps", type=int, default=1500, help="optimiser steps per member (both rounds)")
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=1500.0, help="MD temperature in K")
    parser.add_argument("--md-runs", type=int, default=4, help="MD runs, each from another training frame")
    parser.add_argument("--md-steps", type=int, default=400, help="steps of 2 fs per MD run")
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--select-factor", type=float, default=1.0)
    parser.add_argument("--stop-factor", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny budgets: checks that the loop runs")
    args = parser.parse_args()
    if args.quick:
        args.train, args.members, args.steps, args.features = 10, 2, 3, 8
        args.md_runs, args.md_steps, args.log_every = 1, 10, 5
    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frames = embedded.load("cu_emt")
    n = len(frames)
    perm = np.random.default_rng(args.seed).permutation(n)
    n_val, n_test = (20, 100) if not args.quick else (5, 10)
    split = {
        "train": perm[: args.train].tolist(),
        "val": perm[args.train : args.train + n_val].tolist(),
        "test": perm[n - n_test :].tolist(),
    }
    data0 = embedded.path("cu_emt")
    split0 = out / "split_round0.json"
    split0.write_text(json.dumps(split))

    # 1. the first committee
    before = train_committee(out / "round0", Path(data0), split0, args)

    # thresholds from the committee's spread on validation frames (the set's own distribution)
    atoms_val = [frames[i] for i in split["val"]]
    calc = physnet.Calculator(out / "round0")
    val_dev = []
    for atoms in atoms_val:
        a = atoms.copy()
        a.calc = calc
        a.get_forces()
        val_dev.append(calc.results["max_forces_std"])
    select = args.select_factor * max(val_dev)
    stop = args.stop_factor * max(val_dev)
    print(
        f"\nlargest per-atom force deviation on {len(val_dev)} validation frames: "
        f"max {max(val_dev):.4f} eV/Å; "
        f"select above {select:.4f}, stop above {stop:.4f} eV/Å"
    )

    # 2. MD with the committee, hotter than the data, from a few training frames
    from ase.io import read, write

    selected = []
    for r in range(args.md_runs):
        start = out / f"md_start_{r}.extxyz"
        a = frames[split["train"][r]].copy()
        a.calc = None
        write(start, a)
        traj = out / f"md_{r}.traj"
        code = physnet_main(
            ["md", str(out / "round0"), str(start), "--temperature", str(args.temperature)]
            + ["--steps", str(args.md_steps), "--dt", "2", "--log-every", str(args.log_every)]
            + ["--select-force-uncertainty", f"{select:.6g}", "--max-force-uncertainty", f"{stop:.6g}"]
            + ["--trajectory", str(traj), "--seed", str(args.seed + r), "--no-progress", "--overwrite"]
        )
        frames_file = out / f"md_{r}_uncertain.extxyz"
        if code not in (0, 1):
            raise SystemExit(f"physnet md failed with exit code {code}")
        if frames_file.is_file():
            selected += read(frames_file, ":")
    print(f"\n{len(selected)} frames selected for labelling")
    if not selected:
        raise SystemExit("no frame crossed the threshold: lower --select-factor or raise --temperature")

    # 3. label them with the set's engine
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    labelled = []
    for a in selected:
        a = a.copy()
        a.calc = EMT()
        results = {"energy": a.get_potential_energy(), "forces": a.get_forces(), "stress": a.get_stress()}
        a.calc = SinglePointCalculator(a, **results)
        labelled.append(a)
    data1 = out / "cu_emt_plus_selected.extxyz"
    write(data1, list(read(data0, ":")) + labelled)
    new = list(range(n, n + len(labelled)))
    split1 = out / "split_round1.json"
    split1.write_text(json.dumps({**split, "train": split["train"] + new}))

    # 4. retrain from scratch, same budget, on the enlarged training set
    after = train_committee(out / "round1", data1, split1, args)

    # 5. before / after on the same test frames
    summary = {
        "train_frames": [args.train, args.train + len(labelled)],
        "test_frames": len(split["test"]),
        "selected": len(labelled),
        "select_threshold_eV_A": select,
        "stop_threshold_eV_A": stop,
        "test_force_mae_eV_A": [before["mean"]["forces_mae"], after["mean"]["forces_mae"]],
        "test_energy_per_atom_mae_eV": [
            before["mean"]["energy_per_atom_mae"],
            after["mean"]["energy_per_atom_mae"],
        ],
        "members_force_mae_eV_A": [
            [m["forces_mae"] for m in before["members"]],
            [m["forces_mae"] for m in after["members"]],
        ],
        "wall_time_s": time.perf_counter() - started,
    }
    (out / "active_learning.json").write_text(json.dumps(summary, indent=2))
    b, a = summary["test_force_mae_eV_A"]
    print(
        f"\nactive learning on cu_emt: {args.train} -> {args.train + len(labelled)} training frames "
        f"({len(labelled)} selected by the committee at {args.temperature:g} K and labelled with EMT); "
        f"committee-mean test force MAE on {len(split['test'])} frames: {b:.5g} -> {a:.5g} eV/Å "
        f"({args.members} members x {args.steps} steps per round; {summary['wall_time_s']:.0f} s)"
    )


if __name__ == "__main__":
    main()
