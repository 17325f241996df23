/* Multi-head scaled dot-product attention core on the CPU (Vaswani et al. 2017).
 *
 * Per (batch b, head h) the head's slices are strided views: q_bh is
 * q + b*Tq*C + h*D with row stride C (Tq x D), likewise k_bh, v_bh (Tk x D),
 * and out_bh; att_bh = att + (b*H + h)*Tq*Tk is a dense Tq x Tk block. Each
 * product is one cblas_sgemm (through qb_cpu_sgemm, blas_buffer.c) on those
 * views with lda = C, so no head is copied or packed:
 *   forward   S = scale q_bh k_bh^T, P = masked row softmax(S), out_bh = P v_bh
 *   backward  dv_bh += P^T dout_bh,  dP = dout_bh v_bh^T,
 *             dS = P * (dP - rowsum(dP * P)),
 *             dq_bh += scale dS k_bh,  dk_bh += scale dS^T q_bh.
 * Masked keys and fully-masked query rows have P = 0, hence dS = 0: the
 * backward needs no mask.
 *
 * Threading: ex->n_threads threads (threads.h) over the B*H (b, h) pairs; each
 * pair's GEMMs run single-threaded inside its worker (OpenBLAS is set to one
 * thread for the section and restored after). Chosen by measurement over a
 * serial loop of per-head GEMMs on a multi-threaded OpenBLAS: a head's
 * 64x64x64 GEMM is under OpenBLAS's own threading threshold, so that leaves
 * a core idle during every GEMM (docs/benchmarks.md, "Attention: threads
 * over heads", has the figures). Pairs write disjoint (rows of b, columns
 * of h) slices of out/dq/dk/dv, so there are no races, and each element is
 * computed by the same single-threaded code whatever the team size: results
 * do not depend on ex->n_threads.
 *
 * The backward accumulates (+=) into dq, dk, dv with beta = 1 and overwrites
 * them with beta = 0 (its first writer: nothing need clear them first);
 * datt is overwritten. */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "backend/cpu/cpu.h"

/* Masked softmax of one score row s (Tk), in place. Allowed keys: j < jend
 * with mask[j] != 0 (mask NULL = all real); the others get exactly 0, and a
 * row with no allowed key becomes all zeros (backend.h's fully-masked rule). */
static void softmax_row(float *s, const uint8_t *mask, const float *bias, int64_t jend, int64_t Tk) {
    if (bias) {
#pragma omp simd
        for (int64_t j = 0; j < jend; j++) s[j] += bias[j];
    }
    if (mask) {
        for (int64_t j = 0; j < jend; j++)
            if (!mask[j]) s[j] = -INFINITY;
    }
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < jend; j++) mx = s[j] > mx ? s[j] : mx;
    if (mx == -INFINITY) {
        for (int64_t j = 0; j < Tk; j++) s[j] = 0.0f;
        return;
    }
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < jend; j++) {
        float e = qb_exp_neg(s[j] - mx);
        s[j] = e;
        sum += e;
    }
    /* sum >= 1: the max key contributes exp(0). */
    float inv = 1.0f / sum;
#pragma omp simd
    for (int64_t j = 0; j < jend; j++) s[j] *= inv;
    for (int64_t j = jend; j < Tk; j++) s[j] = 0.0f;
}

typedef struct att_fw_job {
    float *out;
    float *att;
    const float *q;
    const float *k;
    const float *v;
    const uint8_t *key_mask;
    const float *key_bias;
    int64_t H;
    int64_t Tq;
    int64_t Tk;
    int64_t C;
    int64_t D;
    float scale;
    bool causal;
    atomic_int *failed;
} att_fw_job;

