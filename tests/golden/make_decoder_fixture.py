#!/usr/bin/python3
"""Writes the golden fixture of the caption decoder (fusion/decoder.c).

Regenerate (needs Debian's python3-torch, so the system interpreter):

    /usr/bin/python3 tests/golden/make_decoder_fixture.py tests/data/decoder_golden.safetensors

The reference is the PyTorch peer bench/peer/decoder_peer.py (Decoder, built
of fusion_peer.XBlock in its causal mode), gradients by torch autograd. The C
side is tests/golden/test_decoder_golden.c: it lays the parameters out with
qf_decoder_describe (prefix ""), loads them by name, runs qf_decoder_forward
/ qf_decoder_backward with the output layer tied and untied and compares, and
steps the KV cache (qf_decoder_cache_*) over the same ids against the same
logits.

Batch: B = 2 rows of T = 7 positions (max_len 16, so the position table's
last 9 rows get no gradient), each starting with a language token (the last
two ids, as qmod_dec_bos places them), reading Ty = 5 context tokens, of
which row 1's last is padding holding garbage (scale 3): a masking bug
changes the logits, and that token's gradient must be exactly 0. The loss is
sum(R * logits) with a fixed random R (B, T, V) (scale below).

Parameters are drawn so activations are O(1) (weights N(0, 1/fan_in), the
token and position tables too, so tied logits are O(1); LayerNorm weights
1 + 0.1 N, biases 0.1 N) rather than the 0.02 init, so every term contributes
and a wrong one shows. R is N(0, 1/(B T)): a parameter's gradient sums over
the B T positions, and so stays O(1), the scale the C test's bound is set on.
The tied and untied cases share every parameter; out.weight is read by the
untied one only.

The script also checks the peer's KV-cached loop against its full forward:
teacher-forced steps over the fixture's ids give the forward's logits (float64:
to 1e-12), and a greedy generation of max_len positions writes, position by
position, the full forward's argmax over what it wrote. It stops on a
mismatch.

Precision: parameters and inputs are float32 and stored as float32; the
reference is computed in float64 from exactly those values and rounded to
float32 on output, so the fixture carries only the C side's error. The
script reruns everything in float32 and prints how far PyTorch-f32 lands
from the reference on the C test's scale (see test_decoder_golden.c).

Fixture tensors (float32 unless noted):
    ids (I32 (B, T)), y (B, Ty, ctx_width), y_mask (U8 (B, Ty)), R (B, T, V)
    every parameter under its C name ("tok", "blocks.0.attn.q.weight",
    "out.weight", ...; qf_decoder_describe of the untied decoder, prefix "")
    for each case in tied, untied:
        <case>.logits (B, T, V), <case>.grad.<param> for every parameter of
        that case, <case>.grad.y (B, Ty, ctx_width)
"""
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "peer"))
import decoder_peer  # noqa: E402
from qiao_peer import write_safetensors  # noqa: E402

FORMAT_VERSION = "2"  # 2: the context's learned positions
SEED = 20240711
PREFIX = ""  # the decoder's own table names (a model file adds "decoder.")
CONFIG = {"vocab": 50, "width": 32, "layers": 2, "heads": 4, "mlp": 64, "max_len": 16, "ctx_width": 24,
          "ctx_positions": 6}  # more than TY: a forward reads the first Ty
B, T, TY = 2, 7, 5
Y_LENGTHS = [5, 4]  # real context tokens per row
CASES = ("tied", "untied")
ATOL, RTOL = 1e-5, 1e-4  # the C test's bound, printed against
KV_TOL_F64 = 1e-12       # the peer's cached loop against its full forward


def config(case):
    return dict(CONFIG, tied=(case == "tied"))


def make_inputs():
    """Parameters (dict C name -> float32 tensor, the untied superset) and
    inputs, drawn once from SEED."""
    g = torch.Generator().manual_seed(SEED)

    def rnd(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float32) * scale

    params = {}
    for name, t in decoder_peer.Decoder(config("untied")).state_dict().items():
        if t.dim() == 2:
            p = rnd(*t.shape, scale=1.0 / math.sqrt(t.shape[1]))
        elif ".ln" in "." + name and name.endswith(".weight"):
            p = 1.0 + rnd(*t.shape, scale=0.1)  # ln1, ln_ctx, ln_f, ...: not all ones, so dgamma matters
        else:
            p = rnd(*t.shape, scale=0.1)
        params[name] = p
    V = CONFIG["vocab"]
    ids = torch.randint(0, V - 2, (B, T), generator=g, dtype=torch.int64)
    ids[:, 0] = torch.tensor([V - 2, V - 1])  # a language token first
    y_mask = torch.zeros(B, TY, dtype=torch.uint8)
    for b, n in enumerate(Y_LENGTHS):
        y_mask[b, :n] = 1
    y = rnd(B, TY, CONFIG["ctx_width"])
    y = torch.where(y_mask.bool()[:, :, None], y, 3.0 * y)  # padding: garbage
    R = rnd(B, T, V, scale=1.0 / math.sqrt(B * T))  # gradients sum over positions: O(1) as the fuser's
    return params, ids, y, y_mask, R


