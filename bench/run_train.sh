#!/usr/bin/env bash
# The real path, measured: writes a model folder of a named shape with seeded
# random weights and a real tokenizer from ../shared (bench_train
# --write-model), then runs the `lora train` command itself on a ../shared
# JSONL, with packing on and off, and reports per run the median and slowest
# step (tokens/s from metrics.jsonl), peak RSS and RSS at the first and last
# step (sampled from /proc every 0.2 s); then bench_train on the same shape
# and batch in memory, for the ratio. --compute bf16 runs the config with
# "compute": "bf16"; both runs fp32, then bf16, for each packing setting.
# Not a test: run it by hand (README).
#   bash bench/run_train.sh [SHAPE] [--steps N] [--batch B] [--seq T] [--data FILE]
#                           [--tokenizer FILE] [--packing both|on|off] [--compute fp32|bf16|both] [--no-bench]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shared="$root/../shared"
shape=smollm2-135m
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then shape="$1"; shift; fi
steps=50 batch=4 seq=512 packing=both in_memory=1 compute=fp32
data="$shared/data/gsm8k_train.jsonl"
tokenizer="$shared/tokenizers/gpt2/tokenizer.json"
while [ $# -gt 0 ]; do
    case "$1" in
    --steps) steps="$2"; shift 2 ;;
    --batch) batch="$2"; shift 2 ;;
    --seq) seq="$2"; shift 2 ;;
    --data) data="$(realpath "$2")"; shift 2 ;;
    --tokenizer) tokenizer="$(realpath "$2")"; shift 2 ;;
    --packing) packing="$2"; shift 2 ;;
    --compute) compute="$2"; shift 2 ;;
    --no-bench) in_memory=0; shift ;;
    *) echo "usage: bash bench/run_train.sh [SHAPE] [--steps N] [--batch B] [--seq T] [--data FILE]" \
            "[--tokenizer FILE] [--packing both|on|off] [--compute fp32|bf16|both] [--no-bench]" >&2; exit 1 ;;
    esac
done
export OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-$(grep -q avx512f /proc/cpuinfo && echo SkylakeX || echo Haswell)}"
work="${LC_BENCH_DIR:-${TMPDIR:-/tmp}/lora-bench}"
model="$work/$shape-$(basename "$(dirname "$tokenizer")")-$seq"
mkdir -p "$work"
[ -f "$model/model.safetensors" ] || "$root/build/bench/bench_train" "$shape" --write-model "$model" \
    --tokenizer "$tokenizer" --seq "$seq" >/dev/null
echo "$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) cores, OpenBLAS $OPENBLAS_CORETYPE kernels"