static void att_fw_range(void *ctx, int64_t bh0, int64_t bh1, int part) {
    (void)part;
    const att_fw_job *job = ctx;
    float *out = job->out, *att = job->att;
    const float *q = job->q, *k = job->k, *v = job->v;
    const uint8_t *key_mask = job->key_mask;
    const float *key_bias = job->key_bias;
    const int64_t H = job->H, Tq = job->Tq, Tk = job->Tk, C = job->C, D = job->D;
    const float scale = job->scale;
    const bool causal = job->causal;
    atomic_int *failed = job->failed;
    for (int64_t bh = bh0; bh < bh1; bh++) {
        int64_t b = bh / H, h = bh % H;
        const float *qb = q + b * Tq * C + h * D;
        const float *kb = k + b * Tk * C + h * D;
        const float *vb = v + b * Tk * C + h * D;
        float *ob = out + b * Tq * C + h * D;
        float *P = att + bh * Tq * Tk;
        const uint8_t *mask = key_mask ? key_mask + b * Tk : NULL;
        const float *bias = key_bias ? key_bias + b * Tk : NULL;
        /* Trailing padding keys can never be attended: run the GEMMs over
         * keys [0, kend) only (padded batches are common in encoders). */
        int64_t kend = Tk;
        if (mask)
            while (kend > 0 && !mask[kend - 1]) kend--;
        if (kend == 0) {
            for (int64_t i = 0; i < Tq * Tk; i++) P[i] = 0.0f;
            for (int64_t i = 0; i < Tq; i++) memset(ob + i * C, 0, (size_t)D * sizeof(float));
            continue;
        }
        if (!qb_cpu_sgemm(false, true, Tq, kend, D, scale, qb, C, kb, C, 0.0f, P, Tk)) {
            atomic_store_explicit(failed, 1, memory_order_relaxed);
            continue;
        }
        for (int64_t i = 0; i < Tq; i++) {
            /* causal: query i sees keys 0..i */
            int64_t jend = causal ? (i + 1 < kend ? i + 1 : kend) : kend;
            softmax_row(P + i * Tk, mask, bias, jend, Tk);
        }
        if (!qb_cpu_sgemm(false, false, Tq, D, kend, 1.0f, P, Tk, vb, C, 0.0f, ob, C)) {
            atomic_store_explicit(failed, 1, memory_order_relaxed);
        }
    }
}

void qb_cpu_attention_forward(const qb_exec *ex, float *out, float *att, const float *q, const float *k,
                              const float *v, const uint8_t *key_mask, const float *key_bias, int64_t B,
                              int64_t Tq, int64_t Tk, int64_t C, int64_t H, bool causal) {
    if (B <= 0 || Tq <= 0 || H <= 0 || C <= 0) return;
    const int64_t D = C / H;
    if (Tk <= 0 || D <= 0) {
        /* No keys (or empty heads): every query row is fully masked. */
        for (int64_t i = 0; i < B * Tq * C; i++) out[i] = 0.0f;
        return;
    }
    const float scale = 1.0f / sqrtf((float)D);
    const int64_t BH = B * H;
    qb_cpu_blas_single_threaded(); /* our threads call sgemm; see dense.c */
    atomic_int failed = 0;         /* a worker's fault, recorded by this thread after the region */
    att_fw_job j_att_fw = {out, att, q, k, v, key_mask, key_bias, H, Tq, Tk, C, D, scale, causal, &failed};
    qb_parallel_for(ex, BH, true, att_fw_range, &j_att_fw);
    if (atomic_load(&failed)) qb_cpu_fault_oom();
}

typedef struct att_bw_job {
    float *dq;
    float *dk;
    float *dv;
    float *datt;
    const float *dout;
    const float *q;
    const float *k;
    const float *v;
    const float *att;
    int64_t H;
    int64_t Tq;
    int64_t Tk;
    int64_t C;
    int64_t D;
    float scale;
    float beta;
    atomic_int *failed;
} att_bw_job;

