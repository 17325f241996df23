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
#include "tokenizers/tokenizer.h"

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

/* ---- the text and its context in one row ---------------------------------------------- */

/* One row's pieces before they are laid out: the text's tokens and those
 * of the turns that fit (each still with its bos, which assemble skips). */
typedef struct row_parts {
    qiao_tokens *text;
    qiao_tokens **turns; /* (kept) newest first */
    size_t kept;
    int64_t count; /* tokens in the row */
} row_parts;

/* How the tokenizer separates segments: its own end of sequence, or a
 * separator put in front of each turn (sep_id, -1: none). */
typedef struct seps {
    bool skip_bos;
    bool ends_with_eos;
    int32_t sep_id;
} seps;

static seps separators(const qiao_tokenizer *tok) {
    seps s = {false, false, -1};
    if (tok->kind == TK_KIND_HYBRID) {
        s.sep_id = QIAO_PIECE_EOS; /* in every hybrid vocabulary, and never produced by its tokenizer */
        return s;
    }
    s.skip_bos = tok->sp.add_bos;
    s.ends_with_eos = tok->sp.add_eos;
    if (!s.ends_with_eos)
        s.sep_id = tok->sp.eos;
    return s;
}

/* Row i's pieces: the prompted text, then as many of its last `want`
 * turns as max_tokens leaves room for, newest first. */
static qiao_status row_tokens(const qmod_model *m, const seps *sp, const char *prompted_text, size_t i,
                              const qmi_context *c, int64_t want, row_parts *r) {
    const int64_t max_T = m->cfg.text.trunk.max_T;
    qiao_tokenize_params tp = qiao_tokenize_default_params();
    tp.max_tokens = max_T;
    char msg[512];
    qiao_status st = qiao_tokenize(m->tok, prompted_text, strlen(prompted_text), &tp, &r->text);
    if (st != QIAO_OK) {
        snprintf(msg, sizeof msg, "%s", qiao_last_error());
        return qc_error(st, "intent: text %zu: %s", i, msg);
    }
    r->count = (int64_t)r->text->count;
    const size_t first = c && want > 0 && (size_t)want < c->n ? c->n - (size_t)want : 0;
    for (size_t j = first; c && want > 0 && j < c->n; j++) {
        if (!c->turns || !c->turns[j])
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "intent: text %zu: context turn %zu is NULL", i, j);
        const size_t len = strlen(c->turns[j]), ok = qc_utf8_check(c->turns[j], len);
        if (ok != len)
            return qc_error(QIAO_ERR_FORMAT, "intent: text %zu: context turn %zu is not valid UTF-8 (byte %zu)", i,
                            j, ok);
    }
    /* an empty text stays empty: its row is the one without context */
    const size_t n_turns = c && want > 0 && r->count > 0 ? c->n - first : 0;
    if (n_turns && !(r->turns = calloc(n_turns, sizeof *r->turns)))
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent: out of memory");
    const int64_t own_sep = sp->sep_id >= 0 ? 1 : 0, bos = sp->skip_bos ? 1 : 0, eos = sp->ends_with_eos ? 1 : 0;
    for (size_t j = c ? c->n : 0; j-- > first && n_turns;) {
        const int64_t room = max_T - r->count;
        /* a turn's tokens less its bos, and its own separator, must fit in
         * the room; a piece of it at least */
        const int64_t limit = room - own_sep + bos;
        if (limit < 1 + bos + eos)
            break;
        qiao_tokens *t = NULL;
        tp.max_tokens = limit;
        if ((st = qiao_tokenize(m->tok, c->turns[j], strlen(c->turns[j]), &tp, &t)) != QIAO_OK) {
            snprintf(msg, sizeof msg, "%s", qiao_last_error());
            return qc_error(st, "intent: text %zu: context turn %zu: %s", i, j, msg);
        }
        const int64_t pieces = (int64_t)t->count - bos - eos;
        if (pieces < 1) { /* a blank turn says nothing */
            qiao_tokens_free(t);
            continue;
        }
        r->turns[r->kept++] = t;
        r->count += (int64_t)t->count - bos + own_sep;
    }
    return QIAO_OK;
}

static void row_free(row_parts *r) {
    qiao_tokens_free(r->text);
    for (size_t j = 0; j < r->kept; j++)
        qiao_tokens_free(r->turns[j]);
    free(r->turns);
    memset(r, 0, sizeof *r);
}

/* src's tokens from index `from` on into row i at positions *p.. (K
 * character slots a token); their offsets stay -1 unless `keep_offsets`. */
