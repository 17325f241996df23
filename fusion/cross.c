/* fusion/cross.c - the cross-modal block (see cross.h), composed from the
 * layers in nn.h as sdk/nn/transformer.c composes the encoders' block. */
#include "fusion/cross.h"

#include <math.h>
#include <stddef.h>

#include "core/profile.h"

#define FIELD(m) (field_base + offsetof(qf_xblock_params, m))
#define AFIELD(m) (field_base + offsetof(qf_xblock_acts, m))

qiao_status qf_xblock_check(const qf_xblock_dims *d) {
    if (!d || d->B < 1 || d->Tx < 1 || d->Ty < 1 || d->C < 1 || d->F < 1 || d->H < 1 || d->C % d->H != 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "cross block: need B, Tx, Ty, C, F, H >= 1 and C a multiple of H (got %lld %lld %lld %lld "
                        "%lld %lld)",
                        d ? (long long)d->B : 0LL, d ? (long long)d->Tx : 0LL, d ? (long long)d->Ty : 0LL,
                        d ? (long long)d->C : 0LL, d ? (long long)d->F : 0LL, d ? (long long)d->H : 0LL);
    return QIAO_OK;
}

qiao_status qf_xblock_describe(qc_table *tab, const char *prefix, const qf_xblock_dims *d, int64_t n_layers,
                               size_t field_base) {
    qiao_status st = qf_xblock_check(d);
    if (st != QIAO_OK) return st;
    const int64_t C = d->C, F = d->F;
    const float std = 0.02f;
    const float res_std = std / sqrtf(2.0f * (float)(n_layers > 0 ? n_layers : 1));
    const uint32_t nd = QC_NO_DECAY;
#define ADD(name, d0, d1, init, scale, flags, m)                                                                 \
    st = qc_table_add_dims(tab, prefix, name, (d1) > 0 ? 2 : 1, d0, d1, 0, init, scale, flags, FIELD(m));      \
    if (st != QIAO_OK) return st
#define ADD_LN(name, w, b)                                                                                       \
    ADD(name ".weight", C, 0, QC_INIT_ONES, 0, nd, w);                                                           \
    ADD(name ".bias", C, 0, QC_INIT_ZEROS, 0, nd, b)
#define ADD_LIN(name, o, i, s, w, b)                                                                             \
    ADD(name ".weight", o, i, QC_INIT_NORMAL, s, 0, w);                                                          \
    ADD(name ".bias", o, 0, QC_INIT_ZEROS, 0, nd, b)
    ADD_LN("ln1", ln1_w, ln1_b);
    ADD_LIN("attn.q", C, C, std, q_w, q_b);
    ADD_LIN("attn.k", C, C, std, k_w, k_b);
    ADD_LIN("attn.v", C, C, std, v_w, v_b);
    ADD_LIN("attn.proj", C, C, res_std, proj_w, proj_b);
    ADD_LN("ln2", ln2_w, ln2_b);
    ADD_LN("ln_ctx", lnc_w, lnc_b);
    ADD_LIN("xattn.q", C, C, std, cq_w, cq_b);
    ADD_LIN("xattn.k", C, C, std, ck_w, ck_b);
    ADD_LIN("xattn.v", C, C, std, cv_w, cv_b);
    ADD_LIN("xattn.proj", C, C, res_std, cproj_w, cproj_b);
    ADD_LN("ln3", ln3_w, ln3_b);
    ADD_LIN("mlp.fc", F, C, std, fc_w, fc_b);
    ADD_LIN("mlp.fc2", C, F, res_std, fc2_w, fc2_b);
#undef ADD_LIN
#undef ADD_LN
#undef ADD
    return QIAO_OK;
}

