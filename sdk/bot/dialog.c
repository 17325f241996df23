/* One turn of a conversation: the state is read from the store, the
 * message classified and read in the light of the last turns (a pending
 * confirmation makes yes and no likelier; slots carry over), the policy
 * decides (fill the slot asked for, interrupt, start a form, fall back,
 * hand off), and the new state and the turn's events are written back in
 * one transaction. Nothing is written when anything fails, so a turn either
 * happened or did not.
 *
 * The state is a JSON object (docs/chatbot.md lists its keys); keeping it
 * as a cJSON tree while the turn runs makes saving it one print. */
#define _POSIX_C_SOURCE 200809L

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bot/bot.h"
#include "core/core.h"

#define CONVERSATION_MAX 256
#define MESSAGES_MAX 16
#define TRANSCRIPT_MAX 100
#define AGENT_TEXT_MAX 65536


struct qiao_bot_session {
    qiao_bot *bot;
    qiao_bot_store *store;
    qiao_session *nlu;
    double (*now)(void *);
    void *now_user;
};

typedef struct turn {
    qiao_bot_session *s;
    const qiao_bot *bot;
    const char *conv;
    cJSON *state, *events;
    char *msgs[MESSAGES_MAX];
    size_t n_msgs;
    char action[256];
    const char *lang;
    int number; /* the turn's number in the conversation, from 1 */
    double now;
    bool existed;   /* the store had the conversation */
    qiao_status st; /* the first failure (out of memory); the turn then fails */
} turn;

struct qiao_bot_action_ctx {
    turn *t;
    int respond; /* a response the action chose, or -1 */
};

/* ---- The state --------------------------------------------------------------- */

static cJSON *obj(cJSON *o, const char *key) {
    cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsObject(it)) return it;
    cJSON_DeleteItemFromObjectCaseSensitive(o, key);
    return cJSON_AddObjectToObject(o, key);
}

static cJSON *arr(cJSON *o, const char *key) {
    cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsArray(it)) return it;
    cJSON_DeleteItemFromObjectCaseSensitive(o, key);
    return cJSON_AddArrayToObject(o, key);
}

static const char *str(const cJSON *o, const char *key) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

static double num(const cJSON *o, const char *key) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(it) ? it->valuedouble : 0;
}

static bool flag(const cJSON *o, const char *key) { return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, key)); }

static void put(turn *t, cJSON *o, const char *key, cJSON *v) {
    if (!v || !o) {
        cJSON_Delete(v);
        t->st = QIAO_ERR_OUT_OF_MEMORY;
        return;
    }
    if (cJSON_GetObjectItemCaseSensitive(o, key)) cJSON_ReplaceItemInObjectCaseSensitive(o, key, v);
    else cJSON_AddItemToObject(o, key, v);
}

static void put_str(turn *t, cJSON *o, const char *key, const char *v) {
    put(t, o, key, v ? cJSON_CreateString(v) : cJSON_CreateNull());
}

static void put_num(turn *t, cJSON *o, const char *key, double v) { put(t, o, key, cJSON_CreateNumber(v)); }
static void put_bool(turn *t, cJSON *o, const char *key, bool v) { put(t, o, key, cJSON_CreateBool(v)); }

/* Appends a line to the transcript (the last TRANSCRIPT_MAX kept): what a
 * chat client polls for an agent's replies and a console shows. */
static void transcribe(turn *t, const char *from, const char *text, const char *agent) {
    const double n = num(t->state, "said") + 1;
    cJSON *tr = arr(t->state, "transcript");
    cJSON *e = cJSON_CreateObject();
    if (!e || !tr) {
        cJSON_Delete(e);
        t->st = QIAO_ERR_OUT_OF_MEMORY;
        return;
    }
    put_num(t, e, "n", n);
    put_str(t, e, "from", from);
    put_str(t, e, "text", text);
    put_num(t, e, "time", t->now);
    if (agent) put_str(t, e, "agent", agent);
    cJSON_AddItemToArray(tr, e);
    while (cJSON_GetArraySize(tr) > TRANSCRIPT_MAX) cJSON_DeleteItemFromArray(tr, 0);
    put_num(t, t->state, "said", n);
}

static cJSON *event(turn *t, const char *kind) {
    cJSON *e = cJSON_CreateObject();
    if (!e || !cJSON_AddStringToObject(e, "event", kind)) {
        cJSON_Delete(e);
        t->st = QIAO_ERR_OUT_OF_MEMORY;
        return NULL;
    }
    cJSON_AddItemToArray(t->events, e);
    return e;
}

static const char *slot_value(const turn *t, int slot) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t->state, "slots"),
                                                      t->bot->slots[slot].name);
    return str(v, "value");
}

static void set_slot(turn *t, int slot, const char *value) {
    cJSON *slots = obj(t->state, "slots");
    const char *name = t->bot->slots[slot].name;
    if (!value) {
        if (cJSON_GetObjectItemCaseSensitive(slots, name)) {
            cJSON_DeleteItemFromObjectCaseSensitive(slots, name);
            cJSON *e = event(t, "slot");
            if (e) put_str(t, e, "name", name), put_str(t, e, "value", NULL);
        }
        return;
    }
    const char *old = slot_value(t, slot);
    const bool changed = !old || strcmp(old, value); /* before put() frees the old value */
    cJSON *v = cJSON_CreateObject();
    put_str(t, v, "value", value);
    put_num(t, v, "turn", t->number);
    put(t, slots, name, v);
    if (changed) {
        cJSON *e = event(t, "slot");
        if (e) put_str(t, e, "name", name), put_str(t, e, "value", value);
    }
}

