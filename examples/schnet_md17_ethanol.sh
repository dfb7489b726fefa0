#!/usr/bin/env bash
# Train SchNet (128 features, 3 interactions, 20 Gaussians, 5 Å) on the shared MD17 ethanol
# file with its fixed 1000/100/900 split for 20 minutes of wall time, then evaluate the
# test frames and run 2 ps of Langevin MD at 300 K with the result.
# Run from the repository root after `bash scripts/install.sh`.
set -euo pipefail
RUN=${RUN:-runs/schnet_md17_ethanol}
.venv/bin/physnet train examples/configs/schnet_md17_ethanol.yaml run_dir="$RUN" "$@"
.venv/bin/physnet md "$RUN/potential.pt" CCO --steps 4000 --temperature 300 --trajectory "$RUN/md.traj"
