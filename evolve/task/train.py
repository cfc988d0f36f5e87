"""
train.py: the file the search mutates. A small modern GPT trained for a fixed budget of counted
time (prepare.TIME_BUDGET seconds), then scored by prepare.evaluate_bpb on the validation split.

Everything is in this one file: hyperparameters (plain constants just below), model, optimizers,
schedule and loop. It prints a step log, then a line `---` and `key: value` lines (val_bpb, ...).
Run: `python train.py` (EVOLVE_BUDGET_S sets the budget, EVOLVE_SEED the seed,
EVOLVE_NUM_THREADS the CPU threads).
"""

import time

T_START = time.time()

import gc
import math
import os
import resource
import sys
from contextlib import nullcontext

# CPU: OpenMP threads that spin-wait stall badly when the cores are shared with other processes
# (measured 2 cores, two runs at once: 19 steps vs 44 passive); must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
import torch.nn as nn
import torch.nn.functional as F

from prepare import MAX_SEQ_LEN, TIME_BUDGET, VOCAB_SIZE, evaluate_bpb, make_dataloader

# ---------------------------------------------------------------------------------------------
# Hyperparameters (plain literals: presets and offline operators rewrite these lines)

DEPTH = 3  # transformer blocks
MODEL_DIM = 128  # residual width
HEAD_DIM = 32  # attention head size (n_head = MODEL_DIM // HEAD_DIM)
MLP_RATIO = 4  # MLP hidden = MLP_RATIO * MODEL_DIM
VALUE_EMBEDS = True  # value embeddings (a second token embedding added to v) on alternating layers
BATCH_SIZE = 8  # rows of MAX_SEQ_LEN tokens per micro-batch
GRAD_ACCUM_STEPS = 1  # micro-batches per optimizer step
EVAL_BATCH_SIZE = 32  # rows per forward pass in the final evaluation
MATRIX_LR = 0.08  # Muon, hidden 2D matrices
EMBED_LR = 1.2  # AdamW, token and value embeddings (scaled by (MODEL_DIM/768)^-0.5 like the anchor)
UNEMBED_LR = 0.012  # AdamW, lm_head (same scaling)
SCALAR_LR = 0.5  # AdamW, per-layer residual scalars
ADAM_BETA1 = 0.8
ADAM_BETA2 = 0.95
WEIGHT_DECAY = 0.0  # decoupled weight decay on Muon matrices, follows the LR schedule
MUON_MOMENTUM = 0.95  # final Muon momentum
MUON_MOMENTUM_START = 0.85  # Muon momentum at step 0, ramped linearly...
MUON_MOMENTUM_WARMUP_STEPS = 300  # ...over this many steps
NS_STEPS = 5  # Newton-Schulz iterations
WARMUP_FRAC = 0.0  # fraction of the budget spent warming the LR up from 0
WARMDOWN_FRAC = 0.5  # fraction of the budget spent decaying the LR at the end
FINAL_LR_FRAC = 0.0  # LR multiplier at the end of warmdown
SOFTCAP = 15.0  # logits = SOFTCAP * tanh(logits / SOFTCAP)
ROPE_BASE = 10000.0
COMPILE = False  # torch.compile the model
DTYPE = "bfloat16"  # autocast dtype: "bfloat16" or "float32" (no autocast)
SEED = 42  # EVOLVE_SEED overrides

# ---------------------------------------------------------------------------------------------
# Model


def norm(x):
    return F.rms_norm(x, (x.size(-1),))


def apply_rotary(x, cos, sin):  # x: (B, T, H, D)
    d = x.size(-1) // 2
    x1, x2 = x[..., :d], x[..., d:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)


