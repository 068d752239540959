#!/usr/bin/env bash
# Issue 26's reference results: recurrent SNNs against GRU, LSTM and an FFN on spiking sequential MNIST (smnist, built
# from the MNIST files under $DATA), the same budget for every model: 10 epochs of Adam at batch 256 (1e-3 for 7
# epochs, 3e-4 for 2, 1e-4 for the last) and the same learning-rate grid (x0.3, x1, x3 of that schedule), each scale
# picked on 10,000 held-out training samples.
#   1. the grid: every model at each scale, seed 0, no metrics          -> $OUT/grid/RUN_ID
#   2. each model at its picked scale, 5 seeds (snntorch-rlif: 2 seeds at rsnn's pick, the same network)
#                                                                        -> $OUT/picked/RUN_ID, one per scale
#   3. one report over the picked runs (each run also has its own)      -> $OUT/picked/report
# Every training runs on one thread on a Dask cluster of 2 one-thread workers that this script starts and stops; the
# stage-2 runs share it, so that none waits for another's last training. About 3.5 hours on 2 cores (the grid: 67 min).
set -euo pipefail
DATA=${DATA:-../shared/data}
OUT=${OUT:-results/reference/smnist}
SCHEDULE=(--epochs 10 --optimizer adam --lr 0.001 0.001 0.001 0.001 0.001 0.001 0.001 0.0003 0.0003 0.0001
          --batch-size 256)
MODELS=(rsnn rsnn:adaptation=0.05 gru lstm ffn)
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
dask scheduler --scheduler-file "$WORK/scheduler.json" --no-dashboard --host 127.0.0.1 >"$WORK/scheduler.log" 2>&1 &
dask worker --scheduler-file "$WORK/scheduler.json" --nworkers 2 --nthreads 1 --no-dashboard --memory-limit 0 \
    >"$WORK/workers.log" 2>&1 &
ADDRESS=$(python - "$WORK/scheduler.json" <<'PY'
import json, sys, time
from pathlib import Path
for _ in range(600):
    p = Path(sys.argv[1])
    if p.exists() and p.stat().st_size:
        print(json.loads(p.read_text())["address"]); break
    time.sleep(0.1)
else:
    sys.exit("the Dask scheduler did not start")
PY
)
COMMON=(--device cpu --dataset smnist --data-dir "$DATA" "${SCHEDULE[@]}" --validation 10000
        --executor dask --scheduler "$ADDRESS" --threads 1 ${EXTRA:-})  # EXTRA: e.g. --max-batches 2, to try the script
mkdir -p "$OUT/grid" "$OUT/picked"
# 1. the grid
python -m bench.run --models "${MODELS[@]}" --lr-scale 0.3 1 3 --seeds 0 --no-metrics "${COMMON[@]}" --out "$OUT/grid"
GRID=$(ls -d "$OUT"/grid/*/ | tail -1)
python scripts/pick_scales.py "$GRID" | tee "$OUT/picked/scales.txt"
# 2. the picks, 5 seeds; one bench.run per picked scale, all at once on the one cluster
declare -A BY_SCALE
while read -r model scale; do
    BY_SCALE[$scale]+=" $model"
    if [[ $model =~ ^rsnn(:n_in=[0-9]+)?$ ]]; then BY_SCALE[$scale]+=" @snntorch-rlif"; fi  # rsnn without adaptation
done <"$OUT/picked/scales.txt"
PIDS=()
for scale in "${!BY_SCALE[@]}"; do
    read -ra picked <<<"${BY_SCALE[$scale]}"
    five=() two=()
    for m in "${picked[@]}"; do if [[ $m == @* ]]; then two+=("${m#@}"); else five+=("$m"); fi; done
    python -m bench.run --models "${five[@]}" --lr-scale "$scale" --seeds 0 1 2 3 4 "${COMMON[@]}" \
        --out "$OUT/picked" &
    PIDS+=($!)
    if [ ${#two[@]} -gt 0 ]; then
        python -m bench.run --models "${two[@]}" --lr-scale "$scale" --seeds 0 1 "${COMMON[@]}" \
            --out "$OUT/picked" &
        PIDS+=($!)
    fi
done
for p in "${PIDS[@]}"; do wait "$p"; done
# 3. one report over the picked runs
python -m report "$OUT/picked" --out "$OUT/picked/report"
