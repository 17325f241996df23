/* Cross-entropy (mean over non-ignored rows) and symmetric InfoNCE (CLIP).
 *
 * Backwards accumulate (+=). Nothing here allocates: InfoNCE's diagonal
 * targets are the kernel's targets == NULL, and mean reductions pass one
 * scale for every row. Host-side sums read backend memory through
 * ops->to_host in small chunks on the stack. */
#include <math.h>

#include "core/profile.h"
#include "nn/nn.h"

#define HOST_CHUNK 256

/* Rows whose target is not ignore_index. */
static int64_t count_rows(const qb_exec *ex, const int32_t *targets, int64_t N, int32_t ignore_index) {
    int32_t buf[HOST_CHUNK];
    int64_t count = 0;
    for (int64_t i0 = 0; i0 < N; i0 += HOST_CHUNK) {
        int64_t n = N - i0 < HOST_CHUNK ? N - i0 : HOST_CHUNK;
        ex->ops->to_host(ex, buf, targets + i0, (size_t)n * sizeof *buf);
        for (int64_t k = 0; k < n; k++) count += buf[k] != ignore_index;
    }
    return count;
}

static double sum_floats(const qb_exec *ex, const float *x, int64_t n) {
    float buf[HOST_CHUNK];
    double s = 0.0;
    for (int64_t i0 = 0; i0 < n; i0 += HOST_CHUNK) {
        int64_t m = n - i0 < HOST_CHUNK ? n - i0 : HOST_CHUNK;
        ex->ops->to_host(ex, buf, x + i0, (size_t)m * sizeof *buf);
        for (int64_t k = 0; k < m; k++) s += buf[k];
    }
    return s;
}

/* ---- cross-entropy ---------------------------------------------------------- */

void nn_cross_entropy_forward(const qb_exec *ex, float *loss, float *losses, float *probs,
                              const float *logits, const int32_t *targets, int64_t N, int64_t V,
                              float smoothing, int32_t ignore_index) {
    *loss = 0.0f;
    if (N <= 0 || V <= 0) return;
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_LOSS, NULL, 0, "cross_entropy.fwd");
    ex->ops->cross_entropy_forward(ex, losses, probs, logits, targets, N, V, smoothing, ignore_index);
    int64_t count = count_rows(ex, targets, N, ignore_index);
    /* Ignored rows hold 0, so summing all N rows is the sum over counted rows. */
    if (count) *loss = (float)(sum_floats(ex, losses, N) / (double)count);
    QC_PROF_END(ex->prof, t, 0);
}

/* d(mean loss)/d(losses[i]) = 1 / count for every counted row. */
void nn_cross_entropy_backward(const qb_exec *ex, float *dlogits, float dloss, const float *probs,
                               const int32_t *targets, int64_t N, int64_t V, float smoothing,
                               int32_t ignore_index) {
    if (N <= 0 || V <= 0) return;
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_LOSS, NULL, 0, "cross_entropy.bwd");
    int64_t count = count_rows(ex, targets, N, ignore_index);
    if (count)
        ex->ops->cross_entropy_backward(ex, dlogits, (float)((double)dloss / (double)count), probs, targets, N, V,
                                        smoothing, ignore_index);
    QC_PROF_END(ex->prof, t, 0);
}

/* ---- InfoNCE ------------------------------------------------------------------
 *
 * s = exp(clamp(logit_scale, 0, ln 100)), L = s a b^T (N, N),
 * loss = (1/2N) (sum_i CE(L[i, :], i) + sum_j CE(L[:, j], j)),
 * the column terms computed as rows of L^T = s b a^T. With P_r, P_c the row
 * softmaxes of L and L^T and c = dloss / 2N:
 *   dL = c (P_r - I) + c (P_c - I)^T
 *   da = s dL b,  db = s dL^T a,
 *   d/d(logit_scale) = sum_ij dL_ij L_ij (dL/dlogit_scale = L)
 *                    = c (<P_r, L> + <P_c, L^T> - 2 tr L),  tr L = s sum_i a_i . b_i,
 * and 0 while logit_scale is outside the clamp range (as torch.clamp's
 * gradient; at the boundary itself the gradient passes). */

static float infonce_scale(float logit_scale, bool *clamped) {
    float x = logit_scale;
    *clamped = x < 0.0f || x > NN_INFONCE_MAX_LOGIT_SCALE;
    if (x < 0.0f) x = 0.0f;
    if (x > NN_INFONCE_MAX_LOGIT_SCALE) x = NN_INFONCE_MAX_LOGIT_SCALE;
    return expf(x); /* NaN stays NaN */
}

