#!/usr/bin/env bash
# Train the EGNN potential (128 features, 4 layers, 20 Gaussians, 5 Å) on 2000 frames of MD17 ethanol
# (downloaded by physnet data) with its fixed 1000/100/900 split for 20 minutes of wall time, then
# run the N-body benchmark of the EGNN paper for 10 minutes.
# Run from the repository root after `bash scripts/install.sh`.
# physnet.models.egnn is imported explicitly so that the "egnn" name is registered.
set -euo pipefail
# the data: 2000 random frames of MD17 ethanol, downloaded once with a SHA-256 check
[ -f downloads/md17_ethanol_2000.extxyz ] ||
    .venv/bin/physnet data md17_ethanol --output downloads --frames 2000
RUN=${RUN:-runs/egnn_md17_ethanol}
.venv/bin/python -c 'import sys, physnet.models.egnn; from physnet.cli import main; sys.exit(main(sys.argv[1:]))' \
    train examples/configs/egnn_md17_ethanol.yaml run_dir="$RUN" "$@"
.venv/bin/python scripts/nbody_benchmark.py --minutes 10
