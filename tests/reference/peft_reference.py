#!/usr/bin/python3
"""Independent check of PEFT adapter folders, without the peft package.

LoRA is applied the way PEFT's LoraLayer does it (peft/tuners/lora/layer.py):
    result = base_layer(x) + lora_B(lora_A(dropout(x))) * scaling
    scaling = lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora
inside the hand-written Llama forward of llama_reference.py. Folders are read
and written from PEFT's documented layout: adapter_config.json (field names of
LoraConfig) and adapter_model.safetensors with keys
    base_model.model.model.layers.<l>.<self_attn|mlp>.<module>.lora_A.weight  [r, in]
    base_model.model.model.layers.<l>.<self_attn|mlp>.<module>.lora_B.weight  [out, r]
(the adapter name "default" is removed on save by get_peft_model_state_dict).

Two uses (Debian's python3-torch):
  /usr/bin/python3 tests/reference/peft_reference.py
      writes tests/fixtures/peft_stories260k/: a seeded adapter (r=2 on q_proj
      and v_proj) as PEFT save_pretrained would, plus expected_logits.bin
      (int32 T, int32 V, int32 ids[T], float32 logits[T, V]) for test_export.
  /usr/bin/python3 tests/reference/peft_reference.py check ADAPTER_DIR LOGITS_BIN [MERGED_DIR]
      checks a folder lora.c exported (test_export with LC_TEST_EXPORT_DUMP set)
      against the logits it wrote, and a merged HF folder's plain forward too.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

from llama_reference import ROOT, SHARED, llama_forward, load_safetensors, write_logits
from safetensors_io import read_safetensors_metadata, save_safetensors

PREFIX = "base_model.model."
MODULES = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
           "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
IDS = [1, 403, 407, 261, 378, 442, 303, 271, 294, 260, 454, 266, 425, 263, 350, 301, 39, 500, 3, 511]
TOL = 1e-4


class LoraLinear(torch.nn.Module):
    """A base nn.Linear with one LoRA adapter, as PEFT's lora.Linear computes it (eval mode)."""

    def __init__(self, weight, A, B, scaling, dropout):
        super().__init__()
        out_f, in_f = weight.shape
        r = A.shape[0]
        self.base_layer = torch.nn.Linear(in_f, out_f, bias=False)
        self.base_layer.weight.data.copy_(weight)
        self.lora_A = torch.nn.Linear(in_f, r, bias=False)
        self.lora_A.weight.data.copy_(A)
        self.lora_B = torch.nn.Linear(r, out_f, bias=False)
        self.lora_B.weight.data.copy_(B)
        self.lora_dropout = torch.nn.Dropout(p=dropout) if dropout > 0 else torch.nn.Identity()
        self.scaling = scaling

    def forward(self, x):
        result = self.base_layer(x)
        return result + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling


def scaling_of(cfg):
    r, alpha = cfg["r"], cfg["lora_alpha"]
    return alpha / math.sqrt(r) if cfg.get("use_rslora", False) else alpha / r


def build_linears(model_cfg, W, adapter_cfg, tensors):
    """{module path: callable}; LoRA modules from tensors, the rest plain."""
    scaling = scaling_of(adapter_cfg)
    targets = set(adapter_cfg["target_modules"])
    used = set()
    linears = {}
    for l in range(model_cfg["num_hidden_layers"]):
        for name, parent in MODULES.items():
            path = f"model.layers.{l}.{parent}.{name}"
            w = W[path + ".weight"]
            if name in targets:
                a_key, b_key = PREFIX + path + ".lora_A.weight", PREFIX + path + ".lora_B.weight"
                A, B = tensors[a_key], tensors[b_key]
                assert A.shape == (adapter_cfg["r"], w.shape[1]), (a_key, A.shape)
                assert B.shape == (w.shape[0], adapter_cfg["r"]), (b_key, B.shape)
                used.update((a_key, b_key))
                linears[path] = LoraLinear(w, A, B, scaling, adapter_cfg.get("lora_dropout", 0.0)).eval()
            else:
                linears[path] = (lambda w: (lambda x: x @ w.T))(w)
    extra = set(tensors) - used
    assert not extra, f"tensors for no targeted module: {sorted(extra)}"
    return linears


def lora_forward(cfg, W, linears, ids):
    """llama_reference.llama_forward with every projection routed through `linears`."""
    return llama_forward(cfg, W, ids, linear=lambda x, l, parent, name: linears[f"model.layers.{l}.{parent}.{name}"](x))


def read_logits(path):
    with open(path, "rb") as f:
        T, V = struct.unpack("<ii", f.read(8))
        ids = list(struct.unpack(f"<{T}i", f.read(4 * T)))
        logits = torch.from_numpy(np.frombuffer(f.read(4 * T * V), dtype="<f4").reshape(T, V).copy())
    return ids, logits


