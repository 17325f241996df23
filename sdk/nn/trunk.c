/* sdk/nn/trunk.c - the encoder trunk every tower shares (nn_trunk_*):
 * positions, pre-norm blocks, final layernorm, masked mean or max pooling,
 * projection and L2 normalization; and the variants an imported encoder
 * needs (nn.h). */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/profile.h"
#include "nn/nn.h"

#define PFIELD(m) (field_base + offsetof(nn_trunk_params, m))
#define AFIELD(m) (field_base + offsetof(nn_trunk_acts, m))

qiao_status nn_pool_from_json(const void *cjson_obj, const char *section, nn_pool dflt, nn_pool *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive((const cJSON *)cjson_obj, "pool");
    if (!v) {
        *out = dflt;
    } else if (cJSON_IsString(v) && !strcmp(v->valuestring, "mean")) {
        *out = NN_POOL_MEAN;
    } else if (cJSON_IsString(v) && !strcmp(v->valuestring, "max")) {
        *out = NN_POOL_MAX;
    } else if (cJSON_IsString(v) && !strcmp(v->valuestring, "first")) {
        *out = NN_POOL_FIRST;
    } else if (cJSON_IsString(v) && !strcmp(v->valuestring, "last")) {
        *out = NN_POOL_LAST;
    } else {
        return qc_error(QIAO_ERR_FORMAT, "%s config: '%s.pool' must be \"mean\", \"max\", \"first\" or \"last\"",
                        section, section);
    }
    return QIAO_OK;
}

static qiao_status check_dims(const nn_trunk_dims *d) {
    if ((d->pool != NN_POOL_MEAN && d->pool != NN_POOL_MAX && d->pool != NN_POOL_FIRST && d->pool != NN_POOL_LAST) ||
        (d->act != NN_ACT_GELU && d->act != NN_ACT_QUICK_GELU) ||
        (d->norm != NN_NORM_PRE && d->norm != NN_NORM_POST) ||
        (d->proj != NN_PROJ_BIAS && d->proj != NN_PROJ_NOBIAS && d->proj != NN_PROJ_NONE) || !(d->eps >= 0.0f) ||
        d->eps > 1.0f)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "encoder trunk: pooling %d, norm %d, projection %d, activation %d or eps %g unknown",
                        (int)d->pool, (int)d->norm, (int)d->proj, (int)d->act, (double)d->eps);
    if (d->proj == NN_PROJ_NONE && d->D != d->C)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "encoder trunk: without a projection the output width (%lld) must be the width (%lld)",
                        (long long)d->D, (long long)d->C);
    if (d->L < 0 || d->L > NN_MAX_LAYERS || d->C <= 0 || d->H <= 0 || d->C % d->H || d->F <= 0 || d->D <= 0 ||
        d->max_T <= 0 || d->T < 0 || d->T > d->max_T || d->B < 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "encoder trunk: need 0 <= layers <= %d, width divisible by heads, 0 <= tokens <= max_tokens "
                        "(got L=%lld C=%lld H=%lld T=%lld max_T=%lld)",
                        NN_MAX_LAYERS, (long long)d->L, (long long)d->C, (long long)d->H, (long long)d->T,
                        (long long)d->max_T);
    return QIAO_OK;
}

static nn_block_dims block_dims(const nn_trunk_dims *d, int64_t B, int64_t T) {
    return (nn_block_dims){B, T, d->C, d->F, d->H, d->norm, d->eps, d->act, d->causal};
}

static float trunk_eps(const nn_trunk_dims *d) {
    return d->eps > 0.0f ? d->eps : NN_LAYERNORM_EPS;
}

