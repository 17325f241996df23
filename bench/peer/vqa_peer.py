#!/usr/bin/python3
"""PyTorch peer of qiao's visual question answering (models/vqa.c), and the
PyTorch side of bench/bench_vqa.c.

The model: the towers of qiao_peer.py run to their trunk's final LayerNorm
(the token sequence qmod_tokens hands the fuser: no pooling, no
projection), the fuser of fusion_peer.py, and the two MLP heads on its z
(fusion/head.h): logits = gelu(z W1^T + b1) W2^T + b2, or z W2^T + b2
without a hidden layer; "answer" and, when the model has one, "lang". Every
tensor loads by its qiao name from the model's .safetensors
("text.trunk.blocks.0.attn.q.weight", "fusion.question.0.xattn.q.weight",
"heads.answer.fc.weight", ...).

    /usr/bin/python3 bench/peer/vqa_peer.py MODEL INPUTS [--threads N]

MODEL   a VQA model file qiao wrote (config in "qiao.config")
INPUTS  a .safetensors written by bench_vqa: metadata "bench.cases" is a
        JSON list of [case, B] and "bench.weighting" the fuser's mode; per
        case "<case>.text.{ids,char_ids,tags,mask}", "<case>.image.patches",
        "<case>.audio.{mel,mask}" (a modality the case lacks has none),
        "<case>.stats.{text,image,audio}" (B, 3) raw statistics and
        "<case>.present" (B, 3)

A line protocol on stdin / stdout, one reply line per command (as
bench_encoders_peer.py):
    (start)            -> "ready torch <version> <threads>"
    calib <case>       -> "reps <n>": after 3 warm-up calls, the calls (a
                          power of two) that last >= 50 ms
    time <case> <n>    -> "t <seconds per call>" over n calls
    out <path>         -> "ok": writes "<case>.answer" (B, K), "<case>.lang"
                          (B, 2) and "<case>.w" (B, 3) float32 to path
    quit               -> "rss <peak resident kB>", then exits
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
import fusion_peer  # noqa: E402
import qiao_peer  # noqa: E402

MODALITIES = fusion_peer.MODALITIES


class TokenTrunk(nn.Module):
    """A qiao_peer.Trunk up to its final LayerNorm: forward(x, mask) -> (the
    token sequence (B, T, C), the mask it ran with)."""

    def __init__(self, trunk):
        super().__init__()
        self.t = trunk

    def forward(self, x, mask=None):
        h = x + self.t.pos[: x.shape[1]]
        for blk in self.t.blocks:
            h = blk(h, mask)
        return self.t.ln_f(h), mask


class Head(nn.Module):
    """fusion/head.h's MLP: names fc.{weight,bias} (with a hidden layer) and
    out.{weight,bias}."""

    def __init__(self, n_in, hidden, classes):
        super().__init__()
        self.fc = nn.Linear(n_in, hidden) if hidden > 0 else None
        self.out = nn.Linear(hidden if hidden > 0 else n_in, classes)

    def forward(self, x):
        return self.out(F.gelu(self.fc(x)) if self.fc is not None else x)


def _load(module, tensors, prefix):
    state = {}
    for name, ref in module.state_dict().items():
        full = prefix + name
        if full not in tensors:
            raise KeyError(f"no tensor '{full}'")
        t = torch.as_tensor(np.asarray(tensors[full]))
        if tuple(t.shape) != tuple(ref.shape):
            raise ValueError(f"tensor '{full}' has shape {tuple(t.shape)}, expected {tuple(ref.shape)}")
        state[name] = t
    module.load_state_dict(state)


class VQA(nn.Module):
    """models/vqa.c's forward: towers -> tokens -> fuser -> heads."""

    def __init__(self, config, tensors):
        super().__init__()
        self.towers = nn.ModuleDict()
        for m in MODALITIES:
            if m in config:
                enc = qiao_peer.build(m, config, tensors, torch.float32)
                enc.trunk = TokenTrunk(enc.trunk)
                self.towers[m] = enc
        fcfg = dict(config["fusion"])
        fcfg["in_width"] = {m: int(config[m]["width"]) for m in self.towers}
        # the model file says "positions": true; the fuser takes the picture's
        # token count (its places' with "places": G), and the question's
        grid = int(config["image"]["image_size"]) // int(config["image"]["patch"])
        self.places = int(fcfg.get("places", 0))
        side = self.places if self.places else grid
        fcfg["positions"] = side * side if fcfg.get("positions") is True else 0
        fcfg["qpositions"] = int(config["text"]["max_tokens"]) if fcfg.get("question_positions") is True else 0
        self.fuser = fusion_peer.load_fuser(tensors, fcfg).eval()
        self.width = {m: int(config[m]["width"]) for m in self.towers}
        # models/vqa.c hands the fuser (tokens - in_mean) / in_std
        self.tok_mean, self.tok_std = {}, {}
        for m in self.towers:
            mean, std = tensors.get(f"fusion.{m}.in_mean"), tensors.get(f"fusion.{m}.in_std")
            if mean is not None and std is not None:
                self.tok_mean[m] = torch.as_tensor(np.asarray(mean), dtype=torch.float32)
                self.tok_std[m] = torch.as_tensor(np.asarray(std), dtype=torch.float32)
        heads = config.get("heads", {})
        self.heads = nn.ModuleDict()
        for name in ("answer", "lang"):
            if name in heads:
                h = heads[name]
                head = Head(int(fcfg["width"]), int(h.get("hidden", 0)), int(h["classes"]))
                _load(head, tensors, f"heads.{name}.")
                self.heads[name] = head.eval()

    def forward(self, args, stats, present, mode):
        """args: dict modality -> the tower's inputs (qiao_peer's forward
        arguments) or None when the batch lacks it; stats: dict -> (B, 3);
        present (B, 3). Returns answer logits, lang logits (or None), w."""
        B = present.shape[0]
        tokens, masks = {}, {}
        for m, enc in self.towers.items():
            if args.get(m) is not None:
                x, mask = enc(*args[m])
                if m in self.tok_mean:
                    x = (x - self.tok_mean[m]) / self.tok_std[m]
                if m == "image" and self.places:
                    x = places(x, self.places)
                tokens[m] = x
                if mask is not None:
                    masks[m] = mask
            else:  # no such input in the batch: no tokens (qiao's T = 0)
                tokens[m] = torch.zeros(B, 0, self.width[m])
                masks[m] = torch.zeros(B, 0, dtype=torch.uint8)
        z, w = self.fuser(tokens, masks, stats, present, mode)
        lang = self.heads["lang"](z) if "lang" in self.heads else None
        return self.heads["answer"](z), lang, w