static int state_form(const turn *t) {
    const char *f = str(t->state, "form");
    for (size_t i = 0; f && i < t->bot->n_forms; i++)
        if (!strcmp(t->bot->forms[i].name, f)) return (int)i;
    return -1;
}

static int state_asking(const turn *t) {
    const char *a = str(t->state, "asking");
    return a ? qbot_find_slot(t->bot, a) : -1;
}

/* ---- Saying things -------------------------------------------------------------- */

static uint64_t mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static uint64_t fnv(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* A template with its {slots} filled; `extra` gives {value}, {slot}, {problem}. */
static char *fill(turn *t, const char *tpl, const char *const extra[3]) {
    size_t cap = strlen(tpl) + 64, n = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    for (const char *p = tpl; *p;) {
        const char *v = NULL;
        size_t skip = 1, vlen = 1;
        if (*p == '{') {
            const char *e = strchr(p, '}');
            char name[128];
            const size_t m = e ? (size_t)(e - p - 1) : 0;
            if (e && m > 0 && m < sizeof name) {
                memcpy(name, p + 1, m);
                name[m] = 0;
                static const char *const names[3] = {"value", "slot", "problem"};
                bool special = false;
                for (int k = 0; k < 3; k++)
                    if (!strcmp(name, names[k])) v = extra ? extra[k] : NULL, special = true;
                if (!special) {
                    const int s = qbot_find_slot(t->bot, name);
                    v = s >= 0 ? slot_value(t, s) : NULL;
                }
                if (!v) v = "";
                skip = m + 2, vlen = strlen(v);
            }
        }
        if (!v) v = p;
        if (n + vlen + 1 > cap) {
            cap = 2 * (n + vlen + 1);
            char *g = realloc(out, cap);
            if (!g) {
                free(out);
                return NULL;
            }
            out = g;
        }
        memcpy(out + n, v, vlen);
        n += vlen, p += skip;
    }
    out[n] = 0;
    return out;
}

static void say_with(turn *t, int response, const char *const extra[3]) {
    if (response < 0 || t->n_msgs == MESSAGES_MAX) return;
    const qbot_response *r = &t->bot->responses[response];
    const bool zh = !strcmp(t->lang, "zh");
    char **v = zh ? r->zh : r->en;
    size_t n = zh ? r->n_zh : r->n_en;
    if (n == 0) v = zh ? r->en : r->zh, n = zh ? r->n_en : r->n_zh;
    /* A seeded choice: the same conversation, turn and message get the same variant. */
    const uint64_t h = mix(t->bot->seed ^ mix(fnv(t->conv) ^ mix((uint64_t)t->number * 64 + t->n_msgs)));
    char *text = fill(t, v[h % n], extra);
    if (!text) {
        t->st = QIAO_ERR_OUT_OF_MEMORY;
        return;
    }
    t->msgs[t->n_msgs++] = text;
    cJSON *e = event(t, "bot");
    if (e) put_str(t, e, "response", r->name), put_str(t, e, "text", text);
}

static void say(turn *t, int response) { say_with(t, response, NULL); }

/* Appends to what the turn did ("form:return/done action:create_return"). */
static void note(turn *t, const char *fmt, ...) QC_PRINTF(2, 3);
static void note(turn *t, const char *fmt, ...) {
    const size_t n = strlen(t->action);
    if (n + 2 >= sizeof t->action) return;
    if (n) t->action[n] = ' ', t->action[n + 1] = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->action + strlen(t->action), sizeof t->action - strlen(t->action), fmt, ap);
    va_end(ap);
}

/* ---- Actions ------------------------------------------------------------------------ */

/* Runs action a; says what it chose, else `fallback`. false when it failed. */
static bool run_action(turn *t, int a, int fallback) {
    const qbot_action *act = &t->bot->actions[a];
    qiao_bot_action_ctx ctx = {t, -1};
    qiao_status st = QIAO_ERR_UNSUPPORTED;
    char err[256] = "not registered";
    if (act->fn) {
        st = act->fn(&ctx, act->user_data);
        if (st != QIAO_OK) snprintf(err, sizeof err, "%s", qiao_last_error());
    }
    note(t, "action:%s", act->name);
    cJSON *e = event(t, "action");
    if (e) {
        put_str(t, e, "name", act->name);
        put_str(t, e, "status", qiao_status_str(st));
        if (st != QIAO_OK) put_str(t, e, "error", err);
    }
    if (st != QIAO_OK) {
        say(t, t->bot->sys[QBOT_R_ACTION_FAILED]);
        return false;
    }
    say(t, ctx.respond >= 0 ? ctx.respond : fallback);
    return true;
}

QIAO_API const char *qiao_bot_action_slot(const qiao_bot_action_ctx *ctx, const char *slot) {
    if (!ctx || !slot) return NULL;
    const int k = qbot_find_slot(ctx->t->bot, slot);
    return k >= 0 ? slot_value(ctx->t, k) : NULL;
}

QIAO_API qiao_status qiao_bot_action_set_slot(qiao_bot_action_ctx *ctx, const char *slot, const char *value) {
    if (!ctx || !slot) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_action_set_slot: a NULL argument");
    const int k = qbot_find_slot(ctx->t->bot, slot);
    if (k < 0) return qc_error(QIAO_ERR_NOT_FOUND, "qiao_bot_action_set_slot: the bot declares no slot '%s'", slot);
    if (value && !qc_utf8_valid(value, strlen(value)))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_action_set_slot: '%s': invalid UTF-8", slot);
    set_slot(ctx->t, k, value);
    return ctx->t->st;
}

