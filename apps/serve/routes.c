/* apps/serve/routes.c - the API's routes on qiao's public API: intent
 * parsing (in Rasa's /model/parse shape), the bot's conversations and the
 * agent console's routes, embeddings, search, VQA and captions. Each route
 * checks its JSON body field by field and answers 400 naming the field. */
#define _POSIX_C_SOURCE 200809L

#include <libavutil/base64.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unicode/utf8.h>

#include "apps/chatbot/shop_actions.h"
#include "serve.h"

#define TEXT_MAX 4096       /* bytes of a message or a question */
#define SENDER_MAX 256      /* bytes of a conversation id (the bot's own limit) */
#define CONTEXT_MAX 16      /* turns of context a parse may pass */
#define LIST_MAX 200        /* conversations in the agent console's list */
#define SEARCH_TOP_MAX 100

size_t serve_utf8_check(const char *s, size_t len) {
    /* ICU's well-formedness (overlong forms, surrogates and code points past
     * U+10FFFF are errors), as the library's own check. */
    for (int32_t i = 0; (size_t)i < len;) {
        const int32_t at = i;
        UChar32 c;
        U8_NEXT(s, i, (int32_t)len, c);
        if (c < 0) return (size_t)at;
    }
    return len;
}

void serve_error(serve_answer *a, int status, const char *field, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON_Delete(a->body);
    a->status = status;
    a->body = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(a->body, "error");
    cJSON_AddNumberToObject(e, "status", status);
    cJSON_AddStringToObject(e, "message", msg);
    if (field) cJSON_AddStringToObject(e, "field", field);
}

void serve_fail(serve_answer *a, qiao_status st, const char *field) {
    const int status = st == QIAO_ERR_INVALID_ARGUMENT || st == QIAO_ERR_FORMAT ? 400
                       : st == QIAO_ERR_TOO_LARGE                             ? 413
                       : st == QIAO_ERR_NOT_FOUND                             ? 404
                       : st == QIAO_ERR_CONFLICT                              ? 409
                       : st == QIAO_ERR_UNSUPPORTED || st == QIAO_ERR_OUT_OF_MEMORY ? 503
                                                                                    : 500;
    serve_error(a, status, status == 400 || status == 413 ? field : NULL, "%s: %s", qiao_status_str(st),
                qiao_last_error());
}

/* ---- Reading the body ---------------------------------------------------------- */

/* A string field: NULL (with the 400 set) when absent and required, of
 * another type, empty, over max bytes or not UTF-8. */
static const char *field_str(const cJSON *body, const char *name, bool required, size_t max, serve_answer *a) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, name);
    if (!v || cJSON_IsNull(v)) {
        if (required) serve_error(a, 400, name, "the field '%s' is missing", name);
        return NULL;
    }
    if (!cJSON_IsString(v)) {
        serve_error(a, 400, name, "the field '%s' must be a string", name);
        return NULL;
    }
    const size_t n = strlen(v->valuestring);
    if (n == 0 || n > max) {
        serve_error(a, n ? 413 : 400, name, "the field '%s' has %zu bytes (1 to %zu)", name, n, max);
        return NULL;
    }
    if (serve_utf8_check(v->valuestring, n) != n) {
        serve_error(a, 400, name, "the field '%s' is not UTF-8 (byte %zu)", name, serve_utf8_check(v->valuestring, n));
        return NULL;
    }
    return v->valuestring;
}

/* An integer field in [lo, hi] (def when absent); false with the 400 set. */
static bool field_int(const cJSON *body, const char *name, int lo, int hi, int def, int *out, serve_answer *a) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, name);
    *out = def;
    if (!v || cJSON_IsNull(v)) return true;
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int)v->valuedouble || v->valuedouble < lo ||
        v->valuedouble > hi) {
        serve_error(a, 400, name, "the field '%s' must be an integer from %d to %d", name, lo, hi);
        return false;
    }
    *out = (int)v->valuedouble;
    return true;
}

/* A base64 field decoded (malloc'd): NULL when absent (then *present is
 * false) or bad (the 400 set). */
