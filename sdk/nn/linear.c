/* Fully connected layer: out (N, OC) = inp (N, C) w^T + b, w (OC, C) as
 * PyTorch's nn.Linear stores it. Composed from the backend's gemm and bias
 * kernels; the backward accumulates (+=), using beta = 1 in gemm. */
#include "nn/nn.h"

void nn_linear_forward(const qb_exec *ex, float *out, const float *inp, const float *w, const float *b,
                       int64_t N, int64_t C, int64_t OC) {
    nn_linear_gelu_forward(ex, out, NULL, inp, w, b, N, C, OC);
}

void nn_linears_forward(const qb_exec *ex, int n, float *const *outs, const float *inp, const float *const *ws,
                        const float *const *bs, int64_t N, int64_t C, int64_t OC) {
    if (ex->ops->linears_forward) {
        ex->ops->linears_forward(ex, n, outs, inp, ws, bs, N, C, OC);
        return;
    }
    for (int j = 0; j < n; j++) nn_linear_forward(ex, outs[j], inp, ws[j], bs ? bs[j] : NULL, N, C, OC);
}

void nn_linear_gelu_forward(const qb_exec *ex, float *out, float *gelu_out, const float *inp, const float *w,
                            const float *b, int64_t N, int64_t C, int64_t OC) {
    if (ex->ops->linear_forward) {
        ex->ops->linear_forward(ex, out, gelu_out, inp, w, b, N, C, OC);
        return;
    }
    /* (N x C) (C x OC): op(B) = w^T with w row-major (OC, C), ldb = C. */
    ex->ops->gemm(ex, false, true, N, OC, C, 1.0f, inp, C, 0, w, C, 0, 0.0f, out, OC, 0, 1);
    if (b) ex->ops->bias_forward(ex, out, b, N, OC);
    if (gelu_out) ex->ops->gelu_forward(ex, gelu_out, out, N * OC);
}

/* dinp (N, C) += dout (N, OC) w (OC, C);  dw (OC, C) += dout^T inp;  db (OC) += colsum(dout). */
void nn_linear_backward(const qb_exec *ex, float *dinp, float *dw, float *db, const float *dout,
                        const float *inp, const float *w, int64_t N, int64_t C, int64_t OC) {
    if (dinp) ex->ops->gemm(ex, false, false, N, C, OC, 1.0f, dout, OC, 0, w, C, 0, 1.0f, dinp, C, 0, 1);
    ex->ops->gemm(ex, true, false, OC, C, N, 1.0f, dout, OC, 0, inp, C, 0, 1.0f, dw, C, 0, 1);
    if (db) ex->ops->bias_backward(ex, db, dout, N, OC);
}
