"""PyTorch peer of qiao's cross-modal fusion (fusion/cross.c, fusion/fuser.c,
fusion/weighting.c): the cross-modal block qf_xblock and the fuser qf_fuser,
as ordinary torch.nn modules whose state_dict names are the C table names
("text.proj.weight", "gate.text.fc.weight", "question.0.xattn.q.weight",
"ln_q.bias", ...), so the weights load by name from a qiao .safetensors file
(load_fuser strips the model's prefix, e.g. "fusion."). Two uses:
  * the golden test: tests/golden/make_fusion_fixture.py computes the
    float64 reference with it and tests/golden/test_fusion_golden.c checks
    qiao's forward and backward against it;
  * the speed benchmark against qiao (a VQA model built on Fuser).
Gradients come from torch autograd; nothing here is written by hand for the
backward pass.

XBlock (qf_xblock_forward), pre-norm, exact GELU, LayerNorm eps 1e-5:
    h1  = x  + attn.proj(MHA(attn.q(ln1 x), attn.k(ln1 x), attn.v(ln1 x); x_mask, x_bias))
    h2  = h1 + xattn.proj(MHA(xattn.q(ln2 h1), xattn.k(ln_ctx y), xattn.v(ln_ctx y); y_mask, y_bias))
    out = h2 + mlp.fc2(gelu(mlp.fc(ln3 h2)))
MHA: head h = columns [h*Dh, (h+1)*Dh), scores q k^T / sqrt(Dh) + bias[key],
masked keys probability 0, a query row with no real key reads zeros (and
passes no gradient).

Fuser (qf_fuser_forward), modalities in weight order text, image, audio:
    x_m   = <m>.proj(tokens_m) + <m>.type
    w     = learned: softmax over present m of gate.<m>(masked_mean(x_m), scaled stats_m)
            heuristic: max(0, h_m(raw stats_m)) normalized over present m
                       (equal weights when that sum is 0)
            equal: 1 / (number present);  absent m: w_m = 0
    Q_0   = [x_text ; x_audio] (question), P_0 = x_image (picture)
    Q_l+1 = question.l(Q_l | P_l; key bias log w on Q's keys)
    P_l+1 = picture.l(P_l | Q_l; the same bias on the context keys Q)
    z     = sum_m w_m pool_m(ln_q Q_L or ln_p P_L): masked mean over a question
            modality's tokens, masked max over the picture's
Masks: a token is real when its modality is present in the row and the
per-modality mask says so; the gate's pool reads the per-modality mask only
(padding, not presence), as the C does. The key bias of a real question
token of modality m is log max(w_m, 1e-6) (QF_MIN_KEY_WEIGHT; no gradient
below the floor), 0 on masked keys.

Needs only torch and numpy (Debian's /usr/bin/python3 has both).
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qiao_peer import LN_EPS, read_safetensors  # noqa: E402

MODALITIES = ("text", "image", "audio")  # weight order (QF_TEXT, QF_IMAGE, QF_AUDIO)
NSTATS = 3
WEIGHTINGS = ("learned", "heuristic", "equal")
MIN_KEY_WEIGHT = 1e-6  # QF_MIN_KEY_WEIGHT: the key bias is log max(w, this)


def attention(q, k, v, H, key_mask=None, key_bias=None, causal=False):
    """nn_attention_forward. q (B, Tq, C), k and v (B, Tk, C), key_mask (B, Tk)
    bool or None, key_bias (B, Tk) or None -> (B, Tq, C). Gradient-safe where
    a row has no real key: such rows are computed unmasked and then zeroed,
    so neither the output nor any gradient sees a NaN."""
    B, Tq, C = q.shape
    Tk = k.shape[1]
    Dh = C // H
    q = q.reshape(B, Tq, H, Dh).transpose(1, 2)
    k = k.reshape(B, Tk, H, Dh).transpose(1, 2)
    v = v.reshape(B, Tk, H, Dh).transpose(1, 2)
    s = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(Dh))
    if key_bias is not None:
        s = s + key_bias[:, None, None, :]
    keep = torch.ones(B, 1, Tq, Tk, dtype=torch.bool, device=q.device)
    if key_mask is not None:
        keep = keep & key_mask.bool()[:, None, None, :]
    if causal:
        keep = keep & torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).tril()
    any_key = keep.any(dim=-1, keepdim=True)
    p = torch.softmax(s.masked_fill(~(keep | ~any_key), float("-inf")), dim=-1)
    p = p * any_key.to(p.dtype)
    return (p @ v).transpose(1, 2).reshape(B, Tq, C)


def masked_max(x, mask):
    """nn_pool_max_forward: x (B, T, C), mask (B, T) bool -> (B, C), the max
    over real tokens; a row with no real token pools to zeros."""
    any_real = mask.any(dim=1, keepdim=True)
    y = x.masked_fill(~mask[:, :, None], float("-inf")).max(dim=1).values
    return torch.where(any_real, y, torch.zeros_like(y))


def masked_mean(x, mask):
    """nn_pool_mean_forward: x (B, T, C), mask (B, T) bool -> (B, C); a row
    with no real token pools to zeros."""
    m = mask.to(x.dtype)[:, :, None]
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


class _Attn(nn.Module):
    def __init__(self, C):
        super().__init__()
        self.q, self.k, self.v, self.proj = nn.Linear(C, C), nn.Linear(C, C), nn.Linear(C, C), nn.Linear(C, C)


class XBlock(nn.Module):
    """qf_xblock: self-attention, cross-attention to a context, MLP (names as
    qf_xblock_describe: ln1, attn.{q,k,v,proj}, ln2, ln_ctx,
    xattn.{q,k,v,proj}, ln3, mlp.{fc,fc2})."""

    def __init__(self, C, F_, H, causal=False):
        super().__init__()
        if C % H:
            raise ValueError(f"width {C} is not a multiple of heads {H}")
        self.H, self.causal = H, causal
        self.ln1 = nn.LayerNorm(C, eps=LN_EPS)
        self.attn = _Attn(C)
        self.ln2 = nn.LayerNorm(C, eps=LN_EPS)
        self.ln_ctx = nn.LayerNorm(C, eps=LN_EPS)
        self.xattn = _Attn(C)
        self.ln3 = nn.LayerNorm(C, eps=LN_EPS)
        self.mlp = nn.Module()
        self.mlp.fc = nn.Linear(C, F_)
        self.mlp.fc2 = nn.Linear(F_, C)

    def forward(self, x, y, x_mask=None, x_bias=None, y_mask=None, y_bias=None):
        """x (B, Tx, C) the stream, y (B, Ty, C) the context -> (B, Tx, C)."""
        a = self.ln1(x)
        h1 = x + self.attn.proj(
            attention(self.attn.q(a), self.attn.k(a), self.attn.v(a), self.H, x_mask, x_bias, self.causal))
        c = self.ln_ctx(y)
        h2 = h1 + self.xattn.proj(
            attention(self.xattn.q(self.ln2(h1)), self.xattn.k(c), self.xattn.v(c), self.H, y_mask, y_bias))
        return h2 + self.mlp.fc2(F.gelu(self.mlp.fc(self.ln3(h2))))


class _Proj(nn.Module):
    def __init__(self, n_in, d, positions=0):
        super().__init__()
        self.proj = nn.Linear(n_in, d)
        if positions:
            self.pos = nn.Parameter(torch.zeros(positions, d))
        # "type" is the C name, but nn.Module.type() is a method, so the
        # parameter goes into _parameters directly (state_dict name
        # "<m>.type") and is read as type_vector.
        self._parameters["type"] = nn.Parameter(torch.zeros(d))

    @property
    def type_vector(self):
        return self._parameters["type"]


class Gate(nn.Module):
    """qf_gate: score = out(gelu(fc([pooled; scaled stats])))."""

    def __init__(self, C, G):
        super().__init__()
        self.fc = nn.Linear(C + NSTATS, G)
        self.out = nn.Linear(G, 1)

    def forward(self, pooled, stats):
        return self.out(F.gelu(self.fc(torch.cat([pooled, stats], dim=-1)))).squeeze(-1)


def stats_scaled(m, raw):
    """qf_stats_scaled: raw (B, 3) in the units of weighting.h -> the gate's input."""
    r0, r1, r2 = raw[:, 0], raw[:, 1], raw[:, 2]
    if m == "text":
        out = (r0 / 2.0 - 1.5, torch.log1p(r1.clamp(min=0.0)) / 1.5 - 1.5, 2.0 * r2)
    elif m == "image":
        out = (r0 / 40.0 - 1.0, torch.log1p(r1.clamp(min=0.0)) / 2.0 - 1.0, r2 / 128.0 - 1.0)
    else:
        out = (r0 / 2000.0 - 1.0, r1 / 40.0, r2 / 30.0 - 1.0)
    return torch.stack(out, dim=-1)


