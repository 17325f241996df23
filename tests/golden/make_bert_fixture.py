#!/usr/bin/env python3
"""Writes the golden fixture of the post-norm encoder trunk against
transformers' own BERT and XLM-RoBERTa (issue 17).

Regenerate (needs transformers 4.47.1, which scripts/install-deps.sh puts in
.venv-peer; CI reads the committed fixture and needs none of it):

    .venv-peer/bin/python3 tests/golden/make_bert_fixture.py tests/data/bert_golden.safetensors

Two tiny random models are built offline from transformers' config classes
(no hub): a BertModel read at its [CLS] token (bge's pooling) and an
XLMRobertaModel read as the masked mean (e5's), both with LayerNorm eps
1e-12 and GELU. scripts/qiao_hf.py maps their weights to qiao's trunk names
(the converter's mapping). The trunk's input x is the front end's part,
word + token-type embeddings, computed here; the trunk adds the positions
(XLM-R's from row 2: its position ids start after the padding index).

Per case "<case>." (bert, xlmr):
    ids (I32 (B, T)), x (B, T, C), mask (U8 (B, T)), R_tok (B, T, C) (zero
    on padding), R_emb (B, C), the text encoder's parameters under
    "<case>.text." (piece_emb, type_emb, trunk.*: a model file's names),
    hidden (B, T, C): transformers' last_hidden_state, zero on padding (what
        a padded position holds is the implementation's business),
    emb (B, C): l2norm of the [CLS] vector or of the masked mean,
    grad.x and grad.<param>: gradients of sum(R_tok hidden) + sum(R_emb emb)
        (the word and type embeddings' through x).
All in float64 rounded to float32; the script prints how far transformers in
float32 lands from it, on the C test's scale.
"""
import math
import os
import sys

import numpy as np
import torch
from transformers import BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench", "peer"))
import qiao_hf  # noqa: E402
from qiao_peer import write_safetensors  # noqa: E402

FORMAT_VERSION = "2"  # 2: ids and the front end, names as a model file has them
SEED = 20261207
B, T, C, L, H, F, V = 3, 7, 16, 2, 2, 32, 60
LENGTHS = [7, 4, 2]
ATOL, RTOL = 1e-5, 1e-4  # the C test's bound, printed against


