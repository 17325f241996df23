/* models/intent/evaluate.c - what a trained intent classifier does on a
 * labelled set (accuracy, macro-F1, out-of-scope detection, calibration
 * error), and its calibration on a validation set: the softmax temperature
 * that minimizes the negative log-likelihood (Guo et al. 2017, temperature
 * scaling) and the out-of-scope threshold (intent.h). */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "backend/cpu/cpu.h"
#include "models/embed.h"
#include "models/head.h"
#include "models/intent/intent.h"

#define ECE_BINS 15

void qmi_eval_free(qmi_eval *e) {
    if (!e)
        return;
    free(e->confusion);
    memset(e, 0, sizeof *e);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The entities the tagger finds in row j of batch b (logits (B * T, E2))
 * against example e's spans: counts[0] += gold, [1] += found, [2] += equal
 * (type, start and end; each gold span matched once). */
static qiao_status count_entities(const qmod_model *m, int ent, const qmod_batch *b, int64_t T, const float *logits,
                                  int64_t j, const qmi_example *e, qmi_found *found, int64_t *counts) {
    const int n = qmi_entity_row(m, ent, b, T, logits, j, e->text, e->len, found);
    if (n < 0)
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent: out of memory");
    counts[0] += e->n_spans;
    counts[1] += n;
    uint64_t used = 0; /* gold spans matched so far (the first 64; more are never matched twice anyway) */
    for (int f = 0; f < n; f++)
        for (int g = 0; g < e->n_spans; g++) {
            const qmi_span *sp = &e->spans[g];
            if (sp->type == found[f].type && sp->start == found[f].start && sp->end == found[f].end &&
                !(g < 64 && (used >> g & 1u))) {
                counts[2]++;
                if (g < 64)
                    used |= 1ull << g;
                break;
            }
        }
    return QIAO_OK;
}

/* The head's logits (set->n, K) for every example of `set`, in batches of
 * `batch` through the caller's workspaces, and with the entity tagger's
 * workspace (ehw, when the model has a tagger) its span counts. */
static qiao_status collect_logits(const qb_exec *ex, const qmod_model *m, qmod_work *w, qmod_head_work *hw,
                                  qmod_head_work *ehw, int head, const qmi_set *set, int64_t batch, float *out,
                                  int64_t *ent_counts) {
    const int64_t K = m->cfg.heads[head].mlp.classes;
    const int ent = ehw ? qmod_head_find(&m->cfg, QMI_ENT_HEAD) : -1;
    const char **texts = malloc((size_t)batch * sizeof *texts);
    qmi_context *contexts = malloc((size_t)batch * sizeof *contexts);
    qmi_found *found = NULL;
    qmod_batch b;
    memset(&b, 0, sizeof b);
    qiao_status st = texts && contexts ? QIAO_OK : qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent: out of memory");
    for (int64_t i = 0; i < set->n && st == QIAO_OK; i += batch) {
        const int64_t k = set->n - i < batch ? set->n - i : batch;
        for (int64_t j = 0; j < k; j++) {
            texts[j] = set->ex[i + j].text;
            contexts[j] = (qmi_context){set->ex[i + j].context, (size_t)set->ex[i + j].n_context};
        }
        const float *emb, *logits;
        st = qmi_logits(ex, m, w, hw, texts, contexts, (size_t)k, &b, &emb, &logits);
        if (st == QIAO_OK)
            memcpy(out + i * K, logits, (size_t)(k * K) * sizeof(float));
        if (st != QIAO_OK || ent < 0)
            continue;
        const float *elog;
        qmod_token_seq ts;
        st = qmi_entity_logits(ex, m, ent, w, ehw, &b, ehw->train, &elog, &ts);
        qmi_found *grown = st == QIAO_OK ? realloc(found, (size_t)ts.T * sizeof *found) : NULL;
        if (st == QIAO_OK && !grown)
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent: out of memory");
        if (grown)
            found = grown;
        for (int64_t j = 0; j < k && st == QIAO_OK; j++)
            st = count_entities(m, ent, &b, ts.T, elog, j, &set->ex[i + j], found, ent_counts);
    }
    qmod_batch_free(&b);
    free(texts), free(contexts), free(found);
    return st;
}

/* A multi-label head's mean binary cross-entropy per (example, class) at
 * temperature T. */
static double nll_multi(const float *logits, const qmi_set *set, int64_t K, double T) {
    double sum = 0;
    for (int64_t i = 0; i < set->n; i++) {
        const qmi_example *e = &set->ex[i];
        for (int64_t k = 0; k < K; k++) {
            const double l = logits[i * K + k] / T;
            bool y = false;
            for (int j = 0; j < e->n_labels && !y; j++)
                y = e->labels[j] == k;
            sum += fmax(l, 0.0) - (y ? l : 0.0) + log1p(exp(-fabs(l)));
        }
    }
    return set->n ? sum / (double)(set->n * K) : 0.0;
}

/* Mean negative log-likelihood of the examples' labels under
 * softmax(logits / T), over the examples with a label (multi-label: each
 * class's binary one). */
static double nll_at(const float *logits, const qmi_set *set, int64_t K, double T) {
    if (set->multi_label)
        return nll_multi(logits, set, K, T);
    double sum = 0;
    int64_t n = 0;
    for (int64_t i = 0; i < set->n; i++) {
        if (set->ex[i].n_labels < 1)
            continue;
        const float *l = logits + i * K;
        float mx = l[0];
        for (int64_t k = 1; k < K; k++)
            mx = l[k] > mx ? l[k] : mx;
        double s = 0;
        for (int64_t k = 0; k < K; k++)
            s += exp(((double)l[k] - mx) / T);
        sum += log(s) - ((double)l[set->ex[i].labels[0]] - mx) / T;
        n++;
    }
    return n ? sum / (double)n : 0.0;
}

/* The expected calibration error of the top class's probability over
 * ECE_BINS equal-width bins (Naeini et al. 2015), at temperature T. */
static double ece_at(const float *logits, const qmi_set *set, int64_t K, float T, float *probs) {
    double conf[ECE_BINS] = {0}, right[ECE_BINS] = {0};
    int64_t count[ECE_BINS] = {0}, n = 0;
    /* multi-label: every (example, class) is a yes-or-no forecast of its own */
    for (int64_t i = 0; set->multi_label && i < set->n; i++)
        for (int64_t k = 0; k < K; k++) {
            const float p = 1.0f / (1.0f + expf(-logits[i * K + k] / T));
            bool y = false;
            for (int j = 0; j < set->ex[i].n_labels && !y; j++)
                y = set->ex[i].labels[j] == k;
            int bin = (int)(p * ECE_BINS);
            bin = bin < 0 ? 0 : bin >= ECE_BINS ? ECE_BINS - 1 : bin;
            conf[bin] += p;
            right[bin] += y;
            count[bin]++;
            n++;
        }
    for (int64_t i = 0; !set->multi_label && i < set->n; i++) {
        if (set->ex[i].n_labels < 1)
            continue;
        qmi_softmax(logits + i * K, K, T, probs);
        int64_t best = 0;
        for (int64_t k = 1; k < K; k++)
            best = probs[k] > probs[best] ? k : best;
        int bin = (int)(probs[best] * ECE_BINS);
        bin = bin < 0 ? 0 : bin >= ECE_BINS ? ECE_BINS - 1 : bin;
        conf[bin] += probs[best];
        right[bin] += best == set->ex[i].labels[0];
        count[bin]++;
        n++;
    }
    double e = 0;
    for (int b = 0; b < ECE_BINS; b++)
        e += fabs(right[b] - conf[b]);
    return n ? e / (double)n : 0.0;
}

/* Accuracy and macro-F1 from the confusion matrix (labels never seen and
 * never predicted do not count in the macro average). */
static void scores(qmi_eval *e) {
    const int32_t K = e->n_labels;
    int64_t right = 0, total = 0, used = 0;
    double f1 = 0;
    for (int32_t k = 0; k < K; k++) {
        int64_t tp = e->confusion[(int64_t)k * K + k], truth = 0, pred = 0;
        for (int32_t j = 0; j < K; j++)
            truth += e->confusion[(int64_t)k * K + j], pred += e->confusion[(int64_t)j * K + k];
        right += tp;
        total += truth;
        if (!truth && !pred)
            continue;
        used++;
        f1 += truth + pred ? 2.0 * (double)tp / (double)(truth + pred) : 0.0;
    }
    e->accuracy = total ? (double)right / (double)total : 0.0;
    e->macro_f1 = used ? f1 / (double)used : 0.0;
}

/* A multi-label head's figures: the classes at 0.5 or more against the
 * example's, counted over (example, class) pairs (micro-F1, and the
 * per-class F1's mean over the classes that occur or are predicted), and
 * the share of examples whose set is exactly right. */
static qiao_status eval_multi(const qmod_head_config *h, const qmi_set *set, const float *logits, float *probs,
                              qmi_eval *out) {
    const int64_t K = h->mlp.classes;
    int64_t *tp = calloc((size_t)K, sizeof *tp), *fp = calloc((size_t)K, sizeof *fp),
            *fn = calloc((size_t)K, sizeof *fn);
    if (!tp || !fp || !fn) {
        free(tp), free(fp), free(fn);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent: out of memory");
    }
    int64_t exact = 0, TP = 0, FP = 0, FN = 0;
    for (int64_t i = 0; i < set->n; i++) {
        const qmi_example *e = &set->ex[i];
        qmi_probs(h, logits + i * K, probs);
        bool all = true;
        for (int64_t k = 0; k < K; k++) {
            bool y = false;
            for (int j = 0; j < e->n_labels && !y; j++)
                y = e->labels[j] == k;
            const bool p = probs[k] >= 0.5f;
            tp[k] += p && y, fp[k] += p && !y, fn[k] += !p && y;
            all = all && p == y;
        }
        exact += all;
    }
    double f1 = 0;
    int64_t used = 0;
    for (int64_t k = 0; k < K; k++) {
        TP += tp[k], FP += fp[k], FN += fn[k];
        if (tp[k] + fp[k] + fn[k] == 0)
            continue;
        used++;
        f1 += 2.0 * (double)tp[k] / (double)(2 * tp[k] + fp[k] + fn[k]);
    }
    out->n = set->n;
    out->n_labels = (int32_t)K;
    out->accuracy = set->n ? (double)exact / (double)set->n : 0.0;
    out->micro_f1 = TP + FP + FN ? 2.0 * (double)TP / (double)(2 * TP + FP + FN) : 0.0;
    out->macro_f1 = used ? f1 / (double)used : 0.0;
    out->oos_recall = out->oos_precision = NAN;
    free(tp), free(fp), free(fn);
    return QIAO_OK;
}

/* A single-label head's figures: the confusion matrix of the top class,
 * and the out-of-scope decisions against the oos class. */
static qiao_status eval_single(const qmod_head_config *h, const qmi_set *set, const float *logits, float *probs,
                               qmi_eval *out) {
    const int32_t K = (int32_t)h->mlp.classes;
    out->n_labels = K;
    if (!(out->confusion = calloc((size_t)K * (size_t)K, sizeof *out->confusion)))
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent: out of memory");
    int64_t in_right = 0, rejected_in = 0, oos_caught = 0, flagged = 0;
    for (int64_t i = 0; i < set->n; i++) {
        const qmi_example *e = &set->ex[i];
        if (e->n_labels < 1)
            continue;
        qmi_probs(h, logits + i * K, probs);
        qmi_decision d;
        qmi_decide(h, probs, h->threshold, &d);
        const int32_t truth = e->labels[0];
        out->confusion[(int64_t)truth * K + d.best]++;
        out->n++;
        flagged += d.out_of_scope;
        if (truth == h->oos_class) {
            out->n_oos++;
            oos_caught += d.out_of_scope;
        } else {
            out->n_in++;
            rejected_in += d.out_of_scope;
            in_right += !d.out_of_scope && d.best == truth;
        }
    }
    scores(out);
    out->in_scope_accuracy = out->n_in ? (double)in_right / (double)out->n_in : 0.0;
    out->false_rejection = out->n_in ? (double)rejected_in / (double)out->n_in : 0.0;
    out->oos_recall = out->n_oos ? (double)oos_caught / (double)out->n_oos : NAN;
    out->oos_precision = flagged && out->n_oos ? (double)oos_caught / (double)flagged : NAN;
    return QIAO_OK;
}

/* Everything qmi_eval holds, from the logits of `set`. */
static qiao_status eval_from_logits(const qmod_head_config *h, const qmi_set *set, const float *logits, qmi_eval *out) {
    const int64_t K = h->mlp.classes;
    float *probs = malloc((size_t)K * sizeof *probs);
    if (!probs)
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent: out of memory");
    const qiao_status st = h->multi_label ? eval_multi(h, set, logits, probs, out)
                                          : eval_single(h, set, logits, probs, out);
    if (st == QIAO_OK) {
        out->nll_raw = nll_at(logits, set, K, 1.0);
        out->nll = nll_at(logits, set, K, h->temperature);
        out->ece_raw = ece_at(logits, set, K, 1.0f, probs);
        out->ece = ece_at(logits, set, K, h->temperature, probs);
    }
    free(probs);
    return st;
}

qiao_status qmi_evaluate_with(const qb_exec *ex, const qmod_model *m, qmod_work *w, qmod_head_work *hw,
                              qmod_head_work *ehw, int head, const qmi_set *set, int64_t batch, qmi_eval *out) {
    const qmod_head_config *h = &m->cfg.heads[head];
    memset(out, 0, sizeof *out);
    if (set->n_labels != h->mlp.classes)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: %d labels, the classifier has %lld (read it against the model)",
                        set->path, set->n_labels, (long long)h->mlp.classes);
    float *logits = malloc((size_t)(set->n > 0 ? set->n : 1) * (size_t)h->mlp.classes * sizeof *logits);
    if (!logits)
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent: out of memory for the logits of %lld texts",
                        (long long)set->n);
    const double t0 = now_s();
    int64_t counts[3] = {0, 0, 0};
    qiao_status st = collect_logits(ex, m, w, hw, ehw, head, set, batch, logits, counts);
    out->seconds = now_s() - t0;
    if (st == QIAO_OK)
        st = eval_from_logits(h, set, logits, out);
    if (ehw)
        counts[0] += set->unknown_spans; /* a type the tagger does not know: missed */
    out->ent_gold = counts[0], out->ent_found = counts[1], out->ent_right = counts[2];
    out->ent_precision = counts[1] ? (double)counts[2] / (double)counts[1] : 0.0;
    out->ent_recall = counts[0] ? (double)counts[2] / (double)counts[0] : 0.0;
    out->ent_f1 = counts[0] + counts[1] ? 2.0 * (double)counts[2] / (double)(counts[0] + counts[1]) : 0.0;
    free(logits);
    if (st != QIAO_OK)
        qmi_eval_free(out);
    return st;
}

