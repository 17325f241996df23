/* LayerNorm and L2 normalization layers: thin calls into the backend with the
 * epsilons PyTorch uses (nn.LayerNorm 1e-5, F.normalize 1e-12), and the
 * residual add fused with the LayerNorm after it. Backwards accumulate (+=),
 * except the residual one, which overwrites dinp. */
#include "core/profile.h"
#include "nn/nn.h"

void nn_layernorm_forward(const qb_exec *ex, float *out, float *mean, float *rstd, const float *inp,
                          const float *w, const float *b, int64_t N, int64_t C) {
    nn_layernorm_forward_eps(ex, out, mean, rstd, inp, w, b, N, C, NN_LAYERNORM_EPS);
}

void nn_layernorm_backward(const qb_exec *ex, float *dinp, float *dw, float *db, const float *dout,
                           const float *inp, const float *w, const float *mean, const float *rstd,
                           int64_t N, int64_t C) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_NORM, w, 1, "bwd");
    ex->ops->layernorm_backward(ex, dinp, dw, db, dout, inp, w, mean, rstd, N, C);
    QC_PROF_END(ex->prof, t, 0);
}

void nn_residual_layernorm_forward(const qb_exec *ex, float *h, float *out, float *mean, float *rstd, const float *x,
                                   const float *y, const float *bias, const float *w, const float *b, int64_t N,
                                   int64_t C) {
    nn_residual_layernorm_forward_eps(ex, h, out, mean, rstd, x, y, bias, w, b, N, C, NN_LAYERNORM_EPS);
}

void nn_layernorm_forward_eps(const qb_exec *ex, float *out, float *mean, float *rstd, const float *inp, const float *w,
                              const float *b, int64_t N, int64_t C, float eps) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_NORM, w, 1, "fwd");
    ex->ops->layernorm_forward(ex, out, mean, rstd, inp, w, b, N, C, eps);
    QC_PROF_END(ex->prof, t, 0);
}

void nn_residual_layernorm_forward_eps(const qb_exec *ex, float *h, float *out, float *mean, float *rstd,
                                       const float *x, const float *y, const float *bias, const float *w,
                                       const float *b, int64_t N, int64_t C, float eps) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_NORM, w, 1, "fwd");
    ex->ops->residual_layernorm_forward(ex, h, out, mean, rstd, x, y, bias, w, b, N, C, eps);
    QC_PROF_END(ex->prof, t, 0);
}

void nn_bias_residual_forward(const qb_exec *ex, float *h, const float *x, const float *y, const float *bias, int64_t N,
                              int64_t C) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_ELEMENTWISE, NULL, 0, "residual.fwd");
    ex->ops->residual_layernorm_forward(ex, h, NULL, NULL, NULL, x, y, bias, NULL, NULL, N, C, NN_LAYERNORM_EPS);
    QC_PROF_END(ex->prof, t, 0);
}

void nn_residual_layernorm_backward(const qb_exec *ex, float *dinp, float *dw, float *db, const float *dres,
                                    const float *dout, const float *inp, const float *w, const float *mean,
                                    const float *rstd, int64_t N, int64_t C) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_NORM, w, 1, "bwd");
    ex->ops->residual_layernorm_backward(ex, dinp, dw, db, dres, dout, inp, w, mean, rstd, N, C);
    QC_PROF_END(ex->prof, t, 0);
}

void nn_l2norm_forward(const qb_exec *ex, float *out, float *norm, const float *inp, int64_t N, int64_t C) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_NORM, NULL, 0, "l2norm.fwd");
    ex->ops->l2norm_forward(ex, out, norm, inp, N, C, NN_L2NORM_EPS);
    QC_PROF_END(ex->prof, t, 0);
}

void nn_l2norm_backward(const qb_exec *ex, float *dinp, const float *dout, const float *out,
                        const float *norm, int64_t N, int64_t C) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_NORM, NULL, 0, "l2norm.bwd");
    ex->ops->l2norm_backward(ex, dinp, dout, out, norm, N, C, NN_L2NORM_EPS);
    QC_PROF_END(ex->prof, t, 0);
}
