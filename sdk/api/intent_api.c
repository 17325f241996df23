/* The public intent API (qiao.h, "Intent classification"): the labels read
 * once at load, argument checks, the texts through models/intent/classify.c
 * in the session's workspaces, and each text's calibrated ranking. */
#define _POSIX_C_SOURCE 200809L

#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/core.h"
#include "models/head.h"
#include "models/intent/intent.h"

/* Texts per forward pass, as the embedding calls. */
#define INTENT_CHUNK 32

QIAO_API qiao_intent_params qiao_intent_default_params(void) {
    qiao_intent_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.top_k = 0;
    p.threshold = -1.0f;
    return p;
}

static int intent_head(const qiao_model *model) {
    return model ? qmod_head_find(&model->m->cfg, QMI_HEAD) : -1;
}

qiao_status qapi_intent_model_init(qiao_model *model) {
    if (intent_head(model) < 0) return QIAO_OK;
    char **intents = NULL, **types = NULL;
    int32_t n_intents = 0, n_types = 0;
    const qiao_status st = qmi_model_names(model->m, &intents, &n_intents, &types, &n_types);
    model->intents = intents, model->n_intents = (size_t)n_intents;
    model->entity_types = types, model->n_entity_types = (size_t)n_types;
    return st;
}

void qapi_intent_model_free(qiao_model *model) {
    if (!model) return;
    for (size_t k = 0; k < model->n_intents; k++) free(model->intents[k]);
    free(model->intents);
    model->intents = NULL;
    model->n_intents = 0;
    for (size_t t = 0; t < model->n_entity_types; t++) free(model->entity_types[t]);
    free(model->entity_types);
    model->entity_types = NULL;
    model->n_entity_types = 0;
}

void qapi_intent_free(qiao_session *s) {
    if (!s) return;
    qmod_head_work_free(s->intent);
    qmod_head_work_free(s->entity);
    free(s->intent), free(s->entity);
    s->intent = s->entity = NULL;
}

size_t qapi_intent_memory(const qiao_session *s) {
    size_t n = 0;
    if (s && s->intent) n += (s->intent->acts.n + s->intent->xs.n) * sizeof(float);
    if (s && s->entity) n += (s->entity->acts.n + s->entity->xs.n) * sizeof(float);
    return n;
}

QIAO_API int qiao_model_can_classify(const qiao_model *model) { return model && model->n_intents > 0; }

QIAO_API size_t qiao_model_intent_count(const qiao_model *model) { return model ? model->n_intents : 0; }

QIAO_API const char *qiao_model_intent(const qiao_model *model, size_t i) {
    return model && i < model->n_intents ? model->intents[i] : NULL;
}

QIAO_API const char *qiao_model_intent_oos(const qiao_model *model) {
    const int head = intent_head(model);
    const int32_t k = head >= 0 ? model->m->cfg.heads[head].oos_class : -1;
    return k >= 0 && (size_t)k < model->n_intents ? model->intents[k] : "";
}

QIAO_API float qiao_model_intent_threshold(const qiao_model *model) {
    const int head = intent_head(model);
    return head >= 0 ? model->m->cfg.heads[head].threshold : 0.0f;
}

QIAO_API size_t qiao_model_entity_type_count(const qiao_model *model) { return model ? model->n_entity_types : 0; }

QIAO_API const char *qiao_model_entity_type(const qiao_model *model, size_t i) {
    return model && i < model->n_entity_types ? model->entity_types[i] : NULL;
}

QIAO_API float qiao_model_intent_temperature(const qiao_model *model) {
    const int head = intent_head(model);
    return head >= 0 ? model->m->cfg.heads[head].temperature : 1.0f;
}

QIAO_API size_t qiao_model_intent_context(const qiao_model *model) {
    const int head = intent_head(model);
    return head >= 0 ? (size_t)model->m->cfg.heads[head].context : 0;
}