QIAO_API qiao_status qiao_bot_action_respond(qiao_bot_action_ctx *ctx, const char *response) {
    if (!ctx || !response) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_action_respond: a NULL argument");
    const int r = qbot_find_response(ctx->t->bot, response);
    if (r < 0)
        return qc_error(QIAO_ERR_NOT_FOUND, "qiao_bot_action_respond: the bot has no response '%s'", response);
    ctx->respond = r;
    return QIAO_OK;
}

QIAO_API const char *qiao_bot_action_conversation(const qiao_bot_action_ctx *ctx) { return ctx ? ctx->t->conv : ""; }
QIAO_API const char *qiao_bot_action_language(const qiao_bot_action_ctx *ctx) { return ctx ? ctx->t->lang : ""; }

/* ---- Forms ----------------------------------------------------------------------------- */

static void form_event(turn *t, int f, const char *what) {
    cJSON *e = event(t, "form");
    if (e) put_str(t, e, "name", t->bot->forms[f].name), put_str(t, e, "state", what);
}

/* Ends the form: its slots that are not kept are cleared. */
static void form_end(turn *t, int f, const char *why) {
    const qbot_form *form = &t->bot->forms[f];
    for (size_t i = 0; i < form->n_slots; i++)
        if (!t->bot->slots[form->slots[i]].keep) set_slot(t, form->slots[i], NULL);
    put_str(t, t->state, "form", NULL);
    put_str(t, t->state, "asking", NULL);
    put_bool(t, t->state, "confirming", false);
    form_event(t, f, why);
}

static void form_start(turn *t, int f);

/* Asks for the next missing slot, or to confirm, or completes the form. */
static void form_next(turn *t) {
    const int f = state_form(t);
    if (f < 0) return;
    const qbot_form *form = &t->bot->forms[f];
    for (size_t i = 0; i < form->n_slots; i++) {
        const int s = form->slots[i];
        if (!slot_value(t, s)) {
            put_str(t, t->state, "asking", t->bot->slots[s].name);
            put_bool(t, t->state, "confirming", false);
            say(t, t->bot->slots[s].ask);
            note(t, "form:%s/ask:%s", form->name, t->bot->slots[s].name);
            return;
        }
    }
    put_str(t, t->state, "asking", NULL);
    if (form->confirm >= 0 && !flag(t->state, "confirming")) {
        put_bool(t, t->state, "confirming", true);
        say(t, form->confirm);
        note(t, "form:%s/confirm", form->name);
        return;
    }
    note(t, "form:%s/done", form->name);
    if (form->action >= 0) run_action(t, form->action, form->done);
    else say(t, form->done);
    form_end(t, f, "done");
    if (form->next >= 0) form_start(t, form->next);
}

static void form_start(turn *t, int f) {
    put_str(t, t->state, "form", t->bot->forms[f].name);
    put_bool(t, t->state, "confirming", false);
    form_event(t, f, "start");
    form_next(t);
}

/* Says the pending question again (after an interruption or a fallback). */
static void reask(turn *t) {
    const int f = state_form(t);
    if (f < 0 || flag(t->state, "paused")) return;
    if (flag(t->state, "confirming")) {
        say(t, t->bot->forms[f].confirm);
        return;
    }
    const int s = state_asking(t);
    if (s >= 0) say(t, t->bot->slots[s].ask);
}

/* ---- The policy -------------------------------------------------------------------------- */

static void pause_conversation(turn *t, int response) {
    put_bool(t, t->state, "paused", true);
    put_num(t, t->state, "failures", 0);
    event(t, "pause");
    say(t, response >= 0 ? response : t->bot->sys[QBOT_R_HANDOFF]);
    note(t, "handoff");
}

/* A turn the bot could not serve: not understood (say it again), or out of
 * scope (the polite refusal). Either counts; max_failures in a row hand
 * the conversation to a human. */
static void fallback(turn *t, bool out_of_scope, int response) {
    const int failures = (int)num(t->state, "failures") + 1;
    put_num(t, t->state, "failures", failures);
    if (failures >= t->bot->max_failures) {
        pause_conversation(t, -1);
        return;
    }
    say(t, response >= 0 ? response : t->bot->sys[out_of_scope ? QBOT_R_OOS : QBOT_R_REPHRASE]);
    note(t, "%s", out_of_scope ? "out_of_scope" : "fallback:rephrase");
    reask(t);
}

/* An intent outside a form's question, or interrupting one. */
static void dispatch(turn *t, const qbot_intent *it) {
    const qiao_bot *bot = t->bot;
    const int f = state_form(t);
    if (!it->handled) {
        say(t, bot->sys[QBOT_R_UNHANDLED]);
        note(t, "unhandled:%s", it->name);
        reask(t);
        return;
    }
    switch (it->kind) {
    case QBOT_FORM:
        if (f >= 0 && f != it->form) form_end(t, f, "replaced");
        if (f == it->form) {
            reask(t);
            return;
        }
        form_start(t, it->form);
        return;
    case QBOT_HANDOFF:
        pause_conversation(t, it->response);
        return;
    case QBOT_STOP:
        if (f >= 0) {
            form_end(t, f, "stopped");
            say(t, it->response >= 0 ? it->response : bot->sys[QBOT_R_STOPPED]);
            note(t, "stop:%s", bot->forms[f].name);
        } else {
            say(t, bot->sys[QBOT_R_NOTHING]);
            note(t, "nothing_to_do");
        }
        return;
    case QBOT_AFFIRM:
    case QBOT_DENY:
        say(t, it->response >= 0 ? it->response : bot->sys[QBOT_R_NOTHING]);
        note(t, "respond:%s", it->name);
        reask(t);
        return;
    case QBOT_OOS:
        say(t, it->response >= 0 ? it->response : bot->sys[QBOT_R_OOS]);
        note(t, "out_of_scope");
        reask(t);
        return;
    case QBOT_RESPOND:
        note(t, "respond:%s", it->name);
        if (it->action >= 0) run_action(t, it->action, it->response);
        else say(t, it->response);
        reask(t);
        return;
    }
}

