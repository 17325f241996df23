/* Multi-head scaled dot-product attention core; the q/k/v and output
 * projections are separate linears. See qb_ops.attention_forward for shapes,
 * masking and the fully-masked-row rule. The backward accumulates (+=) into
 * dq, dk, dv (the _first variant overwrites them) and overwrites the datt
 * scratch. */
#include "core/profile.h"
#include "nn/nn.h"

void nn_attention_forward(const qb_exec *ex, float *out, float *att, const float *q, const float *k,
                          const float *v, const uint8_t *key_mask, const float *key_bias, int64_t B, int64_t Tq,
                          int64_t Tk, int64_t C, int64_t H, bool causal) {
    /* QK^T and PV: 2 Tq Tk D FLOPs each per (batch, head), C = H D */
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_ATTENTION, NULL, 0, "attn.fwd");
    ex->ops->attention_forward(ex, out, att, q, k, v, key_mask, key_bias, B, Tq, Tk, C, H, causal);
    QC_PROF_END(ex->prof, t, 4.0 * (double)B * (double)Tq * (double)Tk * (double)C);
}

static void attention_backward(const qb_exec *ex, float *dq, float *dk, float *dv, float *dkey_bias, float *datt,
                               const float *dout, const float *q, const float *k, const float *v, const float *att,
                               int64_t B, int64_t Tq, int64_t Tk, int64_t C, int64_t H, float beta) {
    /* dP, dV, dQ, dK: four products of 2 Tq Tk D FLOPs per (batch, head) */
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_ATTENTION, NULL, 0, "attn.bwd");
    ex->ops->attention_backward(ex, dq, dk, dv, dkey_bias, datt, dout, q, k, v, att, B, Tq, Tk, C, H, beta);
    QC_PROF_END(ex->prof, t, 8.0 * (double)B * (double)Tq * (double)Tk * (double)C);
}

void nn_attention_backward(const qb_exec *ex, float *dq, float *dk, float *dv, float *dkey_bias, float *datt,
                           const float *dout, const float *q, const float *k, const float *v, const float *att,
                           int64_t B, int64_t Tq, int64_t Tk, int64_t C, int64_t H) {
    attention_backward(ex, dq, dk, dv, dkey_bias, datt, dout, q, k, v, att, B, Tq, Tk, C, H, 1.0f);
}

void nn_attention_backward_first(const qb_exec *ex, float *dq, float *dk, float *dv, float *datt, const float *dout,
                                 const float *q, const float *k, const float *v, const float *att, int64_t B,
                                 int64_t Tq, int64_t Tk, int64_t C, int64_t H) {
    attention_backward(ex, dq, dk, dv, NULL, datt, dout, q, k, v, att, B, Tq, Tk, C, H, 0.0f);
}
