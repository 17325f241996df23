/* Token embedding: out (N, C) = table (V, C)[ids]. An id outside [0, V) gives
 * a zero row and no gradient (callers validate ids first). The backward
 * accumulates (+=) into dtable. */
#include "core/profile.h"
#include "nn/nn.h"

void nn_embedding_forward(const qb_exec *ex, float *out, const int32_t *ids, const float *table, int64_t N,
                          int64_t V, int64_t C) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_EMBEDDING, table, 1, "fwd");
    ex->ops->embedding_forward(ex, out, ids, table, N, V, C);
    QC_PROF_END(ex->prof, t, 0);
}

void nn_embedding_backward(const qb_exec *ex, float *dtable, const float *dout, const int32_t *ids,
                           int64_t N, int64_t V, int64_t C) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_EMBEDDING, NULL, 0, "embedding.bwd");
    ex->ops->embedding_backward(ex, dtable, dout, ids, N, V, C);
    QC_PROF_END(ex->prof, t, 0);
}