qiao_status qf_xblock_describe_acts(qc_table *tab, const char *prefix, const qf_xblock_dims *d, size_t field_base) {
    qiao_status st = qf_xblock_check(d);
    if (st != QIAO_OK) return st;
    const int64_t Nx = d->B * d->Tx, Ny = d->B * d->Ty, C = d->C, F = d->F, BH = d->B * d->H;
#define ADDA(name, d0, d1, m)                                                                                    \
    st = qc_table_add_dims(tab, prefix, name, (d1) > 0 ? 2 : 1, d0, d1, 0, QC_INIT_ZEROS, 0, 0, AFIELD(m));      \
    if (st != QIAO_OK) return st
#define ADDA_LN(name, n, o, mean, rstd)                                                                          \
    ADDA(name, n, C, o);                                                                                         \
    ADDA(name "_mean", n, 0, mean);                                                                              \
    ADDA(name "_rstd", n, 0, rstd)
    ADDA_LN("ln1", Nx, ln1, ln1_mean, ln1_rstd);
    ADDA("q", Nx, C, q);
    ADDA("k", Nx, C, k);
    ADDA("v", Nx, C, v);
    ADDA("att", BH * d->Tx, d->Tx, att);
    ADDA("atty", Nx, C, atty);
    ADDA("h1", Nx, C, h1);
    ADDA_LN("ln2", Nx, ln2, ln2_mean, ln2_rstd);
    ADDA_LN("ln_ctx", Ny, lnc, lnc_mean, lnc_rstd);
    ADDA("cq", Nx, C, cq);
    ADDA("ck", Ny, C, ck);
    ADDA("cv", Ny, C, cv);
    ADDA("catt", BH * d->Tx, d->Ty, catt);
    ADDA("catty", Nx, C, catty);
    ADDA("h2", Nx, C, h2);
    ADDA_LN("ln3", Nx, ln3, ln3_mean, ln3_rstd);
    ADDA("fc", Nx, F, fc);
    ADDA("fc_gelu", Nx, F, fc_gelu);
    ADDA("out", Nx, C, out);
#undef ADDA_LN
#undef ADDA
    return QIAO_OK;
}

void qf_xblock_forward(const qb_exec *ex, qf_xblock_acts *a, const qf_xblock_params *p, const float *x,
                       const uint8_t *x_mask, const float *x_bias, const float *y, const uint8_t *y_mask,
                       const float *y_bias, const qf_xblock_dims *d) {
    const int64_t B = d->B, Tx = d->Tx, Ty = d->Ty, C = d->C, F = d->F, Nx = B * Tx, Ny = B * Ty;
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_GROUP, p->ln1_w, 2, "fwd");
    /* self-attention */
    nn_layernorm_forward(ex, a->ln1, a->ln1_mean, a->ln1_rstd, x, p->ln1_w, p->ln1_b, Nx, C);
    float *const qkv[3] = {a->q, a->k, a->v};
    const float *const qkv_w[3] = {p->q_w, p->k_w, p->v_w}, *const qkv_b[3] = {p->q_b, p->k_b, p->v_b};
    nn_linears_forward(ex, 3, qkv, NULL, a->ln1, qkv_w, qkv_b, Nx, C, C);
    nn_attention_forward(ex, a->atty, a->att, a->q, a->k, a->v, x_mask, x_bias, B, Tx, Tx, C, d->H, d->causal);
    nn_linear_forward(ex, a->h1, a->atty, p->proj_w, p->proj_b, Nx, C, C);
    nn_residual_forward(ex, a->h1, a->h1, x, Nx * C);
    /* cross-attention to the context */
    nn_layernorm_forward(ex, a->ln2, a->ln2_mean, a->ln2_rstd, a->h1, p->ln2_w, p->ln2_b, Nx, C);
    nn_layernorm_forward(ex, a->lnc, a->lnc_mean, a->lnc_rstd, y, p->lnc_w, p->lnc_b, Ny, C);
    nn_linear_forward(ex, a->cq, a->ln2, p->cq_w, p->cq_b, Nx, C, C);
    float *const kv[2] = {a->ck, a->cv};
    const float *const kv_w[2] = {p->ck_w, p->cv_w}, *const kv_b[2] = {p->ck_b, p->cv_b};
    nn_linears_forward(ex, 2, kv, NULL, a->lnc, kv_w, kv_b, Ny, C, C);
    nn_attention_forward(ex, a->catty, a->catt, a->cq, a->ck, a->cv, y_mask, y_bias, B, Tx, Ty, C, d->H, false);
    nn_linear_forward(ex, a->h2, a->catty, p->cproj_w, p->cproj_b, Nx, C, C);
    nn_residual_forward(ex, a->h2, a->h2, a->h1, Nx * C);
    /* MLP */
    nn_layernorm_forward(ex, a->ln3, a->ln3_mean, a->ln3_rstd, a->h2, p->ln3_w, p->ln3_b, Nx, C);
    const float *const fc_w = p->fc_w, *const fc_b = p->fc_b;
    nn_linears_forward(ex, 1, &a->fc, &a->fc_gelu, a->ln3, &fc_w, &fc_b, Nx, C, F);
    nn_linear_forward(ex, a->out, a->fc_gelu, p->fc2_w, p->fc2_b, Nx, F, C);
    nn_residual_forward(ex, a->out, a->out, a->h2, Nx * C);
    QC_PROF_END(ex->prof, t, 0);
}

