/* fusion/weighting.c - dynamic modality weighting (see weighting.h). */
#include "fusion/weighting.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static const char *const weighting_names[] = {"learned", "heuristic", "equal"};
static const char *const modality_names[QF_NMOD] = {"text", "image", "audio"};

const char *qf_weighting_name(qf_weighting w) {
    return (int)w >= 0 && (int)w < 3 ? weighting_names[w] : NULL;
}

int qf_weighting_parse(const char *s) {
    for (int i = 0; s && i < 3; i++)
        if (strcmp(s, weighting_names[i]) == 0) return i;
    return -1;
}

const char *qf_modality_name(int mod) {
    return mod >= 0 && mod < QF_NMOD ? modality_names[mod] : NULL;
}

/* ---- statistics ------------------------------------------------------------- */

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

void qf_text_stats(const int32_t *ids, int64_t n, int32_t unk_id, float stats[QF_NSTATS]) {
    stats[0] = stats[1] = stats[2] = 0.0f;
    if (n <= 0 || !ids) return;
    stats[1] = (float)n;
    int64_t unk = 0;
    for (int64_t i = 0; i < n; i++) unk += ids[i] == unk_id;
    stats[2] = (float)unk / (float)n;
    if (n == 1) return;
    /* Entropy from the sorted ids' run lengths: a question is a few dozen
     * tokens, so sorting a copy beats any hash table. */
    int32_t small[256];
    int32_t *s = n <= 256 ? small : malloc((size_t)n * sizeof *s);
    if (!s) return; /* entropy stays 0: a weight feature, never worth failing for */
    memcpy(s, ids, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_i32);
    double H = 0.0;
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        while (j < n && s[j] == s[i]) j++;
        double p = (double)(j - i) / (double)n;
        H -= p * log2(p);
        i = j;
    }
    if (s != small) free(s);
    stats[0] = (float)H;
}

void qf_image_stats(const uint8_t *rgb, int64_t w, int64_t h, int64_t stride, float stats[QF_NSTATS]) {
    stats[0] = stats[1] = stats[2] = 0.0f;
    if (!rgb || w <= 0 || h <= 0) return;
    /* Two passes over the luminance, computed on the fly (BT.601). */
#define LUM(x, y)                                                                                                    \
    (0.299 * rgb[(y) * stride + 3 * (x)] + 0.587 * rgb[(y) * stride + 3 * (x) + 1] +                                 \
     0.114 * rgb[(y) * stride + 3 * (x) + 2])
    double sum = 0.0, sum2 = 0.0;
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++) {
            double l = LUM(x, y);
            sum += l, sum2 += l * l;
        }
    const double n = (double)w * (double)h, mean = sum / n;
    const double var = sum2 / n - mean * mean;
    stats[0] = (float)sqrt(var > 0.0 ? var : 0.0);
    stats[2] = (float)mean;
    if (w < 3 || h < 3) return;
    double lap = 0.0;
    for (int64_t y = 1; y + 1 < h; y++)
        for (int64_t x = 1; x + 1 < w; x++)
            lap += fabs(4.0 * LUM(x, y) - LUM(x - 1, y) - LUM(x + 1, y) - LUM(x, y - 1) - LUM(x, y + 1));
#undef LUM
    stats[1] = (float)(lap / ((double)(w - 2) * (double)(h - 2)));
}

