/* The dialog manager (qiao_bot.h, sdk/bot) on a tiny classifier trained at
 * setup (the tiny random XLM-R with an intent head, 30 steps on the
 * e-commerce set, so its intents are the set's and its guesses are poor):
 * bad bot files refused naming the place, the SQLite store (persisting
 * across a reopen, a stale write refused, expiry, a custom store), pause,
 * queue and resume surviving a restart, bad arguments changing nothing,
 * and conversations on four threads kept apart. What the bot says to real
 * messages is tested by the scripted conversations (apps/chatbot/conversations)
 * on the real classifier. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "testutil.h"

#include "bot/bot.h"
#include "intent_fixture.h"
#include "qiao_bot.h"

#define ENCODER QT_XLMR_TINY

static char g_dir[] = "/tmp/qiao-bot-XXXXXX";
static char g_model[512];

/* A small valid bot; the bad files are this with one mistake. */
static const char *const k_bot =
    "version: 1\n"
    "name: test\n"
    "model: MODEL\n"
    "actions: [lookup]\n"
    "slots:\n"
    "  order_id: {entity: order_id, regex: '[0-9]{16}', keep: true, ask: ask_order, label: {zh: 订单号, en: order}}\n"
    "  reason: {free_text: true, ask: ask_reason}\n"
    "  when: {entity: date, date: true}\n"
    "  size: {enum: {S: [小号, small], M: [中号], L: [大号, large]}}\n"
    "  count: {number: {min: 1, max: 9}}\n"
    "forms:\n"
    "  return: {slots: [order_id, reason], confirm: confirm, action: lookup, done: done}\n"
    "intents:\n"
    "  return_request: {form: return}\n"
    "  greeting: {respond: hi, global: true}\n"
    "  human_agent: {handoff: true, global: true}\n"
    "responses:\n"
    "  rephrase: 再说一遍\n"
    "  handoff: 转人工\n"
    "  resume: 回来了\n"
    "  action_failed: 出错了\n"
    "  invalid_value: \"{value}不是{slot}（{problem}）\"\n"
    "  out_of_scope: 不会\n"
    "  unhandled: 不懂\n"
    "  ask_order: 订单号？\n"
    "  ask_reason: 原因？\n"
    "  confirm: \"确认{order_id}？\"\n"
    "  done: \"好了{order_id}\"\n"
    "  hi: {zh: [你好, 您好], en: hello}\n";

static int setup(void **state) {
    (void)state;
    if (!mkdtemp(g_dir)) return -1;
    snprintf(g_model, sizeof g_model, "%s/bot.safetensors", g_dir);
    return qt_train_tiny_classifier(QT_ECOMMERCE_TRAIN, g_model, 30, 0);
}

