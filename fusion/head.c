/* fusion/head.c - output heads (see head.h). */
#include "fusion/head.h"

#include <stddef.h>

#define PFIELD(m) (field_base + offsetof(qf_mlp_params, m))
#define AFIELD(m) (field_base + offsetof(qf_mlp_acts, m))

qiao_status qf_mlp_check(const qf_mlp_config *cfg) {
    if (!cfg || cfg->in < 1 || cfg->in > QF_HEAD_MAX_WIDTH || cfg->hidden < 0 || cfg->hidden > QF_HEAD_MAX_WIDTH ||
        cfg->classes < 1 || cfg->classes > QF_HEAD_MAX_CLASSES)
        return qc_error(QIAO_ERR_FORMAT,
                        "head: need 1 <= in <= %d, 0 <= hidden <= %d, 1 <= classes <= %d (got %lld, %lld, %lld)",
                        QF_HEAD_MAX_WIDTH, QF_HEAD_MAX_WIDTH, QF_HEAD_MAX_CLASSES, cfg ? (long long)cfg->in : 0LL,
                        cfg ? (long long)cfg->hidden : 0LL, cfg ? (long long)cfg->classes : 0LL);
    return QIAO_OK;
}

/* The width the output layer reads. */
static int64_t out_in(const qf_mlp_config *cfg) {
    return cfg->hidden ? cfg->hidden : cfg->in;
}

qiao_status qf_mlp_describe(qc_table *tab, const char *prefix, const qf_mlp_config *cfg, size_t field_base) {
    qiao_status st = qf_mlp_check(cfg);
    if (st != QIAO_OK) return st;
    if (cfg->hidden &&
        ((st = qc_table_add_dims(tab, prefix, "fc.weight", 2, cfg->hidden, cfg->in, 0, QC_INIT_NORMAL, 0.02f, 0,
                                 PFIELD(fc_w))) != QIAO_OK ||
         (st = qc_table_add_dims(tab, prefix, "fc.bias", 1, cfg->hidden, 0, 0, QC_INIT_ZEROS, 0, QC_NO_DECAY,
                                 PFIELD(fc_b))) != QIAO_OK))
        return st;
    if ((st = qc_table_add_dims(tab, prefix, "out.weight", 2, cfg->classes, out_in(cfg), 0, QC_INIT_NORMAL, 0.02f, 0,
                                PFIELD(out_w))) != QIAO_OK ||
        (st = qc_table_add_dims(tab, prefix, "out.bias", 1, cfg->classes, 0, 0, QC_INIT_ZEROS, 0, QC_NO_DECAY,
                                PFIELD(out_b))) != QIAO_OK)
        return st;
    return QIAO_OK;
}

qiao_status qf_mlp_describe_acts(qc_table *tab, const char *prefix, const qf_mlp_config *cfg, int64_t N,
                                 size_t field_base) {
    qiao_status st = qf_mlp_check(cfg);
    if (st != QIAO_OK) return st;
    if (N < 1) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "head: %lld rows", (long long)N);
    if (cfg->hidden &&
        ((st = qc_table_add_dims(tab, prefix, "fc", 2, N, cfg->hidden, 0, QC_INIT_ZEROS, 0, 0, AFIELD(fc))) !=
             QIAO_OK ||
         (st = qc_table_add_dims(tab, prefix, "fc_gelu", 2, N, cfg->hidden, 0, QC_INIT_ZEROS, 0, 0,
                                 AFIELD(fc_gelu))) != QIAO_OK))
        return st;
    return qc_table_add_dims(tab, prefix, "logits", 2, N, cfg->classes, 0, QC_INIT_ZEROS, 0, 0, AFIELD(logits));
}

void qf_mlp_forward(const qb_exec *ex, qf_mlp_acts *a, const qf_mlp_params *p, const float *x, int64_t N,
                    const qf_mlp_config *cfg) {
    const float *h = x;
    if (cfg->hidden) {
        nn_linears_forward(ex, 1, &a->fc, &a->fc_gelu, x, (const float *const *)&p->fc_w,
                           (const float *const *)&p->fc_b, N, cfg->in, cfg->hidden);
        h = a->fc_gelu;
    }
    nn_linear_forward(ex, a->logits, h, p->out_w, p->out_b, N, out_in(cfg), cfg->classes);
}

void qf_mlp_backward(const qb_exec *ex, float *dx, qf_mlp_params *g, qf_mlp_acts *da, const float *dlogits,
                     const qf_mlp_acts *a, const qf_mlp_params *p, const float *x, int64_t N,
                     const qf_mlp_config *cfg) {
    if (!cfg->hidden) {
        nn_linear_backward(ex, dx, g->out_w, g->out_b, dlogits, x, p->out_w, N, cfg->in, cfg->classes);
        return;
    }
    nn_linear_backward(ex, da->fc_gelu, g->out_w, g->out_b, dlogits, a->fc_gelu, p->out_w, N, cfg->hidden,
                       cfg->classes);
    nn_gelu_backward(ex, da->fc, a->fc, da->fc_gelu, N * cfg->hidden);
    nn_linear_backward(ex, dx, g->fc_w, g->fc_b, da->fc, x, p->fc_w, N, cfg->in, cfg->hidden);
}