def load(params, case, dtype):
    return decoder_peer.load_decoder({PREFIX + n: t.numpy() for n, t in params.items()}, config(case), PREFIX,
                                     dtype)


def run(params, ids, y, y_mask, R, case, dtype):
    """logits and every gradient of sum(R logits) in dtype, from the float32 values."""
    dec = load(params, case, dtype)
    yy = y.to(dtype).clone().requires_grad_(True)
    logits = dec(ids, yy, y_mask)
    (R.to(dtype) * logits).sum().backward()
    out = {"logits": logits.detach()}
    for n, p in dec.named_parameters():
        if p.grad is None:
            raise RuntimeError(f"{case}: no gradient reached {n}")
        out["grad." + PREFIX + n] = p.grad.detach()
    out["grad.y"] = yy.grad.detach()
    return out


def kv_check(params, ids, y, y_mask, case, dtype, full):
    """max |cached step - full| over the fixture's ids and its ratio to the C
    test's bound; in float64 also the greedy loop against the full forward
    over what it wrote."""
    dec = load(params, case, dtype)
    with torch.no_grad():
        cache = dec.start(y.to(dtype), y_mask, T)
        steps = torch.stack([dec.step(cache, ids[:, t]) for t in range(T)], dim=1)
        d = (steps.double() - full).abs()
        err, ratio = d.max().item(), (d / (ATOL + RTOL * full.abs())).max().item()
        if dtype == torch.float64:
            if err > KV_TOL_F64:
                raise RuntimeError(f"{case}: the cached steps miss the full forward by {err:.3e}")
            L = CONFIG["max_len"]
            gen, glog = dec.greedy(y.to(dtype), y_mask, ids[:, 0], L)
            ref = dec(gen, y.to(dtype), y_mask)
            gerr = (glog - ref[:, :-1]).abs().max().item()
            if gen.shape[1] != L or gerr > KV_TOL_F64 or not torch.equal(ref[:, :-1].argmax(-1), gen[:, 1:]):
                raise RuntimeError(f"{case}: greedy through the cache is not the full forward's argmax "
                                   f"(logits off by {gerr:.3e})")
            print(f"  {case}: greedy ({L} positions) = full-forward argmax; cached logits off by {gerr:.1e}")
    return err, ratio


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: /usr/bin/python3 tests/golden/make_decoder_fixture.py OUT.safetensors")
    torch.use_deterministic_algorithms(True)
    params, ids, y, y_mask, R = make_inputs()
    tensors = [("ids", ids.to(torch.int32).numpy()), ("y", y.numpy()), ("y_mask", y_mask.numpy()),
               ("R", R.numpy())]
    tensors += [(PREFIX + n, t.numpy()) for n, t in params.items()]
    # How far a correct float32 implementation (PyTorch's) lands from the
    # reference, as max |err| / (ATOL + RTOL |ref|): the C test's bound is 1
    # on this scale.
    print(f"torch-f32 vs f64 reference (max abs err, ratio to {ATOL:g} + {RTOL:g}|ref|; worst tensors):")
    for case in CASES:
        ref = run(params, ids, y, y_mask, R, case, torch.float64)
        f32 = run(params, ids, y, y_mask, R, case, torch.float32)
        rows = []
        for n in ref:
            r, a = ref[n], f32[n].double()
            err = (a - r).abs()
            rows.append(((err / (ATOL + RTOL * r.abs())).max().item(), err.max().item(), n))
        rows.sort(reverse=True)
        print(f"  {case}: max ratio {rows[0][0]:.3f}, max abs err {max(r[1] for r in rows):.3e}")
        for ratio, err, n in rows[:4]:
            print(f"    {n:40s} {err:.3e}  {ratio:.3f}")
        print(f"    |logits| max {ref['logits'].abs().max().item():.2f}, "
              f"padded context token's |grad| max {ref['grad.y'][1, Y_LENGTHS[1]:].abs().max().item():.1e}")
        kv_check(params, ids, y, y_mask, case, torch.float64, ref["logits"])
        kv32 = kv_check(params, ids, y, y_mask, case, torch.float32, ref["logits"])
        print(f"  {case}: torch-f32 cached steps vs the reference logits: max abs err {kv32[0]:.3e}, "
              f"ratio {kv32[1]:.3f}")
        tensors += [(f"{case}.{n}", t.to(torch.float32).numpy()) for n, t in ref.items()]
    meta = {
        "format_version": FORMAT_VERSION,
        "generator": "tests/golden/make_decoder_fixture.py",
        "peer": "bench/peer/decoder_peer.py",
        "torch_version": torch.__version__,
        "seed": str(SEED),
        "reference_dtype": "float64 (rounded to float32)",
        "prefix": PREFIX,
        "config": json.dumps(CONFIG),
        "cases": json.dumps(CASES),
        "B": str(B),
        "T": str(T),
        "Ty": str(TY),
        "loss": "sum(R * logits)",
    }
    write_safetensors(sys.argv[1], tensors, meta)
    print(f"wrote {sys.argv[1]}: {len(tensors)} tensors, {os.path.getsize(sys.argv[1])} bytes")


if __name__ == "__main__":
    main()
