/* Gated mixing: g = sigmoid(logits), out = g a + (1 - g) b, elementwise.
 * Split by element, so results do not depend on n_threads. */
#include <math.h>

#include "backend/cpu/cpu.h"

#define PAR_MIN_ELEMS 32768

/* sigmoid(x) = 1 / (1 + e^-x), evaluated as e / (1 + e) with e = e^x for
 * x < 0 so expf never overflows. g may alias logits: each element is read
 * before it is written. */
void qb_cpu_gate_forward(const qb_exec *ex, float *out, float *g, const float *logits, const float *a,
                         const float *b, int64_t n) {
#pragma omp parallel for simd num_threads(ex->n_threads) schedule(static) if (parallel : n > PAR_MIN_ELEMS)
    for (int64_t i = 0; i < n; i++) {
        float x = logits[i];
        float e = expf(-fabsf(x));
        float s = 1.0f / (1.0f + e);
        float gi = x >= 0.0f ? s : e * s;
        g[i] = gi;
        out[i] = gi * a[i] + (1.0f - gi) * b[i];
    }
}

/* dg = dout (a - b); dlogits = dg g (1 - g) (overwrites). da, db may be NULL. */
void qb_cpu_gate_backward(const qb_exec *ex, float *da, float *db, float *dlogits, const float *dout,
                          const float *a, const float *b, const float *g, int64_t n) {
#pragma omp parallel for simd num_threads(ex->n_threads) schedule(static) if (parallel : n > PAR_MIN_ELEMS)
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i], d = dout[i];
        dlogits[i] = d * (a[i] - b[i]) * gi * (1.0f - gi);
    }
    if (da) {
#pragma omp parallel for simd num_threads(ex->n_threads) schedule(static) if (parallel : n > PAR_MIN_ELEMS)
        for (int64_t i = 0; i < n; i++) da[i] += g[i] * dout[i];
    }
    if (db) {
#pragma omp parallel for simd num_threads(ex->n_threads) schedule(static) if (parallel : n > PAR_MIN_ELEMS)
        for (int64_t i = 0; i < n; i++) db[i] += (1.0f - g[i]) * dout[i];
    }
}
