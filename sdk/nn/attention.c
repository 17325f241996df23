/* Multi-head scaled dot-product attention core; the q/k/v and output
 * projections are separate linears. See qb_ops.attention_forward for shapes,
 * masking and the fully-masked-row rule. The backward accumulates (+=) into
 * dq, dk, dv and overwrites the datt scratch. */
#include "nn/nn.h"

void nn_attention_forward(const qb_exec *ex, float *out, float *att, const float *q, const float *k,
                          const float *v, const uint8_t *key_mask, int64_t B, int64_t Tq, int64_t Tk,
                          int64_t C, int64_t H, bool causal) {
    ex->ops->attention_forward(ex, out, att, q, k, v, key_mask, B, Tq, Tk, C, H, causal);
}

void nn_attention_backward(const qb_exec *ex, float *dq, float *dk, float *dv, float *datt,
                           const float *dout, const float *q, const float *k, const float *v,
                           const float *att, int64_t B, int64_t Tq, int64_t Tk, int64_t C, int64_t H) {
    ex->ops->attention_backward(ex, dq, dk, dv, datt, dout, q, k, v, att, B, Tq, Tk, C, H);
}
