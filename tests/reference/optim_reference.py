#!/usr/bin/python3
"""PyTorch reference for optim/: torch.optim.AdamW (single-tensor path),
torch.nn.utils.clip_grad_norm_, and Hugging Face's warmup schedules written
out by hand (transformers is not installed, and the formulas must not come
from the C code they check).

Writes, for the C tests (so CI needs no PyTorch):
  tests/fixtures/adamw_steps.bin     AdamW trajectories, two configurations
  tests/fixtures/adamw_clip.bin      clip_grad_norm_ input, norm and output
  tests/fixtures/adamw_schedule.txt  expected learning rates

adamw_steps.bin (little-endian):
  char magic[8] = "LCADAMW1"; int32 n, steps, configs
  float32 params0[n]; float32 lrs[steps]; float32 grads[steps][n]
  per config: float32 beta1, beta2, eps, weight_decay
              float32 params[steps][n]   (after each step)
              float32 m[n], v[n]         (after the last step)
adamw_clip.bin:
  char magic[8] = "LCCLIP01"; int32 n; float32 max_norm, total_norm
  float32 grads_in[n], grads_out[n]
adamw_schedule.txt: one line per case, '#' comments:
  type warmup total lr min_lr step expected_lr

Hyperparameters are float32 values widened to double, because the C
optimizer holds them as float: both sides then see the same numbers and the
comparison checks the arithmetic, not the rounding of 0.999 to float.

Run with Debian's python3-torch:  /usr/bin/python3 tests/reference/optim_reference.py
"""
import math
import os
import struct

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")

N = 1000
STEPS = 10


def f32(x):
    return float(np.float32(x))


def f32bytes(a):
    return np.ascontiguousarray(a, dtype="<f4").tobytes()


def make_params(rng):
    p = rng.standard_normal(N).astype(np.float32)
    # Large and tiny magnitudes: decay and the update must both stay visible
    # at fp32 resolution, and zeros/denormal-ish values must not blow up.
    p[0:5] = [100.0, -250.0, 1e3, -3e4, 7.5]
    p[5:10] = [1e-7, -3e-9, 0.0, 1e-30, -1e-38]
    return p


def make_grads(rng):
    g = rng.standard_normal((STEPS, N)).astype(np.float32) * np.float32(0.1)
    g[:, 10:15] *= np.float32(1e3)   # large gradients
    g[:, 15:20] *= np.float32(1e-7)  # sqrt(v) near eps: eps placement matters
    g[:, 20] = 0.0                   # zero gradient: only decay moves it
    g[3:, 21] = 0.0                  # gradient that stops: momentum carries on
    g[:, 22] = np.float32(1e-20)     # (1-beta2)*g*g is denormal in fp32
    return g


def run_adamw(params0, grads, lrs, beta1, beta2, eps, weight_decay):
    p = torch.nn.Parameter(torch.from_numpy(params0.copy()))
    opt = torch.optim.AdamW([p], lr=lrs[0], betas=(beta1, beta2), eps=eps,
                            weight_decay=weight_decay, amsgrad=False,
                            foreach=False, maximize=False)
    out = []
    for s in range(STEPS):
        for group in opt.param_groups:
            group["lr"] = lrs[s]
        p.grad = torch.from_numpy(grads[s].copy())
        opt.step()
        out.append(p.detach().numpy().copy())
    st = opt.state[p]
    return np.stack(out), st["exp_avg"].numpy().copy(), st["exp_avg_sq"].numpy().copy()


def write_adamw(rng):
    params0 = make_params(rng)
    grads = make_grads(rng)
    # A warmup-and-decay shape with lrs large enough that decoupled weight
    # decay (lr * wd * param) is far above fp32 noise.
    lrs = [f32(x) for x in (1e-3, 5e-3, 2e-2, 5e-2, 1e-1, 8e-2, 5e-2, 2e-2, 1e-2, 1e-3)]
    configs = [
        (f32(0.9), f32(0.999), f32(1e-8), f32(0.01)),
        (f32(0.8), f32(0.95), f32(1e-8), f32(0.0)),
    ]
    blob = bytearray(b"LCADAMW1")
    blob += struct.pack("<iii", N, STEPS, len(configs))
    blob += f32bytes(params0) + f32bytes(np.array(lrs)) + f32bytes(grads)
    for cfg in configs:
        traj, m, v = run_adamw(params0, grads, lrs, *cfg)
        blob += struct.pack("<ffff", *cfg)
        blob += f32bytes(traj) + f32bytes(m) + f32bytes(v)
    with open(os.path.join(FIXTURES, "adamw_steps.bin"), "wb") as f:
        f.write(blob)


def write_clip(rng):
    g = (rng.standard_normal(N) * 2.0).astype(np.float32)
    max_norm = f32(1.0)
    p = torch.nn.Parameter(torch.zeros(N))
    p.grad = torch.from_numpy(g.copy())
    total = torch.nn.utils.clip_grad_norm_([p], max_norm)
    assert float(total) > 10 * max_norm  # the test relies on a real clip
    blob = bytearray(b"LCCLIP01")
    blob += struct.pack("<iff", N, max_norm, float(total))
    blob += f32bytes(g) + f32bytes(p.grad.numpy())
    with open(os.path.join(FIXTURES, "adamw_clip.bin"), "wb") as f:
        f.write(blob)


# transformers.optimization, get_*_schedule_with_warmup (v4.x), as lambdas of
# the step; LambdaLR multiplies the base lr by them.
def hf_constant(step, warmup, total):
    if step < warmup:
        return float(step) / float(max(1.0, warmup))
    return 1.0


def hf_linear(step, warmup, total):
    if step < warmup:
        return float(step) / float(max(1, warmup))
    return max(0.0, float(total - step) / float(max(1, total - warmup)))


def hf_cosine(step, warmup, total, num_cycles=0.5):
    if step < warmup:
        return float(step) / float(max(1, warmup))
    progress = float(step - warmup) / float(max(1, total - warmup))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress)))


def expected_lr(kind, lr, min_lr, warmup, total, step):
    # lora.c holds the last value past total_steps (HF's cosine would rise
    # again), and decays to min_lr instead of 0 after warmup.
    step = min(step, total)
    factor = {"constant": hf_constant, "linear": hf_linear, "cosine": hf_cosine}[kind](step, warmup, total)
    if step < warmup:
        return lr * factor
    return min_lr + (lr - min_lr) * factor


def write_schedule():
    lr = f32(2e-4)
    lines = ["# type warmup total lr min_lr step expected_lr (optim_reference.py)"]
    for kind in ("constant", "linear", "cosine"):
        for min_lr in (0.0, f32(1e-5)):
            for step in (0, 1, 5, 9, 10, 11, 50, 99, 100, 150):
                e = expected_lr(kind, lr, min_lr, 10, 100, step)
                lines.append("%s 10 100 %.9g %.9g %d %.17g" % (kind, lr, min_lr, step, e))
    # No warmup, and warmup equal to the whole run.
    for kind in ("linear", "cosine"):
        for step in (0, 1, 50, 100):
            lines.append("%s 0 100 %.9g 0 %d %.17g" % (kind, lr, step, expected_lr(kind, lr, 0.0, 0, 100, step)))
            lines.append("%s 100 100 %.9g 0 %d %.17g" % (kind, lr, step, expected_lr(kind, lr, 0.0, 100, 100, step)))
    with open(os.path.join(FIXTURES, "adamw_schedule.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    torch.set_num_threads(1)
    rng = np.random.default_rng(20240611)
    write_adamw(rng)
    write_clip(rng)
    write_schedule()


if __name__ == "__main__":
    main()
