#!/usr/bin/python3
"""Checks a GGUF written by `lora export --format gguf` against the Hugging Face
folder it came from, independently of the C code: the safetensors are read by
hand (as llama_reference.py does), an optional PEFT adapter is merged in numpy
(W + scale * B @ A), q/k rows are moved from Hugging Face's rotate-half order
to llama.cpp's interleaved order (the inverse of transformers' conversion:
within each head, HF row j goes to row 2j and HF row D/2 + j to row 2j + 1),
and every tensor and the main metadata are compared. With --ref, the export is
also compared tensor by tensor and key by key with a GGUF llama.cpp wrote
(e.g. ../shared/models/stories260K.gguf), and the differing keys are listed.

CI does not run Python: this is a reference to run by hand, e.g.
  /usr/bin/python3 tests/reference/check_gguf.py out.gguf ../shared/models/stories260K \\
      --ref ../shared/models/stories260K.gguf
Needs Python 3 and numpy; reads GGUF with tests/reference/gguf_reader.py.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_reader import GGUFFile, GGML_F16, GGML_F32, GGML_BF16  # noqa: E402
from safetensors_io import load_safetensors_np  # noqa: E402

def load_hf(folder):
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    w = {}
    for name in files:
        w.update(load_safetensors_np(os.path.join(folder, name)))
    return w


def merge_adapter(W, adapter):
    with open(os.path.join(adapter, "adapter_config.json")) as f:
        cfg = json.load(f)
    r, alpha = cfg["r"], cfg["lora_alpha"]
    scale = alpha / np.sqrt(r) if cfg.get("use_rslora") else alpha / r
    A = load_safetensors_np(os.path.join(adapter, "adapter_model.safetensors"))
    n = 0
    for key, a in A.items():
        if ".lora_A." not in key:
            continue
        b = A[key.replace(".lora_A.", ".lora_B.")]
        base = key.replace("base_model.model.", "", 1).replace(".lora_A.weight", ".weight")
        W[base] = (W[base].astype(np.float64) + scale * (b.astype(np.float64) @ a.astype(np.float64))).astype(np.float32)
        n += 1
    return n


def to_llamacpp_rows(w, n_head):
    """HF rotate-half rows -> llama.cpp's interleaved rows, head by head."""
    D = w.shape[0] // n_head
    out = np.empty_like(w)
    for h in range(n_head):
        for j in range(D // 2):
            out[h * D + 2 * j] = w[h * D + j]
            out[h * D + 2 * j + 1] = w[h * D + D // 2 + j]
    return out


GGUF_NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
}


def expected_tensors(cfg, W):
    arch = "qwen2" if cfg["model_type"] == "qwen2" else "llama"
    H = cfg["num_attention_heads"]
    KVH = cfg.get("num_key_value_heads", H)
    out = {
        "token_embd.weight": W["model.embed_tokens.weight"],
        "output_norm.weight": W["model.norm.weight"],
    }
    if not cfg.get("tie_word_embeddings", False) and "lm_head.weight" in W:
        out["output.weight"] = W["lm_head.weight"]
    for l in range(cfg["num_hidden_layers"]):
        for hf, gg in GGUF_NAMES.items():
            for kind in ("weight", "bias"):
                key = "model.layers.%d.%s.%s" % (l, hf, kind)
                if key not in W:
                    continue
                t = W[key]
                if arch == "llama" and hf in ("self_attn.q_proj", "self_attn.k_proj"):
                    t = to_llamacpp_rows(t, H if hf.endswith("q_proj") else KVH)
                out["blk.%d.%s.%s" % (l, gg, kind)] = t
    return arch, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("gguf")
    ap.add_argument("hf_dir")
    ap.add_argument("--adapter", help="PEFT adapter folder merged into the HF weights first")
    ap.add_argument("--ref", help="a GGUF llama.cpp wrote for the same weights")
    args = ap.parse_args()

    with open(os.path.join(args.hf_dir, "config.json")) as f:
        cfg = json.load(f)
    W = load_hf(args.hf_dir)
    if args.adapter:
        print("merged %d adapters from %s" % (merge_adapter(W, args.adapter), args.adapter))
    arch, want = expected_tensors(cfg, W)
    g = GGUFFile(args.gguf)
    ok = True

    def fail(msg):
        nonlocal ok
        ok = False
        print("FAIL " + msg)

    # Tensors
    worst = 0.0
    for name, t in want.items():
        if name not in g.tensors:
            fail("%s missing" % name)
            continue
        info = g.tensors[name]
        got = g.tensor(name)
        if got.shape != t.shape:
            fail("%s: shape %s, want %s" % (name, got.shape, t.shape))
            continue
        if t.ndim == 1 and info.type != GGML_F32:
            fail("%s: 1-D tensor stored as type %d, want F32" % (name, info.type))
        if info.type == GGML_F16:
            ref = t.astype(np.float16).astype(np.float32)
        elif info.type == GGML_BF16:
            b = t.astype(np.float32).view(np.uint32)
            b = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint32) << 16
            ref = b.view(np.float32)
        else:
            ref = t
        diff = float(np.max(np.abs(got - ref))) if t.size else 0.0
        tol = 1e-5 * max(1.0, float(np.max(np.abs(ref)))) if args.adapter else 0.0
        worst = max(worst, diff)
        if diff > tol:
            fail("%s: max |diff| %g (tolerance %g)" % (name, diff, tol))
    extra = sorted(set(g.tensors) - set(want))
    if extra:
        fail("tensors the HF folder does not explain: %s" % extra)
    print("tensors: %d checked, max |diff| %g" % (len(want), worst))

    # Metadata from config.json and tokenizer.json
    H = cfg["num_attention_heads"]
    expect = {
        "general.architecture": arch,
        arch + ".block_count": cfg["num_hidden_layers"],
        arch + ".embedding_length": cfg["hidden_size"],
        arch + ".feed_forward_length": cfg["intermediate_size"],
        arch + ".attention.head_count": H,
        arch + ".attention.head_count_kv": cfg.get("num_key_value_heads", H),
        arch + ".context_length": cfg["max_position_embeddings"],
        arch + ".rope.dimension_count": cfg.get("head_dim", cfg["hidden_size"] // H),
    }
    for k, v in expect.items():
        if g.kv.get(k) != v:
            fail("%s = %r, want %r" % (k, g.kv.get(k), v))
    eps = g.kv.get(arch + ".attention.layer_norm_rms_epsilon")
    if eps is None or abs(eps - cfg["rms_norm_eps"]) > 1e-12 + 1e-6 * cfg["rms_norm_eps"]:
        fail("layer_norm_rms_epsilon %r, want %r" % (eps, cfg["rms_norm_eps"]))
    with open(os.path.join(args.hf_dir, "tokenizer.json")) as f:
        tj = json.load(f)
    vocab = dict(tj["model"]["vocab"])
    for a in tj.get("added_tokens", []):
        vocab[a["content"]] = a["id"]
    tokens = g.kv["tokenizer.ggml.tokens"]
    if len(tokens) != cfg["vocab_size"]:
        fail("%d tokens, vocab_size %d" % (len(tokens), cfg["vocab_size"]))
    bad = [i for i, t in enumerate(tokens) if vocab.get(t, -1) != i and not t.startswith("[PAD")]
    if bad:
        fail("%d tokens differ from tokenizer.json, first %r" % (len(bad), [tokens[i] for i in bad[:5]]))
    print("metadata: %d keys, %d tokens checked" % (len(g.kv), len(tokens)))

    if args.ref:
        r = GGUFFile(args.ref)
        n = 0
        for name in g.tensor_order:
            if name not in r.tensors:
                fail("%s not in %s" % (name, args.ref))
                continue
            a, b = g.tensor(name), r.tensor(name)
            if a.shape != b.shape or not np.array_equal(a, b):
                fail("%s differs from %s (max |diff| %g)" % (name, args.ref, float(np.max(np.abs(a - b))) if a.shape == b.shape else -1))
            n += 1
        for name in sorted(set(r.tensors) - set(g.tensors)):
            note = ""
            if name == "output.weight" and np.array_equal(r.tensor(name), r.tensor("token_embd.weight")):
                note = " (a copy of token_embd.weight: tied, llama.cpp falls back to token_embd)"
            print("only in ref: tensor %s%s" % (name, note))
        print("ref: %d tensors identical" % n)
        for k in sorted(set(g.kv) | set(r.kv)):
            if k not in r.kv:
                print("only in export: %s = %s" % (k, _short(g.kv[k])))
            elif k not in g.kv:
                print("only in ref:    %s = %s" % (k, _short(r.kv[k])))
            elif _bits(g.kv[k]) != _bits(r.kv[k]):
                print("differs:        %s: export %s, ref %s" % (k, _short(g.kv[k]), _short(r.kv[k])))
            else:
                print("same:           %s" % k)

    print("OK" if ok else "FAILED")
    return 0 if ok else 1


def _bits(v):
    # Compare floats bitwise so that -0.0 and 0.0 scores count as different.
    if isinstance(v, float):
        return struct.pack("<f", v)
    if isinstance(v, list):
        return [_bits(x) for x in v]
    return v


def _short(v):
    if isinstance(v, list):
        return "[%s%s] (%d)" % (", ".join(repr(x) for x in v[:4]), ", ..." if len(v) > 4 else "", len(v))
    return repr(v)


if __name__ == "__main__":
    sys.exit(main())
