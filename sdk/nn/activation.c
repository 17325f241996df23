/* GELU, softmax, dropout and residual layers over the backend's kernels.
 * Backwards accumulate (+=). */
#include "core/profile.h"
#include "nn/nn.h"

void nn_gelu_forward(const qb_exec *ex, float *out, const float *inp, int64_t n) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_GELU, NULL, 0, "gelu.fwd");
    ex->ops->gelu_forward(ex, out, inp, n);
    QC_PROF_END(ex->prof, t, 0);
}

void nn_gelu_backward(const qb_exec *ex, float *dinp, const float *inp, const float *dout, int64_t n) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_GELU, NULL, 0, "gelu.bwd");
    ex->ops->gelu_backward(ex, dinp, inp, dout, n);
    QC_PROF_END(ex->prof, t, 0);
}

void nn_gelu_bias_backward(const qb_exec *ex, float *dinp, float *dbias, const float *inp, const float *dout, int64_t N,
                           int64_t C) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_GELU, NULL, 0, "gelu.bwd");
    ex->ops->gelu_bias_backward(ex, dinp, dbias, inp, dout, N, C);
    QC_PROF_END(ex->prof, t, 0);
}

void nn_quick_gelu_forward(const qb_exec *ex, float *out, const float *inp, int64_t n) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_GELU, NULL, 0, "gelu.fwd");
    ex->ops->quick_gelu_forward(ex, out, inp, n);
    QC_PROF_END(ex->prof, t, 0);
}

void nn_quick_gelu_bias_backward(const qb_exec *ex, float *dinp, float *dbias, const float *inp, const float *dout,
                                 int64_t N, int64_t C) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_GELU, NULL, 0, "gelu.bwd");
    ex->ops->quick_gelu_bias_backward(ex, dinp, dbias, inp, dout, N, C);
    QC_PROF_END(ex->prof, t, 0);
}

void nn_softmax_forward(const qb_exec *ex, float *out, const float *inp, int64_t N, int64_t C) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_SOFTMAX, NULL, 0, "softmax.fwd");
    ex->ops->softmax_forward(ex, out, inp, N, C);
    QC_PROF_END(ex->prof, t, 0);
}

void nn_softmax_backward(const qb_exec *ex, float *dinp, const float *dout, const float *out, int64_t N,
                         int64_t C) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_SOFTMAX, NULL, 0, "softmax.bwd");
    ex->ops->softmax_backward(ex, dinp, dout, out, N, C);
    QC_PROF_END(ex->prof, t, 0);
}

/* The dropout kernel itself treats p <= 0 as the identity with keep = 1
 * (qb_ops has no device-to-device copy to do it here), so inference is
 * simply p = 0. */
void nn_dropout_forward(const qb_exec *ex, float *out, uint8_t *keep, const float *inp, int64_t n, float p,
                        uint64_t seed) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_ELEMENTWISE, NULL, 0, "dropout.fwd");
    ex->ops->dropout_forward(ex, out, keep, inp, n, p < 0.0f ? 0.0f : p, seed);
    QC_PROF_END(ex->prof, t, 0);
}

void nn_dropout_backward(const qb_exec *ex, float *dinp, const float *dout, const uint8_t *keep, int64_t n,
                         float p) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_ELEMENTWISE, NULL, 0, "dropout.bwd");
    ex->ops->dropout_backward(ex, dinp, dout, keep, n, p < 0.0f ? 0.0f : p);
    QC_PROF_END(ex->prof, t, 0);
}

void nn_residual_forward(const qb_exec *ex, float *out, const float *a, const float *b, int64_t n) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_ELEMENTWISE, NULL, 0, "residual.fwd");
    ex->ops->add(ex, out, a, b, n);
    QC_PROF_END(ex->prof, t, 0);
}

void nn_residual_backward(const qb_exec *ex, float *da, float *db, const float *dout, int64_t n) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_ELEMENTWISE, NULL, 0, "residual.bwd");
    if (da) ex->ops->axpy(ex, da, 1.0f, dout, n);
    if (db) ex->ops->axpy(ex, db, 1.0f, dout, n);
    QC_PROF_END(ex->prof, t, 0);
}
