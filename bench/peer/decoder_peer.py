"""PyTorch peer of qiao's caption decoder (fusion/decoder.c, qf_decoder): the
causal cross-modal block of fusion_peer.XBlock stacked under token and
position embeddings and a context projection, with a final norm and an
output layer tied to the token embedding or its own. state_dict names are
the C table names of qf_decoder_describe with prefix "" ("tok", "pos",
"ctx.weight", "blocks.0.attn.q.weight", "ln_f.bias", "out.weight" when
untied, "out.bias"), so the weights load by name from a qiao .safetensors
file (load_decoder strips the model's prefix). Two uses:
  * the golden test: tests/golden/make_decoder_fixture.py computes the
    float64 reference with it and tests/golden/test_decoder_golden.c checks
    qiao's forward, backward and KV cache against it;
  * the PyTorch side of bench/bench_caption.c, the speed of generation
    against qiao: Decoder.start/step is the KV-cached loop (one position at
    a time, each block's keys and values of the positions written kept, the
    context's computed once), greedy() the search on it. Run as a program
    (main() below) it times that loop for the bench.
Gradients come from torch autograd; nothing here is written by hand for the
backward pass.

    ctx    = ctx(y) (+ ctx.pos[0..Ty))               y (B, Ty, ctx_width)
    x_0    = tok[ids] + pos[0..T)
    x_l+1  = blocks.l(x_l | ctx; y_mask), causal      l < L
    logits = ln_f(x_L) W^T + out.bias                W = tok when tied, else out.weight

The config is a dict with qf_decoder_config's fields: vocab, width, layers,
heads, mlp, max_len, ctx_width, tied (default True), ctx_positions (the
context's learned positions; default 0, none).

Needs only torch and numpy (Debian's /usr/bin/python3 has both).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fusion_peer import XBlock, attention  # noqa: E402
from qiao_peer import LN_EPS, read_safetensors, serve  # noqa: E402


class Decoder(nn.Module):
    """qf_decoder (see the module docstring for cfg)."""

    def __init__(self, cfg):
        super().__init__()
        V, C = int(cfg["vocab"]), int(cfg["width"])
        L, H, F_ = int(cfg["layers"]), int(cfg["heads"]), int(cfg["mlp"])
        self.vocab, self.width, self.heads = V, C, H
        self.max_len, self.tied = int(cfg["max_len"]), bool(cfg.get("tied", True))
        self.tok = nn.Parameter(torch.zeros(V, C))
        self.pos = nn.Parameter(torch.zeros(self.max_len, C))
        self.ctx = nn.Linear(int(cfg["ctx_width"]), C)
        if int(cfg.get("ctx_positions", 0)):
            self.ctx.pos = nn.Parameter(torch.zeros(int(cfg["ctx_positions"]), C))  # "ctx.pos"
        self.blocks = nn.ModuleList([XBlock(C, F_, H, causal=True) for _ in range(L)])
        self.ln_f = nn.LayerNorm(C, eps=LN_EPS)
        # A bare module, not nn.Linear: tied, it holds only the bias.
        self.out = nn.Module()
        if not self.tied:
            self.out.weight = nn.Parameter(torch.zeros(V, C))
        self.out.bias = nn.Parameter(torch.zeros(V))

    def _context(self, y):
        ctx = self.ctx(y)
        if hasattr(self.ctx, "pos"):
            if y.shape[1] > self.ctx.pos.shape[0]:
                raise ValueError(f"{y.shape[1]} context tokens, positions for {self.ctx.pos.shape[0]}")
            ctx = ctx + self.ctx.pos[:y.shape[1]]
        return ctx

    def _out_weight(self):
        return self.tok if self.tied else self.out.weight

    def _logits(self, x):
        return self.ln_f(x) @ self._out_weight().t() + self.out.bias

    def forward(self, ids, y, y_mask=None):
        """Teacher-forced: ids (B, T) int64, y (B, Ty, ctx_width), y_mask (B, Ty)
        bool/uint8 or None (all real) -> logits (B, T, V)."""
        T = ids.shape[1]
        if T > self.max_len:
            raise ValueError(f"{T} positions, max_len {self.max_len}")
        ctx = self._context(y)
        x = self.tok[ids] + self.pos[:T]
        for blk in self.blocks:
            x = blk(x, ctx, y_mask=y_mask)
        return self._logits(x)

    # ---- generation: the KV cache (as qf_decoder_cache) -------------------

    def start(self, y, y_mask=None, T_max=None):
        """A cache for y's B rows of up to T_max (default max_len) positions:
        each block's context keys and values, computed once, and room for the
        self-attention keys and values (B, T_max, C) per block."""
        B, T_max = y.shape[0], T_max or self.max_len
        if T_max > self.max_len:
            raise ValueError(f"T_max {T_max} > max_len {self.max_len}")
        ctx = self._context(y)
        cache = {"len": 0, "T_max": T_max, "y_mask": y_mask, "k": [], "v": [], "ck": [], "cv": []}
        for blk in self.blocks:
            c = blk.ln_ctx(ctx)
            cache["ck"].append(blk.xattn.k(c))
            cache["cv"].append(blk.xattn.v(c))
            cache["k"].append(ctx.new_zeros(B, T_max, self.width))
            cache["v"].append(ctx.new_zeros(B, T_max, self.width))
        return cache

    def step(self, cache, ids):
        """Writes position cache["len"] for every row from token ids (B,) int64
        and returns the next position's logits (B, V). Under autograd the
        in-place cache writes are not differentiable: run it in no_grad (or
        on detached parameters) as generation does."""
        t = cache["len"]
        if t >= cache["T_max"]:
            raise ValueError(f"the cache holds {cache['T_max']} positions and all are written")
        x = (self.tok[ids] + self.pos[t])[:, None, :]  # (B, 1, C)
        for l, blk in enumerate(self.blocks):
            a = blk.ln1(x)
            K, Vv = cache["k"][l], cache["v"][l]
            K[:, t:t + 1] = blk.attn.k(a)
            Vv[:, t:t + 1] = blk.attn.v(a)
            # One query row over the positions written, this one included:
            # causality is the slice, no mask.
            h1 = x + blk.attn.proj(attention(blk.attn.q(a), K[:, :t + 1], Vv[:, :t + 1], blk.H))
            q = blk.xattn.q(blk.ln2(h1))
            h2 = h1 + blk.xattn.proj(attention(q, cache["ck"][l], cache["cv"][l], blk.H, cache["y_mask"]))
            x = h2 + blk.mlp.fc2(F.gelu(blk.mlp.fc(blk.ln3(h2))))
        cache["len"] = t + 1
        return self._logits(x)[:, 0, :]

    @staticmethod
    def reorder(cache, parents):
        """Beam search: row b continues the sequence row parents[b] (B,) int64
        held (qf_decoder_step's parents)."""
        for key in ("k", "v", "ck", "cv"):
            cache[key] = [t.index_select(0, parents) for t in cache[key]]
        if cache["y_mask"] is not None:
            cache["y_mask"] = cache["y_mask"].index_select(0, parents)

    @torch.no_grad()
    def greedy(self, y, y_mask, first, max_len, eos=None):
        """Greedy generation through the KV cache: first (B,) int64 is each
        row's first token (a language token), then each step's argmax, up to
        max_len positions in all or until every row has written eos (a row
        done early keeps writing eos). Returns ids (B, n) including first and
        the logits (B, n - 1, V): logits[:, t] is what position t gave, whose
        argmax is ids[:, t + 1]."""
        if max_len < 2:
            raise ValueError(f"max_len {max_len}: the first token and at least one more")
        cache = self.start(y, y_mask, max_len)
        ids, logits = [first], []
        done = torch.zeros_like(first, dtype=torch.bool)
        for _ in range(max_len - 1):
            lg = self.step(cache, ids[-1])
            nxt = lg.argmax(dim=-1)
            if eos is not None:
                nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
                done = done | (nxt == eos)
            ids.append(nxt)
            logits.append(lg)
            if eos is not None and bool(done.all()):
                break
        return torch.stack(ids, dim=1), torch.stack(logits, dim=1)


def load_decoder(tensors, cfg, prefix="decoder.", dtype=torch.float32):
    """A Decoder for cfg with its parameters from `tensors` (dict name ->
    array, names as qiao writes them: "<prefix>tok", ...). Every parameter
    must be present; extra tensors are ignored."""
    dec = Decoder(cfg)
    state = {}
    for name, ref in dec.state_dict().items():
        full = prefix + name
        if full not in tensors:
            raise KeyError(f"no tensor '{full}'")
        t = torch.as_tensor(np.asarray(tensors[full]))
        if tuple(t.shape) != tuple(ref.shape):
            raise ValueError(f"tensor '{full}' has shape {tuple(t.shape)}, expected {tuple(ref.shape)}")
        state[name] = t
    dec.load_state_dict(state)
    return dec.to(dtype)


def load_decoder_file(path, cfg, prefix="decoder.", dtype=torch.float32):
    """load_decoder() from a .safetensors file."""
    tensors, _ = read_safetensors(path)
    return load_decoder(tensors, cfg, prefix, dtype)


# ---- the benchmark peer: bench/bench_caption.c ----------------------------

BENCH_USAGE = """The PyTorch side of bench/bench_caption.c:

    /usr/bin/python3 bench/peer/decoder_peer.py MODEL INPUTS [--threads N]

MODEL   a caption model qiao wrote (its "decoder.*" tensors)
INPUTS  a .safetensors written by bench_caption: "ctx" (1, Ty, ctx_width)
        float32, the image tower's tokens of one picture as qiao computed
        them, and "ids" (N,) int32, qiao's tokens of the fixed-length greedy
        loop; metadata "bench.decoder" (the decoder config as qiao completed
        it: vocab and ctx_width included), "bench.bos" (the language token
        that starts the text), "bench.pieces" (the tokenizer's pieces: each
        step's argmax is over ids [0, pieces), as qiao's search sees them),
        "bench.tokens" (N, the steps of a loop) and "bench.parents" (a JSON
        list: the rows each step of the beam-shaped loop continues)

The loops, EOS ignored so both sides run exactly N steps:
    greedy  Decoder.start on the context (projection, each block's context
            keys and values, the cache), then N steps of one row, each
            feeding the previous step's argmax (the first feeds bos);
    beam    the same on len(parents) copies of the context, each step after
            the first reordering the cache rows by parents (Decoder.reorder)
            and row b feeding the argmax of row parents[b]: a beam search's
            decoder work without its bookkeeping.

A line protocol on stdin / stdout, one reply line per command (as
bench_encoders_peer.py):
    (start)            -> "ready torch <version> <threads>"
    calib <loop>       -> "reps <n>": after 3 warm-up calls, the calls (a
                          power of two) that last >= 50 ms
    time <loop> <n>    -> "t <seconds per call>" over n calls
    out <path>         -> "ok": writes "greedy.ids" (N,) and "beam.ids" (R, N)
                          int32 (what the loops wrote) and "forced.logits"
                          (N, V) float32 (the steps fed bos, ids[0 .. N-2]:
                          qiao's tokens, so the logits compare step by step
                          even where the two greedy sequences part) to path
    quit               -> "rss <peak resident kB>", then exits
"""


def _bench_loops(dec, y, bos, pieces, n, parents):
    """The two timed loops (see BENCH_USAGE); each returns the ids it wrote."""
    R = len(parents)
    y_rows = y.expand(R, -1, -1).contiguous()
    par = torch.tensor(parents, dtype=torch.int64)

    def greedy():
        cache = dec.start(y, None, n)
        tok = torch.tensor([bos], dtype=torch.int64)
        out = []
        for _ in range(n):
            tok = dec.step(cache, tok)[:, :pieces].argmax(dim=-1)
            out.append(tok)
        return torch.stack(out, dim=1)

    def beam():
        cache = dec.start(y_rows, None, n)
        tok = torch.full((R,), bos, dtype=torch.int64)
        out = []
        for t in range(n):
            if t > 0:
                dec.reorder(cache, par)
            tok = dec.step(cache, tok)[:, :pieces].argmax(dim=-1).index_select(0, par)
            out.append(tok)
        return torch.stack(out, dim=1)

    return {"greedy": greedy, "beam": beam}


def _forced_logits(dec, y, bos, ids):
    """Teacher-forced steps fed bos, ids[0 .. N-2] (qiao's tokens) -> (N, V):
    step by step what qiao's loop computed, even past a point where the
    two greedy sequences part."""
    cache = dec.start(y, None, len(ids))
    feed = [bos] + [int(i) for i in ids[:-1]]
    return torch.cat([dec.step(cache, torch.tensor([t], dtype=torch.int64)) for t in feed], dim=0)


def main():
    ap = argparse.ArgumentParser(description=BENCH_USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("inputs")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    inputs, meta = read_safetensors(args.inputs)
    cfg = json.loads(meta["bench.decoder"])
    bos, pieces, n = int(meta["bench.bos"]), int(meta["bench.pieces"]), int(meta["bench.tokens"])
    parents = [int(p) for p in json.loads(meta["bench.parents"])]
    dec = load_decoder_file(args.model, cfg).eval()
    y = torch.from_numpy(np.ascontiguousarray(inputs["ctx"], dtype=np.float32))
    ids = np.asarray(inputs["ids"]).reshape(-1)
    loops = _bench_loops(dec, y, bos, pieces, n, parents)

    def outputs():
        return [
            ("greedy.ids", loops["greedy"]().numpy().reshape(-1).astype(np.int32)),
            ("beam.ids", loops["beam"]().numpy().astype(np.int32)),
            ("forced.logits", _forced_logits(dec, y, bos, ids).numpy().astype(np.float32)),
        ]

    serve("decoder_peer", f"torch {torch.__version__} {torch.get_num_threads()}", loops, {"out": outputs})

if __name__ == "__main__":
    main()
