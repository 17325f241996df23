"""PyTorch peer of qiao's three encoders (text, image, audio).

The same architecture as modalities/{text,image,audio}/encoder.c and the
shared trunk (sdk/nn/trunk.c, sdk/nn/transformer.c), reading the same
tensors under the same names ("text.piece_emb.weight",
"image.trunk.blocks.0.attn.q.weight", ...) from the same .safetensors file.
Two uses:
  * the golden test: tests/golden/make_encoder_fixture.py computes reference
    embeddings with it in float64 and tests/golden/test_encoder_golden.c
    checks qiao's against them;
  * the speed benchmark against qiao (same weights, same inputs).

Needs only torch and numpy (Debian's /usr/bin/python3 has both); the
safetensors reader below is hand-written so the `safetensors` package is not
needed.

Trunk (nn_trunk_forward): h0 = x + pos[:T]; L pre-norm blocks
    h   = x + proj(MHA(ln1 x))         separate q, k, v; head h = columns
                                       [h*Dh, (h+1)*Dh); scale 1/sqrt(Dh);
                                       masked keys get probability 0, a query
                                       row with no real key is all zeros
    out = h + fc2(gelu_exact(fc(ln2 h)))
final LayerNorm (eps 1e-5), mean over real tokens (none: zeros), projection
to embed_dim, L2 normalization x / max(|x|, 1e-12).
"""
import json
import math
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-5
L2_EPS = 1e-12
N_TAGS = 5  # QIAO_TAG_PAD, B, M, E, S

# ---- safetensors ------------------------------------------------------------

_DTYPES = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I32": "<i4", "I64": "<i8", "U8": "u1", "I8": "i1"}


