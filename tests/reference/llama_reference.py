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

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SHARED = os.path.join(ROOT, "..", "shared")

DTYPES = {"F32": np.float32, "F16": np.float16}


def load_safetensors(path):
    """Reads a safetensors file from its specification (8-byte length, JSON, data)."""
    with open(path, "rb") as f:
        blob = f.read()
    (hlen,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + hlen])
    data = blob[8 + hlen :]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, en = e["data_offsets"]
        if e["dtype"] == "BF16":
            raw = np.frombuffer(data[b:en], dtype=np.uint16).astype(np.uint32) << 16
            arr = raw.view(np.float32)
        else:
            arr = np.frombuffer(data[b:en], dtype=DTYPES[e["dtype"]]).astype(np.float32)
        out[name] = torch.from_numpy(arr.reshape(e["shape"]).copy())
    return out


def rms_norm(x, w, eps):
    var = x.pow(2).mean(-1, keepdim=True)
    return x * torch.rsqrt(var + eps) * w


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def llama_forward(cfg, W, ids):
    C = cfg["hidden_size"]
    H = cfg["num_attention_heads"]
    KVH = cfg.get("num_key_value_heads", H)
    D = cfg.get("head_dim", C // H)
    eps = cfg["rms_norm_eps"]
    theta = cfg.get("rope_theta", 10000.0)
    T = len(ids)

    inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    pos = torch.arange(T, dtype=torch.float32)
    freqs = torch.outer(pos, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()  # [T, D]

    x = W["model.embed_tokens.weight"][torch.tensor(ids)]
    mask = torch.full((T, T), float("-inf")).triu(1)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = (h @ W[p + "self_attn.q_proj.weight"].T).view(T, H, D).transpose(0, 1)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).view(T, KVH, D).transpose(0, 1)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).view(T, KVH, D).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // KVH, dim=0)
        v = v.repeat_interleave(H // KVH, dim=0)
        att = (q @ k.transpose(1, 2)) / math.sqrt(D) + mask
        att = torch.softmax(att, dim=-1)
        o = (att @ v).transpose(0, 1).reshape(T, H * D)
        x = x + o @ W[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = h @ W[p + "mlp.gate_proj.weight"].T
        u = h @ W[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ W[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, W["model.norm.weight"], eps)
    head = W.get("lm_head.weight", W["model.embed_tokens.weight"])
    return x @ head.T


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
