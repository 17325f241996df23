/* fusion/decoder.c - the caption decoder (see decoder.h): cross.h's causal
 * block stacked, with token and position embeddings, a context projection
 * and an output layer tied to the token embedding or its own. */
#include "fusion/decoder.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PFIELD(m) (field_base + offsetof(qf_decoder_params, m))
#define AFIELD(m) (field_base + offsetof(qf_decoder_acts, m))

qiao_status qf_decoder_check(const qf_decoder_config *cfg) {
    if (!cfg) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "decoder: no config");
    if (cfg->vocab < 2 || cfg->vocab > QF_DECODER_MAX_VOCAB)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "decoder: vocab %lld outside 2..%d", (long long)cfg->vocab,
                        QF_DECODER_MAX_VOCAB);
    if (cfg->layers < 1 || cfg->layers > QF_DECODER_MAX_LAYERS)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "decoder: %lld layers outside 1..%d", (long long)cfg->layers,
                        QF_DECODER_MAX_LAYERS);
    if (cfg->max_len < 1 || cfg->max_len > QF_DECODER_MAX_LEN)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "decoder: max_len %lld outside 1..%d", (long long)cfg->max_len,
                        QF_DECODER_MAX_LEN);
    if (cfg->width < 1 || cfg->heads < 1 || cfg->width % cfg->heads != 0 || cfg->mlp < 1 || cfg->ctx_width < 1 ||
        cfg->width > 65536 || cfg->mlp > 262144 || cfg->ctx_width > 65536)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "decoder: need width a multiple of heads, mlp and "
                        "ctx_width >= 1 (and sane: width <= 65536) "
                        "(got width %lld, heads %lld, mlp %lld, ctx_width %lld)",
                        (long long)cfg->width, (long long)cfg->heads, (long long)cfg->mlp, (long long)cfg->ctx_width);
    if (cfg->ctx_positions < 0 || cfg->ctx_positions > 65536)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "decoder: %lld context positions outside 0..65536",
                        (long long)cfg->ctx_positions);
    return QIAO_OK;
}

/* QIAO_ERR_INVALID_ARGUMENT unless the config has a position for each of Ty context tokens. */
static qiao_status ctx_positions_check(const qf_decoder_config *cfg, int64_t Ty) {
    if (cfg->ctx_positions > 0 && Ty > cfg->ctx_positions)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "decoder: %lld context tokens, the model has positions for %lld",
                        (long long)Ty, (long long)cfg->ctx_positions);
    return QIAO_OK;
}

/* ctx (B*Ty, C) += ctx_pos[t] for each row's token t. */
static void ctx_positions_add(float *ctx, const qf_decoder_params *p, const qf_decoder_config *cfg, int64_t B,
                              int64_t Ty) {
    if (cfg->ctx_positions == 0) return;
    const int64_t C = cfg->width;
    for (int64_t r = 0; r < B * Ty; r++) {
        const float *pt = p->ctx_pos + (r % Ty) * C;
        for (int64_t c = 0; c < C; c++) ctx[r * C + c] += pt[c];
    }
}

static qf_xblock_dims block_dims(const qf_decoder_config *cfg, int64_t B, int64_t T, int64_t Ty) {
    return (qf_xblock_dims){B, T, Ty, cfg->width, cfg->mlp, cfg->heads, true};
}

qiao_status qf_decoder_describe(qc_table *tab, const char *prefix, const qf_decoder_config *cfg, size_t field_base) {
    qiao_status st = qf_decoder_check(cfg);
    if (st != QIAO_OK) return st;
    const int64_t V = cfg->vocab, C = cfg->width;
    const uint32_t nd = QC_NO_DECAY;
    char name[QC_NAME_MAX];
#define ADD(nm, nd_, d0, d1, init, scale, flags, m)                                                                    \
    if ((st = qc_table_add_dims(tab, prefix, nm, nd_, d0, d1, 0, init, scale, flags, PFIELD(m))) != QIAO_OK) return st
    ADD("tok", 2, V, C, QC_INIT_NORMAL, 0.02f, 0, tok);
    ADD("pos", 2, cfg->max_len, C, QC_INIT_NORMAL, 0.01f, 0, pos);
    ADD("ctx.weight", 2, C, cfg->ctx_width, QC_INIT_NORMAL, 0.02f, 0, ctx_w);
    ADD("ctx.bias", 1, C, 0, QC_INIT_ZEROS, 0, nd, ctx_b);
    if (cfg->ctx_positions > 0) ADD("ctx.pos", 2, cfg->ctx_positions, C, QC_INIT_SINCOS, 1.0f, nd, ctx_pos);
    const qf_xblock_dims bd = block_dims(cfg, 1, 1, 1);
    for (int64_t l = 0; l < cfg->layers; l++) {
        snprintf(name, sizeof name, "%sblocks.%lld.", prefix, (long long)l);
        if ((st = qf_xblock_describe(tab, name, &bd, cfg->layers, PFIELD(blk[l]))) != QIAO_OK) return st;
    }
    ADD("ln_f.weight", 1, C, 0, QC_INIT_ONES, 0, nd, lnf_w);
    ADD("ln_f.bias", 1, C, 0, QC_INIT_ZEROS, 0, nd, lnf_b);
    if (!cfg->tied) ADD("out.weight", 2, V, C, QC_INIT_NORMAL, 0.02f, 0, out_w);
    ADD("out.bias", 1, V, 0, QC_INIT_ZEROS, 0, nd, out_b);
#undef ADD
    return QIAO_OK;
}