static uint8_t *field_b64(const cJSON *body, const char *name, size_t *size, bool *present, serve_answer *a) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, name);
    *size = 0, *present = v && !cJSON_IsNull(v);
    if (!*present) return NULL;
    if (!cJSON_IsString(v) || !v->valuestring[0]) {
        serve_error(a, 400, name, "the field '%s' must be a non-empty base64 string", name);
        return NULL;
    }
    const size_t n = strlen(v->valuestring);
    const size_t cap = AV_BASE64_DECODE_SIZE(n);
    uint8_t *out = n < (size_t)1 << 30 ? malloc(cap + 1) : NULL;
    if (!out) {
        serve_error(a, 413, name, "the field '%s' is too large", name);
        return NULL;
    }
    const int got = av_base64_decode(out, v->valuestring, (int)cap + 1);
    if (got <= 0) {
        free(out);
        serve_error(a, 400, name, "the field '%s' is not base64", name);
        return NULL;
    }
    *size = (size_t)got;
    return out;
}

static bool need_object(const cJSON *body, serve_answer *a) {
    if (cJSON_IsObject(body)) return true;
    serve_error(a, 400, NULL, "the body must be a JSON object");
    return false;
}

/* ---- Intents --------------------------------------------------------------------- */

static size_t chars_before(const char *s, size_t byte) {
    size_t n = 0;
    for (size_t i = 0; i < byte && s[i]; i++) n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

static void route_parse(serve_models *m, serve_worker *w, const cJSON *body, serve_answer *a) {
    if (!need_object(body, a)) return;
    if (!m->bot) {
        serve_error(a, 503, NULL, "no intent classifier is loaded (start the service with --bot)");
        return;
    }
    const char *text = field_str(body, "text", true, TEXT_MAX, a);
    if (!text) return;
    qiao_intent_params ip = qiao_intent_default_params();
    const char *ctx[CONTEXT_MAX];
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(body, "context");
    if (c && !cJSON_IsNull(c)) {
        if (!cJSON_IsArray(c) || cJSON_GetArraySize(c) > CONTEXT_MAX) {
            serve_error(a, 400, "context", "the field 'context' must be an array of at most %d strings",
                        CONTEXT_MAX);
            return;
        }
        for (const cJSON *t = c->child; t; t = t->next) {
            const size_t n = cJSON_IsString(t) ? strlen(t->valuestring) : 0;
            if (!cJSON_IsString(t) || n > TEXT_MAX || serve_utf8_check(t->valuestring, n) != n) {
                serve_error(a, 400, "context", "the field 'context' must hold UTF-8 strings of up to %d bytes",
                            TEXT_MAX);
                return;
            }
            ctx[ip.n_context++] = t->valuestring;
        }
        ip.context = ctx;
    }
    int top = 0;
    if (!field_int(body, "top_k", 0, 1000, 10, &top, a)) return;
    ip.top_k = top;
    qiao_intent_result r;
    const qiao_status st = qiao_intent_classify(w->nlu, text, &ip, &r);
    if (st != QIAO_OK) {
        serve_fail(a, st, "text");
        qiao_intent_result_free(&r);
        return;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "text", text);
    cJSON *in = cJSON_AddObjectToObject(j, "intent");
    cJSON_AddStringToObject(in, "name", r.intent);
    cJSON_AddNumberToObject(in, "confidence", r.confidence);
    cJSON *ents = cJSON_AddArrayToObject(j, "entities");
    for (size_t i = 0; i < r.n_entities; i++) {
        const qiao_entity *e = &r.entities[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "entity", e->type);
        /* Rasa counts characters (code points), not bytes. */
        cJSON_AddNumberToObject(o, "start", (double)chars_before(text, e->start));
        cJSON_AddNumberToObject(o, "end", (double)chars_before(text, e->end));
        char *v = strndup(text + e->start, e->end - e->start);
        cJSON_AddStringToObject(o, "value", v ? v : "");
        free(v);
        cJSON_AddNumberToObject(o, "confidence_entity", e->confidence);
        cJSON_AddStringToObject(o, "extractor", "qiao");
        cJSON_AddItemToArray(ents, o);
    }
    cJSON *rank = cJSON_AddArrayToObject(j, "intent_ranking");
    for (size_t i = 0; i < r.n_ranking; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", r.ranking[i].intent);
        cJSON_AddNumberToObject(o, "confidence", r.ranking[i].confidence);
        cJSON_AddItemToArray(rank, o);
    }
    cJSON_AddBoolToObject(j, "out_of_scope", r.out_of_scope);
    cJSON_AddNumberToObject(j, "margin", r.margin);
    qiao_intent_result_free(&r);
    a->status = 200, a->body = j;
}

/* ---- Conversations ------------------------------------------------------------------ */

static cJSON *reply_json(const char *sender, const qiao_bot_reply *r) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "sender_id", sender);
    cJSON *m = cJSON_AddArrayToObject(j, "messages");
    for (size_t i = 0; i < r->n_messages; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "recipient_id", sender);
        cJSON_AddStringToObject(o, "text", r->messages[i]);
        cJSON_AddItemToArray(m, o);
    }
    cJSON_AddStringToObject(j, "intent", r->intent ? r->intent : "");
    cJSON_AddNumberToObject(j, "confidence", r->confidence);
    cJSON_AddStringToObject(j, "action", r->action ? r->action : "");
    cJSON_AddStringToObject(j, "language", r->language ? r->language : "");
    cJSON_AddBoolToObject(j, "paused", r->paused);
    cJSON *s = cJSON_AddObjectToObject(j, "slots");
    for (size_t i = 0; i < r->n_slots; i++) cJSON_AddStringToObject(s, r->slots[i].name, r->slots[i].value);
    cJSON_AddNumberToObject(j, "said", (double)r->said);
    return j;
}