/* The entities of the message that fill slots: the slot's checked value,
 * or, for the slot asked about, the reason it failed. */
static void fill_from_entities(turn *t, const char *text, const qiao_intent_result *r, int asked, bool *asked_filled,
                               const char **asked_why, char **asked_bad) {
    for (size_t i = 0; i < r->n_entities; i++) {
        const qiao_entity *e = &r->entities[i];
        int s = -1;
        for (size_t k = 0; k < t->bot->n_slots && s < 0; k++)
            if (t->bot->slots[k].entity && !strcmp(t->bot->slots[k].entity, e->type)) s = (int)k;
        if (s < 0) continue;
        char raw[512];
        const size_t n = e->end - e->start < sizeof raw - 1 ? e->end - e->start : sizeof raw - 1;
        memcpy(raw, text + e->start, n);
        raw[n] = 0;
        char *v = NULL;
        const char *why = NULL;
        if (qbot_check_value(&t->bot->slots[s], raw, true, t->now, &v, &why) == QIAO_OK) {
            set_slot(t, s, v);
            if (s == asked) *asked_filled = true;
        } else if (s == asked && why && !*asked_bad) {
            *asked_why = why;
            *asked_bad = strdup(raw);
        }
        free(v);
    }
}

static const char *problem_zh(const char *why) {
    static const char *const map[][2] = {{"empty", "是空的"},
                                         {"wrong form", "格式不对"},
                                         {"not a number", "不是数字"},
                                         {"out of range", "超出范围"},
                                         {"not a date", "不是日期"},
                                         {"not one of the choices", "不在可选范围内"}};
    for (size_t i = 0; why && i < sizeof map / sizeof *map; i++)
        if (!strcmp(map[i][0], why)) return map[i][1];
    return why;
}

static void invalid(turn *t, int s, const char *value, const char *why) {
    const qbot_slot *slot = &t->bot->slots[s];
    const bool zh = !strcmp(t->lang, "zh");
    const char *label = zh ? slot->label_zh : slot->label_en;
    const char *extra[3] = {value, label ? label : slot->name, zh ? problem_zh(why) : why};
    say_with(t, slot->invalid >= 0 ? slot->invalid : t->bot->sys[QBOT_R_INVALID], extra);
    note(t, "invalid:%s", slot->name);
    cJSON *e = event(t, "invalid");
    if (e) put_str(t, e, "slot", slot->name), put_str(t, e, "value", value), put_str(t, e, "reason", why);
    say(t, slot->ask);
}

static void remember(turn *t, const char *text, const char *intent) {
    cJSON *h = arr(t->state, "history");
    cJSON *e = cJSON_CreateObject();
    put_num(t, e, "turn", t->number);
    put_str(t, e, "user", text);
    put_str(t, e, "intent", intent);
    cJSON *bot = cJSON_CreateArray();
    for (size_t i = 0; bot && i < t->n_msgs; i++) cJSON_AddItemToArray(bot, cJSON_CreateString(t->msgs[i]));
    put(t, e, "bot", bot);
    put_str(t, e, "action", t->action);
    if (!e || !h) {
        cJSON_Delete(e);
        t->st = QIAO_ERR_OUT_OF_MEMORY;
        return;
    }
    cJSON_AddItemToArray(h, e);
    while (cJSON_GetArraySize(h) > t->bot->context_turns) cJSON_DeleteItemFromArray(h, 0);
}

/* Slots set more than context_turns turns ago, outside a form, are forgotten. */
static void forget_old_slots(turn *t) {
    if (state_form(t) >= 0) return;
    for (size_t s = 0; s < t->bot->n_slots; s++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj(t->state, "slots"), t->bot->slots[s].name);
        if (v && t->number - (int)num(v, "turn") > t->bot->context_turns) set_slot(t, (int)s, NULL);
    }
}

