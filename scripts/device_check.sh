#!/usr/bin/env bash
# Issue 16's GPU check, one script for the `device` tool's machine (run from the repository root there; about 8
# minutes on one H200 with 16 cores). Every part has a timeout of its own and a failed part does not stop the next:
#   1. the tests that skip without CUDA, on CUDA (every test whose name or parameters say cuda: snn = snn-reference,
#      the Triton kernels compiled, metrics, resume, the recurrent snn, the dispatcher, the NVML energy counter);
#   2. a 3-epoch full-MNIST run on cuda, 5 seeds (snn, snn:reset=proportional, ffn, lif), with its report and the
#      joules NVML measured per epoch (bench/energy.py: train_joules, eval_joules);
#   3. python -m bench.speed on cuda (fp32, bf16, fp16) and on the same machine's CPU (fp32, bf16).
# What comes back is under $OUT (8 files at most, two folders down): gpu.txt, tests.log, run.log, cuda-run.tar.gz (the
# run folder, for results/reference/), speed-cuda.csv, speed-cpu.csv, speed.log, times.txt (seconds per part).
#
# Prepare here, once (both paths are ignored by git):
#   mkdir -p data/carry && tar czf data/carry/mnist-raw.tar.gz -C ../shared/data MNIST/raw      # about 11 MB
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d .whl snntorch==1.0.0 spikingjelly==2.0.0 loguru scienceplots nvidia-ml-py
# then call the device tool with carry ["data/carry", ".whl"] and the command
#   bash scripts/device_check.sh
# The device machine's Python has torch, Triton, pandas, scipy, seaborn, tabulate and pytest, but not snnTorch or
# SpikingJelly nor nvidia-ml-py (the wheels above) nor Dask (its tests skip there). No install of the project: the
# repository root is on the path.
set -uo pipefail
OUT=${OUT:-/tmp/device-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="$PWD:/tmp/site"
else
    export PYTHONPATH="$PWD"
fi
DATA=../shared/data
if [ ! -f "$DATA/MNIST/raw/train-images-idx3-ubyte" ]; then
    DATA=data
    [ -f data/carry/mnist-raw.tar.gz ] && tar xzf data/carry/mnist-raw.tar.gz -C data
fi
: >"$OUT/times.txt"
part() {  # part NAME TIMEOUT COMMAND...: run, log its seconds and exit status
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    timeout "$limit" "$@"
    local rc=$?
    echo "$name: $((SECONDS - start)) s, exit $rc" | tee -a "$OUT/times.txt"
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; lscpu | grep -m1 'Model name'; nproc
  $PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; } >"$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"

# 1. CUDA tests: every test with a cuda parameter or name (tests/conftest.py marks them), in every file
part tests 130 $PY -m pytest -q -rs -p no:cacheprovider -k "cuda" tests/ 2>&1 | tee "$OUT/tests.log"

# 2. the reference run on cuda
part run 170 $PY -m bench.run --models snn snn:reset=proportional ffn lif --device cuda --dataset mnist \
    --data-dir "$DATA" --seeds 0 1 2 3 4 --out "$OUT/runs" 2>&1 | grep -v "^bench.run: trainings" | tee "$OUT/run.log"
( cd "$OUT/runs" 2>/dev/null && tar czf "$OUT/cuda-run.tar.gz" . ) && rm -rf "$OUT/runs"

# 3. speed, side by side on this machine: the GPU, then its CPU
part speed-cuda 200 $PY -m bench.speed --device cuda --precision fp32 bf16 fp16 --repeats 7 \
    --csv "$OUT/speed-cuda.csv" 2>&1 | tee "$OUT/speed.log"
part speed-cpu 110 $PY -m bench.speed --device cpu --precision fp32 bf16 --repeats 3 --no-memory \
    --csv "$OUT/speed-cpu.csv" 2>&1 | tee -a "$OUT/speed.log"
cat "$OUT/times.txt"