/* The conversation's state, parsed; NULL (404 or 500 set) when missing. */
static cJSON *load_state(serve_worker *w, const char *id, serve_answer *a) {
    char *text = NULL;
    const qiao_status st = qiao_bot_conversation(w->bot, id, &text);
    if (st != QIAO_OK) {
        serve_fail(a, st, "sender_id");
        return NULL;
    }
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        serve_error(a, 404, NULL, "no conversation '%s'", id);
        return NULL;
    }
    return j;
}

/* Two turns of one conversation at once in this process wait for each
 * other (a lock per conversation, striped); across processes sharing a
 * store the later save fails and changes nothing, so the turn is taken
 * again (a few times, after a short pause). */
#define CONFLICT_TRIES 8

static pthread_mutex_t *conv_lock(serve_models *m, const char *id) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) h = (h ^ *p) * 1099511628211ull;
    return &((pthread_mutex_t *)m->conv_locks)[h % SERVE_CONV_LOCKS];
}

static void conflict_pause(int attempt) {
    nanosleep(&(struct timespec){0, (long)(1000000L << (attempt < 5 ? attempt : 5))}, NULL);
}

static void route_chat(serve_models *m, serve_worker *w, const cJSON *body, serve_answer *a) {
    if (!need_object(body, a)) return;
    const char *sender = field_str(body, "sender_id", true, SENDER_MAX, a);
    const char *message = sender ? field_str(body, "message", true, TEXT_MAX, a) : NULL;
    if (!message) return;
    qiao_bot_reply r;
    qiao_status st = QIAO_ERR_CONFLICT;
    pthread_mutex_t *lock = conv_lock(m, sender);
    pthread_mutex_lock(lock);
    for (int i = 0; i < CONFLICT_TRIES && st == QIAO_ERR_CONFLICT; i++) {
        if (i) conflict_pause(i);
        st = qiao_bot_send(w->bot, sender, message, &r);
        if (st == QIAO_ERR_CONFLICT) qiao_bot_reply_free(&r);
    }
    if (st != QIAO_OK) serve_fail(a, st, "message");
    else a->status = 200, a->body = reply_json(sender, &r);
    pthread_mutex_unlock(lock);
    qiao_bot_reply_free(&r);
}

