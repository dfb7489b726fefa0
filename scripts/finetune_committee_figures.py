"""Acceptance figures of fine-tuning and committees (docs/experiments/finetune_and_committees.md).

Stages (each runs ``physnet train`` as a user would and prints the figures from its metrics files):

- ``pretrain``: SchNet on the embedded GFN2-xTB ethanol set (eV), ``--pretrain-minutes``;
- ``finetune``: that SchNet fine-tuned on 50 MD17 ethanol frames (DFT, kcal/mol) for
  ``--steps`` optimiser steps, and the same SchNet from scratch on the same 50 frames for the
  same steps; force MAE of both on the MD17 test split;
- ``committee``: a 4-member committee (``trainer.committee=4``) on the MD17 train split, each
  member ``--member-steps`` optimiser steps (a step budget: a wall-time budget on a shared machine
  gave the members unequal training); Spearman rank correlation between the per-frame force deviation
  and the actual force error on the test split, a plot, and the committee mean's MAE against
  each member's.

The MD17 split is the fixed one of the shared data's README: perm = default_rng(0).permutation(2000),
train perm[:1000], val perm[1000:1100], test perm[1100:]. Runs go under ``--out``.

    python scripts/finetune_committee_figures.py --stages pretrain finetune committee
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MD17 = ROOT.parent / "shared" / "data" / "md17_ethanol_2000.xyz"
MODEL = [
    "model.name=schnet",
    "model.cutoff=5.0",
    "model.n_features=64",
    "model.n_filters=64",
    "model.n_interactions=3",
    "model.n_rbf=20",
]
COMMON = [
    "trainer.threads=1",
    "trainer.progress_bar=false",
    "trainer.max_epochs=100000",
    "data.batch_size=10",
]


def physnet_train(overrides: list[str]) -> None:
    cmd = [sys.executable, "-m", "physnet.cli", "train", *overrides]
    print("$ physnet train " + " ".join(overrides), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)


def md17_split(path: Path, n_train: int) -> Path:
    perm = np.random.default_rng(0).permutation(2000)
    split = {"train": perm[:n_train].tolist(), "val": perm[1000:1100].tolist(), "test": perm[1100:].tolist()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(split))
    return path


def test_mae(potential_path: Path) -> float:
    metrics = json.loads((potential_path.parent / "test_metrics.json").read_text())
    return float(metrics["test"]["forces_mae"])


def stage_pretrain(out: Path, args: argparse.Namespace) -> None:
    physnet_train(
        [
            f"run_dir={out / 'pretrain_gfn2'}",
            "data.path=ethanol_gfn2",
            "data.energy_unit=eV",
            "data.length_unit=Å",
            "data.train=1000",
            "data.val=100",
            "data.test=900",
            f"trainer.max_time_minutes={args.pretrain_minutes}",
            *MODEL,
            *COMMON,
        ]
    )


def stage_finetune(out: Path, args: argparse.Namespace) -> None:
    split = md17_split(out / "md17_split_50.json", 50)
    common = [
        f"data.path={MD17}",
        "data.energy_unit=kcal/mol",
        "data.length_unit=Å",
        f"data.split_file={split}",
        f"trainer.max_steps={args.steps}",
        "trainer.check_val_every_n_epoch=10",
        "task.warmup_steps=50",
        *COMMON,
    ]
    pre = out / "pretrain_gfn2" / "potential.pt"
    runs = {
        "fine-tuned": [f"run_dir={out / 'finetune_md17_50'}", f"model.init_from={pre}", "model.name=schnet"],
        "from scratch": [f"run_dir={out / 'scratch_md17_50'}", *MODEL],
    }
    for overrides in runs.values():
        physnet_train([*overrides, *common])
    for name, overrides in runs.items():
        run = Path(overrides[0].split("=", 1)[1])
        mae = test_mae(run / "potential.pt")
        print(f"{name}: MD17 test force MAE {mae:.3f} kcal/mol/Å ({args.steps} steps)")


def stage_committee(out: Path, args: argparse.Namespace) -> None:
    import shutil

    split = md17_split(out / "md17_split_1000.json", 1000)
    run = out / "committee_md17"
    physnet_train(
        [
            f"run_dir={run}",
            f"data.path={MD17}",
            "data.energy_unit=kcal/mol",
            "data.length_unit=Å",
            f"data.split_file={split}",
            "trainer.committee=4",
            f"trainer.max_steps={args.member_steps}",
            *MODEL,
            *COMMON,
        ]
    )
    report = json.loads((run / "committee_metrics.json").read_text())
    members = [m["forces_mae"] for m in report["members"]]
    n = len(report["frame_force_mae"])
    print(f"committee of {len(members)} SchNets on {n} MD17 test frames (kcal/mol/Å):")
    print("  member force MAE: " + ", ".join(f"{m:.3f}" for m in members))
    print(f"  committee mean force MAE: {report['mean']['forces_mae']:.3f} (best member {min(members):.3f})")
    rho = report["spearman_deviation_error"]
    print(f"  Spearman rho(frame's largest per-atom force deviation, frame force MAE) = {rho:.3f}")
    png = ROOT / "docs" / "committee_calibration_md17.png"
    shutil.copyfile(run / "committee_calibration.png", png)
    print(f"  plot: {png}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", nargs="+", default=["pretrain", "finetune", "committee"])
    parser.add_argument("--out", default="runs/finetune_committee")
    parser.add_argument("--pretrain-minutes", type=float, default=6.0)
    parser.add_argument("--steps", type=int, default=1500, help="fine-tuning / from-scratch optimiser steps")
    parser.add_argument("--member-steps", type=int, default=4000, help="optimiser steps per committee member")
    args = parser.parse_args()
    if not MD17.is_file() and set(args.stages) - {"pretrain"}:
        sys.exit(f"{MD17} is absent: the finetune and committee stages need the shared MD17 ethanol file")
    out = Path(args.out).resolve()
    for stage in args.stages:
        stages = {"pretrain": stage_pretrain, "finetune": stage_finetune, "committee": stage_committee}
        stages[stage](out, args)


if __name__ == "__main__":
    main()
