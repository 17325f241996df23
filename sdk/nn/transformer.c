/* The transformer block, pre-norm or post-norm, composed from the layers in nn.h. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>

#include "core/profile.h"
#include "nn/nn.h"

#define FIELD(m) (field_base + offsetof(nn_block_params, m))
#define AFIELD(m) (field_base + offsetof(nn_block_acts, m))

qiao_status nn_block_describe(qc_table *tab, const char *prefix, const nn_block_dims *d, int64_t n_layers,
                              size_t field_base) {
    const int64_t C = d->C, F = d->F;
    const float std = 0.02f;
    const float res_std = std / sqrtf(2.0f * (float)(n_layers > 0 ? n_layers : 1));
    const uint32_t nd = QC_NO_DECAY;
    qiao_status st;
#define ADD(name, d0, d1, init, scale, flags, m)                                                                 \
    st = qc_table_add_dims(tab, prefix, name, (d1) > 0 ? 2 : 1, d0, d1, 0, init, scale, flags, FIELD(m));      \
    if (st != QIAO_OK) return st
    ADD("ln1.weight", C, 0, QC_INIT_ONES, 0, nd, ln1_w);
    ADD("ln1.bias", C, 0, QC_INIT_ZEROS, 0, nd, ln1_b);
    ADD("attn.q.weight", C, C, QC_INIT_NORMAL, std, 0, q_w);
    ADD("attn.q.bias", C, 0, QC_INIT_ZEROS, 0, nd, q_b);
    ADD("attn.k.weight", C, C, QC_INIT_NORMAL, std, 0, k_w);
    ADD("attn.k.bias", C, 0, QC_INIT_ZEROS, 0, nd, k_b);
    ADD("attn.v.weight", C, C, QC_INIT_NORMAL, std, 0, v_w);
    ADD("attn.v.bias", C, 0, QC_INIT_ZEROS, 0, nd, v_b);
    ADD("attn.proj.weight", C, C, QC_INIT_NORMAL, res_std, 0, proj_w);
    ADD("attn.proj.bias", C, 0, QC_INIT_ZEROS, 0, nd, proj_b);
    ADD("ln2.weight", C, 0, QC_INIT_ONES, 0, nd, ln2_w);
    ADD("ln2.bias", C, 0, QC_INIT_ZEROS, 0, nd, ln2_b);
    ADD("mlp.fc.weight", F, C, QC_INIT_NORMAL, std, 0, fc_w);
    ADD("mlp.fc.bias", F, 0, QC_INIT_ZEROS, 0, nd, fc_b);
    ADD("mlp.fc2.weight", C, F, QC_INIT_NORMAL, res_std, 0, fc2_w);
    ADD("mlp.fc2.bias", C, 0, QC_INIT_ZEROS, 0, nd, fc2_b);
#undef ADD
    return QIAO_OK;
}

qiao_status nn_block_describe_acts(qc_table *tab, const char *prefix, const nn_block_dims *d,
                                   size_t field_base) {
    const int64_t N = d->B * d->T, C = d->C, F = d->F;
    qiao_status st;
#define ADDA(name, d0, d1, m)                                                                                    \
    st = qc_table_add_dims(tab, prefix, name, (d1) > 0 ? 2 : 1, d0, d1, 0, QC_INIT_ZEROS, 0, 0, AFIELD(m));      \
    if (st != QIAO_OK) return st
    ADDA("ln1", N, C, ln1);
    ADDA("ln1_mean", N, 0, ln1_mean);
    ADDA("ln1_rstd", N, 0, ln1_rstd);
    ADDA("q", N, C, q);
    ADDA("k", N, C, k);
    ADDA("v", N, C, v);
    ADDA("att", d->B * d->H * d->T, d->T, att);
    ADDA("atty", N, C, atty);
    ADDA("h", N, C, h);
    ADDA("ln2", N, C, ln2);
    ADDA("ln2_mean", N, 0, ln2_mean);
    ADDA("ln2_rstd", N, 0, ln2_rstd);
    ADDA("fc", N, F, fc);
    ADDA("fc_gelu", N, F, fc_gelu);
    ADDA("out", N, C, out);
#undef ADDA
    return QIAO_OK;
}

static float block_eps(const nn_block_dims *d) {
    return d->eps > 0.0f ? d->eps : NN_LAYERNORM_EPS;
}

/* fc = in fc_w^T + fc_b, fc_gelu = act(fc): GELU fused into the linear
 * where the backend can, quick GELU as a pass of its own. */
static void mlp_in_forward(const qb_exec *ex, nn_block_acts *a, const nn_block_params *p, const float *in,
                           const nn_block_dims *d) {
    const int64_t N = d->B * d->T;
    const float *const fc_w = p->fc_w, *const fc_b = p->fc_b;
    const bool quick = d->act == NN_ACT_QUICK_GELU;
    nn_linears_forward(ex, 1, &a->fc, quick ? NULL : &a->fc_gelu, in, &fc_w, &fc_b, N, d->C, d->F);
    if (quick) nn_quick_gelu_forward(ex, a->fc_gelu, a->fc, N * d->F);
}