static qiao_status understand(turn *t, const char *text, qiao_intent_result *r, float *probs, int *top,
                              float *conf, float *margin) {
    const qiao_bot *bot = t->bot;
    qiao_intent_params ip = qiao_intent_default_params();
    /* A classifier trained with context reads the conversation before the
     * message: each remembered turn's customer text, then the bot's reply
     * (as CrossWOZ has both sides), oldest first; one without ignores it. */
    const char *turns[64];
    char *joined[32];
    size_t n_turns = 0, n_joined = 0;
    const size_t want = qiao_model_intent_context(bot->model);
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(t->state, "history");
    const int nh = cJSON_IsArray(h) ? cJSON_GetArraySize(h) : 0;
    for (int k = nh - (int)(want < 32 ? (want + 1) / 2 : 16); want > 0 && k < nh; k++) {
        if (k < 0) continue;
        const cJSON *e = cJSON_GetArrayItem(h, k);
        const char *u = str(e, "user");
        if (u) turns[n_turns++] = u;
        const cJSON *said = cJSON_GetObjectItemCaseSensitive(e, "bot");
        size_t len = 1;
        for (const cJSON *m = cJSON_IsArray(said) ? said->child : NULL; m; m = m->next)
            len += cJSON_IsString(m) ? strlen(m->valuestring) + 1 : 0;
        char *all = len > 1 ? calloc(len, 1) : NULL;
        for (const cJSON *m = all ? said->child : NULL; m; m = m->next)
            if (cJSON_IsString(m)) strcat(strcat(all, all[0] ? " " : ""), m->valuestring);
        if (all) joined[n_joined++] = all, turns[n_turns++] = all;
    }
    ip.context = n_turns ? turns : NULL;
    ip.n_context = n_turns;
    qiao_status st = qiao_intent_classify(t->s->nlu, text, &ip, r);
    for (size_t k = 0; k < n_joined; k++) free(joined[k]);
    if (st != QIAO_OK) return st;
    for (size_t i = 0; i < bot->n_intents; i++) probs[i] = 0;
    for (size_t k = 0; k < r->n_ranking; k++)
        for (size_t i = 0; i < bot->n_intents; i++)
            if (r->ranking[k].intent == bot->intents[i].name || !strcmp(r->ranking[k].intent, bot->intents[i].name))
                probs[i] = r->ranking[k].confidence;
    /* A pending confirmation makes yes and no likelier: a prior on the
     * classifier's probabilities, renormalized. */
    if (flag(t->state, "confirming") && (bot->affirm >= 0 || bot->deny >= 0)) {
        double sum = 0;
        if (bot->affirm >= 0) probs[bot->affirm] *= bot->confirm_boost;
        if (bot->deny >= 0) probs[bot->deny] *= bot->confirm_boost;
        for (size_t i = 0; i < bot->n_intents; i++) sum += probs[i];
        for (size_t i = 0; sum > 0 && i < bot->n_intents; i++) probs[i] = (float)(probs[i] / sum);
    }
    int best = 0, second = -1;
    for (size_t i = 1; i < bot->n_intents; i++)
        if (probs[i] > probs[best]) best = (int)i;
    for (size_t i = 0; i < bot->n_intents; i++)
        if ((int)i != best && (second < 0 || probs[i] > probs[second])) second = (int)i;
    *top = best, *conf = probs[best], *margin = probs[best] - (second >= 0 ? probs[second] : 0);
    return QIAO_OK;
}

static void cut(char *s, const char *what) {
    const size_t m = what ? strlen(what) : 0;
    for (char *at = m ? strstr(s, what) : NULL; at; at = strstr(at, what)) memmove(at, at + m, strlen(at + m) + 1);
}

/* Whether a message that gave the slot asked for also asks for something
 * else, which the classifier read confidently: what is left without the
 * value and the slot's own name is more than a bare answer's filler
 * ("订单号是2025...", "it's 2025...") — six Chinese characters or four
 * English words ("等等，先帮我查下物流，订单2025..."). The classifier reads
 * such fragments poorly, so their length decides, not a second reading. */
static bool asks_more(turn *t, const char *text, int slot, float conf) {
    const char *v = slot_value(t, slot);
    if (!v || !strstr(text, v) || conf < 0.8f) return false;
    char *rest = strdup(text);
    if (!rest) return false;
    cut(rest, v);
    cut(rest, t->bot->slots[slot].label_zh);
    cut(rest, t->bot->slots[slot].label_en);
    size_t han = 0, words = 0;
    bool in_word = false;
    for (const unsigned char *p = (const unsigned char *)rest; *p; p++) {
        han += *p >= 0xE0; /* the lead byte of a 3- or 4-byte character: CJK */
        const bool letter = *p < 0x80 && isalpha(*p);
        words += letter && !in_word;
        in_word = letter;
    }
    free(rest);
    return han >= 6 || words >= 4;
}

