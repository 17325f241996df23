#!/usr/bin/python3
"""Writes the golden fixture of the cross-modal fuser (issue 15).

Regenerate (needs Debian's python3-torch, so the system interpreter):

    /usr/bin/python3 tests/golden/make_fusion_fixture.py tests/data/fusion_golden.safetensors

The reference is the PyTorch peer bench/peer/fusion_peer.py (Fuser, built of
XBlock), gradients by torch autograd. The C side is
tests/golden/test_fusion_golden.c: it lays the parameters out with
qf_fuser_describe (prefix ""), loads them by name, runs
qf_fuser_forward / qf_fuser_backward in each weighting mode and compares.

Batch (B = 4; present = text, image, audio; lengths = real tokens):
    row 0  everything present; text 5/5, image 5/6, audio 4/4
    row 1  spoken question, no text; image 6/6, audio 3/4
    row 2  typed question, no audio; text 3/5, image 6/6
    row 3  no picture (the question's cross-attention reads zeros, the
           picture's self-attention has no key); text 4/5, audio 2/4, the
           audio silent (centroid 0 Hz: heuristic weight exactly 0 while
           present, so its keys read the floor QF_MIN_KEY_WEIGHT)
Absent modalities still carry random tokens, stats and all-ones masks where
the padding pattern says so, and padding positions hold garbage (scale 3), so
a presence or masking bug changes the result. Raw stats are in their units
(weighting.h): text entropy bits / tokens / unk share, picture contrast /
Laplacian / mean luminance in levels, audio centroid Hz / energy dB / spread
dB. The loss is sum(R * z) with a fixed random R (B, width).

Parameters are drawn so activations are O(1) (weights N(0, 1/fan_in),
LayerNorm weights 1 + 0.1 N, biases 0.1 N, type vectors 0.5 N) rather than
the 0.02 init, so every term contributes and a wrong one shows.

Precision: parameters and inputs are float32 and stored as float32; the
reference is computed in float64 from exactly those values and rounded to
float32 on output, so the fixture carries only the C side's error. The
script reruns everything in float32 and prints how far PyTorch-f32 lands
from the reference on the C test's scale (see test_fusion_golden.c).

Fixture tensors (float32 unless noted):
    tokens.<m> (B, T_m, in_m), mask.<m> (U8 (B, T_m)), stats.<m> (B, 3),
    present (U8 (B, 3), weight order text, image, audio), R (B, width)
    every parameter under its C name ("text.proj.weight", ...; qf_fuser_describe
    with prefix "")
    for each mode in learned, heuristic, equal:
        <mode>.z (B, width), <mode>.w (B, 3),
        <mode>.grad.<param> for every parameter (outside the learned mode
        not the gates': they are unused, and the C test checks that their
        gradients are exactly 0), <mode>.grad.tokens.<m>
"""
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "peer"))
import fusion_peer  # noqa: E402
from qiao_peer import write_safetensors  # noqa: E402

FORMAT_VERSION = "2"  # 2: the picture's learned positions
SEED = 20240620
PREFIX = ""  # the fuser's own table names (a model file adds its own, e.g. "fusion.")
CONFIG = {"width": 16, "layers": 2, "heads": 2, "mlp": 32, "gate_hidden": 8, "weighting": "learned",
          "in_width": {"text": 12, "image": 10, "audio": 14},
          "positions": 8}  # more than the picture's 6 tokens: a forward reads the first T
B = 4
T = {"text": 5, "image": 6, "audio": 4}
PRESENT = [[1, 1, 1], [0, 1, 1], [1, 1, 0], [1, 0, 1]]
LENGTHS = {"text": [5, 5, 3, 4], "image": [5, 6, 6, 6], "audio": [4, 3, 4, 2]}
STATS = {  # raw, per row, in weighting.h's units
    "text": [[2.8, 5, 0.0], [2.0, 4, 0.25], [1.6, 3, 0.0], [2.3, 4, 0.1]],
    "image": [[45.0, 3.2, 120.0], [12.0, 25.0, 90.0], [70.0, 1.5, 150.0], [30.0, 5.0, 100.0]],
    "audio": [[1500.0, -20.0, 40.0], [3200.0, -12.0, 9.0], [900.0, -30.0, 50.0], [0.0, -80.0, 0.0]],
}
MODES = fusion_peer.WEIGHTINGS
ATOL, RTOL = 1e-5, 1e-4  # the C test's bound, printed against


