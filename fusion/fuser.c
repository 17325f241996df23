/* fusion/fuser.c - the cross-modal fuser (see fuser.h). */
#include "fusion/fuser.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PFIELD(m) (field_base + offsetof(qf_fuser_params, m))
#define AFIELD(m) (field_base + offsetof(qf_fuser_acts, m))

qiao_status qf_fuser_check(const qf_fuser_config *cfg) {
    if (!cfg) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "fusion: no config");
    if (cfg->width < 1 || cfg->width > 65536 || cfg->heads < 1 || cfg->width % cfg->heads != 0)
        return qc_error(QIAO_ERR_FORMAT, "fusion: \"width\" (%lld) must be in [1, 65536] and a multiple of \"heads\" (%lld)",
                        (long long)cfg->width, (long long)cfg->heads);
    if (cfg->layers < 1 || cfg->layers > QF_FUSER_MAX_LAYERS)
        return qc_error(QIAO_ERR_FORMAT, "fusion: \"layers\" (%lld) must be in [1, %d]", (long long)cfg->layers,
                        QF_FUSER_MAX_LAYERS);
    if (cfg->mlp < 1 || cfg->mlp > 262144 || cfg->gate_hidden < 1 || cfg->gate_hidden > 65536)
        return qc_error(QIAO_ERR_FORMAT, "fusion: \"mlp\" (%lld) and \"gate_hidden\" (%lld) must be positive",
                        (long long)cfg->mlp, (long long)cfg->gate_hidden);
    if (!qf_weighting_name(cfg->weighting))
        return qc_error(QIAO_ERR_FORMAT, "fusion: unknown weighting %d", (int)cfg->weighting);
    for (int m = 0; m < QF_NMOD; m++)
        if (cfg->in_width[m] < 0 || cfg->in_width[m] > 65536)
            return qc_error(QIAO_ERR_FORMAT, "fusion: %s width %lld out of range", qf_modality_name(m),
                            (long long)cfg->in_width[m]);
    if (cfg->in_width[QF_IMAGE] == 0 || (cfg->in_width[QF_TEXT] == 0 && cfg->in_width[QF_AUDIO] == 0))
        return qc_error(QIAO_ERR_FORMAT, "fusion: needs the image tower and the text or audio tower");
    if (cfg->positions < 0 || cfg->positions > (1 << 20))
        return qc_error(QIAO_ERR_FORMAT, "fusion: %lld picture positions out of range", (long long)cfg->positions);
    if (cfg->qpositions < 0 || cfg->qpositions > (1 << 20) || (cfg->qpositions > 0 && cfg->in_width[QF_TEXT] == 0))
        return qc_error(QIAO_ERR_FORMAT, "fusion: %lld question positions (for a model %s a text tower)",
                        (long long)cfg->qpositions, cfg->in_width[QF_TEXT] ? "with" : "without");
    if (cfg->picture_mean != 0 && cfg->picture_mean != 1)
        return qc_error(QIAO_ERR_FORMAT, "fusion: picture_mean is %lld, not 0 or 1", (long long)cfg->picture_mean);
    if (cfg->places < 0 || cfg->places > 64)
        return qc_error(QIAO_ERR_FORMAT, "fusion: \"places\" (%lld) must be in [0, 64]", (long long)cfg->places);
    return QIAO_OK;
}

/* Place i's patch rows (or columns) [*lo, *hi) of g. */
static void place_span(int64_t i, int64_t g, int64_t G, int64_t *lo, int64_t *hi) {
    *lo = i * g / G;
    *hi = ((i + 1) * g + G - 1) / G;
}

int64_t qf_patch_side(int64_t P) {
    int64_t g = 1;
    while (g * g < P) g++;
    return g;
}