static void handle(turn *t, const char *text) {
    const qiao_bot *bot = t->bot;
    qiao_intent_result r;
    float *probs = calloc(bot->n_intents ? bot->n_intents : 1, sizeof *probs);
    if (!probs) {
        t->st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
        return;
    }
    int top = 0;
    float conf = 0, margin = 0;
    qiao_status st = understand(t, text, &r, probs, &top, &conf, &margin);
    if (st != QIAO_OK) {
        t->st = st;
        free(probs);
        qiao_intent_result_free(&r);
        return;
    }
    const qbot_intent *it = &bot->intents[top];
    cJSON *e = event(t, "user");
    if (e) {
        put_str(t, e, "text", text);
        put_str(t, e, "intent", it->name);
        put_num(t, e, "confidence", round(conf * 1e4) / 1e4);
        put_num(t, e, "margin", round(margin * 1e4) / 1e4);
        cJSON *ents = cJSON_CreateArray();
        for (size_t i = 0; ents && i < r.n_entities; i++) {
            cJSON *x = cJSON_CreateObject();
            put_str(t, x, "type", r.entities[i].type);
            put_num(t, x, "start", (double)r.entities[i].start);
            put_num(t, x, "end", (double)r.entities[i].end);
            cJSON_AddItemToArray(ents, x);
        }
        put(t, e, "entities", ents);
    }
    put_str(t, t->state, "intent", it->name);
    put_num(t, t->state, "confidence", conf);
    put_num(t, t->state, "margin", margin);

    const int f = state_form(t);
    const int asked = f >= 0 ? state_asking(t) : -1;
    const bool confirming = f >= 0 && flag(t->state, "confirming");
    const bool understood = conf >= bot->min_confidence && margin >= bot->min_margin;
    const float threshold = qiao_model_intent_threshold(bot->model);
    const bool in_scope = understood && it->kind != QBOT_OOS && !(threshold > 0 && conf < threshold);
    /* A free-text answer ("太小了穿不下", "个人") may read like a complaint
     * or a greeting: only stopping and the global handoff interrupt it (as
     * Rasa's from_text slots). */
    const bool free_answer = asked >= 0 && bot->slots[asked].free_text;
    const bool interrupts =
        in_scope && it->handled &&
        (free_answer ? it->kind == QBOT_STOP || (it->kind == QBOT_HANDOFF && it->global)
                     : it->global || it->kind == QBOT_HANDOFF);
    const bool switches = in_scope && it->handled && it->kind == QBOT_FORM && it->form != f;

    /* Every entity that fills a slot sets it, asked for or not. */
    bool asked_filled = false;
    const char *why = NULL;
    char *bad = NULL;
    const int before = cJSON_GetArraySize(t->events);
    fill_from_entities(t, text, &r, asked, &asked_filled, &why, &bad);
    const bool corrected = cJSON_GetArraySize(t->events) > before;

    if (confirming) {
        const qbot_form *form = &bot->forms[f];
        if (understood && top == bot->affirm) {
            put_num(t, t->state, "failures", 0);
            form_next(t);
        } else if (understood && top == bot->deny) {
            put_num(t, t->state, "failures", 0);
            form_end(t, f, "denied");
            say(t, bot->sys[QBOT_R_STOPPED]);
            note(t, "deny:%s", form->name);
        } else if (interrupts) {
            put_num(t, t->state, "failures", 0);
            dispatch(t, it);
        } else if (corrected) {
            /* A correction ("订单号写错了，是...") changed a slot: confirm
             * again, whatever else the words suggest. */
            put_num(t, t->state, "failures", 0);
            put_bool(t, t->state, "confirming", false);
            form_next(t);
        } else if (switches) {
            put_num(t, t->state, "failures", 0);
            dispatch(t, it);
        } else {
            fallback(t, false, -1);
        }
    } else if (asked >= 0) {
        const qbot_slot *slot = &bot->slots[asked];
        char *v = NULL;
        const char *vwhy = NULL;
        /* The slot asked for, when no entity gave it: found in the message
         * by its check (also when the tagger cut a wrong span: "12" of an
         * order number), or the whole message for a free text, which no
         * other request takes over ("the down jacket" is an item, however
         * much it reads like an exchange). */
        if (!asked_filled && !interrupts && (slot->free_text || slot->check != QBOT_CHECK_TEXT)) {
            if (qbot_check_value(slot, text, true, t->now, &v, &vwhy) == QIAO_OK) {
                set_slot(t, asked, v);
                asked_filled = true;
            } else if (slot->free_text || (!switches && (bad || strpbrk(text, "0123456789") || !understood))) {
                /* An answer that fails the check ("12345" for an order
                 * number) is refused with the reason, the message as the
                 * value; so is one the classifier cannot place, which can
                 * only be an answer. */
                why = vwhy;
                free(bad);
                bad = strdup(text);
            }
        }
        free(v);
        const bool other = switches && !slot->free_text;
        if (asked_filled && other && asks_more(t, text, asked, conf)) {
            /* "先帮我查下物流，订单2025..." answers the question and asks for
             * something else: the other request wins, with the value. */
            put_num(t, t->state, "failures", 0);
            dispatch(t, it);
        } else if (asked_filled) {
            put_num(t, t->state, "failures", 0);
            form_next(t);
        } else if (interrupts) {
            put_num(t, t->state, "failures", 0);
            dispatch(t, it);
        } else if (bad) {
            put_num(t, t->state, "failures", 0);
            invalid(t, asked, bad, why);
        } else if (other) {
            put_num(t, t->state, "failures", 0);
            dispatch(t, it);
        } else if (in_scope && it->handled && it->kind == QBOT_RESPOND) {
            put_num(t, t->state, "failures", 0);
            dispatch(t, it);
        } else {
            fallback(t, false, -1);
        }
    } else if (!understood) {
        fallback(t, false, -1);
    } else if (!in_scope) {
        fallback(t, true, it->kind == QBOT_OOS ? it->response : -1);
    } else {
        put_num(t, t->state, "failures", 0);
        dispatch(t, it);
    }
    free(bad);
    remember(t, text, it->name);
    free(probs);
    qiao_intent_result_free(&r);
}

/* ---- Sessions and turns ------------------------------------------------------------------- */

QIAO_API qiao_bot_session_params qiao_bot_session_default_params(void) {
    qiao_bot_session_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    return p;
}

static double system_now(void *unused) {
    (void)unused;
    return qbot_unix_now();
}

QIAO_API qiao_status qiao_bot_session_new(qiao_bot *bot, qiao_bot_store *store, const qiao_bot_session_params *params,
                                          qiao_bot_session **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_session_new: out is NULL");
    *out = NULL;
    if (!bot || !store) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_session_new: a NULL bot or store");
    qiao_bot_session_params p = qiao_bot_session_default_params();
    qiao_status st = qc_params_read(&p, sizeof p, params, sizeof(size_t), "qiao_bot_session_default_params");
    if (st != QIAO_OK) return st;
    qiao_bot_session *s = calloc(1, sizeof *s);
    if (!s) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    qiao_session_params sp = qiao_session_default_params();
    sp.n_threads = p.n_threads;
    st = qiao_session_new(bot->model, &sp, &s->nlu);
    if (st != QIAO_OK) {
        free(s);
        return st;
    }
    s->bot = bot, s->store = store;
    s->now = p.now ? p.now : system_now;
    s->now_user = p.now_user_data;
    atomic_fetch_add(&bot->sessions, 1);
    *out = s;
    return QIAO_OK;
}