class Attention(nn.Module):
    def __init__(self, dim, head_dim):
        super().__init__()
        self.n_head, self.head_dim = dim // head_dim, head_dim
        self.c_q = nn.Linear(dim, dim, bias=False)
        self.c_k = nn.Linear(dim, dim, bias=False)
        self.c_v = nn.Linear(dim, dim, bias=False)
        self.c_proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x, cos, sin, ve=None):
        B, T, C = x.shape
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim)
        k = self.c_k(x).view(B, T, self.n_head, self.head_dim)
        v = self.c_v(x)
        if ve is not None:  # value embedding of the input tokens
            v = v + ve
        v = v.view(B, T, self.n_head, self.head_dim)
        dtype = q.dtype  # the matmul dtype (bf16 under autocast); norms and adds may upcast
        q, k = apply_rotary(norm(q), cos, sin), apply_rotary(norm(k), cos, sin)  # QK-norm, RoPE
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.c_fc = nn.Linear(dim, hidden, bias=False)
        self.c_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        return self.c_proj(F.relu(self.c_fc(x)).square())  # ReLU^2


class Block(nn.Module):
    def __init__(self, dim, head_dim, hidden):
        super().__init__()
        self.attn = Attention(dim, head_dim)
        self.mlp = MLP(dim, hidden)

    def forward(self, x, cos, sin, ve=None):
        x = x + self.attn(norm(x), cos, sin, ve)
        return x + self.mlp(norm(x))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(VOCAB_SIZE, MODEL_DIM)
        self.blocks = nn.ModuleList([Block(MODEL_DIM, HEAD_DIM, MLP_RATIO * MODEL_DIM) for _ in range(DEPTH)])
        self.lm_head = nn.Linear(MODEL_DIM, VOCAB_SIZE, bias=False)  # untied
        self.resid_lambdas = nn.Parameter(torch.ones(DEPTH))  # x = r_i * x + s_i * x0 before block i
        self.x0_lambdas = nn.Parameter(torch.zeros(DEPTH))
        # value embeddings on every other layer, the last one included
        self.ve_layers = [i for i in range(DEPTH) if VALUE_EMBEDS and i % 2 == (DEPTH - 1) % 2]
        self.value_embeds = nn.ModuleList([nn.Embedding(VOCAB_SIZE, MODEL_DIM) for _ in self.ve_layers])
        self.ve_lambdas = nn.Parameter(torch.ones(len(self.ve_layers)))
        inv_freq = 1.0 / (ROPE_BASE ** (torch.arange(0, HEAD_DIM, 2).float() / HEAD_DIM))
        freqs = torch.outer(torch.arange(MAX_SEQ_LEN).float(), inv_freq)  # (T, HEAD_DIM/2)
        self.register_buffer("cos", freqs.cos()[None, :, None, :], persistent=False)
        self.register_buffer("sin", freqs.sin()[None, :, None, :], persistent=False)

    @torch.no_grad()
    def init_weights(self):
        nn.init.normal_(self.wte.weight, std=1.0)
        nn.init.normal_(self.lm_head.weight, std=0.001)
        for emb in self.value_embeds:
            nn.init.uniform_(emb.weight, -math.sqrt(3.0 / MODEL_DIM), math.sqrt(3.0 / MODEL_DIM))
        bound = math.sqrt(3.0 / MODEL_DIM)
        for block in self.blocks:
            for lin in (block.attn.c_q, block.attn.c_k, block.attn.c_v, block.mlp.c_fc):
                nn.init.uniform_(lin.weight, -bound, bound)
            nn.init.zeros_(block.attn.c_proj.weight)  # each block starts as the identity
            nn.init.zeros_(block.mlp.c_proj.weight)

    def forward(self, idx):
        T = idx.size(1)
        cos, sin = self.cos[:, :T], self.sin[:, :T]
        x = x0 = norm(self.wte(idx))
        for i, block in enumerate(self.blocks):
            x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * x0
            ve = None
            if i in self.ve_layers:
                j = self.ve_layers.index(i)
                ve = self.ve_lambdas[j] * self.value_embeds[j](idx)
            x = block(x, cos, sin, ve)
        logits = self.lm_head(norm(x)).float()
        return SOFTCAP * torch.tanh(logits / SOFTCAP)  # (B, T, VOCAB_SIZE)


