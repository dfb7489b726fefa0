#!/usr/bin/env bash
# Prepare what the lent GPU machine needs and lacks (it reaches no registry): wheels of the
# packages its image does not have (ase, vesin-torch) for its Python 3.12 / x86-64, and a copy
# of the MD17 ethanol file, all under .gpu_carry/ (git-ignored, never committed). Run it here,
# in the repository root of the checkout the device tool sends, then pass carry=[".gpu_carry"]
# to the run that calls scripts/gpu_check.sh (docs/gpu.md gives the exact call).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
mkdir -p .gpu_carry/wheels .gpu_carry/data
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  --platform any -d .gpu_carry/wheels "ase==3.29.0" "vesin-torch==0.6.2"
data=../shared/data/md17_ethanol_2000.xyz
if [ -f "$data" ]; then install -m 0644 "$data" .gpu_carry/data/; else echo "warning: $data missing: the training benchmark will be skipped" >&2; fi
du -sh .gpu_carry
ls -l .gpu_carry/wheels .gpu_carry/data
