#!/usr/bin/env bash
# Train a Behler-Parrinello / ANI-style potential (ANI-1x symmetry functions, per-element
# networks 160-128-96, CELU) on 2000 frames of MD17 ethanol (physnet data) with its fixed 1000/100/900 split
# for 20 minutes of wall time, evaluate the test frames, then run 2 ps of Langevin MD at 300 K
# with the result. Run from the repository root after `bash scripts/install.sh`; extra
# arguments are config overrides, e.g. trainer.max_time_minutes=2 trainer.threads=1.
set -euo pipefail
# the data: 2000 random frames of MD17 ethanol, downloaded once with a SHA-256 check
[ -f downloads/md17_ethanol_2000.extxyz ] ||
    .venv/bin/physnet data md17_ethanol --output downloads --frames 2000
RUN=${RUN:-runs/behler_parrinello_md17_ethanol}
.venv/bin/physnet train examples/configs/behler_parrinello_md17_ethanol.yaml run_dir="$RUN" "$@"
.venv/bin/physnet md "$RUN/potential.pt" CCO --steps 4000 --temperature 300 --trajectory "$RUN/md.traj"
