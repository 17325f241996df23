#!/usr/bin/python3
"""Writes the golden fixture of the pre-norm transformer block + CLIP head.

Regenerate (needs Debian's python3-torch, so the system interpreter):

    /usr/bin/python3 tests/golden/make_golden.py tests/data/golden_block.safetensors

The C side is tests/golden/test_golden_block.c; it loads the parameters below
by name into a qc_table laid out by nn_block_describe(prefix "block.") plus the
head tensors, recomputes everything with qiao's layers and compares.

Model (all dims in __metadata__):
    x (B, T, C), key padding mask from per-sequence lengths, y (B, E)
    za = l2norm(head_a(masked_mean_pool(block(x, mask), mask)))   head_a: C -> D
    zb = l2norm(head_b(y))                                        head_b: E -> D
    loss = CLIP symmetric InfoNCE(za, zb) with a learnable logit_scale
block (exactly nn_block_forward):
    h   = x + proj(MHA(ln1 x))      q, k, v separate Linear(C, C), heads split
                                    over columns, scale 1/sqrt(C/H), masked keys
                                    -inf before the softmax
    out = h + fc2(gelu_exact(fc(ln2 h)))      LayerNorm eps 1e-5

Precision: parameters and inputs are drawn in float32 and stored as float32;
the reference is then computed in float64 from exactly those float32 values
and rounded to float32 on output, so the fixture carries only the C side's
error, not PyTorch's. The script also reruns everything in float32 and prints
how far PyTorch-f32 lands from the float64 reference: that is the error a
correct f32 implementation is expected to show, and the C tolerances are set
well above it (see test_golden_block.c).

Fixture tensors (float32 unless noted):
    x, y, mask (U8, (B, T))
    every parameter under its C name (block.*, head_a.*, head_b.*, logit_scale)
    fwd.h, fwd.att, fwd.block_out, fwd.pooled, fwd.ha, fwd.za, fwd.zb,
    fwd.logits, loss (1)
    grad.<param> for every parameter, grad.x, and the activation gradients
    grad.fwd.block_out, grad.fwd.pooled, grad.fwd.za, grad.fwd.zb
    losses (STEPS): the loss before each of STEPS AdamW steps
    final.<param> for every parameter after STEPS steps, except
    block.attn.k.bias (its gradient is identically zero; see run())

The file is safetensors, written by hand (8-byte little-endian header length,
JSON header padded with spaces to a multiple of 8, raw little-endian data) so
the `safetensors` package is not needed.
"""
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

FORMAT_VERSION = "1"
SEED = 20240611
B, T, C, H, FF, D, E = 4, 6, 32, 4, 64, 16, 24
LENGTHS = [6, 4, 5, 2]
STEPS = 5
LR, BETAS, EPS, WD = 1e-2, (0.9, 0.999), 1e-8, 0.1
LOGIT_SCALE_INIT = math.log(1 / 0.07)
LOGIT_SCALE_MAX = math.log(100.0)

# Parameter names, in the order of nn_block_describe, then the head.
BLOCK = [
    ("ln1.weight", (C,)), ("ln1.bias", (C,)),
    ("attn.q.weight", (C, C)), ("attn.q.bias", (C,)),
    ("attn.k.weight", (C, C)), ("attn.k.bias", (C,)),
    ("attn.v.weight", (C, C)), ("attn.v.bias", (C,)),
    ("attn.proj.weight", (C, C)), ("attn.proj.bias", (C,)),
    ("ln2.weight", (C,)), ("ln2.bias", (C,)),
    ("mlp.fc.weight", (FF, C)), ("mlp.fc.bias", (FF,)),
    ("mlp.fc2.weight", (C, FF)), ("mlp.fc2.bias", (C,)),
]
PARAMS = [("block." + n, s) for n, s in BLOCK] + [
    ("head_a.weight", (D, C)), ("head_a.bias", (D,)),
    ("head_b.weight", (D, E)), ("head_b.bias", (D,)),
    ("logit_scale", (1,)),
]


