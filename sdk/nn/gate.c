/* Gated mix of two (N, C) streams:
 *   logits = [a; b] W^T + c = a W_a^T + b W_b^T + c,   W (C, 2C), c (C)
 *   g = sigmoid(logits),  out = g a + (1 - g) b
 * W_a = W[:, 0:C] and W_b = W[:, C:2C] are used in place as (C, C) matrices
 * with leading dimension 2C, so [a; b] is never materialized.
 * The backward accumulates (+=) into da, db, dw, dc; da and db may be NULL. */
#include "core/profile.h"
#include "nn/nn.h"

void nn_gate_forward(const qb_exec *ex, float *out, float *g, const float *a, const float *b,
                     const float *w, const float *c, int64_t N, int64_t C) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_GEMM, w, 1, "fwd");
    /* g holds the logits until gate_forward turns them into sigmoid(logits). */
    ex->ops->gemm(ex, false, true, N, C, C, 1.0f, a, C, 0, w, 2 * C, 0, 0.0f, g, C, 0, 1);
    ex->ops->gemm(ex, false, true, N, C, C, 1.0f, b, C, 0, w + C, 2 * C, 0, 1.0f, g, C, 0, 1);
    if (c) ex->ops->bias_forward(ex, g, c, N, C);
    ex->ops->gate_forward(ex, out, g, g, a, b, N * C);
    QC_PROF_END_GEMM(ex->prof, t, N, C, C, 2, false, true);
}

/* With dl = dlogits (N, C) in scratch:
 *   dW_a += dl^T a,  dW_b += dl^T b,  dc += colsum(dl),
 *   da += g dout + dl W_a,  db += (1 - g) dout + dl W_b. */
void nn_gate_backward(const qb_exec *ex, float *da, float *db, float *dw, float *dc, float *scratch,
                      const float *dout, const float *a, const float *b, const float *g, const float *w,
                      int64_t N, int64_t C) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_GEMM, w, 1, "bwd");
    ex->ops->gate_backward(ex, da, db, scratch, dout, a, b, g, N * C);
    if (dw) {
        ex->ops->gemm(ex, true, false, C, C, N, 1.0f, scratch, C, 0, a, C, 0, 1.0f, dw, 2 * C, 0, 1);
        ex->ops->gemm(ex, true, false, C, C, N, 1.0f, scratch, C, 0, b, C, 0, 1.0f, dw + C, 2 * C, 0, 1);
    }
    if (dc) ex->ops->bias_backward(ex, dc, scratch, N, C);
    if (da) ex->ops->gemm(ex, false, false, N, C, C, 1.0f, scratch, C, 0, w, 2 * C, 0, 1.0f, da, C, 0, 1);
    if (db) ex->ops->gemm(ex, false, false, N, C, C, 1.0f, scratch, C, 0, w + C, 2 * C, 0, 1.0f, db, C, 0, 1);
    QC_PROF_END_GEMM(ex->prof, t, N, C, C, 2 * ((dw != NULL) + (da != NULL)), false, false);
}
