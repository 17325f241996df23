"""Hugging Face checkpoints in qiao's names (issue 17): the one mapping the
converter and the golden fixtures share, so a fixture tests the names the
converter writes.

A BERT-family encoder (BertModel, XLMRobertaModel, the text tower of
ChineseCLIPModel) is qiao's text encoder with "arch": "bert"
(modalities/text/encoder.h): the word and token-type embeddings are its
front end's, the rest is the encoder trunk in its post-norm form
(sdk/nn/nn.h), one to one:

    embeddings.word_embeddings                -> text.piece_emb
    embeddings.token_type_embeddings          -> text.type_emb

    embeddings.position_embeddings[offset:]  -> <p>pos       (XLM-R's ids start at padding_idx + 1 = 2)
    embeddings.LayerNorm                      -> <p>ln_in
    encoder.layer.<l>.attention.self.query    -> <p>blocks.<l>.attn.q     (key -> k, value -> v)
    encoder.layer.<l>.attention.output.dense  -> <p>blocks.<l>.attn.proj
    encoder.layer.<l>.attention.output.LayerNorm -> <p>blocks.<l>.ln1
    encoder.layer.<l>.intermediate.dense      -> <p>blocks.<l>.mlp.fc
    encoder.layer.<l>.output.dense            -> <p>blocks.<l>.mlp.fc2
    encoder.layer.<l>.output.LayerNorm        -> <p>blocks.<l>.ln2

CLIP's towers (CLIPModel; ChineseCLIPModel's vision tower, whose text
tower is the BERT above) are pre-norm transformers, the trunk's default
form; the text tower is qiao's text encoder with "arch": "clip" (causal,
read at the end-of-text token), the vision tower qiao's image encoder with
"arch": "clip" (a class vector first, a LayerNorm before the blocks):

    <t>embeddings.token_embedding             -> text.piece_emb
    <t>embeddings.position_embedding          -> text.trunk.pos
    <t>final_layer_norm                       -> text.trunk.ln_f
    text_projection                           -> text.trunk.proj        (no bias)
    <v>embeddings.class_embedding             -> image.class_emb
    <v>embeddings.patch_embedding (C,3,p,p)   -> image.patch_embed.weight (C, 3*p*p), bias 0
    <v>embeddings.position_embedding          -> image.trunk.pos        (the class token's row first)
    <v>pre_layrnorm                           -> image.trunk.ln_in
    <v>post_layernorm                         -> image.trunk.ln_f       (read at the class token)
    visual_projection                         -> image.trunk.proj       (no bias)
    <x>encoder.layers.<l>.layer_norm1         -> <p>blocks.<l>.ln1
    <x>encoder.layers.<l>.self_attn.q_proj    -> <p>blocks.<l>.attn.q   (k_proj -> k, v_proj -> v)
    <x>encoder.layers.<l>.self_attn.out_proj  -> <p>blocks.<l>.attn.proj
    <x>encoder.layers.<l>.layer_norm2         -> <p>blocks.<l>.ln2
    <x>encoder.layers.<l>.mlp.fc1             -> <p>blocks.<l>.mlp.fc   (fc2 -> fc2)
    logit_scale                               -> logit_scale.text_image

Needs numpy only; the state dict's values may be torch tensors or arrays.
"""
import os

import numpy as np

BERT_BLOCK = {
    "attention.self.query": "attn.q",
    "attention.self.key": "attn.k",
    "attention.self.value": "attn.v",
    "attention.output.dense": "attn.proj",
    "attention.output.LayerNorm": "ln1",
    "intermediate.dense": "mlp.fc",
    "output.dense": "mlp.fc2",
    "output.LayerNorm": "ln2",
}


def _array(t):
    if hasattr(t, "detach"):
        t = t.detach().cpu().numpy()
    return np.asarray(t)


def _strip(state, src_prefix):
    """The state dict's entries under src_prefix ("" or "bert." / "roberta." /
    "text_model."), without it; LayerNorm's old gamma/beta names read as
    weight/bias."""
    out = {}
    for name, t in state.items():
        if not name.startswith(src_prefix):
            continue
        n = name[len(src_prefix):]
        n = n.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        out[n] = t
    return out


def bert_embeddings(state, src_prefix="", prefix="text."):
    """{qiao name: float32 array} of the front end: word and token-type embeddings."""
    s = _strip(state, src_prefix)
    return {prefix + "piece_emb.weight": np.ascontiguousarray(_array(s["embeddings.word_embeddings.weight"]),
                                                              dtype=np.float32),
            prefix + "type_emb.weight": np.ascontiguousarray(_array(s["embeddings.token_type_embeddings.weight"]),
                                                             dtype=np.float32)}


def bert_trunk(state, layers, max_tokens, position_offset=0, src_prefix="", prefix="text.trunk."):
    """{qiao name: float32 array} of a BERT-family encoder's trunk: positions
    (rows [position_offset, position_offset + max_tokens)), the embedding
    LayerNorm and `layers` post-norm blocks. KeyError names a missing
    tensor."""
    s = _strip(state, src_prefix)
    pos = _array(s["embeddings.position_embeddings.weight"])
    if pos.shape[0] < position_offset + max_tokens:
        raise ValueError(f"{pos.shape[0]} positions, need {position_offset + max_tokens}")
    out = {prefix + "pos": pos[position_offset:position_offset + max_tokens],
           prefix + "ln_in.weight": _array(s["embeddings.LayerNorm.weight"]),
           prefix + "ln_in.bias": _array(s["embeddings.LayerNorm.bias"])}
    for l in range(layers):
        for hf, q in BERT_BLOCK.items():
            for kind in ("weight", "bias"):
                out[f"{prefix}blocks.{l}.{q}.{kind}"] = _array(s[f"encoder.layer.{l}.{hf}.{kind}"])
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


