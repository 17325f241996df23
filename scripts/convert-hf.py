#!/usr/bin/env python3
"""Converts a Hugging Face model directory into one qiao model file (issue 17).

    .venv-peer/bin/python3 scripts/convert-hf.py HF_DIR OUT.safetensors [--dtype f32|f16|bf16]
        [--name NAME] [--pool mean|first] [--max-tokens N]
        [--space SPACE] [--query-prompt TEXT] [--document-prompt TEXT]

An offline step: Python with torch and transformers (scripts/install-deps.sh
puts them in .venv-peer), never a runtime dependency of the SDK. It reads
config.json through transformers' config class (4.x omits defaults there),
the weights from model.safetensors or pytorch_model.bin, and the tokenizer
files, and writes the weights under qiao's names (scripts/qiao_hf.py), a
qiao config describing the architecture and the tokenizer inside.

Families so far:
  xlm-roberta  (multilingual-e5, bge-m3's encoder): text encoder "arch": "bert",
               SentencePiece tokenizer (sentencepiece.bpe.model) as kind "spm"
               with fairseq's ids.
  bert         (Chinese BERT and RoBERTa-wwm-ext, bge-small-zh): text encoder
               "arch": "bert", WordPiece tokenizer (vocab.txt, with
               tokenizer_config.json's do_lower_case, strip_accents and
               tokenize_chinese_chars) as kind "wordpiece".
  clip         (OpenAI CLIP, CLIPModel): text encoder "arch": "clip" with
               CLIP's byte-level BPE (vocab.json, merges.txt) as kind "bpe",
               image encoder "arch": "clip"; both projected into CLIP's
               shared space, its logit scale kept.
  chinese_clip (Chinese-CLIP, ChineseCLIPModel): its BERT text tower
               ("arch": "bert" read at [CLS], projected without bias, the
               WordPiece vocab.txt) and the CLIP vision tower.
For the text-only families the pooling comes from a sentence-transformers
1_Pooling/config.json when the directory has one (e5: mean, bge: [CLS]),
else --pool (default: the mean for XLM-R, the [CLS] token for BERT).
Every qiao embedding is L2-normalized, as these models' cards ask.
The config's "space" (whose vectors these are: config.json's _name_or_path
when it names a hub model, else the name; --space) and "prompts" (the
sentence-transformers prompts of config_sentence_transformers.json, its
"passage" as qiao's "document"; --query-prompt, --document-prompt) say how
the vectors are used (models/model.h).
"""
import argparse
import json
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qiao_hf  # noqa: E402


def load_state(hf_dir):
    st = os.path.join(hf_dir, "model.safetensors")
    if os.path.exists(st):
        from safetensors.numpy import load_file
        return load_file(st)
    import torch
    return {k: v.float().numpy() for k, v in torch.load(os.path.join(hf_dir, "pytorch_model.bin"),
                                                        map_location="cpu").items()}


def src_prefix(state, model_type):
    """The prefix of the encoder's tensors: "" for a bare model, else e.g.
    "roberta." or "bert." (a checkpoint saved from a task model)."""
    for p in ("", model_type.replace("-", "_") + ".", "roberta.", "bert.", "model."):
        if p + "embeddings.word_embeddings.weight" in state:
            return p
    raise SystemExit("convert-hf: no embeddings.word_embeddings.weight in the checkpoint")


def pooling(hf_dir, override, default):
    if override:
        return override
    path = os.path.join(hf_dir, "1_Pooling", "config.json")
    if os.path.exists(path):
        p = json.load(open(path))
        if p.get("pooling_mode_cls_token"):
            return "first"
        if p.get("pooling_mode_mean_tokens"):
            return "mean"
        raise SystemExit(f"convert-hf: {path} asks for a pooling qiao does not have")
    return default