def places(x, G):
    """fusion/fuser.h qf_places_forward: (B, g*g, C) patches -> (B, G*G, C),
    place (i, j) the channel-wise max over patch rows [i g // G, ceil((i+1) g
    / G)) and the same columns."""
    B, P, C = x.shape
    g = int(round(P ** 0.5))
    x = x.reshape(B, g, g, C)
    span = [(i * g // G, -(-(i + 1) * g // G)) for i in range(G)]
    out = [x[:, r0:r1, c0:c1].amax(dim=(1, 2)) for r0, r1 in span for c0, c1 in span]
    return torch.stack(out, dim=1)


def case_inputs(case, tensors):
    """A case's forward arguments from the inputs file."""
    p = case + "."
    t = {k[len(p):]: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items() if k.startswith(p)}
    args = {
        "text": (t["text.ids"], t["text.char_ids"], t["text.tags"], t["text.mask"]) if "text.ids" in t else None,
        "image": (t["image.patches"],),
        "audio": (t["audio.mel"], t["audio.mask"]) if "audio.mel" in t else None,
    }
    stats = {m: t[f"stats.{m}"] for m in MODALITIES}
    return args, stats, t["present"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("inputs")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    weights, meta = qiao_peer.read_safetensors(args.model)
    config = json.loads(meta["qiao.config"])
    inputs, imeta = qiao_peer.read_safetensors(args.inputs)
    cases = [c for c, _ in json.loads(imeta["bench.cases"])]
    mode = imeta.get("bench.weighting", "learned")
    model = VQA(config, weights).eval()
    fns = {}
    for c in cases:
        a, s, p = case_inputs(c, inputs)
        fns[c] = (lambda a=a, s=s, p=p: model(a, s, p, mode))

    def outputs():
        out = []
        for c in cases:
            ans, lang, wt = fns[c]()
            out.append((f"{c}.answer", ans.numpy().astype(np.float32)))
            if lang is not None:
                out.append((f"{c}.lang", lang.numpy().astype(np.float32)))
            out.append((f"{c}.w", wt.numpy().astype(np.float32)))
        return out

    qiao_peer.serve("vqa_peer", f"torch {torch.__version__} {torch.get_num_threads()}", fns, {"out": outputs})

if __name__ == "__main__":
    main()