void qf_places_forward(float *out, int32_t *arg, const float *tok, int64_t B, int64_t g, int64_t G, int64_t C) {
    const int64_t P = g * g, Q = G * G;
    for (int64_t b = 0; b < B; b++)
        for (int64_t q = 0; q < Q; q++) {
            int64_t r0, r1, c0, c1;
            place_span(q / G, g, G, &r0, &r1);
            place_span(q % G, g, G, &c0, &c1);
            float *o = out + (b * Q + q) * C;
            int32_t *a = arg + (b * Q + q) * C;
            for (int64_t c = 0; c < C; c++) o[c] = -INFINITY, a[c] = -1;
            for (int64_t r = r0; r < r1; r++)
                for (int64_t k = c0; k < c1; k++) {
                    const int64_t t = r * g + k;
                    const float *x = tok + (b * P + t) * C;
                    for (int64_t c = 0; c < C; c++)
                        if (x[c] > o[c]) o[c] = x[c], a[c] = (int32_t)t;
                }
            /* a NaN channel never wins: its place reads 0 and passes no gradient */
            for (int64_t c = 0; c < C; c++)
                if (a[c] < 0) o[c] = 0.0f;
        }
}

void qf_places_backward(float *dtok, const float *dout, const int32_t *arg, int64_t B, int64_t g, int64_t G,
                        int64_t C) {
    const int64_t P = g * g, Q = G * G;
    for (int64_t b = 0; b < B; b++)
        for (int64_t q = 0; q < Q; q++) {
            const float *d = dout + (b * Q + q) * C;
            const int32_t *a = arg + (b * Q + q) * C;
            for (int64_t c = 0; c < C; c++)
                if (a[c] >= 0) dtok[(b * P + a[c]) * C + c] += d[c];
        }
}

static qf_xblock_dims block_dims(const qf_fuser_config *cfg, int64_t B, int64_t Tx, int64_t Ty) {
    qf_xblock_dims x = {B, Tx, Ty, cfg->width, cfg->mlp, cfg->heads, false};
    return x;
}

qiao_status qf_fuser_describe(qc_table *tab, const char *prefix, const qf_fuser_config *cfg, size_t field_base) {
    qiao_status st = qf_fuser_check(cfg);
    if (st != QIAO_OK) return st;
    const int64_t d = cfg->width;
    char name[96];
    for (int m = 0; m < QF_NMOD; m++) {
        if (!cfg->in_width[m]) continue;
        const char *mn = qf_modality_name(m);
        snprintf(name, sizeof name, "%s.proj.weight", mn);
        if ((st = qc_table_add_dims(tab, prefix, name, 2, d, cfg->in_width[m], 0, QC_INIT_NORMAL, 0.02f, 0,
                                    PFIELD(in_w[m]))) != QIAO_OK)
            return st;
        snprintf(name, sizeof name, "%s.proj.bias", mn);
        if ((st = qc_table_add_dims(tab, prefix, name, 1, d, 0, 0, QC_INIT_ZEROS, 0, QC_NO_DECAY, PFIELD(in_b[m]))) !=
            QIAO_OK)
            return st;
        snprintf(name, sizeof name, "%s.type", mn);
        if ((st = qc_table_add_dims(tab, prefix, name, 1, d, 0, 0, QC_INIT_NORMAL, 0.02f, QC_NO_DECAY,
                                    PFIELD(type[m]))) != QIAO_OK)
            return st;
        if (m == QF_IMAGE && cfg->positions > 0 &&
            (st = qc_table_add_dims(tab, prefix, "image.pos", 2, cfg->positions, d, 0, QC_INIT_SINCOS, 1.0f,
                                    QC_NO_DECAY, PFIELD(pos))) != QIAO_OK)
            return st;
        if (m == QF_TEXT && cfg->qpositions > 0 &&
            (st = qc_table_add_dims(tab, prefix, "text.pos", 2, cfg->qpositions, d, 0, QC_INIT_SINCOS, 1.0f,
                                    QC_NO_DECAY, PFIELD(qpos))) != QIAO_OK)
            return st;
        char gp[96];
        snprintf(gp, sizeof gp, "%sgate.%s.", prefix, mn);
        qf_gate_dims gd = {1, d, cfg->gate_hidden};
        if ((st = qf_gate_describe(tab, gp, &gd, PFIELD(gate[m]))) != QIAO_OK) return st;
    }
    qf_xblock_dims bd = block_dims(cfg, 1, 1, 1);
    for (int64_t l = 0; l < cfg->layers; l++) {
        char bp[96];
        snprintf(bp, sizeof bp, "%squestion.%lld.", prefix, (long long)l);
        if ((st = qf_xblock_describe(tab, bp, &bd, cfg->layers, PFIELD(qblk[l]))) != QIAO_OK) return st;
        snprintf(bp, sizeof bp, "%spicture.%lld.", prefix, (long long)l);
        if ((st = qf_xblock_describe(tab, bp, &bd, cfg->layers, PFIELD(pblk[l]))) != QIAO_OK) return st;
    }
    if ((st = qc_table_add_dims(tab, prefix, "ln_q.weight", 1, d, 0, 0, QC_INIT_ONES, 0, QC_NO_DECAY,
                                PFIELD(lnq_w))) != QIAO_OK ||
        (st = qc_table_add_dims(tab, prefix, "ln_q.bias", 1, d, 0, 0, QC_INIT_ZEROS, 0, QC_NO_DECAY,
                                PFIELD(lnq_b))) != QIAO_OK ||
        (st = qc_table_add_dims(tab, prefix, "ln_p.weight", 1, d, 0, 0, QC_INIT_ONES, 0, QC_NO_DECAY,
                                PFIELD(lnp_w))) != QIAO_OK ||
        (st = qc_table_add_dims(tab, prefix, "ln_p.bias", 1, d, 0, 0, QC_INIT_ZEROS, 0, QC_NO_DECAY,
                                PFIELD(lnp_b))) != QIAO_OK)
        return st;
    if (cfg->picture_mean &&
        (st = qc_table_add_dims(tab, prefix, "image.mean_scale", 1, d, 0, 0, QC_INIT_ONES, 0, QC_NO_DECAY,
                                PFIELD(pmean_scale))) != QIAO_OK)
        return st;
    return QIAO_OK;
}

