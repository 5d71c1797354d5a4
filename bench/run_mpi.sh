#!/usr/bin/env bash
# Data-parallel training measured on the real path: the same `lora train`
# config (a model folder of a named shape with seeded random weights and
# GPT-2's tokenizer, written by bench_train --write-model; GSM8K; packing)
# run as 1 process x T threads and as `mpirun -np R` ranks x T/R threads,
# one after the other, for N steps each; prints the median step's tokens/s
# (all ranks' tokens) of each and their ratio. Not a test: run it by hand.
#   bash bench/run_mpi.sh [SHAPE] [--steps N] [--batch B] [--seq T] [--ranks R] [--compute fp32|bf16]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shared="$root/../shared"
shape=smollm2-135m
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then shape="$1"; shift; fi
steps=20 batch=4 seq=512 ranks=2 compute=fp32
while [ $# -gt 0 ]; do
    case "$1" in
    --steps) steps="$2"; shift 2 ;;
    --batch) batch="$2"; shift 2 ;;
    --seq) seq="$2"; shift 2 ;;
    --ranks) ranks="$2"; shift 2 ;;
    --compute) compute="$2"; shift 2 ;;
    *) echo "usage: bash bench/run_mpi.sh [SHAPE] [--steps N] [--batch B] [--seq T] [--ranks R]" \
            "[--compute fp32|bf16]" >&2; exit 1 ;;
    esac
done
command -v mpirun >/dev/null || { echo "run_mpi.sh: mpirun not found (apt-get install openmpi-bin)" >&2; exit 1; }
export OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-$(grep -q avx512f /proc/cpuinfo && echo SkylakeX || echo Haswell)}"
cores=$(nproc)
threads=$((cores / ranks > 0 ? cores / ranks : 1))
tokenizer="$shared/tokenizers/gpt2/tokenizer.json"
work="${LC_BENCH_DIR:-${TMPDIR:-/tmp}/lora-bench}"
model="$work/$shape-gpt2-$seq"
mkdir -p "$work"
[ -f "$model/model.safetensors" ] || "$root/build/bench/bench_train" "$shape" --write-model "$model" \
    --tokenizer "$tokenizer" --seq "$seq" >/dev/null
echo "$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $cores cores, OpenBLAS $OPENBLAS_CORETYPE kernels"

# run NAME THREADS [mpirun args...]: one run; prints its median tokens/s.
run() {
    local name="$1" t="$2"
    shift 2
    local out="$work/mpi-$name"
    rm -rf "$out"
    cat >"$work/config-mpi-$name.json" <<JSON
{"model": "$model", "train_data": "$shared/data/gsm8k_train.jsonl", "output_dir": "$out",
 "lora": {"r": 16, "alpha": 32, "targets": ["q_proj","k_proj","v_proj","o_proj","gate_proj","up_proj","down_proj"]},
 "optimizer": {"lr": 2e-4}, "schedule": {"type": "constant"}, "compute": "$compute",
 "batch_size": $batch, "max_seq_len": $seq, "steps": $steps, "packing": true, "threads": $t,
 "eval_every": 0, "save_every": 0, "keep_checkpoints": 1, "seed": 0}
JSON
    if ! "$@" "$root/build/lora" train --config "$work/config-mpi-$name.json" 2>"$work/train-mpi-$name.log"; then
        echo "run_mpi.sh: $name failed: $(grep 'lora train' "$work/train-mpi-$name.log" | tail -1)" >&2
        exit 1
    fi
    # The first two steps warm up; the median of the rest.
    grep -o '"tokens_per_s": [0-9.]*' "$out/metrics.jsonl" | awk 'NR > 2 { print $2 }' | sort -g |
        awk '{ s[NR] = $1 } END { print NR % 2 ? s[(NR + 1) / 2] : (s[NR / 2] + s[NR / 2 + 1]) / 2 }'
}

one=$(run "1x$cores" "$cores")
many=$(run "${ranks}x$threads" "$threads" mpirun --oversubscribe --allow-run-as-root --bind-to none -np "$ranks")
awk -v one="$one" -v many="$many" -v r="$ranks" -v t="$threads" -v c="$cores" -v shape="$shape" -v b="$batch" \
    -v s="$seq" -v n="$steps" -v comp="$compute" 'BEGIN {
    printf "%s, %d x %d, %s compute, %d steps: 1 process x %d threads %.1f tokens/s; %d ranks x %d threads %.1f tokens/s (%.2fx)\n",
        shape, b, s, comp, n, c, one, r, t, many, many / one }'