static void route_conv_list(serve_worker *w, const char *paused, serve_answer *a) {
    if (!paused || strcmp(paused, "1") != 0) {
        serve_error(a, 400, "paused", "only the paused conversations are listed: ask with ?paused=1");
        return;
    }
    char **ids = NULL;
    size_t n = 0;
    const qiao_status st = qiao_bot_store_paused(w->store, LIST_MAX, &ids, &n);
    if (st != QIAO_OK) {
        serve_fail(a, st, NULL);
        return;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(j, "conversations");
    for (size_t i = 0; i < n; i++) {
        serve_answer tmp = {0, NULL};
        cJSON *s = load_state(w, ids[i], &tmp);
        cJSON_Delete(tmp.body);
        if (!s) continue; /* gone since the list was read */
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "sender_id", ids[i]);
        const char *keys[] = {"language", "said", "updated", "queue"};
        for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, keys[k]);
            if (v) cJSON_AddItemToObject(o, keys[k], cJSON_Duplicate(v, 1));
        }
        const cJSON *tr = cJSON_GetObjectItemCaseSensitive(s, "transcript");
        const char *last = NULL;
        for (const cJSON *e = cJSON_IsArray(tr) ? tr->child : NULL; e; e = e->next) {
            const cJSON *from = cJSON_GetObjectItemCaseSensitive(e, "from"),
                        *text = cJSON_GetObjectItemCaseSensitive(e, "text");
            if (cJSON_IsString(from) && !strcmp(from->valuestring, "user") && cJSON_IsString(text))
                last = text->valuestring;
        }
        cJSON_AddStringToObject(o, "last", last ? last : "");
        cJSON_AddItemToArray(list, o);
        cJSON_Delete(s);
    }
    qiao_bot_ids_free(ids, n);
    a->status = 200, a->body = j;
}

static void route_conv(serve_route route, serve_worker *w, const char *id, const cJSON *body, serve_answer *a) {
    /* Called with the conversation's lock held. */
    const size_t n = strlen(id);
    if (!n || n > SENDER_MAX || serve_utf8_check(id, n) != n) {
        serve_error(a, 400, "sender_id", "a conversation id has 1 to %d bytes of UTF-8", SENDER_MAX);
        return;
    }
    if (route == R_CONV_GET) {
        cJSON *s = load_state(w, id, a);
        if (s) a->status = 200, a->body = s;
        return;
    }
    if (route == R_CONV_FORGET) {
        const qiao_status st = qiao_bot_forget(w->bot, id);
        if (st != QIAO_OK) {
            serve_fail(a, st, NULL);
            return;
        }
        a->status = 200, a->body = cJSON_CreateObject();
        cJSON_AddStringToObject(a->body, "sender_id", id);
        cJSON_AddBoolToObject(a->body, "forgotten", 1);
        return;
    }
    /* Handing over, replying and resuming need the conversation to exist. */
    cJSON *s = load_state(w, id, a);
    if (!s) return;
    const cJSON *said = cJSON_GetObjectItemCaseSensitive(s, "said");
    const double said_before = cJSON_IsNumber(said) ? said->valuedouble : 0;
    cJSON_Delete(s);
    qiao_status st = QIAO_ERR_CONFLICT;
    if (route == R_CONV_HANDOFF) {
        for (int i = 0; i < CONFLICT_TRIES && st == QIAO_ERR_CONFLICT; i++) {
            if (i) conflict_pause(i);
            st = qiao_bot_pause(w->bot, id);
        }
        if (st != QIAO_OK) {
            serve_fail(a, st, NULL);
            return;
        }
        a->status = 200, a->body = cJSON_CreateObject();
        cJSON_AddStringToObject(a->body, "sender_id", id);
        cJSON_AddBoolToObject(a->body, "paused", 1);
    } else if (route == R_CONV_REPLY) {
        if (!need_object(body, a)) return;
        const char *text = field_str(body, "text", true, TEXT_MAX, a);
        if (!text) return;
        const char *agent = field_str(body, "agent", false, 64, a);
        if (!agent && a->body) return;
        for (int i = 0; i < CONFLICT_TRIES && st == QIAO_ERR_CONFLICT; i++) {
            if (i) conflict_pause(i);
            st = qiao_bot_agent_say(w->bot, id, agent, text);
        }
        if (st != QIAO_OK) {
            serve_fail(a, st, "text");
            return;
        }
        a->status = 200, a->body = cJSON_CreateObject();
        cJSON_AddStringToObject(a->body, "sender_id", id);
        /* An agent's message is one line more than the state just read
         * (qiao_bot_agent_say gives no reply to count from): this process's
         * turns of the conversation wait for its lock, so none came
         * between. Another process sharing the store may slip a line in,
         * which the count then misses; a second read was no better (it
         * could count lines said after). */
        cJSON_AddNumberToObject(a->body, "said", said_before + 1);
    } else {
        qiao_bot_reply r;
        for (int i = 0; i < CONFLICT_TRIES && st == QIAO_ERR_CONFLICT; i++) {
            if (i) conflict_pause(i);
            st = qiao_bot_resume(w->bot, id, &r);
            if (st == QIAO_ERR_CONFLICT) qiao_bot_reply_free(&r);
        }
        if (st != QIAO_OK) serve_fail(a, st, NULL);
        else a->status = 200, a->body = reply_json(id, &r);
        qiao_bot_reply_free(&r);
    }
}

