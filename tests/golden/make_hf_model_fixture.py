#!/usr/bin/env python3
"""Writes the end-to-end parity fixtures of converted Hugging Face models
(issue 17): a tiny random model of each family saved as a Hugging Face
directory, converted by scripts/convert-hf.py, and transformers' own
embeddings of real texts.

Regenerate (transformers, sentencepiece and safetensors in .venv-peer; CI
reads the committed files):

    .venv-peer/bin/python3 tests/golden/make_hf_model_fixture.py tests/data/hf [FAMILY...]

writes, per family, tests/data/hf/<family>/model.safetensors (the converted
model: what qiao_model_load reads) and expected.safetensors:
    texts (U8, NUL-separated), lengths (I32), ids (I32): transformers'
        tokenizer's, truncated to the model's 64 positions,
    emb (F32 (n, width)): the pooled last_hidden_state, L2-normalized,
        computed in float64.
Models are built offline from transformers' config classes (no hub),
weights drawn O(1) so every layer matters:
    xlmr  XLMRobertaModel, width 32, LayerNorm eps 1e-5 (XLM-R's), the
          SentencePiece model of tests/data/tokenizer/spm-kind.safetensors
          as its sentencepiece.bpe.model, and a sentence-transformers
          1_Pooling/config.json asking for the mean (e5's recipe), which the
          converter reads; stored f32.
    bert  BertModel, width 16, eps 1e-12, bert-base-chinese's vocab.txt
          (tests/data/wordpiece/) lowercasing, no pooling file: the
          converter's default for BERT, the [CLS] token (bge's recipe);
          stored f16, its weights rounded to f16 before transformers runs,
          so both sides compute with the same values.
    clip  CLIPModel: text width 16 (quick GELU, causal, 64 positions, read
          at <|endoftext|>), vision 32x32 pictures in 8x8 patches plus the
          class token, width 16, both projected to 24; OpenAI's vocab.json
          and merges.txt (tests/data/clip_bpe/); stored f16.
    cnclip ChineseCLIPModel: the BERT text tower (bert-base-chinese's
          vocab, eps 1e-12, read at [CLS]) and the same vision tower;
          stored f16.
The two CLIP families' expected.safetensors also hold
    rgb (U8 (m, 32, 32, 3)): pictures, smooth random colour fields with
        noise (drawn here: no photo, no licence), and
    img_emb (F32 (m, 24)): get_image_features of those pixels normalized
        as CLIPImageProcessor does ((x / 255 - mean) / std, no resize at
        the model's size), L2-normalized;
and their emb is get_text_features, L2-normalized.
"""
import glob
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
from transformers import (BertConfig, BertModel, BertTokenizer, ChineseCLIPConfig, ChineseCLIPModel, CLIPConfig,
                          CLIPModel, CLIPTokenizer, XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizer)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bench", "peer"))
from qiao_peer import read_safetensors, write_safetensors  # noqa: E402

SEED = 20261208
N_PER_CORPUS = 40
MAX_POS = 64


def texts():
    rng = random.Random(SEED)
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, "datasets", "intent", "*", "test.jsonl"))):
        t = [json.loads(line)["text"] for line in open(path, encoding="utf-8")]
        out += rng.sample(t, min(N_PER_CORPUS, len(t)))
    return out + ["x" * 200, "你好" * 80]  # longer than the positions: truncated, the end token kept


CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])
N_PICTURES = 24
IMAGE = 32


def pictures(rng):
    """(m, 32, 32, 3) uint8: a smooth random colour field (a bilinear blow-up
    of a 4x4 grid) plus noise, so patches differ and every pixel matters."""
    out = []
    for _ in range(N_PICTURES):
        grid = rng.uniform(0, 255, (4, 4, 3))
        y = np.linspace(0, 3, IMAGE)
        y0 = np.minimum(np.floor(y).astype(int), 2)
        fy = (y - y0)[:, None, None]
        rows = grid[y0] * (1 - fy) + grid[y0 + 1] * fy  # (32, 4, 3)
        fx = (y - y0)[None, :, None]
        field = rows[:, y0] * (1 - fx) + rows[:, y0 + 1] * fx
        out.append(np.clip(field + rng.normal(0, 12, field.shape), 0, 255).round().astype(np.uint8))
    return np.stack(out)


def randomize(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape) / math.sqrt(p[0].numel()))
            elif ("LayerNorm.weight" in name or "layer_norm" in name or "layrnorm" in name or "layernorm" in name) \
                    and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape))
            else:
                p.copy_(0.1 * torch.randn(p.shape))


