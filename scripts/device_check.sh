#!/usr/bin/env bash
# The short GPU check for a session that is lent one (run from the repository root there):
# the fast SNN equals the reference on the device, the test suite's CUDA paths (metrics too), the speed table,
# and a one-epoch run on the device with its activity and cost columns, neuron activity and gradient window.
# Writes its log and the speed CSV under ${OUT:-/tmp/device-check}.
set -uo pipefail
OUT=${OUT:-/tmp/device-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
pip install -q -e '.[test]' 2>&1 | tail -1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
python -m pytest -q -x tests/test_snn_fast.py tests/test_models.py tests/test_benchmarks.py tests/test_metrics.py -k "cuda or contract or same or activity" 2>&1 | tee "$OUT/tests.log" | tail -15
python -m bench.speed --device cuda cpu --repeats 5 --csv "$OUT/speed.csv" 2>&1 | tee "$OUT/speed.log"
timeout 300 python -m bench.run --models snn snn-reference ffn --device cuda --dataset mnist-mini --epochs 1 --out "$OUT/runs" --no-report 2>&1 | tail -8 | tee "$OUT/run.log"
