/* 1-D convolution layer, channels last; see qb_ops.conv1d_forward for shapes.
 * The backward accumulates (+=); dinp, dw and db may be NULL to skip them. */
#include "core/profile.h"
#include "nn/nn.h"

void nn_conv1d_forward(const qb_exec *ex, float *out, const float *inp, const float *w, const float *b,
                       int64_t B, int64_t T, int64_t C, int64_t OC, int64_t K, int64_t stride, int64_t pad) {
    const int64_t Tout = (T + 2 * pad - K) / stride + 1;
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_CONV, w, 1, "fwd");
    ex->ops->conv1d_forward(ex, out, inp, w, b, B, T, C, OC, K, stride, pad);
    QC_PROF_END(ex->prof, t, 2.0 * (double)(B * Tout) * (double)OC * (double)(C * K));
}

void nn_conv1d_backward(const qb_exec *ex, float *dinp, float *dw, float *db, const float *dout,
                        const float *inp, const float *w, int64_t B, int64_t T, int64_t C, int64_t OC,
                        int64_t K, int64_t stride, int64_t pad) {
    const int64_t Tout = (T + 2 * pad - K) / stride + 1;
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_CONV, w, 1, "bwd");
    ex->ops->conv1d_backward(ex, dinp, dw, db, dout, inp, w, B, T, C, OC, K, stride, pad);
    QC_PROF_END(ex->prof, t, 2.0 * (double)(B * Tout) * (double)OC * (double)(C * K) * ((dinp != NULL) + (dw != NULL)));
}
