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

void qmi_probs(const qmod_head_config *h, const float *logits, float *probs) {
    const int64_t K = h->mlp.classes;
    if (!h->multi_label) {
        qmi_softmax(logits, K, h->temperature, probs);
        return;
    }
    for (int64_t k = 0; k < K; k++)
        probs[k] = 1.0f / (1.0f + expf(-logits[k] / h->temperature));
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
    /* multi-label: the classes at 0.5 or more are the text's; none is out of scope */
    const float floor_p = h->multi_label && threshold < 0.5f ? 0.5f : threshold;
    d->out_of_scope = best == h->oos_class || probs[best] < floor_p;
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
            qmi_probs(h, logits + j * (size_t)K, probs + (i + j) * (size_t)K);
    }
    qmod_batch_free(&b);
    qmi_close_work(&w, &hw);
    return st;
}

static void free_names(char **names, int32_t n) {
    for (int32_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}

/* The `n` labels of head `head` from class `first` in steps of `step`,
 * with one parse of the config; with `prefix`, each must start with it and
 * comes without it. */
static qiao_status head_names(const qmod_model *m, int head, int64_t first, int64_t step, int32_t n, const char *prefix,
                              char ***out) {
    const size_t cap = QMOD_NAME_MAX * 4, drop = prefix ? strlen(prefix) : 0;
    int64_t *ks = malloc((size_t)(n > 0 ? n : 1) * sizeof *ks);
    char *keys = malloc((size_t)(n > 0 ? n : 1) * cap);
    char **names = calloc((size_t)(n > 0 ? n : 1), sizeof *names);
    qiao_status st = ks && keys && names ? QIAO_OK : qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent: out of memory");
    for (int32_t i = 0; st == QIAO_OK && i < n; i++)
        ks[i] = first + step * i;
    if (st == QIAO_OK)
        qmod_head_labels(&m->cfg, head, ks, n, NULL, keys, NULL, cap);
    for (int32_t i = 0; st == QIAO_OK && i < n; i++) {
        const char *key = keys + (size_t)i * cap;
        if (prefix && strncmp(key, prefix, drop) != 0)
            st = qc_error(QIAO_ERR_FORMAT, "model %s: head \"%s\" class %lld is \"%s\", not %s<name>", m->cfg.name,
                          m->cfg.heads[head].name, (long long)ks[i], key, prefix);
        else if (!(names[i] = strdup(key + drop)))
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent: out of memory");
    }
    free(ks), free(keys);
    if (st != QIAO_OK) {
        free_names(names, n);
        names = NULL;
    }
    *out = names;
    return st;
}

qiao_status qmi_model_names(const qmod_model *m, char ***intents, int32_t *n_intents, char ***types,
                            int32_t *n_types) {
    *intents = *types = NULL;
    *n_intents = *n_types = 0;
    const int head = qmod_head_find(&m->cfg, QMI_HEAD), ent = qmod_head_find(&m->cfg, QMI_ENT_HEAD);
    if (head < 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "model %s is not an intent classifier (no head \"%s\")",
                        m->cfg.name, QMI_HEAD);
    const qmod_head_config *h = &m->cfg.heads[head], *e = ent >= 0 ? &m->cfg.heads[ent] : NULL;
    if (h->fused || h->input != QMOD_HEAD_EMBEDDING || h->tower != QMOD_TEXT)
        return qc_error(QIAO_ERR_FORMAT, "model %s: its head \"%s\" does not read the text embedding", m->cfg.name,
                        QMI_HEAD);
    if (e && (e->mlp.classes < 3 || e->mlp.classes % 2 == 0 || e->input != QMOD_HEAD_TOKENS ||
              e->tower != QMOD_TEXT || e->fused))
        return qc_error(QIAO_ERR_FORMAT,
                        "model %s: its head \"%s\" is not a tagger of the text's tokens with 1 + 2 classes per type",
                        m->cfg.name, QMI_ENT_HEAD);
    const int32_t K = (int32_t)h->mlp.classes, E = e ? (int32_t)(e->mlp.classes / 2) : 0;
    qiao_status st = head_names(m, head, 0, 1, K, NULL, intents);
    /* the tagger's classes: O, then B-<type> and I-<type> per type */
    if (st == QIAO_OK && e)
        st = head_names(m, ent, 1, 2, E, "B-", types);
    if (st != QIAO_OK) {
        free_names(*intents, K);
        *intents = NULL;
        return st;
    }
    *n_intents = K, *n_types = E;
    return QIAO_OK;
}

/* ---- the entity tagger ------------------------------------------------------------ */

qiao_status qmi_entity_reserve(const qmod_model *m, int head, qmod_head_work *hw, int64_t rows, bool train) {
    if (hw->acts.base && rows <= hw->N_max && (hw->train || !train))
        return QIAO_OK;
    const int64_t n = rows > 2 * hw->N_max ? rows : 2 * hw->N_max; /* grow geometrically: T varies per batch */
    qmod_head_work_free(hw);
    return qmod_head_work_init(hw, m, head, n, train);
}

qiao_status qmi_entity_logits(const qb_exec *ex, const qmod_model *m, int head, const qmod_work *w,
                              qmod_head_work *hw, const qmod_batch *b, bool train, const float **logits,
                              qmod_token_seq *tokens) {
    qiao_status st = qmod_tokens(m, w, b, tokens);
    if (st == QIAO_OK)
        st = qmi_entity_reserve(m, head, hw, tokens->B * tokens->T, train);
    if (st == QIAO_OK)
        st = qmod_head_forward(ex, m, hw, tokens->x, tokens->B * tokens->T, logits);
    return st;
}

static bool is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int qmi_entity_decode(const qmod_head_config *h, const float *logits, const int64_t *offsets, int64_t T,
                      int64_t prompt_len, const char *text, size_t len, qmi_found *out, int max) {
    const int64_t K = h->mlp.classes;
    float *p = malloc((size_t)K * sizeof *p);
    if (!p)
        return -1;
    int n = 0;
    int64_t cur_type = -1, cur_tokens = 0, start = 0, end = 0;
    double sum = 0;
    for (int64_t t = 0; t <= T; t++) {
        int64_t cls = 0, s = 0, e = 0;
        float pc = 0;
        bool real = false;
        if (t < T) {
            s = offsets[2 * t] - prompt_len, e = offsets[2 * t + 1] - prompt_len;
            real = offsets[2 * t] >= 0 && e > s && e > 0;
            if (real) {
                qmi_softmax(logits + t * K, K, 1.0f, p);
                for (int64_t k = 1; k < K; k++)
                    cls = p[k] > p[cls] ? k : cls;
                pc = p[cls];
            }
        }
        if (t < T && !real)
            continue; /* specials, the prompt, padding: neither open nor close a span */
        const int64_t type = cls > 0 ? (cls - 1) / 2 : -1;
        const bool inside = cls > 0 && (cls - 1) % 2 == 1;
        if (cur_type >= 0 && (t == T || cls == 0 || !inside || type != cur_type)) {
            /* close: the span's bytes without the spaces its pieces carry */
            int64_t a = start < 0 ? 0 : start, z = end > (int64_t)len ? (int64_t)len : end;
            while (a < z && is_space((unsigned char)text[a]))
                a++;
            while (z > a && is_space((unsigned char)text[z - 1]))
                z--;
            if (z > a && n < max)
                out[n++] = (qmi_found){.type = (int32_t)cur_type, .start = a, .end = z,
                                       .confidence = (float)(sum / (double)cur_tokens)};
            cur_type = -1;
        }
        if (t == T || cls == 0)
            continue;
        if (cur_type < 0) {
            cur_type = type, cur_tokens = 0, sum = 0, start = s;
        }
        cur_tokens++;
        sum += pc;
        end = e;
    }
    free(p);
    return n;
}

int qmi_entity_row(const qmod_model *m, int ent, const qmod_batch *b, int64_t T, const float *logits, int64_t row,
                   const char *text, size_t len, qmi_found *out) {
    const char *prompt = qmod_config_prompt(&m->cfg, "query");
    const qmod_head_config *h = &m->cfg.heads[ent];
    return qmi_entity_decode(h, logits + row * T * h->mlp.classes, b->offsets + row * b->T * 2, T,
                             prompt ? (int64_t)strlen(prompt) : 0, text, len, out, (int)T);
}