/* ---- Embeddings, search, VQA, captions ---------------------------------------------- */

/* The one input of an embed or search body: text, image or audio. Fills out
 * (dim floats) with session's embedding; false with the answer set. */
static bool embed_input(qiao_session *s, int64_t dim, const cJSON *body, float *out, serve_answer *a) {
    const char *text = field_str(body, "text", false, TEXT_MAX, a);
    if (a->body) return false;
    size_t ni = 0, na = 0;
    bool has_i = false, has_a = false;
    uint8_t *img = field_b64(body, "image", &ni, &has_i, a);
    uint8_t *aud = a->body ? NULL : field_b64(body, "audio", &na, &has_a, a);
    bool ok = !a->body;
    if (ok && (text != NULL) + has_i + has_a != 1) {
        serve_error(a, 400, NULL, "give exactly one of 'text', 'image' (base64) and 'audio' (base64)");
        ok = false;
    }
    if (ok) {
        const qiao_status st = text    ? qiao_embed_text(s, text, out, (size_t)dim)
                               : has_i ? qiao_embed_image_memory(s, img, ni, out, (size_t)dim)
                                       : qiao_embed_audio_memory(s, aud, na, out, (size_t)dim);
        if (st != QIAO_OK) serve_fail(a, st, text ? "text" : has_i ? "image" : "audio");
        ok = st == QIAO_OK;
    }
    free(img);
    free(aud);
    return ok;
}

static void route_embed(serve_models *m, serve_worker *w, const cJSON *body, serve_answer *a) {
    if (!need_object(body, a)) return;
    if (!m->embed) {
        serve_error(a, 503, NULL, "no embedding model is loaded (start the service with --embed-model)");
        return;
    }
    const int64_t dim = qiao_model_dim(m->embed);
    float *v = malloc((size_t)dim * sizeof *v);
    if (!v) {
        serve_error(a, 503, NULL, "out of memory");
        return;
    }
    if (embed_input(w->embed, dim, body, v, a)) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", qiao_model_name(m->embed));
        cJSON_AddNumberToObject(j, "dim", (double)dim);
        cJSON *arr = cJSON_AddArrayToObject(j, "embedding");
        for (int64_t i = 0; i < dim; i++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(v[i]));
        a->status = 200, a->body = j;
    }
    free(v);
}

static void route_search(serve_models *m, serve_worker *w, const cJSON *body, serve_answer *a) {
    if (!need_object(body, a)) return;
    if (!m->index) {
        serve_error(a, 503, NULL, "no search index is loaded (start the service with --index)");
        return;
    }
    int top = 0;
    if (!field_int(body, "top_k", 1, SEARCH_TOP_MAX, 10, &top, a)) return;
    const int64_t dim = qiao_index_dim(m->index);
    float *v = malloc((size_t)dim * sizeof *v);
    if (!v) {
        serve_error(a, 503, NULL, "out of memory");
        return;
    }
    if (embed_input(w->search, dim, body, v, a)) {
        qiao_index_query_params qp = qiao_index_query_default_params();
        qp.top_k = (size_t)top;
        qiao_index_hit *hits = NULL;
        size_t n = 0;
        pthread_mutex_lock(m->index_lock);
        const qiao_status st = qiao_index_query_vector(m->index, v, (size_t)dim, &qp, &hits, &n);
        pthread_mutex_unlock(m->index_lock);
        if (st != QIAO_OK) {
            serve_fail(a, st, NULL);
        } else {
            cJSON *j = cJSON_CreateObject();
            cJSON *arr = cJSON_AddArrayToObject(j, "hits");
            for (size_t i = 0; i < n; i++) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "key", hits[i].key);
                cJSON_AddStringToObject(o, "kind", hits[i].kind == QIAO_INDEX_IMAGE   ? "image"
                                                   : hits[i].kind == QIAO_INDEX_AUDIO ? "audio"
                                                                                      : "text");
                cJSON_AddNumberToObject(o, "score", hits[i].score);
                cJSON_AddItemToArray(arr, o);
            }
            a->status = 200, a->body = j;
        }
        qiao_index_hits_free(hits);
    }
    free(v);
}

