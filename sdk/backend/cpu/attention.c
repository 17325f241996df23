/* Multi-head scaled dot-product attention core on the CPU (Vaswani et al. 2017).
 *
 * Per (batch b, head h) the head's slices are strided views: q_bh is
 * q + b*Tq*C + h*D with row stride C (Tq x D), likewise k_bh, v_bh (Tk x D),
 * and out_bh; att_bh = att + (b*H + h)*Tq*Tk is a dense Tq x Tk block. Each
 * product is one cblas_sgemm on those views with lda = C, so no head is
 * copied or packed:
 *   forward   S = scale q_bh k_bh^T, P = masked row softmax(S), out_bh = P v_bh
 *   backward  dv_bh += P^T dout_bh,  dP = dout_bh v_bh^T,
 *             dS = P * (dP - rowsum(dP * P)),
 *             dq_bh += scale dS k_bh,  dk_bh += scale dS^T q_bh.
 * Masked keys and fully-masked query rows have P = 0, hence dS = 0: the
 * backward needs no mask.
 *
 * Threading: one OpenMP team of ex->n_threads over the B*H (b, h) pairs; each
 * pair's GEMMs run single-threaded inside its worker (OpenBLAS is set to one
 * thread for the section and restored after). Measured at the benchmark size
 * (B=32, Tq=Tk=64, C=256, H=4, D=64) on the 2-core build machine this beats
 * the alternative of a serial loop of GEMMs with a threaded OpenBLAS plus a
 * parallel softmax: a 64x64x64 GEMM is below OpenBLAS's own threading
 * threshold (M*N*K <= 4 * 65536 runs on one thread), so the serial variant
 * leaves a core idle during every GEMM (numbers in the report/benchmark:
 * forward+backward about 2x slower that way). Pairs write disjoint
 * (rows of b, columns of h) slices of out/dq/dk/dv, so there are no races,
 * and each element is computed by the same single-threaded code whatever the
 * team size: results do not depend on ex->n_threads.
 *
 * The backward accumulates (+=) into dq, dk, dv; datt is overwritten. */
#include <cblas.h>
#include <math.h>

#include "backend/cpu/cpu.h"

/* OpenBLAS keeps one process-wide thread count (see dense.c). Forcing it to 1
 * while our own team calls sgemm keeps 2 cores from running 4 spinning
 * threads; the previous value is put back afterwards. */
static int blas_single_begin(void) {
    int prev = openblas_get_num_threads();
    if (prev != 1) openblas_set_num_threads(1);
    return prev;
}

static void blas_single_end(int prev) {
    if (prev != 1) openblas_set_num_threads(prev);
}

/* exp(x) for x <= 0 (softmax arguments after the max is subtracted), written
 * so `omp simd` vectorizes it: x = n ln2 + r with |r| <= ln2/2, exp(r) by a
 * degree-6 Taylor/Horner polynomial (relative error < 2e-7 on that range,
 * about 1-2 ulp), 2^n by building the exponent bits. Arguments below -87
 * (results below FLT_MIN) return 0, as do masked (-inf) entries. */
#pragma omp declare simd notinbranch
static inline float exp_neg(float x) {
    const float ln2_hi = 0.693145751953125f, ln2_lo = 1.428606765330187e-06f;
    const float log2e = 1.44269504088896341f;
    float xc = x < -87.0f ? -87.0f : x;
    float n = floorf(xc * log2e + 0.5f);
    float r = xc - n * ln2_hi - n * ln2_lo;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union {
        uint32_t u;
        float f;
    } e;
    e.u = (uint32_t)((int32_t)n + 127) << 23;
    return x < -87.0f ? 0.0f : p * e.f;
}

/* Masked softmax of one row s (Tk) in place. allowed keys: j < jend with
 * mask[j] != 0 (mask NULL = all). Returns nothing; a row with no allowed key
 * becomes all zeros. */
static void softmax_row(float *s, const uint8_t *mask, int64_t jend, int64_t Tk) {
    if (mask) {
        for (int64_t j = 0; j < jend; j++)
            if (!mask[j]) s[j] = -INFINITY;
    }
    float mx = -INFINITY;
    for (int64_t j = 0; j < jend; j++) mx = s[j] > mx ? s[j] : mx;
    if (mx == -INFINITY) {
        for (int64_t j = 0; j < Tk; j++) s[j] = 0.0f;
        return;
    }
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < jend; j++) {
        float e = exp_neg(s[j] - mx);
        s[j] = e;
        sum += e;
    }
    /* sum >= 1: the max key contributes exp(0). */
    float inv = 1.0f / sum;