def no_decay(name):
    """AdamW group without weight decay: norms, biases, the temperature
    (the C side flags the same tensors QC_NO_DECAY)."""
    return name.endswith(".bias") or ".ln" in name or name == "logit_scale"


def make_inputs():
    """Everything random, drawn once in float32 from SEED."""
    g = torch.Generator().manual_seed(SEED)

    def rnd(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float32) * scale

    params = {}
    for name, shape in PARAMS:
        if name == "logit_scale":
            p = torch.tensor([LOGIT_SCALE_INIT], dtype=torch.float32)
        elif ".ln" in name and name.endswith(".weight"):
            p = 1.0 + rnd(*shape, scale=0.1)  # not all ones, so dgamma matters
        elif name.endswith(".bias"):
            p = rnd(*shape, scale=0.1)        # nonzero biases
        else:
            p = rnd(*shape, scale=1.0 / math.sqrt(shape[1]))  # ~unit-variance outputs
        params[name] = p
    x = rnd(B, T, C)
    y = rnd(B, E)
    mask = torch.zeros(B, T, dtype=torch.uint8)
    for b, n in enumerate(LENGTHS):
        mask[b, :n] = 1
    return params, x, y, mask


def block_forward(p, x, mask, acts):
    """nn_block_forward, attention written out by hand."""
    Bn, Tn, Cn = x.shape
    Dh = Cn // H
    ln1 = F.layer_norm(x, (Cn,), p["block.ln1.weight"], p["block.ln1.bias"], eps=1e-5)

    def heads(t):  # (B, T, C) -> (B, H, T, Dh): head h is columns [h*Dh, (h+1)*Dh)
        return t.view(Bn, Tn, H, Dh).transpose(1, 2)

    q = heads(F.linear(ln1, p["block.attn.q.weight"], p["block.attn.q.bias"]))
    k = heads(F.linear(ln1, p["block.attn.k.weight"], p["block.attn.k.bias"]))
    v = heads(F.linear(ln1, p["block.attn.v.weight"], p["block.attn.v.bias"]))
    s = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(Dh))
    s = s.masked_fill(mask[:, None, None, :] == 0, float("-inf"))
    att = torch.softmax(s, dim=-1)
    atty = (att @ v).transpose(1, 2).reshape(Bn, Tn, Cn)
    h = x + F.linear(atty, p["block.attn.proj.weight"], p["block.attn.proj.bias"])
    ln2 = F.layer_norm(h, (Cn,), p["block.ln2.weight"], p["block.ln2.bias"], eps=1e-5)
    fc = F.linear(ln2, p["block.mlp.fc.weight"], p["block.mlp.fc.bias"])
    out = h + F.linear(F.gelu(fc), p["block.mlp.fc2.weight"], p["block.mlp.fc2.bias"])
    acts["fwd.h"] = h
    acts["fwd.att"] = att
    return out


def model_forward(p, x, y, mask, acts):
    out = block_forward(p, x, mask, acts)
    out.retain_grad()
    m = mask.to(out.dtype)[:, :, None]
    pooled = (out * m).sum(1) / m.sum(1)
    pooled.retain_grad()
    ha = F.linear(pooled, p["head_a.weight"], p["head_a.bias"])
    za = F.normalize(ha, dim=-1, eps=1e-12)
    za.retain_grad()
    zb = F.normalize(F.linear(y, p["head_b.weight"], p["head_b.bias"]), dim=-1, eps=1e-12)
    zb.retain_grad()
    scale = p["logit_scale"].clamp(0.0, LOGIT_SCALE_MAX).exp()
    logits = scale * (za @ zb.t())
    labels = torch.arange(x.shape[0])
    loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
    acts.update({"fwd.block_out": out, "fwd.pooled": pooled, "fwd.ha": ha, "fwd.za": za,
                 "fwd.zb": zb, "fwd.logits": logits})
    return loss