# ---------------------------------------------------------------------------------------------
# Optimizers: Muon for hidden matrices, AdamW for the rest


@torch.no_grad()
def newton_schulz(G, steps):
    """Approximately orthogonalise G (quintic Newton-Schulz iteration, as in Muon)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.to(torch.bfloat16 if G.is_cuda else torch.float32)
    tall = X.size(-2) > X.size(-1)
    if tall:
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        A = X @ X.mT
        X = a * X + (b * A + c * A @ A) @ X
    return X.mT if tall else X


class Muon(torch.optim.Optimizer):
    def __init__(self, params, lr, momentum, weight_decay, ns_steps):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, ns_steps=ns_steps))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p.grad))
                buf.lerp_(p.grad, 1 - group["momentum"])
                g = p.grad.lerp(buf, group["momentum"])  # Nesterov
                update = newton_schulz(g, group["ns_steps"]).to(p.dtype)
                scale = max(1.0, p.size(-2) / p.size(-1)) ** 0.5
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(update, alpha=-group["lr"] * scale)


def make_optimizers(model):
    matrices = [p for p in model.blocks.parameters() if p.ndim == 2]
    scalars = [model.resid_lambdas, model.x0_lambdas, model.ve_lambdas]
    dim_scale = (MODEL_DIM / 768) ** -0.5
    embeds = [model.wte.weight] + [e.weight for e in model.value_embeds]
    adam = torch.optim.AdamW([
        dict(params=embeds, lr=EMBED_LR * dim_scale),
        dict(params=[model.lm_head.weight], lr=UNEMBED_LR * dim_scale),
        dict(params=scalars, lr=SCALAR_LR),
    ], betas=(ADAM_BETA1, ADAM_BETA2), eps=1e-10, weight_decay=0.0)
    muon = Muon(matrices, lr=MATRIX_LR, momentum=MUON_MOMENTUM, weight_decay=WEIGHT_DECAY, ns_steps=NS_STEPS)
    for opt in (adam, muon):
        for group in opt.param_groups:
            group["initial_lr"] = group["lr"]
    return adam, muon


def lr_multiplier(progress):
    if progress < WARMUP_FRAC:
        return progress / WARMUP_FRAC
    if progress > 1.0 - WARMDOWN_FRAC:
        cooldown = max(0.0, (1.0 - progress) / WARMDOWN_FRAC)
        return cooldown + (1.0 - cooldown) * FINAL_LR_FRAC
    return 1.0


# ---------------------------------------------------------------------------------------------
# Setup

seed = int(os.environ.get("EVOLVE_SEED", SEED))
torch.manual_seed(seed)
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
if device.type == "cuda":
    torch.cuda.manual_seed(seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
else:
    torch.set_num_threads(int(os.environ.get("EVOLVE_NUM_THREADS", os.cpu_count())))
autocast = torch.autocast(device.type, dtype=torch.bfloat16) if DTYPE == "bfloat16" else nullcontext()

model = GPT().to(device)
model.init_weights()
num_params = sum(p.numel() for p in model.parameters())
adam, muon = make_optimizers(model)
fwd = torch.compile(model, dynamic=False) if COMPILE else model
loader = make_dataloader("train", BATCH_SIZE, MAX_SEQ_LEN, device=device, seed=seed)

# FLOPs per token (forward + backward) for MFU: 6 per matmul weight, plus attention scores
num_embed_params = sum(p.numel() for p in [model.wte.weight] + [e.weight for e in model.value_embeds])
flops_per_token = 6 * (num_params - num_embed_params) + 12 * DEPTH * MODEL_DIM * MAX_SEQ_LEN
PEAK_BF16_FLOPS = {"H100": 989.5e12, "H200": 989.5e12, "B200": 2250e12, "A100": 312e12, "L40S": 362e12,
                   "A10": 125e12, "L4": 121e12, "4090": 165.2e12}  # dense bf16, by device name
peak_flops = 0.0
if device.type == "cuda":
    name = torch.cuda.get_device_name()
    peak_flops = next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), 0.0)
tokens_per_step = BATCH_SIZE * GRAD_ACCUM_STEPS * MAX_SEQ_LEN
print(f"device: {device} | params: {num_params / 1e6:.2f}M | depth {DEPTH} dim {MODEL_DIM} | "
      f"tokens/step {tokens_per_step} | budget {TIME_BUDGET:.0f}s", flush=True)

# ---------------------------------------------------------------------------------------------
# Training loop: stops once counted time reaches TIME_BUDGET. The first steps (warm-up and
# compilation) are not counted: 2 on CPU, 10 on GPU.

uncounted_steps = 10 if device.type == "cuda" else 2
t_loop = time.time()
training_time = 0.0  # counted seconds
counted_tokens = 0
step = 0
smooth_loss = 0.0
while True:
    if training_time >= TIME_BUDGET and (step >= uncounted_steps or TIME_BUDGET <= 0):
        break
    t0 = time.time()
    progress = min(1.0, training_time / TIME_BUDGET) if TIME_BUDGET > 0 else 1.0
    lrm = lr_multiplier(progress)
    for opt in (adam, muon):
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] * lrm
    frac = min(1.0, step / MUON_MOMENTUM_WARMUP_STEPS) if MUON_MOMENTUM_WARMUP_STEPS > 0 else 1.0
    for group in muon.param_groups:
        group["momentum"] = (1 - frac) * MUON_MOMENTUM_START + frac * MUON_MOMENTUM
    for _ in range(GRAD_ACCUM_STEPS):
        x, y = next(loader)
        with autocast:
            logits = fwd(x)
        loss = F.cross_entropy(logits.view(-1, VOCAB_SIZE), y.view(-1))
        (loss / GRAD_ACCUM_STEPS).backward()
    adam.step()
    muon.step()
    model.zero_grad(set_to_none=True)
    loss_f = loss.item()  # synchronises
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.time() - t0
    if not math.isfinite(loss_f) or loss_f > 100:
        print(f"\nstep {step}: loss {loss_f}")
        print("FAIL")
        sys.exit(1)
    if step >= uncounted_steps:
        training_time += dt
        counted_tokens += tokens_per_step
    step += 1
    if step == 1:  # the Python GC only causes pauses from here on
        gc.collect()
        gc.freeze()
        gc.disable()
    smooth_loss = 0.9 * smooth_loss + 0.1 * loss_f
    shown = smooth_loss / (1 - 0.9 ** step)
    print(f"\rstep {step:05d} ({100 * progress:5.1f}%) | loss {shown:.4f} | lrm {lrm:.2f} | "
          f"dt {1000 * dt:.0f}ms | tok/s {tokens_per_step / dt:,.0f} | left {max(0.0, TIME_BUDGET - training_time):.0f}s   ",
          end="", flush=True)
print()

# ---------------------------------------------------------------------------------------------
# Evaluation and summary

t_eval = time.time()
with autocast:
    val_bpb = evaluate_bpb(fwd, EVAL_BATCH_SIZE, split="val", device=device)
print(f"startup {t_loop - T_START:.1f}s | eval {time.time() - t_eval:.1f}s")
if device.type == "cuda":
    peak_mb = torch.cuda.max_memory_allocated() / 1024**2
else:
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # CPU: peak RSS (Linux reports KB)
mfu = 100 * flops_per_token * counted_tokens / training_time / peak_flops if peak_flops and training_time > 0 else 0.0
print("---")
print(f"val_bpb: {val_bpb:.6f}")
print(f"training_seconds: {training_time:.1f}")
print(f"total_seconds: {time.time() - T_START:.1f}")
print(f"peak_vram_mb: {peak_mb:.1f}")
print(f"mfu_percent: {mfu:.2f}")
print(f"total_tokens_M: {step * tokens_per_step / 1e6:.3f}")
print(f"num_steps: {step}")
print(f"num_params_M: {num_params / 1e6:.2f}")
print(f"depth: {DEPTH}")