qiao_status qf_decoder_describe_acts(qc_table *tab, const char *prefix, const qf_decoder_config *cfg, int64_t B,
                                     int64_t T, int64_t Ty, size_t field_base) {
    qiao_status st = qf_decoder_check(cfg);
    if (st != QIAO_OK) return st;
    if (B < 1 || T < 1 || T > cfg->max_len || Ty < 1)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "decoder: %lld rows of %lld positions (max_len %lld) reading %lld "
                        "context tokens",
                        (long long)B, (long long)T, (long long)cfg->max_len, (long long)Ty);
    if ((st = ctx_positions_check(cfg, Ty)) != QIAO_OK) return st;
    const int64_t N = B * T, C = cfg->width;
    char name[QC_NAME_MAX];
#define ADDA(nm, d0, d1, m)                                                                                            \
    if ((st = qc_table_add_dims(tab, prefix, nm, (d1) > 0 ? 2 : 1, d0, d1, 0, QC_INIT_ZEROS, 0, 0, AFIELD(m))) !=      \
        QIAO_OK)                                                                                                       \
    return st
    ADDA("ctx", B * Ty, C, ctx);
    ADDA("x", N, C, x);
    const qf_xblock_dims bd = block_dims(cfg, B, T, Ty);
    for (int64_t l = 0; l < cfg->layers; l++) {
        snprintf(name, sizeof name, "%sblocks.%lld.", prefix, (long long)l);
        if ((st = qf_xblock_describe_acts(tab, name, &bd, AFIELD(blk[l]))) != QIAO_OK) return st;
    }
    ADDA("lnf", N, C, lnf);
    ADDA("lnf_mean", N, 0, lnf_mean);
    ADDA("lnf_rstd", N, 0, lnf_rstd);
    ADDA("logits", N, cfg->vocab, logits);
    ADDA("dctx", B * Ty, C, dctx);
    ADDA("flow0", N, C, flow0);
    ADDA("flow1", N, C, flow1);
#undef ADDA
    return QIAO_OK;
}

qiao_status qf_decoder_ids_check(const qf_decoder_config *cfg, const int32_t *ids, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= cfg->vocab)
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "decoder: token %lld is id %d, outside the vocabulary [0, %lld)",
                            (long long)i, ids[i], (long long)cfg->vocab);
    return QIAO_OK;
}

static const float *out_weight(const qf_decoder_params *p, const qf_decoder_config *cfg) {
    return cfg->tied ? p->tok : p->out_w;
}

void qf_decoder_forward(const qb_exec *ex, qf_decoder_acts *a, const qf_decoder_params *p, const int32_t *ids,
                        const float *y, const uint8_t *y_mask, const qf_decoder_config *cfg, int64_t B, int64_t T,
                        int64_t Ty) {
    const int64_t C = cfg->width, N = B * T;
    nn_linear_forward(ex, a->ctx, y, p->ctx_w, p->ctx_b, B * Ty, cfg->ctx_width, C);
    ctx_positions_add(a->ctx, p, cfg, B, Ty);
    nn_embedding_forward(ex, a->x, ids, p->tok, N, cfg->vocab, C);
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            float *row = a->x + (b * T + t) * C;
            const float *pe = p->pos + t * C;
            for (int64_t c = 0; c < C; c++)
                row[c] += pe[c];
        }
    const qf_xblock_dims bd = block_dims(cfg, B, T, Ty);
    const float *x = a->x;
    for (int64_t l = 0; l < cfg->layers; l++) {
        qf_xblock_forward(ex, &a->blk[l], &p->blk[l], x, NULL, NULL, a->ctx, y_mask, NULL, &bd);
        x = a->blk[l].out;
    }
    nn_layernorm_forward(ex, a->lnf, a->lnf_mean, a->lnf_rstd, x, p->lnf_w, p->lnf_b, N, C);
    nn_linear_forward(ex, a->logits, a->lnf, out_weight(p, cfg), p->out_b, N, C, cfg->vocab);
}