QIAO_API void qiao_intent_result_free(qiao_intent_result *result) {
    if (!result) return;
    free(result->ranking);
    free(result->entities);
    memset(result, 0, sizeof *result);
}

static qiao_status read_params(const qiao_intent_params *in, qiao_intent_params *p) {
    *p = qiao_intent_default_params();
    qiao_status st = qc_params_read(p, sizeof *p, in, offsetof(qiao_intent_params, threshold) + sizeof(float),
                                    "qiao_intent_default_params");
    if (st != QIAO_OK) return st;
    if (p->top_k < 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_intent_classify: top_k is %d, need 0 (all) or more",
                        p->top_k);
    if (!(p->threshold <= 1.0f)) /* NaN too */
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "qiao_intent_classify: threshold must be in [0, 1], or negative for the model's");
    if (p->n_context > 0 && !p->context)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_intent_classify: n_context is %zu but context is NULL",
                        p->n_context);
    /* every turn, even those a model reads none of: a bad argument is one whatever the model */
    for (size_t j = 0; j < p->n_context; j++) {
        if (!p->context[j])
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_intent_classify: context turn %zu is NULL", j);
        const size_t len = strlen(p->context[j]), ok = qc_utf8_check(p->context[j], len);
        if (ok != len)
            return qc_error(QIAO_ERR_FORMAT, "qiao_intent_classify: context turn %zu is not valid UTF-8 (byte %zu)",
                            j, ok);
    }
    return QIAO_OK;
}

typedef struct ranked {
    float p;
    size_t k;
} ranked;

/* Best first; ties to the lower index, so the ranking does not depend on
 * the sort. */
static int by_probability(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return (x->k > y->k) - (x->k < y->k);
}

/* result <- the ranking of probs (K), the decision with `threshold`;
 * order (K) is scratch. */
static qiao_status fill(const qiao_model *model, const qmod_head_config *h, const float *probs, size_t top,
                        float threshold, ranked *order, qiao_intent_result *r) {
    const size_t K = model->n_intents;
    r->ranking = malloc(top * sizeof *r->ranking);
    if (!r->ranking) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qiao_intent_classify: out of memory");
    for (size_t k = 0; k < K; k++) order[k] = (ranked){probs[k], k};
    qsort(order, K, sizeof *order, by_probability);
    for (size_t t = 0; t < top; t++) {
        r->ranking[t].intent = model->intents[order[t].k];
        r->ranking[t].confidence = order[t].p;
    }
    r->n_ranking = top;
    qmi_decision d;
    qmi_decide(h, probs, threshold, &d);
    r->intent = model->intents[d.best];
    r->confidence = d.confidence;
    r->margin = d.margin;
    r->out_of_scope = d.out_of_scope;
    return QIAO_OK;
}