qiao_status nn_trunk_describe(qc_table *tab, const char *prefix, const nn_trunk_dims *d, size_t field_base) {
    qiao_status st = check_dims(d);
    if (st != QIAO_OK) return st;
    if ((st = qc_table_add_dims(tab, prefix, "pos", 2, d->max_T, d->C, 0, QC_INIT_NORMAL, 0.02f, 0, PFIELD(pos))) !=
        QIAO_OK)
        return st;
    if (d->ln_in && ((st = qc_table_add_dims(tab, prefix, "ln_in.weight", 1, d->C, 0, 0, QC_INIT_ONES, 0, QC_NO_DECAY,
                                             PFIELD(ln_in_w))) != QIAO_OK ||
                     (st = qc_table_add_dims(tab, prefix, "ln_in.bias", 1, d->C, 0, 0, QC_INIT_ZEROS, 0, QC_NO_DECAY,
                                             PFIELD(ln_in_b))) != QIAO_OK))
        return st;
    nn_block_dims bd = block_dims(d, d->B, d->T);
    for (int64_t l = 0; l < d->L; l++) {
        char bp[QC_NAME_MAX];
        snprintf(bp, sizeof bp, "%sblocks.%lld.", prefix, (long long)l);
        st = nn_block_describe(tab, bp, &bd, d->L, PFIELD(blocks) + (size_t)l * sizeof(nn_block_params));
        if (st != QIAO_OK) return st;
    }
    if (d->norm == NN_NORM_PRE &&
        ((st = qc_table_add_dims(tab, prefix, "ln_f.weight", 1, d->C, 0, 0, QC_INIT_ONES, 0, QC_NO_DECAY,
                                 PFIELD(ln_w))) != QIAO_OK ||
         (st = qc_table_add_dims(tab, prefix, "ln_f.bias", 1, d->C, 0, 0, QC_INIT_ZEROS, 0, QC_NO_DECAY,
                                 PFIELD(ln_b))) != QIAO_OK))
        return st;
    if (d->proj != NN_PROJ_NONE && (st = qc_table_add_dims(tab, prefix, "proj.weight", 2, d->D, d->C, 0, QC_INIT_NORMAL,
                                                           0.02f, 0, PFIELD(proj_w))) != QIAO_OK)
        return st;
    if (d->proj == NN_PROJ_BIAS && (st = qc_table_add_dims(tab, prefix, "proj.bias", 1, d->D, 0, 0, QC_INIT_ZEROS, 0,
                                                           QC_NO_DECAY, PFIELD(proj_b))) != QIAO_OK)
        return st;
    return QIAO_OK;
}

qiao_status nn_trunk_describe_acts(qc_table *tab, const char *prefix, const nn_trunk_dims *d, size_t field_base) {
    qiao_status st = check_dims(d);
    if (st != QIAO_OK) return st;
    const int64_t N = d->B * d->T;
    nn_block_dims bd = block_dims(d, d->B, d->T);
    if ((st = qc_table_add_dims(tab, prefix, "h0", 2, N, d->C, 0, QC_INIT_ZEROS, 0, 0, AFIELD(h0))) != QIAO_OK)
        return st;
    if (d->ln_in &&
        ((st = qc_table_add_dims(tab, prefix, "ln_in", 2, N, d->C, 0, QC_INIT_ZEROS, 0, 0, AFIELD(ln_in))) != QIAO_OK ||
         (st = qc_table_add_dims(tab, prefix, "ln_in_mean", 1, N, 0, 0, QC_INIT_ZEROS, 0, 0, AFIELD(ln_in_mean))) !=
             QIAO_OK ||
         (st = qc_table_add_dims(tab, prefix, "ln_in_rstd", 1, N, 0, 0, QC_INIT_ZEROS, 0, 0, AFIELD(ln_in_rstd))) !=
             QIAO_OK))
        return st;
    for (int64_t l = 0; l < d->L; l++) {
        char bp[QC_NAME_MAX];
        snprintf(bp, sizeof bp, "%sblocks.%lld.", prefix, (long long)l);
        st = nn_block_describe_acts(tab, bp, &bd, AFIELD(blocks) + (size_t)l * sizeof(nn_block_acts));
        if (st != QIAO_OK) return st;
    }
    if ((st = qc_table_add_dims(tab, prefix, "lnf", 2, N, d->C, 0, QC_INIT_ZEROS, 0, 0, AFIELD(lnf))) != QIAO_OK ||
        (st = qc_table_add_dims(tab, prefix, "lnf_mean", 1, N, 0, 0, QC_INIT_ZEROS, 0, 0, AFIELD(lnf_mean))) !=
            QIAO_OK ||
        (st = qc_table_add_dims(tab, prefix, "lnf_rstd", 1, N, 0, 0, QC_INIT_ZEROS, 0, 0, AFIELD(lnf_rstd))) !=
            QIAO_OK ||
        (st = qc_table_add_dims(tab, prefix, "pooled", 2, d->B, d->C, 0, QC_INIT_ZEROS, 0, 0, AFIELD(pooled))) !=
            QIAO_OK ||
        (st = qc_table_add_dims(tab, prefix, "pool_arg", 2, d->B, d->C, 0, QC_INIT_ZEROS, 0, 0, AFIELD(pool_arg))) !=
            QIAO_OK ||
        (st = qc_table_add_dims(tab, prefix, "proj", 2, d->B, d->D, 0, QC_INIT_ZEROS, 0, 0, AFIELD(proj))) != QIAO_OK ||
        (st = qc_table_add_dims(tab, prefix, "norm", 1, d->B, 0, 0, QC_INIT_ZEROS, 0, 0, AFIELD(norm))) != QIAO_OK ||
        (st = qc_table_add_dims(tab, prefix, "emb", 2, d->B, d->D, 0, QC_INIT_ZEROS, 0, 0, AFIELD(emb))) != QIAO_OK ||
        (st = qc_table_add_dims(tab, prefix, "flow0", 2, N, d->C, 0, QC_INIT_ZEROS, 0, 0, AFIELD(flow))) != QIAO_OK ||
        (st = qc_table_add_dims(tab, prefix, "flow1", 2, N, d->C, 0, QC_INIT_ZEROS, 0, 0,
                                AFIELD(flow) + sizeof(float *))) != QIAO_OK)
        return st;
    return QIAO_OK;
}