void qf_decoder_backward(const qb_exec *ex, float *dy, qf_decoder_params *g, qf_decoder_acts *da, const float *dlogits,
                         const qf_decoder_acts *a, const qf_decoder_params *p, const int32_t *ids, const float *y,
                         const qf_decoder_config *cfg, int64_t B, int64_t T, int64_t Ty) {
    const int64_t C = cfg->width, N = B * T, L = cfg->layers;
    /* the output layer (into the token embedding's gradient when tied) */
    nn_linear_backward(ex, da->lnf, cfg->tied ? g->tok : g->out_w, g->out_b, dlogits, a->lnf, out_weight(p, cfg), N, C,
                       cfg->vocab);
    float *dx = da->flow0, *dxn = da->flow1;
    memset(dx, 0, (size_t)(N * C) * sizeof(float));
    nn_layernorm_backward(ex, dx, g->lnf_w, g->lnf_b, da->lnf, a->blk[L - 1].out, p->lnf_w, a->lnf_mean, a->lnf_rstd, N,
                          C);
    const qf_xblock_dims bd = block_dims(cfg, B, T, Ty);
    for (int64_t l = L - 1; l >= 0; l--) {
        const float *xin = l ? a->blk[l - 1].out : a->x;
        memset(dxn, 0, (size_t)(N * C) * sizeof(float));
        qf_xblock_backward(ex, dxn, da->dctx, NULL, NULL, &g->blk[l], &da->blk[l], dx, &a->blk[l], &p->blk[l], xin,
                           a->ctx, &bd);
        float *t = dx;
        dx = dxn, dxn = t;
    }
    /* x_0 = tok[ids] + pos */
    nn_embedding_backward(ex, g->tok, dx, ids, N, cfg->vocab, C);
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            const float *row = dx + (b * T + t) * C;
            float *gp = g->pos + t * C;
            for (int64_t c = 0; c < C; c++)
                gp[c] += row[c];
        }
    if (cfg->ctx_positions > 0)
        for (int64_t r = 0; r < B * Ty; r++) {
            float *gp = g->ctx_pos + (r % Ty) * C;
            for (int64_t c = 0; c < C; c++) gp[c] += da->dctx[r * C + c];
        }
    nn_linear_backward(ex, dy, g->ctx_w, g->ctx_b, da->dctx, y, p->ctx_w, B * Ty, cfg->ctx_width, C);
}

/* ---- the KV cache ----------------------------------------------------------
 */

void qf_decoder_cache_free(qf_decoder_cache *c) {
    if (!c) return;
    for (int l = 0; l < QF_DECODER_MAX_LAYERS; l++)
        free(c->k[l]), free(c->v[l]), free(c->ck[l]), free(c->cv[l]);
    free(c->ctx_mask), free(c->x), free(c->ln), free(c->q), free(c->kn), free(c->vn), free(c->atty), free(c->tmp);
    free(c->ctx), free(c->lnc), free(c->fc), free(c->fc_gelu), free(c->logits), free(c->att), free(c->self_mask);
    free(c->gather), free(c->mean), free(c->rstd);
    memset(c, 0, sizeof *c);
}

static float *fl(int64_t n, bool *ok) {
    float *p = *ok ? calloc((size_t)(n > 0 ? n : 1), sizeof(float)) : NULL;
    if (!p) *ok = false;
    return p;
}

