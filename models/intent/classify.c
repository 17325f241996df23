/* models/intent/classify.c - running a trained intent classifier (intent.h):
 * the prompted texts through the text tower and the head, and the decision
 * on the logits (calibrated probabilities, ranking, margin, out of scope).
 * In libqiao: the public API (sdk/api/intent_api.c) classifies with it;
 * training and evaluation (train.c, calibrate.c) use it too. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/embed.h"
#include "models/head.h"
#include "models/intent/intent.h"

/* The texts with the model's "query" prompt in front (bufs[i] owned when
 * a prompt was added; free them with free_texts). */
static qiao_status prompted(const qmod_model *m, const char *const *texts, size_t n, const char **out, char **bufs) {
    const char *prompt = qmod_config_prompt(&m->cfg, "query");
    for (size_t i = 0; i < n; i++) {
        bufs[i] = NULL;
        out[i] = texts[i];
        if (!prompt)
            continue;
        const size_t a = strlen(prompt), b = strlen(texts[i]);
        if (!(bufs[i] = malloc(a + b + 1)))
            return qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent: out of memory");
        memcpy(bufs[i], prompt, a);
        memcpy(bufs[i] + a, texts[i], b + 1);
        out[i] = bufs[i];
    }
    return QIAO_OK;
}

static void free_texts(char **bufs, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(bufs[i]);
}

qiao_status qmi_logits(const qb_exec *ex, const qmod_model *m, qmod_work *w, qmod_head_work *hw,
                       const char *const *texts, size_t n, qmod_batch *b, const float **emb, const float **logits) {
    const char **t = malloc(n * sizeof *t);
    char **bufs = calloc(n, sizeof *bufs);
    qiao_status st = t && bufs ? prompted(m, texts, n, t, bufs) : qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    qmod_batch_free(b);
    if (st == QIAO_OK)
        st = qmod_batch_text(m, t, n, b);
    if (bufs)
        free_texts(bufs, n);
    free(t), free(bufs);
    if (st == QIAO_OK)
        st = qmod_work_reserve(w, m, b->B, b->T);
    if (st == QIAO_OK)
        st = qmod_forward(ex, m, w, b, emb);
    if (st == QIAO_OK)
        st = qmod_head_forward(ex, m, hw, *emb, b->B, logits);
    return st;
}

qiao_status qmi_open_work(const qmod_model *m, int head, int64_t rows, qmod_work *w, qmod_head_work *hw) {
    memset(w, 0, sizeof *w);
    memset(hw, 0, sizeof *hw);
    qiao_status st = qmod_work_init(w, m, QMOD_TEXT, rows, 64, false);
    if (st == QIAO_OK)
        st = qmod_head_work_init(hw, m, head, rows, false);
    return st;
}

void qmi_close_work(qmod_work *w, qmod_head_work *hw) {
    qmod_work_free(w);
    qmod_head_work_free(hw);
}

void qmi_softmax(const float *logits, int64_t K, float temperature, float *probs) {
    const float inv = 1.0f / temperature;
    float mx = logits[0];
    for (int64_t k = 1; k < K; k++)
        mx = logits[k] > mx ? logits[k] : mx;
    double s = 0;
    for (int64_t k = 0; k < K; k++)
        s += probs[k] = expf((logits[k] - mx) * inv);
    for (int64_t k = 0; k < K; k++)
        probs[k] = (float)(probs[k] / s);
}

void qmi_decide(const qmod_head_config *h, const float *probs, float threshold, qmi_decision *d) {
    const int64_t K = h->mlp.classes;
    int32_t best = 0, second = -1;
    for (int32_t k = 1; k < K; k++) {
        if (probs[k] > probs[best]) {
            second = best;
            best = k;
        } else if (second < 0 || probs[k] > probs[second]) {
            second = k;
        }
    }
    d->best = best;
    d->confidence = probs[best];
    d->margin = probs[best] - (second >= 0 ? probs[second] : 0.0f);
    d->out_of_scope = best == h->oos_class || probs[best] < threshold;
}

qiao_status qmi_classify(const qmod_model *m, const char *const *texts, size_t n, int threads, float *probs) {
    if (!m || !texts || !probs || n == 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmi_classify: NULL argument");
    const int head = qmod_head_find(&m->cfg, QMI_HEAD);
    if (head < 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "model %s has no intent head", m->cfg.name);
    const qmod_head_config *h = &m->cfg.heads[head];
    const int64_t K = h->mlp.classes, chunk = 32;
    qb_exec ex;
    qb_exec_cpu(&ex, threads);
    qmod_work w;
    qmod_head_work hw;
    qmod_batch b;
    memset(&b, 0, sizeof b);
    qiao_status st = qmi_open_work(m, head, chunk, &w, &hw);
    for (size_t i = 0; i < n && st == QIAO_OK; i += (size_t)chunk) {
        const size_t k = n - i < (size_t)chunk ? n - i : (size_t)chunk;
        const float *emb, *logits;
        st = qmi_logits(&ex, m, &w, &hw, texts + i, k, &b, &emb, &logits);
        for (size_t j = 0; j < k && st == QIAO_OK; j++)
            qmi_softmax(logits + j * (size_t)K, K, h->temperature, probs + (i + j) * (size_t)K);
    }
    qmod_batch_free(&b);
    qmi_close_work(&w, &hw);
    return st;
}