def model_inputs():
    model_dir = os.path.join(SHARED, "models", "stories260K")
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    return cfg, load_safetensors(os.path.join(model_dir, "model.safetensors"))


def write_fixture():
    cfg, W = model_inputs()
    r, alpha, targets = 2, 4, ["q_proj", "v_proj"]
    gen = torch.Generator().manual_seed(1234)
    tensors = {}
    for l in range(cfg["num_hidden_layers"]):
        for name in targets:
            path = f"model.layers.{l}.{MODULES[name]}.{name}"
            out_f, in_f = W[path + ".weight"].shape
            bound = 1.0 / math.sqrt(in_f)
            tensors[PREFIX + path + ".lora_A.weight"] = (torch.rand(r, in_f, generator=gen) * 2 - 1) * bound
            tensors[PREFIX + path + ".lora_B.weight"] = torch.randn(out_f, r, generator=gen) * 0.2
    # The fields PEFT 0.13 writes for LoraConfig(r=2, lora_alpha=4, lora_dropout=0.05,
    # target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM") after save_pretrained.
    adapter_cfg = {
        "alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": "stories260K", "bias": "none",
        "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True, "layer_replication": None,
        "layers_pattern": None, "layers_to_transform": None, "loftq_config": {}, "lora_alpha": alpha,
        "lora_dropout": 0.05, "megatron_config": None, "megatron_core": "megatron.core", "modules_to_save": None,
        "peft_type": "LORA", "r": r, "rank_pattern": {}, "revision": None, "target_modules": ["v_proj", "q_proj"],
        "task_type": "CAUSAL_LM", "use_dora": False, "use_rslora": False,
    }
    out = os.path.join(ROOT, "tests", "fixtures", "peft_stories260k")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "adapter_config.json"), "w") as f:
        f.write(json.dumps(adapter_cfg, indent=2, sort_keys=True))
    save_safetensors(os.path.join(out, "adapter_model.safetensors"), tensors, {"format": "pt"})
    with torch.no_grad():
        logits = lora_forward(cfg, W, build_linears(cfg, W, adapter_cfg, tensors), IDS)
        base = llama_forward(cfg, W, IDS)
    write_logits(os.path.join(out, "expected_logits.bin"), IDS, logits)
    print(f"wrote {out}: max |adapter - base| logits {float((logits - base).abs().max()):.4f}")


REQUIRED = {"peft_type": str, "task_type": str, "r": int, "lora_alpha": (int, float), "lora_dropout": (int, float),
            "target_modules": list, "use_rslora": bool, "bias": str, "fan_in_fan_out": bool,
            "inference_mode": bool, "base_model_name_or_path": str}


def check(adapter_dir, logits_path, merged_dir=None):
    cfg, W = model_inputs()
    adapter_cfg = json.load(open(os.path.join(adapter_dir, "adapter_config.json")))
    for key, kind in REQUIRED.items():
        assert isinstance(adapter_cfg.get(key), kind), f"adapter_config.json: {key} = {adapter_cfg.get(key)!r}"
    assert adapter_cfg["peft_type"] == "LORA" and adapter_cfg["bias"] == "none"
    assert adapter_cfg["task_type"] == "CAUSAL_LM"
    st_path = os.path.join(adapter_dir, "adapter_model.safetensors")
    assert read_safetensors_metadata(st_path) == {"format": "pt"}
    tensors = load_safetensors(st_path)
    ids, c_logits = read_logits(logits_path)
    with torch.no_grad():
        logits = lora_forward(cfg, W, build_linears(cfg, W, adapter_cfg, tensors), ids)
    d = float((logits - c_logits).abs().max())
    print(f"adapter {adapter_dir}: {len(tensors)} tensors, scaling {scaling_of(adapter_cfg):.4f}, "
          f"max |PyTorch - lora.c| logits {d:.3g}")
    ok = d <= TOL
    if merged_dir:
        mcfg = json.load(open(os.path.join(merged_dir, "config.json")))
        MW = load_safetensors(os.path.join(merged_dir, "model.safetensors"))
        assert set(MW) == set(W), sorted(set(MW) ^ set(W))
        with torch.no_grad():
            merged = llama_forward(mcfg, MW, ids)
        dm = float((merged - c_logits).abs().max())
        print(f"merged {merged_dir}: torch_dtype {mcfg.get('torch_dtype')}, max |merged - lora.c adapter| {dm:.3g}")
        ok = ok and dm <= TOL
    print("OK" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "check":
        sys.exit(check(*sys.argv[2:5]))
    sys.exit(write_fixture())