static int teardown(void **state) {
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* k_bot with `from` replaced by `to` (NULL: as it is), written to NAME. */
static void write_bot(const char *name, const char *from, const char *to, char *path, size_t cap) {
    char text[8192];
    snprintf(text, sizeof text, "%s", k_bot);
    char *m = strstr(text, "MODEL");
    char rest[8192];
    snprintf(rest, sizeof rest, "%s", m + 5);
    snprintf(m, sizeof text - (size_t)(m - text), "%s%s", g_model, rest);
    if (from) {
        char *at = strstr(text, from);
        if (!at) fail_msg("'%s' is not in the bot", from);
        snprintf(rest, sizeof rest, "%s", at + strlen(from));
        snprintf(at, sizeof text - (size_t)(at - text), "%s%s", to, rest);
    }
    snprintf(path, cap, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static qiao_bot *load_ok(void) {
    char path[600];
    write_bot("ok.yml", NULL, NULL, path, sizeof path);
    qiao_bot *bot = NULL;
    if (qiao_bot_load(path, NULL, &bot) != QIAO_OK) fail_msg("%s", qiao_last_error());
    return bot;
}

static void good_file(void **state) {
    (void)state;
    qiao_bot *bot = load_ok();
    assert_string_equal(qiao_bot_name(bot), "test");
    assert_string_equal(qiao_bot_dir(bot), g_dir);
    assert_string_equal(qiao_bot_app_config(bot), "{}");
    assert_true(qiao_model_can_classify(qiao_bot_model(bot)));
    /* The checks: a regex found in a message, a date normalized, an enum synonym. */
    const qbot_slot *order = &bot->slots[qbot_find_slot(bot, "order_id")];
    const qbot_slot *when = &bot->slots[qbot_find_slot(bot, "when")];
    const qbot_slot *size = &bot->slots[qbot_find_slot(bot, "size")];
    const qbot_slot *count = &bot->slots[qbot_find_slot(bot, "count")];
    char *v = NULL;
    const char *why = NULL;
    assert_int_equal(qbot_check_value(order, "订单号是2025112800007766。", true, 0, &v, &why), QIAO_OK);
    assert_string_equal(v, "2025112800007766");
    free(v);
    assert_int_equal(qbot_check_value(order, "12345", true, 0, &v, &why), QIAO_ERR_FORMAT);
    assert_string_equal(why, "wrong form");
    const double dec7 = 1796601600.0; /* 2026-12-07 00:00 UTC */
    static const char *const dates[][2] = {{"2025年11月20日", "2025-11-20"}, {"11月20号", "2026-11-20"},
                                           {"2024/2/29", "2024-02-29"},      {"明天", "2026-12-08"},
                                           {"yesterday", "2026-12-06"},      {"大前天", "2026-12-04"}};
    for (size_t i = 0; i < sizeof dates / sizeof *dates; i++) {
        assert_int_equal(qbot_check_value(when, dates[i][0], true, dec7, &v, &why), QIAO_OK);
        assert_string_equal(v, dates[i][1]);
        free(v);
    }
    assert_int_equal(qbot_check_value(when, "2025-02-30", true, dec7, &v, &why), QIAO_ERR_FORMAT);
    assert_int_equal(qbot_check_value(size, "要大号的", true, 0, &v, &why), QIAO_OK);
    assert_string_equal(v, "L");
    free(v);
    assert_int_equal(qbot_check_value(size, "Small", false, 0, &v, &why), QIAO_OK);
    assert_string_equal(v, "S");
    free(v);
    assert_int_equal(qbot_check_value(size, "XXL", true, 0, &v, &why), QIAO_ERR_FORMAT);
    assert_int_equal(qbot_check_value(count, "要3个", true, 0, &v, &why), QIAO_OK);
    assert_string_equal(v, "3");
    free(v);
    assert_int_equal(qbot_check_value(count, "12个", true, 0, &v, &why), QIAO_ERR_FORMAT);
    assert_string_equal(why, "out of range");
    assert_string_equal(qbot_language("我想退货"), "zh");
    assert_string_equal(qbot_language("refund please"), "en");
    assert_null(qbot_language("2025112800007766"));
    /* Actions: only those the file declares, only before the first session. */
    assert_int_equal(qiao_bot_register_action(bot, "nope", (qiao_bot_action_fn)1, NULL), QIAO_ERR_NOT_FOUND);
    qiao_bot_free(bot);

    /* The same bot as JSON. */
    char path[600];
    snprintf(path, sizeof path, "%s/ok.json", g_dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fprintf(f,
            "{\"name\": \"j\", \"model\": \"%s\", \"intents\": {\"greeting\": {\"respond\": \"hi\"}},"
            " \"responses\": {\"rephrase\": \"a\", \"handoff\": \"b\", \"resume\": \"c\", \"action_failed\": \"d\","
            " \"invalid_value\": \"e\", \"out_of_scope\": \"f\", \"unhandled\": \"g\", \"hi\": {\"en\": [\"hello\"]}}}",
            g_model);
    fclose(f);
    assert_int_equal(qiao_bot_load(path, NULL, &bot), QIAO_OK);
    qiao_bot_free(bot);
}

static void bad_files(void **state) {
    (void)state;
    static const struct {
        const char *from, *to, *message;
        qiao_status st;
    } bad[] = {
        {"  return_request: {form: return}", "  return_requset: {form: return}",
         "intents.return_requset: the classifier has no intent 'return_requset'", QIAO_ERR_FORMAT},
        {"\"好了{order_id}\"", "\"好了{order_no}\"", "responses.done[0]: names slot 'order_no', which the bot does not declare",
         QIAO_ERR_FORMAT},
        {"  return: {slots: [order_id, reason], confirm: confirm, action: lookup, done: done}",
         "  return: {slots: [order_id, reason], confirm: confirm, action: lookup, done: done, next: again}\n"
         "  again: {slots: [reason], done: done, next: return}",
         "forms.return.next: the forms lead back to 'return' (a cycle)", QIAO_ERR_FORMAT},
        {"slots: [order_id, reason]", "slots: [order_id, reson]", "forms.return.slots[1]: unknown slot 'reson'",
         QIAO_ERR_FORMAT},
        {"regex: '[0-9]{16}'", "regx: '[0-9]{16}'", "slots.order_id: unknown key 'regx'", QIAO_ERR_FORMAT},
        {"regex: '[0-9]{16}'", "regex: '[0-9'", "slots.order_id.regex:", QIAO_ERR_FORMAT},
        {"  rephrase: 再说一遍\n", "", "responses: 'rephrase' is missing", QIAO_ERR_FORMAT},
        {"entity: order_id", "entity: orderid", "slots.order_id.entity: the classifier tags no entity 'orderid'",
         QIAO_ERR_FORMAT},
        {"confirm: confirm,", "confirm: confrim,", "forms.return.confirm: unknown response 'confrim'", QIAO_ERR_FORMAT},
        {"action: lookup,", "action: lookupp,", "forms.return.action: action 'lookupp' is not in the file's actions",
         QIAO_ERR_FORMAT},
        {"reason: {free_text: true, ask: ask_reason}", "reason: {free_text: true}",
         "forms.return.slots[1]: slot 'reason' has no 'ask' response", QIAO_ERR_FORMAT},
        {"  greeting: {respond: hi, global: true}", "  greeting: {global: true}", "intents.greeting: says nothing",
         QIAO_ERR_FORMAT},
        {"  greeting: {respond: hi, global: true}", "  greeting: {respond: hi, handoff: true, stop: true}",
         "intents.greeting: one of form, handoff", QIAO_ERR_FORMAT},
        {"name: test\n", "name: test\nnmae: typo\n", "the bot: unknown key 'nmae'", QIAO_ERR_FORMAT},
        {"version: 1", "version: 2", "version: this qiao reads version 1", QIAO_ERR_UNSUPPORTED},
        {"slots:\n", "slots:\n  value: {free_text: true}\n", "slots.value: a reserved name", QIAO_ERR_FORMAT},
        {"name: test\n", "name: test\npolicy: {confidence: 2}\n", "policy.confidence: a number in [0, 1]",
         QIAO_ERR_FORMAT},
        {"hi: {zh: [你好, 您好], en: hello}", "hi: {zh: [你好, 您好], en: hello, fr: bonjour}",
         "responses.hi: unknown key 'fr'", QIAO_ERR_FORMAT},
        {"name: test\n", "name: test\n  bad indent: [\n", "line ", QIAO_ERR_FORMAT},
        {"model: ", "model: /no/such/", "model:", QIAO_ERR_IO},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char path[600], name[32];
        snprintf(name, sizeof name, "bad%zu.yml", i);
        write_bot(name, bad[i].from, bad[i].to, path, sizeof path);
        qiao_bot *bot = (qiao_bot *)1;
        const qiao_status st = qiao_bot_load(path, NULL, &bot);
        printf("%s: %s\n", name, qiao_last_error());
        assert_int_equal(st, bad[i].st);
        assert_null(bot);
        if (!strstr(qiao_last_error(), bad[i].message)) fail_msg("'%s' lacks '%s'", qiao_last_error(), bad[i].message);
        if (!strstr(qiao_last_error(), name)) fail_msg("'%s' does not name the file", qiao_last_error());
    }
    /* Invalid UTF-8, a JSON file that is not JSON, a missing file, a folder. */
    char path[600];
    snprintf(path, sizeof path, "%s/utf8.yml", g_dir);
    FILE *f = fopen(path, "wb");
    fputs("name: \xff\xfe\n", f);
    fclose(f);
    qiao_bot *bot = NULL;
    assert_int_equal(qiao_bot_load(path, NULL, &bot), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "invalid UTF-8"));
    snprintf(path, sizeof path, "%s/broken.json", g_dir);
    f = fopen(path, "wb");
    fputs("{\"name\": ", f);
    fclose(f);
    assert_int_equal(qiao_bot_load(path, NULL, &bot), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "not JSON"));
    snprintf(path, sizeof path, "%s/none.yml", g_dir);
    assert_int_equal(qiao_bot_load(path, NULL, &bot), QIAO_ERR_IO);
    assert_int_equal(qiao_bot_load(g_dir, NULL, &bot), QIAO_ERR_IO);
    assert_int_equal(qiao_bot_load(NULL, NULL, &bot), QIAO_ERR_INVALID_ARGUMENT);
    /* The model file is not a classifier: its encoder alone. */
    qiao_bot_params bp = qiao_bot_default_params();
    bp.model_path = ENCODER;
    write_bot("enc.yml", NULL, NULL, path, sizeof path);
    assert_int_equal(qiao_bot_load(path, &bp, &bot), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "not an intent classifier"));
}

static qiao_bot_store *open_store(const char *name, double ttl) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    qiao_bot_store_params sp = qiao_bot_store_default_params();
    if (ttl >= 0) sp.ttl_seconds = ttl;
    qiao_bot_store *s = NULL;
    if (qiao_bot_store_open_sqlite(path, &sp, &s) != QIAO_OK) fail_msg("%s", qiao_last_error());
    return s;
}