void qf_xblock_backward(const qb_exec *ex, float *dx, float *dy, float *dx_bias, float *dy_bias,
                        qf_xblock_params *g, qf_xblock_acts *da, const float *dout, const qf_xblock_acts *a,
                        const qf_xblock_params *p, const float *x, const float *y, const qf_xblock_dims *d) {
    const int64_t B = d->B, Tx = d->Tx, Ty = d->Ty, C = d->C, F = d->F, Nx = B * Tx, Ny = B * Ty;
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_GROUP, p->ln1_w, 2, "bwd");
    /* MLP: out = h2 + fc2(gelu(fc(ln3 h2))) */
    nn_residual_backward(ex, da->h2, da->out, dout, Nx * C);
    nn_linear_backward(ex, da->fc_gelu, g->fc2_w, g->fc2_b, da->out, a->fc_gelu, p->fc2_w, Nx, F, C);
    nn_gelu_backward(ex, da->fc, a->fc, da->fc_gelu, Nx * F);
    nn_linear_backward(ex, da->ln3, g->fc_w, g->fc_b, da->fc, a->ln3, p->fc_w, Nx, C, F);
    nn_layernorm_backward(ex, da->h2, g->ln3_w, g->ln3_b, da->ln3, a->h2, p->ln3_w, a->ln3_mean, a->ln3_rstd, Nx,
                          C);
    /* cross-attention: h2 = h1 + cproj(attention(cq(ln2 h1), ck(lnc y), cv(lnc y))) */
    nn_residual_backward(ex, da->h1, NULL, da->h2, Nx * C);
    nn_linear_backward(ex, da->catty, g->cproj_w, g->cproj_b, da->h2, a->catty, p->cproj_w, Nx, C, C);
    nn_attention_backward(ex, da->cq, da->ck, da->cv, dy_bias, da->catt, da->catty, a->cq, a->ck, a->cv, a->catt, B,
                          Tx, Ty, C, d->H);
    nn_linear_backward(ex, da->ln2, g->cq_w, g->cq_b, da->cq, a->ln2, p->cq_w, Nx, C, C);
    nn_linear_backward(ex, da->lnc, g->ck_w, g->ck_b, da->ck, a->lnc, p->ck_w, Ny, C, C);
    nn_linear_backward(ex, da->lnc, g->cv_w, g->cv_b, da->cv, a->lnc, p->cv_w, Ny, C, C);
    nn_layernorm_backward(ex, da->h1, g->ln2_w, g->ln2_b, da->ln2, a->h1, p->ln2_w, a->ln2_mean, a->ln2_rstd, Nx,
                          C);
    nn_layernorm_backward(ex, dy, g->lnc_w, g->lnc_b, da->lnc, y, p->lnc_w, a->lnc_mean, a->lnc_rstd, Ny, C);
    /* self-attention: h1 = x + proj(attention(q(ln1 x), k(ln1 x), v(ln1 x))) */
    nn_residual_backward(ex, dx, NULL, da->h1, Nx * C);
    nn_linear_backward(ex, da->atty, g->proj_w, g->proj_b, da->h1, a->atty, p->proj_w, Nx, C, C);
    nn_attention_backward(ex, da->q, da->k, da->v, dx_bias, da->att, da->atty, a->q, a->k, a->v, a->att, B, Tx, Tx,
                          C, d->H);
    nn_linear_backward(ex, da->ln1, g->q_w, g->q_b, da->q, a->ln1, p->q_w, Nx, C, C);
    nn_linear_backward(ex, da->ln1, g->k_w, g->k_b, da->k, a->ln1, p->k_w, Nx, C, C);
    nn_linear_backward(ex, da->ln1, g->v_w, g->v_b, da->v, a->ln1, p->v_w, Nx, C, C);
    nn_layernorm_backward(ex, dx, g->ln1_w, g->ln1_b, da->ln1, x, p->ln1_w, a->ln1_mean, a->ln1_rstd, Nx, C);
    QC_PROF_END(ex->prof, t, 0);
}
