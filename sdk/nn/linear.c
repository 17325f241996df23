/* Fully connected layer: out (N, OC) = inp (N, C) w^T + b, w (OC, C) as
 * PyTorch's nn.Linear stores it. Composed from the backend's gemm and bias
 * kernels; the backward accumulates (+=), using beta = 1 in gemm (the
 * _first variant overwrites dinp with beta = 0).
 * With ex->linear_prec == QB_PREC_BF16 the three GEMMs (forward, dX, dW)
 * run through the backend's gemm_bf16 (mixed precision: bf16 operands, f32
 * sums, f32 parameters and gradients). */
#include "core/profile.h"
#include "nn/nn.h"

/* ex->ops->gemm with batch 1, or its bf16 twin when the context asks for it
 * and the backend takes the call. */
static void linear_gemm(const qb_exec *ex, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A,
                        int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (ex->linear_prec == QB_PREC_BF16 && ex->ops->gemm_bf16 &&
        ex->ops->gemm_bf16(ex, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc))
        return;
    ex->ops->gemm(ex, ta, tb, M, N, K, 1.0f, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

void nn_linears_forward(const qb_exec *ex, int n, float *const *outs, float *const *gelu_outs, const float *inp,
                        const float *const *ws, const float *const *bs, int64_t N, int64_t C, int64_t OC) {
    if (ex->ops->linears_fused) {
        const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_GEMM, ws[0], 1, "fused.fwd");
        const bool took = ex->ops->linears_fused(ex, n, outs, gelu_outs, inp, ws, bs, N, C, OC);
        if (took) {
            QC_PROF_END_GEMM(ex->prof, t, N, OC, C, n, false, true);
            return;
        }
        if (ex->prof) qc_prof_cancel(ex->prof, t); /* declined: the plain layers below report */
    }
    for (int j = 0; j < n; j++) {
        /* (N x C) (C x OC): op(B) = w^T with w row-major (OC, C), ldb = C. */
        int t = QC_PROF_BEGIN(ex->prof, QC_PROF_GEMM, ws[j], 1, "fwd");
        linear_gemm(ex, false, true, N, OC, C, inp, C, ws[j], C, 0.0f, outs[j], OC);
        QC_PROF_END_GEMM(ex->prof, t, N, OC, C, 1, false, true);
        if (bs && bs[j]) {
            t = QC_PROF_BEGIN(ex->prof, QC_PROF_ELEMENTWISE, bs[j], 0, "fwd");
            ex->ops->bias_forward(ex, outs[j], bs[j], N, OC);
            QC_PROF_END(ex->prof, t, 0);
        }
        if (gelu_outs && gelu_outs[j]) nn_gelu_forward(ex, gelu_outs[j], outs[j], N * OC);
    }
}

void nn_linear_forward(const qb_exec *ex, float *out, const float *inp, const float *w, const float *b,
                       int64_t N, int64_t C, int64_t OC) {
    nn_linears_forward(ex, 1, &out, NULL, inp, &w, &b, N, C, OC);
}

/* dinp (N, C) = dinp_beta dinp + dout (N, OC) w (OC, C);  dw (OC, C) += dout^T inp;  db (OC) += colsum(dout). */
static void linear_backward(const qb_exec *ex, float *dinp, float dinp_beta, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, int64_t N, int64_t C, int64_t OC) {
    int t;
    if (dinp) {
        t = QC_PROF_BEGIN(ex->prof, QC_PROF_GEMM, w, 1, "bwd_dx");
        linear_gemm(ex, false, false, N, C, OC, dout, OC, w, C, dinp_beta, dinp, C);
        QC_PROF_END_GEMM(ex->prof, t, N, C, OC, 1, false, false);
    }
    t = QC_PROF_BEGIN(ex->prof, QC_PROF_GEMM, w, 1, "bwd_dw");
    linear_gemm(ex, true, false, OC, C, N, dout, OC, inp, C, 1.0f, dw, C);
    QC_PROF_END_GEMM(ex->prof, t, OC, C, N, 1, true, false);
    if (db) {
        t = QC_PROF_BEGIN(ex->prof, QC_PROF_ELEMENTWISE, w, 1, "bias.bwd");
        ex->ops->bias_backward(ex, db, dout, N, OC);
        QC_PROF_END(ex->prof, t, 0);
    }
}

void nn_linear_backward(const qb_exec *ex, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, int64_t N, int64_t C, int64_t OC) {
    linear_backward(ex, dinp, 1.0f, dw, db, dout, inp, w, N, C, OC);
}

/* beta = 0: BLAS then never reads dinp, so it may hold anything. */
void nn_linear_backward_first(const qb_exec *ex, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                              const float *w, int64_t N, int64_t C, int64_t OC) {
    linear_backward(ex, dinp, 0.0f, dw, db, dout, inp, w, N, C, OC);
}
