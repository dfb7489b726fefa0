#!/usr/bin/env bash
# Train the EGNN potential (128 features, 4 layers, 20 Gaussians, 5 Å) on the shared MD17 ethanol
# file with its fixed 1000/100/900 split for 20 minutes of wall time, then run the N-body benchmark
# of the EGNN paper for 10 minutes. Run from the repository root after `bash scripts/install.sh`.
# physnet.models.egnn is imported explicitly so that the "egnn" name is registered.
set -euo pipefail
RUN=${RUN:-runs/egnn_md17_ethanol}
.venv/bin/python -c 'import sys, physnet.models.egnn; from physnet.cli import main; sys.exit(main(sys.argv[1:]))' \
    train examples/configs/egnn_md17_ethanol.yaml run_dir="$RUN" "$@"
.venv/bin/python scripts/nbody_benchmark.py --minutes 10