static const char *field_lang(const cJSON *body, serve_answer *a) {
    const char *lang = field_str(body, "lang", false, 8, a);
    if (lang && strcmp(lang, "zh") != 0 && strcmp(lang, "en") != 0) {
        serve_error(a, 400, "lang", "the field 'lang' must be \"zh\" or \"en\"");
        return NULL;
    }
    return lang;
}

static cJSON *choice_json(const qiao_vqa_choice *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "key", c->key);
    cJSON_AddStringToObject(o, "text", c->text);
    cJSON_AddNumberToObject(o, "p", c->p);
    return o;
}

static void route_vqa(serve_models *m, serve_worker *w, const cJSON *body, serve_answer *a) {
    if (!need_object(body, a)) return;
    if (!m->vqa) {
        serve_error(a, 503, NULL, "no VQA model is loaded (start the service with --vqa-model)");
        return;
    }
    qiao_vqa_params vp = qiao_vqa_default_params();
    const char *question = field_str(body, "question", false, TEXT_MAX, a);
    if (a->body || !field_int(body, "top_k", 1, QIAO_VQA_MAX_TOP, 3, &vp.top_k, a)) return;
    vp.lang = field_lang(body, a);
    if (a->body) return;
    size_t ni = 0, na = 0;
    bool has_i = false, has_a = false;
    uint8_t *img_bytes = field_b64(body, "image", &ni, &has_i, a);
    uint8_t *aud_bytes = a->body ? NULL : field_b64(body, "audio", &na, &has_a, a);
    qiao_image *img = NULL;
    qiao_audio *aud = NULL;
    qiao_status st = QIAO_OK;
    if (!a->body && !has_i) serve_error(a, 400, "image", "the field 'image' (base64) is missing");
    else if (!a->body && !question && !has_a)
        serve_error(a, 400, "question", "give a 'question' (text) or 'audio' (a spoken question, base64)");
    if (!a->body && (st = qiao_image_decode_memory(img_bytes, ni, NULL, &img)) != QIAO_OK) serve_fail(a, st, "image");
    if (!a->body && has_a && (st = qiao_audio_decode_memory(aud_bytes, na, NULL, &aud)) != QIAO_OK)
        serve_fail(a, st, "audio");
    qiao_vqa_answer ans;
    if (!a->body && (st = qiao_vqa_ask(w->vqa, img, question, aud, &vp, &ans)) != QIAO_OK) serve_fail(a, st, NULL);
    if (!a->body) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "answer", ans.best.text);
        cJSON_AddStringToObject(j, "key", ans.best.key);
        cJSON_AddNumberToObject(j, "confidence", ans.best.p);
        cJSON_AddStringToObject(j, "language", ans.lang);
        cJSON *top = cJSON_AddArrayToObject(j, "top");
        for (int i = 0; i < ans.n_top; i++) cJSON_AddItemToArray(top, choice_json(&ans.top[i]));
        cJSON *wt = cJSON_AddObjectToObject(j, "weights");
        cJSON_AddNumberToObject(wt, "text", ans.w_text);
        cJSON_AddNumberToObject(wt, "image", ans.w_image);
        cJSON_AddNumberToObject(wt, "audio", ans.w_audio);
        a->status = 200, a->body = j;
    }
    qiao_image_free(img);
    qiao_audio_free(aud);
    free(img_bytes);
    free(aud_bytes);
}

