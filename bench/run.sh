#!/usr/bin/env bash
# Runs bench_train and the PyTorch loop on the same shape in one go and
# prints the ratio. Usage: bash bench/run.sh [SHAPE] [extra bench_train args]
# (build first: bash scripts/demo.sh or scripts/test.sh). Not a test.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shape="${1:-smollm2-135m}"
shift || true
export OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-$(grep -q avx512f /proc/cpuinfo && echo SkylakeX || echo Haswell)}"
c_line=$("$root/build/bench/bench_train" "$shape" "$@")
echo "$c_line"
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
    t_line=$(/usr/bin/python3 "$root/bench/bench_torch.py" "$shape" "$@" 2>/dev/null | tail -1)
    echo "$t_line"
    c=$(echo "$c_line" | sed -E 's/.*: +([0-9.]+) tokens\/s.*/\1/')
    t=$(echo "$t_line" | sed -E 's/.*: +([0-9.]+) tokens\/s.*/\1/')
    awk -v c="$c" -v t="$t" 'BEGIN { printf "lora.c / PyTorch: %.2fx\n", c / t }'
else
    echo "(no PyTorch: apt-get install python3-torch for the comparison)"
fi