/* The store itself: versions, a stale write refused, expiry. */
static void sqlite_store(void **state) {
    (void)state;
    qiao_bot_store *a = open_store("s.sqlite", -1), *b = open_store("s.sqlite", -1);
    char *text = NULL;
    int64_t va = -1, vb = -1;
    assert_int_equal(qbot_store_load(a, "c1", &text, &va), QIAO_OK);
    assert_null(text);
    assert_int_equal(va, 0);
    assert_int_equal(qbot_store_save(a, "c1", "{\"n\":1}", 0, "[]"), QIAO_OK);
    /* A second "new" conversation of the same id is a conflict. */
    assert_int_equal(qbot_store_save(b, "c1", "{\"n\":9}", 0, "[]"), QIAO_ERR_CONFLICT);
    assert_int_equal(qbot_store_load(a, "c1", &text, &va), QIAO_OK);
    assert_string_equal(text, "{\"n\":1}");
    free(text);
    assert_int_equal(qbot_store_load(b, "c1", &text, &vb), QIAO_OK);
    free(text);
    assert_int_equal(va, 1);
    assert_int_equal(vb, 1);
    /* Both read version 1; b writes first, a's write is then stale. */
    assert_int_equal(qbot_store_save(b, "c1", "{\"n\":2}", vb, "[{\"event\":\"x\"}]"), QIAO_OK);
    assert_int_equal(qbot_store_save(a, "c1", "{\"n\":3}", va, "[]"), QIAO_ERR_CONFLICT);
    assert_non_null(strstr(qiao_last_error(), "changed by another turn"));
    assert_int_equal(qbot_store_load(a, "c1", &text, &va), QIAO_OK);
    assert_string_equal(text, "{\"n\":2}");
    assert_int_equal(va, 2);
    free(text);
    /* Another conversation is untouched by all this. */
    assert_int_equal(qbot_store_save(a, "c2", "{\"n\":7}", 0, NULL), QIAO_OK);
    assert_int_equal(qbot_store_remove(b, "c1"), QIAO_OK);
    assert_int_equal(qbot_store_load(a, "c1", &text, &va), QIAO_OK);
    assert_null(text);
    assert_int_equal(qbot_store_load(a, "c2", &text, &va), QIAO_OK);
    assert_string_equal(text, "{\"n\":7}");
    free(text);
    qiao_bot_store_free(a);
    qiao_bot_store_free(b);
    /* Expiry: a conversation idle longer than the TTL is gone. */
    qiao_bot_store *e = open_store("s.sqlite", 0.05);
    nanosleep(&(struct timespec){0, 120 * 1000 * 1000}, NULL);
    assert_int_equal(qbot_store_load(e, "c2", &text, &va), QIAO_OK);
    assert_null(text); /* expired: starts afresh */
    size_t removed = 0;
    assert_int_equal(qiao_bot_store_expire(e, &removed), QIAO_OK);
    assert_int_equal(removed, 1);
    qiao_bot_store_free(e);
    /* Not a database. */
    char path[600];
    snprintf(path, sizeof path, "%s/junk.sqlite", g_dir);
    FILE *f = fopen(path, "wb");
    fputs("this is not a database, not at all, and long enough to be read as a header of one", f);
    fclose(f);
    qiao_bot_store *j = NULL;
    assert_int_not_equal(qiao_bot_store_open_sqlite(path, NULL, &j), QIAO_OK);
    assert_null(j);
    assert_non_null(strstr(qiao_last_error(), "junk.sqlite"));
}

