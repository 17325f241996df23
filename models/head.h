/* models/head.h - running a model's heads (qmod_head_config in model.h,
 * fusion/head.h for the layers) on its towers' outputs.
 *
 * A head reads what its tower's workspace holds after qmod_forward: the
 * embeddings (B, D) for input "embedding", the token sequence (qmod_tokens,
 * B*T rows of C) for "tokens". Its backward gives the gradient there, which
 * qmod_backward_at takes as demb or dtokens. A qmod_head_work belongs to
 * one thread at a time; the model is only read.
 *
 * Not a public header: prefix qmod_. */
#ifndef QIAO_MODELS_HEAD_H
#define QIAO_MODELS_HEAD_H

#include <stdbool.h>
#include <stdint.h>

#include "models/embed.h"

typedef struct qmod_head_work {
    int head;      /* index into the config's heads */
    int64_t N_max; /* rows */
    bool train;
    qc_table at;
    qc_arena acts, dacts;
    qf_mlp_acts a, da;
    qc_arena xs, dxs; /* (N_max, in): the scaled input and its gradient, for a head with a scale */
} qmod_head_work;

/* A workspace for up to N_max rows of head `head` (with gradients when
 * `train`). QIAO_ERR_INVALID_ARGUMENT for a head the model lacks. */
qiao_status qmod_head_work_init(qmod_head_work *w, const qmod_model *m, int head, int64_t N_max, bool train);
/* Accepts NULL and a cleared workspace. */
void qmod_head_work_free(qmod_head_work *w);

/* x (N, in) -> *logits (N, classes) inside the workspace (valid until its
 * next use), x times the head's scale first. N <= N_max, else
 * QIAO_ERR_INVALID_ARGUMENT. */
qiao_status qmod_head_forward(const qb_exec *ex, const qmod_model *m, qmod_head_work *w, const float *x, int64_t N,
                              const float **logits);
/* After qmod_head_forward on the same x: dlogits (N, classes) -> the head's
 * parameter gradients accumulate into `grads`, and dx (N, in), when not
 * NULL, accumulates the gradient at x. */
void qmod_head_backward(const qb_exec *ex, const qmod_model *m, qmod_params *grads, qmod_head_work *w,
                        const float *x, int64_t N, const float *dlogits, float *dx);

#endif /* QIAO_MODELS_HEAD_H */
