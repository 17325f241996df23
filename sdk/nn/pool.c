/* Masked mean and max pooling over a sequence (B, T, C) -> (B, C); a
 * sequence with no real token pools to zeros. Backwards accumulate (+=). */
#include "core/profile.h"
#include "nn/nn.h"

void nn_pool_mean_forward(const qb_exec *ex, float *out, const float *inp, const uint8_t *mask, int64_t B,
                          int64_t T, int64_t C) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_POOL, NULL, 0, "pool.fwd");
    ex->ops->pool_mean_forward(ex, out, inp, mask, B, T, C);
    QC_PROF_END(ex->prof, t, 0);
}

void nn_pool_mean_backward(const qb_exec *ex, float *dinp, const float *dout, const uint8_t *mask,
                           int64_t B, int64_t T, int64_t C) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_POOL, NULL, 0, "pool.bwd");
    ex->ops->pool_mean_backward(ex, dinp, dout, mask, B, T, C);
    QC_PROF_END(ex->prof, t, 0);
}

void nn_pool_max_forward(const qb_exec *ex, float *out, int32_t *argmax, const float *inp,
                         const uint8_t *mask, int64_t B, int64_t T, int64_t C) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_POOL, NULL, 0, "pool.fwd");
    ex->ops->pool_max_forward(ex, out, argmax, inp, mask, B, T, C);
    QC_PROF_END(ex->prof, t, 0);
}

void nn_pool_max_backward(const qb_exec *ex, float *dinp, const float *dout, const int32_t *argmax,
                          int64_t B, int64_t T, int64_t C) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_POOL, NULL, 0, "pool.bwd");
    ex->ops->pool_max_backward(ex, dinp, dout, argmax, B, T, C);
    QC_PROF_END(ex->prof, t, 0);
}

void nn_pool_last_forward(const qb_exec *ex, float *out, const float *inp, const uint8_t *mask, int64_t B, int64_t T,
                          int64_t C) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_POOL, NULL, 0, "pool.fwd");
    ex->ops->pool_last_forward(ex, out, inp, mask, B, T, C);
    QC_PROF_END(ex->prof, t, 0);
}

void nn_pool_last_backward(const qb_exec *ex, float *dinp, const float *dout, const uint8_t *mask, int64_t B,
                           int64_t T, int64_t C) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_POOL, NULL, 0, "pool.bwd");
    ex->ops->pool_last_backward(ex, dinp, dout, mask, B, T, C);
    QC_PROF_END(ex->prof, t, 0);
}
