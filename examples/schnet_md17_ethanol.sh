#!/usr/bin/env bash
# Train SchNet (128 features, 3 interactions, 20 Gaussians, 5 Å) on 2000 frames of MD17 ethanol
# (downloaded by physnet data) with its fixed 1000/100/900 split for 20 minutes of wall time, then
# evaluate the test frames and run 2 ps of Langevin MD at 300 K with the result.
# Run from the repository root after `bash scripts/install.sh`.
set -euo pipefail
# the data: 2000 random frames of MD17 ethanol, downloaded once with a SHA-256 check
[ -f downloads/md17_ethanol_2000.extxyz ] ||
    .venv/bin/physnet data md17_ethanol --output downloads --frames 2000
RUN=${RUN:-runs/schnet_md17_ethanol}
.venv/bin/physnet train examples/configs/schnet_md17_ethanol.yaml run_dir="$RUN" "$@"
.venv/bin/physnet md "$RUN/potential.pt" CCO --steps 4000 --temperature 300 --trajectory "$RUN/md.traj"