QIAO_API void qiao_bot_session_free(qiao_bot_session *session) {
    if (!session) return;
    qiao_session_free(session->nlu);
    atomic_fetch_sub(&session->bot->sessions, 1);
    free(session);
}

QIAO_API void qiao_bot_reply_free(qiao_bot_reply *reply) {
    if (!reply) return;
    for (size_t i = 0; i < reply->n_messages; i++) free(reply->messages[i]);
    free(reply->messages);
    for (size_t i = 0; i < reply->n_slots; i++) free(reply->slots[i].value);
    free(reply->slots);
    free(reply->action);
    free(reply->events);
    memset(reply, 0, sizeof *reply);
}

static qiao_status check_conv(const char *fn, const char *conv) {
    if (!conv || !conv[0]) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: an empty conversation id", fn);
    const size_t n = strlen(conv);
    if (n > CONVERSATION_MAX)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: a conversation id of %zu bytes (at most %d)", fn, n,
                        CONVERSATION_MAX);
    if (!qc_utf8_valid(conv, n)) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: the conversation id is not UTF-8", fn);
    return QIAO_OK;
}

/* Reads the conversation (a fresh state when the store has none). */
static qiao_status begin(turn *t, qiao_bot_session *s, const char *conv, int64_t *version) {
    memset(t, 0, sizeof *t);
    t->s = s, t->bot = s->bot, t->conv = conv;
    t->now = s->now(s->now_user);
    char *text = NULL;
    qiao_status st = qbot_store_load(s->store, conv, &text, version);
    if (st != QIAO_OK) return st;
    t->existed = text != NULL;
    if (text) {
        t->state = cJSON_Parse(text);
        free(text);
        if (!cJSON_IsObject(t->state)) {
            cJSON_Delete(t->state);
            t->state = NULL;
            return qc_error(QIAO_ERR_FORMAT, "conversation '%s': the stored state is not a JSON object", conv);
        }
    } else {
        t->state = cJSON_CreateObject();
    }
    t->events = cJSON_CreateArray();
    if (!t->state || !t->events) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    const char *lang = str(t->state, "language");
    if (!lang) lang = t->bot->default_language;
    t->lang = !strcmp(lang, "en") ? "en" : "zh";
    t->number = (int)num(t->state, "turns") + 1;
    return QIAO_OK;
}

static void end(turn *t) {
    for (size_t i = 0; i < t->n_msgs; i++) free(t->msgs[i]);
    cJSON_Delete(t->state);
    cJSON_Delete(t->events);
}

/* Writes the turn and fills the reply. */
static qiao_status commit(turn *t, int64_t version, qiao_bot_reply *out) {
    for (size_t i = 0; i < t->n_msgs; i++) transcribe(t, "bot", t->msgs[i], NULL);
    put_num(t, t->state, "turns", t->number);
    put_str(t, t->state, "language", t->lang);
    put_num(t, t->state, "updated", t->now);
    if (t->st != QIAO_OK) return qc_error(t->st, "conversation '%s': out of memory", t->conv);
    char *state = cJSON_PrintUnformatted(t->state), *events = cJSON_PrintUnformatted(t->events);
    qiao_status st = state && events ? qbot_store_save(t->s->store, t->conv, state, version, events)
                                     : qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    free(state);
    if (st != QIAO_OK) {
        free(events);
        return st;
    }
    out->events = events;
    out->messages = calloc(t->n_msgs ? t->n_msgs : 1, sizeof *out->messages);
    out->action = strdup(t->action);
    size_t n_set = 0;
    for (size_t s = 0; s < t->bot->n_slots; s++) n_set += slot_value(t, (int)s) != NULL;
    out->slots = calloc(n_set ? n_set : 1, sizeof *out->slots);
    if (!out->messages || !out->action || !out->slots) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    for (size_t i = 0; i < t->n_msgs; i++) out->messages[i] = t->msgs[i], t->msgs[i] = NULL;
    out->n_messages = t->n_msgs;
    t->n_msgs = 0;
    for (size_t s = 0; s < t->bot->n_slots; s++) {
        const char *v = slot_value(t, (int)s);
        if (!v) continue;
        out->slots[out->n_slots].name = t->bot->slots[s].name;
        out->slots[out->n_slots].value = strdup(v);
        if (!out->slots[out->n_slots++].value) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    }
    out->paused = flag(t->state, "paused");
    /* The state comes from a store others may write: a count out of
     * size_t's range would make the cast undefined. */
    const double said = num(t->state, "said");
    out->said = said > 0 && said < 0x1p53 ? (size_t)said : 0;
    out->language = t->lang;
    const char *intent = str(t->state, "intent");
    out->intent = "";
    for (size_t i = 0; intent && i < t->bot->n_intents; i++)
        if (!strcmp(intent, t->bot->intents[i].name)) out->intent = t->bot->intents[i].name;
    out->confidence = (float)num(t->state, "confidence");
    out->margin = (float)num(t->state, "margin");
    return QIAO_OK;
}

