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

Second mode, plain Python 3 without numpy: for a family fixture of
tests/fixtures/families, rebuild the tiny model and its PEFT adapter, export
the merged GGUF with the lora binary, and recompute the logits from the GGUF
alone with llama.cpp's graph for its architecture, against the fixture's
PyTorch logits (see the --family section below), e.g.
  python3 tests/reference/check_gguf.py --family bloom --lora build/lora
"""
import argparse
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError:  # only the --family mode runs without numpy
    np = None

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_reader import GGUFFile, GGML_F16, GGML_F32, GGML_BF16  # noqa: E402
if np is not None:
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
    if "--family" in sys.argv:
        ap = argparse.ArgumentParser(description="logits of a family fixture's export, from the GGUF alone")
        ap.add_argument("--family", required=True, help="a fixture of tests/fixtures/families (gpt2, bloom, ...)")
        ap.add_argument("--lora", default="build/lora", help="the lora binary that exports")
        ap.add_argument("--shared", help="the shared fixture folder (default: ../shared beside the repository)")
        ap.add_argument("--gguf-out", help="the GGUF to write (or to read, when it exists)")
        ap.add_argument("--keep", help="folder for the rebuilt model and adapter (default: a temporary one)")
        ap.add_argument("--hf-semantics", action="store_true",
                        help="apply the HF attention scale/sliding window llama.cpp's graph lacks")
        ap.add_argument("--tol", type=float, default=2e-3)
        return check_family(ap.parse_args())
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("gguf")
    ap.add_argument("hf_dir")
    ap.add_argument("--adapter", help="PEFT adapter folder merged into the HF weights first")
    ap.add_argument("--ref", help="a GGUF llama.cpp wrote for the same weights")
    args = ap.parse_args()
    if np is None:
        raise SystemExit("this mode needs numpy (the --family mode does not)")

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


# ---------------------------------------------------------------- --family: logits from the GGUF alone
#
# Pure Python (no numpy): rebuilds a tiny model of tests/fixtures/families/
# <family>.json (checkpoint and PEFT adapter, from the fixture's value rule),
# runs `lora export --format gguf` on it, reads the GGUF back and computes
# the logits the way llama.cpp's graph for general.architecture does (names,
# fused [q; k; v] split, rope kind per architecture, norm kinds, ALiBi,
# soft-caps, Falcon's attn_norm/attn_norm_2 roles, ...), from the GGUF's
# tensors and metadata only. These are compared with the fixture's PyTorch
# logits of the base model with the adapter applied.
#
# Known differences of llama.cpp's graphs from the Hugging Face models that
# the fixtures exercise (--hf-semantics restores the HF behaviour from the
# fixture's config.json, to show the tensors themselves are right):
#   mistral  the llama architecture has no sliding window (window 5 < T here)
#   gemma2   llama.cpp scales queries by 1/sqrt(head_dim) (27B: 1/sqrt(n_embd/n_head)),
#            not query_pre_attn_scalar**-0.5 (24 here, head_dim 16)
#   falcon*  ggml's GELU is the tanh approximation; Falcon's is exact (tiny difference)

M64 = (1 << 64) - 1


def fixture_value(name, i, scale, offset):
    h = 0xCBF29CE484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001B3) & M64
    z = (h + (i + 1) * 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    z ^= z >> 31
    u = (z >> 40) / 16777216.0
    return (2.0 * u - 1.0) * scale + offset


def write_fixture_tensors(entries, path):
    """F32 safetensors of fixture tensor entries, values from fixture_value."""
    header, blobs, off = {}, [], 0
    for e in entries:
        shape = e["shape"]
        n = 1
        for d in shape:
            n *= d
        if e.get("fill") == "tril":
            rows, cols = shape[-2], shape[-1]
            vals = [1.0 if (i % cols) <= (i // cols) % rows else 0.0 for i in range(n)]
        else:
            vals = [fixture_value(e["name"], i, e["scale"], e["offset"]) for i in range(n)]
        raw = struct.pack("<%df" % n, *vals)
        header[e["name"]] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def build_fixture(fx, shared, out_dir):
    model, adapter = os.path.join(out_dir, "model"), os.path.join(out_dir, "adapter")
    os.makedirs(model, exist_ok=True)
    os.makedirs(adapter, exist_ok=True)
    with open(os.path.join(model, "config.json"), "w") as f:
        json.dump(fx["config"], f, indent=2)
    write_fixture_tensors(fx["tensors"], os.path.join(model, "model.safetensors"))
    shutil.copy(os.path.join(shared, fx["tokenizer"]), os.path.join(model, "tokenizer.json"))
    lora = fx["lora"]
    acfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": lora["r"], "lora_alpha": lora["alpha"],
            "lora_dropout": 0.0, "bias": "none", "use_rslora": False,
            "fan_in_fan_out": bool(lora.get("fan_in_fan_out")), "target_modules": lora["target_modules"]}
    with open(os.path.join(adapter, "adapter_config.json"), "w") as f:
        json.dump(acfg, f, indent=2)
    write_fixture_tensors(lora["tensors"], os.path.join(adapter, "adapter_model.safetensors"))
    return model, adapter


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def _linear(W, x, b=None):
    y = [_dot(r, x) for r in W]
    return [v + c for v, c in zip(y, b)] if b is not None else y


def _gelu(x):  # ggml_gelu: the tanh approximation
    return 0.5 * x * (1.0 + math.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


def _silu(x):
    return x / (1.0 + math.exp(-x))


def _rms(x, w, eps):
    r = 1.0 / math.sqrt(sum(v * v for v in x) / len(x) + eps)
    return [v * r * (w[i] if w else 1.0) for i, v in enumerate(x)]


def _ln(x, w, b, eps):
    n = len(x)
    mu = sum(x) / n
    var = sum((v - mu) ** 2 for v in x) / n
    r = 1.0 / math.sqrt(var + eps)
    return [(v - mu) * r * (w[i] if w else 1.0) + (b[i] if b else 0.0) for i, v in enumerate(x)]


def _rope(v, pos, n_rot, base, neox):
    """llama.cpp's rope on one head: pairs (2i, 2i+1) (normal) or (i, i + n_rot/2) (neox)."""
    v = list(v)
    for i in range(n_rot // 2):
        th = pos * base ** (-2.0 * i / n_rot)
        c, s = math.cos(th), math.sin(th)
        a, b = (i, i + n_rot // 2) if neox else (2 * i, 2 * i + 1)
        v[a], v[b] = v[a] * c - v[b] * s, v[b] * c + v[a] * s
    return v


def _alibi_slopes(H, max_bias=8.0):  # llama.cpp (f_max_alibi_bias 8 for bloom)
    n2 = 2 ** int(math.floor(math.log2(H)))
    m0, m1 = 2.0 ** (-max_bias / n2), 2.0 ** (-(max_bias / 2.0) / n2)
    return [m0 ** (h + 1) if h < n2 else m1 ** (2 * (h - n2) + 1) for h in range(H)]


ROPE_KIND = {"llama": "norm", "olmo": "norm", "qwen2": "neox", "phi3": "neox", "gemma": "neox", "gemma2": "neox",
             "falcon": "neox", "gpt2": None, "bloom": None}


def llamacpp_logits(g, tokens, cols, hf_cfg=None):
    """Logits [B*T][len(cols)] of llama.cpp's graph for the GGUF (hf_cfg: HF overrides)."""
    arch = g.kv["general.architecture"]
    if arch not in ROPE_KIND:
        raise SystemExit("no llama.cpp graph here for architecture %s" % arch)
    P = lambda k, d=None: g.kv.get(arch + "." + k, d)  # noqa: E731
    C, L, H = P("embedding_length"), P("block_count"), P("attention.head_count")
    KV = P("attention.head_count_kv", H)
    D = P("attention.key_length", C // H)
    n_rot, base = P("rope.dimension_count", D), P("rope.freq_base", 10000.0)
    eps = P("attention.layer_norm_rms_epsilon", P("attention.layer_norm_epsilon"))
    rms = P("attention.layer_norm_rms_epsilon") is not None
    rope = ROPE_KIND[arch]
    scale = 1.0 / math.sqrt(D)
    attn_cap = P("attn_logit_softcapping") if arch == "gemma2" else None
    final_cap = P("final_logit_softcapping") if arch == "gemma2" else None
    clamp = P("attention.clamp_kqv")
    swa, swa_even = None, False
    if arch == "gemma2":
        swa, swa_even = P("attention.sliding_window", 4096), True
    if hf_cfg is not None:
        if arch == "gemma2":
            scale = hf_cfg.get("query_pre_attn_scalar", 224) ** -0.5
        if hf_cfg.get("model_type") == "mistral" and hf_cfg.get("sliding_window"):
            swa = hf_cfg["sliding_window"]
    slopes = _alibi_slopes(H) if arch == "bloom" else None
    has = lambda n: n in g.tensors  # noqa: E731
    T_ = lambda n: g.rows(n) if has(n) else None  # noqa: E731
    out_name = "output.weight" if has("output.weight") else "token_embd.weight"
    head = [g.row(out_name, c) for c in cols]

    def norm(x, w, b):
        return _rms(x, w, eps) if rms else _ln(x, w, b, eps)

    layers = []
    for l in range(L):
        p = "blk.%d." % l
        layers.append({k: T_(p + k) for k in (
            "attn_norm.weight", "attn_norm.bias", "attn_norm_2.weight", "attn_norm_2.bias", "attn_q.weight",
            "attn_q.bias", "attn_k.weight", "attn_k.bias", "attn_v.weight", "attn_v.bias", "attn_qkv.weight",
            "attn_qkv.bias", "attn_output.weight", "attn_output.bias", "post_attention_norm.weight",
            "ffn_norm.weight", "ffn_norm.bias", "ffn_gate.weight", "ffn_up.weight", "ffn_up.bias",
            "ffn_down.weight", "ffn_down.bias", "post_ffw_norm.weight")})
    out = []
    for seq in tokens:
        T = len(seq)
        xs = [g.row("token_embd.weight", t) for t in seq]
        if arch in ("gemma", "gemma2"):
            xs = [[v * math.sqrt(C) for v in x] for x in xs]
        if has("position_embd.weight"):
            xs = [[a + b for a, b in zip(x, g.row("position_embd.weight", t))] for t, x in enumerate(xs)]
        if has("token_embd_norm.weight"):
            w, b = T_("token_embd_norm.weight"), T_("token_embd_norm.bias")
            xs = [_ln(x, w, b, eps) for x in xs]
        for l, W in enumerate(layers):
            an = [norm(x, W["attn_norm.weight"], W["attn_norm.bias"]) for x in xs]
            ain = an
            if W["attn_norm_2.weight"]:  # Falcon-40B style: attention reads attn_norm_2, the MLP attn_norm
                ain = [norm(x, W["attn_norm_2.weight"], W["attn_norm_2.bias"]) for x in xs]
            qs, ks, vs = [], [], []
            for t, x in enumerate(ain):
                if W["attn_qkv.weight"]:
                    y = _linear(W["attn_qkv.weight"], x, W["attn_qkv.bias"])
                    q, k, v = y[:H * D], y[H * D:(H + KV) * D], y[(H + KV) * D:]
                else:
                    q = _linear(W["attn_q.weight"], x, W["attn_q.bias"])
                    k = _linear(W["attn_k.weight"], x, W["attn_k.bias"])
                    v = _linear(W["attn_v.weight"], x, W["attn_v.bias"])
                if clamp:
                    q, k, v = ([min(max(a, -clamp), clamp) for a in z] for z in (q, k, v))
                if rope:
                    q = sum((_rope(q[h * D:(h + 1) * D], t, n_rot, base, rope == "neox") for h in range(H)), [])
                    k = sum((_rope(k[h * D:(h + 1) * D], t, n_rot, base, rope == "neox") for h in range(KV)), [])
                qs.append(q)
                ks.append(k)
                vs.append(v)
            window = swa if swa and (not swa_even or l % 2 == 0) else None
            att = []
            for t in range(T):
                o = []
                for h in range(H):
                    kh = h // (H // KV)
                    q = qs[t][h * D:(h + 1) * D]
                    js = [j for j in range(t + 1) if window is None or t - j < window]
                    sc = []
                    for j in js:
                        s = _dot(q, ks[j][kh * D:(kh + 1) * D]) * scale
                        if attn_cap:
                            s = math.tanh(s / attn_cap) * attn_cap
                        if slopes:
                            s += slopes[h] * (j - t)
                        sc.append(s)
                    mx = max(sc)
                    e = [math.exp(s - mx) for s in sc]
                    z = sum(e)
                    o += [sum(e[i] * vs[j][kh * D + d] for i, j in enumerate(js)) / z for d in range(D)]
                att.append(_linear(W["attn_output.weight"], o, W["attn_output.bias"]))
            if W["post_attention_norm.weight"]:
                att = [_rms(a, W["post_attention_norm.weight"], eps) for a in att]

            def ffn(x):
                if W["ffn_gate.weight"]:
                    gt, up = _linear(W["ffn_gate.weight"], x), _linear(W["ffn_up.weight"], x)
                    act = _gelu if arch in ("gemma", "gemma2") else _silu
                    h_ = [act(a) * b for a, b in zip(gt, up)]
                elif arch == "phi3":  # ffn_up is [gate; up]: swiglu
                    y = _linear(W["ffn_up.weight"], x)
                    F = len(y) // 2
                    h_ = [_silu(a) * b for a, b in zip(y[:F], y[F:])]
                else:
                    h_ = [_gelu(a) for a in _linear(W["ffn_up.weight"], x, W["ffn_up.bias"])]
                return _linear(W["ffn_down.weight"], h_, W["ffn_down.bias"])

            if arch == "falcon":  # parallel block; the MLP reads attn_norm's output
                xs = [[a + b + c for a, b, c in zip(x, at, ffn(n))] for x, at, n in zip(xs, att, an)]
                continue
            xs = [[a + b for a, b in zip(x, at)] for x, at in zip(xs, att)]
            fo = [ffn(norm(x, W["ffn_norm.weight"], W["ffn_norm.bias"])) for x in xs]
            if W["post_ffw_norm.weight"]:
                fo = [_rms(f, W["post_ffw_norm.weight"], eps) for f in fo]
            xs = [[a + b for a, b in zip(x, f)] for x, f in zip(xs, fo)]
        fw, fb = T_("output_norm.weight"), T_("output_norm.bias")
        for x in xs:
            x = norm(x, fw, fb)
            lg = [_dot(r, x) for r in head]
            if final_cap:
                lg = [math.tanh(v / final_cap) * final_cap for v in lg]
            out.append(lg)
    return out


def check_family(args):
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    shared = args.shared or os.path.join(repo, "..", "shared")
    with open(os.path.join(repo, "tests", "fixtures", "families", args.family + ".json")) as f:
        fx = json.load(f)
    gguf = args.gguf_out
    if not gguf or not os.path.exists(gguf):
        work = args.keep or tempfile.mkdtemp(prefix="check_gguf_")
        model, adapter = build_fixture(fx, shared, work)
        gguf = gguf or os.path.join(work, args.family + ".gguf")
        cmd = [args.lora, "export", "--model", model, "--adapter", adapter, "--out", gguf, "--format", "gguf"]
        subprocess.run(cmd, check=True)
    g = GGUFFile(gguf)
    exp = fx["expected"]
    cols = exp["logit_cols"]
    got = llamacpp_logits(g, fx["tokens"], cols, fx["config"] if args.hf_semantics else None)
    worst, scale = 0.0, 0.0
    for a, b in zip(got, exp["logits"]):
        for x, y in zip(a, b):
            worst = max(worst, abs(x - y))
            scale = max(scale, abs(y))
    base = max(abs(x - y) for a, b in zip(got, exp["logits_base"]) for x, y in zip(a, b))
    ok = worst <= args.tol
    print("%s (%s%s): max |logits - PyTorch with adapter| %.3g (largest logit %.3g; without the adapter %.3g) %s"
          % (args.family, g.kv["general.architecture"], ", HF semantics" if args.hf_semantics else "", worst, scale,
             base, "OK" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
