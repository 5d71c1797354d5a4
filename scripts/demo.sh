#!/usr/bin/env bash
# The main job: set up, build, fine-tune a LoRA adapter for a minute or less,
# and generate with it. Arguments (defaults from ../shared beside the repo):
#   $1  a Hugging Face model folder    (../shared/models/stories260K)
#   $2  a prompt/completion JSONL file  (../shared/data/gsm8k_train.jsonl)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

model="${1:-$LC_ROOT/../shared/models/stories260K}"
data="${2:-$LC_ROOT/../shared/data/gsm8k_train.jsonl}"
if [ ! -d "$model" ]; then
    echo "lora.c: no model folder at $model; pass one: bash scripts/demo.sh MODEL_DIR [DATA.jsonl]" >&2
    exit 2
fi
if [ ! -f "$data" ]; then
    echo "lora.c: no training data at $data; pass a JSONL file: bash scripts/demo.sh MODEL_DIR DATA.jsonl" >&2
    exit 2
fi
lc_install_packages
lc_build

out="$LC_ROOT/runs/demo"
rm -rf "$out"
lora="$LC_BUILD/lora"
"$lora" train --config "$LC_ROOT/configs/stories260k_gsm8k.json" --set "model=$model" --set "train_data=$data" \
    --set valid_data= --set steps="${LC_DEMO_STEPS:-100}" --set "output_dir=$out" --set eval_every=0 --set save_every=0
prompt=$'Question: Tom has 3 apples and buys 5 more. How many apples does he have?\nAnswer:'
echo "--- base model:" >&2
"$lora" generate --model "$model" --prompt "$prompt" --temperature 0 --max-tokens 48
echo "--- with the adapter:" >&2
"$lora" generate --model "$model" --adapter "$out" --prompt "$prompt" --temperature 0 --max-tokens 48