static void act_bias_backward(const qb_exec *ex, float *dfc, float *dfc_b, const float *fc, const float *dfc_gelu,
                              int64_t N, int64_t F, const nn_block_dims *d) {
    if (d->act == NN_ACT_QUICK_GELU)
        nn_quick_gelu_bias_backward(ex, dfc, dfc_b, fc, dfc_gelu, N, F);
    else
        nn_gelu_bias_backward(ex, dfc, dfc_b, fc, dfc_gelu, N, F);
}

/* h = x + proj(attention(q x, ...)), ln1 = ln1(h); ln2 = ln1 + fc2(gelu(fc ln1)), out = ln2(ln2). */
static void post_forward(const qb_exec *ex, nn_block_acts *a, const nn_block_params *p, const float *x,
                         const uint8_t *mask, const nn_block_dims *d) {
    const int64_t B = d->B, T = d->T, C = d->C, F = d->F, N = B * T;
    const float eps = block_eps(d);
    float *const qkv[3] = {a->q, a->k, a->v};
    const float *const qkv_w[3] = {p->q_w, p->k_w, p->v_w}, *const qkv_b[3] = {p->q_b, p->k_b, p->v_b};
    nn_linears_forward(ex, 3, qkv, NULL, x, qkv_w, qkv_b, N, C, C);
    nn_attention_forward(ex, a->atty, a->att, a->q, a->k, a->v, mask, NULL, B, T, T, C, d->H, d->causal);
    nn_linear_forward(ex, a->h, a->atty, p->proj_w, NULL, N, C, C);
    nn_residual_layernorm_forward_eps(ex, a->h, a->ln1, a->ln1_mean, a->ln1_rstd, x, a->h, p->proj_b, p->ln1_w,
                                      p->ln1_b, N, C, eps);
    mlp_in_forward(ex, a, p, a->ln1, d);
    nn_linear_forward(ex, a->ln2, a->fc_gelu, p->fc2_w, NULL, N, F, C);
    nn_residual_layernorm_forward_eps(ex, a->ln2, a->out, a->ln2_mean, a->ln2_rstd, a->ln1, a->ln2, p->fc2_b, p->ln2_w,
                                      p->ln2_b, N, C, eps);
}

static void post_backward(const qb_exec *ex, float *dx, nn_block_params *g, nn_block_acts *da, const float *dout,
                          const nn_block_acts *a, const nn_block_params *p, const float *x, const nn_block_dims *d) {
    const int64_t B = d->B, T = d->T, C = d->C, F = d->F, N = B * T;
    /* out = ln2(s), s = n + fc2(gelu(fc n)): ds, then the MLP's dn */
    nn_residual_layernorm_backward(ex, da->ln2, g->ln2_w, g->ln2_b, NULL, dout, a->ln2, p->ln2_w, a->ln2_mean,
                                   a->ln2_rstd, N, C);
    nn_linear_backward_first(ex, da->fc_gelu, g->fc2_w, g->fc2_b, da->ln2, a->fc_gelu, p->fc2_w, N, F, C);
    act_bias_backward(ex, da->fc, g->fc_b, a->fc, da->fc_gelu, N, F, d);
    nn_linear_backward_first(ex, da->ln1, g->fc_w, NULL, da->fc, a->ln1, p->fc_w, N, C, F);
    ex->ops->axpy(ex, da->ln1, 1.0f, da->ln2, N * C); /* dn += ds: the residual path */
    /* n = ln1(h), h = x + proj(attention(...)) */
    nn_residual_layernorm_backward(ex, da->h, g->ln1_w, g->ln1_b, NULL, da->ln1, a->h, p->ln1_w, a->ln1_mean,
                                   a->ln1_rstd, N, C);
    nn_linear_backward_first(ex, da->atty, g->proj_w, g->proj_b, da->h, a->atty, p->proj_w, N, C, C);
    nn_attention_backward_first(ex, da->q, da->k, da->v, da->att, da->atty, a->q, a->k, a->v, a->att, B, T, T, C, d->H);
    nn_linear_backward_first(ex, dx, g->q_w, g->q_b, da->q, x, p->q_w, N, C, C);
    nn_linear_backward(ex, dx, g->k_w, g->k_b, da->k, x, p->k_w, N, C, C);
    nn_linear_backward(ex, dx, g->v_w, g->v_b, da->v, x, p->v_w, N, C, C);
    ex->ops->axpy(ex, dx, 1.0f, da->h, N * C); /* dx += dh: the residual path */
}