void nn_trunk_forward(const qb_exec *ex, nn_trunk_acts *a, const nn_trunk_params *p, const float *x,
                      const uint8_t *mask, const nn_trunk_dims *d) {
    const int64_t B = d->B, T = d->T, C = d->C, N = B * T;
    /* "text.trunk.fwd": the positions are "<prefix>pos" */
    const int tt = QC_PROF_BEGIN(ex->prof, QC_PROF_GROUP, p->pos, 1, "fwd");
    int t = QC_PROF_BEGIN(ex->prof, QC_PROF_ELEMENTWISE, p->pos, 0, "fwd");
    for (int64_t b = 0; b < B; b++) ex->ops->add(ex, a->h0 + b * T * C, x + b * T * C, p->pos, T * C);
    QC_PROF_END(ex->prof, t, 0);
    const float eps = trunk_eps(d);
    if (d->ln_in) nn_layernorm_forward_eps(ex, a->ln_in, a->ln_in_mean, a->ln_in_rstd, a->h0, p->ln_in_w, p->ln_in_b,
                                           N, C, eps);
    nn_block_dims bd = block_dims(d, B, T);
    const float *h = d->ln_in ? a->ln_in : a->h0;
    for (int64_t l = 0; l < d->L; l++) {
        nn_block_forward(ex, &a->blocks[l], &p->blocks[l], h, mask, &bd);
        h = a->blocks[l].out;
    }
    /* post-norm blocks end normalized: lnf is then h_L itself, kept where
     * every reader of the tokens looks */
    if (d->norm == NN_NORM_PRE)
        nn_layernorm_forward_eps(ex, a->lnf, a->lnf_mean, a->lnf_rstd, h, p->ln_w, p->ln_b, N, C, eps);
    else
        ex->ops->copy(ex, a->lnf, h, (size_t)(N * C) * sizeof(float));
    if (d->pool == NN_POOL_MAX)
        nn_pool_max_forward(ex, a->pooled, (int32_t *)a->pool_arg, a->lnf, mask, B, T, C);
    else if (d->pool == NN_POOL_FIRST)
        for (int64_t b = 0; b < B; b++) ex->ops->copy(ex, a->pooled + b * C, a->lnf + b * T * C, (size_t)C * sizeof(float));
    else if (d->pool == NN_POOL_LAST)
        nn_pool_last_forward(ex, a->pooled, a->lnf, mask, B, T, C);
    else
        nn_pool_mean_forward(ex, a->pooled, a->lnf, mask, B, T, C);
    if (d->proj == NN_PROJ_NONE)
        ex->ops->copy(ex, a->proj, a->pooled, (size_t)(B * C) * sizeof(float));
    else
        nn_linear_forward(ex, a->proj, a->pooled, p->proj_w, d->proj == NN_PROJ_BIAS ? p->proj_b : NULL, B, C, d->D);
    nn_l2norm_forward(ex, a->emb, a->norm, a->proj, B, d->D);
    QC_PROF_END(ex->prof, tt, 0);
}

