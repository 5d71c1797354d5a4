#!/usr/bin/env bash
# libFuzzer runs of lora.c's file parsers (harnesses in fuzz/).
#
#   bash scripts/fuzz.sh [TARGET|all] [SECONDS]   build, replay fuzz/regressions/TARGET/, then fuzz
#                                                 each target SECONDS (default 60) from its seeds
#   bash scripts/fuzz.sh --replay [TARGET|all]    build and replay fuzz/regressions/ only (CI)
#
# Targets: fuzz_safetensors fuzz_config fuzz_tokenizer fuzz_jsonl fuzz_peft fuzz_checkpoint fuzz_gguf fuzz_jinja
# (the "fuzz_" prefix may be left out). Builds with clang into build-fuzz/ (its own CMake
# project, fuzz/CMakeLists.txt; the main build is not touched). Seeds are made from ../shared
# and tests/fixtures into build-fuzz/work/seeds/, the growing corpus is build-fuzz/work/corpus/,
# crash/leak/timeout inputs land in build-fuzz/work/artifacts/TARGET/. At most FUZZ_JOBS
# (default 2) fuzzers run at once, under nice -n 10. Exits non-zero on any crash, leak,
# sanitizer report or timeout.
set -euo pipefail

LC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ_BUILD="${FUZZ_BUILD:-$LC_ROOT/build-fuzz}"
WORK="$FUZZ_BUILD/work"
LC_SHARED="${LC_SHARED:-$LC_ROOT/../shared}"
FUZZ_JOBS="${FUZZ_JOBS:-2}"
ALL_TARGETS=(fuzz_safetensors fuzz_config fuzz_tokenizer fuzz_jsonl fuzz_peft fuzz_checkpoint fuzz_gguf fuzz_jinja)

usage() {
    sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 1
}

replay_only=0
if [ "${1:-}" = "--replay" ] || [ "${1:-}" = "replay" ]; then
    replay_only=1
    shift
fi
[ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ] && usage
what="${1:-all}"
seconds="${2:-60}"
[[ "$seconds" =~ ^[0-9]+$ ]] || usage
if [ "$what" = "all" ]; then
    targets=("${ALL_TARGETS[@]}")
else
    t="fuzz_${what#fuzz_}"
    [[ " ${ALL_TARGETS[*]} " == *" $t "* ]] || { echo "fuzz.sh: unknown target $what" >&2; usage; }
    targets=("$t")
fi

# Largest input each target may be given: big enough for the real files among its seeds.
max_len() {
    case "$1" in
    fuzz_safetensors) echo 1200000 ;;  # stories260K model.safetensors is 1.0 MB
    fuzz_gguf) echo 2400000 ;;         # the llama.cpp vocab GGUFs are up to 2.3 MB
    fuzz_tokenizer) echo 262144 ;;     # seeds are trimmed vocabularies
    fuzz_checkpoint) echo 131072 ;;
    fuzz_peft) echo 131072 ;;
    fuzz_config) echo 16384 ;;
    fuzz_jsonl) echo 32768 ;;
    fuzz_jinja) echo 32768 ;;          # the largest real chat template is 12.8 kB
    esac
}

# ---- toolchain ----
need=()
command -v clang >/dev/null 2>&1 || need+=(clang)
ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 || need+=(libclang-rt-14-dev)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    source "$LC_ROOT/scripts/setup.sh"
    LC_PACKAGES+=("${need[@]}")
    lc_install_packages
fi
[ -d "$LC_SHARED" ] || { echo "fuzz.sh: fixtures folder $LC_SHARED not found (set LC_SHARED)" >&2; exit 2; }
LC_SHARED="$(cd "$LC_SHARED" && pwd)"
export LC_SHARED

echo "fuzz.sh: building into $FUZZ_BUILD" >&2
cmake -S "$LC_ROOT/fuzz" -B "$FUZZ_BUILD" -DCMAKE_C_COMPILER=clang -DLC_SHARED_DIR="$LC_SHARED" >/dev/null
nice -n 10 cmake --build "$FUZZ_BUILD" -j"$FUZZ_JOBS" >/dev/null

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

# libhdf5 (uninstrumented) leaks on some of its own error paths: suppressed for fuzz_checkpoint (fuzz/lsan.supp).
# It also frees uninitialized pointers when a dense link table fails to decode
# (H5G__link_release_table from H5Literate): ASan's 0xbe fill of new blocks turns that
# into a SEGV at once. lora.c contains that crash in a child process (train/isolate.c);
# zero-filled blocks (what glibc usually hands out) keep the child alive so the fuzzer
# explores past it. fuzz/known-crashes/README.md has the story.
lsan_env() {
    LSAN="${LSAN_OPTIONS:-}"
    ASAN="$ASAN_OPTIONS"
    if [ "$1" = fuzz_checkpoint ]; then
        LSAN="${LSAN:+$LSAN:}suppressions=$LC_ROOT/fuzz/lsan.supp:print_suppressions=0"
        ASAN="$ASAN:malloc_fill_byte=0"
    fi
}