/* m's intent head into *head, or QIAO_ERR_INVALID_ARGUMENT naming m. */
static qiao_status intent_head(const qmod_model *m, int *head) {
    *head = qmod_head_find(&m->cfg, QMI_HEAD);
    return *head >= 0 ? QIAO_OK
                      : qc_error(QIAO_ERR_INVALID_ARGUMENT, "model %s has no intent head", m->cfg.name);
}

/* The context a stand-alone evaluation or calibration runs on: the model's
 * own precision, as a session with QIAO_PRECISION_MODEL (a file `qiao
 * quantize` wrote computes its GEMMs in int8 or bf16), so the figures and
 * the calibration are those of the deployed classifier. *packed (NULL for
 * f32) is freed by the caller with qb_packed_set_free. */
static qiao_status exec_for(const qmod_model *m, int threads, qb_exec *ex, qb_packed_set **packed) {
    qb_exec_cpu(ex, threads);
    *packed = NULL;
    if (m->precision == QB_PREC_F32)
        return QIAO_OK;
    const qiao_status st = qmod_pack_weights_prec(m, m->precision, packed);
    ex->packed = *packed;
    return st;
}

qiao_status qmi_evaluate(const qmod_model *m, const qmi_set *set, int threads, int64_t batch, qmi_eval *out) {
    if (!out)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmi_evaluate: NULL argument");
    memset(out, 0, sizeof *out);
    if (!m || !set || batch < 1)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmi_evaluate: NULL argument");
    int head;
    if (intent_head(m, &head) != QIAO_OK)
        return QIAO_ERR_INVALID_ARGUMENT;
    qb_exec ex;
    qb_packed_set *packed;
    qiao_status st = exec_for(m, threads, &ex, &packed);
    qmod_work w;
    qmod_head_work hw, ehw;
    memset(&w, 0, sizeof w);
    memset(&hw, 0, sizeof hw);
    memset(&ehw, 0, sizeof ehw);
    const int ent = qmod_head_find(&m->cfg, QMI_ENT_HEAD);
    if (st == QIAO_OK)
        st = qmi_open_work(m, head, batch, &w, &hw);
    if (st == QIAO_OK && ent >= 0)
        st = qmi_entity_reserve(m, ent, &ehw, batch * 64, false);
    if (st == QIAO_OK)
        st = qmi_evaluate_with(&ex, m, &w, &hw, ent >= 0 ? &ehw : NULL, head, set, batch, out);
    qmi_close_work(&w, &hw);
    qmod_head_work_free(&ehw);
    qb_packed_set_free(packed);
    return st;
}

