#!/usr/bin/python3
"""Writes the golden fixture of the three encoders (issue 5 §6).

Regenerate (needs torch and numpy, so Debian's interpreter):

    /usr/bin/python3 tests/golden/make_encoder_fixture.py tests/data/encoder_golden.safetensors

The reference is the PyTorch peer bench/peer/qiao_peer.py. The C side is
tests/golden/test_encoder_golden.c: it parses the config below from the
metadata, lays the parameters out with qe_<modality>_describe, loads them by
name and compares its embeddings with the ones stored here.

Contents:
    __metadata__: format_version, "qiao.config" (the model config JSON: top-level
        embed_dim and the "text", "image", "audio" sections as the C parsers
        take them)
    every parameter under its C name ("text.piece_emb.weight", ...), float32
    input.text.ids (I32 (B,T)), input.text.char_ids (I32 (B,T,K)),
    input.text.tags (U8 (B,T)), input.text.mask (U8 (B,T)),
    input.image.patches (F32 (B,P,3p^2)),
    input.audio.mel (F32 (B,Tm,n_mels)), input.audio.mask (U8 (B,Tm))
    expected.<modality>.emb (F32 (B, embed_dim))

Parameters are drawn so activations are O(1) (linear and conv weights
N(0, 1/fan_in), embeddings and positions O(1), LayerNorm weights 1 + 0.1 N,
biases 0.1 N) rather than the 0.02 init, so every layer contributes and a
wrong term shows. Padding positions hold random but valid ids and garbage mel
frames, so a masking bug changes the result. The reference runs in float64
on exactly the stored float32 values; the script also prints how far the
peer in float32 lands from it (the error a correct f32 implementation shows).
"""
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "peer"))
import qiao_peer  # noqa: E402

FORMAT_VERSION = "1"
SEED = 20240615

CONFIG = {
    "embed_dim": 24,
    "text": {
        "vocab": 40, "char_vocab": 30, "k": 6, "char_dim": 8, "char_kernels": [2, 3], "char_channels": 8,
        "width": 16, "layers": 2, "heads": 2, "mlp": 32, "max_tokens": 8, "mix": "gate",
    },
    "image": {"image_size": 8, "patch": 4, "width": 16, "layers": 2, "heads": 4, "mlp": 32},
    "audio": {
        "n_mels": 10, "width": 16, "stem_kernels": [3, 5], "stem_strides": [1, 2], "layers": 2, "heads": 2,
        "mlp": 32, "max_frames": 24, "norm_mean": -4.0, "norm_std": 4.0,
    },
}

TEXT_LENGTHS = [7, 3, 5]   # B = 3, T = 7
AUDIO_FRAMES = [17, 10]    # B = 2, Tm = 17
IMAGE_B = 2


def draw_params(enc, prefix, g):
    """float32 parameters named as the C side names them."""
    out = {}
    for name, ref in enc.state_dict().items():
        shape = tuple(ref.shape)
        if "ln" in name.split(".")[-2] and name.endswith(".weight"):
            p = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif name.endswith(".bias"):
            p = 0.1 * torch.randn(shape, generator=g)
        elif name.endswith("emb.weight") or name == "trunk.pos":
            p = torch.randn(shape, generator=g) * (0.5 if name == "trunk.pos" else 1.0)
        else:  # Linear (OC, IC) or Conv1d (OC, IC, K): fan-in scaled
            fan_in = int(np.prod(shape[1:]))
            p = torch.randn(shape, generator=g) / math.sqrt(fan_in)
        out[prefix + name] = p.to(torch.float32).numpy()
    return out


