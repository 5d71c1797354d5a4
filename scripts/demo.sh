#!/usr/bin/env bash
# The main job: set up, build, and generate a story with the model folder
# given as $1 (default: ../shared/models/stories260K beside the repository).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

model="${1:-$LC_ROOT/../shared/models/stories260K}"
if [ ! -d "$model" ]; then
    echo "lora.c: no model folder at $model; pass one: bash scripts/demo.sh PATH/TO/HF-MODEL-FOLDER" >&2
    exit 2
fi
lc_install_packages
lc_build
"$LC_BUILD/lora" generate --model "$model" --prompt "${LC_PROMPT:-Once upon a time}" --temperature 0 --max-tokens 60
