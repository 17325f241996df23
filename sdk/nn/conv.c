/* 1-D convolution layer, channels last; see qb_ops.conv1d_forward for shapes.
 * The backward accumulates (+=); dinp, dw and db may be NULL to skip them. */
#include "nn/nn.h"

void nn_conv1d_forward(const qb_exec *ex, float *out, const float *inp, const float *w, const float *b,
                       int64_t B, int64_t T, int64_t C, int64_t OC, int64_t K, int64_t stride, int64_t pad) {
    ex->ops->conv1d_forward(ex, out, inp, w, b, B, T, C, OC, K, stride, pad);
}

void nn_conv1d_backward(const qb_exec *ex, float *dinp, float *dw, float *db, const float *dout,
                        const float *inp, const float *w, int64_t B, int64_t T, int64_t C, int64_t OC,
                        int64_t K, int64_t stride, int64_t pad) {
    ex->ops->conv1d_backward(ex, dinp, dw, db, dout, inp, w, B, T, C, OC, K, stride, pad);
}