def convert_xlmr(hf_dir, cfg, state, args):
    spm_path = os.path.join(hf_dir, "sentencepiece.bpe.model")
    if not os.path.exists(spm_path):
        raise SystemExit("convert-hf: an XLM-RoBERTa directory needs sentencepiece.bpe.model")
    import sentencepiece as spm
    model_bytes = open(spm_path, "rb").read()
    n_pieces = spm.SentencePieceProcessor(model_proto=model_bytes).get_piece_size()
    vocab = n_pieces + 2  # fairseq's <pad> before the pieces, <mask> after
    if cfg.vocab_size != vocab:
        raise SystemExit(f"convert-hf: config vocab_size {cfg.vocab_size}, the tokenizer gives {vocab}")
    offset = cfg.pad_token_id + 1  # position ids start after the padding index
    max_tokens = args.max_tokens or cfg.max_position_embeddings - offset
    p = src_prefix(state, "xlm-roberta")
    tensors = dict(qiao_hf.bert_embeddings(state, p), **qiao_hf.bert_trunk(state, cfg.num_hidden_layers, max_tokens,
                                                                           offset, p))
    text = {"arch": "bert", "vocab": vocab, "type_vocab": cfg.type_vocab_size, "width": cfg.hidden_size,
            "layers": cfg.num_hidden_layers, "heads": cfg.num_attention_heads, "mlp": cfg.intermediate_size,
            "max_tokens": max_tokens, "eps": cfg.layer_norm_eps, "pool": pooling(hf_dir, args.pool, "mean"),
            "proj": "none"}
    tok = {"version": 1, "kind": "spm", "vocab_size": vocab, "id_offset": 1, "bos": 0, "pad": 1, "eos": 2, "unk": 3,
           "mask": vocab - 1, "add_bos": True, "add_eos": True}
    return tensors, text, (model_bytes, tok)


def check_act(cfg, want, what):
    if cfg.hidden_act not in want:
        raise SystemExit(f"convert-hf: {what} hidden_act {cfg.hidden_act!r}; qiao's blocks take {' or '.join(want)}")


def clip_image_section(vc):
    check_act(vc, ("quick_gelu", "gelu"), "the vision tower's")
    return {"arch": "clip", "image_size": vc.image_size, "patch": vc.patch_size, "width": vc.hidden_size,
            "layers": vc.num_hidden_layers, "heads": vc.num_attention_heads, "mlp": vc.intermediate_size,
            "eps": vc.layer_norm_eps, "act": vc.hidden_act}


def convert_clip(hf_dir, cfg, state, args):
    files = {n: os.path.join(hf_dir, n) for n in ("vocab.json", "merges.txt")}
    for p in files.values():
        if not os.path.exists(p):
            raise SystemExit(f"convert-hf: a CLIP directory needs {os.path.basename(p)}")
    tc, vc = cfg.text_config, cfg.vision_config
    check_act(tc, ("quick_gelu", "gelu"), "the text tower's")
    n = len(json.load(open(files["vocab.json"], encoding="utf-8")))
    if tc.vocab_size != n:
        raise SystemExit(f"convert-hf: config vocab_size {tc.vocab_size}, vocab.json has {n} tokens")
    max_tokens = args.max_tokens or tc.max_position_embeddings
    tensors = qiao_hf.clip_text(state, tc.num_hidden_layers)
    tensors["text.trunk.pos"] = tensors["text.trunk.pos"][:max_tokens]
    tensors.update(qiao_hf.clip_vision(state, vc.num_hidden_layers))
    tensors["logit_scale.text_image"] = np.asarray(state["logit_scale"], dtype=np.float32).reshape(1)
    text = {"arch": "clip", "vocab": n, "width": tc.hidden_size, "layers": tc.num_hidden_layers,
            "heads": tc.num_attention_heads, "mlp": tc.intermediate_size, "max_tokens": max_tokens,
            "eps": tc.layer_norm_eps, "act": tc.hidden_act}
    tok = ({"tokenizer.vocab": open(files["vocab.json"], "rb").read(),
            "tokenizer.merges": open(files["merges.txt"], "rb").read()}, {"version": 1, "kind": "bpe"})
    return tensors, {"text": text, "image": clip_image_section(vc)}, tok, cfg.projection_dim


def convert_chinese_clip(hf_dir, cfg, state, args):
    tc, vc = cfg.text_config, cfg.vision_config
    check_act(tc, ("gelu",), "the text tower's")
    tensors, text, tok = convert_bert(hf_dir, tc, state, args, src="text_model.")
    text.update(pool="first", proj="nobias")  # get_text_features: text_projection(last_hidden_state[:, 0])
    tensors["text.trunk.proj.weight"] = np.asarray(state["text_projection.weight"], dtype=np.float32)
    tensors.update(qiao_hf.clip_vision(state, vc.num_hidden_layers))
    tensors["logit_scale.text_image"] = np.asarray(state["logit_scale"], dtype=np.float32).reshape(1)
    return tensors, {"text": text, "image": clip_image_section(vc)}, tok, cfg.projection_dim


