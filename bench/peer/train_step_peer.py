"""PyTorch peer of one qiao training step (issue 14): the text and image
towers of a model config (qiao_peer.py's encoders, the same architecture),
symmetric InfoNCE with a learnable temperature, gradient clipping and AdamW
(betas 0.9/0.98, eps 1e-6, weight decay 0.05, as qiao's contrastive
objective), on a batch of B captions of T tokens and B pictures.

The batch is built once, outside the timed region (qiao's loader never
made its step wait in the profile; see docs/benchmarks.md). Prints the mean
and best seconds per step over --steps steps after --warmup.

    /usr/bin/python3 bench/peer/train_step_peer.py --config models/configs/base.json --batch 128
    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 bench/peer/train_step_peer.py ...

Debian's torch 1.13 multiplies through the system BLAS (OpenBLAS), so the
kernel choice (OPENBLAS_CORETYPE) matters to it as it does to qiao.
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qiao_peer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="models/configs/base.json")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--tokens", type=int, default=64, help="caption tokens (qiao's batches padded to 60-64)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    cfg = json.load(open(a.config))
    D = int(cfg["embed_dim"])
    text = qiao_peer.ENCODERS["text"](cfg["text"], D)
    image = qiao_peer.ENCODERS["image"](cfg["image"], D)
    scale = torch.nn.Parameter(torch.tensor(2.65926))
    params = list(text.parameters()) + list(image.parameters()) + [scale]
    opt = torch.optim.AdamW(params, lr=5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.05)
    B, T, t = a.batch, a.tokens, cfg["text"]
    ids = torch.randint(0, t["vocab"], (B, T), dtype=torch.int32)
    char_ids = torch.randint(1, t["char_vocab"], (B, T, t["k"]), dtype=torch.int32)
    tags = torch.randint(1, qiao_peer.N_TAGS, (B, T), dtype=torch.uint8)
    mask = torch.ones(B, T, dtype=torch.bool)
    p, size = cfg["image"]["patch"], cfg["image"]["image_size"]
    patches = torch.randn(B, (size // p) ** 2, 3 * p * p)
    labels = torch.arange(B)

    def step():
        opt.zero_grad(set_to_none=False)
        et = text(ids, char_ids, tags, mask)
        ei = image(patches)
        logits = et @ ei.t() * scale.clamp(0, 4.605170185988091).exp()
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return float(loss)

    text.train()
    image.train()
    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    print(f"torch {torch.__version__}, {a.threads} threads, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
          f"batch {B} x {T} tokens: mean {sum(times) / len(times):.3f} s/step, best {min(times):.3f}")


if __name__ == "__main__":
    main()
