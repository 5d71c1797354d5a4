#!/usr/bin/python3
"""The PyTorch side of bench/bench_train: a plain PyTorch 1.13 CPU loop doing
LoRA training on the same shapes (random frozen weights, LoRA on all seven
projections, AdamW, hand-written causal attention: 1.13 has no
scaled_dot_product_attention). Prints tokens/s and peak RSS in the same form.
    /usr/bin/python3 bench/bench_torch.py smollm2-135m --batch 4 --seq 512 --steps 3
Debian's python3-torch uses the same OpenBLAS: set OPENBLAS_CORETYPE=SkylakeX
on AVX-512 machines (bench/run.sh does) or it runs on generic kernels.
"""
import argparse
import math
import os
import resource
import statistics
import time

import torch
import torch.utils.checkpoint

SHAPES = {  # C, F, L, H, KVH, D, V
    "stories260k": (64, 172, 5, 8, 4, 8, 512),
    "smollm2-135m": (576, 1536, 30, 9, 3, 64, 49152),
    "llama-1b": (2048, 8192, 16, 32, 8, 64, 128256),
}


class LoraLinear(torch.nn.Module):
    def __init__(self, n_in, n_out, r, alpha):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(n_out, n_in) * 0.02, requires_grad=False)
        self.a = torch.nn.Parameter(torch.empty(r, n_in))
        torch.nn.init.kaiming_uniform_(self.a, a=math.sqrt(5))
        self.b = torch.nn.Parameter(torch.zeros(n_out, r))
        self.scale = alpha / r

    def forward(self, x):
        return x @ self.w.T + (x @ self.a.T) @ self.b.T * self.scale


class Block(torch.nn.Module):
    def __init__(self, C, F, H, KVH, D, r):
        super().__init__()
        self.H, self.KVH, self.D = H, KVH, D
        self.q, self.k = LoraLinear(C, H * D, r, 2 * r), LoraLinear(C, KVH * D, r, 2 * r)
        self.v, self.o = LoraLinear(C, KVH * D, r, 2 * r), LoraLinear(H * D, C, r, 2 * r)
        self.gate, self.up = LoraLinear(C, F, r, 2 * r), LoraLinear(C, F, r, 2 * r)
        self.down = LoraLinear(F, C, r, 2 * r)
        self.n1 = torch.nn.Parameter(torch.ones(C), requires_grad=False)
        self.n2 = torch.nn.Parameter(torch.ones(C), requires_grad=False)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        H, KVH, D = self.H, self.KVH, self.D
        h = rms(x, self.n1)
        q = rope(self.q(h).view(B, T, H, D).transpose(1, 2), cos, sin)
        k = rope(self.k(h).view(B, T, KVH, D).transpose(1, 2), cos, sin)
        v = self.v(h).view(B, T, KVH, D).transpose(1, 2)
        k, v = k.repeat_interleave(H // KVH, 1), v.repeat_interleave(H // KVH, 1)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D) + mask, -1)
        x = x + self.o((att @ v).transpose(1, 2).reshape(B, T, H * D))
        h = rms(x, self.n2)
        return x + self.down(torch.nn.functional.silu(self.gate(h)) * self.up(h))


def rms(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), -1) * sin


def main():
    p = argparse.ArgumentParser()
    p.add_argument("shape", nargs="?", default="smollm2-135m", choices=SHAPES)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--checkpointing", action="store_true")
    p.add_argument("--vocab", type=int, default=0, help="vocabulary size instead of the shape's")
    a = p.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))  # as many as lora.c's BLAS uses
    C, F, L, H, KVH, D, V = SHAPES[a.shape]
    V = a.vocab or V
    torch.manual_seed(0)
    embed = torch.randn(V, C) * 0.02
    blocks = torch.nn.ModuleList(Block(C, F, H, KVH, D, a.rank) for _ in range(L))
    norm = torch.ones(C)
    params = [q for q in blocks.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    T = a.seq
    inv = 1.0 / (10000.0 ** (torch.arange(0, D, 2).float() / D))
    f = torch.outer(torch.arange(T).float(), inv)
    cos, sin = torch.cat((f, f), -1).cos(), torch.cat((f, f), -1).sin()
    mask = torch.full((T, T), float("-inf")).triu(1)
    tokens = torch.randint(0, V, (a.batch, T))
    targets = torch.cat((tokens[:, 1:], torch.full((a.batch, 1), -100)), 1)
    step_s = []
    for i in range(a.warmup + a.steps):
        t0 = time.time()
        x = embed[tokens]
        for blk in blocks:
            if a.checkpointing:
                x = torch.utils.checkpoint.checkpoint(blk, x, cos, sin, mask)
            else:
                x = blk(x, cos, sin, mask)
        logits = rms(x, norm) @ embed.T
        loss = torch.nn.functional.cross_entropy(logits.view(-1, V), targets.view(-1), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if i >= a.warmup:
            step_s.append(time.time() - t0)
    tps = a.batch * T / statistics.median(step_s)  # the median step, as bench_train
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1048576.0
    print(f"{a.shape:<13s} batch {a.batch} x {T}, r {a.rank}, PyTorch {torch.__version__}, {torch.get_num_threads()} "
          f"threads: {tps:8.1f} tokens/s, peak RSS {rss:.2f} GB, loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
