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

typedef struct emb_job {
    float *out;
    const int32_t *ids;
    const float *src;
    int64_t N, V, C;
} emb_job;

static void embedding_forward_range(void *ctx, int64_t n0, int64_t n1, int part) {
    (void)part;
    const emb_job *j = ctx;
    const int64_t C = j->C;
    for (int64_t n = n0; n < n1; n++) {
        int64_t id = j->ids[n];
        if (id >= 0 && id < j->V)
            memcpy(j->out + n * C, j->src + id * C, (size_t)C * sizeof(float));
        else
            memset(j->out + n * C, 0, (size_t)C * sizeof(float));
    }
}

void qb_cpu_embedding_forward(const qb_exec *ex, float *out, const int32_t *ids, const float *table,
                              int64_t N, int64_t V, int64_t C) {
    if (C <= 0) return;
    emb_job j = {.out = out, .ids = ids, .src = table, .N = N, .V = V, .C = C};
    qb_parallel_for(ex, N, N * C > PAR_MIN_ELEMS, embedding_forward_range, &j);
}

/* out: dtable; src: dout. */
static void embedding_backward_range(void *ctx, int64_t cb0, int64_t cb1, int part) {
    (void)part;
    const emb_job *j = ctx;
    const int64_t C = j->C;
    for (int64_t cb = cb0; cb < cb1; cb++) {
        int64_t c0 = cb * COL_BLOCK, c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
        for (int64_t n = 0; n < j->N; n++) {
            int64_t id = j->ids[n];
            if (id < 0 || id >= j->V) continue;
            float *dst = j->out + id * C;
            const float *src = j->src + n * C;
            for (int64_t c = c0; c < c1; c++) dst[c] += src[c];
        }
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
    emb_job j = {.out = dtable, .ids = ids, .src = dout, .N = N, .V = V, .C = C};
    qb_parallel_for(ex, nblocks, N * C > PAR_MIN_ELEMS, embedding_backward_range, &j);
}