/* ---- calibration ------------------------------------------------------------------ */

/* The temperature in [0.05, 20] that minimizes the validation NLL: a golden
 * section search on log T (the NLL is convex in 1/T). */
static double fit_temperature(const float *logits, const qmi_set *set, int64_t K) {
    const double g = 0.5 * (sqrt(5.0) - 1.0);
    double a = log(0.05), b = log(20.0);
    double c = b - g * (b - a), d = a + g * (b - a);
    double fc = nll_at(logits, set, K, exp(c)), fd = nll_at(logits, set, K, exp(d));
    for (int it = 0; it < 60; it++) {
        if (fc < fd) {
            b = d, d = c, fd = fc;
            c = b - g * (b - a);
            fc = nll_at(logits, set, K, exp(c));
        } else {
            a = c, c = d, fc = fd;
            d = a + g * (b - a);
            fd = nll_at(logits, set, K, exp(d));
        }
    }
    return exp(0.5 * (a + b));
}

static int cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The largest threshold on the calibrated top probability that rejects at
 * most `rejection` of the in-scope examples, counting those the oos class
 * already takes: halfway between the last confidence it may reject and the
 * next. 0 when nothing may be rejected. */
static qiao_status choose_threshold(const qmod_head_config *h, const qmi_set *set, const float *logits, float T,
                                    double rejection, float *threshold) {
    const int64_t K = h->mlp.classes;
    *threshold = 0.0f;
    float *conf = malloc((size_t)(set->n > 0 ? set->n : 1) * sizeof *conf), *probs = malloc((size_t)K * sizeof *probs);
    if (!conf || !probs) {
        free(conf), free(probs);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent: out of memory");
    }
    int64_t n_in = 0, by_class = 0, n = 0;
    for (int64_t i = 0; i < set->n; i++) {
        const qmi_example *e = &set->ex[i];
        if (e->n_labels < 1 || e->labels[0] == h->oos_class)
            continue;
        n_in++;
        qmi_softmax(logits + i * K, K, T, probs);
        qmi_decision d;
        qmi_decide(h, probs, 0.0f, &d);
        if (d.out_of_scope)
            by_class++;
        else
            conf[n++] = d.confidence;
    }
    const int64_t allowed = (int64_t)floor(rejection * (double)n_in + 1e-9) - by_class;
    if (allowed > 0 && n > 0) {
        qsort(conf, (size_t)n, sizeof *conf, cmp_float);
        *threshold = allowed >= n ? conf[n - 1] : 0.5f * (conf[allowed - 1] + conf[allowed]);
    }
    free(conf), free(probs);
    return QIAO_OK;
}

