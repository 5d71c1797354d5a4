#!/usr/bin/python3
"""PyTorch reference for the Llama-family forward pass (Hugging Face semantics),
written by hand: RMSNorm, rotate-half rotary embeddings, grouped-query causal
attention (no scaled_dot_product_attention in torch 1.13), SwiGLU, tied head.

Writes tests/fixtures/<name>_logits.bin for the C tests, so CI needs no PyTorch:
  int32 T, int32 V, int32 ids[T], float32 logits[T, V]  (little-endian)

Run with Debian's python3-torch:  /usr/bin/python3 tests/reference/llama_reference.py
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

from safetensors_io import load_safetensors_np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SHARED = os.path.join(ROOT, "..", "shared")

def load_safetensors(path):
    """{name: float32 torch tensor} of a safetensors file."""
    return {k: torch.from_numpy(v) for k, v in load_safetensors_np(path).items()}


def rms_norm(x, w, eps):
    var = x.pow(2).mean(-1, keepdim=True)
    return x * torch.rsqrt(var + eps) * w


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def llama_forward(cfg, W, ids, linear=None, pos=None, seg_start=None):
    """Logits of ids ([T] or [B, T]). linear(x, layer, parent, name) replaces the
    plain x @ W^T of every projection (LoRA references hook in there); pos gives
    rotary positions and seg_start the first key each token may see (packing),
    both [B, T], defaulting to 0..T-1 and 0."""
    C = cfg["hidden_size"]
    H = cfg["num_attention_heads"]
    KVH = cfg.get("num_key_value_heads", H)
    D = cfg.get("head_dim", C // H)
    eps = cfg["rms_norm_eps"]
    theta = cfg.get("rope_theta", 10000.0)
    ids = torch.as_tensor(ids, dtype=torch.long)
    single = ids.dim() == 1
    if single:
        ids = ids[None]
    B, T = ids.shape
    if pos is None:
        pos = torch.arange(T)[None].expand(B, T)
    if seg_start is None:
        seg_start = torch.zeros(B, T, dtype=torch.long)
    if linear is None:
        linear = lambda x, l, parent, name: x @ W[f"model.layers.{l}.{parent}.{name}.weight"].T

    inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    freqs = torch.as_tensor(pos).float()[..., None] * inv_freq  # [B, T, D/2]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[:, None], emb.sin()[:, None]  # [B, 1, T, D]
    # key s is visible from query t iff seg_start[t] <= s <= t
    t_idx = torch.arange(T)
    seg = torch.as_tensor(seg_start)
    allowed = (t_idx[None, :, None] >= t_idx[None, None, :]) & (t_idx[None, None, :] >= seg[:, :, None])
    mask = torch.where(allowed, 0.0, float("-inf"))[:, None]  # [B, 1, T, T]

    x = W["model.embed_tokens.weight"][ids]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = linear(h, l, "self_attn", "q_proj").view(B, T, H, D).transpose(1, 2)
        k = linear(h, l, "self_attn", "k_proj").view(B, T, KVH, D).transpose(1, 2)
        v = linear(h, l, "self_attn", "v_proj").view(B, T, KVH, D).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // KVH, dim=1)
        v = v.repeat_interleave(H // KVH, dim=1)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D) + mask, dim=-1)
        o = (att @ v).transpose(1, 2).reshape(B, T, H * D)
        x = x + linear(o, l, "self_attn", "o_proj")
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = linear(h, l, "mlp", "gate_proj")
        u = linear(h, l, "mlp", "up_proj")
        x = x + linear(torch.nn.functional.silu(g) * u, l, "mlp", "down_proj")
    x = rms_norm(x, W["model.norm.weight"], eps)
    head = W.get("lm_head.weight", W["model.embed_tokens.weight"])
    logits = x @ head.T
    return logits[0] if single else logits


def write_logits(path, ids, logits):
    T, V = logits.shape
    with open(path, "wb") as f:
        f.write(struct.pack("<ii", T, V))
        f.write(np.asarray(ids, dtype="<i4").tobytes())
        f.write(logits.numpy().astype("<f4").tobytes())


def main():
    model_dir = os.path.join(SHARED, "models", "stories260K")
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    W = load_safetensors(os.path.join(model_dir, "model.safetensors"))
    # BOS, "▁Once ▁upon ▁a ▁time" (403 407 261 378), then a spread of other
    # ids (plain pieces, byte-fallback pieces, the last id) so the fixture
    # covers positions and tokens the story opening does not.
    ids = [1, 403, 407, 261, 378, 442, 303, 271, 294, 260, 454, 266, 425, 263, 350, 301, 39, 500, 3, 511]
    with torch.no_grad():
        logits = llama_forward(cfg, W, ids)
    out = os.path.join(ROOT, "tests", "fixtures", "stories260k_logits.bin")
    write_logits(out, ids, logits)
    print(f"wrote {out}: T={len(ids)} V={logits.shape[1]} argmax={logits.argmax(-1).tolist()}")


if __name__ == "__main__":
    sys.exit(main())