def convert_bert(hf_dir, cfg, state, args, src=None):
    vocab_path = os.path.join(hf_dir, "vocab.txt")
    if not os.path.exists(vocab_path):
        raise SystemExit("convert-hf: a BERT directory needs vocab.txt")
    vocab_bytes = open(vocab_path, "rb").read()
    with open(vocab_path, encoding="utf-8") as f:  # lines as BertTokenizer's load_vocab reads them
        n = len(f.readlines())
    if cfg.vocab_size != n:
        raise SystemExit(f"convert-hf: config vocab_size {cfg.vocab_size}, vocab.txt has {n} lines")
    tc_path = os.path.join(hf_dir, "tokenizer_config.json")
    tc = json.load(open(tc_path)) if os.path.exists(tc_path) else {}
    max_tokens = args.max_tokens or cfg.max_position_embeddings
    p = src if src is not None else src_prefix(state, "bert")
    tensors = dict(qiao_hf.bert_embeddings(state, p), **qiao_hf.bert_trunk(state, cfg.num_hidden_layers, max_tokens, 0, p))
    text = {"arch": "bert", "vocab": n, "type_vocab": cfg.type_vocab_size, "width": cfg.hidden_size,
            "layers": cfg.num_hidden_layers, "heads": cfg.num_attention_heads, "mlp": cfg.intermediate_size,
            "max_tokens": max_tokens, "eps": cfg.layer_norm_eps, "pool": pooling(hf_dir, args.pool, "first"),
            "proj": "none"}
    tok = {"version": 1, "kind": "wordpiece", "lower": bool(tc.get("do_lower_case", True)),
           "strip_accents": tc.get("strip_accents"), "chinese": bool(tc.get("tokenize_chinese_chars", True))}
    return tensors, text, (vocab_bytes, tok, "tokenizer.vocab")


def space_prompts(hf_dir, args, name):
    src = json.load(open(os.path.join(hf_dir, "config.json"))).get("_name_or_path", "")
    out = {"space": args.space or (src if "/" in src and not src.startswith((".", "/", "~")) else name)}
    st = os.path.join(hf_dir, "config_sentence_transformers.json")
    prompts = {"document" if k == "passage" else k: v  # names qiao's config takes (models/model.h)
               for k, v in ((json.load(open(st)).get("prompts") or {}) if os.path.exists(st) else {}).items()
               if re.fullmatch(r"[a-z][a-z0-9_]{0,62}", k) and isinstance(v, str)}
    given = (("query", args.query_prompt), ("document", args.document_prompt))
    prompts.update({k: v for k, v in given if v is not None})
    return dict(out, prompts=prompts) if prompts else out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("hf_dir")
    ap.add_argument("out")
    ap.add_argument("--dtype", default="f32", choices=["f32", "f16", "bf16"])
    ap.add_argument("--name", help="the model's name (default: the directory's)")
    ap.add_argument("--pool", choices=["mean", "first"])
    ap.add_argument("--max-tokens", type=int, help="positions to keep (default: all the model has)")
    ap.add_argument("--space", help="the embedding space (default: the checkpoint's hub name, else the name)")
    ap.add_argument("--query-prompt", help="text before a query (default: the sentence-transformers prompt)")
    ap.add_argument("--document-prompt", help="text before a document (default: the sentence-transformers prompt)")
    args = ap.parse_args()
    from transformers import AutoConfig
    cfg = AutoConfig.from_pretrained(args.hf_dir, local_files_only=True)
    state = load_state(args.hf_dir)
    if cfg.model_type in ("xlm-roberta", "bert"):
        check_act(cfg, ("gelu",), "the model's")
        convert = convert_xlmr if cfg.model_type == "xlm-roberta" else convert_bert
        tensors, text, tokenizer = convert(args.hf_dir, cfg, state, args)
        sections, embed_dim = {"text": text}, text["width"]
    elif cfg.model_type in ("clip", "chinese_clip"):
        convert = convert_clip if cfg.model_type == "clip" else convert_chinese_clip
        tensors, sections, tokenizer, embed_dim = convert(args.hf_dir, cfg, state, args)
    else:
        raise SystemExit(f"convert-hf: model_type {cfg.model_type!r} is not supported yet "
                         "(bert, xlm-roberta, clip and chinese_clip are)")
    name = args.name or os.path.basename(os.path.normpath(args.hf_dir))
    config = dict({"name": name, "embed_dim": embed_dim}, **sections, **space_prompts(args.hf_dir, args, name),
                  source={"model_type": cfg.model_type, "converter": "scripts/convert-hf.py"})
    qiao_hf.write_model(args.out, tensors, config, tokenizer, args.dtype)
    n = sum(int(np.prod(v.shape)) for v in tensors.values())
    towers = ", ".join(f"{k} {v['arch']} {v['layers']} layers x {v['width']}" for k, v in sections.items())
    print(f"{args.out}: {name}, {cfg.model_type} ({towers}), {n:,} parameters ({args.dtype}), "
          f"{os.path.getsize(args.out):,} bytes")


if __name__ == "__main__":
    main()