static qiao_status dims_check(const qf_fuser_config *cfg, const qf_fuser_dims *d) {
    if (!d || d->B < 1) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "fusion: need at least one row");
    for (int m = 0; m < QF_NMOD; m++)
        if (d->T[m] < 0 || (cfg->in_width[m] == 0 && d->T[m] != 0) || d->T[m] > (1 << 20))
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "fusion: %lld %s tokens for a model %s", (long long)d->T[m],
                            qf_modality_name(m), cfg->in_width[m] ? "that takes them" : "without that tower");
    if (d->T[QF_IMAGE] < 1 || d->T[QF_TEXT] + d->T[QF_AUDIO] < 1)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "fusion: needs picture tokens and question tokens");
    if (cfg->positions > 0 && d->T[QF_IMAGE] > cfg->positions)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "fusion: %lld picture tokens, the model has positions for %lld",
                        (long long)d->T[QF_IMAGE], (long long)cfg->positions);
    if (cfg->qpositions > 0 && d->T[QF_TEXT] > cfg->qpositions)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "fusion: %lld question tokens, the model has positions for %lld",
                        (long long)d->T[QF_TEXT], (long long)cfg->qpositions);
    return QIAO_OK;
}

qiao_status qf_fuser_describe_acts(qc_table *tab, const char *prefix, const qf_fuser_config *cfg,
                                   const qf_fuser_dims *d, bool train, size_t field_base) {
    qiao_status st = qf_fuser_check(cfg);
    if (st == QIAO_OK) st = dims_check(cfg, d);
    if (st != QIAO_OK) return st;
    const int64_t B = d->B, D = cfg->width, Tq = d->T[QF_TEXT] + d->T[QF_AUDIO], Ti = d->T[QF_IMAGE];
    char name[96];
#define ADDA(nm, d0, d1, m)                                                                                          \
    if ((st = qc_table_add_dims(tab, prefix, nm, (d1) > 0 ? 2 : 1, d0, d1, 0, QC_INIT_ZEROS, 0, 0, AFIELD(m))) !=     \
        QIAO_OK)                                                                                                     \
    return st
    for (int m = 0; m < QF_NMOD; m++) {
        if (!cfg->in_width[m]) continue;
        const char *mn = qf_modality_name(m);
        snprintf(name, sizeof name, "%s.x", mn);
        ADDA(name, B * (d->T[m] > 0 ? d->T[m] : 1), D, x[m]);
        snprintf(name, sizeof name, "%s.pin", mn);
        ADDA(name, B, D, pin[m]);
        snprintf(name, sizeof name, "%s.stats", mn);
        ADDA(name, B, QF_NSTATS, sscaled[m]);
        snprintf(name, sizeof name, "%s.pool", mn);
        ADDA(name, B, D, pool[m]);
        char gp[96];
        snprintf(gp, sizeof gp, "%sgate.%s.", prefix, mn);
        qf_gate_dims gd = {B, D, cfg->gate_hidden};
        if ((st = qf_gate_describe_acts(tab, gp, &gd, AFIELD(gate[m]))) != QIAO_OK) return st;
    }
    ADDA("w", B, QF_NMOD, w);
    ADDA("logw_q", B, Tq, logw_q);
    ADDA("q0", B * Tq, D, q0);
    for (int64_t l = 0; l < cfg->layers; l++) {
        char bp[96];
        qf_xblock_dims qd = block_dims(cfg, B, Tq, Ti), pd = block_dims(cfg, B, Ti, Tq);
        snprintf(bp, sizeof bp, "%squestion.%lld.", prefix, (long long)l);
        if ((st = qf_xblock_describe_acts(tab, bp, &qd, AFIELD(qblk[l]))) != QIAO_OK) return st;
        snprintf(bp, sizeof bp, "%spicture.%lld.", prefix, (long long)l);
        if ((st = qf_xblock_describe_acts(tab, bp, &pd, AFIELD(pblk[l]))) != QIAO_OK) return st;
    }
    ADDA("lnq", B * Tq, D, lnq);
    ADDA("lnq_mean", B * Tq, 0, lnq_mean);
    ADDA("lnq_rstd", B * Tq, 0, lnq_rstd);
    ADDA("lnp", B * Ti, D, lnp);
    ADDA("lnp_mean", B * Ti, 0, lnp_mean);
    ADDA("lnp_rstd", B * Ti, 0, lnp_rstd);
    ADDA("pool_arg", B, D, pool_arg);
    if (cfg->picture_mean) ADDA("pmean", B, D, pmean);
    ADDA("z", B, D, z);
    if (train) {
        ADDA("flow_q0", B * Tq, D, flow[0]);
        ADDA("flow_q1", B * Tq, D, flow[1]);
        ADDA("flow_p0", B * Ti, D, flow[2]);
        ADDA("flow_p1", B * Ti, D, flow[3]);
    }
#undef ADDA
    return QIAO_OK;
}

