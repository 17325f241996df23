/* sdk/nn/trunk.c - the encoder trunk every tower shares (nn_trunk_*):
 * positions, pre-norm blocks, final layernorm, masked mean or max pooling,
 * projection and L2 normalization. */
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
    } else {
        return qc_error(QIAO_ERR_FORMAT, "%s config: '%s.pool' must be \"mean\" or \"max\"", section, section);
    }
    return QIAO_OK;
}

static qiao_status check_dims(const nn_trunk_dims *d) {
    if (d->L < 0 || d->L > NN_MAX_LAYERS || d->C <= 0 || d->H <= 0 || d->C % d->H || d->F <= 0 || d->D <= 0 ||
        d->max_T <= 0 || d->T < 0 || d->T > d->max_T || d->B < 0 || (d->pool != NN_POOL_MEAN && d->pool != NN_POOL_MAX))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "encoder trunk: need 0 <= layers <= %d, width divisible by heads, 0 <= tokens <= max_tokens "
                        "(got L=%lld C=%lld H=%lld T=%lld max_T=%lld)",
                        NN_MAX_LAYERS, (long long)d->L, (long long)d->C, (long long)d->H, (long long)d->T,
                        (long long)d->max_T);
    return QIAO_OK;
}

qiao_status nn_trunk_describe(qc_table *tab, const char *prefix, const nn_trunk_dims *d, size_t field_base) {
    qiao_status st = check_dims(d);
    if (st != QIAO_OK) return st;
    if ((st = qc_table_add_dims(tab, prefix, "pos", 2, d->max_T, d->C, 0, QC_INIT_NORMAL, 0.02f, 0, PFIELD(pos))) !=
        QIAO_OK)
        return st;
    nn_block_dims bd = {d->B, d->T, d->C, d->F, d->H};
    for (int64_t l = 0; l < d->L; l++) {
        char bp[QC_NAME_MAX];
        snprintf(bp, sizeof bp, "%sblocks.%lld.", prefix, (long long)l);
        st = nn_block_describe(tab, bp, &bd, d->L, PFIELD(blocks) + (size_t)l * sizeof(nn_block_params));
        if (st != QIAO_OK) return st;
    }
    if ((st = qc_table_add_dims(tab, prefix, "ln_f.weight", 1, d->C, 0, 0, QC_INIT_ONES, 0, QC_NO_DECAY,
                                PFIELD(ln_w))) != QIAO_OK ||
        (st = qc_table_add_dims(tab, prefix, "ln_f.bias", 1, d->C, 0, 0, QC_INIT_ZEROS, 0, QC_NO_DECAY,
                                PFIELD(ln_b))) != QIAO_OK ||
        (st = qc_table_add_dims(tab, prefix, "proj.weight", 2, d->D, d->C, 0, QC_INIT_NORMAL, 0.02f, 0,
                                PFIELD(proj_w))) != QIAO_OK ||
        (st = qc_table_add_dims(tab, prefix, "proj.bias", 1, d->D, 0, 0, QC_INIT_ZEROS, 0, QC_NO_DECAY,
                                PFIELD(proj_b))) != QIAO_OK)
        return st;
    return QIAO_OK;
}

qiao_status nn_trunk_describe_acts(qc_table *tab, const char *prefix, const nn_trunk_dims *d, size_t field_base) {
    qiao_status st = check_dims(d);
    if (st != QIAO_OK) return st;
    const int64_t N = d->B * d->T;
    nn_block_dims bd = {d->B, d->T, d->C, d->F, d->H};
    if ((st = qc_table_add_dims(tab, prefix, "h0", 2, N, d->C, 0, QC_INIT_ZEROS, 0, 0, AFIELD(h0))) != QIAO_OK)
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
    nn_block_dims bd = {B, T, C, d->F, d->H};
    const float *h = a->h0;
    for (int64_t l = 0; l < d->L; l++) {
        nn_block_forward(ex, &a->blocks[l], &p->blocks[l], h, mask, &bd);
        h = a->blocks[l].out;
    }
    nn_layernorm_forward(ex, a->lnf, a->lnf_mean, a->lnf_rstd, h, p->ln_w, p->ln_b, N, C);
    if (d->pool == NN_POOL_MAX)
        nn_pool_max_forward(ex, a->pooled, (int32_t *)a->pool_arg, a->lnf, mask, B, T, C);
    else
        nn_pool_mean_forward(ex, a->pooled, a->lnf, mask, B, T, C);
    nn_linear_forward(ex, a->proj, a->pooled, p->proj_w, p->proj_b, B, C, d->D);
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
        nn_linear_backward_first(ex, da->pooled, g->proj_w, g->proj_b, da->proj, a->pooled, p->proj_w, B, C, d->D);
        if (d->pool == NN_POOL_MAX)
            nn_pool_max_backward(ex, da->lnf, da->pooled, (const int32_t *)a->pool_arg, B, T, C);
        else
            nn_pool_mean_backward(ex, da->lnf, da->pooled, mask, B, T, C);
    }
    if (dtokens) {
        if (demb)
            ex->ops->axpy(ex, da->lnf, 1.0f, dtokens, N * C);
        else
            ex->ops->copy(ex, da->lnf, dtokens, (size_t)(N * C) * sizeof(float));
    }
    const float *top = L ? a->blocks[L - 1].out : a->h0;
    /* The gradient wrt the newest hidden state ping-pongs between two
     * buffers; the one wrt h0 lands in da->h0. Each is overwritten. */
    float *dcur = L ? da->flow[0] : da->h0;
    nn_residual_layernorm_backward(ex, dcur, g->ln_w, g->ln_b, NULL, da->lnf, top, p->ln_w, a->lnf_mean, a->lnf_rstd, N,
                                   C);
    nn_block_dims bd = {B, T, C, d->F, d->H};
    for (int64_t l = L - 1; l >= 0; l--) {
        const float *in = l ? a->blocks[l - 1].out : a->h0;
        float *dnext = l ? da->flow[(L - l) & 1] : da->h0;
        nn_block_backward(ex, dnext, &g->blocks[l], &da->blocks[l], dcur, &a->blocks[l], &p->blocks[l], in, &bd);
        dcur = dnext;
    }
    /* h0 = x + pos: both receive dh0; pos once per sequence. */
    t = QC_PROF_BEGIN(ex->prof, QC_PROF_ELEMENTWISE, p->pos, 0, "bwd");
    for (int64_t b = 0; b < B; b++) {
        ex->ops->axpy(ex, dx + b * T * C, 1.0f, da->h0 + b * T * C, T * C);
        ex->ops->axpy(ex, g->pos, 1.0f, da->h0 + b * T * C, T * C);
    }
    QC_PROF_END(ex->prof, t, 0);
    QC_PROF_END(ex->prof, tt, 0);
}
