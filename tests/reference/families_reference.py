#!/usr/bin/python3
"""Hand-written PyTorch references (Hugging Face semantics) for the model
families lora.c loads besides Llama, on tiny models with deterministic
pseudo-random weights, written as one JSON fixture per family so the C tests
can rebuild exactly the same checkpoint and compare logits and LoRA gradients
with no PyTorch in CI.

Families (fixture tests/fixtures/families/<family>.json):
  mistral     Llama layout, sliding-window causal mask (window < T)
  qwen2       Llama layout, bias on q/k/v only
  gemma       RMSNorm x*rsqrt(mean(x^2)+eps)*(1+w), embeddings * sqrt(hidden),
              GeGLU with gelu_pytorch_tanh, head_dim != hidden/heads, tied head
  gemma2      gemma + sandwich norms (post_attention_layernorm on the attention
              output, pre/post_feedforward_layernorm), scale
              query_pre_attn_scalar**-0.5, attention and final logit
              soft-capping, sliding window on even layers (0, 2, ...)
  phi3        fused self_attn.qkv_proj rows [q; k; v] and mlp.gate_up_proj
              rows [gate; up], SwiGLU, RMSNorm, rope, untied head
  gpt2        Conv1D weights [in, out] (y = x @ W + b), learned wpe, gelu_new,
              LayerNorm with bias, tied head; checkpoint keys without the
              "transformer." prefix plus the ignored buffer h.{i}.attn.bias
  falcon      7B style: multi_query, parallel_attn, one input_layernorm,
              fused query_key_value rows [q (H*D); k (D); v (D)], rope, exact GELU
  falcon_new  new_decoder_architecture, num_kv_heads 2, ln_attn / ln_mlp,
              query_key_value grouped per kv head: view(KVH, H/KVH + 2, D)
  olmo        LayerNorm without weight or bias, q/k/v clamped to +-clip_qkv
              right after the projections (before rope), SwiGLU, tied head
  bloom       ALiBi (6 heads: non-power-of-two slopes), word_embeddings_layernorm,
              query_key_value per head: view(H, 3, D), biases everywhere,
              bloom_gelu_forward, tied head
  mixtral     mistral attention (rope, GQA, sliding window < T), untied head; MLP
              replaced by block_sparse_moe: router gate [E, C] (no LoRA), experts
              experts.{e}.w1 (gate) / w3 (up) / w2 (down), expert(x) =
              w2(silu(w1 x) * w3 x); p = softmax(router logits), top-k of p,
              weights renormalized to sum 1, out = sum_j w_j expert_{idx_j}(x)
  olmoe       RMSNorm, rope, self_attn.q_norm / k_norm (RMSNorm over the whole
              q [H*D] / k [KVH*D] projection output, LoRA included) before the
              head split and rope, clip_qkv null; mlp.gate router, mlp.experts.{e}.
              gate_proj/up_proj/down_proj, norm_topk_prob false (top-k softmax
              weights used as they are), untied head; 12 experts so that expert 4
              of layer 0 is chosen by no token (its LoRA gradients are exactly 0)
  qwen2_moe   qwen2 attention (bias on q/k/v only), RMSNorm, rope, untied head;
              sparse layers (i not in mlp_only_layers, (i+1) % decoder_sparse_step
              == 0): mlp.gate router + mlp.experts.{e}.* (moe_intermediate_size),
              norm_topk_prob false, plus sigmoid(mlp.shared_expert_gate x) *
              mlp.shared_expert(x) (shared_expert_intermediate_size); layers in
              mlp_only_layers (here 1) a dense SwiGLU mlp (intermediate_size)
MoE families route every token (softmax and top-k in float64, ties as torch.topk;
the fixtures keep the k-th and (k+1)-th probabilities of every token apart), run
each expert only on its tokens and never adapt the router gates; PEFT suffix
matching adapts every expert's (and the shared expert's) projections separately.

Deterministic weights: element i (row-major over the stored HF shape) of the
tensor called NAME, with (scale, offset) from the fixture, is
    h = FNV-1a 64 of the UTF-8 NAME
    z = h + (i + 1) * 0x9E3779B97F4A7C15                (mod 2^64, splitmix64)
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB
    z = z ^ (z >> 31)
    u = (z >> 40) / 2^24
    value = float32((2u - 1) * scale + offset)          (computed in double)
A tensor entry with "fill": "tril" is instead 1.0 where col <= row (last two
dims) and 0.0 elsewhere (GPT-2's causal-mask buffer; loaders must ignore it).
LoRA tensors use the same rule under their PEFT names
(base_model.model.<module path>.lora_A.weight [r, in], .lora_B.weight [out, r]);
y = base(x) + (alpha / r) * (x @ A^T) @ B^T on every listed module, the fused
ones with ONE adapter over the whole fused output (HF row order).

Each fixture holds: family, config (the config.json to write), tokenizer
(relative to ../shared), text, tokens [B=2][T], tensors (every checkpoint
tensor), lora {r, alpha, target_modules, fan_in_fan_out, tensors} (r 4, alpha 8;
r 2, alpha 4 for the MoE families, whose many expert adapters would make big
fixtures), semantics
(the conventions the reference implements, in words), and expected:
  logit_cols  64 vocabulary ids (every target id included), sorted
  logits      [B*T][64] with LoRA, rows ordered b-major then t
  logits_base [B*T][64] without LoRA
  loss        mean cross-entropy (with LoRA) over the B*(T-1) positions t that
              predict tokens[b][t+1] (after final soft-capping for gemma2)
  loss_base   the same without LoRA
  grads       {PEFT tensor name: d loss / d tensor, flat row-major}
and, for the MoE families only:
  expert_counts       [layer][expert] how many of the B*T tokens chose the expert
                      (with LoRA); [] for a dense layer
  expert_counts_loss  the same over the B*(T-1) positions t < T-1 (those whose
                      outputs reach the loss); an expert counted 0 here has all
                      its LoRA gradients exactly 0, any other has nonzero ones
  expert_counts_base  expert_counts without LoRA
  min_topk_gap        min over tokens and layers (with and without LoRA) of
                      p_(k) - p_(k+1), the routing margin
The reference runs in float64 (weights are the float32 values above); floats
are printed as float32 with 9 significant digits.

Token ids come from lora.c's own tokenizer (build/lora tokenize ... --no-bos),
so build/lora must exist (or name another binary in the environment variable
LC_LORA_BIN).

Run with Debian's python3-torch:
  /usr/bin/python3 tests/reference/families_reference.py [family...]      (re)write fixtures
  /usr/bin/python3 tests/reference/families_reference.py --verify [family...]
      rebuild each fixture's model from its JSON alone and check its expected values
"""
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F

from llama_reference import ROOT, SHARED, llama_forward

OUT_DIR = os.path.join(ROOT, "tests", "fixtures", "families")
LORA_BIN = os.environ.get("LC_LORA_BIN") or os.path.join(ROOT, "build", "lora")
R, ALPHA = 4, 8
NCOLS = 64
MAX_T = 16
TEXTS = ["The quick brown fox jumps over the lazy dog near the quiet river bank today.",
         "Once upon a time, a small robot learned to paint bright pictures of the sea."]
DT = torch.float64

# --------------------------------------------------------------------------
# deterministic weights


def fnv1a64(name):
    h = 0xCBF29CE484222325
    for b in name.encode("utf-8"):
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def gen_values(name, shape, scale, offset):
    """float32 array of the documented hash rule (numpy uint64 wraps mod 2^64)."""
    n = int(np.prod(shape)) if len(shape) else 1
    with np.errstate(over="ignore"):
        i1 = np.arange(1, n + 1, dtype=np.uint64)
        z = np.uint64(fnv1a64(name)) + i1 * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(40)).astype(np.float64) / float(1 << 24)
    return ((2.0 * u - 1.0) * scale + offset).astype(np.float32).reshape(shape)


def gen_scalar_check():
    """The vectorised rule against a plain-Python one on a few elements."""
    M = (1 << 64) - 1
    name, scale, offset = "model.layers.0.self_attn.q_proj.weight", 0.25, 0.5
    arr = gen_values(name, [7], scale, offset)
    for i in range(7):
        z = (fnv1a64(name) + (i + 1) * 0x9E3779B97F4A7C15) & M
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
        z ^= z >> 31
        u = (z >> 40) / 2.0 ** 24
        assert np.float32((2 * u - 1) * scale + offset) == arr[i]