qiao_status qf_fuser_scratch_init(qf_fuser_scratch *s, const qf_fuser_dims *d) {
    memset(s, 0, sizeof *s);
    s->B = d->B, s->Tq = d->T[QF_TEXT] + d->T[QF_AUDIO], s->Ti = d->T[QF_IMAGE];
    bool ok = (s->qmask = calloc((size_t)(s->B * (s->Tq > 0 ? s->Tq : 1)), 3)) &&
              (s->pmask = calloc((size_t)(s->B * (s->Ti > 0 ? s->Ti : 1)), 1)) &&
              (s->present = calloc((size_t)s->B, QF_NMOD)) &&
              (s->dw = calloc((size_t)s->B * QF_NMOD, sizeof(float))) &&
              (s->dlogw = calloc((size_t)s->B * QF_NMOD, sizeof(float)));
    for (int m = 0; ok && m < QF_NMOD; m++)
        ok = (s->raw[m] = calloc((size_t)s->B * QF_NSTATS, sizeof(float))) &&
             (s->score[m] = calloc((size_t)s->B, sizeof(float))) &&
             (s->dscore[m] = calloc((size_t)s->B, sizeof(float)));
    if (!ok) {
        qf_fuser_scratch_free(s);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "fusion: out of memory for %lld rows", (long long)d->B);
    }
    return QIAO_OK;
}

