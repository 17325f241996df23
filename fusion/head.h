/* fusion/head.h - output heads: what a model computes from its towers'
 * outputs beyond the shared space.
 *
 * The first kind is the MLP classifier: logits (N, K) from N input rows of
 * width `in`, through an optional hidden layer,
 *   h = gelu(x W1^T + b1)      (when hidden > 0)
 *   logits = h W2^T + b2       (or x W2^T + b2 without one)
 * On a tower's pooled embedding (N = B) it classifies a whole input (an
 * intent, a VQA answer); on its token sequence (N = B*T, models/embed.h
 * qmod_tokens) it tags each token (entities). Cross-modal attention and the
 * caption decoder join this file's neighbours as they come.
 *
 * Every head is a _describe / _describe_acts / _forward / _backward set in
 * the style of sdk/nn (nn.h): backward accumulates into parameter gradients
 * and into dx, the activation-gradient buffer must be zero on entry.
 *
 * Not a public header: prefix qf_. */
#ifndef QIAO_FUSION_HEAD_H
#define QIAO_FUSION_HEAD_H

#include <stdint.h>

#include "core/core.h"
#include "nn/nn.h"

#define QF_HEAD_MAX_CLASSES 65536
#define QF_HEAD_MAX_WIDTH 65536

typedef struct qf_mlp_config {
    int64_t in;      /* input width (the tower's D, or its trunk width C for tokens) */
    int64_t hidden;  /* 0: a linear head */
    int64_t classes; /* K */
} qf_mlp_config;

typedef struct qf_mlp_params {
    float *fc_w, *fc_b;   /* (hidden, in), (hidden); absent without a hidden layer */
    float *out_w, *out_b; /* (K, hidden or in), (K) */
} qf_mlp_params;

typedef struct qf_mlp_acts {
    float *fc, *fc_gelu; /* (N, hidden) each; absent without a hidden layer */
    float *logits;       /* (N, K) */
} qf_mlp_acts;

/* QIAO_ERR_FORMAT unless 1 <= in, classes and 0 <= hidden are in range. */
qiao_status qf_mlp_check(const qf_mlp_config *cfg);
/* Parameters "<prefix>fc.weight|bias" (with a hidden layer) and
 * "<prefix>out.weight|bias", bound at field_base + offsetof(qf_mlp_params, …).
 * Weights N(0, 0.02), biases 0 (QC_NO_DECAY). */
qiao_status qf_mlp_describe(qc_table *tab, const char *prefix, const qf_mlp_config *cfg, size_t field_base);
/* Activations for N rows. */
qiao_status qf_mlp_describe_acts(qc_table *tab, const char *prefix, const qf_mlp_config *cfg, int64_t N,
                                 size_t field_base);
/* x (N, in) -> a->logits (N, K). */
void qf_mlp_forward(const qb_exec *ex, qf_mlp_acts *a, const qf_mlp_params *p, const float *x, int64_t N,
                    const qf_mlp_config *cfg);
/* dlogits (N, K) -> g (accumulates), dx (N, in) accumulates (NULL: not
 * needed, a frozen tower); da zero on entry. */
void qf_mlp_backward(const qb_exec *ex, float *dx, qf_mlp_params *g, qf_mlp_acts *da, const float *dlogits,
                     const qf_mlp_acts *a, const qf_mlp_params *p, const float *x, int64_t N,
                     const qf_mlp_config *cfg);

#endif /* QIAO_FUSION_HEAD_H */