static qiao_bot_session *session_of(qiao_bot *bot, qiao_bot_store *store) {
    qiao_bot_session_params sp = qiao_bot_session_default_params();
    sp.n_threads = 1;
    qiao_bot_session *s = NULL;
    if (qiao_bot_session_new(bot, store, &sp, &s) != QIAO_OK) fail_msg("%s", qiao_last_error());
    return s;
}

static cJSON *state_of(qiao_bot_session *s, const char *conv) {
    char *json = NULL;
    assert_int_equal(qiao_bot_conversation(s, conv, &json), QIAO_OK);
    cJSON *j = cJSON_Parse(json);
    free(json);
    assert_non_null(j);
    return j;
}

/* Handoff survives a restart: paused, the messages queued, resumed after. */
static void pause_restart_resume(void **state) {
    (void)state;
    qiao_bot *bot = load_ok();
    qiao_bot_store *store = open_store("p.sqlite", -1);
    qiao_bot_session *s = session_of(bot, store);
    qiao_bot_reply r;
    assert_int_equal(qiao_bot_send(s, "u1", "你好", &r), QIAO_OK);
    assert_true(r.n_messages >= 1);
    assert_false(r.paused);
    assert_non_null(strstr(r.events, "\"event\":\"user\""));
    qiao_bot_reply_free(&r);
    assert_int_equal(qiao_bot_pause(s, "u1"), QIAO_OK);
    /* Bad input changes nothing. */
    assert_int_equal(qiao_bot_send(s, "u1", "\xc3\x28", &r), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(r.n_messages, 0);
    assert_int_equal(qiao_bot_send(s, "", "hi", &r), QIAO_ERR_INVALID_ARGUMENT);
    char long_id[400];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = 0;
    assert_int_equal(qiao_bot_send(s, long_id, "hi", &r), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_bot_send(NULL, "u1", "hi", &r), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_bot_send(s, "u1", "在吗？", &r), QIAO_OK);
    assert_int_equal(r.n_messages, 0);
    assert_true(r.paused);
    assert_string_equal(r.action, "queued");
    qiao_bot_reply_free(&r);
    /* A restart: everything closed, reopened on the same file. */
    qiao_bot_session_free(s);
    qiao_bot_store_free(store);
    qiao_bot_free(bot);
    bot = load_ok();
    store = open_store("p.sqlite", -1);
    s = session_of(bot, store);
    cJSON *j = state_of(s, "u1");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "paused")));
    const cJSON *q = cJSON_GetObjectItem(j, "queue");
    assert_int_equal(cJSON_GetArraySize(q), 1);
    assert_string_equal(cJSON_GetArrayItem(q, 0)->valuestring, "在吗？");
    assert_int_equal((int)cJSON_GetObjectItem(j, "turns")->valuedouble, 2);
    cJSON_Delete(j);
    assert_int_equal(qiao_bot_send(s, "u1", "人呢", &r), QIAO_OK);
    assert_int_equal(r.n_messages, 0);
    qiao_bot_reply_free(&r);
    assert_int_equal(qiao_bot_resume(s, "u1", &r), QIAO_OK);
    assert_false(r.paused);
    assert_string_equal(r.messages[0], "回来了");
    qiao_bot_reply_free(&r);
    j = state_of(s, "u1");
    assert_false(cJSON_IsTrue(cJSON_GetObjectItem(j, "paused")));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "queue")), 0);
    cJSON_Delete(j);
    /* Registering an action with a session open is refused. */
    assert_int_equal(qiao_bot_register_action(bot, "lookup", (qiao_bot_action_fn)1, NULL), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_bot_forget(s, "u1"), QIAO_OK);
    char *json = NULL;
    assert_int_equal(qiao_bot_conversation(s, "u1", &json), QIAO_OK);
    assert_string_equal(json, "null");
    free(json);
    qiao_bot_session_free(s);
    qiao_bot_store_free(store);
    qiao_bot_free(bot);
}