qiao_status qf_decoder_cache_init(qf_decoder_cache *c, const qf_decoder_config *cfg, int64_t B, int64_t T_max,
                                  int64_t Ty) {
    memset(c, 0, sizeof *c);
    qiao_status st = qf_decoder_check(cfg);
    if (st != QIAO_OK) return st;
    if (B < 1 || B > 4096 || T_max < 1 || T_max > cfg->max_len || Ty < 1 || Ty > 65536)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "decoder cache: %lld rows (1..4096) of %lld positions "
                        "(1..max_len %lld) reading %lld "
                        "context tokens",
                        (long long)B, (long long)T_max, (long long)cfg->max_len, (long long)Ty);
    if ((st = ctx_positions_check(cfg, Ty)) != QIAO_OK) return st;
    const int64_t C = cfg->width, BT = B * T_max * C, BY = B * Ty * C;
    /* gather reorders both the self-attention cache and the context's */
    const int64_t Tk = T_max > Ty ? T_max : Ty;
    c->B = B, c->T_max = T_max, c->Ty = Ty;
    bool ok = true;
    for (int64_t l = 0; l < cfg->layers; l++)
        c->k[l] = fl(BT, &ok), c->v[l] = fl(BT, &ok), c->ck[l] = fl(BY, &ok), c->cv[l] = fl(BY, &ok);
    c->x = fl(B * C, &ok), c->ln = fl(B * C, &ok), c->q = fl(B * C, &ok), c->kn = fl(B * C, &ok);
    c->vn = fl(B * C, &ok), c->atty = fl(B * C, &ok), c->tmp = fl(B * C, &ok);
    c->ctx = fl(BY, &ok), c->lnc = fl(BY, &ok);
    c->fc = fl(B * cfg->mlp, &ok), c->fc_gelu = fl(B * cfg->mlp, &ok), c->logits = fl(B * cfg->vocab, &ok);
    c->att = fl(B * cfg->heads * Tk, &ok), c->gather = fl(B * Tk * C, &ok);
    c->mean = fl(B * Ty, &ok), c->rstd = fl(B * Ty, &ok);
    if (ok) ok = (c->ctx_mask = calloc((size_t)(B * Ty), 1)) && (c->self_mask = calloc((size_t)(B * T_max), 1));
    if (!ok) {
        qf_decoder_cache_free(c);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "decoder cache: out of memory for %lld rows of %lld positions",
                        (long long)B, (long long)T_max);
    }
    return QIAO_OK;
}

void qf_decoder_cache_start(const qb_exec *ex, qf_decoder_cache *c, const qf_decoder_params *p, const float *y,
                            const uint8_t *y_mask, const qf_decoder_config *cfg) {
    const int64_t B = c->B, Ty = c->Ty, C = cfg->width, NY = B * Ty;
    nn_linear_forward(ex, c->ctx, y, p->ctx_w, p->ctx_b, NY, cfg->ctx_width, C);
    ctx_positions_add(c->ctx, p, cfg, B, Ty);
    for (int64_t l = 0; l < cfg->layers; l++) {
        const qf_xblock_params *bp = &p->blk[l];
        nn_layernorm_forward(ex, c->lnc, c->mean, c->rstd, c->ctx, bp->lnc_w, bp->lnc_b, NY, C);
        float *const kv[2] = {c->ck[l], c->cv[l]};
        const float *const kv_w[2] = {bp->ck_w, bp->cv_w}, *const kv_b[2] = {bp->ck_b, bp->cv_b};
        nn_linears_forward(ex, 2, kv, NULL, c->lnc, kv_w, kv_b, NY, C, C);
    }
    for (int64_t i = 0; i < NY; i++)
        c->ctx_mask[i] = y_mask ? y_mask[i] != 0 : 1;
    memset(c->self_mask, 0, (size_t)(B * c->T_max));
    c->len = 0;
}

/* Row b of every per-row cache array takes row parents[b]'s contents. */
static void cache_reorder(qf_decoder_cache *c, const int64_t *parents, const qf_decoder_config *cfg) {
    const int64_t B = c->B, T = c->T_max, C = cfg->width, n = c->len * C;
    float *const *bufs[4] = {c->k, c->v, c->ck, c->cv};
    const int64_t span[4] = {T * C, T * C, c->Ty * C, c->Ty * C}, used[4] = {n, n, c->Ty * C, c->Ty * C};
    for (int which = 0; which < 4; which++)
        for (int64_t l = 0; l < cfg->layers; l++) {
            float *buf = bufs[which][l];
            for (int64_t b = 0; b < B; b++)
                memcpy(c->gather + b * span[which], buf + parents[b] * span[which],
                       (size_t)used[which] * sizeof(float));
            for (int64_t b = 0; b < B; b++)
                memcpy(buf + b * span[which], c->gather + b * span[which], (size_t)used[which] * sizeof(float));
        }
    uint8_t *m = (uint8_t *)c->gather;
    for (int64_t b = 0; b < B; b++)
        memcpy(m + b * c->Ty, c->ctx_mask + parents[b] * c->Ty, (size_t)c->Ty);
    memcpy(c->ctx_mask, m, (size_t)(B * c->Ty));
}

