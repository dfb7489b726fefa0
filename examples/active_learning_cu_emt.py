"""One round of active learning on the embedded cu_emt set (108-atom fcc Cu, EMT, 300-900 K).

The set holds EMT Langevin MD of strained fcc Cu at 300, 600 and 900 K (80 frames each, the
temperature in each frame's ``target_temperature_K``). The committee is trained on the cooler
frames only and explores the hotter regime itself:

1. train a committee of SchNets (``trainer.committee``) on ``--train`` frames drawn from the
   300 K and 600 K runs (``--val`` more of them for validation);
2. run ``physnet md`` with the committee at ``--temperature`` (900 K by default), ``--md-runs``
   Langevin runs from different training frames; every ``--log-every`` steps a frame whose
   largest per-atom force deviation exceeds the selection threshold is written out, and a run
   stops only above the (loose) stop threshold;
3. keep at most ``--max-new`` of the selected frames (those the committee disagrees on most;
   ``--pick random``: a random draw, the control with ``--select-factor 0``) and label them
   with the set's own engine (ASE's EMT, as the set was made);
4. retrain the committee from scratch, same per-member step budget, on the training frames plus
   the new ones;
5. compare, before and after, the committee mean's and each member's force MAE on two test sets
   that are never trained on: (a) the 900 K frames of the set (the regime the MD explored,
   labelled by the set's engine) and (b) the 300 and 600 K frames outside training and
   validation, with the committee's largest per-atom force deviation on the 900 K frames.

The selection threshold is ``--select-factor`` times the largest per-atom force deviation the
first committee shows on the validation frames (300/600 K frames it was not trained on); the
stop threshold is ``--stop-factor`` times that (0: never stop).

    python examples/active_learning_cu_emt.py                # see docs/experiments/finetune_and_committees.md
    python examples/active_learning_cu_emt.py --members 3    # fewer members, less CPU time
    python examples/active_learning_cu_emt.py --quick        # a smoke run of about a minute
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
from physnet.train.fit import evaluate_committee, train

CUTOFF = 4.0  # Å, the SchNets' cutoff (also used to build the evaluation graphs)


def train_committee(run: Path, data: Path, split: Path, args: argparse.Namespace) -> None:
    overrides = [
        f"run_dir={run}",
        f"data.path={data}",
        "data.energy_unit=eV",
        "data.length_unit=Å",
        f"data.split_file={split}",
        "data.batch_size=5",
        "model.name=schnet",
        f"model.cutoff={CUTOFF}",
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


def evaluate(run: Path, dataset, tests: dict[str, list[int]]) -> dict[str, dict]:
    """Committee-mean and member force MAE (eV/Å) and the largest per-atom force deviation of
    each frame (eV/Å), per test set."""
    record = json.loads((run / "committee.json").read_text())
    paths = [run / m for m in record["members"]]
    out = {}
    for name, indices in tests.items():
        report = evaluate_committee(paths, dataset, np.asarray(indices))
        dev = np.asarray(report["frame_max_force_deviation"])
        out[name] = {
            "frames": len(indices),
            "mean_force_mae": report["mean"]["forces_mae"],
            "members_force_mae": [m["forces_mae"] for m in report["members"]],
            "mean_energy_per_atom_mae": report["mean"]["energy_per_atom_mae"],
            "max_force_deviation_median": float(np.median(dev)),
            "max_force_deviation_max": float(dev.max()),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/active_learning_cu_emt")
    parser.add_argument("--train", type=int, default=100, help="initial training frames (300/600 K)")
    parser.add_argument("--val", type=int, default=20, help="validation frames (300/600 K)")
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--steps", type=int, default=1000, help="optimiser steps per member (both rounds)")
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=900.0, help="MD temperature in K")
    parser.add_argument("--md-runs", type=int, default=4, help="MD runs, each from another training frame")
    parser.add_argument("--md-steps", type=int, default=250, help="steps of 2 fs per MD run")
    parser.add_argument("--log-every", type=int, default=10, help="check (and maybe select) every N steps")
    parser.add_argument("--select-factor", type=float, default=1.0)
    parser.add_argument("--stop-factor", type=float, default=10.0, help="0: never stop a run")
    parser.add_argument("--max-new", type=int, default=40, help="most frames to label and add")
    parser.add_argument(
        "--pick",
        choices=["uncertain", "random"],
        default="uncertain",
        help="which --max-new frames to keep: the most uncertain, or (a control) a random draw",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny budgets: checks that the loop runs")
    args = parser.parse_args()
    if args.quick:
        args.train, args.val, args.members, args.steps, args.features = 10, 5, 2, 3, 8
        args.md_runs, args.md_steps, args.log_every, args.max_new = 1, 10, 5, 2
        args.select_factor = 0.0  # the untrained committee's spread says nothing: take every frame
    import torch

    from physnet.data.datasets import GraphDataset, read_frames

    torch.set_num_threads(1)
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frames = embedded.load("cu_emt")
    n = len(frames)
    temperature = np.array([float(a.info["target_temperature_K"]) for a in frames])
    rng = np.random.default_rng(args.seed)
    cool = rng.permutation(np.flatnonzero(temperature < 800.0)).tolist()
    hot = rng.permutation(np.flatnonzero(temperature > 800.0)).tolist()
    if args.train + args.val >= len(cool):
        raise SystemExit(f"--train + --val must leave test frames among the {len(cool)} 300/600 K frames")
    tests = {"900K": hot, "300-600K": cool[args.train + args.val :]}
    if args.quick:
        tests = {k: v[:10] for k, v in tests.items()}
    split = {
        "train": cool[: args.train],
        "val": cool[args.train : args.train + args.val],
        "test": tests["900K"] + tests["300-600K"],
    }
    data0 = Path(embedded.path("cu_emt"))
    split0 = out / "split_round0.json"
    split0.write_text(json.dumps(split))
    dataset = GraphDataset(read_frames(data0), CUTOFF, require=("energy", "forces"), source=str(data0))

    # 1. the first committee, on 300/600 K frames
    train_committee(out / "round0", data0, split0, args)
    before = evaluate(out / "round0", dataset, tests)

    # thresholds from the committee's spread on validation frames (300/600 K, not trained on)
    calc = physnet.Calculator(out / "round0")
    val_dev = []
    for i in split["val"]:
        a = frames[i].copy()
        a.calc = calc
        a.get_forces()
        val_dev.append(calc.results["max_forces_std"])
    select = args.select_factor * max(val_dev)
    stop = args.stop_factor * max(val_dev) if args.stop_factor > 0 else None
    print(
        f"\nlargest per-atom force deviation on {len(val_dev)} validation frames: "
        f"max {max(val_dev):.4f} eV/Å; "
        f"select above {select:.4f} eV/Å, " + (f"stop above {stop:.4f} eV/Å" if stop else "never stop")
    )

    # 2. MD with the committee at the new temperature, from a few training frames
    from ase.io import read, write

    candidates = []
    for r in range(args.md_runs):
        start = out / f"md_start_{r}.extxyz"
        a = frames[split["train"][r]].copy()
        a.calc = None
        write(start, a)
        traj = out / f"md_{r}.traj"
        thresholds = ["--select-force-uncertainty", f"{max(select, 1e-12):.6g}"]
        if stop:
            thresholds += ["--max-force-uncertainty", f"{stop:.6g}"]
        code = physnet_main(
            ["md", str(out / "round0"), str(start), "--temperature", str(args.temperature)]
            + ["--steps", str(args.md_steps), "--dt", "2", "--log-every", str(args.log_every)]
            + thresholds
            + ["--trajectory", str(traj), "--seed", str(args.seed + r), "--no-progress", "--overwrite"]
        )
        if code not in (0, 1):
            raise SystemExit(f"physnet md failed with exit code {code}")
        frames_file = out / f"md_{r}_uncertain.extxyz"
        if frames_file.is_file():
            candidates += [a for a in read(frames_file, ":") if a.info["step"] > 0]  # 0: a training frame
    if not candidates:
        raise SystemExit("no frame crossed the threshold: lower --select-factor or raise --temperature")
    candidates.sort(key=lambda a: -a.info["max_force_std_eV_A"])
    if args.pick == "random":  # the control: as many frames of the same MD, drawn at random
        keep = np.sort(rng.choice(len(candidates), min(args.max_new, len(candidates)), replace=False))
        selected = [candidates[k] for k in keep]
    else:
        selected = candidates[: args.max_new]
    deviation = [a.info["max_force_std_eV_A"] for a in selected]
    print(
        f"\n{len(candidates)} MD frames above the selection threshold; {len(selected)} "
        + ("drawn at random" if args.pick == "random" else "with the largest force deviation")
        + f" ({min(deviation):.4f} to {max(deviation):.4f} eV/Å) go to labelling"
    )

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
    train_committee(out / "round1", data1, split1, args)
    after = evaluate(out / "round1", dataset, tests)  # the same test frames, original indices

    # 5. before / after
    summary = {
        "train_frames": [args.train, args.train + len(labelled)],
        "members": args.members,
        "steps_per_member": args.steps,
        "md": {"runs": args.md_runs, "steps": args.md_steps, "temperature_K": args.temperature},
        "candidates": len(candidates),
        "selected": len(labelled),
        "pick": args.pick,
        "select_threshold_eV_A": select,
        "stop_threshold_eV_A": stop,
        "before": before,
        "after": after,
        "wall_time_s": time.perf_counter() - started,
    }
    (out / "active_learning.json").write_text(json.dumps(summary, indent=2))
    print(
        f"\nactive learning on cu_emt: {args.train} -> {args.train + len(labelled)} training frames "
        f"({len(labelled)} from committee MD at {args.temperature:g} K, labelled with EMT); "
        f"{args.members} members x {args.steps} steps per round; {summary['wall_time_s']:.0f} s"
    )
    for name, label in (("900K", "900 K"), ("300-600K", "300/600 K")):
        b, a = before[name], after[name]
        print(
            f"committee-mean test force MAE on {b['frames']} {label} frames: "
            f"{b['mean_force_mae']:.5g} -> {a['mean_force_mae']:.5g} eV/Å; members "
            + ", ".join(f"{x:.5g}" for x in b["members_force_mae"])
            + " -> "
            + ", ".join(f"{x:.5g}" for x in a["members_force_mae"])
        )
    b, a = before["900K"], after["900K"]
    print(
        f"largest per-atom force deviation on the 900 K test frames: median "
        f"{b['max_force_deviation_median']:.4g} -> {a['max_force_deviation_median']:.4g}, max "
        f"{b['max_force_deviation_max']:.4g} -> {a['max_force_deviation_max']:.4g} eV/Å"
    )


if __name__ == "__main__":
    main()