/* m's config with the head's calibration keys set (the config is parsed
 * again, so the model file written next carries them). */
static qiao_status set_calibration(qmod_model *m, int head, float T, float threshold, const char *oos_label) {
    cJSON *root = cJSON_Parse(m->cfg.json);
    cJSON *h = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "heads"),
                                                m->cfg.heads[head].name);
    if (!h) {
        cJSON_Delete(root);
        return qc_error(QIAO_ERR_INTERNAL, "intent: the model's config has no head %s", m->cfg.heads[head].name);
    }
    static const char *const keys[] = {"temperature", "threshold", "oos_label"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(h, keys[i]);
    cJSON_AddNumberToObject(h, "temperature", (double)T);
    cJSON_AddNumberToObject(h, "threshold", (double)threshold);
    if (oos_label)
        cJSON_AddStringToObject(h, "oos_label", oos_label);
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json)
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent: out of memory");
    qmod_config cfg;
    const qiao_status st = qmod_config_from_string(json, "intent classifier config", &cfg);
    cJSON_free(json);
    if (st != QIAO_OK)
        return st;
    qmod_config_free(&m->cfg);
    m->cfg = cfg;
    return QIAO_OK;
}

qiao_status qmi_calibrate_with(const qb_exec *ex, qmod_model *m, qmod_work *w, qmod_head_work *hw, int head,
                               const qmi_set *val, int64_t batch, double rejection, const char *oos_label,
                               qmi_calibration *out) {
    memset(out, 0, sizeof *out);
    const int64_t K = m->cfg.heads[head].mlp.classes;
    if (val->n_labels != K)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: %d labels, the classifier has %lld (read it against the model)",
                        val->path, val->n_labels, (long long)K);
    if (!(rejection >= 0.0 && rejection < 1.0))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "intent calibration: the rejection rate %g is not in [0, 1)",
                        rejection);
    const int32_t oos = oos_label ? qmi_find(val->labels, val->n_labels, oos_label) : -1;
    float *logits = malloc((size_t)(val->n > 0 ? val->n : 1) * (size_t)K * sizeof *logits);
    float *probs = malloc((size_t)K * sizeof *probs);
    qiao_status st = logits && probs ? QIAO_OK : qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent: out of memory");
    if (st == QIAO_OK)
        st = collect_logits(ex, m, w, hw, NULL, head, val, batch, logits, NULL);
    if (st == QIAO_OK) {
        qmod_head_config h = m->cfg.heads[head];
        h.oos_class = oos;
        out->n = val->n;
        out->temperature = val->n > 0 ? (float)fit_temperature(logits, val, K) : 1.0f;
        out->nll_before = nll_at(logits, val, K, 1.0);
        out->nll_after = nll_at(logits, val, K, out->temperature);
        out->ece_before = ece_at(logits, val, K, 1.0f, probs);
        out->ece_after = ece_at(logits, val, K, out->temperature, probs);
        if (!h.multi_label)
            st = choose_threshold(&h, val, logits, out->temperature, rejection, &out->threshold);
    }
    if (st == QIAO_OK)
        st = set_calibration(m, head, out->temperature, out->threshold, oos >= 0 ? val->labels[oos] : NULL);
    free(logits), free(probs);
    return st;
}

qiao_status qmi_calibrate(qmod_model *m, const qmi_set *val, int threads, double rejection, const char *oos_label,
                          qmi_calibration *out) {
    if (!out || !m || !val)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmi_calibrate: NULL argument");
    int head;
    if (intent_head(m, &head) != QIAO_OK)
        return QIAO_ERR_INVALID_ARGUMENT;
    qb_exec ex;
    qb_packed_set *packed;
    qiao_status st = exec_for(m, threads, &ex, &packed);
    qmod_work w;
    qmod_head_work hw;
    memset(&w, 0, sizeof w);
    memset(&hw, 0, sizeof hw);
    if (st == QIAO_OK)
        st = qmi_open_work(m, head, 32, &w, &hw);
    if (st == QIAO_OK)
        st = qmi_calibrate_with(&ex, m, &w, &hw, head, val, 32, rejection, oos_label, out);
    qmi_close_work(&w, &hw);
    qb_packed_set_free(packed);
    return st;
}