def run(params32, x32, y32, mask, dtype):
    """Forward, backward, then STEPS AdamW steps from the same start, in dtype."""
    p = {n: t.to(dtype).clone().requires_grad_(True) for n, t in params32.items()}
    x = x32.to(dtype).clone().requires_grad_(True)
    y = y32.to(dtype)
    out = {}

    acts = {}
    loss = model_forward(p, x, y, mask, acts)
    loss.backward()
    out["loss"] = loss.detach().reshape(1)
    for n, t in acts.items():
        out[n] = t.detach()
    for n in ("fwd.block_out", "fwd.pooled", "fwd.za", "fwd.zb"):
        out["grad." + n] = acts[n].grad.detach()
    for n, t in p.items():
        out["grad." + n] = t.grad.detach().clone()
    out["grad.x"] = x.grad.detach()

    # Fresh parameters for the optimizer run (the gradients above stay).
    p = {n: t.to(dtype).clone().requires_grad_(True) for n, t in params32.items()}
    groups = [
        {"params": [p[n] for n, _ in PARAMS if not no_decay(n)], "weight_decay": WD},
        {"params": [p[n] for n, _ in PARAMS if no_decay(n)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=LR, betas=BETAS, eps=EPS)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad(set_to_none=True)
        loss = model_forward(p, x.detach(), y, mask, {})
        loss.backward()
        losses.append(loss.detach())
        opt.step()
    out["losses"] = torch.stack(losses)
    for n, t in p.items():
        # attn.k.bias only shifts every score of a query row by the same
        # q . b_k, which the softmax cancels: its gradient is exactly 0, and
        # Adam turns rounding noise (1e-9 in f32, 1e-17 in f64) into steps of
        # up to lr, so its final value says nothing. Not written.
        if n != "block.attn.k.bias":
            out["final." + n] = t.detach()
    return out


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, np.ndarray little-endian float32 or uint8)."""
    dtypes = {np.dtype("<f4"): "F32", np.dtype("u1"): "U8"}
    header = {"__metadata__": metadata}
    blobs, off = [], 0
    for name, a in tensors:
        a = np.ascontiguousarray(a)
        raw = a.tobytes()
        header[name] = {"dtype": dtypes[a.dtype], "shape": list(a.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for raw in blobs:
            f.write(raw)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: /usr/bin/python3 tests/golden/make_golden.py OUT.safetensors")
    torch.use_deterministic_algorithms(True)
    params, x, y, mask = make_inputs()
    ref = run(params, x, y, mask, torch.float64)
    f32 = run(params, x, y, mask, torch.float32)

    # How far a correct float32 implementation (PyTorch's) lands from the
    # reference, as max |err| / (1e-5 + 1e-4 |ref|): the C test's default bound
    # is 1 on this scale.
    print("torch-f32 vs f64 reference (max abs err, ratio to 1e-5 + 1e-4|ref|):")
    for n in ref:
        r, a = ref[n].double(), f32[n].double()
        fin = torch.isfinite(r)
        err = (a[fin] - r[fin]).abs()
        lim = 1e-5 + 1e-4 * r[fin].abs()
        print(f"  {n:32s} {err.max().item():.3e}  {(err / lim).max().item():.3f}")

    tensors = [("x", x.numpy()), ("y", y.numpy()), ("mask", mask.numpy())]
    tensors += [(n, params[n].numpy()) for n, _ in PARAMS]
    tensors += [(n, t.to(torch.float32).numpy()) for n, t in ref.items()]
    meta = {
        "format_version": FORMAT_VERSION,
        "generator": "tests/golden/make_golden.py",
        "torch_version": torch.__version__,
        "seed": str(SEED),
        "reference_dtype": "float64 (rounded to float32)",
        "B": str(B), "T": str(T), "C": str(C), "H": str(H), "F": str(FF), "D": str(D), "E": str(E),
        "lengths": json.dumps(LENGTHS),
        "steps": str(STEPS),
        "adamw": json.dumps({"lr": LR, "betas": BETAS, "eps": EPS, "weight_decay": WD}),
        "logit_scale_init": repr(LOGIT_SCALE_INIT),
    }
    write_safetensors(sys.argv[1], tensors, meta)
    print(f"wrote {sys.argv[1]}: {len(tensors)} tensors")


if __name__ == "__main__":
    main()
