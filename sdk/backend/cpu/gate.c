/* Gated mixing: g = sigmoid(logits), out = g a + (1 - g) b, elementwise.
 * Split by element, so results do not depend on n_threads. */
#include <math.h>

#include "backend/cpu/cpu.h"

#define PAR_MIN_ELEMS 32768

typedef struct gate_job {
    float *out, *g, *da, *db, *dlogits;
    const float *logits, *a, *b, *dout, *gin;
} gate_job;

/* `omp simd` keeps the vectorization `omp parallel for simd` gave these. */
static void gate_forward_range(void *ctx, int64_t i0, int64_t i1, int part) {
    (void)part;
    const gate_job *j = ctx;
    float *out = j->out, *g = j->g;
    const float *logits = j->logits, *a = j->a, *b = j->b;
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) {
        float x = logits[i];
        float e = expf(-fabsf(x));
        float s = 1.0f / (1.0f + e);
        float gi = x >= 0.0f ? s : e * s;
        g[i] = gi;
        out[i] = gi * a[i] + (1.0f - gi) * b[i];
    }
}

/* sigmoid(x) = 1 / (1 + e^-x), evaluated as e / (1 + e) with e = e^x for
 * x < 0 so expf never overflows. g may alias logits: each element is read
 * before it is written. */
void qb_cpu_gate_forward(const qb_exec *ex, float *out, float *g, const float *logits, const float *a,
                         const float *b, int64_t n) {
    gate_job j = {.out = out, .g = g, .logits = logits, .a = a, .b = b};
    qb_parallel_for(ex, n, n > PAR_MIN_ELEMS, gate_forward_range, &j);
}

static void gate_dlogits_range(void *ctx, int64_t i0, int64_t i1, int part) {
    (void)part;
    const gate_job *j = ctx;
    float *dlogits = j->dlogits;
    const float *g = j->gin, *dout = j->dout, *a = j->a, *b = j->b;
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) {
        float gi = g[i], d = dout[i];
        dlogits[i] = d * (a[i] - b[i]) * gi * (1.0f - gi);
    }
}

static void gate_da_range(void *ctx, int64_t i0, int64_t i1, int part) {
    (void)part;
    const gate_job *j = ctx;
    float *da = j->da;
    const float *g = j->gin, *dout = j->dout;
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) da[i] += g[i] * dout[i];
}

static void gate_db_range(void *ctx, int64_t i0, int64_t i1, int part) {
    (void)part;
    const gate_job *j = ctx;
    float *db = j->db;
    const float *g = j->gin, *dout = j->dout;
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) db[i] += (1.0f - g[i]) * dout[i];
}

/* dg = dout (a - b); dlogits = dg g (1 - g) (overwrites). da, db may be NULL. */
void qb_cpu_gate_backward(const qb_exec *ex, float *da, float *db, float *dlogits, const float *dout,
                          const float *a, const float *b, const float *g, int64_t n) {
    gate_job j = {.da = da, .db = db, .dlogits = dlogits, .a = a, .b = b, .dout = dout, .gin = g};
    qb_parallel_for(ex, n, n > PAR_MIN_ELEMS, gate_dlogits_range, &j);
    if (da) qb_parallel_for(ex, n, n > PAR_MIN_ELEMS, gate_da_range, &j);
    if (db) qb_parallel_for(ex, n, n > PAR_MIN_ELEMS, gate_db_range, &j);
}
