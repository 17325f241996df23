/* Embedding lookup on the CPU: out (N, C) = table (V, C)[ids (N)].
 *
 * An id outside [0, V) reads as a zero row and receives no gradient; callers
 * validate ids, this only keeps memory safe. The backward accumulates (+=)
 * into dtable. */
#include <string.h>

#include "backend/cpu/cpu.h"

#define PAR_MIN_ELEMS 32768
/* Columns per block in the backward: 64 floats = 4 cache lines per row. */
#define COL_BLOCK 64

void qb_cpu_embedding_forward(const qb_exec *ex, float *out, const int32_t *ids, const float *table,
                              int64_t N, int64_t V, int64_t C) {
    if (C <= 0) return;
#pragma omp parallel for num_threads(ex->n_threads) schedule(static) if (N * C > PAR_MIN_ELEMS)
    for (int64_t n = 0; n < N; n++) {
        int64_t id = ids[n];
        if (id >= 0 && id < V)
            memcpy(out + n * C, table + id * C, (size_t)C * sizeof(float));
        else
            memset(out + n * C, 0, (size_t)C * sizeof(float));
    }
}

/* Repeated ids add into the same table row, so splitting by token would race.
 * Instead each thread owns a block of columns and walks all N tokens in order:
 * no two threads touch the same element, and every element's sum is taken in
 * token order, so the result is the same for any thread count. */
void qb_cpu_embedding_backward(const qb_exec *ex, float *dtable, const float *dout, const int32_t *ids,
                               int64_t N, int64_t V, int64_t C) {
    if (C <= 0) return;
    int64_t nblocks = (C + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for num_threads(ex->n_threads) schedule(static) if (N * C > PAR_MIN_ELEMS)
    for (int64_t cb = 0; cb < nblocks; cb++) {
        int64_t c0 = cb * COL_BLOCK, c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
        for (int64_t n = 0; n < N; n++) {
            int64_t id = ids[n];
            if (id < 0 || id >= V) continue;
            float *dst = dtable + id * C;
            const float *src = dout + n * C;
            for (int64_t c = c0; c < c1; c++) dst[c] += src[c];
        }
    }
}