static void att_bw_range(void *ctx, int64_t bh0, int64_t bh1, int part) {
    (void)part;
    const att_bw_job *job = ctx;
    float *dq = job->dq, *dk = job->dk, *dv = job->dv, *datt = job->datt;
    const float *dout = job->dout, *q = job->q, *k = job->k, *v = job->v, *att = job->att;
    const int64_t H = job->H, Tq = job->Tq, Tk = job->Tk, C = job->C, D = job->D;
    const float scale = job->scale, beta = job->beta;
    atomic_int *failed = job->failed;
    for (int64_t bh = bh0; bh < bh1; bh++) {
        int64_t b = bh / H, h = bh % H;
        const int64_t qoff = b * Tq * C + h * D, koff = b * Tk * C + h * D;
        const float *P = att + bh * Tq * Tk;
        float *dS = datt + bh * Tq * Tk;
        /* Keys whose column of P is all zero (trailing padding) add exactly
         * nothing to dq, dk, dv: restrict every product to keys [0, kend).
         * The scan stops at the first nonzero, so it is cheap when nothing
         * is padded. */
        int64_t kend = Tk;
        for (; kend > 0; kend--) {
            int64_t i = 0;
            while (i < Tq && P[i * Tk + kend - 1] == 0.0f) i++;
            if (i < Tq) break;
        }
        /* datt is dS on return (the key-bias gradient sums it): the skipped
         * columns' dS is exactly 0. */
        if (kend < Tk)
            for (int64_t i = 0; i < Tq; i++) memset(dS + i * Tk + kend, 0, (size_t)(Tk - kend) * sizeof(float));
        if (beta == 0.0f) {
            /* Overwriting: the keys the products skip get their zeros here. */
            for (int64_t j = kend; j < Tk; j++) {
                memset(dk + koff + j * C, 0, (size_t)D * sizeof(float));
                memset(dv + koff + j * C, 0, (size_t)D * sizeof(float));
            }
            if (kend == 0)
                for (int64_t i = 0; i < Tq; i++) memset(dq + qoff + i * C, 0, (size_t)D * sizeof(float));
        }
        if (kend == 0) continue;
        /* dv_bh += P^T dout_bh  (kend x D);  dP = dout_bh v_bh^T  (Tq x kend) */
        if (!qb_cpu_sgemm(true, false, kend, D, Tq, 1.0f, P, Tk, dout + qoff, C, beta, dv + koff, C) ||
            !qb_cpu_sgemm(false, true, Tq, kend, D, 1.0f, dout + qoff, C, v + koff, C, 0.0f, dS, Tk)) {
            atomic_store_explicit(failed, 1, memory_order_relaxed);
            continue;
        }
        /* softmax backward, row by row; scale is folded into the next GEMMs' alpha */
        for (int64_t i = 0; i < Tq; i++) {
            const float *p = P + i * Tk;
            float *d = dS + i * Tk;
            float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int64_t j = 0; j < kend; j++) dot += p[j] * d[j];
#pragma omp simd
            for (int64_t j = 0; j < kend; j++) d[j] = p[j] * (d[j] - dot);
        }
        /* dq_bh += scale dS k_bh  (Tq x D);  dk_bh += scale dS^T q_bh  (kend x D) */
        if (!qb_cpu_sgemm(false, false, Tq, D, kend, scale, dS, Tk, k + koff, C, beta, dq + qoff, C) ||
            !qb_cpu_sgemm(true, false, kend, D, Tq, scale, dS, Tk, q + qoff, C, beta, dk + koff, C)) {
            atomic_store_explicit(failed, 1, memory_order_relaxed);
        }
    }
}

typedef struct att_bias_job {
    float *dkey_bias;
    const float *datt;
    int64_t H, Tq, Tk;
} att_bias_job;

static void att_bias_range(void *ctx, int64_t b0, int64_t b1, int part) {
    (void)part;
    const att_bias_job *job = ctx;
    const int64_t H = job->H, Tq = job->Tq, Tk = job->Tk;
    for (int64_t b = b0; b < b1; b++) {
        float *db = job->dkey_bias + b * Tk;
        for (int64_t r = 0; r < H * Tq; r++) {
            const float *d = job->datt + (b * H * Tq + r) * Tk;
#pragma omp simd
            for (int64_t j = 0; j < Tk; j++) db[j] += d[j];
        }
    }
}

void qb_cpu_attention_backward(const qb_exec *ex, float *dq, float *dk, float *dv, float *dkey_bias, float *datt,
                               const float *dout, const float *q, const float *k, const float *v, const float *att,
                               int64_t B, int64_t Tq, int64_t Tk, int64_t C, int64_t H, float beta) {
    if (B <= 0 || Tq <= 0 || H <= 0 || C <= 0) return;
    const int64_t D = C / H;
    if (Tk <= 0 || D <= 0) {
        /* No keys or empty heads: no gradient, which overwriting must still write. */
        if (beta == 0.0f) {
            memset(dq, 0, (size_t)(B * Tq * C) * sizeof(float));
            if (Tk > 0) {
                memset(dk, 0, (size_t)(B * Tk * C) * sizeof(float));
                memset(dv, 0, (size_t)(B * Tk * C) * sizeof(float));
            }
        }
        return;
    }
    const float scale = 1.0f / sqrtf((float)D);
    const int64_t BH = B * H;
    qb_cpu_blas_single_threaded(); /* our threads call sgemm; see dense.c */
    atomic_int failed = 0;         /* a worker's fault, recorded by this thread after the region */
    att_bw_job j_att_bw = {dq, dk, dv, datt, dout, q, k, v, att, H, Tq, Tk, C, D, scale, beta, &failed};
    qb_parallel_for(ex, BH, true, att_bw_range, &j_att_bw);
    if (atomic_load(&failed)) qb_cpu_fault_oom();
    if (dkey_bias) {
        /* The bias enters the scores unscaled, so its gradient is dS summed
         * over heads and queries; a second pass over batches keeps the sum's
         * order (and bits) independent of the team. */
        att_bias_job jb = {dkey_bias, datt, H, Tq, Tk};
        qb_parallel_for(ex, B, true, att_bias_range, &jb);
    }
}