#pragma omp simd
    for (int64_t j = 0; j < jend; j++) s[j] *= inv;
    for (int64_t j = jend; j < Tk; j++) s[j] = 0.0f;
}

void qb_cpu_attention_forward(const qb_exec *ex, float *out, float *att, const float *q, const float *k,
                              const float *v, const uint8_t *key_mask, int64_t B, int64_t Tq, int64_t Tk,
                              int64_t C, int64_t H, bool causal) {
    if (B <= 0 || Tq <= 0 || H <= 0 || C <= 0) return;
    const int64_t D = C / H;
    if (Tk <= 0 || D <= 0) {
        /* No keys (or empty heads): every query row is fully masked. */
        for (int64_t i = 0; i < B * Tq * C; i++) out[i] = 0.0f;
        return;
    }
    const float scale = 1.0f / sqrtf((float)D);
    const int64_t BH = B * H;
    int prev = blas_single_begin();
#pragma omp parallel for num_threads(ex->n_threads) schedule(static)
    for (int64_t bh = 0; bh < BH; bh++) {
        int64_t b = bh / H, h = bh % H;
        const float *qb = q + b * Tq * C + h * D;
        const float *kb = k + b * Tk * C + h * D;
        const float *vb = v + b * Tk * C + h * D;
        float *ob = out + b * Tq * C + h * D;
        float *P = att + bh * Tq * Tk;
        const uint8_t *mask = key_mask ? key_mask + b * Tk : NULL;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)Tq, (blasint)Tk, (blasint)D, scale, qb,
                    (blasint)C, kb, (blasint)C, 0.0f, P, (blasint)Tk);
        for (int64_t i = 0; i < Tq; i++) {
            /* causal: query i sees keys 0..i */
            int64_t jend = causal ? (i + 1 < Tk ? i + 1 : Tk) : Tk;
            softmax_row(P + i * Tk, mask, jend, Tk);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)Tq, (blasint)D, (blasint)Tk, 1.0f, P,
                    (blasint)Tk, vb, (blasint)C, 0.0f, ob, (blasint)C);
    }
    blas_single_end(prev);
}

void qb_cpu_attention_backward(const qb_exec *ex, float *dq, float *dk, float *dv, float *datt,
                               const float *dout, const float *q, const float *k, const float *v,
                               const float *att, int64_t B, int64_t Tq, int64_t Tk, int64_t C, int64_t H) {
    if (B <= 0 || Tq <= 0 || Tk <= 0 || H <= 0 || C <= 0) return;
    const int64_t D = C / H;
    if (D <= 0) return;
    const float scale = 1.0f / sqrtf((float)D);
    const int64_t BH = B * H;
    int prev = blas_single_begin();
#pragma omp parallel for num_threads(ex->n_threads) schedule(static)
    for (int64_t bh = 0; bh < BH; bh++) {
        int64_t b = bh / H, h = bh % H;
        const int64_t qoff = b * Tq * C + h * D, koff = b * Tk * C + h * D;
        const float *P = att + bh * Tq * Tk;
        float *dS = datt + bh * Tq * Tk;
        /* dv_bh += P^T dout_bh  (Tk x D) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)Tk, (blasint)D, (blasint)Tq, 1.0f, P,
                    (blasint)Tk, dout + qoff, (blasint)C, 1.0f, dv + koff, (blasint)C);
        /* dP = dout_bh v_bh^T  (Tq x Tk) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)Tq, (blasint)Tk, (blasint)D, 1.0f,
                    dout + qoff, (blasint)C, v + koff, (blasint)C, 0.0f, dS, (blasint)Tk);
        /* softmax backward, row by row; scale is folded into the next GEMMs' alpha */
        for (int64_t i = 0; i < Tq; i++) {
            const float *p = P + i * Tk;
            float *d = dS + i * Tk;
            float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int64_t j = 0; j < Tk; j++) dot += p[j] * d[j];
#pragma omp simd
            for (int64_t j = 0; j < Tk; j++) d[j] = p[j] * (d[j] - dot);
        }
        /* dq_bh += scale dS k_bh  (Tq x D) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)Tq, (blasint)D, (blasint)Tk, scale, dS,
                    (blasint)Tk, k + koff, (blasint)C, 1.0f, dq + qoff, (blasint)C);
        /* dk_bh += scale dS^T q_bh  (Tk x D) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)Tk, (blasint)D, (blasint)Tq, scale, dS,
                    (blasint)Tk, q + qoff, (blasint)C, 1.0f, dk + koff, (blasint)C);
    }
    blas_single_end(prev);
}