def build(case, g):
    common = dict(vocab_size=V, hidden_size=C, num_hidden_layers=L, num_attention_heads=H, intermediate_size=F,
                  hidden_act="gelu", layer_norm_eps=1e-12, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0, type_vocab_size=2, attn_implementation="eager")
    if case == "bert":
        model = BertModel(BertConfig(max_position_embeddings=16, **common), add_pooling_layer=False)
    else:
        model = XLMRobertaModel(XLMRobertaConfig(max_position_embeddings=T + 2 + 3, pad_token_id=1, **common),
                                add_pooling_layer=False)
    # O(1) activations (not the 0.02 init): every layer contributes, a wrong term shows
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[1]))
            elif "LayerNorm.weight" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def run(model, case, ids, mask, R_tok, R_emb, dtype):
    """hidden, emb and the gradients, through transformers in dtype."""
    m = model.to(dtype)
    for p in m.parameters():
        p.grad = None
    emb_layer = m.embeddings
    # x = word + token type: what qiao's text front end computes
    x = emb_layer.word_embeddings(ids) + emb_layer.token_type_embeddings(torch.zeros_like(ids))
    x.retain_grad()
    # the rest of transformers' embeddings (positions, LayerNorm), as BertEmbeddings / XLMRobertaEmbeddings do
    if case == "bert":
        pos_ids = torch.arange(T)[None, :].expand(B, -1)
    else:
        pos_ids = torch.cumsum(mask, dim=1) * mask + emb_layer.padding_idx
        pos_ids = torch.where(mask.bool(), pos_ids, torch.full_like(pos_ids, emb_layer.padding_idx))
    h = emb_layer.LayerNorm(x + emb_layer.position_embeddings(pos_ids))
    ext = m.get_extended_attention_mask(mask, (B, T))
    hidden = m.encoder(h, attention_mask=ext).last_hidden_state
    if case == "bert":
        pooled = hidden[:, 0]
    else:
        w = mask.to(dtype)[:, :, None]
        pooled = (hidden * w).sum(1) / w.sum(1)
    emb = torch.nn.functional.normalize(pooled, dim=-1)
    loss = (R_tok.to(dtype) * hidden).sum() + (R_emb.to(dtype) * emb).sum()
    loss.backward()
    # the same forward through transformers' own entry point: the fixture's
    # split into front end and trunk must not change the model
    with torch.no_grad():
        full = m(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).last_hidden_state
    real = mask.bool()[:, :, None]
    assert torch.allclose(torch.where(real, full, 0 * full), torch.where(real, hidden, 0 * hidden).detach(),
                          atol=1e-10 if dtype == torch.float64 else 1e-5)
    return m, x, hidden.detach(), emb.detach()


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: .venv-peer/bin/python3 tests/golden/make_bert_fixture.py OUT.safetensors")
    torch.use_deterministic_algorithms(True)
    g = torch.Generator().manual_seed(SEED)
    tensors = []
    for case in ("bert", "xlmr"):
        model = build(case, g)
        ids = torch.randint(3, V, (B, T), generator=g)
        mask = torch.zeros(B, T, dtype=torch.long)
        for b, n in enumerate(LENGTHS):
            mask[b, :n] = 1
        ids = torch.where(mask.bool(), ids, torch.full_like(ids, 1 if case == "xlmr" else 0))
        R_tok = torch.randn(B, T, C, generator=g) * mask[:, :, None]
        R_emb = torch.randn(B, C, generator=g)
        offset = 2 if case == "xlmr" else 0
        res = {}
        for dtype in (torch.float64, torch.float32):
            m, x, hidden, emb = run(build_copy(model), case, ids, mask, R_tok, R_emb, dtype)
            state = {n: p for n, p in m.state_dict().items()}
            grads = {n: p.grad for n, p in m.named_parameters() if p.grad is not None}
            gstate = grads_state(grads, state)
            params = dict(qiao_hf.bert_embeddings(state), **qiao_hf.bert_trunk(state, L, T, offset))
            gparams = dict(qiao_hf.bert_embeddings(gstate), **qiao_hf.bert_trunk(gstate, L, T, offset))
            res[dtype] = dict(x=x, hidden=hidden, emb=emb, grad_x=x.grad.detach(), params=params,
                              gparams=gparams)
        ref, f32 = res[torch.float64], res[torch.float32]
        worst = 0.0
        for name in ("hidden", "emb", "grad_x"):
            r, a = ref[name].double(), f32[name].double()
            worst = max(worst, ((a - r).abs() / (ATOL + RTOL * r.abs())).max().item())
        for n in ref["gparams"]:
            r, a = ref["gparams"][n].astype(np.float64), f32["gparams"][n].astype(np.float64)
            worst = max(worst, float((np.abs(a - r) / (ATOL + RTOL * np.abs(r))).max()))
        print(f"{case}: transformers float32 against the float64 reference: {worst:.3f} of the C test's bound")
        p = case + "."
        tensors += [(p + "ids", ids.to(torch.int32).numpy()),
                    (p + "x", ref["x"].detach().float().numpy()), (p + "mask", mask.to(torch.uint8).numpy()),
                    (p + "R_tok", R_tok.numpy()), (p + "R_emb", R_emb.numpy()),
                    (p + "hidden", (ref["hidden"] * mask[:, :, None]).float().numpy()), (p + "emb", ref["emb"].float().numpy()),
                    (p + "grad.x", ref["grad_x"].float().numpy())]
        tensors += [(p + n, v) for n, v in ref["params"].items()]
        tensors += [(p + "grad." + n, v) for n, v in ref["gparams"].items()]
    meta = {"format_version": FORMAT_VERSION, "generator": "tests/golden/make_bert_fixture.py",
            "transformers": __import__("transformers").__version__, "torch": torch.__version__, "seed": str(SEED),
            "reference_dtype": "float64 (rounded to float32)",
            "loss": "sum(R_tok * last_hidden_state) + sum(R_emb * l2norm(pool))"}
    write_safetensors(sys.argv[1], tensors, meta)
    print(f"wrote {sys.argv[1]}: {len(tensors)} tensors, {os.path.getsize(sys.argv[1])} bytes")


def build_copy(model):
    """A float64-capable copy, so the float32 run starts from the same values."""
    import copy
    return copy.deepcopy(model).double()


def grads_state(grads, state):
    """The gradients under the state dict's names (zeros where none came)."""
    return {n: grads.get(n, torch.zeros_like(t)) for n, t in state.items()}


if __name__ == "__main__":
    main()