def heuristic_score(m, raw):
    """qf_heuristic_score: the seeds' formula on raw stats (B, 3) -> (B)."""
    if m == "text":
        return 0.4 * torch.tanh(raw[:, 0] / 5.0)
    if m == "image":
        return 0.3 * (raw[:, 0] / 10.0).clamp(max=1.0)
    return 0.3 * (1.0 - torch.exp(-raw[:, 0] / 2000.0))


class Fuser(nn.Module):
    """qf_fuser. cfg: dict with width, layers, heads, mlp, gate_hidden, weighting
    (the default mode), in_width (dict modality -> token width; 0 or
    missing = no such tower), positions (the picture's learned positions;
    0 or missing = none), qpositions (the typed question's) and
    picture_mean (z also reads the picture stream's mean), as
    qf_fuser_config."""

    def __init__(self, cfg):
        super().__init__()
        d = int(cfg["width"])
        self.width, self.weighting = d, cfg.get("weighting", "learned")
        self.in_width = {m: int(cfg["in_width"].get(m, 0)) for m in MODALITIES}
        self.mods = [m for m in MODALITIES if self.in_width[m] > 0]
        if "image" not in self.mods or ("text" not in self.mods and "audio" not in self.mods):
            raise ValueError("fusion: needs the image tower and the text or audio tower")
        pos = {"image": int(cfg.get("positions", 0)), "text": int(cfg.get("qpositions", 0))}
        for m in self.mods:
            setattr(self, m, _Proj(self.in_width[m], d, pos.get(m, 0)))
        self.picture_mean = bool(cfg.get("picture_mean", False))
        if self.picture_mean:  # state_dict name "image.mean_scale", as qiao's
            self.image._parameters["mean_scale"] = nn.Parameter(torch.ones(d))
        self.gate = nn.ModuleDict({m: Gate(d, int(cfg["gate_hidden"])) for m in self.mods})
        L, F_, H = int(cfg["layers"]), int(cfg["mlp"]), int(cfg["heads"])
        self.question = nn.ModuleList([XBlock(d, F_, H) for _ in range(L)])
        self.picture = nn.ModuleList([XBlock(d, F_, H) for _ in range(L)])
        self.ln_q = nn.LayerNorm(d, eps=LN_EPS)
        self.ln_p = nn.LayerNorm(d, eps=LN_EPS)

    def weights(self, mode, pin, raw, present):
        """qf_weights_compute (B, 3) and log max(w, MIN_KEY_WEIGHT) (B, 3) for
        the key biases (finite everywhere, so no NaN reaches a gradient)."""
        B = present.shape[0]
        dt = next(self.parameters()).dtype
        if mode == "learned":
            cols = [self.gate[m](pin[m], stats_scaled(m, raw[m])) if m in self.mods
                    else torch.zeros(B, dtype=dt) for m in MODALITIES]
            s = torch.stack(cols, dim=-1).masked_fill(~present, float("-inf"))
            logw = torch.log_softmax(s, dim=-1)
            w = torch.exp(logw)
            logw = logw.clamp(min=math.log(MIN_KEY_WEIGHT))  # absent (-inf) too: clamp passes it no gradient
            return w, torch.where(present, logw, torch.zeros_like(logw))
        n = present.sum(dim=-1, keepdim=True).to(dt)
        equal = present.to(dt) / n
        if mode == "heuristic":
            h = torch.stack([heuristic_score(m, raw[m]).clamp(min=0.0) if m in self.mods
                             else torch.zeros(B, dtype=dt) for m in MODALITIES], dim=-1) * present.to(dt)
            tot = h.sum(dim=-1, keepdim=True)
            w = torch.where(tot > 0, h / torch.where(tot > 0, tot, torch.ones_like(tot)), equal)
        elif mode == "equal":
            w = equal
        else:
            raise ValueError(f"unknown weighting {mode!r}")
        w = w.detach()
        return w, torch.log(w.clamp(min=MIN_KEY_WEIGHT))

    def forward(self, tokens, masks=None, stats=None, present=None, mode=None):
        """tokens: dict modality -> (B, T_m, in_width[m]); masks: dict -> (B,
        T_m) bool/uint8 (missing = all real); stats: dict -> (B, 3) raw
        (missing = zeros); present (B, 3) bool/uint8 in weight order (None =
        every modality the model holds). Returns z (B, width), w (B, 3)."""
        mode = mode or self.weighting
        masks, stats = masks or {}, stats or {}
        x0 = next(iter(tokens.values()))
        B, dt = x0.shape[0], next(self.parameters()).dtype
        held = torch.tensor([m in self.mods for m in MODALITIES])
        present = held.expand(B, -1) if present is None else present.bool() & held
        if not (present[:, 0] | present[:, 2]).all():
            raise ValueError("fusion: a row has no question (neither text nor audio)")
        x, mask, raw, pin = {}, {}, {}, {}
        for i, m in enumerate(MODALITIES):
            if m not in self.mods:
                continue
            mod = getattr(self, m)
            x[m] = mod.proj(tokens[m].to(dt)) + mod.type_vector
            T = x[m].shape[1]
            if hasattr(mod, "pos"):
                if T > mod.pos.shape[0]:
                    raise ValueError(f"fusion: {T} {m} tokens, positions for {mod.pos.shape[0]}")
                x[m] = x[m] + mod.pos[:T]
            pad = masks[m].bool() if m in masks else torch.ones(B, T, dtype=torch.bool)
            mask[m] = pad & present[:, i:i + 1]  # real: present and not padding
            raw[m] = stats[m].to(dt) if m in stats else torch.zeros(B, NSTATS, dtype=dt)
            pin[m] = masked_mean(x[m], pad)       # the gate reads padding only
        w, logw = self.weights(mode, pin, raw, present)
        qm = [m for m in ("text", "audio") if m in self.mods]
        Q = torch.cat([x[m] for m in qm], dim=1)
        qmask = torch.cat([mask[m] for m in qm], dim=1)
        qbias = torch.cat([logw[:, MODALITIES.index(m), None].expand(-1, x[m].shape[1]) for m in qm], dim=1)
        qbias = torch.where(qmask, qbias, torch.zeros_like(qbias))
        P, pmask = x["image"], mask["image"]
        for qblk, pblk in zip(self.question, self.picture):
            Q, P = (qblk(Q, P, qmask, qbias, pmask, None), pblk(P, Q, pmask, None, qmask, qbias))
        Q, P = self.ln_q(Q), self.ln_p(P)
        z = torch.zeros(B, self.width, dtype=dt)
        t0 = 0
        for m in qm:
            T = x[m].shape[1]
            part = torch.zeros_like(qmask)
            part[:, t0:t0 + T] = qmask[:, t0:t0 + T]
            z = z + w[:, MODALITIES.index(m), None] * masked_mean(Q, part)
            t0 += T
        z = z + w[:, MODALITIES.index("image"), None] * masked_max(P, pmask)
        if self.picture_mean:
            z = z + w[:, MODALITIES.index("image"), None] * self.image._parameters["mean_scale"] * masked_mean(P, pmask)
        return z, w


def load_fuser(tensors, cfg, prefix="fusion.", dtype=torch.float32):
    """A Fuser for cfg with its parameters from `tensors` (dict name -> array,
    names as qiao writes them: "<prefix>text.proj.weight", ...). Every
    parameter must be present; extra tensors are ignored."""
    fu = Fuser(cfg)
    state = {}
    for name, ref in fu.state_dict().items():
        full = prefix + name
        if full not in tensors:
            raise KeyError(f"no tensor '{full}'")
        t = torch.as_tensor(np.asarray(tensors[full]))
        if tuple(t.shape) != tuple(ref.shape):
            raise ValueError(f"tensor '{full}' has shape {tuple(t.shape)}, expected {tuple(ref.shape)}")
        state[name] = t
    fu.load_state_dict(state)
    return fu.to(dtype)


def load_fuser_file(path, cfg, prefix="fusion.", dtype=torch.float32):
    """load_fuser() from a .safetensors file."""
    tensors, _ = read_safetensors(path)
    return load_fuser(tensors, cfg, prefix, dtype)
