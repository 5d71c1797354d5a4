#!/usr/bin/python3
"""PyTorch reference for LoRA gradients of stories260K on a fixed batch.

LoRA as PEFT applies it: y = x W^T + scale * (x A^T) B^T on all seven
projections, scale = alpha / r. The batch has two rows: row 0 packs two
examples (positions restart, attention stays inside each example), row 1
holds one example followed by padding. Loss is the sum of cross-entropy over
target positions divided by their count.

Writes tests/fixtures/stories260k_lora_grads.bin (little-endian):
  int32 r, int32 B, int32 T, float32 alpha, float32 loss
  int32 tokens[B*T], targets[B*T], pos[B*T], seg_start[B*T]
  float32 params[P]   A then B of each module, layer-major, modules in the
                      order q k v o gate up down (lora.c's flat layout)
  float32 grads[P]    d loss / d params, same layout
Run with Debian's python3-torch: /usr/bin/python3 tests/reference/lora_reference.py
"""
import math
import os
import struct

import numpy as np
import torch

from llama_reference import ROOT, SHARED, llama_forward, load_safetensors

MODULES = [("self_attn", "q_proj"), ("self_attn", "k_proj"), ("self_attn", "v_proj"), ("self_attn", "o_proj"),
           ("mlp", "gate_proj"), ("mlp", "up_proj"), ("mlp", "down_proj")]


def forward_loss(cfg, W, lora, scale, tokens, targets, pos, seg_start):
    def linear(x, l, parent, name):
        key = f"model.layers.{l}.{parent}.{name}"
        A, Bm = lora[key]
        return x @ W[key + ".weight"].T + scale * (x @ A.T) @ Bm.T

    logits = llama_forward(cfg, W, tokens, linear=linear, pos=pos, seg_start=seg_start)
    flat_t = targets.reshape(-1)
    sel = flat_t >= 0
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1])[sel], flat_t[sel], reduction="sum")
    return ce / sel.sum()


def main():
    model_dir = os.path.join(SHARED, "models", "stories260K")
    import json
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    W = load_safetensors(os.path.join(model_dir, "model.safetensors"))
    r, alpha = 2, 6.0
    scale = alpha / r
    rng = np.random.default_rng(1234)
    lora, order = {}, []
    for l in range(cfg["num_hidden_layers"]):
        for parent, name in MODULES:
            key = f"model.layers.{l}.{parent}.{name}"
            out_f, in_f = W[key + ".weight"].shape
            # B non-zero so that every A gets a gradient.
            A = torch.tensor(rng.uniform(-1, 1, (r, in_f)) / math.sqrt(in_f), dtype=torch.float32, requires_grad=True)
            Bm = torch.tensor(rng.normal(0, 0.01, (out_f, r)), dtype=torch.float32, requires_grad=True)
            lora[key] = (A, Bm)
            order += [A, Bm]

    T = 12
    ex = [[1, 403, 407, 261, 378], [1, 425, 263, 350, 301, 39, 442], [1, 403, 500, 3, 294, 260, 454, 266, 511]]
    n_prompt = [2, 3, 4]  # loss only on tokens from here on (prompt masked)
    tokens = np.zeros((2, T), np.int32)
    targets = np.full((2, T), -1, np.int32)
    pos = np.zeros((2, T), np.int32)
    seg = np.zeros((2, T), np.int32)
    rows = [[0, 1], [2]]
    for b, ids in enumerate(rows):
        off = 0
        for e in ids:
            seq = ex[e]
            for t, tok in enumerate(seq):
                tokens[b, off + t] = tok
                pos[b, off + t] = t
                seg[b, off + t] = off
                if t + 1 < len(seq) and t + 1 >= n_prompt[e]:
                    targets[b, off + t] = seq[t + 1]
            off += len(seq)
    loss = forward_loss(cfg, W, lora, scale, torch.tensor(tokens, dtype=torch.long),
                        torch.tensor(targets, dtype=torch.long), torch.tensor(pos), torch.tensor(seg))
    loss.backward()
    params = np.concatenate([p.detach().numpy().ravel() for p in order]).astype("<f4")
    grads = np.concatenate([p.grad.numpy().ravel() for p in order]).astype("<f4")
    out = os.path.join(ROOT, "tests", "fixtures", "stories260k_lora_grads.bin")
    with open(out, "wb") as f:
        f.write(struct.pack("<iiiff", r, 2, T, alpha, loss.item()))
        for a in (tokens, targets, pos, seg):
            f.write(a.astype("<i4").tobytes())
        f.write(params.tobytes())
        f.write(grads.tobytes())
    print(f"wrote {out}: loss {loss.item():.6f}, {params.size} parameters, |grad| max {np.abs(grads).max():.3e}")


if __name__ == "__main__":
    main()