def read_safetensors(path):
    """Returns (tensors: dict name -> np.ndarray, metadata: dict str -> str).
    BF16 is widened to float32 by hand (numpy has no bfloat16)."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError(f"{path}: header length {n} runs past the end of the file")
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    base = 8 + n
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, d in header.items():
        lo, hi = d["data_offsets"]
        buf = raw[base + lo : base + hi]
        shape = tuple(d["shape"])
        if d["dtype"] == "BF16":
            u16 = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            a = u16.view(np.float32)
        elif d["dtype"] in _DTYPES:
            a = np.frombuffer(buf, dtype=_DTYPES[d["dtype"]])
        else:
            raise ValueError(f"{path}: tensor '{name}' has unsupported dtype {d['dtype']}")
        out[name] = a.reshape(shape).copy()
    # `qiao quantize` stores a GEMM weight as int8 codes "<name>" and its rows'
    # scales "<name>.scale": the weight the model computes with is their
    # product, as qiao's loader widens it (the peer computes in float32).
    if meta.get("qiao.quantized") == "int8":
        for name in [k for k in out if k + ".scale" in out and out[k].dtype == np.int8]:
            scale = out.pop(name + ".scale").astype(np.float32)
            out[name] = out[name].astype(np.float32) * scale.reshape((-1,) + (1,) * (out[name].ndim - 1))
    return out, meta


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, np.ndarray of float32, float64, float16, int32 or uint8);
    metadata: dict str -> str. Header padded with spaces to a multiple of 8."""
    names = {np.dtype("<f4"): "F32", np.dtype("<f8"): "F64", np.dtype("<f2"): "F16", np.dtype("<i4"): "I32",
             np.dtype("u1"): "U8"}
    header = {"__metadata__": metadata}
    blobs, off = [], 0
    for name, a in tensors:
        a = np.ascontiguousarray(a)
        b = a.tobytes()
        header[name] = {"dtype": names[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---- the shared trunk -------------------------------------------------------


class Block(nn.Module):
    """nn_block_forward: pre-norm, separate q/k/v, exact GELU."""

    def __init__(self, C, F_, H):
        super().__init__()
        self.H = H
        self.ln1 = nn.LayerNorm(C, eps=LN_EPS)
        self.attn = nn.Module()
        self.attn.q = nn.Linear(C, C)
        self.attn.k = nn.Linear(C, C)
        self.attn.v = nn.Linear(C, C)
        self.attn.proj = nn.Linear(C, C)
        self.ln2 = nn.LayerNorm(C, eps=LN_EPS)
        self.mlp = nn.Module()
        self.mlp.fc = nn.Linear(C, F_)
        self.mlp.fc2 = nn.Linear(F_, C)

    def forward(self, x, mask):
        B, T, C = x.shape
        H, Dh = self.H, C // self.H
        a = self.ln1(x)

        def heads(t):
            return t.view(B, T, H, Dh).transpose(1, 2)

        q, k, v = heads(self.attn.q(a)), heads(self.attn.k(a)), heads(self.attn.v(a))
        s = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(Dh))
        if mask is not None:
            keep = mask[:, None, None, :].bool()
            s = s.masked_fill(~keep, float("-inf"))
            p = torch.softmax(s, dim=-1)
            # a sequence without real tokens: softmax of all -inf is NaN; qiao gives zeros
            p = torch.where(keep.any(dim=-1, keepdim=True), p, torch.zeros_like(p))
        else:
            p = torch.softmax(s, dim=-1)
        y = (p @ v).transpose(1, 2).reshape(B, T, C)
        h = x + self.attn.proj(y)
        return h + self.mlp.fc2(F.gelu(self.mlp.fc(self.ln2(h))))


class Trunk(nn.Module):
    """nn_trunk_forward: positions, blocks, final LN, masked mean pool (or
    masked max with pool="max", the section's optional "pool" key),
    projection, L2 norm. Tensor names: pos, blocks.<l>.*, ln_f.*, proj.*."""

    def __init__(self, C, F_, H, L, max_T, D, pool="mean"):
        super().__init__()
        if pool not in ("mean", "max"):
            raise ValueError(f"pool must be 'mean' or 'max', not {pool!r}")
        self.pool = pool
        self.pos = nn.Parameter(torch.zeros(max_T, C))
        self.blocks = nn.ModuleList([Block(C, F_, H) for _ in range(L)])
        self.ln_f = nn.LayerNorm(C, eps=LN_EPS)
        self.proj = nn.Linear(C, D)

    def forward(self, x, mask=None):
        B, T, C = x.shape
        h = x + self.pos[:T]
        for blk in self.blocks:
            h = blk(h, mask)
        h = self.ln_f(h)
        if self.pool == "max":
            if mask is None:
                pooled = h.max(dim=1).values
            else:
                keep = mask.bool()[:, :, None]
                pooled = h.masked_fill(~keep, float("-inf")).max(dim=1).values
                pooled = torch.where(keep.any(dim=1), pooled, torch.zeros_like(pooled))  # no real token: zeros
        elif mask is None:
            pooled = h.mean(dim=1)
        else:
            m = mask.to(h.dtype)[:, :, None]
            n = m.sum(dim=1)
            pooled = (h * m).sum(dim=1) / n.clamp(min=1.0)  # no real token: zeros
        z = self.proj(pooled)
        return z / z.norm(dim=-1, keepdim=True).clamp(min=L2_EPS)


def _trunk(sec, embed_dim, max_T):
    return Trunk(sec["width"], sec["mlp"], sec["heads"], sec["layers"], max_T, embed_dim, sec.get("pool", "mean"))


# ---- the encoders -------------------------------------------------------------


class TextEncoder(nn.Module):
    """modalities/text/encoder.c. forward(ids (B,T), char_ids (B,T,K),
    tags (B,T), mask (B,T)) -> (B, D).

    e_piece = piece_emb[id]; e_char = char_proj(concat_i maxpool gelu(conv_i(char_emb[chars]))),
    the max over the width-w windows that START on a real character (char id
    != 0), a token with none pools to zeros; e = g e_piece + (1-g) e_char,
    g = sigmoid(gate([e_piece; e_char])); x = e + tag_emb[tag]. mix "piece":
    e = e_piece and no char tensors."""

    def __init__(self, sec, embed_dim):
        super().__init__()
        C = sec["width"]
        self.k = sec["k"]
        self.kernels = list(sec["char_kernels"])
        self.mix = sec.get("mix", sec.get("fusion", "gate"))  # "fusion": the key's old name
        self.piece_emb = nn.Embedding(sec["vocab"], C)
        if self.mix == "gate":
            self.char_emb = nn.Embedding(sec["char_vocab"], sec["char_dim"])
            self.char_conv = nn.ModuleList([nn.Conv1d(sec["char_dim"], sec["char_channels"], w) for w in self.kernels])
            self.char_proj = nn.Linear(len(self.kernels) * sec["char_channels"], C)
            self.gate = nn.Linear(2 * C, C)
        self.tag_emb = nn.Embedding(N_TAGS, C)
        self.trunk = _trunk(sec, embed_dim, sec["max_tokens"])

    def forward(self, ids, char_ids, tags, mask):
        B, T = ids.shape
        K = self.k
        e = self.piece_emb(ids.long())
        if self.mix == "gate":
            cid = char_ids.long().reshape(B * T, K)
            ch = self.char_emb(cid).transpose(1, 2)  # (N, Dc, K): Conv1d's channels-first
            pools = []
            for w, conv in zip(self.kernels, self.char_conv):
                y = F.gelu(conv(ch))  # (N, Cc, K-w+1)
                real = (cid[:, : K - w + 1] != 0)[:, None, :]
                y = y.masked_fill(~real, float("-inf")).max(dim=-1).values
                pools.append(torch.where(real.any(dim=-1), y, torch.zeros_like(y)))
            e_char = self.char_proj(torch.cat(pools, dim=-1)).view(B, T, -1)
            g = torch.sigmoid(self.gate(torch.cat([e, e_char], dim=-1)))
            e = g * e + (1 - g) * e_char
        x = e + self.tag_emb(tags.long())
        return self.trunk(x, mask)


class ImageEncoder(nn.Module):
    """modalities/image/encoder.c. forward(patches (B, P, 3*p*p)) -> (B, D):
    x = patch_embed(patches), trunk without a mask (images have no padding)."""

    def __init__(self, sec, embed_dim):
        super().__init__()
        p = sec["patch"]
        tokens = (sec["image_size"] // p) ** 2
        self.patch_embed = nn.Linear(3 * p * p, sec["width"])
        self.trunk = _trunk(sec, embed_dim, tokens)

    def forward(self, patches):
        return self.trunk(self.patch_embed(patches))


class AudioEncoder(nn.Module):
    """modalities/audio/encoder.c. forward(mel (B, Tm, n_mels), mask (B, Tm)
    or None) -> (B, D).

    x_0 = mask_0 * (mel - norm_mean) / norm_std; x_i = mask_i * gelu(conv_i(x_{i-1}))
    (odd kernel k_i, stride s_i, pad k_i // 2); stem row t of layer i is real
    iff input frame t * s_1...s_i is real; the trunk's mask is that of the
    last layer."""

    def __init__(self, sec, embed_dim):
        super().__init__()
        self.kernels = list(sec["stem_kernels"])
        self.strides = list(sec["stem_strides"])
        self.norm_mean = float(sec.get("norm_mean", -4.0))
        self.norm_std = float(sec.get("norm_std", 4.0))
        C = sec["width"]
        cins = [sec["n_mels"]] + [C] * (len(self.kernels) - 1)
        self.stem = nn.ModuleList(
            [nn.Conv1d(ci, C, k, stride=s, padding=k // 2) for ci, k, s in zip(cins, self.kernels, self.strides)]
        )
        max_T = sec["max_frames"]
        for s in self.strides:
            max_T = -(-max_T // s)
        self.trunk = _trunk(sec, embed_dim, max_T)

    def forward(self, mel, mask=None):
        B, Tm, _ = mel.shape
        if mask is None:
            mask = torch.ones(B, Tm, dtype=torch.uint8, device=mel.device)
        real = mask.bool()
        x = (mel - self.norm_mean) / self.norm_std
        x = x * real[:, :, None].to(x.dtype)  # padded frames may hold anything: exact zeros
        stride = 1
        m = real
        for conv, s in zip(self.stem, self.strides):
            x = F.gelu(conv(x.transpose(1, 2))).transpose(1, 2)
            stride *= s
            m = real[:, ::stride][:, : x.shape[1]]  # frame t real iff input frame t * stride is
            x = x * m[:, :, None].to(x.dtype)
        return self.trunk(x, m.to(torch.uint8))


ENCODERS = {"text": TextEncoder, "image": ImageEncoder, "audio": AudioEncoder}


def build(modality, config, tensors, dtype=torch.float32):
    """The encoder of `modality` for a full model config (dict with embed_dim
    and the modality's section), its parameters loaded from `tensors` (dict
    name -> array, names as qiao writes them: "<modality>.<param>"). Every
    parameter must be present; extra tensors are ignored."""
    enc = ENCODERS[modality](config[modality], int(config["embed_dim"]))
    prefix = modality + "."
    state = {}
    for name, ref in enc.state_dict().items():
        full = prefix + name
        if full not in tensors:
            raise KeyError(f"no tensor '{full}'")
        t = torch.as_tensor(np.asarray(tensors[full]))
        if tuple(t.shape) != tuple(ref.shape):
            raise ValueError(f"tensor '{full}' has shape {tuple(t.shape)}, expected {tuple(ref.shape)}")
        state[name] = t
    enc.load_state_dict(state)
    return enc.to(dtype).eval()


def load(path, modality, dtype=torch.float32):
    """build() from a .safetensors file whose __metadata__ holds the model
    config as JSON under "qiao.config"."""
    tensors, meta = read_safetensors(path)
    if "qiao.config" not in meta:
        raise KeyError(f"{path}: no 'qiao.config' in __metadata__")
    return build(modality, json.loads(meta["qiao.config"]), tensors, dtype)


def serve(name, banner, fns, outputs):
    """The line protocol the C benchmarks drive (bench/bench_util.h), on
    stdin and stdout, under torch.inference_mode():
      "calib CASE"   -> "reps N": after 3 warm-up calls, the smallest power
                        of 2 of calls lasting at least 50 ms;
      "time CASE N"  -> "t S": seconds per call over N calls;
      "<out> PATH"   -> "ok" after writing outputs[out]() (a list of
                        (name, array)) to PATH as .safetensors;
      "quit"         -> "rss KB", the peak resident set.
    CASE is one or more words naming a callable of `fns` (keys are the words
    joined by one space). The banner follows "ready"."""

    def reply(s):
        sys.stdout.write(s + "\n")
        sys.stdout.flush()

    def timed(fn, reps):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return time.perf_counter() - t0

    reply(f"ready {banner}")
    with torch.inference_mode():
        for line in sys.stdin:
            w = line.split()
            if not w:
                continue
            if w[0] == "calib":
                fn = fns[" ".join(w[1:])]
                for _ in range(3):
                    fn()
                reps = 1
                while timed(fn, reps) < 0.05:
                    reps *= 2
                reply(f"reps {reps}")
            elif w[0] == "time":
                reps = int(w[-1])
                reply(f"t {timed(fns[' '.join(w[1:-1])], reps) / reps:.9f}")
            elif w[0] in outputs and len(w) == 2:
                write_safetensors(w[1], outputs[w[0]](), {"bench.peer": "torch " + torch.__version__})
                reply("ok")
            elif w[0] == "quit":
                reply(f"rss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")
                return
            else:
                sys.exit(f"{name}: unknown command {line.strip()!r}")