void nn_trunk_backward(const qb_exec *ex, float *dx, nn_trunk_params *g, nn_trunk_acts *da, const float *demb,
                       const float *dtokens, const nn_trunk_acts *a, const nn_trunk_params *p, const float *x,
                       const uint8_t *mask, const nn_trunk_dims *d) {
    const int64_t B = d->B, T = d->T, C = d->C, N = B * T, L = d->L;
    (void)x;
    if (!demb && !dtokens) return;
    const int tt = QC_PROF_BEGIN(ex->prof, QC_PROF_GROUP, p->pos, 1, "bwd");
    /* da holds anything on entry: each gradient below is cleared or
     * overwritten by its first writer. da->proj and da->lnf are cleared
     * (the L2 norm's and the pooling's backwards accumulate, and pooling
     * writes only real tokens, or only the argmax); the rest are overwritten. */
    int t = QC_PROF_BEGIN(ex->prof, QC_PROF_ELEMENTWISE, NULL, 0, "zero.bwd");
    if (demb) {
        ex->ops->zero(ex, da->proj, (size_t)(B * d->D) * sizeof(float));
        ex->ops->zero(ex, da->lnf, (size_t)(N * C) * sizeof(float));
    }
    QC_PROF_END(ex->prof, t, 0);
    if (demb) {
        nn_l2norm_backward(ex, da->proj, demb, a->emb, a->norm, B, d->D);
        if (d->proj == NN_PROJ_NONE)
            ex->ops->copy(ex, da->pooled, da->proj, (size_t)(B * C) * sizeof(float));
        else
            nn_linear_backward_first(ex, da->pooled, g->proj_w, d->proj == NN_PROJ_BIAS ? g->proj_b : NULL, da->proj,
                                     a->pooled, p->proj_w, B, C, d->D);
        if (d->pool == NN_POOL_MAX)
            nn_pool_max_backward(ex, da->lnf, da->pooled, (const int32_t *)a->pool_arg, B, T, C);
        else if (d->pool == NN_POOL_FIRST)
            for (int64_t b = 0; b < B; b++) ex->ops->axpy(ex, da->lnf + b * T * C, 1.0f, da->pooled + b * C, C);
        else if (d->pool == NN_POOL_LAST)
            nn_pool_last_backward(ex, da->lnf, da->pooled, mask, B, T, C);
        else
            nn_pool_mean_backward(ex, da->lnf, da->pooled, mask, B, T, C);
    }
    if (dtokens) {
        if (demb)
            ex->ops->axpy(ex, da->lnf, 1.0f, dtokens, N * C);
        else
            ex->ops->copy(ex, da->lnf, dtokens, (size_t)(N * C) * sizeof(float));
    }
    /* The blocks read h_in: h0, or ln_in(h0) */
    const float *h_in = d->ln_in ? a->ln_in : a->h0;
    float *dh_in = d->ln_in ? da->ln_in : da->h0;
    const float *top = L ? a->blocks[L - 1].out : h_in;
    /* The gradient wrt the newest hidden state ping-pongs between two
     * buffers; the one wrt h_in lands in dh_in. Each is overwritten. A
     * post-norm trunk's top gradient is da->lnf itself (lnf = h_L). */
    float *dcur = L ? da->flow[0] : dh_in;
    if (d->norm == NN_NORM_PRE)
        nn_residual_layernorm_backward(ex, dcur, g->ln_w, g->ln_b, NULL, da->lnf, top, p->ln_w, a->lnf_mean,
                                       a->lnf_rstd, N, C);
    else if (L)
        dcur = da->lnf;
    else
        ex->ops->copy(ex, dcur, da->lnf, (size_t)(N * C) * sizeof(float));
    nn_block_dims bd = block_dims(d, B, T);
    for (int64_t l = L - 1; l >= 0; l--) {
        const float *in = l ? a->blocks[l - 1].out : h_in;
        float *dnext = l ? da->flow[(L - l) & 1] : dh_in;
        nn_block_backward(ex, dnext, &g->blocks[l], &da->blocks[l], dcur, &a->blocks[l], &p->blocks[l], in, &bd);
        dcur = dnext;
    }
    if (d->ln_in)
        nn_residual_layernorm_backward(ex, da->h0, g->ln_in_w, g->ln_in_b, NULL, da->ln_in, a->h0, p->ln_in_w,
                                       a->ln_in_mean, a->ln_in_rstd, N, C);
    /* h0 = x + pos: both receive dh0; pos once per sequence. */
    t = QC_PROF_BEGIN(ex->prof, QC_PROF_ELEMENTWISE, p->pos, 0, "bwd");
    for (int64_t b = 0; b < B; b++) {
        ex->ops->axpy(ex, dx + b * T * C, 1.0f, da->h0 + b * T * C, T * C);
        ex->ops->axpy(ex, g->pos, 1.0f, da->h0 + b * T * C, T * C);
    }
    QC_PROF_END(ex->prof, t, 0);
    QC_PROF_END(ex->prof, tt, 0);
}