void qf_fuser_scratch_free(qf_fuser_scratch *s) {
    if (!s) return;
    free(s->qmask), free(s->pmask), free(s->present), free(s->dw), free(s->dlogw);
    for (int m = 0; m < QF_NMOD; m++) free(s->raw[m]), free(s->score[m]), free(s->dscore[m]);
    memset(s, 0, sizeof *s);
}

/* The question stream's masks: qmask (B, Tq) every real token of a present
 * modality, then the text-only and audio-only masks (B, Tq) each, which
 * pool the stream's two parts. */
static uint8_t *qmask_of(qf_fuser_scratch *s, int which, int64_t B, int64_t Tq) {
    return s->qmask + (size_t)which * (size_t)(B * Tq);
}

qiao_status qf_fuser_forward(const qb_exec *ex, qf_fuser_acts *a, qf_fuser_scratch *s, const qf_fuser_params *p,
                             const qf_fuser_input *in, qf_weighting mode, const qf_fuser_config *cfg,
                             const qf_fuser_dims *d) {
    qiao_status st = dims_check(cfg, d);
    if (st != QIAO_OK) return st;
    const int64_t B = d->B, D = cfg->width, Tt = d->T[QF_TEXT], Ta = d->T[QF_AUDIO], Ti = d->T[QF_IMAGE];
    const int64_t Tq = Tt + Ta;
    if (B > s->B || Tq > s->Tq || Ti > s->Ti)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "fusion: %lld rows, %lld question and %lld picture tokens exceed "
                                                   "the workspace (%lld, %lld, %lld)",
                        (long long)B, (long long)Tq, (long long)Ti, (long long)s->B, (long long)s->Tq,
                        (long long)s->Ti);
    /* presence, and the check that every row has a question */
    for (int64_t b = 0; b < B; b++) {
        for (int m = 0; m < QF_NMOD; m++)
            s->present[b * QF_NMOD + m] = d->T[m] > 0 && (!in->present || in->present[b * QF_NMOD + m]);
        if (!s->present[b * QF_NMOD + QF_TEXT] && !s->present[b * QF_NMOD + QF_AUDIO])
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "fusion: row %lld has no question (neither text nor audio)",
                            (long long)b);
    }
    /* each modality to width d, plus its type vector */
    for (int m = 0; m < QF_NMOD; m++) {
        if (d->T[m] == 0) continue;
        const int64_t n = B * d->T[m];
        nn_linear_forward(ex, a->x[m], in->tokens[m], p->in_w[m], p->in_b[m], n, cfg->in_width[m], D);
        for (int64_t r = 0; r < n; r++)
            for (int64_t c = 0; c < D; c++) a->x[m][r * D + c] += p->type[m][c];
        const float *pos = m == QF_IMAGE && cfg->positions > 0  ? p->pos
                           : m == QF_TEXT && cfg->qpositions > 0 ? p->qpos
                                                                 : NULL;
        if (pos)
            for (int64_t r = 0; r < n; r++) {
                const float *pt = pos + (r % d->T[m]) * D;
                for (int64_t c = 0; c < D; c++) a->x[m][r * D + c] += pt[c];
            }
        nn_pool_mean_forward(ex, a->pin[m], a->x[m], in->mask[m], B, d->T[m], D);
        for (int64_t b = 0; b < B; b++) {
            const float *raw = in->stats[m] ? in->stats[m] + b * QF_NSTATS : NULL;
            for (int k = 0; k < QF_NSTATS; k++) s->raw[m][b * QF_NSTATS + k] = raw ? raw[k] : 0.0f;
            qf_stats_scaled(m, s->raw[m] + b * QF_NSTATS, a->sscaled[m] + b * QF_NSTATS);
        }
    }
    /* weights */
    const float *score[QF_NMOD] = {NULL, NULL, NULL}, *raw[QF_NMOD] = {NULL, NULL, NULL};
    for (int m = 0; m < QF_NMOD; m++) {
        if (d->T[m] == 0) continue;
        raw[m] = s->raw[m];
        if (mode == QF_WEIGHT_LEARNED) {
            qf_gate_dims gd = {B, D, cfg->gate_hidden};
            qf_gate_forward(ex, &a->gate[m], &p->gate[m], a->pin[m], a->sscaled[m], &gd);
            memcpy(s->score[m], a->gate[m].score, (size_t)B * sizeof(float));
        }
        score[m] = s->score[m];
    }
    qf_weights_compute(a->w, mode, score, raw, s->present, B);
    /* the question stream: text tokens, then audio tokens, per row */
    uint8_t *qmask = qmask_of(s, 0, B, Tq), *qmask_m[QF_NMOD] = {qmask_of(s, 1, B, Tq), NULL, qmask_of(s, 2, B, Tq)};
    for (int64_t b = 0; b < B; b++) {
        for (int64_t t = 0; t < Tq; t++) {
            const int m = t < Tt ? QF_TEXT : QF_AUDIO;
            const int64_t tm = t < Tt ? t : t - Tt;
            const uint8_t real = s->present[b * QF_NMOD + m] && (!in->mask[m] || in->mask[m][b * d->T[m] + tm]);
            qmask[b * Tq + t] = real;
            qmask_m[QF_TEXT][b * Tq + t] = real && m == QF_TEXT;
            qmask_m[QF_AUDIO][b * Tq + t] = real && m == QF_AUDIO;
            const float wm = a->w[b * QF_NMOD + m];
            a->logw_q[b * Tq + t] = real ? logf(fmaxf(wm, QF_MIN_KEY_WEIGHT)) : 0.0f;
            memcpy(a->q0 + (b * Tq + t) * D, a->x[m] + (b * d->T[m] + tm) * D, (size_t)D * sizeof(float));
        }
        for (int64_t t = 0; t < Ti; t++)
            s->pmask[b * Ti + t] =
                s->present[b * QF_NMOD + QF_IMAGE] && (!in->mask[QF_IMAGE] || in->mask[QF_IMAGE][b * Ti + t]);
    }
    /* co-attention layers */
    const float *Q = a->q0, *P = a->x[QF_IMAGE];
    const qf_xblock_dims qd = block_dims(cfg, B, Tq, Ti), pd = block_dims(cfg, B, Ti, Tq);
    for (int64_t l = 0; l < cfg->layers; l++) {
        qf_xblock_forward(ex, &a->qblk[l], &p->qblk[l], Q, qmask, a->logw_q, P, s->pmask, NULL, &qd);
        qf_xblock_forward(ex, &a->pblk[l], &p->pblk[l], P, s->pmask, NULL, Q, qmask, a->logw_q, &pd);
        Q = a->qblk[l].out, P = a->pblk[l].out;
    }
    nn_layernorm_forward(ex, a->lnq, a->lnq_mean, a->lnq_rstd, Q, p->lnq_w, p->lnq_b, B * Tq, D);
    nn_layernorm_forward(ex, a->lnp, a->lnp_mean, a->lnp_rstd, P, p->lnp_w, p->lnp_b, B * Ti, D);
    /* per-modality pools, weighted */
    memset(a->z, 0, (size_t)(B * D) * sizeof(float));
    for (int m = 0; m < QF_NMOD; m++) {
        if (d->T[m] == 0) continue;
        if (m == QF_IMAGE)
            nn_pool_max_forward(ex, a->pool[m], (int32_t *)a->pool_arg, a->lnp, s->pmask, B, Ti, D);
        else
            nn_pool_mean_forward(ex, a->pool[m], a->lnq, qmask_m[m], B, Tq, D);
        for (int64_t b = 0; b < B; b++) {
            const float wm = a->w[b * QF_NMOD + m];
            for (int64_t c = 0; c < D; c++) a->z[b * D + c] += wm * a->pool[m][b * D + c];
        }
    }
    if (cfg->picture_mean) {
        nn_pool_mean_forward(ex, a->pmean, a->lnp, s->pmask, B, Ti, D);
        for (int64_t b = 0; b < B; b++) {
            const float wi = a->w[b * QF_NMOD + QF_IMAGE];
            for (int64_t c = 0; c < D; c++) a->z[b * D + c] += wi * p->pmean_scale[c] * a->pmean[b * D + c];
        }
    }
    return QIAO_OK;
}