static void route_caption(serve_models *m, serve_worker *w, const cJSON *body, serve_answer *a) {
    if (!need_object(body, a)) return;
    if (!m->caption) {
        serve_error(a, 503, NULL, "no captioning model is loaded (start the service with --caption-model)");
        return;
    }
    qiao_caption_params cp = qiao_caption_default_params();
    const char *lang = field_lang(body, a);
    int beam = 0;
    if (a->body || !field_int(body, "beam", 1, QIAO_CAPTION_MAX_BEAM, 1, &beam, a)) return;
    if (lang) cp.lang = lang;
    if (beam > 1) cp.strategy = QIAO_CAPTION_BEAM, cp.beam_size = beam;
    size_t ni = 0;
    bool has_i = false;
    uint8_t *bytes = field_b64(body, "image", &ni, &has_i, a);
    if (!a->body && !has_i) serve_error(a, 400, "image", "the field 'image' (base64) is missing");
    qiao_caption_result r;
    memset(&r, 0, sizeof r);
    qiao_status st;
    if (!a->body && (st = qiao_caption_image_memory(w->caption, bytes, ni, &cp, &r)) != QIAO_OK)
        serve_fail(a, st, "image");
    if (!a->body) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "caption", r.text);
        cJSON_AddStringToObject(j, "language", r.lang);
        cJSON_AddNumberToObject(j, "logprob", r.logprob);
        a->status = 200, a->body = j;
    }
    qiao_caption_result_free(&r);
    free(bytes);
}

void serve_route_api(serve_route route, serve_models *m, serve_worker *w, const char *id, const char *query_paused,
                     const cJSON *body, serve_answer *a) {
    switch (route) {
    case R_PARSE: route_parse(m, w, body, a); break;
    case R_CHAT:
    case R_CONV_LIST:
    case R_CONV_GET:
    case R_CONV_HANDOFF:
    case R_CONV_RESUME:
    case R_CONV_REPLY:
    case R_CONV_FORGET:
        if (!m->bot) serve_error(a, 503, NULL, "no bot is loaded (start the service with --bot)");
        else if (route == R_CHAT) route_chat(m, w, body, a);
        else if (route == R_CONV_LIST) route_conv_list(w, query_paused, a);
        else {
            pthread_mutex_t *lock = conv_lock(m, id);
            pthread_mutex_lock(lock);
            route_conv(route, w, id, body, a);
            pthread_mutex_unlock(lock);
        }
        break;
    case R_EMBED: route_embed(m, w, body, a); break;
    case R_SEARCH: route_search(m, w, body, a); break;
    case R_VQA: route_vqa(m, w, body, a); break;
    case R_CAPTION: route_caption(m, w, body, a); break;
    default: serve_error(a, 404, NULL, "no such route"); break;
    }
}

/* ---- Loading ------------------------------------------------------------------------ */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The sample shop's bot names its orders database in its app config. */
static bool is_shop_bot(const qiao_bot *bot) {
    cJSON *app = cJSON_Parse(qiao_bot_app_config(bot));
    const bool named = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(app, "orders_db"));
    cJSON_Delete(app);
    return named;
}