static int cmp_f64(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void qf_audio_stats(const float *logmel, int64_t T, int64_t n_mels, const float *center_hz,
                    float stats[QF_NSTATS]) {
    stats[0] = stats[1] = stats[2] = 0.0f;
    if (!logmel || T <= 0 || n_mels <= 0) return;
    double *e = malloc((size_t)T * sizeof *e);
    if (!e) return; /* zeros: as for silence */
    double fsum = 0.0, psum = 0.0, esum = 0.0;
    for (int64_t t = 0; t < T; t++) {
        double frame = 0.0;
        for (int64_t m = 0; m < n_mels; m++) {
            double p = exp((double)logmel[t * n_mels + m]);
            frame += p;
            fsum += p * center_hz[m];
        }
        psum += frame;
        e[t] = 10.0 * log10(frame > 1e-30 ? frame : 1e-30);
        esum += e[t];
    }
    stats[0] = psum > 0.0 ? (float)(fsum / psum) : 0.0f;
    stats[1] = (float)(esum / (double)T);
    qsort(e, (size_t)T, sizeof *e, cmp_f64);
    stats[2] = (float)(e[(T - 1) * 9 / 10] - e[(T - 1) / 10]);
    free(e);
}

/* Fixed affine maps to about [-1, 1] on the shapes world's clean inputs
 * (questions of 5-30 tokens with 2-4.5 bits of entropy; pictures with
 * contrast 20-80 levels and a Laplacian of a few levels; speech with its
 * centroid near 1-2 kHz and 30-60 dB between loud and quiet frames). The
 * Laplacian goes through a log because noise multiplies it. */
void qf_stats_scaled(int mod, const float raw[QF_NSTATS], float out[QF_NSTATS]) {
    switch (mod) {
    case QF_TEXT:
        out[0] = raw[0] / 2.0f - 1.5f;
        out[1] = log1pf(raw[1] > 0.0f ? raw[1] : 0.0f) / 1.5f - 1.5f;
        out[2] = 2.0f * raw[2];
        break;
    case QF_IMAGE:
        out[0] = raw[0] / 40.0f - 1.0f;
        out[1] = log1pf(raw[1] > 0.0f ? raw[1] : 0.0f) / 2.0f - 1.0f;
        out[2] = raw[2] / 128.0f - 1.0f;
        break;
    case QF_AUDIO:
        out[0] = raw[0] / 2000.0f - 1.0f;
        out[1] = raw[1] / 40.0f;
        out[2] = raw[2] / 30.0f - 1.0f;
        break;
    default: out[0] = out[1] = out[2] = 0.0f; break;
    }
}

float qf_heuristic_score(int mod, const float raw[QF_NSTATS]) {
    switch (mod) {
    case QF_TEXT: return 0.4f * tanhf(raw[0] / 5.0f);
    case QF_IMAGE: return 0.3f * fminf(1.0f, raw[0] / 10.0f);
    case QF_AUDIO: return 0.3f * (1.0f - expf(-raw[0] / 2000.0f));
    default: return 0.0f;
    }
}

/* ---- the learned gate ---------------------------------------------------------- */

#define GFIELD(m) (field_base + offsetof(qf_gate_params, m))
#define GAFIELD(m) (field_base + offsetof(qf_gate_acts, m))

static qiao_status gate_check(const qf_gate_dims *d) {
    if (!d || d->B < 1 || d->C < 1 || d->G < 1)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "fusion gate: need B, C, G >= 1");
    return QIAO_OK;
}

qiao_status qf_gate_describe(qc_table *tab, const char *prefix, const qf_gate_dims *d, size_t field_base) {
    qiao_status st = gate_check(d);
    if (st != QIAO_OK) return st;
    const int64_t in = d->C + QF_NSTATS;
    if ((st = qc_table_add_dims(tab, prefix, "fc.weight", 2, d->G, in, 0, QC_INIT_NORMAL, 0.02f, 0, GFIELD(fc_w))) !=
            QIAO_OK ||
        (st = qc_table_add_dims(tab, prefix, "fc.bias", 1, d->G, 0, 0, QC_INIT_ZEROS, 0, QC_NO_DECAY, GFIELD(fc_b))) !=
            QIAO_OK ||
        (st = qc_table_add_dims(tab, prefix, "out.weight", 2, 1, d->G, 0, QC_INIT_NORMAL, 0.02f, 0, GFIELD(out_w))) !=
            QIAO_OK ||
        (st = qc_table_add_dims(tab, prefix, "out.bias", 1, 1, 0, 0, QC_INIT_ZEROS, 0, QC_NO_DECAY, GFIELD(out_b))) !=
            QIAO_OK)
        return st;
    return QIAO_OK;
}

qiao_status qf_gate_describe_acts(qc_table *tab, const char *prefix, const qf_gate_dims *d, size_t field_base) {
    qiao_status st = gate_check(d);
    if (st != QIAO_OK) return st;
    if ((st = qc_table_add_dims(tab, prefix, "in", 2, d->B, d->C + QF_NSTATS, 0, QC_INIT_ZEROS, 0, 0, GAFIELD(in))) !=
            QIAO_OK ||
        (st = qc_table_add_dims(tab, prefix, "fc", 2, d->B, d->G, 0, QC_INIT_ZEROS, 0, 0, GAFIELD(fc))) != QIAO_OK ||
        (st = qc_table_add_dims(tab, prefix, "fc_gelu", 2, d->B, d->G, 0, QC_INIT_ZEROS, 0, 0, GAFIELD(fc_gelu))) !=
            QIAO_OK ||
        (st = qc_table_add_dims(tab, prefix, "score", 1, d->B, 0, 0, QC_INIT_ZEROS, 0, 0, GAFIELD(score))) != QIAO_OK)
        return st;
    return QIAO_OK;
}