qiao_status qf_decoder_step(const qb_exec *ex, qf_decoder_cache *c, const qf_decoder_params *p, const int32_t *ids,
                            const int64_t *parents, const qf_decoder_config *cfg, const float **logits) {
    const int64_t B = c->B, C = cfg->width, F = cfg->mlp, T = c->T_max, pos = c->len;
    if (pos >= T)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "decoder: the cache holds %lld positions and all are written",
                        (long long)T);
    qiao_status st = qf_decoder_ids_check(cfg, ids, B);
    if (st != QIAO_OK) return st;
    if (parents) {
        bool same = true;
        for (int64_t b = 0; b < B; b++) {
            if (parents[b] < 0 || parents[b] >= B)
                return qc_error(QIAO_ERR_INVALID_ARGUMENT, "decoder: row %lld continues row %lld of %lld", (long long)b,
                                (long long)parents[b], (long long)B);
            same = same && parents[b] == b;
        }
        if (!same) cache_reorder(c, parents, cfg);
    }
    nn_embedding_forward(ex, c->x, ids, p->tok, B, cfg->vocab, C);
    for (int64_t b = 0; b < B; b++) {
        for (int64_t i = 0; i < C; i++)
            c->x[b * C + i] += p->pos[pos * C + i];
        c->self_mask[b * T + pos] = 1;
    }
    for (int64_t l = 0; l < cfg->layers; l++) {
        const qf_xblock_params *bp = &p->blk[l];
        /* self-attention over the positions written, this one included */
        nn_layernorm_forward(ex, c->ln, c->mean, c->rstd, c->x, bp->ln1_w, bp->ln1_b, B, C);
        float *const qkv[3] = {c->q, c->kn, c->vn};
        const float *const qkv_w[3] = {bp->q_w, bp->k_w, bp->v_w}, *const qkv_b[3] = {bp->q_b, bp->k_b, bp->v_b};
        nn_linears_forward(ex, 3, qkv, NULL, c->ln, qkv_w, qkv_b, B, C, C);
        for (int64_t b = 0; b < B; b++) {
            memcpy(c->k[l] + (b * T + pos) * C, c->kn + b * C, (size_t)C * sizeof(float));
            memcpy(c->v[l] + (b * T + pos) * C, c->vn + b * C, (size_t)C * sizeof(float));
        }
        nn_attention_forward(ex, c->atty, c->att, c->q, c->k[l], c->v[l], c->self_mask, NULL, B, 1, T, C, cfg->heads,
                             false);
        nn_linear_forward(ex, c->tmp, c->atty, bp->proj_w, bp->proj_b, B, C, C);
        nn_residual_forward(ex, c->x, c->x, c->tmp, B * C);
        /* cross-attention to the context */
        nn_layernorm_forward(ex, c->ln, c->mean, c->rstd, c->x, bp->ln2_w, bp->ln2_b, B, C);
        nn_linear_forward(ex, c->q, c->ln, bp->cq_w, bp->cq_b, B, C, C);
        nn_attention_forward(ex, c->atty, c->att, c->q, c->ck[l], c->cv[l], c->ctx_mask, NULL, B, 1, c->Ty, C,
                             cfg->heads, false);
        nn_linear_forward(ex, c->tmp, c->atty, bp->cproj_w, bp->cproj_b, B, C, C);
        nn_residual_forward(ex, c->x, c->x, c->tmp, B * C);
        /* MLP */
        nn_layernorm_forward(ex, c->ln, c->mean, c->rstd, c->x, bp->ln3_w, bp->ln3_b, B, C);
        const float *const fc_w = bp->fc_w, *const fc_b = bp->fc_b;
        nn_linears_forward(ex, 1, &c->fc, &c->fc_gelu, c->ln, &fc_w, &fc_b, B, C, F);
        nn_linear_forward(ex, c->tmp, c->fc_gelu, bp->fc2_w, bp->fc2_b, B, F, C);
        nn_residual_forward(ex, c->x, c->x, c->tmp, B * C);
    }
    nn_layernorm_forward(ex, c->ln, c->mean, c->rstd, c->x, p->lnf_w, p->lnf_b, B, C);
    nn_linear_forward(ex, c->logits, c->ln, out_weight(p, cfg), p->out_b, B, C, cfg->vocab);
    c->len = pos + 1;
    *logits = c->logits;
    return QIAO_OK;
}
