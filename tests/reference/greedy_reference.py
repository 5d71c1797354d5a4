#!/usr/bin/python3
"""Greedy continuations of stories260K from the PyTorch reference forward
(llama_reference.py), tokenized and decoded by tokenizers.js
(hf_tokenize.mjs), for `lora eval --generate` (test_eval_generate): a JSONL
of {"prompt", "completion"} whose completions are the base model's own
greedy answers, so exact match must score 1.0.

Each answer stops at EOS, at a blank line (cut there, as lora eval does for
plain prompts) or after MAX_NEW tokens.

  mkdir /tmp/tokref && cd /tmp/tokref && npm install @huggingface/tokenizers@0.2.0
  cd /tmp/tokref && /usr/bin/python3 /path/to/tests/reference/greedy_reference.py
"""
import json
import os
import subprocess
import sys

import torch

from llama_reference import ROOT, SHARED, llama_forward, load_safetensors

MAX_NEW = 24
PROMPTS = [
    "Once upon a time, there was a little girl named",
    "Tom and his dog went to the park. They",
    "The sun was hot, so Lily wanted to",
    "One day, a big bird flew",
    "Ben had a red ball. He",
    "Mom said, \"It is time to",
    "The cat saw a fish in the water and",
    "Sue liked to play with her",
]


def hf(request):
    here = os.path.dirname(os.path.abspath(__file__))
    p = subprocess.run(["node", os.path.join(here, "hf_tokenize.mjs")], input=json.dumps(request).encode(),
                       capture_output=True, check=True)
    return json.loads(p.stdout)


def main():
    model_dir = os.path.join(SHARED, "models", "stories260K")
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    W = load_safetensors(os.path.join(model_dir, "model.safetensors"))
    eos = cfg.get("eos_token_id", 2)
    prompts = hf({"tokenizer": model_dir, "encode": PROMPTS})["encode"]
    rows = []
    for text, ids in zip(PROMPTS, prompts):
        new = []
        with torch.no_grad():
            for _ in range(MAX_NEW):
                t = int(llama_forward(cfg, W, ids + new)[-1].argmax())
                if t == eos:
                    break
                new.append(t)
                if "\n\n" in hf({"tokenizer": model_dir, "decode": [new]})["decode"][0]:
                    break
        answer = hf({"tokenizer": model_dir, "decode": [new]})["decode"][0].split("\n\n")[0]
        rows.append({"prompt": text, "completion": answer})
    out = os.path.join(ROOT, "tests", "fixtures", "greedy_stories260k.jsonl")
    with open(out, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    print(f"wrote {out}: {len(rows)} prompts")


if __name__ == "__main__":
    sys.exit(main())