void nn_block_forward(const qb_exec *ex, nn_block_acts *a, const nn_block_params *p, const float *x,
                      const uint8_t *mask, const nn_block_dims *d) {
    const int64_t B = d->B, T = d->T, C = d->C, F = d->F, N = B * T;
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_GROUP, p->ln1_w, 2, "fwd"); /* "<tower>.blocks.<l>.fwd" */
    if (d->norm == NN_NORM_POST) {
        post_forward(ex, a, p, x, mask, d);
        QC_PROF_END(ex->prof, t, 0);
        return;
    }
    const float eps = block_eps(d);
    nn_layernorm_forward_eps(ex, a->ln1, a->ln1_mean, a->ln1_rstd, x, p->ln1_w, p->ln1_b, N, C, eps);
    float *const qkv[3] = {a->q, a->k, a->v};
    const float *const qkv_w[3] = {p->q_w, p->k_w, p->v_w}, *const qkv_b[3] = {p->q_b, p->k_b, p->v_b};
    nn_linears_forward(ex, 3, qkv, NULL, a->ln1, qkv_w, qkv_b, N, C, C);
    nn_attention_forward(ex, a->atty, a->att, a->q, a->k, a->v, mask, NULL, B, T, T, C, d->H, d->causal);
    /* proj's and fc2's biases are added by the residual pass after them:
     * one pass over the rows for bias, residual and (after proj) ln2. */
    nn_linear_forward(ex, a->h, a->atty, p->proj_w, NULL, N, C, C);
    nn_residual_layernorm_forward_eps(ex, a->h, a->ln2, a->ln2_mean, a->ln2_rstd, x, a->h, p->proj_b, p->ln2_w,
                                      p->ln2_b, N, C, eps);
    mlp_in_forward(ex, a, p, a->ln2, d);
    nn_linear_forward(ex, a->out, a->fc_gelu, p->fc2_w, NULL, N, F, C);
    nn_bias_residual_forward(ex, a->out, a->h, a->out, p->fc2_b, N, C);
    QC_PROF_END(ex->prof, t, 0);
}

void nn_block_backward(const qb_exec *ex, float *dx, nn_block_params *g, nn_block_acts *da,
                       const float *dout, const nn_block_acts *a, const nn_block_params *p, const float *x,
                       const nn_block_dims *d) {
    const int64_t B = d->B, T = d->T, C = d->C, F = d->F, N = B * T;
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_GROUP, p->ln1_w, 2, "bwd");
    if (d->norm == NN_NORM_POST) {
        post_backward(ex, dx, g, da, dout, a, p, x, d);
        QC_PROF_END(ex->prof, t, 0);
        return;
    }
    /* Every activation gradient's first writer overwrites it (the `_first`
     * layers, the GELU + bias and residual LayerNorm backwards), so da needs
     * no clearing; each sum is the one zeroing and accumulating gave.
     * MLP branch: out = h + fc2(gelu(fc(ln2(h)))); its output gradient is
     * dout itself (da->out is not used). */
    nn_linear_backward_first(ex, da->fc_gelu, g->fc2_w, g->fc2_b, dout, a->fc_gelu, p->fc2_w, N, F, C);
    act_bias_backward(ex, da->fc, g->fc_b, a->fc, da->fc_gelu, N, F, d); /* fc's bias gradient too */
    nn_linear_backward_first(ex, da->ln2, g->fc_w, NULL, da->fc, a->ln2, p->fc_w, N, C, F);
    /* dh = dout (the residual path) + ln2's backward */
    nn_residual_layernorm_backward(ex, da->h, g->ln2_w, g->ln2_b, dout, da->ln2, a->h, p->ln2_w, a->ln2_mean,
                                   a->ln2_rstd, N, C);
    /* Attention branch: h = x + proj(attention(...)) */
    nn_linear_backward_first(ex, da->atty, g->proj_w, g->proj_b, da->h, a->atty, p->proj_w, N, C, C);
    nn_attention_backward_first(ex, da->q, da->k, da->v, da->att, da->atty, a->q, a->k, a->v, a->att, B, T, T, C, d->H);
    nn_linear_backward_first(ex, da->ln1, g->q_w, g->q_b, da->q, a->ln1, p->q_w, N, C, C);
    nn_linear_backward(ex, da->ln1, g->k_w, g->k_b, da->k, a->ln1, p->k_w, N, C, C);
    nn_linear_backward(ex, da->ln1, g->v_w, g->v_b, da->v, a->ln1, p->v_w, N, C, C);
    /* dx = dh (the residual path) + ln1's backward */
    nn_residual_layernorm_backward(ex, dx, g->ln1_w, g->ln1_b, da->h, da->ln1, x, p->ln1_w, a->ln1_mean, a->ln1_rstd, N,
                                   C);
    QC_PROF_END(ex->prof, t, 0);
}
