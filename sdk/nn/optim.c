/* AdamW over a tensor table, global gradient-norm clipping, and the
 * warmup + cosine learning-rate schedule. */
#include <math.h>

#include "core/profile.h"
#include "nn/nn.h"

/* params, grads, m and v share tab's layout, so tensor i sits at
 * tab->t[i].offset in each. Bias corrections are computed in double from the
 * 1-based step t (t < 1 does nothing). */
void nn_adamw_update(const qb_exec *ex, const qc_table *tab, float *params, const float *grads, float *m, float *v,
                     int64_t t, float grad_scale, const nn_adamw_config *cfg) {
    if (t < 1) return;
    const float bc1 = (float)(1.0 - pow((double)cfg->beta1, (double)t));
    const float bc2 = (float)(1.0 - pow((double)cfg->beta2, (double)t));
    const int pt = QC_PROF_BEGIN(ex->prof, QC_PROF_OPTIMIZER, NULL, 0, "adamw");
    for (size_t i = 0; i < tab->n; i++) {
        const qc_tensor_desc *d = &tab->t[i];
        if ((d->flags & QC_FROZEN) || d->numel == 0) continue;
        const float wd = (d->flags & QC_NO_DECAY) ? 0.0f : cfg->weight_decay;
        const float lr = d->lr_scale > 0.0f ? cfg->lr * d->lr_scale : cfg->lr;
        const size_t o = d->offset;
        ex->ops->adamw_step(ex, params + o, grads + o, m + o, v + o, d->numel, grad_scale, lr, cfg->beta1, cfg->beta2,
                            cfg->eps, wd, bc1, bc2);
    }
    QC_PROF_END(ex->prof, pt, 0);
}

/* A non-finite norm leaves the gradients alone: scaling by max_norm / inf
 * would zero them and hide the problem; the caller sees the norm and can
 * skip the step. */
float nn_clip_grad_norm(const qb_exec *ex, float *grads, int64_t n, float max_norm) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_OPTIMIZER, NULL, 0, "clip");
    double ss = 0.0;
    if (n > 0) ex->ops->sumsq(ex, &ss, grads, n);
    const double norm = sqrt(ss);
    if (max_norm > 0.0f && isfinite(norm) && norm > (double)max_norm)
        ex->ops->scale(ex, grads, (float)((double)max_norm / norm), n);
    QC_PROF_END(ex->prof, t, 0);
    return (float)norm;
}

/* The next run of tensors not flagged QC_FROZEN from index *i on, as a float
 * range [*lo, *hi) of the arena: from the first one's offset to the end of
 * the arena's alignment padding after the last, so with nothing frozen the
 * one run is the whole arena. False when no tensor is left. */
static bool next_unfrozen_run(const qc_table *tab, size_t *i, size_t *lo, size_t *hi) {
    while (*i < tab->n && (tab->t[*i].flags & QC_FROZEN)) (*i)++;
    if (*i >= tab->n) return false;
    *lo = *i == 0 ? 0 : tab->t[*i].offset;
    while (*i < tab->n && !(tab->t[*i].flags & QC_FROZEN)) (*i)++;
    *hi = *i < tab->n ? tab->t[*i].offset : tab->total;
    return true;
}

double nn_grad_norm(const qb_exec *ex, const qc_table *tab, const float *grads) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_OPTIMIZER, NULL, 0, "clip");
    double ss = 0.0;
    size_t i = 0, lo, hi;
    while (next_unfrozen_run(tab, &i, &lo, &hi)) {
        double part = 0.0;
        if (hi > lo) ex->ops->sumsq(ex, &part, grads + lo, (int64_t)(hi - lo));
        ss += part;
    }
    QC_PROF_END(ex->prof, t, 0);
    return sqrt(ss);
}

float nn_clip_scale(double norm, float max_norm) {
    if (max_norm > 0.0f && isfinite(norm) && norm > (double)max_norm) return (float)((double)max_norm / norm);
    return 1.0f;
}

void nn_zero_grads(const qb_exec *ex, const qc_table *tab, float *grads) {
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_OPTIMIZER, NULL, 0, "zero_grads");
    size_t i = 0, lo, hi;
    while (next_unfrozen_run(tab, &i, &lo, &hi))
        if (hi > lo) ex->ops->zero(ex, grads + lo, (hi - lo) * sizeof(float));
    QC_PROF_END(ex->prof, t, 0);
}

/* step in [0, warmup):       lr_max * step / warmup (0 at step 0, lr_max at step warmup)
 * step in [warmup, total):   lr_min + (lr_max - lr_min) (1 + cos(pi p)) / 2,
 *                            p = (step - warmup) / (total - warmup)
 * step >= total:             lr_min. */
float nn_lr_warmup_cosine(int64_t step, int64_t warmup, int64_t total, float lr_max, float lr_min) {
    if (step < 0) step = 0;
    if (step < warmup) return (float)((double)lr_max * (double)step / (double)warmup);
    if (step >= total) return lr_min;
    const double p = (double)(step - warmup) / (double)(total - warmup);
    const double pi = 3.14159265358979323846;
    return (float)((double)lr_min + 0.5 * ((double)lr_max - (double)lr_min) * (1.0 + cos(pi * p)));
}
