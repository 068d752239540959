#!/usr/bin/env bash
# The reference results committed under results/reference/ (issue 6), one run after another
# on this machine's CPU. Full MNIST in torchvision's layout must be under $DATA (MNIST/raw/).
# Takes about 4 hours on 2 cores (the first edition's runs 1 hour 45 minutes, the second edition's 2 hours 30).
set -euo pipefail
DATA=${DATA:-../shared/data}
OUT=${OUT:-results/reference}
# 3. the shipped subset with the default command, to compare a first run with
python -m bench.run --models snn ffn --device cpu --dataset mnist-mini --out "$OUT"
# 1. the 2018 schedule: 3 epochs at 0.1, 0.05, 0.01, momentum 0.5, batch 1000, T 128; 5 seeds
python -m bench.run --models ffn snn snn:reset=proportional --device cpu --dataset mnist --data-dir "$DATA" \
    --seeds 0 1 2 3 4 --out "$OUT"
# 2. a longer schedule: 15 epochs (0.1, 0.05, then 0.01); 3 seeds
python -m bench.run --models ffn snn snn:reset=proportional --device cpu --dataset mnist --data-dir "$DATA" \
    --epochs 15 --seeds 0 1 2 --out "$OUT"
# issue 7: the same with the activity and cost columns, neuron activity and the gradient window, 3 seeds
# (seeds 0-2 reproduce the 5-seed run's accuracies exactly: the metrics draw no random numbers)
python -m bench.run --models ffn snn snn:reset=proportional --device cpu --dataset mnist --data-dir "$DATA" \
    --seeds 0 1 2 --out "$OUT"
# on the shipped subset: both resets, 3 seeds
python -m bench.run --models snn snn:reset=proportional ffn --device cpu --dataset mnist-mini --seeds 0 1 2 --out "$OUT"
# the time-step sweep on the shipped subset
python -m bench.run --models snn:time_steps=8 snn:time_steps=16 snn:time_steps=32 snn:time_steps=64 snn ffn \
    --device cpu --dataset mnist-mini --seeds 0 1 2 --out "$OUT"
# second edition (issue 17)
# precision: snn in bf16 against fp32, the 2018 schedule, 5 seeds
python -m bench.run --models snn --device cpu --dataset mnist --data-dir "$DATA" --seeds 0 1 2 3 4 --precision bf16 \
    --out "$OUT"
python -m bench.run --models snn --device cpu --dataset mnist --data-dir "$DATA" --seeds 0 1 2 3 4 --out "$OUT"
# the frameworks: lif, snnTorch's and SpikingJelly's LIF at one config (hidden 100, T 25, rate encoding), Adam 5e-4
python -m bench.run --models lif snntorch-lif spikingjelly-lif --device cpu --dataset mnist --data-dir "$DATA" \
    --optimizer adam --lr 0.0005 --seeds 0 1 2 --out "$OUT"
# the tuned verdict: every model at 5 learning-rate scales of the 2018 schedule (SGD for all four), 5 seeds, each
# scale picked on 10,000 held-out training samples; on a local Dask cluster of 2 one-thread workers (about 80 minutes)
python -m bench.run --models ffn snn snn:reset=proportional lif --device cpu --dataset mnist --data-dir "$DATA" \
    --lr-scale 0.25 0.5 1 2 4 --validation 10000 --seeds 0 1 2 3 4 --executor dask --workers 2 --threads 1 \
    --no-metrics --out "$OUT"
# each model's picked scale for 15 epochs, 3 seeds: a group of runs with one report over them (about 50 minutes)
GROUP="$OUT/tuned-15-epochs"
LONG=(--device cpu --dataset mnist --data-dir "$DATA" --epochs 15 --seeds 0 1 2 --validation 10000 --no-metrics
      --executor dask --workers 2 --threads 1 --out "$GROUP")
python -m bench.run --models snn snn:reset=proportional --lr-scale 1 "${LONG[@]}"
python -m bench.run --models lif --lr-scale 0.5 "${LONG[@]}"
python -m bench.run --models ffn --lr-scale 2 "${LONG[@]}"
python -m report "$GROUP" --out "$GROUP/report"
# issue 26: recurrent SNNs against GRU, LSTM and an FFN on smnist, each model at its learning-rate pick, 5 seeds
# (about 3.5 hours on 2 cores, over two sessions with --resume): scripts/smnist_reference.sh
# issue 27: the verdict at equal cost, full MNIST, 7,200 training seconds of trials per model, 5 seeds for the picks
# (about 5 hours on 2 cores): scripts/tuning_reference.sh
