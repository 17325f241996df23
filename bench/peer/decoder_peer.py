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
  * a speed benchmark of generation against qiao: Decoder.start/step is the
    KV-cached loop (one position at a time, each block's keys and values of
    the positions written kept, the context's computed once), greedy() the
    search on it.
Gradients come from torch autograd; nothing here is written by hand for the
backward pass.

    ctx    = ctx(y)                                  y (B, Ty, ctx_width)
    x_0    = tok[ids] + pos[0..T)
    x_l+1  = blocks.l(x_l | ctx; y_mask), causal      l < L
    logits = ln_f(x_L) W^T + out.bias                W = tok when tied, else out.weight

The config is a dict with qf_decoder_config's fields: vocab, width, layers,
heads, mlp, max_len, ctx_width, tied (default True).

Needs only torch and numpy (Debian's /usr/bin/python3 has both).
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fusion_peer import XBlock, attention  # noqa: E402
from qiao_peer import LN_EPS, read_safetensors  # noqa: E402


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
        self.blocks = nn.ModuleList([XBlock(C, F_, H, causal=True) for _ in range(L)])
        self.ln_f = nn.LayerNorm(C, eps=LN_EPS)
        # A bare module, not nn.Linear: tied, it holds only the bias.
        self.out = nn.Module()
        if not self.tied:
            self.out.weight = nn.Parameter(torch.zeros(V, C))
        self.out.bias = nn.Parameter(torch.zeros(V))

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
        ctx = self.ctx(y)
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
        ctx = self.ctx(y)
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