CLIP_BLOCK = {
    "layer_norm1": "ln1",
    "self_attn.q_proj": "attn.q",
    "self_attn.k_proj": "attn.k",
    "self_attn.v_proj": "attn.v",
    "self_attn.out_proj": "attn.proj",
    "layer_norm2": "ln2",
    "mlp.fc1": "mlp.fc",
    "mlp.fc2": "mlp.fc2",
}


def _f32(out):
    return {k: np.ascontiguousarray(_array(v), dtype=np.float32) for k, v in out.items()}


def _clip_blocks(s, layers, prefix):
    out = {}
    for l in range(layers):
        for hf, q in CLIP_BLOCK.items():
            for kind in ("weight", "bias"):
                out[f"{prefix}blocks.{l}.{q}.{kind}"] = s[f"encoder.layers.{l}.{hf}.{kind}"]
    return out


def clip_text(state, layers, src_prefix="text_model.", prefix="text."):
    """{qiao name: float32 array} of CLIP's text tower, its projection included."""
    s = _strip(state, src_prefix)
    t = prefix + "trunk."
    out = {prefix + "piece_emb.weight": s["embeddings.token_embedding.weight"],
           t + "pos": s["embeddings.position_embedding.weight"],
           t + "ln_f.weight": s["final_layer_norm.weight"], t + "ln_f.bias": s["final_layer_norm.bias"],
           t + "proj.weight": state["text_projection.weight"]}
    out.update(_clip_blocks(s, layers, t))
    return _f32(out)


def clip_vision(state, layers, src_prefix="vision_model.", prefix="image."):
    """{qiao name: float32 array} of CLIP's (or Chinese-CLIP's) vision tower,
    its projection included. The patch convolution (C, 3, p, p) becomes the
    linear patch embedding over qiao's (channel, row, column) patch vectors,
    the same order, with a zero bias (CLIP's has none)."""
    s = _strip(state, src_prefix)
    t = prefix + "trunk."
    conv = _array(s["embeddings.patch_embedding.weight"])
    out = {prefix + "patch_embed.weight": conv.reshape(conv.shape[0], -1),
           prefix + "patch_embed.bias": np.zeros(conv.shape[0], dtype=np.float32),
           prefix + "class_emb": s["embeddings.class_embedding"],
           t + "pos": s["embeddings.position_embedding.weight"],
           t + "ln_in.weight": s["pre_layrnorm.weight"], t + "ln_in.bias": s["pre_layrnorm.bias"],
           t + "ln_f.weight": s["post_layernorm.weight"], t + "ln_f.bias": s["post_layernorm.bias"],
           t + "proj.weight": state["visual_projection.weight"]}
    out.update(_clip_blocks(s, layers, t))
    return _f32(out)


# ---- writing a qiao model file ------------------------------------------------------

QMOD_FORMAT = "qiao-model-1"  # models/model.h


def _bf16_bits(a):
    """float32 -> bfloat16 bit patterns (uint16), rounded to nearest even."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    r = ((u >> 16) & 1) + 0x7FFF
    return ((u + r) >> 16).astype(np.uint16)


def write_model(path, tensors, config, tokenizer=None, dtype="f32", extra_meta=None):
    """A qiao .safetensors model file: `tensors` {qiao name: float array}
    stored as dtype ("f32", "f16" or "bf16"), `config` the model config
    (metadata "qiao.config"), `tokenizer` None or (bytes, its config dict[,
    tensor name]): tensor "tokenizer.spm" (or the name given: a WordPiece
    vocab.txt is "tokenizer.vocab") and metadata "tokenizer.config"; bytes
    may instead be a dict {tensor name: bytes} (CLIP's vocab.json and
    merges.txt)."""
    import json
    import struct
    kinds = {"f32": ("F32", lambda a: np.ascontiguousarray(a, dtype="<f4")),
             "f16": ("F16", lambda a: np.ascontiguousarray(a, dtype="<f2")),
             "bf16": ("BF16", _bf16_bits)}
    if dtype not in kinds:
        raise ValueError(f"dtype must be one of {sorted(kinds)}")
    meta = {"qiao.config": json.dumps(config), "qiao.format": QMOD_FORMAT, "qiao.version": "convert-hf"}
    if extra_meta:
        meta.update(extra_meta)
    entries = []
    for name in sorted(tensors):
        code, conv = kinds[dtype]
        entries.append((name, code, conv(tensors[name])))
    if tokenizer is not None:
        model_bytes, tok_config = tokenizer[:2]
        if not isinstance(model_bytes, dict):
            model_bytes = {tokenizer[2] if len(tokenizer) > 2 else "tokenizer.spm": model_bytes}
        for tensor, b in sorted(model_bytes.items()):
            entries.append((tensor, "U8", np.frombuffer(b, dtype=np.uint8)))
        meta["tokenizer.config"] = json.dumps(tok_config)
    header = {"__metadata__": meta}
    blobs, off = [], 0
    for name, code, a in entries:
        b = a.tobytes()
        header[name] = {"dtype": code, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(path + ".tmp", path)


def read_safetensors(path):
    """(tensors {name: np.ndarray}, metadata {str: str}) of a .safetensors file
    (F32, F16, I32 and U8 tensors): what the scripts read back, numpy only."""
    import json
    import struct
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack_from("<Q", raw, 0)
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    kinds = {"F32": "<f4", "F16": "<f2", "I32": "<i4", "U8": "u1"}
    out = {}
    for name, h in header.items():
        a, b = h["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=kinds[h["dtype"]]).reshape(h["shape"])
    return out, meta