void nn_infonce_forward(const qb_exec *ex, float *loss, nn_infonce_acts *acts, const float *a, const float *b,
                        const float *logit_scale, int64_t N, int64_t D) {
    *loss = 0.0f;
    if (N <= 0) return;
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_LOSS, logit_scale, 0, "fwd");
    bool clamped;
    const float s = infonce_scale(*logit_scale, &clamped);
    ex->ops->gemm(ex, false, true, N, N, D, s, a, D, 0, b, D, 0, 0.0f, acts->logits, N, 0, 1);
    ex->ops->cross_entropy_forward(ex, acts->losses, acts->probs_r, acts->logits, NULL, N, N, 0.0f, -1);
    double sum = sum_floats(ex, acts->losses, N);
    /* L^T only lives in scratch until its softmax is taken. */
    ex->ops->gemm(ex, false, true, N, N, D, s, b, D, 0, a, D, 0, 0.0f, acts->scratch, N, 0, 1);
    ex->ops->cross_entropy_forward(ex, acts->losses, acts->probs_c, acts->scratch, NULL, N, N, 0.0f, -1);
    sum += sum_floats(ex, acts->losses, N);
    *loss = (float)(sum / (2.0 * (double)N));
    QC_PROF_END(ex->prof, t, 4.0 * (double)N * (double)N * (double)D); /* its two products */
}

static void infonce_backward(const qb_exec *ex, float *da, float *db, float *dlogit_scale, float dloss,
                             nn_infonce_acts *acts, const float *a, const float *b, const float *logit_scale,
                             int64_t N, int64_t D) {
    bool clamped;
    const float s = infonce_scale(*logit_scale, &clamped);
    const double c = (double)dloss / (2.0 * (double)N);
    const size_t nn = (size_t)N * (size_t)N;

    if (dlogit_scale && !clamped) {
        ex->ops->gemm(ex, false, true, N, N, D, s, b, D, 0, a, D, 0, 0.0f, acts->scratch, N, 0, 1);
        double pr, pc, ab;
        ex->ops->dot(ex, &pr, acts->probs_r, acts->logits, (int64_t)nn);
        ex->ops->dot(ex, &pc, acts->probs_c, acts->scratch, (int64_t)nn);
        ex->ops->dot(ex, &ab, a, b, N * D);
        *dlogit_scale += (float)(c * (pr + pc - 2.0 * (double)s * ab));
    }
    if (!da && !db) return;

    /* Row term: G = c (P_r - I) in [i][j] layout. */
    ex->ops->zero(ex, acts->scratch, nn * sizeof(float));
    ex->ops->cross_entropy_backward(ex, acts->scratch, (float)c, acts->probs_r, NULL, N, N, 0.0f, -1);
    if (da) ex->ops->gemm(ex, false, false, N, D, N, s, acts->scratch, N, 0, b, D, 0, 1.0f, da, D, 0, 1);
    if (db) ex->ops->gemm(ex, true, false, N, D, N, s, acts->scratch, N, 0, a, D, 0, 1.0f, db, D, 0, 1);

    /* Column term: G = c (P_c - I) in [j][i] layout, i.e. transposed. */
    ex->ops->zero(ex, acts->scratch, nn * sizeof(float));
    ex->ops->cross_entropy_backward(ex, acts->scratch, (float)c, acts->probs_c, NULL, N, N, 0.0f, -1);
    if (db) ex->ops->gemm(ex, false, false, N, D, N, s, acts->scratch, N, 0, a, D, 0, 1.0f, db, D, 0, 1);
    if (da) ex->ops->gemm(ex, true, false, N, D, N, s, acts->scratch, N, 0, b, D, 0, 1.0f, da, D, 0, 1);
}

void nn_infonce_backward(const qb_exec *ex, float *da, float *db, float *dlogit_scale, float dloss,
                         nn_infonce_acts *acts, const float *a, const float *b, const float *logit_scale,
                         int64_t N, int64_t D) {
    if (N <= 0) return;
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_LOSS, logit_scale, 0, "bwd");
    infonce_backward(ex, da, db, dlogit_scale, dloss, acts, a, b, logit_scale, N, D);
    /* up to five N x N x D products: L^T again for the scale, two per gradient */
    const double products = (dlogit_scale ? 1 : 0) + 2 * ((da != NULL) + (db != NULL));
    QC_PROF_END(ex->prof, t, 2.0 * products * (double)N * (double)N * (double)D);
}
