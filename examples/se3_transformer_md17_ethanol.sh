#!/usr/bin/env bash
# Train the SE(3)-Transformer potential (e3nn; hidden irreps 32x0e + 8x1o + 4x2e, 2 attention layers with
# 4 heads, 5 Å cutoff) on 2000 frames of MD17 ethanol (physnet data) with its fixed 1000/100/900 split
# for 20 minutes of wall time on one CPU thread, then run the N-body benchmark of the EGNN paper with the
# SE(3)-Transformer dynamics model (paper's figure for this model: 0.0244 test MSE), then print the
# cost figures (ms per energy + forces call and peak memory, ethanol and a 500-atom periodic Cu box).
# Run from the repository root after `bash scripts/install.sh`.
set -euo pipefail
# the data: 2000 random frames of MD17 ethanol, downloaded once with a SHA-256 check
[ -f downloads/md17_ethanol_2000.extxyz ] ||
    .venv/bin/physnet data md17_ethanol --output downloads --frames 2000
export OMP_NUM_THREADS=1
RUN=${RUN:-runs/se3_transformer_md17_ethanol}
.venv/bin/physnet train examples/configs/se3_transformer_md17_ethanol.yaml run_dir="$RUN" trainer.threads=1 "$@"
.venv/bin/python scripts/nbody_benchmark.py --model se3_transformer --minutes 25 --threads 1 --n-layers 3 --lr 1e-3
.venv/bin/python scripts/se3_transformer_cost.py --threads 1
