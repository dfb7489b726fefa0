#!/usr/bin/env bash
# The device check of issue 31, for the lent GPU machine (python3 with torch, Lightning, e3nn;
# no ase, vesin-torch or registry): installs the carried wheels, runs `pytest -m gpu`, then
# scripts/gpu_benchmark.py, writing everything under $OUT, in at most GPU_CHECK_SECONDS (480).
#
#   bash scripts/gpu_check.sh            # tests, then the benchmark with the time left
#   bash scripts/gpu_check.sh tests      # only the GPU suite
#   bash scripts/gpu_check.sh bench      # only the benchmark
#
# Needs .gpu_carry/ from scripts/gpu_prepare.sh (carried: carry=[".gpu_carry"]). Files written
# (at most 8, as the device tool returns): env.txt, pytest.log, pytest.xml, benchmark.log,
# benchmark.json, benchmark.md. Dry run on a CPU machine: PHYSNET_TEST_DEVICE=cpu
# GPU_CHECK_DEVICE=cpu GPU_CHECK_QUICK=1 OUT=/tmp/gpu_check bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
parts=${1:-all}
OUT=${OUT:-$PWD/gpu_check_out}
PY=${PYTHON:-python3}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
TOTAL=${GPU_CHECK_SECONDS:-480}
TEST_SECONDS=${GPU_CHECK_TEST_SECONDS:-200}
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }
mkdir -p "$OUT"

if ls .gpu_carry/wheels/*.whl > /dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/physnet_site .gpu_carry/wheels/*.whl || { echo "wheel install failed" >&2; exit 3; }
  export PYTHONPATH=/tmp/physnet_site:$PWD
  if ls .gpu_carry/peers/*.whl > /dev/null 2>&1; then  # optional (schnetpack): failure is not fatal
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/physnet_peers \
      .gpu_carry/peers/*.whl && export PYTHONPATH=$PYTHONPATH:/tmp/physnet_peers \
      || echo "schnetpack wheels did not install; that section will be skipped"
  fi
else
  echo "no .gpu_carry/wheels: using the packages installed here (run scripts/gpu_prepare.sh for the GPU)"
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
# vesin-torch's CUDA code dlopens libnvrtc / libcudart by soname: point the loader at the CUDA
# libraries of torch's pip packages (nvidia/*/lib) and of the system toolkit, if any
nvlibs=$("$PY" -c "import glob, os, torch; base = os.path.dirname(os.path.dirname(torch.__file__)); \
print(':'.join(sorted({os.path.dirname(p) for p in glob.glob(os.path.join(base, 'nvidia', '**', 'lib*.so*'), \
recursive=True)})))" 2>/dev/null || true)
[ -d /usr/local/cuda/lib64 ] && nvlibs=${nvlibs:+$nvlibs:}/usr/local/cuda/lib64
export LD_LIBRARY_PATH=${nvlibs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
{
  date -u
  nvidia-smi 2>&1 || echo "no nvidia-smi"
  "$PY" - <<'PY'
import importlib, platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(), torch.cuda.get_device_properties(0).total_memory // 2**20, "MiB")
for name in ("ase", "vesin_torch", "e3nn", "pytorch_lightning", "numpy", "scipy", "yaml", "pytest", "h5py"):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, "__version__", "?"), module.__file__)
    except Exception as err:
        print(name, "MISSING", err)
import physnet  # noqa: F401  (fails here if a dependency is missing)
print("physnet imports")
if torch.cuda.is_available():  # the neighbour list on CUDA tensors, against the CPU's
    from physnet.data.neighbors import radius_graph
    pos = torch.rand(200, 3, dtype=torch.float64) * 10
    cell, pbc = torch.eye(3, dtype=torch.float64) * 10, torch.tensor([True, True, True])
    try:
        ei, sh = radius_graph(pos.cuda(), 3.0, None, cell.cuda(), pbc.cuda())
        ref = radius_graph(pos, 3.0, None, cell, pbc)
        same = sorted(map(tuple, torch.cat([ei.t(), sh], 1).tolist())) == sorted(
            map(tuple, torch.cat([ref[0].t(), ref[1]], 1).tolist()))
        print("vesin-torch on CUDA:", ei.device, ei.shape[1], "pairs, same as CPU:", same)
    except Exception as err:
        print("vesin-torch on CUDA FAILED:", type(err).__name__, err)
PY
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
status=0
if [ "$parts" = all ] || [ "$parts" = tests ]; then
  timeout "$TEST_SECONDS" "$PY" -m pytest -m gpu tests/gpu -q -rs -p no:cacheprovider \
    --junitxml="$OUT/pytest.xml" 2>&1 | tee "$OUT/pytest.log"
  status=${PIPESTATUS[0]}
  echo "pytest -m gpu: exit $status after $(elapsed) s"
fi
if [ "$parts" = all ] || [ "$parts" = bench ]; then
  left=$(( TOTAL - $(elapsed) - 15 ))
  quick=(); [ -n "${GPU_CHECK_QUICK:-}" ] && quick=(--quick)
  timeout "$left" "$PY" scripts/gpu_benchmark.py --device "$DEVICE" --out "$OUT" "${quick[@]}" \
    --budget-s $(( left - 30 )) --cpu-reference docs/experiments/gpu_benchmark_cpu.json \
    2>&1 | tee "$OUT/benchmark.log"
  echo "benchmark: exit ${PIPESTATUS[0]} after $(elapsed) s"
fi
exit "$status"
