#!/usr/bin/env bash
# GNS learned simulator (Sanchez-Gonzalez et al., ICML 2020) on physnet's own 2D MLS-MPM water:
# 1. generate 48 training, 4 validation and 6 held-out test trajectories (~500 particles,
#    300 frames 4 ms apart (10 MPM substeps); ~3 s per trajectory on one core; 45 + 4 + 6 MB,
#    in the git-ignored downloads/gns_water/, where examples/configs/gns_water.yaml reads them),
# 2. train for 55 minutes on one CPU thread (examples/configs/gns_water.yaml), which ends by
#    rolling the model out on every test trajectory ($RUN/test_metrics.json),
# 3. roll out again and animate test trajectory 0: ground truth and prediction side by side.
# Run from the repository root after `bash scripts/install.sh`. Extra arguments are config
# overrides, e.g. `bash examples/gns_water.sh trainer.max_time_minutes=5`.
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
DATA=${DATA:-downloads/gns_water}
RUN=${RUN:-runs/gns_water/run}
PY=.venv/bin/python
[ -f "$DATA/train.npz" ] || $PY scripts/generate_mpm_water.py --out "$DATA/train.npz" --trajectories 48 --seed 0 --substeps 10
[ -f "$DATA/valid.npz" ] || $PY scripts/generate_mpm_water.py --out "$DATA/valid.npz" --trajectories 4 --seed 1 --substeps 10
[ -f "$DATA/test.npz" ] || $PY scripts/generate_mpm_water.py --out "$DATA/test.npz" --trajectories 6 --seed 2 --substeps 10
$PY -m physnet.cli gns-train examples/configs/gns_water.yaml run_dir="$RUN" \
    data.train="$DATA/train.npz" data.valid="$DATA/valid.npz" data.test="$DATA/test.npz" "$@"
$PY -m physnet.cli gns-rollout "$RUN/gns.pt" "$DATA/test.npz" --trajectories 0 \
    --gif "$RUN/rollout_test0.gif" --output "$RUN/rollout_test0.json"