void qf_gate_forward(const qb_exec *ex, qf_gate_acts *a, const qf_gate_params *p, const float *pooled,
                     const float *stats, const qf_gate_dims *d) {
    const int64_t B = d->B, C = d->C, in = C + QF_NSTATS;
    for (int64_t b = 0; b < B; b++) {
        memcpy(a->in + b * in, pooled + b * C, (size_t)C * sizeof(float));
        memcpy(a->in + b * in + C, stats + b * QF_NSTATS, QF_NSTATS * sizeof(float));
    }
    const float *const w = p->fc_w, *const bias = p->fc_b;
    nn_linears_forward(ex, 1, &a->fc, &a->fc_gelu, a->in, &w, &bias, B, in, d->G);
    nn_linear_forward(ex, a->score, a->fc_gelu, p->out_w, p->out_b, B, d->G, 1);
}

void qf_gate_backward(const qb_exec *ex, float *dpooled, qf_gate_params *g, qf_gate_acts *da, const float *dscore,
                      const qf_gate_acts *a, const qf_gate_params *p, const qf_gate_dims *d) {
    const int64_t B = d->B, C = d->C, in = C + QF_NSTATS;
    nn_linear_backward(ex, da->fc_gelu, g->out_w, g->out_b, dscore, a->fc_gelu, p->out_w, B, d->G, 1);
    nn_gelu_backward(ex, da->fc, a->fc, da->fc_gelu, B * d->G);
    nn_linear_backward(ex, dpooled ? da->in : NULL, g->fc_w, g->fc_b, da->fc, a->in, p->fc_w, B, in, d->G);
    if (dpooled)
        for (int64_t b = 0; b < B; b++)
            for (int64_t c = 0; c < C; c++) dpooled[b * C + c] += da->in[b * in + c];
}

/* ---- weights --------------------------------------------------------------------- */

void qf_weights_compute(float *w, qf_weighting mode, const float *const score[QF_NMOD],
                        const float *const raw[QF_NMOD], const uint8_t *present, int64_t B) {
    for (int64_t b = 0; b < B; b++) {
        float *wb = w + b * QF_NMOD;
        const uint8_t *pr = present + b * QF_NMOD;
        int n = 0;
        for (int m = 0; m < QF_NMOD; m++) n += pr[m] != 0;
        for (int m = 0; m < QF_NMOD; m++) wb[m] = 0.0f;
        if (n == 0) continue;
        if (mode == QF_WEIGHT_LEARNED) {
            float mx = -INFINITY, sum = 0.0f;
            for (int m = 0; m < QF_NMOD; m++)
                if (pr[m] && score[m][b] > mx) mx = score[m][b];
            for (int m = 0; m < QF_NMOD; m++)
                if (pr[m]) sum += (wb[m] = expf(score[m][b] - mx));
            for (int m = 0; m < QF_NMOD; m++) wb[m] /= sum;
            continue;
        }
        float sum = 0.0f;
        if (mode == QF_WEIGHT_HEURISTIC)
            for (int m = 0; m < QF_NMOD; m++)
                if (pr[m]) sum += (wb[m] = fmaxf(0.0f, qf_heuristic_score(m, raw[m] + b * QF_NSTATS)));
        if (sum > 0.0f && isfinite(sum)) {
            for (int m = 0; m < QF_NMOD; m++) wb[m] /= sum;
        } else {
            for (int m = 0; m < QF_NMOD; m++) wb[m] = pr[m] ? 1.0f / (float)n : 0.0f;
        }
    }
}

void qf_weights_backward(float *const dscore[QF_NMOD], const float *dw, const float *dlogw, const float *w,
                         const uint8_t *present, int64_t B) {
    /* w = softmax(s): dw/ds_j = w (e_j - w_j), and d(log w_m)/ds_j = [m = j] - w_j. */
    for (int64_t b = 0; b < B; b++) {
        const float *wb = w + b * QF_NMOD, *db = dw + b * QF_NMOD, *dl = dlogw ? dlogw + b * QF_NMOD : NULL;
        const uint8_t *pr = present + b * QF_NMOD;
        float dot = 0.0f, lsum = 0.0f;
        for (int m = 0; m < QF_NMOD; m++)
            if (pr[m]) dot += wb[m] * db[m], lsum += dl ? dl[m] : 0.0f;
        for (int m = 0; m < QF_NMOD; m++)
            if (pr[m]) dscore[m][b] += wb[m] * (db[m] - dot) + (dl ? dl[m] - wb[m] * lsum : 0.0f);
    }
}