static void put_tokens(qmod_batch *b, int64_t K, size_t i, int64_t *p, const qiao_tokens *src, size_t from,
                       bool keep_offsets) {
    const int64_t T = b->T;
    for (size_t t = from; t < src->count; t++, (*p)++) {
        const int64_t at = (int64_t)i * T + *p;
        b->ids[at] = src->ids[t];
        b->tags[at] = src->tags[t];
        b->mask[at] = 1;
        if (keep_offsets) {
            b->offsets[2 * at] = src->offsets[2 * t];
            b->offsets[2 * at + 1] = src->offsets[2 * t + 1];
        }
        if (K > 0 && src->char_ids && src->k == K)
            memcpy(b->char_ids + at * K, src->char_ids + t * (size_t)K, (size_t)K * sizeof *b->char_ids);
    }
}

static void put_sep(qmod_batch *b, size_t i, int64_t *p, int32_t id) {
    const int64_t at = (int64_t)i * b->T + (*p)++;
    b->ids[at] = id;
    b->tags[at] = QIAO_TAG_S;
    b->mask[at] = 1;
}

/* The rows laid out as qmod_batch_text lays out a batch: padded to the
 * longest (at least 1), ids and characters 0, tags QIAO_TAG_PAD, mask 0
 * and offsets -1 at padding. */
static qiao_status assemble(const qmod_model *m, const seps *sp, const row_parts *rows, size_t n, qmod_batch *b) {
    int64_t T = 1;
    for (size_t i = 0; i < n; i++)
        T = rows[i].count > T ? rows[i].count : T;
    const int64_t K = m->cfg.text.k;
    memset(b, 0, sizeof *b);
    b->mod = QMOD_TEXT;
    b->B = (int64_t)n;
    b->T = T;
    const size_t cells = n * (size_t)T;
    b->ids = calloc(cells, sizeof *b->ids);
    b->char_ids = calloc(cells * (size_t)(K > 0 ? K : 1), sizeof *b->char_ids);
    b->tags = calloc(cells, 1);
    b->mask = calloc(cells, 1);
    b->lengths = calloc(n, sizeof *b->lengths);
    b->offsets = malloc(cells * 2 * sizeof *b->offsets);
    if (!b->ids || !b->char_ids || !b->tags || !b->mask || !b->lengths || !b->offsets) {
        qmod_batch_free(b);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent: out of memory for %zu texts with context", n);
    }
    for (size_t c = 0; c < cells * 2; c++)
        b->offsets[c] = -1;
    for (size_t i = 0; i < n; i++) {
        const row_parts *r = &rows[i];
        int64_t p = 0;
        put_tokens(b, K, i, &p, r->text, 0, true);
        for (size_t j = r->kept; j-- > 0;) { /* oldest first */
            if (sp->sep_id >= 0)
                put_sep(b, i, &p, sp->sep_id);
            put_tokens(b, K, i, &p, r->turns[j], sp->skip_bos ? 1 : 0, false);
        }
        b->lengths[i] = p;
    }
    return QIAO_OK;
}

qiao_status qmi_batch(const qmod_model *m, const char *const *texts, const qmi_context *contexts, size_t n,
                      qmod_batch *b) {
    if (!b)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmi_batch: NULL argument");
    memset(b, 0, sizeof *b);
    if (!m || !texts || n == 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmi_batch: no model or no texts");
    const int head = qmod_head_find(&m->cfg, QMI_HEAD);
    const int64_t want = head >= 0 ? m->cfg.heads[head].context : 0;
    bool any = false;
    for (size_t i = 0; contexts && want > 0 && i < n; i++)
        any = any || contexts[i].n > 0;
    const char **t = malloc(n * sizeof *t);
    char **bufs = calloc(n, sizeof *bufs);
    qiao_status st = t && bufs ? prompted(m, texts, n, t, bufs) : qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == QIAO_OK && !any)
        st = qmod_batch_text(m, t, n, b);
    else if (st == QIAO_OK && !m->tok)
        st = qc_error(QIAO_ERR_INVALID_ARGUMENT, "model %s has no tokenizer: it cannot read text", m->cfg.name);
    else if (st == QIAO_OK) {
        const seps sp = separators(m->tok);
        row_parts *rows = calloc(n, sizeof *rows);
        if (!rows)
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent: out of memory");
        for (size_t i = 0; i < n && st == QIAO_OK; i++)
            st = row_tokens(m, &sp, t[i], i, &contexts[i], want, &rows[i]);
        if (st == QIAO_OK)
            st = assemble(m, &sp, rows, n, b);
        for (size_t i = 0; rows && i < n; i++)
            row_free(&rows[i]);
        free(rows);
    }
    if (bufs)
        free_texts(bufs, n);
    free(t), free(bufs);
    return st;
}

qiao_status qmi_logits(const qb_exec *ex, const qmod_model *m, qmod_work *w, qmod_head_work *hw,
                       const char *const *texts, const qmi_context *contexts, size_t n, qmod_batch *b,
                       const float **emb, const float **logits) {
    qmod_batch_free(b);
    qiao_status st = qmi_batch(m, texts, contexts, n, b);
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
        st = qmi_logits(&ex, m, &w, &hw, texts + i, NULL, k, &b, &emb, &logits);
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
