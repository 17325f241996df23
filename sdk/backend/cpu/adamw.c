/* One fused AdamW step (Loshchilov & Hutter, "Decoupled Weight Decay
 * Regularization"), in the order and form of torch.optim.AdamW:
 *   p <- p (1 - lr wd)
 *   m <- beta1 m + (1 - beta1) g
 *   v <- beta2 v + (1 - beta2) g^2
 *   p <- p - (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps)
 * with bc1 = 1 - beta1^t and bc2 = 1 - beta2^t from the caller, on
 * g = grad * grad_scale: gradient clipping's factor, folded in here so the
 * clip needs no pass that rewrites the gradients (grad_scale 1 is exact).
 * Elementwise, so the result does not depend on n_threads. */
#include <math.h>

#include "backend/cpu/cpu.h"

#define PAR_MIN_ELEMS 65536

typedef struct adamw_job {
    float *param, *m, *v;
    const float *grad;
    float grad_scale, beta1, beta2, eps, decay, step, sqrt_bc2, omb1, omb2;
} adamw_job;

/* `omp simd` keeps the vectorization `omp parallel for simd` gave it. */
static void adamw_range(void *ctx, int64_t i0, int64_t i1, int part) {
    (void)part;
    const adamw_job *j = ctx;
    float *param = j->param, *m = j->m, *v = j->v;
    const float *grad = j->grad;
    const float grad_scale = j->grad_scale;
    const float beta1 = j->beta1, beta2 = j->beta2, eps = j->eps, decay = j->decay, step = j->step;
    const float sqrt_bc2 = j->sqrt_bc2, omb1 = j->omb1, omb2 = j->omb2;
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) {
        float g = grad[i] * grad_scale;
        float mi = beta1 * m[i] + omb1 * g;
        float vi = beta2 * v[i] + omb2 * g * g;
        m[i] = mi;
        v[i] = vi;
        param[i] = param[i] * decay - step * mi / (sqrtf(vi) / sqrt_bc2 + eps);
    }
}

void qb_cpu_adamw_step(const qb_exec *ex, float *param, const float *grad, float *m, float *v, int64_t n,
                       float grad_scale, float lr, float beta1, float beta2, float eps, float weight_decay, float bc1,
                       float bc2) {
    adamw_job j = {.param = param, .m = m, .v = v, .grad = grad, .grad_scale = grad_scale, .beta1 = beta1,
                   .beta2 = beta2, .eps = eps, .decay = 1.0f - lr * weight_decay, .step = lr / bc1,
                   .sqrt_bc2 = sqrtf(bc2), .omb1 = 1.0f - beta1, .omb2 = 1.0f - beta2};
    qb_parallel_for(ex, n, n > PAR_MIN_ELEMS, adamw_range, &j);
}
