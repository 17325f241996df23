/* One fused AdamW step (Loshchilov & Hutter, "Decoupled Weight Decay
 * Regularization"), in the order and form of torch.optim.AdamW:
 *   p <- p (1 - lr wd)
 *   m <- beta1 m + (1 - beta1) g
 *   v <- beta2 v + (1 - beta2) g^2
 *   p <- p - (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps)
 * with bc1 = 1 - beta1^t and bc2 = 1 - beta2^t from the caller. Elementwise,
 * so the result does not depend on n_threads. */
#include <math.h>

#include "backend/cpu/cpu.h"

#define PAR_MIN_ELEMS 65536

void qb_cpu_adamw_step(const qb_exec *ex, float *param, const float *grad, float *m, float *v, int64_t n,
                       float lr, float beta1, float beta2, float eps, float weight_decay, float bc1, float bc2) {
    const float decay = 1.0f - lr * weight_decay;
    const float step = lr / bc1;
    const float sqrt_bc2 = sqrtf(bc2);
    const float omb1 = 1.0f - beta1, omb2 = 1.0f - beta2;
#pragma omp parallel for simd num_threads(ex->n_threads) schedule(static) if (parallel : n > PAR_MIN_ELEMS)
    for (int64_t i = 0; i < n; i++) {
        float g = grad[i];
        float mi = beta1 * m[i] + omb1 * g;
        float vi = beta2 * v[i] + omb2 * g * g;
        m[i] = mi;
        v[i] = vi;
        param[i] = param[i] * decay - step * mi / (sqrtf(vi) / sqrt_bc2 + eps);
    }
}
