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
# optional: schnetpack 2.1.1 (the newest on the registry) and what it imports that the GPU image
# lacks, for the side-by-side SchNet step; installed apart so a failure costs only that section
mkdir -p .gpu_carry/peers
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform any -d .gpu_carry/peers \
  "schnetpack==2.1.1" "hydra-core==1.3.8" "omegaconf==2.3.0" "hydra-colorlog==1.2.0" "colorlog==6.12.0" \
  "torch-ema==0.3" "matscipy==1.3.1" "fasteners==0.20" "dirsync==2.2.6" "tensorboardX==2.6.5" \
  || echo "warning: schnetpack wheels incomplete: the schnetpack section will be skipped" >&2
# antlr4-python3-runtime 4.9.3 (omegaconf's) exists only as a source archive: build its pure-Python wheel
ls .gpu_carry/peers/antlr4_python3_runtime-4.9.3-*.whl > /dev/null 2>&1 || \
  "$PY" -m pip wheel --quiet --no-deps -w .gpu_carry/peers "antlr4-python3-runtime==4.9.3" \
  || echo "warning: no antlr4 wheel: the schnetpack section will be skipped" >&2
# MD17 ethanol frames: physnet data md17_ethanol --frames 2000 writes the first; the second is the
# project machines' shared copy
data=""
for f in downloads/md17_ethanol_2000.extxyz ../shared/data/md17_ethanol_2000.xyz; do
  if [ -f "$f" ]; then data=$f; break; fi
done
if [ -n "$data" ]; then install -m 0644 "$data" .gpu_carry/data/md17_ethanol_2000.xyz
else echo "warning: no MD17 ethanol frames (run: physnet data md17_ethanol --frames 2000): the training benchmark will be skipped" >&2; fi
du -sh .gpu_carry
ls -l .gpu_carry/wheels .gpu_carry/data