def sc(n_in, mult=1.0):
    """mult/sqrt(in) rounded to 4 significant digits, so the JSON number is exact."""
    return float(f"{mult / math.sqrt(n_in):.4g}")


QKV_MULT = 2.0  # q/k/v (and fused qkv) weights at 2/sqrt(in): attention scores of std ~1, not flat
QKV_MODS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.qkv_proj",
            "attn.c_attn", "self_attention.query_key_value")


def T_(name, shape, scale, offset=0.0, **extra):
    d = {"name": name, "shape": list(shape), "scale": float(scale), "offset": float(offset)}
    d.update(extra)
    return d


def build_tensors(specs):
    out = {}
    for s in specs:
        if s.get("fill") == "tril":
            n = s["shape"][-1]
            out[s["name"]] = np.broadcast_to(np.tril(np.ones((n, n), np.float32)), s["shape"]).copy()
        else:
            out[s["name"]] = gen_values(s["name"], s["shape"], s["scale"], s["offset"])
    return out


# --------------------------------------------------------------------------
# shared pieces of the forward passes


def rope_cos_sin(T, D, theta):
    inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=DT) / D))
    freqs = torch.arange(T, dtype=DT)[:, None] * inv_freq[None]
    emb = torch.cat((freqs, freqs), dim=-1)  # [T, D]
    return emb.cos(), emb.sin()


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x, cos, sin):
    return x * cos + rotate_half(x) * sin


def allowed_mask(T, window=None):
    """[T, T] bool: query i sees key j iff j <= i and (no window or j > i - window),
    HF masking_utils.sliding_window_overlay (kv_idx > q_idx - sliding_window)."""
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    ok = j <= i
    if window is not None:
        ok = ok & (j > i - window)
    return ok