bool serve_models_load(const serve_opts *o, serve_models *m) {
    memset(m, 0, sizeof *m);
    const double t0 = now_s();
    qiao_status st = QIAO_OK;
    const char *what = "";
    if (o->bot) {
        qiao_bot_params bp = qiao_bot_default_params();
        bp.model_path = o->intent_model;
        what = o->bot;
        st = qiao_bot_load(o->bot, &bp, &m->bot);
        /* The sample shop's actions, for a bot that uses them (its app
         * config names the orders database). */
        if (st == QIAO_OK && is_shop_bot(m->bot)) {
            shop *sh = NULL;
            st = shop_open(m->bot, o->orders, &sh);
            m->shop = sh;
        }
    }
    if (st == QIAO_OK && o->embed_model) what = o->embed_model, st = qiao_model_load(o->embed_model, &m->embed);
    if (st == QIAO_OK && o->vqa_model) what = o->vqa_model, st = qiao_model_load(o->vqa_model, &m->vqa);
    if (st == QIAO_OK && o->vqa_model && !qiao_model_can_answer(m->vqa))
        st = QIAO_ERR_UNSUPPORTED, fprintf(stderr, "qiao serve: %s has no VQA head\n", o->vqa_model);
    if (st == QIAO_OK && o->caption_model)
        what = o->caption_model, st = qiao_model_load(o->caption_model, &m->caption);
    if (st == QIAO_OK && o->caption_model && !qiao_model_can_caption(m->caption))
        st = QIAO_ERR_UNSUPPORTED, fprintf(stderr, "qiao serve: %s has no captioning decoder\n", o->caption_model);
    if (st == QIAO_OK && o->index) what = o->index, st = qiao_index_open(o->index, NULL, NULL, &m->index);
    pthread_mutex_t *locks = st == QIAO_OK ? calloc(SERVE_CONV_LOCKS, sizeof *locks) : NULL;
    if (locks) {
        for (int i = 0; i < SERVE_CONV_LOCKS; i++) pthread_mutex_init(&locks[i], NULL);
        m->conv_locks = locks;
    } else if (st == QIAO_OK) {
        st = QIAO_ERR_OUT_OF_MEMORY;
    }
    if (st == QIAO_OK && o->index) {
        pthread_mutex_t *mu = malloc(sizeof *mu);
        if (!mu || pthread_mutex_init(mu, NULL) != 0) {
            free(mu);
            st = QIAO_ERR_OUT_OF_MEMORY;
        } else {
            m->index_lock = mu;
        }
    }
    if (st != QIAO_OK) {
        fprintf(stderr, "qiao serve: %s: %s: %s\n", what, qiao_status_str(st), qiao_last_error());
        serve_models_free(m);
        return false;
    }
    m->load_seconds = now_s() - t0;
    return true;
}

void serve_models_free(serve_models *m) {
    shop_close(m->shop);
    qiao_bot_free(m->bot);
    qiao_model_free(m->embed);
    qiao_model_free(m->vqa);
    qiao_model_free(m->caption);
    qiao_index_free(m->index);
    if (m->index_lock) pthread_mutex_destroy(m->index_lock);
    free(m->index_lock);
    for (int i = 0; m->conv_locks && i < SERVE_CONV_LOCKS; i++) pthread_mutex_destroy(&((pthread_mutex_t *)m->conv_locks)[i]);
    free(m->conv_locks);
    memset(m, 0, sizeof *m);
}

static qiao_status session_on(const qiao_model *model, const serve_opts *o, qiao_session **out) {
    *out = NULL;
    if (!model) return QIAO_OK;
    qiao_session_params sp = qiao_session_default_params();
    sp.n_threads = o->threads > 0 ? o->threads : 1;
    sp.precision = o->precision;
    return qiao_session_new(model, &sp, out);
}

qiao_status serve_worker_new(const serve_opts *o, serve_models *m, serve_worker *w) {
    memset(w, 0, sizeof *w);
    qiao_status st = QIAO_OK;
    if (m->bot) {
        st = session_on(qiao_bot_model(m->bot), o, &w->nlu);
        if (st == QIAO_OK)
            st = o->redis ? qiao_bot_store_open_redis(o->redis, o->redis_prefix, NULL, &w->store)
                          : qiao_bot_store_open_sqlite(o->store ? o->store : "qiao-serve.sqlite", NULL, &w->store);
        qiao_bot_session_params bp = qiao_bot_session_default_params();
        bp.n_threads = o->threads > 0 ? o->threads : 1;
        if (st == QIAO_OK) st = qiao_bot_session_new(m->bot, w->store, &bp, &w->bot);
    }
    if (st == QIAO_OK) st = session_on(m->embed, o, &w->embed);
    if (st == QIAO_OK && m->index) st = session_on(qiao_index_model(m->index), o, &w->search);
    if (st == QIAO_OK) st = session_on(m->vqa, o, &w->vqa);
    if (st == QIAO_OK) st = session_on(m->caption, o, &w->caption);
    if (st != QIAO_OK) serve_worker_free(w);
    return st;
}

void serve_worker_free(serve_worker *w) {
    qiao_bot_session_free(w->bot);
    qiao_bot_store_free(w->store);
    qiao_session_free(w->nlu);
    qiao_session_free(w->embed);
    qiao_session_free(w->search);
    qiao_session_free(w->vqa);
    qiao_session_free(w->caption);
    memset(w, 0, sizeof *w);
}
