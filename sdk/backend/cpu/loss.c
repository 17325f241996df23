/* Per-row cross-entropy with label smoothing and an ignore index.
 *
 * Row i of logits z (V classes), target t, smoothing s:
 *   q = (1 - s) onehot(t) + s / V                       (target distribution)
 *   lse = m + log sum_j exp(z_j - m),  m = max_j z_j    (stable log-sum-exp)
 *   loss = sum_j q_j (lse - z_j) = (1 - s)(lse - z_t) + s (lse - mean_j z_j)
 *   dloss/dz = softmax(z) - q
 * as torch.nn.functional.cross_entropy(..., label_smoothing=s, reduction='none').
 *
 * Rows whose target is ignore_index get loss 0 and no gradient. A target
 * outside [0, V) is a caller bug (callers validate); it is treated like an
 * ignored row so memory stays safe. probs is the softmax of every row,
 * ignored or not. targets == NULL: row i's target is i. Work is split by row, so results do not depend on
 * n_threads. */
#include <math.h>

#include "backend/cpu/cpu.h"

#define PAR_MIN_ELEMS 32768

static inline bool row_counts(int32_t t, int64_t V, int32_t ignore_index) {
    return t != ignore_index && t >= 0 && (int64_t)t < V;
}

typedef struct ce_fw_job {
    float *losses;
    float *probs;
    const float *logits;
    const int32_t *targets;
    int64_t V;
    float smoothing;
    int32_t ignore_index;
} ce_fw_job;

static void ce_fw_range(void *ctx, int64_t i0, int64_t i1, int part) {
    (void)part;
    const ce_fw_job *job = ctx;
    float *losses = job->losses, *probs = job->probs;
    const float *logits = job->logits;
    const int32_t *targets = job->targets;
    const int64_t V = job->V;
    const float smoothing = job->smoothing;
    const int32_t ignore_index = job->ignore_index;
    for (int64_t i = i0; i < i1; i++) {
        const float *z = logits + i * V;
        float *p = probs + i * V;
        float m = z[0];
        for (int64_t j = 1; j < V; j++) m = z[j] > m ? z[j] : m;
        double sum = 0.0, zsum = 0.0;
#pragma omp simd reduction(+ : sum, zsum)
        for (int64_t j = 0; j < V; j++) {
            float e = expf(z[j] - m);
            p[j] = e;
            sum += e;
            zsum += z[j];
        }
        const float inv = (float)(1.0 / sum);
        for (int64_t j = 0; j < V; j++) p[j] *= inv;
        int32_t t = targets ? targets[i] : (int32_t)i;
        if (!row_counts(t, V, ignore_index)) {
            losses[i] = 0.0f;
            continue;
        }
        double lse = (double)m + log(sum);
        double loss = (1.0 - (double)smoothing) * (lse - (double)z[t]);
        if (smoothing != 0.0f) loss += (double)smoothing * (lse - zsum / (double)V);
        losses[i] = (float)loss;
    }
}

void qb_cpu_cross_entropy_forward(const qb_exec *ex, float *losses, float *probs, const float *logits,
                                  const int32_t *targets, int64_t N, int64_t V, float smoothing,
                                  int32_t ignore_index) {
    if (V <= 0) return;
    ce_fw_job j_ce_fw = {losses, probs, logits, targets, V, smoothing, ignore_index};
    qb_parallel_for(ex, N, N * V > PAR_MIN_ELEMS, ce_fw_range, &j_ce_fw);
}

typedef struct ce_bw_job {
    float *dlogits;
    const float *probs;
    const int32_t *targets;
    int64_t V;
    float scale;
    float off;
    float on;
    int32_t ignore_index;
} ce_bw_job;

static void ce_bw_range(void *ctx, int64_t i0, int64_t i1, int part) {
    (void)part;
    const ce_bw_job *job = ctx;
    float *dlogits = job->dlogits;
    const float *probs = job->probs;
    const int32_t *targets = job->targets;
    const int64_t V = job->V;
    const float scale = job->scale, off = job->off, on = job->on;
    const int32_t ignore_index = job->ignore_index;
    for (int64_t i = i0; i < i1; i++) {
        int32_t t = targets ? targets[i] : (int32_t)i;
        if (!row_counts(t, V, ignore_index)) continue;
        const float d = scale;
        const float *p = probs + i * V;
        float *dz = dlogits + i * V;
        for (int64_t j = 0; j < V; j++) dz[j] += d * (p[j] - off);
        dz[t] -= d * on;
    }
}

void qb_cpu_cross_entropy_backward(const qb_exec *ex, float *dlogits, float scale, const float *probs,
                                   const int32_t *targets, int64_t N, int64_t V, float smoothing,
                                   int32_t ignore_index) {
    if (V <= 0) return;
    const float off = smoothing / (float)V; /* q_j for j != t */
    const float on = 1.0f - smoothing;      /* q_t - off */
    ce_bw_job j_ce_bw = {dlogits, probs, targets, V, scale, off, on, ignore_index};
    qb_parallel_for(ex, N, N * V > PAR_MIN_ELEMS, ce_bw_range, &j_ce_bw);
}