QIAO_API qiao_status qiao_bot_send(qiao_bot_session *session, const char *conversation, const char *text,
                                   qiao_bot_reply *out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_send: out is NULL");
    memset(out, 0, sizeof *out);
    if (!session || !text) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_send: a NULL session or text");
    qiao_status st = check_conv("qiao_bot_send", conversation);
    if (st != QIAO_OK) return st;
    const size_t n = strlen(text);
    if (!qc_utf8_valid(text, n))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_send: the message is not UTF-8 (byte %zu)",
                        qc_utf8_check(text, n));
    turn t;
    int64_t version = 0;
    st = begin(&t, session, conversation, &version);
    if (st == QIAO_OK) {
        const char *lang = qbot_language(text);
        if (lang) t.lang = lang;
        cJSON *slots = obj(t.state, "slots");
        if (!slots) t.st = QIAO_ERR_OUT_OF_MEMORY;
        transcribe(&t, "user", text, NULL);
        if (flag(t.state, "paused")) {
            /* A human has the conversation: keep the message for them. */
            cJSON *q = arr(t.state, "queue");
            cJSON_AddItemToArray(q, cJSON_CreateString(text));
            cJSON *e = event(&t, "user");
            if (e) put_str(&t, e, "text", text), put_bool(&t, e, "queued", true);
            put_str(&t, t.state, "intent", NULL);
            put_num(&t, t.state, "confidence", 0), put_num(&t, t.state, "margin", 0);
            note(&t, "queued");
        } else {
            forget_old_slots(&t);
            handle(&t, text);
        }
        st = commit(&t, version, out);
    }
    end(&t);
    if (st != QIAO_OK) qiao_bot_reply_free(out);
    return st;
}

QIAO_API qiao_status qiao_bot_pause(qiao_bot_session *session, const char *conversation) {
    if (!session) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_pause: session is NULL");
    qiao_status st = check_conv("qiao_bot_pause", conversation);
    if (st != QIAO_OK) return st;
    turn t;
    int64_t version = 0;
    st = begin(&t, session, conversation, &version);
    if (st == QIAO_OK) {
        put_bool(&t, t.state, "paused", true);
        event(&t, "pause");
        t.number--; /* not a turn of the customer's */
        qiao_bot_reply r;
        memset(&r, 0, sizeof r);
        st = commit(&t, version, &r);
        qiao_bot_reply_free(&r);
    }
    end(&t);
    return st;
}

QIAO_API qiao_status qiao_bot_resume(qiao_bot_session *session, const char *conversation, qiao_bot_reply *out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_resume: out is NULL");
    memset(out, 0, sizeof *out);
    if (!session) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_resume: session is NULL");
    qiao_status st = check_conv("qiao_bot_resume", conversation);
    if (st != QIAO_OK) return st;
    turn t;
    int64_t version = 0;
    st = begin(&t, session, conversation, &version);
    if (st == QIAO_OK) {
        put_bool(&t, t.state, "paused", false);
        put_num(&t, t.state, "failures", 0);
        put(&t, t.state, "queue", cJSON_CreateArray());
        put_str(&t, t.state, "intent", NULL);
        put_num(&t, t.state, "confidence", 0), put_num(&t, t.state, "margin", 0);
        event(&t, "resume");
        say(&t, t.bot->sys[QBOT_R_RESUME]);
        note(&t, "resume");
        reask(&t);
        st = commit(&t, version, out);
    }
    end(&t);
    if (st != QIAO_OK) qiao_bot_reply_free(out);
    return st;
}

QIAO_API qiao_status qiao_bot_conversation(qiao_bot_session *session, const char *conversation, char **json) {
    if (!json) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_conversation: json is NULL");
    *json = NULL;
    if (!session) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_conversation: session is NULL");
    qiao_status st = check_conv("qiao_bot_conversation", conversation);
    if (st != QIAO_OK) return st;
    int64_t version = 0;
    st = qbot_store_load(session->store, conversation, json, &version);
    if (st == QIAO_OK && !*json) *json = strdup("null");
    if (st == QIAO_OK && !*json) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    return st;
}

QIAO_API qiao_status qiao_bot_agent_say(qiao_bot_session *session, const char *conversation, const char *agent,
                                        const char *text) {
    if (!session || !text) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_agent_say: a NULL session or text");
    qiao_status st = check_conv("qiao_bot_agent_say", conversation);
    if (st != QIAO_OK) return st;
    const char *who = agent ? agent : "agent";
    const size_t n = strlen(text), nw = strlen(who);
    if (!n || n > AGENT_TEXT_MAX)
        return qc_error(n ? QIAO_ERR_TOO_LARGE : QIAO_ERR_INVALID_ARGUMENT,
                        "qiao_bot_agent_say: the message has %zu bytes (1 to %d)", n, AGENT_TEXT_MAX);
    if (!qc_utf8_valid(text, n) || !nw || nw > CONVERSATION_MAX || !qc_utf8_valid(who, nw))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_agent_say: the message or the agent's name is empty, "
                                                   "too long or not UTF-8");
    turn t;
    int64_t version = 0;
    st = begin(&t, session, conversation, &version);
    if (st == QIAO_OK && !t.existed)
        st = qc_error(QIAO_ERR_NOT_FOUND, "qiao_bot_agent_say: no conversation '%s'", conversation);
    if (st == QIAO_OK) {
        transcribe(&t, "agent", text, who);
        cJSON *e = event(&t, "agent");
        if (e) put_str(&t, e, "agent", who), put_str(&t, e, "text", text);
        t.number--; /* not a turn of the customer's */
        qiao_bot_reply r;
        memset(&r, 0, sizeof r);
        st = commit(&t, version, &r);
        qiao_bot_reply_free(&r);
    }
    end(&t);
    return st;
}

QIAO_API qiao_status qiao_bot_forget(qiao_bot_session *session, const char *conversation) {
    if (!session) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_forget: session is NULL");
    const qiao_status st = check_conv("qiao_bot_forget", conversation);
    return st != QIAO_OK ? st : qbot_store_remove(session->store, conversation);
}
