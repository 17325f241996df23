/* models/head.c - running a model's heads (see head.h). */
#include "models/head.h"

#include <stdio.h>
#include <string.h>

void qmod_head_work_free(qmod_head_work *w) {
    if (!w) return;
    qc_arena_free(&w->acts);
    qc_arena_free(&w->dacts);
    qc_arena_free(&w->xs);
    qc_arena_free(&w->dxs);
    qc_table_free(&w->at);
    memset(w, 0, sizeof *w);
}

qiao_status qmod_head_work_init(qmod_head_work *w, const qmod_model *m, int head, int64_t N_max, bool train) {
    if (!w) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_head_work_init: workspace is NULL");
    memset(w, 0, sizeof *w);
    if (!m || head < 0 || head >= m->cfg.n_heads || N_max < 1)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_head_work_init: model %s has no head %d, or %lld rows",
                        m ? m->cfg.name : "(null)", head, (long long)N_max);
    w->head = head;
    w->N_max = N_max;
    w->train = train;
    qc_table_init_empty(&w->at);
    char prefix[QMOD_NAME_MAX + 8];
    snprintf(prefix, sizeof prefix, "heads.%s.", m->cfg.heads[head].name);
    qiao_status st = qf_mlp_describe_acts(&w->at, prefix, &m->cfg.heads[head].mlp, N_max, 0);
    if (st == QIAO_OK) st = qc_arena_alloc(&w->acts, w->at.total);
    if (st == QIAO_OK && train) st = qc_arena_alloc(&w->dacts, w->at.total);
    const size_t in_floats = (size_t)(N_max * m->cfg.heads[head].mlp.in);
    if (st == QIAO_OK && m->cfg.heads[head].scale != 1.0f) st = qc_arena_alloc(&w->xs, in_floats);
    if (st == QIAO_OK && m->cfg.heads[head].scale != 1.0f && train) st = qc_arena_alloc(&w->dxs, in_floats);
    if (st != QIAO_OK) {
        qmod_head_work_free(w);
        return st;
    }
    qc_table_bind(&w->at, w->acts.base, &w->a);
    if (train) qc_table_bind(&w->at, w->dacts.base, &w->da);
    return QIAO_OK;
}

qiao_status qmod_head_forward(const qb_exec *ex, const qmod_model *m, qmod_head_work *w, const float *x, int64_t N,
                              const float **logits) {
    if (!ex || !m || !w || !x || !logits || !w->acts.base)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_head_forward: NULL argument or workspace");
    if (N < 1 || N > w->N_max || w->head >= m->cfg.n_heads)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_head_forward: %lld rows for a workspace of %lld",
                        (long long)N, (long long)w->N_max);
    const qmod_head_config *h = &m->cfg.heads[w->head];
    if (h->scale != 1.0f) {
        const int64_t n = N * h->mlp.in;
        ex->ops->copy(ex, w->xs.base, x, (size_t)n * sizeof(float));
        ex->ops->scale(ex, w->xs.base, h->scale, n);
        x = w->xs.base;
    }
    qf_mlp_forward(ex, &w->a, &m->p.heads[w->head], x, N, &h->mlp);
    *logits = w->a.logits;
    return ex->ops->sync(ex);
}

void qmod_head_backward(const qb_exec *ex, const qmod_model *m, qmod_params *grads, qmod_head_work *w,
                        const float *x, int64_t N, const float *dlogits, float *dx) {
    qc_arena_zero(&w->dacts);
    const qmod_head_config *h = &m->cfg.heads[w->head];
    if (h->scale == 1.0f) {
        qf_mlp_backward(ex, dx, &grads->heads[w->head], &w->da, dlogits, &w->a, &m->p.heads[w->head], x, N, &h->mlp);
        return;
    }
    /* d(s x) -> dx += s d(s x); the forward's scaled input is still in xs */
    const int64_t n = N * h->mlp.in;
    if (dx) qc_arena_zero(&w->dxs);
    qf_mlp_backward(ex, dx ? w->dxs.base : NULL, &grads->heads[w->head], &w->da, dlogits, &w->a,
                    &m->p.heads[w->head], w->xs.base, N, &h->mlp);
    if (dx) ex->ops->axpy(ex, dx, h->scale, w->dxs.base, n);
}