def family(name, hf):
    """(model, tokenizer, pooling, dtype) saved into the directory hf."""
    common = dict(num_hidden_layers=2, max_position_embeddings=MAX_POS, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0, attn_implementation="eager")
    if name == "xlmr":
        spm_tensors, _ = read_safetensors(os.path.join(ROOT, "tests", "data", "tokenizer", "spm-kind.safetensors"))
        open(os.path.join(hf, "sentencepiece.bpe.model"), "wb").write(spm_tensors["tokenizer.spm"].tobytes())
        tok = XLMRobertaTokenizer(vocab_file=os.path.join(hf, "sentencepiece.bpe.model"))
        common["max_position_embeddings"] = MAX_POS + 2  # ids start after the padding index
        cfg = XLMRobertaConfig(vocab_size=tok.vocab_size, hidden_size=32, num_attention_heads=4, intermediate_size=64,
                               type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, **common)
        model = XLMRobertaModel(cfg, add_pooling_layer=False)
        randomize(model)
        os.makedirs(os.path.join(hf, "1_Pooling"))
        json.dump({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True},
                  open(os.path.join(hf, "1_Pooling", "config.json"), "w"))
        return model, tok, "mean", "f32"
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=IMAGE,
                  patch_size=8, hidden_act="quick_gelu", layer_norm_eps=1e-5, attention_dropout=0.0)
    if name == "clip":
        for f in ("vocab.json", "merges.txt"):
            shutil.copy(os.path.join(ROOT, "tests", "data", "clip_bpe", f), os.path.join(hf, f))
        tok = CLIPTokenizer(vocab_file=os.path.join(hf, "vocab.json"), merges_file=os.path.join(hf, "merges.txt"))
        text = dict(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                    num_attention_heads=2, max_position_embeddings=MAX_POS, hidden_act="quick_gelu",
                    layer_norm_eps=1e-5, attention_dropout=0.0, bos_token_id=tok.bos_token_id,
                    eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=24))
    elif name == "cnclip":
        shutil.copy(os.path.join(ROOT, "tests", "data", "wordpiece", "vocab.txt"), os.path.join(hf, "vocab.txt"))
        tok = BertTokenizer(vocab_file=os.path.join(hf, "vocab.txt"), do_lower_case=True)
        text = dict(vocab_size=tok.vocab_size, hidden_size=16, num_attention_heads=2, intermediate_size=32,
                    type_vocab_size=2, layer_norm_eps=1e-12, **common)
        model = ChineseCLIPModel(ChineseCLIPConfig(text_config=text, vision_config=vision, projection_dim=24))
    if name in ("clip", "cnclip"):
        randomize(model)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.half().float())
        return model, tok, "clip", "f16"
    shutil.copy(os.path.join(ROOT, "tests", "data", "wordpiece", "vocab.txt"), os.path.join(hf, "vocab.txt"))
    json.dump({"do_lower_case": True, "tokenize_chinese_chars": True, "strip_accents": None},
              open(os.path.join(hf, "tokenizer_config.json"), "w"))
    tok = BertTokenizer(vocab_file=os.path.join(hf, "vocab.txt"), do_lower_case=True)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_attention_heads=2, intermediate_size=32,
                     type_vocab_size=2, layer_norm_eps=1e-12, **common)
    model = BertModel(cfg, add_pooling_layer=False)
    randomize(model)
    with torch.no_grad():  # the values an f16 file holds
        for p in model.parameters():
            p.copy_(p.half().float())
    return model, tok, "first", "f16"


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: .venv-peer/bin/python3 tests/golden/make_hf_model_fixture.py OUT_DIR [FAMILY...]")
    ts = list(dict.fromkeys(texts()))
    torch.manual_seed(SEED)  # xlmr then bert draw from one stream, as when they were first written
    for name in sys.argv[2:] or ("xlmr", "bert", "clip", "cnclip"):
        if name in ("clip", "cnclip"):  # each from its own seed, so either can be rewritten alone
            torch.manual_seed(SEED + 2 + (name == "cnclip"))
        out_dir = os.path.join(sys.argv[1], name)
        os.makedirs(out_dir, exist_ok=True)
        model_out = os.path.join(out_dir, "model.safetensors")
        with tempfile.TemporaryDirectory() as hf:
            model, tok, pool, dtype = family(name, hf)
            model.eval().save_pretrained(hf, safe_serialization=True)
            subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "convert-hf.py"), hf, model_out, "--name",
                            f"{name}-tiny-random", "--dtype", dtype], check=True)
        model = model.double()
        # CLIP builds its causal mask with torch.full(..., finfo(float64).min) in the default dtype
        torch.set_default_dtype(torch.float64)
        ids, lengths, embs = [], [], []
        extra = []
        with torch.no_grad():
            for t in ts:
                enc = tok(t, split_special_tokens=True, truncation=True, max_length=MAX_POS)
                x = torch.tensor([enc["input_ids"]])
                if pool == "clip":
                    h = model.get_text_features(input_ids=x, attention_mask=torch.ones_like(x))[0]
                else:
                    h = model(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state[0]
                    h = h.mean(0) if pool == "mean" else h[0]
                e = torch.nn.functional.normalize(h, dim=-1)
                ids += enc["input_ids"]
                lengths.append(len(enc["input_ids"]))
                embs.append(e.float().numpy())
            if pool == "clip":
                rgb = pictures(np.random.default_rng(SEED))
                px = (rgb.astype(np.float64) / 255.0 - CLIP_MEAN) / CLIP_STD
                im = model.get_image_features(pixel_values=torch.from_numpy(px).permute(0, 3, 1, 2).contiguous())
                extra = [("rgb", rgb), ("img_emb", torch.nn.functional.normalize(im, dim=-1).float().numpy())]
        torch.set_default_dtype(torch.float32)
        blob = b"".join(t.encode("utf-8") + b"\0" for t in ts)
        write_safetensors(os.path.join(out_dir, "expected.safetensors"),
                          [("texts", np.frombuffer(blob, dtype=np.uint8)),
                           ("lengths", np.array(lengths, dtype=np.int32)), ("ids", np.array(ids, dtype=np.int32)),
                           ("emb", np.stack(embs))] + extra,
                          {"generator": "tests/golden/make_hf_model_fixture.py",
                           "transformers": __import__("transformers").__version__, "max_tokens": str(MAX_POS),
                           "pool": pool})
        print(f"wrote {out_dir}: {len(ts)} texts, model {os.path.getsize(model_out):,} bytes ({dtype})")


if __name__ == "__main__":
    main()