def attention(q, k, v, scale, window=None, softcap=None, bias=None):
    """q [B,H,T,D], k/v [B,H,T,D] (already repeated for GQA)."""
    T = q.shape[2]
    s = (q @ k.transpose(-1, -2)) * scale
    if softcap is not None:
        s = torch.tanh(s / softcap) * softcap
    if bias is not None:
        s = s + bias
    s = s.masked_fill(~allowed_mask(T, window), float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def merge_heads(o):
    B, H, T, D = o.shape
    return o.transpose(1, 2).reshape(B, T, H * D)


def gelu_tanh(x):  # gelu_new / gelu_pytorch_tanh
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def bloom_gelu(x):  # bloom_gelu_forward
    return x * 0.5 * (1.0 + torch.tanh(0.79788456 * x * (1 + 0.044715 * x * x)))


def layer_norm(x, W, key, eps):
    return F.layer_norm(x, (x.shape[-1],), W[key + ".weight"], W[key + ".bias"], eps)


def make_linear(W, lora, scaling):
    """lin(x, key, path, conv1d): the checkpoint projection `key` (weight, optional
    bias) plus the LoRA adapter of the module at `path` inside *ForCausalLM."""

    def lin(x, key, path, conv1d=False):
        w = W[key + ".weight"]
        y = x @ w if conv1d else x @ w.T
        if key + ".bias" in W:
            y = y + W[key + ".bias"]
        if lora is not None:
            a = lora.get(f"base_model.model.{path}.lora_A.weight")
            if a is not None:
                b = lora[f"base_model.model.{path}.lora_B.weight"]
                y = y + ((x @ a.T) @ b.T) * scaling
        return y

    return lin


# --------------------------------------------------------------------------
# Mixture of experts: mixtral, olmoe, qwen2_moe

MOE_FAMS = ("mixtral", "olmoe", "qwen2_moe")
ROUTER_MULT = 2.0  # router weights at 2/sqrt(C): routing probabilities spread, not flat
ROUTER_MODS = ("block_sparse_moe.gate", "mlp.gate")
NO_LORA_MODS = ROUTER_MODS + ("mlp.shared_expert_gate",)  # no PEFT target name ends these paths


def moe_layout(fam, cfg, l):
    """None where layer l has a dense MLP, else its sparse MoE block:
    block (module under the layer), E, k, renorm (top-k weights renormalized),
    F (expert width), projs (gate, up, down names), shared (shared expert width)."""
    if fam == "mixtral":
        return dict(block="block_sparse_moe", E=cfg["num_local_experts"], k=cfg["num_experts_per_tok"],
                    renorm=True, F=cfg["intermediate_size"], projs=("w1", "w3", "w2"), shared=None)
    if fam == "olmoe":
        return dict(block="mlp", E=cfg["num_experts"], k=cfg["num_experts_per_tok"],
                    renorm=cfg["norm_topk_prob"], F=cfg["intermediate_size"],
                    projs=("gate_proj", "up_proj", "down_proj"), shared=None)
    if fam == "qwen2_moe":
        # HF Qwen2MoeDecoderLayer
        if (l not in cfg["mlp_only_layers"]) and (cfg["num_experts"] > 0 and
                                                  (l + 1) % cfg["decoder_sparse_step"] == 0):
            return dict(block="mlp", E=cfg["num_experts"], k=cfg["num_experts_per_tok"],
                        renorm=cfg["norm_topk_prob"], F=cfg["moe_intermediate_size"],
                        projs=("gate_proj", "up_proj", "down_proj"),
                        shared=cfg["shared_expert_intermediate_size"])
    return None


def swiglu(x, lin, p, projs):
    g, u, d = (p + n for n in projs)
    return lin(F.silu(lin(x, g, g)) * lin(x, u, u), d, d)


def moe_block(h, W, lin, p, mo, stats=None, layer=None, dense=False):
    """HF MixtralSparseMoeBlock / OlmoeSparseMoeBlock / Qwen2MoeSparseMoeBlock, in float64.
    dense: every expert on every token times its (mostly zero) routing weight (self-check)."""
    B, T, C = h.shape
    x = h.reshape(B * T, C)
    b = p + mo["block"] + "."
    prob = torch.softmax(x @ W[b + "gate.weight"].T, dim=-1)  # [N, E], router without LoRA
    w, idx = torch.topk(prob, mo["k"], dim=-1)
    if mo["renorm"]:
        w = w / w.sum(dim=-1, keepdim=True)
    out = torch.zeros_like(x)
    if dense:
        coef = torch.zeros_like(prob).scatter(1, idx, w)
        for e in range(mo["E"]):
            out = out + coef[:, e:e + 1] * swiglu(x, lin, b + f"experts.{e}.", mo["projs"])
    for e in range(0 if dense else mo["E"]):
        tok, slot = torch.where(idx == e)  # the tokens that chose expert e, in token order
        if tok.numel() == 0:
            continue
        y = swiglu(x[tok], lin, b + f"experts.{e}.", mo["projs"])
        out = out.index_add(0, tok, y * w[tok, slot, None])
    if mo["shared"]:
        y = swiglu(x, lin, b + "shared_expert.", mo["projs"])
        out = out + torch.sigmoid(x @ W[b + "shared_expert_gate.weight"].T) * y
    if stats is not None:
        stats.setdefault("routing", []).append((layer, prob.detach(), idx))
    return out.view(B, T, C)


# --------------------------------------------------------------------------
# Llama-like families: mistral, qwen2, gemma, gemma2, phi3, olmo, mixtral, olmoe, qwen2_moe


def llama_like_forward(fam, cfg, W, ids, lin, stats=None, moe_dense=False):
    C = cfg["hidden_size"]
    H = cfg["num_attention_heads"]
    KVH = cfg.get("num_key_value_heads") or H
    D = cfg.get("head_dim") or C // H
    eps = cfg.get("rms_norm_eps", 1e-6)
    theta = cfg.get("rope_theta", 10000.0)
    B, T = ids.shape
    gemma = fam in ("gemma", "gemma2")

    def norm(x, key):
        if fam == "olmo":  # OlmoLayerNorm: no weight, no bias, eps 1e-5
            return F.layer_norm(x, (C,), None, None, 1e-5)
        xn = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        return xn * (1.0 + W[key]) if gemma else xn * W[key]

    x = W["model.embed_tokens.weight"][ids]
    if gemma:
        x = x * math.sqrt(C)
    cos, sin = rope_cos_sin(T, D, theta)
    scale = cfg["query_pre_attn_scalar"] ** -0.5 if fam == "gemma2" else 1.0 / math.sqrt(D)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = norm(x, p + "input_layernorm.weight")
        if fam == "phi3":
            qkv = lin(h, p + "self_attn.qkv_proj", p + "self_attn.qkv_proj")
            q, k, v = qkv.split([H * D, KVH * D, KVH * D], dim=-1)
        else:
            q = lin(h, p + "self_attn.q_proj", p + "self_attn.q_proj")
            k = lin(h, p + "self_attn.k_proj", p + "self_attn.k_proj")
            v = lin(h, p + "self_attn.v_proj", p + "self_attn.v_proj")
        if fam == "olmoe":  # OlmoeRMSNorm over the whole projection output, before the head split
            q = norm(q, p + "self_attn.q_norm.weight")
            k = norm(k, p + "self_attn.k_norm.weight")
        if fam in ("olmo", "olmoe") and cfg.get("clip_qkv") is not None:
            c = cfg["clip_qkv"]
            if stats is not None:
                for t in (q, k, v):
                    stats["clipped"] = stats.get("clipped", 0) + int((t.abs() > c).sum())
                    stats["total"] = stats.get("total", 0) + t.numel()
            q, k, v = q.clamp(-c, c), k.clamp(-c, c), v.clamp(-c, c)
        q = apply_rope(q.view(B, T, H, D).transpose(1, 2), cos, sin)
        k = apply_rope(k.view(B, T, KVH, D).transpose(1, 2), cos, sin)
        v = v.view(B, T, KVH, D).transpose(1, 2)
        k = k.repeat_interleave(H // KVH, dim=1)
        v = v.repeat_interleave(H // KVH, dim=1)
        window = None
        if fam in ("mistral", "mixtral"):
            window = cfg.get("sliding_window")
        elif fam == "gemma2" and l % 2 == 0:  # HF Gemma2: is_sliding = not bool(layer_idx % 2)
            window = cfg["sliding_window"]
        softcap = cfg.get("attn_logit_softcapping") if fam == "gemma2" else None
        o = merge_heads(attention(q, k, v, scale, window=window, softcap=softcap))
        o = lin(o, p + "self_attn.o_proj", p + "self_attn.o_proj")
        if fam == "gemma2":
            o = norm(o, p + "post_attention_layernorm.weight")
        x = x + o
        h = norm(x, p + ("pre_feedforward_layernorm.weight" if fam == "gemma2" else "post_attention_layernorm.weight"))
        mo = moe_layout(fam, cfg, l)
        if mo is not None:
            x = x + moe_block(h, W, lin, p, mo, stats, l, dense=moe_dense)
            continue
        if fam == "phi3":
            g, u = lin(h, p + "mlp.gate_up_proj", p + "mlp.gate_up_proj").chunk(2, dim=-1)
        else:
            g = lin(h, p + "mlp.gate_proj", p + "mlp.gate_proj")
            u = lin(h, p + "mlp.up_proj", p + "mlp.up_proj")
        act = gelu_tanh(g) if gemma else F.silu(g)
        m = lin(act * u, p + "mlp.down_proj", p + "mlp.down_proj")
        if fam == "gemma2":
            m = norm(m, p + "post_feedforward_layernorm.weight")
        x = x + m
    x = norm(x, "model.norm.weight")
    head = W["lm_head.weight"] if "lm_head.weight" in W else W["model.embed_tokens.weight"]
    logits = x @ head.T
    if fam == "gemma2" and cfg.get("final_logit_softcapping") is not None:
        cap = cfg["final_logit_softcapping"]
        logits = torch.tanh(logits / cap) * cap
    return logits


def llama_like_tensors(fam, cfg, emb_scale):
    C, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    H = cfg["num_attention_heads"]
    KVH = cfg.get("num_key_value_heads") or H
    D = cfg.get("head_dim") or C // H
    gemma = fam in ("gemma", "gemma2")
    nw = (0.2, 0.0) if gemma else (0.2, 1.0)
    ts = [T_("model.embed_tokens.weight", [V, C], emb_scale)]
    lora = []
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        if fam != "olmo":
            ts.append(T_(p + "input_layernorm.weight", [C], *nw))
        if fam == "phi3":
            projs = [("self_attn.qkv_proj", (H + 2 * KVH) * D, C)]
        else:
            projs = [("self_attn.q_proj", H * D, C), ("self_attn.k_proj", KVH * D, C),
                     ("self_attn.v_proj", KVH * D, C)]
        projs.append(("self_attn.o_proj", C, H * D))
        if fam == "olmoe":  # (module, size, None): an RMSNorm weight [size]
            projs += [("self_attn.q_norm", H * D, None), ("self_attn.k_norm", KVH * D, None)]
        mo = moe_layout(fam, cfg, l)
        if mo is not None:
            b, Fe = mo["block"] + ".", mo["F"]
            projs.append((b + "gate", mo["E"], C))
            for e in range(mo["E"]):
                g, u, d = (f"{b}experts.{e}.{n}" for n in mo["projs"])
                projs += [(g, Fe, C), (u, Fe, C), (d, C, Fe)]
            if mo["shared"]:
                S = mo["shared"]
                projs += [(b + "shared_expert.gate_proj", S, C), (b + "shared_expert.up_proj", S, C),
                          (b + "shared_expert.down_proj", C, S), (b + "shared_expert_gate", 1, C)]
        elif fam == "phi3":
            projs += [("mlp.gate_up_proj", 2 * I, C)]
        else:
            projs += [("mlp.gate_proj", I, C), ("mlp.up_proj", I, C)]
        if mo is None:
            projs.append(("mlp.down_proj", C, I))
        for mod, o, i in projs:
            if i is None:
                ts.append(T_(p + mod + ".weight", [o], *nw))
                continue
            mult = QKV_MULT if mod in QKV_MODS else ROUTER_MULT if mod in ROUTER_MODS else 1.0
            ts.append(T_(p + mod + ".weight", [o, i], sc(i, mult)))
            if fam in ("qwen2", "qwen2_moe") and mod in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                ts.append(T_(p + mod + ".bias", [o], 0.1))
            if mod not in NO_LORA_MODS:
                lora.append((p + mod, i, o))
        if fam == "gemma2":
            for n in ("post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"):
                ts.append(T_(p + n + ".weight", [C], *nw))
        elif fam != "olmo":
            ts.append(T_(p + "post_attention_layernorm.weight", [C], *nw))
    if fam != "olmo":
        ts.append(T_("model.norm.weight", [C], *nw))
    if not cfg.get("tie_word_embeddings", False):
        ts.append(T_("lm_head.weight", [V, C], sc(C)))
    return ts, lora


# --------------------------------------------------------------------------
# GPT-2


def gpt2_forward(cfg, W, ids, lin):
    C, H = cfg["n_embd"], cfg["n_head"]
    D = C // H
    eps = cfg["layer_norm_epsilon"]
    B, T = ids.shape
    x = W["wte.weight"][ids] + W["wpe.weight"][torch.arange(T)][None]
    for l in range(cfg["n_layer"]):
        p = f"h.{l}."
        tp = f"transformer.h.{l}."
        h = layer_norm(x, W, p + "ln_1", eps)
        qkv = lin(h, p + "attn.c_attn", tp + "attn.c_attn", conv1d=True)
        q, k, v = (t.view(B, T, H, D).transpose(1, 2) for t in qkv.split(C, dim=-1))
        o = merge_heads(attention(q, k, v, 1.0 / math.sqrt(D)))
        x = x + lin(o, p + "attn.c_proj", tp + "attn.c_proj", conv1d=True)
        h = layer_norm(x, W, p + "ln_2", eps)
        m = gelu_tanh(lin(h, p + "mlp.c_fc", tp + "mlp.c_fc", conv1d=True))
        x = x + lin(m, p + "mlp.c_proj", tp + "mlp.c_proj", conv1d=True)
    x = layer_norm(x, W, "ln_f", eps)
    return x @ W["wte.weight"].T


def gpt2_tensors(cfg):
    C, V, P = cfg["n_embd"], cfg["vocab_size"], cfg["n_positions"]
    I = cfg["n_inner"] or 4 * C
    ts = [T_("wte.weight", [V, C], 0.3), T_("wpe.weight", [P, C], 0.3)]
    lora = []
    for l in range(cfg["n_layer"]):
        p = f"h.{l}."
        ts += [T_(p + "ln_1.weight", [C], 0.2, 1.0), T_(p + "ln_1.bias", [C], 0.1)]
        ts.append(T_(p + "attn.bias", [1, 1, P, P], 0.0, 0.0, fill="tril", ignore=True))
        for mod, i, o in (("attn.c_attn", C, 3 * C), ("attn.c_proj", C, C)):
            ts += [T_(p + mod + ".weight", [i, o], sc(i, QKV_MULT if mod in QKV_MODS else 1.0)),
                   T_(p + mod + ".bias", [o], 0.1)]
            lora.append((f"transformer.h.{l}." + mod, i, o))
        ts += [T_(p + "ln_2.weight", [C], 0.2, 1.0), T_(p + "ln_2.bias", [C], 0.1)]
        for mod, i, o in (("mlp.c_fc", C, I), ("mlp.c_proj", I, C)):
            ts += [T_(p + mod + ".weight", [i, o], sc(i)), T_(p + mod + ".bias", [o], 0.1)]
            lora.append((f"transformer.h.{l}." + mod, i, o))
    ts += [T_("ln_f.weight", [C], 0.2, 1.0), T_("ln_f.bias", [C], 0.1)]
    return ts, lora


# --------------------------------------------------------------------------
# Falcon (7B style and new_decoder_architecture)


def falcon_split_view(qkv, cfg):
    """HF FalconAttention._split_heads, by view()."""
    B, T, _ = qkv.shape
    H = cfg["num_attention_heads"]
    D = cfg["hidden_size"] // H
    if cfg["new_decoder_architecture"]:
        KVH = cfg["num_kv_heads"]
        g = qkv.view(B, T, KVH, H // KVH + 2, D)
        q = g[:, :, :, :-2].reshape(B, T, H, D)
        k = g[:, :, :, -2]  # [B, T, KVH, D]
        v = g[:, :, :, -1]
        return q, k, v
    if cfg["multi_query"]:
        f = qkv.view(B, T, H + 2, D)
        return f[:, :, :-2], f[:, :, -2:-1], f[:, :, -1:]
    f = qkv.view(B, T, H, 3, D)
    return f[..., 0, :], f[..., 1, :], f[..., 2, :]


def falcon_split_index(qkv, cfg):
    """The same split from explicit row indices of the fused weight (self-check)."""
    B, T, _ = qkv.shape
    H = cfg["num_attention_heads"]
    D = cfg["hidden_size"] // H
    if cfg["new_decoder_architecture"]:
        KVH = cfg["num_kv_heads"]
        G = H // KVH
        qi = [(g * (G + 2) + j) * D + d for g in range(KVH) for j in range(G) for d in range(D)]
        ki = [(g * (G + 2) + G) * D + d for g in range(KVH) for d in range(D)]
        vi = [(g * (G + 2) + G + 1) * D + d for g in range(KVH) for d in range(D)]
        nkv = KVH
    else:  # multi_query
        qi = list(range(H * D))
        ki = list(range(H * D, H * D + D))
        vi = list(range(H * D + D, H * D + 2 * D))
        nkv = 1
    return (qkv[..., qi].view(B, T, H, D), qkv[..., ki].view(B, T, nkv, D), qkv[..., vi].view(B, T, nkv, D))


def falcon_forward(cfg, W, ids, lin, split=falcon_split_view):
    C, H = cfg["hidden_size"], cfg["num_attention_heads"]
    D = C // H
    eps = cfg["layer_norm_epsilon"]
    new = cfg["new_decoder_architecture"]
    B, T = ids.shape
    cos, sin = rope_cos_sin(T, D, cfg.get("rope_theta", 10000.0))
    x = W["transformer.word_embeddings.weight"][ids]
    for l in range(cfg["num_hidden_layers"]):
        p = f"transformer.h.{l}."
        if new and cfg.get("num_ln_in_parallel_attn", 2) == 2:
            ha = layer_norm(x, W, p + "ln_attn", eps)
            hm = layer_norm(x, W, p + "ln_mlp", eps)
        else:
            ha = hm = layer_norm(x, W, p + "input_layernorm", eps)
        qkv = lin(ha, p + "self_attention.query_key_value", p + "self_attention.query_key_value")
        q, k, v = split(qkv, cfg)
        nkv = k.shape[2]
        q = apply_rope(q.transpose(1, 2), cos, sin)
        k = apply_rope(k.transpose(1, 2), cos, sin).repeat_interleave(H // nkv, dim=1)
        v = v.transpose(1, 2).repeat_interleave(H // nkv, dim=1)
        o = merge_heads(attention(q, k, v, 1.0 / math.sqrt(D)))
        a = lin(o, p + "self_attention.dense", p + "self_attention.dense")
        m = F.gelu(lin(hm, p + "mlp.dense_h_to_4h", p + "mlp.dense_h_to_4h"))  # exact erf GELU
        m = lin(m, p + "mlp.dense_4h_to_h", p + "mlp.dense_4h_to_h")
        x = x + a + m  # parallel attention and MLP
    x = layer_norm(x, W, "transformer.ln_f", eps)
    return x @ W["lm_head.weight"].T


def falcon_tensors(cfg):
    C, V, H = cfg["hidden_size"], cfg["vocab_size"], cfg["num_attention_heads"]
    D = C // H
    I = cfg.get("ffn_hidden_size") or 4 * C
    if cfg["new_decoder_architecture"]:
        qkv_out = (H + 2 * cfg["num_kv_heads"]) * D
    elif cfg["multi_query"]:
        qkv_out = C + 2 * D
    else:
        qkv_out = 3 * C
    ts = [T_("transformer.word_embeddings.weight", [V, C], 1.0)]
    lora = []
    for l in range(cfg["num_hidden_layers"]):
        p = f"transformer.h.{l}."
        lns = ["ln_attn", "ln_mlp"] if cfg["new_decoder_architecture"] else ["input_layernorm"]
        for n in lns:
            ts += [T_(p + n + ".weight", [C], 0.2, 1.0), T_(p + n + ".bias", [C], 0.1)]
        for mod, o, i in (("self_attention.query_key_value", qkv_out, C), ("self_attention.dense", C, C),
                          ("mlp.dense_h_to_4h", I, C), ("mlp.dense_4h_to_h", C, I)):
            ts.append(T_(p + mod + ".weight", [o, i], sc(i, QKV_MULT if mod in QKV_MODS else 1.0)))
            lora.append((p + mod, i, o))
    ts += [T_("transformer.ln_f.weight", [C], 0.2, 1.0), T_("transformer.ln_f.bias", [C], 0.1)]
    ts.append(T_("lm_head.weight", [V, C], sc(C)))
    return ts, lora


# --------------------------------------------------------------------------
# BLOOM


def alibi_slopes(n_head):
    """HF build_alibi_tensor's slopes, in float64."""
    closest = 2 ** math.floor(math.log2(n_head))
    base = 2 ** (-(2 ** -(math.log2(closest) - 3)))
    slopes = [base ** p for p in range(1, 1 + closest)]
    if closest != n_head:
        extra_base = 2 ** (-(2 ** -(math.log2(2 * closest) - 3)))
        n_rem = min(closest, n_head - closest)
        slopes += [extra_base ** p for p in range(1, 1 + 2 * n_rem, 2)]
    return torch.tensor(slopes, dtype=DT)


def bloom_forward(cfg, W, ids, lin, layout="view", alibi_form="hf"):
    C, H = cfg["hidden_size"], cfg["n_head"]
    D = C // H
    eps = cfg["layer_norm_epsilon"]
    B, T = ids.shape
    slopes = alibi_slopes(H)
    pos = torch.arange(T, dtype=DT)
    if alibi_form == "hf":  # slope * key position (cumsum(mask) - 1), same for every query
        bias = (slopes[:, None] * pos[None, :])[None, :, None, :]
    else:  # the textbook relative form -slope * (i - j): equal after softmax
        bias = (-slopes[:, None, None] * (pos[:, None] - pos[None, :]))[None]
    x = W["transformer.word_embeddings.weight"][ids]
    x = layer_norm(x, W, "transformer.word_embeddings_layernorm", eps)
    for l in range(cfg["n_layer"]):
        p = f"transformer.h.{l}."
        h = layer_norm(x, W, p + "input_layernorm", eps)
        qkv = lin(h, p + "self_attention.query_key_value", p + "self_attention.query_key_value")
        if layout == "view":  # HF: view(B, T, H, 3, D)
            f = qkv.view(B, T, H, 3, D)
            q, k, v = f[..., 0, :], f[..., 1, :], f[..., 2, :]
        else:  # explicit rows: head h's q at h*3D + [0, D), k at + [D, 2D), v at + [2D, 3D)
            q, k, v = (qkv[..., [hh * 3 * D + s * D + d for hh in range(H) for d in range(D)]].view(B, T, H, D)
                       for s in range(3))
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        o = merge_heads(attention(q, k, v, 1.0 / math.sqrt(D), bias=bias))
        x = x + lin(o, p + "self_attention.dense", p + "self_attention.dense")
        h = layer_norm(x, W, p + "post_attention_layernorm", eps)
        m = bloom_gelu(lin(h, p + "mlp.dense_h_to_4h", p + "mlp.dense_h_to_4h"))
        x = x + lin(m, p + "mlp.dense_4h_to_h", p + "mlp.dense_4h_to_h")
    x = layer_norm(x, W, "transformer.ln_f", eps)
    return x @ W["transformer.word_embeddings.weight"].T


def bloom_tensors(cfg):
    C, V = cfg["hidden_size"], cfg["vocab_size"]
    ts = [T_("transformer.word_embeddings.weight", [V, C], 0.3),
          T_("transformer.word_embeddings_layernorm.weight", [C], 0.2, 1.0),
          T_("transformer.word_embeddings_layernorm.bias", [C], 0.1)]
    lora = []
    for l in range(cfg["n_layer"]):
        p = f"transformer.h.{l}."
        ts += [T_(p + "input_layernorm.weight", [C], 0.2, 1.0), T_(p + "input_layernorm.bias", [C], 0.1)]
        for mod, o, i in (("self_attention.query_key_value", 3 * C, C), ("self_attention.dense", C, C)):
            ts += [T_(p + mod + ".weight", [o, i], sc(i, QKV_MULT if mod in QKV_MODS else 1.0)),
                   T_(p + mod + ".bias", [o], 0.1)]
            lora.append((p + mod, i, o))
        ts += [T_(p + "post_attention_layernorm.weight", [C], 0.2, 1.0),
               T_(p + "post_attention_layernorm.bias", [C], 0.1)]
        for mod, o, i in (("mlp.dense_h_to_4h", 4 * C, C), ("mlp.dense_4h_to_h", C, 4 * C)):
            ts += [T_(p + mod + ".weight", [o, i], sc(i)), T_(p + mod + ".bias", [o], 0.1)]
            lora.append((p + mod, i, o))
    ts += [T_("transformer.ln_f.weight", [C], 0.2, 1.0), T_("transformer.ln_f.bias", [C], 0.1)]
    return ts, lora


# --------------------------------------------------------------------------
# the families: config.json, tokenizer, tensors, forward


LLAMA_MODS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
WINDOW_TEXT = ("query i attends key j iff i - sliding_window < j <= i (sliding_window keys including "
               "itself); HF masking_utils.sliding_window_overlay: kv_idx > q_idx - sliding_window")


ROUTING_TEXT = ("per token x (the post_attention_layernorm output): p = softmax(x @ gate.weight^T) over the "
                "E experts; (w, idx) = topk(p, num_experts_per_tok) (ties as torch.topk; the fixture keeps "
                "p_(k) - p_(k+1) >= min_topk_gap); out = sum_j w_j * expert_{idx_j}(x); each expert runs only "
                "on the tokens that chose it; the router gate has no LoRA.")
RENORM_TEXT = "Mixtral always renormalizes: w = w / sum(w)."
NO_RENORM_TEXT = "norm_topk_prob false: w are the top-k softmax probabilities as they are (sum < 1)."
LORA_MOE_TEXT = "PEFT suffix matching: one adapter per expert per projection"
MOE_LORA = dict(r=2, alpha=4)  # rank 2 (same alpha/r = 2) keeps the many expert adapters' fixtures small


def family_specs():
    fams = {}

    cfg = {"architectures": ["MistralForCausalLM"], "model_type": "mistral", "vocab_size": 32000,
           "hidden_size": 32, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "hidden_act": "silu", "max_position_embeddings": 128,
           "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 5, "tie_word_embeddings": False,
           "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}
    fams["mistral"] = dict(cfg=cfg, tok="llama2", mods=LLAMA_MODS, emb=1.0,
                           sem={"window_semantics": WINDOW_TEXT, "sliding_layers": "all"})

    cfg = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 50304,
           "hidden_size": 32, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "hidden_act": "silu", "max_position_embeddings": 128,
           "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "use_sliding_window": False,
           "sliding_window": 131072, "max_window_layers": 2, "tie_word_embeddings": True,
           "bos_token_id": 50256, "eos_token_id": 50256, "torch_dtype": "float32"}
    fams["qwen2"] = dict(cfg=cfg, tok="gpt2", mods=LLAMA_MODS, emb=0.3,
                         sem={"bias": "q_proj, k_proj, v_proj have bias; o_proj and MLP none",
                              "sliding_window": "unused (use_sliding_window false)"})

    cfg = {"architectures": ["GemmaForCausalLM"], "model_type": "gemma", "vocab_size": 32000,
           "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 1, "head_dim": 16, "hidden_act": "gelu_pytorch_tanh",
           "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 128, "rms_norm_eps": 1e-06,
           "rope_theta": 10000.0, "attention_bias": False, "tie_word_embeddings": True,
           "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "torch_dtype": "float32"}
    fams["gemma"] = dict(cfg=cfg, tok="llama2", mods=LLAMA_MODS, emb=0.35,
                         sem={"norm": "x * rsqrt(mean(x^2) + eps) * (1 + w)",
                              "embed_scale": "embeddings * sqrt(hidden_size)",
                              "mlp": "down(gelu_tanh(gate(x)) * up(x))",
                              "attn_scale": "1/sqrt(head_dim)", "head": "tied to embed_tokens (unscaled)"})

    cfg = {"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "vocab_size": 32000,
           "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "head_dim": 16, "hidden_act": "gelu_pytorch_tanh",
           "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 128, "rms_norm_eps": 1e-06,
           "rope_theta": 10000.0, "attention_bias": False, "query_pre_attn_scalar": 24,
           "sliding_window": 4, "attn_logit_softcapping": 3.0, "final_logit_softcapping": 2.0,
           "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
           "torch_dtype": "float32"}
    fams["gemma2"] = dict(cfg=cfg, tok="llama2", mods=LLAMA_MODS, emb=0.35,
                          sem={"window_semantics": WINDOW_TEXT,
                               "sliding_layers": "layer_idx % 2 == 0 (layers 0, 2, ...); odd layers full causal",
                               "attn_scale": "query_pre_attn_scalar ** -0.5",
                               "attn_softcap": "s = tanh(s / cap) * cap on scaled scores, before the mask",
                               "final_softcap": "logits = tanh(logits / cap) * cap, loss on capped logits",
                               "layer": "x += post_attention_layernorm(attn(input_layernorm(x))); "
                                        "x += post_feedforward_layernorm(mlp(pre_feedforward_layernorm(x)))"})

    cfg = {"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "vocab_size": 32064,
           "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "hidden_act": "silu", "max_position_embeddings": 4096,
           "original_max_position_embeddings": 4096, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
           "rope_scaling": None, "sliding_window": 2047, "tie_word_embeddings": False,
           "bos_token_id": 1, "eos_token_id": 32000, "pad_token_id": 32000, "torch_dtype": "float32"}
    fams["phi3"] = dict(cfg=cfg, tok="phi-3-mini", mods=["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
                        emb=1.0, sem={"qkv_proj": "rows [q (H*D); k (KVH*D); v (KVH*D)]",
                                      "gate_up_proj": "rows [gate (I); up (I)], out = down(silu(gate) * up)",
                                      "sliding_window": "2047 > T: no effect here"})

    cfg = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 50257, "n_embd": 48,
           "n_layer": 2, "n_head": 4, "n_inner": 128, "n_positions": 32, "n_ctx": 32,
           "activation_function": "gelu_new", "layer_norm_epsilon": 1e-05, "scale_attn_weights": True,
           "tie_word_embeddings": True, "bos_token_id": 50256, "eos_token_id": 50256, "torch_dtype": "float32"}
    fams["gpt2"] = dict(cfg=cfg, tok="gpt2", mods=["c_attn", "c_proj", "c_fc"], emb=None,
                        sem={"conv1d": "weights stored [in, out], y = x @ W + b",
                             "c_attn": "output columns [q (C); k (C); v (C)], heads contiguous D each",
                             "positions": "x = wte[ids] + wpe[0..T-1]",
                             "keys": "checkpoint without 'transformer.' prefix; PEFT paths with it",
                             "buffer": "h.{i}.attn.bias [1,1,n_positions,n_positions] lower-triangular ones, "
                                       "not a parameter, must be ignored"})

    cfg = {"architectures": ["FalconForCausalLM"], "model_type": "falcon", "vocab_size": 65024,
           "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "multi_query": True,
           "new_decoder_architecture": False, "parallel_attn": True, "bias": False, "alibi": False,
           "layer_norm_epsilon": 1e-05, "max_position_embeddings": 128, "tie_word_embeddings": False,
           "apply_residual_connection_post_layernorm": False, "bos_token_id": 11, "eos_token_id": 11,
           "torch_dtype": "float32"}
    fams["falcon"] = dict(cfg=cfg, tok="falcon", mods=["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
                          emb=None, sem={"query_key_value": "multi_query: rows [q (H*D); k (D); v (D)], one kv head",
                                         "layer": "x + dense(attn(ln(x))) + mlp(ln(x)), one input_layernorm",
                                         "mlp": "dense_4h_to_h(gelu_erf(dense_h_to_4h(x))), ffn 4*hidden",
                                         "rope": "rotate-half, rope_theta default 10000",
                                         "num_kv_heads": "absent, as in falcon-7b (ignored when multi_query "
                                                         "and not new_decoder_architecture)"})

    cfg = {"architectures": ["FalconForCausalLM"], "model_type": "falcon", "vocab_size": 65024,
           "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_kv_heads": 2,
           "multi_query": True, "new_decoder_architecture": True, "num_ln_in_parallel_attn": 2,
           "parallel_attn": True, "bias": False, "alibi": False, "layer_norm_epsilon": 1e-05,
           "rope_theta": 10000.0, "max_position_embeddings": 128, "tie_word_embeddings": False,
           "apply_residual_connection_post_layernorm": False, "bos_token_id": 11, "eos_token_id": 11,
           "torch_dtype": "float32"}
    fams["falcon_new"] = dict(cfg=cfg, tok="falcon", mods=["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
                              emb=None, sem={"query_key_value": "grouped per kv head: view(KVH, H/KVH + 2, D): "
                                                                "the group's H/KVH q heads, then its k, then its v; "
                                                                "q head h uses kv head h // (H/KVH)",
                                             "layer": "x + dense(attn(ln_attn(x))) + mlp(ln_mlp(x))"})

    cfg = {"architectures": ["OlmoForCausalLM"], "model_type": "olmo", "vocab_size": 50304,
           "hidden_size": 32, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "hidden_act": "silu", "max_position_embeddings": 128,
           "rope_theta": 10000.0, "attention_bias": False, "clip_qkv": 1.5, "tie_word_embeddings": True,
           "pad_token_id": 1, "eos_token_id": 50279, "torch_dtype": "float32"}
    fams["olmo"] = dict(cfg=cfg, tok="olmo", mods=LLAMA_MODS, emb=0.3,
                        sem={"norm": "F.layer_norm without weight or bias, eps 1e-5; no norm tensors",
                             "clip_qkv": "q, k, v = clamp(proj(x), -clip_qkv, clip_qkv) right after the "
                                         "projections (LoRA included), before the head split and rope"})

    cfg = {"architectures": ["BloomForCausalLM"], "model_type": "bloom", "vocab_size": 50257,
           "hidden_size": 48, "n_layer": 2, "n_head": 6, "layer_norm_epsilon": 1e-05,
           "apply_residual_connection_post_layernorm": False, "pretraining_tp": 1, "slow_but_exact": False,
           "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}
    fams["bloom"] = dict(cfg=cfg, tok="gpt2", mods=["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
                         emb=None, sem={"alibi": "scores = q.k/sqrt(D) + slope[h] * j (key position j, HF "
                                                 "build_alibi_tensor; equal after softmax to -slope[h]*(i-j))",
                                        "alibi_slopes": [float(s) for s in alibi_slopes(6)],
                                        "query_key_value": "per head: view(H, 3, D): rows h*3D+[0,D) q, "
                                                           "+[D,2D) k, +[2D,3D) v of head h",
                                        "embeddings": "word_embeddings_layernorm(word_embeddings[ids])",
                                        "mlp": "dense_4h_to_h(bloom_gelu(dense_h_to_4h(x))), 4*hidden, "
                                               "bloom_gelu = x*0.5*(1+tanh(0.79788456*x*(1+0.044715*x*x)))"})

    cfg = {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "vocab_size": 32000,
           "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "num_local_experts": 4, "num_experts_per_tok": 2, "hidden_act": "silu",
           "max_position_embeddings": 128, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "sliding_window": 5,
           "attention_dropout": 0.0, "output_router_logits": False, "router_aux_loss_coef": 0.02,
           "router_jitter_noise": 0.0, "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
           "torch_dtype": "float32"}
    fams["mixtral"] = dict(cfg=cfg, tok="llama2", mods=["q_proj", "k_proj", "v_proj", "o_proj", "w1", "w2", "w3"],
                           emb=1.0, **MOE_LORA, sem={"window_semantics": WINDOW_TEXT, "sliding_layers": "all",
                                         "moe": "block_sparse_moe replaces the MLP of every layer",
                                         "routing": ROUTING_TEXT + " " + RENORM_TEXT,
                                         "expert": "w2(silu(w1(x)) * w3(x)), width intermediate_size",
                                         "lora": LORA_MOE_TEXT + " (w1, w2, w3)"})

    cfg = {"architectures": ["OlmoeForCausalLM"], "model_type": "olmoe", "vocab_size": 50304,
           "hidden_size": 32, "intermediate_size": 8, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 4, "num_experts": 12, "num_experts_per_tok": 2, "norm_topk_prob": False,
           "hidden_act": "silu", "max_position_embeddings": 128, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
           "rope_scaling": None, "attention_bias": False, "attention_dropout": 0.0, "clip_qkv": None,
           "output_router_logits": False, "router_aux_loss_coef": 0.01, "tie_word_embeddings": False,
           "pad_token_id": 1, "eos_token_id": 50279, "torch_dtype": "float32"}
    fams["olmoe"] = dict(cfg=cfg, tok="olmo", mods=LLAMA_MODS, emb=1.0, **MOE_LORA,
                         sem={"qk_norm": "q = q_norm(q_proj(x)), k = k_norm(k_proj(x)) (LoRA included): RMSNorm "
                                         "with weight over the whole projection output (q_norm [H*D], k_norm "
                                         "[KVH*D]), eps rms_norm_eps, before the head split and rope; v unnormed",
                              "clip_qkv": "null: no clamping",
                              "moe": "mlp is a sparse MoE block in every layer; 12 experts so that one "
                                     "(layer 0, expert 4) is chosen by no token: its LoRA gradients are 0",
                              "routing": ROUTING_TEXT + " " + NO_RENORM_TEXT,
                              "expert": "down_proj(silu(gate_proj(x)) * up_proj(x)), width intermediate_size",
                              "lora": LORA_MOE_TEXT + " (gate_proj, up_proj, down_proj)"})

    cfg = {"architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe", "vocab_size": 50304,
           "hidden_size": 32, "intermediate_size": 64, "moe_intermediate_size": 24,
           "shared_expert_intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "num_experts": 4, "num_experts_per_tok": 2, "norm_topk_prob": False,
           "decoder_sparse_step": 1, "mlp_only_layers": [1], "hidden_act": "silu", "max_position_embeddings": 128,
           "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "use_sliding_window": False, "sliding_window": 131072,
           "max_window_layers": 2, "attention_dropout": 0.0, "output_router_logits": False,
           "router_aux_loss_coef": 0.001, "tie_word_embeddings": False, "bos_token_id": 50256,
           "eos_token_id": 50256, "torch_dtype": "float32"}
    fams["qwen2_moe"] = dict(cfg=cfg, tok="gpt2", mods=LLAMA_MODS, emb=1.0, **MOE_LORA,
                             sem={"bias": "q_proj, k_proj, v_proj have bias; o_proj, MLPs, experts, gates none",
                                  "sliding_window": "unused (use_sliding_window false)",
                                  "sparse_layers": "layer i is sparse iff i not in mlp_only_layers and num_experts "
                                                   "> 0 and (i+1) % decoder_sparse_step == 0: here layer 0 sparse, "
                                                   "layer 1 dense mlp.gate_proj/up_proj/down_proj (intermediate_size)",
                                  "routing": ROUTING_TEXT + " " + NO_RENORM_TEXT,
                                  "expert": "down_proj(silu(gate_proj(x)) * up_proj(x)), width moe_intermediate_size",
                                  "shared_expert": "out = routed sum + sigmoid(x @ shared_expert_gate^T) * "
                                                   "shared_expert(x), shared_expert a SwiGLU of width "
                                                   "shared_expert_intermediate_size run on every token",
                                  "lora": LORA_MOE_TEXT + " (gate_proj, up_proj, down_proj), the shared expert's "
                                                          "and the dense layer's; not shared_expert_gate"})
    return fams


def forward_for(fam, cfg):
    """forward(W, ids, lin) -> logits [B, T, V] of the family with config cfg."""
    if fam == "gpt2":
        return lambda W, ids, lin: gpt2_forward(cfg, W, ids, lin)
    if fam in ("falcon", "falcon_new"):
        return lambda W, ids, lin: falcon_forward(cfg, W, ids, lin)
    if fam == "bloom":
        return lambda W, ids, lin: bloom_forward(cfg, W, ids, lin)
    return lambda W, ids, lin, stats=None: llama_like_forward(fam, cfg, W, ids, lin, stats)


def family_model(fam, spec):
    """(tensor specs, [(module path, in, out)], forward(W, ids, lin))."""
    cfg = spec["cfg"]
    if fam == "gpt2":
        ts, lora = gpt2_tensors(cfg)
    elif fam in ("falcon", "falcon_new"):
        ts, lora = falcon_tensors(cfg)
    elif fam == "bloom":
        ts, lora = bloom_tensors(cfg)
    else:
        ts, lora = llama_like_tensors(fam, cfg, spec["emb"])
    return ts, lora, forward_for(fam, cfg)


# --------------------------------------------------------------------------
# tokens, loss, fixture writing


def tokenize(tok_dir, text):
    path = os.path.join(SHARED, "tokenizers", tok_dir, "tokenizer.json")
    out = subprocess.run([LORA_BIN, "tokenize", "--tokenizer", path, "--text", text, "--no-bos"],
                         check=True, capture_output=True, text=True).stdout
    return [int(t) for t in out.split()]


def ce_loss(logits, ids):
    V = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))


def pick_cols(ids, V):
    cols = sorted(set(ids[:, 1:].reshape(-1).tolist()))
    extra = [0, V - 1] + [int(round(k * (V - 1) / 37.0)) for k in range(1, 37)] + list(range(1, 40))
    for c in extra:
        if len(cols) >= NCOLS:
            break
        if c not in cols:
            cols.append(c)
    assert len(cols) == NCOLS
    return sorted(cols)


def f32(x):
    v = np.float32(x)
    assert np.isfinite(v)
    return float("%.9g" % v)


def dump(obj, ind=0):
    """JSON with lists of numbers on one line and nested structure indented."""
    pad, pad1 = " " * ind, " " * (ind + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{pad1}{json.dumps(k)}: {dump(v, ind + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list):
        if all(not isinstance(v, (dict, list)) for v in obj):
            return "[" + ",".join(json.dumps(v) for v in obj) + "]"
        if all(isinstance(v, list) and all(not isinstance(u, (dict, list)) for u in v) for v in obj) \
                or all(isinstance(v, dict) and all(not isinstance(u, (dict, list)) or
                                                   (isinstance(u, list) and all(not isinstance(w, (dict, list)) for w in u))
                                                   for u in v.values()) for v in obj):
            return "[\n" + ",\n".join(pad1 + json.dumps(v, separators=(",", ":")) for v in obj) + "\n" + pad + "]"
        return "[\n" + ",\n".join(pad1 + dump(v, ind + 1) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj)


def to_torch(arrs):
    return {k: torch.from_numpy(v).to(DT) for k, v in arrs.items()}


def run_family(fam, spec, check=True):
    cfg = spec["cfg"]
    V = cfg["vocab_size"]
    toks = [tokenize(spec["tok"], t) for t in TEXTS]
    T = min(MAX_T, *(len(t) for t in toks))
    assert T >= 12, toks
    tokens = [t[:T] for t in toks]
    assert max(max(t) for t in tokens) < V
    ids = torch.tensor(tokens, dtype=torch.long)

    tspecs, lora_mods, fwd = family_model(fam, spec)
    W = to_torch(build_tensors(tspecs))
    r, alpha = spec.get("r", R), spec.get("alpha", ALPHA)
    lspecs = []
    for path, n_in, n_out in lora_mods:
        base = f"base_model.model.{path}"
        lspecs.append(T_(base + ".lora_A.weight", [r, n_in], sc(n_in)))
        lspecs.append(T_(base + ".lora_B.weight", [n_out, r], 0.2))
    L = to_torch(build_tensors(lspecs))
    for t in L.values():
        t.requires_grad_(True)
    scaling = alpha / r

    logits = fwd(W, ids, make_linear(W, L, scaling))
    loss = ce_loss(logits, ids)
    loss.backward()
    for t in L.values():  # an adapter of an expert no token chose is not in the graph: gradient 0
        if t.grad is None:
            t.grad = torch.zeros_like(t)
    with torch.no_grad():
        logits_base = fwd(W, ids, make_linear(W, None, scaling))
        loss_base = ce_loss(logits_base, ids)

    sem = dict(spec["sem"])
    moe = moe_routing(cfg, W, L, ids, fwd, scaling) if fam in MOE_FAMS else {}
    if check:
        self_checks(fam, spec, W, L, ids, fwd, logits, loss, logits_base, sem)
        if moe:
            moe_checks(fam, cfg, W, L, ids, logits, moe, {n: t.grad for n, t in L.items()}, scaling)

    cols = pick_cols(ids, V)
    B = ids.shape[0]
    lg = logits.detach()[:, :, cols].reshape(B * T, NCOLS)
    lb = logits_base[:, :, cols].reshape(B * T, NCOLS)
    fixture = {
        "family": fam,
        "config": cfg,
        "tokenizer": f"tokenizers/{spec['tok']}/tokenizer.json",
        "text": TEXTS,
        "tokens": tokens,
        "tensors": tspecs,
        "lora": {"r": r, "alpha": alpha, "target_modules": spec["mods"], "fan_in_fan_out": fam == "gpt2",
                 "tensors": lspecs},
        "semantics": sem,
        "expected": {
            "logit_cols": cols,
            "logits": [[f32(v) for v in row] for row in lg.tolist()],
            "logits_base": [[f32(v) for v in row] for row in lb.tolist()],
            "loss": f32(loss.item()),
            "loss_base": f32(loss_base.item()),
            **moe,
            "grads": {s["name"]: [f32(v) for v in L[s["name"]].grad.reshape(-1).tolist()] for s in lspecs},
        },
    }
    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, fam + ".json")
    with open(path, "w") as f:
        f.write(dump(fixture) + "\n")
    size = os.path.getsize(path)
    assert size < 250 * 1024, (path, size)
    dl = (logits.detach() - logits_base).abs().max().item()
    print(f"{fam:10s} T={T} V={V} loss={loss.item():.6f} base={loss_base.item():.6f} "
          f"max|dlogit(lora)|={dl:.3f} -> {os.path.relpath(path, ROOT)} ({size} bytes)")
    if moe:
        print(f"{'':10s} expert_counts={moe['expert_counts']} loss={moe['expert_counts_loss']} "
              f"base={moe['expert_counts_base']} min_topk_gap={moe['min_topk_gap']:.3g}")
    return path


# --------------------------------------------------------------------------
# self-checks


def self_checks(fam, spec, W, L, ids, fwd, logits, loss, logits_base, sem):
    cfg = spec["cfg"]
    scaling = spec.get("alpha", ALPHA) / spec.get("r", R)
    B, T = ids.shape

    # finite difference of one lora_A and one lora_B entry of the first module, in float64
    names = [n for n in L if n.endswith("lora_A.weight")][:1] + \
        [n for n in L if n.endswith("lora_B.weight") and bool((L[n].grad != 0).any())][-1:]
    if fam in MOE_FAMS:  # and one routed expert's adapter of layer 0
        names += [n for n in L if ".layers.0." in n and ".experts." in n and n.endswith("lora_A.weight")
                  and bool((L[n].grad != 0).any())][:1]
    for name in names:
        t = L[name]
        idx = tuple(int(s) // 2 for s in t.shape)
        g = t.grad[idx].item()
        eps = 1e-6
        with torch.no_grad():
            old = t[idx].item()
            t[idx] = old + eps
            lp = ce_loss(fwd(W, ids, make_linear(W, L, scaling)), ids).item()
            t[idx] = old - eps
            lm = ce_loss(fwd(W, ids, make_linear(W, L, scaling)), ids).item()
            t[idx] = old
        fd = (lp - lm) / (2 * eps)
        assert abs(fd - g) <= 1e-6 * max(1.0, abs(g)) + 1e-8, (fam, name, fd, g)
        assert g != 0.0, (fam, name)
    with torch.no_grad():
        assert (logits - logits_base).abs().max() > 1e-2, fam  # LoRA actually changes the output

        if fam == "mistral":
            # no window: must equal the independent llama_reference.llama_forward
            c2 = dict(cfg, sliding_window=None)
            ours = llama_like_forward("mistral", c2, W, ids, make_linear(W, None, scaling))
            ref = llama_forward(dict(c2), {k: v for k, v in W.items()}, ids)
            assert (ours - ref).abs().max() < 1e-5, (ours - ref).abs().max()
            # the window matters, and its exact key set for the last query
            assert (ours - logits_base).abs().max() > 1e-3
            vis = allowed_mask(T, cfg["sliding_window"])[T - 1].nonzero().view(-1).tolist()
            assert vis == list(range(T - cfg["sliding_window"], T)), vis
        if fam == "gemma2":
            for key, val in (("attn_logit_softcapping", None), ("final_logit_softcapping", None),
                             ("sliding_window", 10 ** 6)):
                alt = llama_like_forward("gemma2", dict(cfg, **{key: val}), W, ids, make_linear(W, None, scaling))
                d = (alt - logits_base).abs().max().item()
                assert d > 1e-3, (key, d)
                sem[f"effect_of_{key}"] = f"max |logit change| {d:.3g} when disabled"
        if fam == "gemma":
            x = torch.linspace(-4, 4, 101, dtype=DT)
            assert (gelu_tanh(x) - F.gelu(x, approximate="tanh")).abs().max() < 1e-12
        if fam == "olmo":
            st = {}
            llama_like_forward("olmo", cfg, W, ids, make_linear(W, L, scaling), stats=st)
            frac = st["clipped"] / st["total"]
            assert 0.02 < frac < 0.5, frac
            sem["clipped_fraction_with_lora"] = round(frac, 4)
            alt = llama_like_forward("olmo", dict(cfg, clip_qkv=None), W, ids, make_linear(W, L, scaling))
            assert (alt - logits).abs().max() > 1e-3
        if fam in ("falcon", "falcon_new"):
            alt = falcon_forward(cfg, W, ids, make_linear(W, L, scaling), split=falcon_split_index)
            assert (alt - logits).abs().max() < 1e-12
        if fam == "bloom":
            alt = bloom_forward(cfg, W, ids, make_linear(W, L, scaling), layout="index", alibi_form="relative")
            assert (alt - logits).abs().max() < 1e-9, (alt - logits).abs().max()
            s = alibi_slopes(6).tolist()
            assert s == [0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125], s


EXPERT_RE = re.compile(r"\.layers\.(\d+)\.[a-z_]+\.experts\.(\d+)\.")


def moe_routing(cfg, W, L, ids, fwd, scaling):
    """expected.expert_counts, _loss, _base and min_topk_gap of a MoE family."""
    B, T = ids.shape
    nl = cfg["num_hidden_layers"]
    out, gap = {}, float("inf")
    with torch.no_grad():
        for key, lo in (("expert_counts", L), ("expert_counts_base", None)):
            st = {}
            fwd(W, ids, make_linear(W, lo, scaling), stats=st)
            counts, loss_counts = [[] for _ in range(nl)], [[] for _ in range(nl)]
            for l, prob, idx in st["routing"]:
                E, k = prob.shape[-1], idx.shape[-1]
                sp = prob.sort(dim=-1, descending=True).values
                gap = min(gap, (sp[:, k - 1] - sp[:, k]).min().item())
                counts[l] = torch.bincount(idx.reshape(-1), minlength=E).tolist()
                loss_counts[l] = torch.bincount(idx.view(B, T, k)[:, :T - 1].reshape(-1), minlength=E).tolist()
            out[key] = counts
            if lo is not None:
                out["expert_counts_loss"] = loss_counts
    out = {k: out[k] for k in ("expert_counts", "expert_counts_loss", "expert_counts_base")}
    out["min_topk_gap"] = f32(gap)
    return out


def check_expert_grads(moe, grads, where):
    """An expert's LoRA gradients are exactly zero iff no loss position chose it."""
    for n, g in grads.items():
        m = EXPERT_RE.search(n)
        if m:
            used = moe["expert_counts_loss"][int(m.group(1))][int(m.group(2))] > 0
        else:
            used = True
        assert used == any(v != 0.0 for v in g), (where, n, used)


def moe_checks(fam, cfg, W, L, ids, logits, moe, grads, scaling):
    assert moe["min_topk_gap"] > 1e-6, (fam, moe["min_topk_gap"])
    E = len(next(c for c in moe["expert_counts"] if c))
    for e in range(E):  # every expert reaches the loss in at least one layer
        assert any(c and c[e] > 0 for c in moe["expert_counts_loss"]), (fam, e, moe["expert_counts_loss"])
    check_expert_grads(moe, {n: g.reshape(-1).tolist() for n, g in grads.items()}, fam)
    with torch.no_grad():
        alt = llama_like_forward(fam, cfg, W, ids, make_linear(W, L, scaling), moe_dense=True)
        assert (alt - logits).abs().max() < 1e-12, (alt - logits).abs().max()
        if fam in ("olmoe", "qwen2_moe"):  # renormalizing would matter
            alt = llama_like_forward(fam, dict(cfg, norm_topk_prob=True), W, ids, make_linear(W, L, scaling))
            assert (alt - logits).abs().max() > 1e-3
        if fam == "qwen2_moe":
            assert [moe_layout(fam, cfg, l) is not None for l in range(cfg["num_hidden_layers"])] == [True, False]
        if fam == "mixtral":
            alt = llama_like_forward(fam, dict(cfg, sliding_window=None), W, ids, make_linear(W, L, scaling))
            assert (alt - logits).abs().max() > 1e-3


def verify_fixture(path):
    """Rebuild everything from the JSON alone (as the C test does) and compare."""
    d = json.load(open(path))
    fam, cfg = d["family"], d["config"]
    W = to_torch(build_tensors(d["tensors"]))
    L = to_torch(build_tensors(d["lora"]["tensors"]))
    for t in L.values():
        t.requires_grad_(True)
    ids = torch.tensor(d["tokens"], dtype=torch.long)
    fwd = forward_for(fam, cfg)
    scaling = d["lora"]["alpha"] / d["lora"]["r"]
    logits = fwd(W, ids, make_linear(W, L, scaling))
    loss = ce_loss(logits, ids)
    loss.backward()
    for t in L.values():  # an adapter of an expert no token chose is not in the graph: gradient 0
        if t.grad is None:
            t.grad = torch.zeros_like(t)
    ex = d["expected"]
    cols = ex["logit_cols"]
    B, T = ids.shape
    got = logits.detach()[:, :, cols].reshape(B * T, -1)
    err = (got - torch.tensor(ex["logits"], dtype=DT)).abs().max().item()
    gerr = max((L[n].grad.reshape(-1) - torch.tensor(g, dtype=DT)).abs().max().item() for n, g in ex["grads"].items())
    assert err < 1e-6 and gerr < 1e-7 and abs(loss.item() - ex["loss"]) < 1e-5, (path, err, gerr)
    if fam in MOE_FAMS:
        moe = moe_routing(cfg, W, L, ids, fwd, scaling)
        for k in ("expert_counts", "expert_counts_loss", "expert_counts_base"):
            assert moe[k] == ex[k], (path, k, moe[k], ex[k])
        assert moe["min_topk_gap"] > 1e-6 and abs(moe["min_topk_gap"] - ex["min_topk_gap"]) < 1e-7, path
        check_expert_grads(ex, ex["grads"], path)
    else:
        assert all(any(v != 0.0 for v in g) for g in ex["grads"].values()), path
    print(f"{os.path.relpath(path, ROOT)}: ok (max |dlogit| {err:.2g}, max |dgrad| {gerr:.2g})")


def main(argv):
    gen_scalar_check()
    if argv[:1] == ["--verify"]:
        names = argv[1:] or sorted(f[:-5] for f in os.listdir(OUT_DIR) if f.endswith(".json"))
        for fam in names:
            verify_fixture(os.path.join(OUT_DIR, fam + ".json"))
        return 0
    if not os.path.exists(LORA_BIN):
        sys.exit(f"{LORA_BIN} is missing: cmake --build build --target lora")
    fams = family_specs()
    todo = argv or list(fams)
    for fam in todo:
        run_family(fam, fams[fam])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