# ---- replay ----
failed=0
replay() {
    local t="$1" dir="$LC_ROOT/fuzz/regressions/$1"
    local files=()
    if [ -d "$dir" ]; then
        while IFS= read -r -d '' f; do files+=("$f"); done < <(find "$dir" -type f ! -name '*.md' -print0 | sort -z)
    fi
    if [ ${#files[@]} -eq 0 ]; then
        printf '%-18s replay: no regression inputs\n' "$t"
        return 0
    fi
    local log="$WORK/logs/$t.replay.log"
    local start=$SECONDS
    lsan_env "$t"
    if nice -n 10 env LSAN_OPTIONS="$LSAN" ASAN_OPTIONS="$ASAN" "$FUZZ_BUILD/$t" -timeout=25 -rss_limit_mb=2048 -max_len="$(max_len "$t")" "${files[@]}" >"$log" 2>&1; then
        printf '%-18s replay: %d inputs ok (%ds)\n' "$t" "${#files[@]}" $((SECONDS - start))
    else
        printf '%-18s replay: FAILED (log %s)\n' "$t" "$log"
        grep -E "ERROR|SUMMARY|Running:" "$log" | tail -5 | sed 's/^/    /'
        return 1
    fi
}

mkdir -p "$WORK/logs"
for t in "${targets[@]}"; do replay "$t" || failed=1; done
if [ "$replay_only" = 1 ]; then
    [ "$failed" = 0 ] && echo "fuzz.sh: all regression inputs replayed cleanly" >&2
    exit "$failed"
fi
[ "$failed" = 0 ] || { echo "fuzz.sh: regression inputs fail; not fuzzing" >&2; exit 1; }

# ---- seeds ----
# Small real checkpoints and PEFT folders written by lc_checkpoint_save / lc_export_peft, and
# one from `lora train` when the main build has the executable.
if [ ! -d "$WORK/seed_files" ]; then
    rm -rf "$WORK/seed_files.tmp"
    mkdir -p "$WORK/seed_files.tmp"
    "$FUZZ_BUILD/fuzz_seed_checkpoint" "$WORK/seed_files.tmp"
    if [ -x "$LC_ROOT/build/lora" ]; then
        cat >"$WORK/seed_files.tmp/train.json" <<EOF
{"model": "$LC_SHARED/models/stories260K", "train_data": "$LC_SHARED/data/gsm8k_train.jsonl",
 "output_dir": "$WORK/seed_files.tmp/train_run",
 "lora": {"r": 1, "alpha": 2, "dropout": 0.0, "rslora": false, "targets": ["q_proj", "v_proj"]},
 "optimizer": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
 "schedule": {"type": "constant", "warmup_steps": 0, "min_lr": 0.0},
 "batch_size": 2, "grad_accum": 1, "max_seq_len": 256, "steps": 2, "max_grad_norm": 1.0, "seed": 0,
 "packing": false, "mask_prompt": true, "eval_every": 0, "save_every": 1, "keep_checkpoints": 2, "threads": 1}
EOF
        nice -n 10 "$LC_ROOT/build/lora" train --config "$WORK/seed_files.tmp/train.json" >/dev/null 2>&1 ||
            echo "fuzz.sh: note: lora train for checkpoint seeds failed; using the written ones only" >&2
    fi
    mv "$WORK/seed_files.tmp" "$WORK/seed_files"
fi
python3 "$LC_ROOT/fuzz/make_seeds.py" "$LC_SHARED" "$LC_ROOT" "$WORK/seeds" "$WORK/seed_files"

# ---- fuzz ----
run_one() {
    local t="$1" log="$WORK/logs/$t.log"
    local corpus="$WORK/corpus/$t" arts="$WORK/artifacts/$t"
    mkdir -p "$corpus" "$arts"
    local dirs=("$corpus" "$WORK/seeds/$t")
    [ -d "$LC_ROOT/fuzz/regressions/$t" ] && dirs+=("$LC_ROOT/fuzz/regressions/$t")
    local dict=()
    [ -f "$LC_ROOT/fuzz/dict/$t.dict" ] && dict=(-dict="$LC_ROOT/fuzz/dict/$t.dict")
    local rc=0
    lsan_env "$t"
    nice -n 10 env LSAN_OPTIONS="$LSAN" ASAN_OPTIONS="$ASAN" "$FUZZ_BUILD/$t" -max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout=25 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$arts/" "${dict[@]}" "${dirs[@]}" \
        >"$log" 2>&1 || rc=$?
    echo "$rc" >"$WORK/logs/$t.rc"
}

summary() {
    local t="$1" log="$WORK/logs/$1.log" rc
    rc="$(cat "$WORK/logs/$t.rc" 2>/dev/null || echo 1)"
    local execs rate cov ft corp
    execs="$(awk '/^stat::number_of_executed_units:/ {v=$2} END {print v}' "$log")"
    rate="$(awk '/^stat::average_exec_per_sec:/ {v=$2} END {print v}' "$log")"
    cov="$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')"
    ft="$(grep -Eo 'ft: [0-9]+' "$log" | tail -1 | awk '{print $2}')"
    corp="$(find "$WORK/corpus/$t" -type f | wc -l)"
    if [ "$rc" = 0 ]; then
        printf '%-18s ok      execs %-9s exec/s %-6s cov %-5s ft %-6s corpus %s\n' "$t" "${execs:-?}" "${rate:-?}" \
            "${cov:-?}" "${ft:-?}" "$corp"
    else
        printf '%-18s FAILED  rc %s  execs %s  log %s\n' "$t" "$rc" "${execs:-?}" "$log"
        grep -E "^==[0-9]+==ERROR|^SUMMARY|Test unit written|ALARM|out-of-memory|runtime error" "$log" | head -6 |
            sed 's/^/    /'
        return 1
    fi
}

echo "fuzz.sh: fuzzing ${targets[*]} for ${seconds}s each, $FUZZ_JOBS at a time" >&2
running=0
for t in "${targets[@]}"; do
    if [ "$running" -ge "$FUZZ_JOBS" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    rm -f "$WORK/logs/$t.rc"
    run_one "$t" &
    running=$((running + 1))
done
wait || true

for t in "${targets[@]}"; do summary "$t" || failed=1; done
exit "$failed"