def make_inputs():
    """Parameters (dict C name -> float32 tensor) and inputs, drawn once from SEED."""
    g = torch.Generator().manual_seed(SEED)

    def rnd(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float32) * scale

    params = {}
    for name, t in fusion_peer.Fuser(CONFIG).state_dict().items():
        if t.dim() == 2:
            p = rnd(*t.shape, scale=1.0 / math.sqrt(t.shape[1]))
        elif name.endswith(".type"):
            p = rnd(*t.shape, scale=0.5)
        elif ".ln" in "." + name and name.endswith(".weight"):
            p = 1.0 + rnd(*t.shape, scale=0.1)  # ln1, ln_ctx, ln_q, ...: not all ones, so dgamma matters
        else:
            p = rnd(*t.shape, scale=0.1)
        params[name] = p
    tokens, masks, stats = {}, {}, {}
    for m in fusion_peer.MODALITIES:
        mask = torch.zeros(B, T[m], dtype=torch.uint8)
        for b, n in enumerate(LENGTHS[m]):
            mask[b, :n] = 1
        x = rnd(B, T[m], CONFIG["in_width"][m])
        x = torch.where(mask.bool()[:, :, None], x, 3.0 * x)  # padding: garbage
        tokens[m], masks[m] = x, mask
        stats[m] = torch.tensor(STATS[m], dtype=torch.float32)
    present = torch.tensor(PRESENT, dtype=torch.uint8)
    R = rnd(B, CONFIG["width"])
    return params, tokens, masks, stats, present, R


def run(params, tokens, masks, stats, present, R, mode, dtype):
    """z, w and every gradient of sum(R z) in dtype, from the float32 values."""
    fu = fusion_peer.load_fuser({PREFIX + n: t.numpy() for n, t in params.items()}, CONFIG, PREFIX, dtype)
    tok = {m: t.to(dtype).clone().requires_grad_(True) for m, t in tokens.items()}
    st = {m: t.to(dtype) for m, t in stats.items()}
    z, w = fu(tok, masks, st, present, mode)
    (R.to(dtype) * z).sum().backward()
    out = {"z": z.detach(), "w": w.detach()}
    for n, p in fu.named_parameters():
        if p.grad is not None:  # the gates outside the learned mode: unused, not written
            out["grad." + PREFIX + n] = p.grad.detach()
        elif mode == "learned" or not n.startswith("gate."):
            raise RuntimeError(f"{mode}: no gradient reached {n}")
    for m, t in tok.items():
        out["grad.tokens." + m] = t.grad.detach()
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: /usr/bin/python3 tests/golden/make_fusion_fixture.py OUT.safetensors")
    torch.use_deterministic_algorithms(True)
    params, tokens, masks, stats, present, R = make_inputs()
    tensors = []
    for m in fusion_peer.MODALITIES:
        tensors += [("tokens." + m, tokens[m].numpy()), ("mask." + m, masks[m].numpy()),
                    ("stats." + m, stats[m].numpy())]
    tensors += [("present", present.numpy()), ("R", R.numpy())]
    tensors += [(PREFIX + n, t.numpy()) for n, t in params.items()]
    # How far a correct float32 implementation (PyTorch's) lands from the
    # reference, as max |err| / (ATOL + RTOL |ref|): the C test's bound is 1
    # on this scale.
    print(f"torch-f32 vs f64 reference (max abs err, ratio to {ATOL:g} + {RTOL:g}|ref|; worst tensors):")
    for mode in MODES:
        ref = run(params, tokens, masks, stats, present, R, mode, torch.float64)
        f32 = run(params, tokens, masks, stats, present, R, mode, torch.float32)
        rows = []
        for n in ref:
            r, a = ref[n], f32[n].double()
            err = (a - r).abs()
            rows.append((((err / (ATOL + RTOL * r.abs())).max().item()), err.max().item(), n))
        rows.sort(reverse=True)
        print(f"  {mode}: max ratio {rows[0][0]:.3f}, max abs err {max(r[1] for r in rows):.3e}")
        for ratio, err, n in rows[:4]:
            print(f"    {n:48s} {err:.3e}  {ratio:.3f}")
        w = ref["w"]
        print(f"    w = {np.array2string(w.numpy(), precision=4)}")
        tensors += [(f"{mode}.{n}", t.to(torch.float32).numpy()) for n, t in ref.items()]
    meta = {
        "format_version": FORMAT_VERSION,
        "generator": "tests/golden/make_fusion_fixture.py",
        "peer": "bench/peer/fusion_peer.py",
        "torch_version": torch.__version__,
        "seed": str(SEED),
        "reference_dtype": "float64 (rounded to float32)",
        "prefix": PREFIX,
        "config": json.dumps(CONFIG),
        "B": str(B),
        "T": json.dumps(T),
        "loss": "sum(R * z)",
    }
    write_safetensors(sys.argv[1], tensors, meta)
    print(f"wrote {sys.argv[1]}: {len(tensors)} tensors, {os.path.getsize(sys.argv[1])} bytes")


if __name__ == "__main__":
    main()