# One `lora train` run (packing true|false, compute fp32|bf16); prints its summary line.
run_one() {
    local comp="$2"
    local pack="$1-$comp" out="$work/run-$shape-$1-$comp"
    rm -rf "$out"
    cat >"$work/config-$pack.json" <<JSON
{"model": "$model", "train_data": "$data", "output_dir": "$out",
 "lora": {"r": 16, "alpha": 32, "targets": ["q_proj","k_proj","v_proj","o_proj","gate_proj","up_proj","down_proj"]},
 "optimizer": {"lr": 2e-4}, "schedule": {"type": "constant"},
 "batch_size": $batch, "max_seq_len": $seq, "steps": $steps, "packing": $1, "compute": "$comp",
 "eval_every": 0, "save_every": 0, "keep_checkpoints": 1, "seed": 0}
JSON
    "$root/build/lora" train --config "$work/config-$pack.json" 2>"$work/train-$pack.log" &
    local pid=$! rss=0 hwm=0 n k v first_rss="" last_rss="" peak=0 step8="" rows
    : >"$work/rss-$pack.txt"
    # Shell builtins only (and one sleep), so the sampler takes no CPU from the run.
    while kill -0 "$pid" 2>/dev/null; do
        while read -r k v _; do
            case "$k" in VmRSS:) rss=$v ;; VmHWM:) hwm=$v ;; esac
        done <"/proc/$pid/status" 2>/dev/null || true
        rows=()
        [ -f "$out/metrics.jsonl" ] && mapfile -t rows <"$out/metrics.jsonl"
        n=${#rows[@]}
        echo "$n $rss" >>"$work/rss-$pack.txt"
        [ "$hwm" -gt "$peak" ] && peak=$hwm
        sleep 0.2
    done
    if ! wait "$pid"; then
        echo "lora train failed (packing $pack): $(tail -1 "$work/train-$pack.log")" >&2
        return 1
    fi
    # RSS at the first sample after step 1 and step 8 were done, and at the
    # last sample taken (the process may end before one follows its last step).
    read -r first_rss step8 last_rss last_n < <(awk '
        $1 >= 1 && f == "" { f = $2 } $1 >= 8 && e == "" { e = $2 } { l = $2; n = $1 }
        END { print (f == "" ? 0 : f), (e == "" ? 0 : e), (l == "" ? 0 : l), (n == "" ? 0 : n) }' "$work/rss-$pack.txt")
    grep -o '"tokens_per_s": [0-9.]*' "$out/metrics.jsonl" | awk '{print $2}' >"$work/tps-$pack.txt"
    local med
    med=$(sort -g "$work/tps-$pack.txt" | awk '{ s[NR] = $1 } END { print NR % 2 ? s[(NR + 1) / 2] : (s[NR / 2] + s[NR / 2 + 1]) / 2 }')
    awk -v pack="$pack" -v med="$med" -v peak="$peak" -v f="$first_rss" -v e="$step8" -v l="$last_rss" -v ln="$last_n" '
        function gb(kb) { return kb > 0 ? sprintf("%.2f", kb / 1048576) : "n/a" }
        { v[NR] = $1 }
        END {
            slow = 1e30; slow3 = 1e30
            for (i = 1; i <= NR; i++) { if (v[i] < slow) slow = v[i]; if (i >= 3 && v[i] < slow3) slow3 = v[i] }
            if (slow3 == 1e30) slow3 = slow
            trend = (e > 0 && l > 0 && ln >= 8) ? sprintf(" (%+.1f%% since step 8)", 100 * (l - e) / e) : ""
            printf "lora train, packing-compute %-10s %d steps: median %.1f tokens/s, slowest %.1f (%.0f%% of median; from step 3 on: %.1f, %.0f%%), peak RSS %.2f GB, RSS after step 1 %s, step 8 %s, step %d %s GB%s\n",
                pack, NR, med, slow, 100 * slow / med, slow3, 100 * slow3 / med, peak / 1048576, gb(f), gb(e), ln, gb(l), trend
        }' "$work/tps-$pack.txt"
}

# A bf16 run on a CPU without the kernel would be an fp32 run under another label.
kernel=$("$root/build/lora" --verbose inspect /dev/null 2>&1 | sed -n 's/.*bf16 products: \(.*\); MPI.*/\1/p' || true)
if [ "$compute" != fp32 ] && [ "${kernel#none}" != "$kernel" ]; then
    echo "run_train.sh: --compute $compute: $kernel" >&2
    exit 1
fi
computes=$compute
[ "$compute" = both ] && computes="fp32 bf16"
for comp in $computes; do
    [ "$packing" = off ] || run_one true "$comp"
    [ "$packing" = on ] || run_one false "$comp"
done
if [ "$in_memory" = 1 ]; then
    # The same shape and batch in memory (bench_train), and the PyTorch loop.
    vocab=$(grep -o '"vocab_size": [0-9]*' "$model/config.json" | awk '{print $2}')
    "$root/build/bench/bench_train" "$shape" --batch "$batch" --seq "$seq" --steps 5 --vocab "$vocab" --compute "$compute"
    if /usr/bin/python3 -c "import torch" 2>/dev/null; then
        /usr/bin/python3 "$root/bench/bench_torch.py" "$shape" --batch "$batch" --seq "$seq" --steps 5 --vocab "$vocab" \
            2>"$work/torch.log" | tail -1 || echo "bench_torch.py failed: $(tail -1 "$work/torch.log")"
    else
        echo "(no PyTorch: apt-get install python3-torch for the comparison)"
    fi
fi