QIAO_API qiao_status qiao_intent_classify_batch(qiao_session *session, const char *const *texts, size_t n,
                                                const qiao_intent_params *params, qiao_intent_result *out) {
    if (out && n) memset(out, 0, n * sizeof *out);
    if (!session || !texts || !out || n == 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_intent_classify: session, texts, out and n >= 1 are required");
    /* checked here, not by the tokenizer, so the message names the caller's
     * index and byte (the tokenizer sees a chunk, the prompt in front) */
    for (size_t i = 0; i < n; i++) {
        if (!texts[i]) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_intent_classify: text %zu is NULL", i);
        const size_t len = strlen(texts[i]), ok = qc_utf8_check(texts[i], len);
        if (ok != len)
            return qc_error(QIAO_ERR_FORMAT, "qiao_intent_classify: text %zu is not valid UTF-8 (byte %zu)", i, ok);
    }
    qiao_intent_params p;
    qiao_status st = read_params(params, &p);
    if (st != QIAO_OK) return st;
    const qmod_model *m = session->m;
    const int head = qmod_head_find(&m->cfg, QMI_HEAD);
    if (head < 0)
        return qc_error(QIAO_ERR_UNSUPPORTED, "model %s is not an intent classifier (it has no \"%s\" head)",
                        m->cfg.name, QMI_HEAD);
    const qmod_head_config *h = &m->cfg.heads[head];
    const size_t K = (size_t)h->mlp.classes, top = p.top_k > 0 && (size_t)p.top_k < K ? (size_t)p.top_k : K;
    const float threshold = p.threshold >= 0.0f ? p.threshold : h->threshold;
    if (!session->intent) {
        if (!(session->intent = calloc(1, sizeof *session->intent)))
            return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qiao_intent_classify: out of memory");
        st = qmod_head_work_init(session->intent, m, head, INTENT_CHUNK, false);
        if (st != QIAO_OK) {
            free(session->intent);
            session->intent = NULL;
            return st;
        }
    }
    const int ent = qmod_head_find(&m->cfg, QMI_ENT_HEAD);
    if (ent >= 0 && !session->entity && !(session->entity = calloc(1, sizeof *session->entity)))
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qiao_intent_classify: out of memory");
    qmi_found *found = NULL;
    float *probs = malloc(K * sizeof *probs);
    ranked *order = malloc(K * sizeof *order);
    qmod_batch b;
    memset(&b, 0, sizeof b);
    /* the one conversation every text of the call continues */
    qmi_context contexts[INTENT_CHUNK];
    for (size_t j = 0; j < INTENT_CHUNK; j++) contexts[j] = (qmi_context){p.context, p.n_context};
    if (!probs || !order) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "qiao_intent_classify: out of memory");
    for (size_t i = 0; i < n && st == QIAO_OK; i += INTENT_CHUNK) {
        const size_t k = n - i < INTENT_CHUNK ? n - i : INTENT_CHUNK;
        const float *emb, *logits;
        st = qmi_logits(&session->ex, m, &session->w[QMOD_TEXT], session->intent, texts + i, contexts, k, &b, &emb,
                        &logits);
        for (size_t j = 0; j < k && st == QIAO_OK; j++) {
            qmi_probs(h, logits + j * K, probs);
            st = fill(session->model, h, probs, top, threshold, order, &out[i + j]);
        }
        if (st != QIAO_OK || ent < 0) continue;
        const float *elog;
        qmod_token_seq ts;
        st = qmi_entity_logits(&session->ex, m, ent, &session->w[QMOD_TEXT], session->entity, &b, false, &elog, &ts);
        qmi_found *grown = st == QIAO_OK ? realloc(found, (size_t)ts.T * sizeof *found) : NULL;
        if (st == QIAO_OK && !grown) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "qiao_intent_classify: out of memory");
        if (grown) found = grown;
        for (size_t j = 0; j < k && st == QIAO_OK; j++) {
            const int nf = qmi_entity_row(m, ent, &b, ts.T, elog, (int64_t)j, texts[i + j], strlen(texts[i + j]), found);
            qiao_intent_result *r = &out[i + j];
            if (nf < 0 || (nf > 0 && !(r->entities = malloc((size_t)nf * sizeof *r->entities)))) {
                st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "qiao_intent_classify: out of memory");
                break;
            }
            for (int f = 0; f < nf; f++)
                r->entities[f] = (qiao_entity){.type = session->model->entity_types[found[f].type],
                                               .start = (size_t)found[f].start,
                                               .end = (size_t)found[f].end,
                                               .confidence = found[f].confidence};
            r->n_entities = (size_t)nf;
        }
    }
    qmod_batch_free(&b);
    free(probs), free(order), free(found);
    if (st != QIAO_OK)
        for (size_t i = 0; i < n; i++) qiao_intent_result_free(&out[i]);
    return st;
}

QIAO_API qiao_status qiao_intent_classify(qiao_session *session, const char *text, const qiao_intent_params *params,
                                          qiao_intent_result *out) {
    if (!text) {
        if (out) memset(out, 0, sizeof *out);
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_intent_classify: text is NULL");
    }
    return qiao_intent_classify_batch(session, &text, 1, params, out);
}