def text_inputs(g, cfg):
    B, T, K = len(TEXT_LENGTHS), max(TEXT_LENGTHS), cfg["k"]
    ids = torch.randint(0, cfg["vocab"], (B, T), generator=g, dtype=torch.int32)
    tags = torch.randint(0, qiao_peer.N_TAGS, (B, T), generator=g).to(torch.uint8)
    mask = torch.zeros(B, T, dtype=torch.uint8)
    chars = torch.zeros(B, T, K, dtype=torch.int32)
    for b, n in enumerate(TEXT_LENGTHS):
        mask[b, :n] = 1
        for t in range(T):
            # 0 real characters (an empty-char piece, e.g. a lone byte piece),
            # 1 (shorter than the width-3 window), up to K (the window fully used)
            nc = int(torch.randint(0, K + 1, (1,), generator=g))
            chars[b, t, :nc] = torch.randint(1, cfg["char_vocab"], (nc,), generator=g, dtype=torch.int32)
    # make sure the interesting cases are present in real tokens
    chars[0, 1] = 0                      # empty-char piece
    chars[1, 0] = 0
    chars[0, 2, 1:] = 0                  # one character
    chars[0, 2, 0] = 5
    chars[2, 3, :] = torch.arange(1, K + 1, dtype=torch.int32)  # full
    return ids, chars, tags, mask


def audio_inputs(g, cfg):
    B, Tm, M = len(AUDIO_FRAMES), max(AUDIO_FRAMES), cfg["n_mels"]
    # natural-log mel values of speech are about -20..+5
    mel = -4.0 + 4.0 * torch.randn(B, Tm, M, generator=g)
    mask = torch.zeros(B, Tm, dtype=torch.uint8)
    for b, n in enumerate(AUDIO_FRAMES):
        mask[b, :n] = 1
        mel[b, n:] = 1e3 * torch.randn(Tm - n, M, generator=g)  # garbage the encoder must ignore
    return mel.to(torch.float32), mask


def run_all(params, inputs, dtype):
    out = {}
    for mod in ("text", "image", "audio"):
        enc = qiao_peer.build(mod, CONFIG, params, dtype)
        with torch.no_grad():
            if mod == "text":
                ids, chars, tags, mask = inputs["text"]
                out[mod] = enc(ids, chars, tags, mask)
            elif mod == "image":
                out[mod] = enc(inputs["image"].to(dtype))
            else:
                mel, mask = inputs["audio"]
                out[mod] = enc(mel.to(dtype), mask)
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_encoder_fixture.py OUT.safetensors")
    torch.manual_seed(SEED)
    g = torch.Generator().manual_seed(SEED)
    params = {}
    for mod, cls in qiao_peer.ENCODERS.items():
        params.update(draw_params(cls(CONFIG[mod], CONFIG["embed_dim"]), mod + ".", g))
    img = CONFIG["image"]
    P, pd = (img["image_size"] // img["patch"]) ** 2, 3 * img["patch"] ** 2
    inputs = {
        "text": text_inputs(g, CONFIG["text"]),
        "image": torch.randn(IMAGE_B, P, pd, generator=g).to(torch.float32),
        "audio": audio_inputs(g, CONFIG["audio"]),
    }
    ref = run_all(params, inputs, torch.float64)
    f32 = run_all(params, inputs, torch.float32)
    for mod in ref:
        r, s = ref[mod], f32[mod].double()
        cos = (r * s).sum(-1) / (r.norm(dim=-1) * s.norm(dim=-1))
        print(f"{mod:6s} peer f32 vs f64: min cosine {cos.min().item():.9f}  max |err| "
              f"{(r - s).abs().max().item():.3e}  emb shape {tuple(r.shape)}")
    ids, chars, tags, tmask = inputs["text"]
    mel, amask = inputs["audio"]
    tensors = [(n, params[n]) for n in sorted(params)]
    tensors += [
        ("input.text.ids", ids.numpy()), ("input.text.char_ids", chars.numpy()),
        ("input.text.tags", tags.numpy()), ("input.text.mask", tmask.numpy()),
        ("input.image.patches", inputs["image"].numpy()),
        ("input.audio.mel", mel.numpy()), ("input.audio.mask", amask.numpy()),
    ]
    tensors += [(f"expected.{m}.emb", ref[m].to(torch.float32).numpy()) for m in ("text", "image", "audio")]
    meta = {"format_version": FORMAT_VERSION, "qiao.config": json.dumps(CONFIG, separators=(",", ":"))}
    qiao_peer.write_safetensors(sys.argv[1], tensors, meta)
    print(f"wrote {sys.argv[1]} ({os.path.getsize(sys.argv[1])} bytes)")


if __name__ == "__main__":
    main()
