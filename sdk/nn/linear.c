/* Fully connected layer: out (N, OC) = inp (N, C) w^T + b, w (OC, C) as
 * PyTorch's nn.Linear stores it. Composed from the backend's gemm and bias
 * kernels; the backward accumulates (+=), using beta = 1 in gemm. */
#include "nn/nn.h"

void nn_linears_forward(const qb_exec *ex, int n, float *const *outs, float *const *gelu_outs, const float *inp,
                        const float *const *ws, const float *const *bs, int64_t N, int64_t C, int64_t OC) {
    if (ex->ops->linears_fused && ex->ops->linears_fused(ex, n, outs, gelu_outs, inp, ws, bs, N, C, OC)) return;
    for (int j = 0; j < n; j++) {
        /* (N x C) (C x OC): op(B) = w^T with w row-major (OC, C), ldb = C. */
        ex->ops->gemm(ex, false, true, N, OC, C, 1.0f, inp, C, 0, ws[j], C, 0, 0.0f, outs[j], OC, 0, 1);
        if (bs && bs[j]) ex->ops->bias_forward(ex, outs[j], bs[j], N, OC);
        if (gelu_outs && gelu_outs[j]) ex->ops->gelu_forward(ex, gelu_outs[j], outs[j], N * OC);
    }
}

void nn_linear_forward(const qb_exec *ex, float *out, const float *inp, const float *w, const float *b,
                       int64_t N, int64_t C, int64_t OC) {
    nn_linears_forward(ex, 1, &out, NULL, inp, &w, &b, N, C, OC);
}

/* dinp (N, C) += dout (N, OC) w (OC, C);  dw (OC, C) += dout^T inp;  db (OC) += colsum(dout). */
void nn_linear_backward(const qb_exec *ex, float *dinp, float *dw, float *db, const float *dout,
                        const float *inp, const float *w, int64_t N, int64_t C, int64_t OC) {
    if (dinp) ex->ops->gemm(ex, false, false, N, C, OC, 1.0f, dout, OC, 0, w, C, 0, 1.0f, dinp, C, 0, 1);
    ex->ops->gemm(ex, true, false, OC, C, N, 1.0f, dout, OC, 0, inp, C, 0, 1.0f, dw, C, 0, 1);
    if (db) ex->ops->bias_backward(ex, db, dout, N, OC);
}