void qf_fuser_backward(const qb_exec *ex, float *const dtokens[QF_NMOD], qf_fuser_params *g, qf_fuser_acts *da,
                       qf_fuser_scratch *s, const float *dz, const qf_fuser_acts *a, const qf_fuser_params *p,
                       const qf_fuser_input *in, qf_weighting mode, const qf_fuser_config *cfg,
                       const qf_fuser_dims *d) {
    const int64_t B = d->B, D = cfg->width, Tt = d->T[QF_TEXT], Ta = d->T[QF_AUDIO], Ti = d->T[QF_IMAGE];
    const int64_t Tq = Tt + Ta;
    uint8_t *qmask = qmask_of(s, 0, B, Tq), *qmask_m[QF_NMOD] = {qmask_of(s, 1, B, Tq), NULL, qmask_of(s, 2, B, Tq)};
    /* z = sum_m w_m pool_m */
    memset(s->dw, 0, (size_t)(B * QF_NMOD) * sizeof(float));
    memset(s->dlogw, 0, (size_t)(B * QF_NMOD) * sizeof(float));
    for (int m = 0; m < QF_NMOD; m++) {
        if (d->T[m] == 0) continue;
        for (int64_t b = 0; b < B; b++) {
            const float wm = a->w[b * QF_NMOD + m];
            float dot = 0.0f;
            for (int64_t c = 0; c < D; c++) {
                da->pool[m][b * D + c] += wm * dz[b * D + c];
                dot += dz[b * D + c] * a->pool[m][b * D + c];
            }
            s->dw[b * QF_NMOD + m] = dot;
        }
        if (m == QF_IMAGE)
            nn_pool_max_backward(ex, da->lnp, da->pool[m], (const int32_t *)a->pool_arg, B, Ti, D);
        else
            nn_pool_mean_backward(ex, da->lnq, da->pool[m], qmask_m[m], B, Tq, D);
    }
    /* z += w_image s . pmean */
    if (cfg->picture_mean) {
        for (int64_t b = 0; b < B; b++) {
            const float wi = a->w[b * QF_NMOD + QF_IMAGE];
            float dot = 0.0f;
            for (int64_t c = 0; c < D; c++) {
                const float gz = dz[b * D + c], pm = a->pmean[b * D + c];
                g->pmean_scale[c] += wi * gz * pm;
                da->pmean[b * D + c] += wi * gz * p->pmean_scale[c];
                dot += gz * p->pmean_scale[c] * pm;
            }
            s->dw[b * QF_NMOD + QF_IMAGE] += dot;
        }
        nn_pool_mean_backward(ex, da->lnp, da->pmean, s->pmask, B, Ti, D);
    }
    float *dQ = da->flow[0], *dQn = da->flow[1], *dP = da->flow[2], *dPn = da->flow[3];
    const int64_t L = cfg->layers;
    const float *Qout = a->qblk[L - 1].out, *Pout = a->pblk[L - 1].out;
    memset(dQ, 0, (size_t)(B * Tq * D) * sizeof(float));
    memset(dP, 0, (size_t)(B * Ti * D) * sizeof(float));
    nn_layernorm_backward(ex, dQ, g->lnq_w, g->lnq_b, da->lnq, Qout, p->lnq_w, a->lnq_mean, a->lnq_rstd, B * Tq, D);
    nn_layernorm_backward(ex, dP, g->lnp_w, g->lnp_b, da->lnp, Pout, p->lnp_w, a->lnp_mean, a->lnp_rstd, B * Ti, D);
    const qf_xblock_dims qd = block_dims(cfg, B, Tq, Ti), pd = block_dims(cfg, B, Ti, Tq);
    const bool learned = mode == QF_WEIGHT_LEARNED;
    for (int64_t l = L - 1; l >= 0; l--) {
        const float *Qin = l ? a->qblk[l - 1].out : a->q0, *Pin = l ? a->pblk[l - 1].out : a->x[QF_IMAGE];
        memset(dQn, 0, (size_t)(B * Tq * D) * sizeof(float));
        memset(dPn, 0, (size_t)(B * Ti * D) * sizeof(float));
        qf_xblock_backward(ex, dQn, dPn, learned ? da->logw_q : NULL, NULL, &g->qblk[l], &da->qblk[l], dQ,
                           &a->qblk[l], &p->qblk[l], Qin, Pin, &qd);
        qf_xblock_backward(ex, dPn, dQn, NULL, learned ? da->logw_q : NULL, &g->pblk[l], &da->pblk[l], dP,
                           &a->pblk[l], &p->pblk[l], Pin, Qin, &pd);
        float *t = dQ;
        dQ = dQn, dQn = t;
        t = dP, dP = dPn, dPn = t;
    }
    /* back to the modalities: the question stream's rows, the picture's */
    for (int64_t b = 0; b < B; b++) {
        for (int64_t t = 0; t < Tq; t++) {
            const int m = t < Tt ? QF_TEXT : QF_AUDIO;
            const int64_t tm = t < Tt ? t : t - Tt;
            float *dx = da->x[m] + (b * d->T[m] + tm) * D;
            const float *src = dQ + (b * Tq + t) * D;
            for (int64_t c = 0; c < D; c++) dx[c] += src[c];
            if (learned && qmask[b * Tq + t] && a->w[b * QF_NMOD + m] >= QF_MIN_KEY_WEIGHT)
                s->dlogw[b * QF_NMOD + m] += da->logw_q[b * Tq + t];
        }
    }
    for (int64_t i = 0; i < B * Ti * D; i++) da->x[QF_IMAGE][i] += dP[i];
    /* the weights' gradient reaches the gates only when they are learned */
    if (learned) {
        for (int m = 0; m < QF_NMOD; m++)
            if (d->T[m]) memset(s->dscore[m], 0, (size_t)B * sizeof(float));
        qf_weights_backward(s->dscore, s->dw, s->dlogw, a->w, s->present, B);
        for (int m = 0; m < QF_NMOD; m++) {
            if (d->T[m] == 0) continue;
            qf_gate_dims gd = {B, D, cfg->gate_hidden};
            memcpy(da->gate[m].score, s->dscore[m], (size_t)B * sizeof(float));
            qf_gate_backward(ex, da->pin[m], &g->gate[m], &da->gate[m], da->gate[m].score, &a->gate[m], &p->gate[m],
                             &gd);
            nn_pool_mean_backward(ex, da->x[m], da->pin[m], in->mask[m], B, d->T[m], D);
        }
    }
    /* x_m = tokens_m W_m^T + b_m + type_m */
    for (int m = 0; m < QF_NMOD; m++) {
        if (d->T[m] == 0) continue;
        const int64_t n = B * d->T[m];
        for (int64_t r = 0; r < n; r++)
            for (int64_t c = 0; c < D; c++) g->type[m][c] += da->x[m][r * D + c];
        float *gpos = m == QF_IMAGE && cfg->positions > 0  ? g->pos
                      : m == QF_TEXT && cfg->qpositions > 0 ? g->qpos
                                                            : NULL;
        if (gpos)
            for (int64_t r = 0; r < n; r++) {
                float *gt = gpos + (r % d->T[m]) * D;
                for (int64_t c = 0; c < D; c++) gt[c] += da->x[m][r * D + c];
            }
        nn_linear_backward(ex, dtokens ? dtokens[m] : NULL, g->in_w[m], g->in_b[m], da->x[m], in->tokens[m],
                           p->in_w[m], n, cfg->in_width[m], D);
    }
}