typedef struct job {
    qiao_bot *bot;
    int id;
    qiao_status st;
} job;

static qiao_status none_load(void *u, const char *c, char **state, int64_t *version) {
    (void)u, (void)c, (void)state, (void)version;
    return QIAO_OK;
}
static qiao_status none_save(void *u, const char *c, const char *state, int64_t version, const char *events) {
    (void)u, (void)c, (void)state, (void)version, (void)events;
    return QIAO_OK;
}
static qiao_status none_remove(void *u, const char *c) {
    (void)u, (void)c;
    return QIAO_OK;
}
static qiao_status none_expire(void *u, double t, size_t *removed) {
    (void)u, (void)t, (void)removed;
    return QIAO_OK;
}

/* A person's replies land in the transcript (numbered, in order, with the
 * customer's and the bot's lines), and the paused list follows the
 * conversations people have, newest first. */
static void agent_transcript(void **state) {
    (void)state;
    qiao_bot *bot = load_ok();
    qiao_bot_store *store = open_store("t.sqlite", -1);
    qiao_bot_session *s = session_of(bot, store);
    qiao_bot_reply r;
    char **ids = NULL;
    size_t n = 9;
    assert_int_equal(qiao_bot_store_paused(store, 10, &ids, &n), QIAO_OK);
    assert_int_equal(n, 0);
    assert_null(ids);
    assert_int_equal(qiao_bot_agent_say(s, "nobody", "小王", "您好"), QIAO_ERR_NOT_FOUND);
    const char *convs[] = {"c1", "c2", "c3"};
    size_t said_c1 = 0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(qiao_bot_send(s, convs[i], "你好", &r), QIAO_OK);
        /* A new conversation's lines: the customer's, then the bot's. */
        assert_true(r.n_messages > 0);
        assert_int_equal(r.said, 1 + r.n_messages);
        if (i == 0) said_c1 = r.said;
        qiao_bot_reply_free(&r);
    }
    assert_int_equal(qiao_bot_pause(s, "c2"), QIAO_OK);
    assert_int_equal(qiao_bot_pause(s, "c1"), QIAO_OK);
    assert_int_equal(qiao_bot_store_paused(store, 10, &ids, &n), QIAO_OK);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], "c1"); /* the most recently saved first */
    assert_string_equal(ids[1], "c2");
    qiao_bot_ids_free(ids, n);
    assert_int_equal(qiao_bot_store_paused(store, 1, &ids, &n), QIAO_OK);
    assert_int_equal(n, 1);
    qiao_bot_ids_free(ids, n);
    assert_int_equal(qiao_bot_send(s, "c1", "在吗？", &r), QIAO_OK);
    /* Paused: the customer's line counts (after the pause, which says nothing), the bot says nothing. */
    assert_int_equal(r.n_messages, 0);
    assert_int_equal(r.said, said_c1 + 1);
    qiao_bot_reply_free(&r);
    assert_int_equal(qiao_bot_agent_say(s, "c1", "小王", "您好，我是小王"), QIAO_OK);
    assert_int_equal(qiao_bot_agent_say(s, "c1", NULL, "请稍等"), QIAO_OK);
    /* Bad messages change nothing. */
    assert_int_equal(qiao_bot_agent_say(s, "c1", "小王", ""), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_bot_agent_say(s, "c1", "小王", "\xc3\x28"), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_bot_agent_say(s, "c1", "", "hi"), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_bot_agent_say(NULL, "c1", NULL, "hi"), QIAO_ERR_INVALID_ARGUMENT);
    cJSON *j = state_of(s, "c1");
    const cJSON *tr = cJSON_GetObjectItem(j, "transcript");
    const int len = cJSON_GetArraySize(tr);
    assert_true(len >= 5); /* 你好, the bot's greeting, 在吗？, two agent lines */
    for (int i = 0; i < len; i++)
        assert_int_equal((int)cJSON_GetObjectItem(cJSON_GetArrayItem(tr, i), "n")->valuedouble, i + 1);
    const cJSON *last = cJSON_GetArrayItem(tr, len - 1), *before = cJSON_GetArrayItem(tr, len - 2),
                *queued = cJSON_GetArrayItem(tr, len - 3);
    assert_string_equal(cJSON_GetObjectItem(last, "from")->valuestring, "agent");
    assert_string_equal(cJSON_GetObjectItem(last, "agent")->valuestring, "agent");
    assert_string_equal(cJSON_GetObjectItem(last, "text")->valuestring, "请稍等");
    assert_string_equal(cJSON_GetObjectItem(before, "agent")->valuestring, "小王");
    assert_string_equal(cJSON_GetObjectItem(queued, "from")->valuestring, "user");
    assert_string_equal(cJSON_GetObjectItem(queued, "text")->valuestring, "在吗？");
    assert_int_equal((int)cJSON_GetObjectItem(j, "said")->valuedouble, len);
    assert_int_equal((int)cJSON_GetObjectItem(j, "turns")->valuedouble, 2); /* the agent's lines are no turns */
    cJSON_Delete(j);
    /* Resumed: off the list, and the bot's lines follow the agent's (the
     * reply counts the agent's lines too, as the saved state does). */
    assert_int_equal(qiao_bot_resume(s, "c1", &r), QIAO_OK);
    assert_true(r.n_messages > 0);
    assert_int_equal(r.said, (size_t)len + r.n_messages);
    const size_t said_resumed = r.said;
    qiao_bot_reply_free(&r);
    assert_int_equal(qiao_bot_store_paused(store, 10, &ids, &n), QIAO_OK);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], "c2");
    qiao_bot_ids_free(ids, n);
    j = state_of(s, "c1");
    tr = cJSON_GetObjectItem(j, "transcript");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(tr, cJSON_GetArraySize(tr) - 1), "from")->valuestring,
                        "bot");
    assert_int_equal((size_t)cJSON_GetObjectItem(j, "said")->valuedouble, said_resumed);
    assert_int_equal((size_t)cJSON_GetObjectItem(cJSON_GetArrayItem(tr, cJSON_GetArraySize(tr) - 1), "n")->valuedouble,
                     said_resumed);
    cJSON_Delete(j);
    /* The transcript keeps its last 100 lines. */
    for (int i = 0; i < 60; i++) assert_int_equal(qiao_bot_agent_say(s, "c3", NULL, "x"), QIAO_OK);
    j = state_of(s, "c3");
    tr = cJSON_GetObjectItem(j, "transcript");
    assert_int_equal(cJSON_GetArraySize(tr), 60 + 2 > 100 ? 100 : 62);
    assert_int_equal((int)cJSON_GetObjectItem(j, "said")->valuedouble, 62);
    cJSON_Delete(j);
    for (int i = 0; i < 60; i++) assert_int_equal(qiao_bot_agent_say(s, "c3", NULL, "y"), QIAO_OK);
    j = state_of(s, "c3");
    tr = cJSON_GetObjectItem(j, "transcript");
    assert_int_equal(cJSON_GetArraySize(tr), 100);
    assert_int_equal((int)cJSON_GetObjectItem(cJSON_GetArrayItem(tr, 0), "n")->valuedouble, 23);
    cJSON_Delete(j);
    qiao_bot_session_free(s);
    qiao_bot_store_free(store);
    qiao_bot_free(bot);
    /* A store of the application's own written before `paused` existed
     * (its struct_size ends at close) cannot list. */
    qiao_bot_store_ops ops = {offsetof(qiao_bot_store_ops, paused), none_load, none_save, none_remove, none_expire,
                              NULL, NULL};
    assert_int_equal(qiao_bot_store_new(&ops, NULL, &store), QIAO_OK);
    assert_int_equal(qiao_bot_store_paused(store, 10, &ids, &n), QIAO_ERR_UNSUPPORTED);
    assert_int_equal(n, 0);
    qiao_bot_store_free(store);
}

