#!/usr/bin/env bash
# The main job: set up, build, fine-tune a LoRA adapter for a minute or less,
# and show the model before and after. Arguments (defaults from ../shared
# beside the repo):
#   $1  a Hugging Face model folder or GGUF file  (../shared/models/stories260K)
#   $2  a prompt/completion JSONL file           (../shared/data/gsm8k_train.jsonl)
#   $3  the prompt to generate from              (a GSM8K-style question)
# LC_DEMO_STEPS sets the number of steps (default 200).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

shared="$LC_ROOT/../shared"
[ -d "$shared" ] && shared="$(cd "$shared" && pwd)"
model="${1:-$shared/models/stories260K}"
data="${2:-$shared/data/gsm8k_train.jsonl}"
prompt="${3:-$'Question: Tom has 3 apples and buys 5 more. How many apples does he have?\nAnswer:'}"
steps="${LC_DEMO_STEPS:-200}"
if [ ! -e "$model" ]; then
    echo "lora.c: no model at $model; pass one: bash scripts/demo.sh MODEL_DIR|FILE.gguf [DATA.jsonl [PROMPT]]" >&2
    exit 2
fi
if [ ! -f "$data" ]; then
    echo "lora.c: no training data at $data; pass a JSONL file: bash scripts/demo.sh MODEL DATA.jsonl" >&2
    exit 2
fi
# Scored before and after: GSM8K's test problems with the default data, else
# the first examples of the user's own file.
valid="$shared/data/gsm8k_test.jsonl"
valid_label="the first 100 problems of gsm8k_test.jsonl"
if [ -n "${2:-}" ] || [ ! -f "$valid" ]; then
    valid="$data"
    valid_label="the first 100 examples of $(basename "$data") (the training data)"
fi
lc_install_packages
lc_build_quiet

out="$LC_ROOT/runs/demo"
rm -rf "$out"
lora="$LC_BUILD/lora"
eval_loss() { # the "loss" of lora eval's JSON line
    "$lora" eval --model "$model" "$@" --data "$valid" --limit 100 --max-seq-len 512 |
        sed -E 's/.*"loss": ([0-9.]+).*/\1/' | xargs printf '%.2f'
}
generate() { # the continuation alone (lora generate prints the prompt first)
    local text
    text="$("$lora" generate --model "$model" "$@" --prompt "$prompt" --temperature 0 --max-tokens 48 2>/dev/null)"
    printf '%s\n' "${text#"$prompt"}"
}

echo "lora.c: fine-tuning $(basename "$model") on $(basename "$data") for $steps steps" >&2
base_loss="$(eval_loss)"
# The worked config of configs/, at a higher learning rate and 512 tokens so
# nearly every GSM8K answer fits.
"$lora" train --config "$LC_ROOT/configs/stories260k_gsm8k.json" --set "model=$model" --set "train_data=$data" \
    --set valid_data= --set steps="$steps" --set optimizer.lr=3e-3 --set max_seq_len=512 --set "output_dir=$out" \
    --set eval_every=0 --set save_every=0 --set lora.targets=all-linear
tuned_loss="$(eval_loss --adapter "$out")"
base_text="$(generate)"
tuned_text="$(generate --adapter "$out")"

cat <<EOF

=== before and after $steps steps ===
eval loss on $valid_label:
  base model     $base_loss
  with adapter   $tuned_loss
prompt:
$prompt
--- base model:
$base_text
--- with the adapter ($out):
$tuned_text
EOF