static void *talk(void *arg) {
    job *j = arg;
    char path[600], conv[32];
    snprintf(path, sizeof path, "%s/threads.sqlite", g_dir);
    snprintf(conv, sizeof conv, "thread-%d", j->id);
    qiao_bot_store *store = NULL;
    qiao_bot_session *s = NULL;
    j->st = qiao_bot_store_open_sqlite(path, NULL, &store);
    qiao_bot_session_params sp = qiao_bot_session_default_params();
    sp.n_threads = 1;
    if (j->st == QIAO_OK) j->st = qiao_bot_session_new(j->bot, store, &sp, &s);
    for (int k = 0; k < 5 && j->st == QIAO_OK; k++) {
        char text[64];
        snprintf(text, sizeof text, "第%d位顾客的第%d句话", j->id, k);
        qiao_bot_reply r;
        j->st = qiao_bot_send(s, conv, text, &r);
        qiao_bot_reply_free(&r);
    }
    if (j->st != QIAO_OK) fprintf(stderr, "thread %d: %s\n", j->id, qiao_last_error());
    qiao_bot_session_free(s);
    qiao_bot_store_free(store);
    return NULL;
}

/* Four threads, each its own store connection and conversation, at once:
 * every turn lands, in its own conversation. */
static void threads(void **state) {
    (void)state;
    qiao_bot *bot = load_ok();
    pthread_t th[4];
    job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (job){bot, i, QIAO_OK};
        assert_int_equal(pthread_create(&th[i], NULL, talk, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) assert_int_equal(jobs[i].st, QIAO_OK);
    qiao_bot_store *store = open_store("threads.sqlite", -1);
    qiao_bot_session *s = session_of(bot, store);
    for (int i = 0; i < 4; i++) {
        char conv[32], want[64];
        snprintf(conv, sizeof conv, "thread-%d", i);
        cJSON *j = state_of(s, conv);
        assert_int_equal((int)cJSON_GetObjectItem(j, "turns")->valuedouble, 5);
        /* The turns the bot took, then those queued for a human (the tiny
         * classifier's poor guesses may have handed the conversation off). */
        const cJSON *h = cJSON_GetObjectItem(j, "history"), *q = cJSON_GetObjectItem(j, "queue");
        const int nh = cJSON_GetArraySize(h), nq = q ? cJSON_GetArraySize(q) : 0;
        assert_int_equal(nh + nq, 5);
        for (int k = 0; k < 5; k++) {
            snprintf(want, sizeof want, "第%d位顾客的第%d句话", i, k);
            const cJSON *said = k < nh ? cJSON_GetObjectItem(cJSON_GetArrayItem(h, k), "user") : cJSON_GetArrayItem(q, k - nh);
            assert_string_equal(said->valuestring, want);
        }
        cJSON_Delete(j);
    }
    qiao_bot_session_free(s);
    qiao_bot_store_free(store);
    qiao_bot_free(bot);
}

static const struct CMUnitTest tests[] = {cmocka_unit_test(good_file), cmocka_unit_test(bad_files),
                                          cmocka_unit_test(sqlite_store), cmocka_unit_test(pause_restart_resume),
                                          cmocka_unit_test(agent_transcript), cmocka_unit_test(threads)};

int main(int argc, char **argv) {
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, setup, teardown);
}
