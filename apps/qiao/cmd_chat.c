/* apps/qiao/cmd_chat.c - `qiao chat`: a conversation with a bot
 * (qiao_bot.h) in the terminal, or scripted conversations run as tests
 * (--test): each user line with the intent, action, slots and reply it
 * must give, a restart of everything in the middle, a human agent handing
 * the conversation back. Prints task success and turn latency. */
#define _POSIX_C_SOURCE 200809L

#include <cjson/cJSON.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "apps/chatbot/shop_actions.h"
#include "bot/bot.h"
#include "cli.h"
#include "core/core.h"
#include "qiao_bot.h"



static void usage(FILE *f) {
    fprintf(f, "usage: qiao chat --bot BOT.yml [--model M] [--store FILE] [--orders FILE] [--conversation ID]\n"
               "                 [--json] [--threads N]\n"
               "       qiao chat --bot BOT.yml --test STORIES.yml... [--model M] [--json] [--verbose] [--threads N]\n"
               "  Talk to the bot: each line of stdin is a message of conversation ID (default \"terminal\"),\n"
               "  kept in the SQLite store FILE (default qiao-chat.sqlite), so a later run goes on where this\n"
               "  one stopped. /pause and /resume hand the conversation to a human agent and back, /state\n"
               "  prints it, /forget drops it. --json prints each reply as one JSON line (messages, intent,\n"
               "  confidence, action, slots, paused, events).\n"
               "  --test runs scripted conversations (docs/chatbot.md) in a fresh store and a fresh copy of\n"
               "  the orders, and prints each failure, the task success and the turn latency; exit 1 when\n"
               "  any conversation fails.\n"
               "  The e-commerce sample's actions (apps/chatbot/shop_actions.c) are registered for a bot\n"
               "  that declares them; --orders overrides its database.\n");
}

typedef struct chat {
    const char *bot_path, *model, *store_path, *orders;
    int threads;
    qiao_bot *bot;
    shop *shop;
    qiao_bot_store *store;
    qiao_bot_session *session;
} chat;

static void chat_close(chat *c) {
    qiao_bot_session_free(c->session);
    qiao_bot_store_free(c->store);
    shop_close(c->shop);
    qiao_bot_free(c->bot);
    c->session = NULL, c->store = NULL, c->shop = NULL, c->bot = NULL;
}

static bool declares(const qiao_bot *bot, const char *action) {
    for (size_t i = 0; i < bot->n_actions; i++)
        if (!strcmp(bot->actions[i].name, action)) return true;
    return false;
}

static qiao_status chat_open(chat *c) {
    qiao_bot_params bp = qiao_bot_default_params();
    bp.model_path = c->model;
    qiao_status st = qiao_bot_load(c->bot_path, &bp, &c->bot);
    if (st == QIAO_OK && declares(c->bot, "lookup_order")) st = shop_open(c->bot, c->orders, &c->shop);
    if (st == QIAO_OK) st = qiao_bot_store_open_sqlite(c->store_path, NULL, &c->store);
    qiao_bot_session_params sp = qiao_bot_session_default_params();
    sp.n_threads = c->threads;
    if (st == QIAO_OK) st = qiao_bot_session_new(c->bot, c->store, &sp, &c->session);
    if (st != QIAO_OK) chat_close(c);
    return st;
}

static cJSON *reply_json(const qiao_bot_reply *r) {
    cJSON *j = cJSON_CreateObject();
    cJSON *m = cJSON_AddArrayToObject(j, "messages");
    for (size_t i = 0; i < r->n_messages; i++) cJSON_AddItemToArray(m, cJSON_CreateString(r->messages[i]));
    cJSON_AddStringToObject(j, "intent", r->intent ? r->intent : "");
    cJSON_AddNumberToObject(j, "confidence", r->confidence);
    cJSON_AddNumberToObject(j, "margin", r->margin);
    cJSON_AddStringToObject(j, "action", r->action ? r->action : "");
    cJSON_AddStringToObject(j, "language", r->language ? r->language : "");
    cJSON_AddBoolToObject(j, "paused", r->paused);
    cJSON *s = cJSON_AddObjectToObject(j, "slots");
    for (size_t i = 0; i < r->n_slots; i++) cJSON_AddStringToObject(s, r->slots[i].name, r->slots[i].value);
    cJSON *ev = r->events ? cJSON_Parse(r->events) : NULL;
    cJSON_AddItemToObject(j, "events", ev ? ev : cJSON_CreateArray());
    return j;
}

static void print_reply(const qiao_bot_reply *r, bool json) {
    if (json) {
        cJSON *j = reply_json(r);
        char *t = cJSON_PrintUnformatted(j);
        printf("%s\n", t ? t : "{}");
        free(t);
        cJSON_Delete(j);
    } else {
        for (size_t i = 0; i < r->n_messages; i++) printf("bot: %s\n", r->messages[i]);
        if (r->paused && r->n_messages == 0) printf("(a human agent has the conversation: /resume gives it back)\n");
    }
    fflush(stdout);
}

static int interactive(chat *c, const char *conv, bool json) {
    const bool tty = isatty(STDIN_FILENO);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    if (tty) fprintf(stderr, "%s (conversation '%s'; /quit to leave)\n", qiao_bot_name(c->bot), conv);
    for (;;) {
        if (tty) fputs("you: ", stderr);
        if ((n = getline(&line, &cap, stdin)) < 0) break;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if (n == 0) continue;
        qiao_bot_reply r;
        qiao_status st = QIAO_OK;
        memset(&r, 0, sizeof r);
        if (!strcmp(line, "/quit")) break;
        if (!strcmp(line, "/pause")) {
            st = qiao_bot_pause(c->session, conv);
            if (st == QIAO_OK && !json) printf("(paused: a human agent has the conversation)\n");
        } else if (!strcmp(line, "/resume")) {
            st = qiao_bot_resume(c->session, conv, &r);
            if (st == QIAO_OK) print_reply(&r, json);
        } else if (!strcmp(line, "/state")) {
            char *state = NULL;
            st = qiao_bot_conversation(c->session, conv, &state);
            if (st == QIAO_OK) printf("%s\n", state);
            free(state);
        } else if (!strcmp(line, "/forget")) {
            st = qiao_bot_forget(c->session, conv);
        } else {
            st = qiao_bot_send(c->session, conv, line, &r);
            if (st == QIAO_OK) print_reply(&r, json);
        }
        qiao_bot_reply_free(&r);
        if (st != QIAO_OK) {
            fprintf(stderr, "qiao: %s: %s\n", qiao_status_str(st), qiao_last_error());
            rc = 1;
        }
    }
    free(line);
    return rc;
}

/* ---- Scripted conversations ---------------------------------------------------------- */

typedef struct tally {
    int stories, passed, turns, failed_turns;
    double *lat; /* ms per turn */
    size_t n_lat, cap_lat;
    bool verbose, json;
} tally;

static bool matches(const char *pattern, const char *text) {
    regex_t re;
    if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0) return false;
    const bool ok = regexec(&re, text, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

static const char *slot_of(const qiao_bot_reply *r, const char *name) {
    for (size_t i = 0; i < r->n_slots; i++)
        if (!strcmp(r->slots[i].name, name)) return r->slots[i].value;
    return NULL;
}

/* Compares a reply with what the turn expects; prints each difference. */
static bool check_turn(const char *where, const cJSON *want, const qiao_bot_reply *r) {
    bool ok = true;
    size_t len = 1;
    for (size_t i = 0; i < r->n_messages; i++) len += strlen(r->messages[i]) + 1;
    char *all = calloc(len, 1);
    if (!all) return false;
    for (size_t i = 0; i < r->n_messages; i++) strcat(strcat(all, r->messages[i]), i + 1 < r->n_messages ? "\n" : "");
    const cJSON *v;
    char anchored[512];
    if ((v = cJSON_GetObjectItemCaseSensitive(want, "intent")) && cJSON_IsString(v) &&
        (snprintf(anchored, sizeof anchored, "^(%s)$", v->valuestring), !matches(anchored, r->intent))) {
        printf("  %s: intent %s (%.2f), expected %s\n", where, r->intent, (double)r->confidence, v->valuestring);
        ok = false;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(want, "action")) && cJSON_IsString(v) &&
        !matches(v->valuestring, r->action)) {
        printf("  %s: action '%s', expected /%s/\n", where, r->action, v->valuestring);
        ok = false;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(want, "reply")) && cJSON_IsString(v) && !matches(v->valuestring, all)) {
        printf("  %s: reply '%s', expected /%s/\n", where, all, v->valuestring);
        ok = false;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(want, "paused")) && cJSON_IsBool(v) && cJSON_IsTrue(v) != !!r->paused) {
        printf("  %s: paused %d, expected %d\n", where, r->paused, cJSON_IsTrue(v));
        ok = false;
    }
    const cJSON *slots = cJSON_GetObjectItemCaseSensitive(want, "slots");
    for (const cJSON *s = slots ? slots->child : NULL; s; s = s->next) {
        const char *have = slot_of(r, s->string);
        char num[64];
        const char *expect = cJSON_IsString(s) ? s->valuestring : NULL;
        if (cJSON_IsNumber(s)) snprintf(num, sizeof num, "%.15g", s->valuedouble), expect = num;
        if (expect ? !have || strcmp(have, expect) : have != NULL) {
            printf("  %s: slot %s = %s, expected %s\n", where, s->string, have ? have : "(unset)",
                   expect ? expect : "(unset)");
            ok = false;
        }
    }
    free(all);
    return ok;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static qiao_status run_story(chat *c, const char *file, const cJSON *story, int index, tally *t) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(story, "name");
    const cJSON *turns = cJSON_GetObjectItemCaseSensitive(story, "turns");
    if (!cJSON_IsString(name) || !cJSON_IsArray(turns))
        return qc_error(QIAO_ERR_FORMAT, "%s: conversation %d: needs a name and a list of turns", file, index + 1);
    char conv[300];
    snprintf(conv, sizeof conv, "test-%d-%s", index + 1, name->valuestring);
    bool ok = true;
    int k = 0;
    for (const cJSON *turn = turns->child; turn; turn = turn->next, k++) {
        char where[400];
        snprintf(where, sizeof where, "%s: '%s' turn %d", file, name->valuestring, k + 1);
        const cJSON *user = cJSON_GetObjectItemCaseSensitive(turn, "user");
        static const char *const known[] = {"user", "intent", "action", "slots", "reply", "paused", "restart", "resume"};
        for (const cJSON *k2 = cJSON_IsObject(turn) ? turn->child : NULL; k2; k2 = k2->next) {
            bool ok2 = false;
            for (size_t i = 0; i < sizeof known / sizeof *known; i++) ok2 |= !strcmp(k2->string, known[i]);
            if (!ok2) return qc_error(QIAO_ERR_FORMAT, "%s: unknown key '%s'", where, k2->string);
        }
        qiao_bot_reply r;
        memset(&r, 0, sizeof r);
        qiao_status st = QIAO_OK;
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(turn, "restart"))) {
            /* Everything closed and opened again: only the store remembers. */
            chat_close(c);
            st = chat_open(c);
            if (st != QIAO_OK) return st;
            continue;
        }
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(turn, "resume"))) {
            st = qiao_bot_resume(c->session, conv, &r);
        } else if (cJSON_IsString(user)) {
            const double t0 = now_ms();
            st = qiao_bot_send(c->session, conv, user->valuestring, &r);
            const double ms = now_ms() - t0;
            if (t->n_lat == t->cap_lat) {
                t->cap_lat = t->cap_lat ? 2 * t->cap_lat : 256;
                double *g = realloc(t->lat, t->cap_lat * sizeof *g);
                if (!g) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
                t->lat = g;
            }
            t->lat[t->n_lat++] = ms;
        } else {
            return qc_error(QIAO_ERR_FORMAT, "%s: a turn needs user, resume or restart", where);
        }
        if (st != QIAO_OK) {
            printf("  %s: %s: %s\n", where, qiao_status_str(st), qiao_last_error());
            ok = false;
            break;
        }
        t->turns++;
        const bool turn_ok = check_turn(where, turn, &r);
        if (!turn_ok) t->failed_turns++;
        if (t->verbose || !turn_ok) {
            if (cJSON_IsString(user)) printf("    user: %s\n", user->valuestring);
            for (size_t i = 0; i < r.n_messages; i++) printf("    bot:  %s\n", r.messages[i]);
            printf("    [%s %.2f | %s]\n", r.intent, (double)r.confidence, r.action);
        }
        ok &= turn_ok;
        qiao_bot_reply_free(&r);
    }
    t->stories++;
    t->passed += ok;
    printf("%s %s\n", ok ? "pass" : "FAIL", name->valuestring);
    return QIAO_OK;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int run_tests(chat *c, char **files, int n_files, tally *t) {
    for (int f = 0; f < n_files; f++) {
        uint8_t *data = NULL;
        size_t size = 0;
        cJSON *root = NULL;
        qiao_status st = qc_read_file(files[f], (size_t)16 << 20, &data, &size);
        if (st == QIAO_OK) st = qbot_parse_yaml(files[f], (const char *)data, size, false, &root);
        free(data);
        if (st == QIAO_OK && !cJSON_IsArray(root))
            st = qc_error(QIAO_ERR_FORMAT, "%s: a list of conversations", files[f]);
        int i = 0;
        for (const cJSON *s = root ? root->child : NULL; s && st == QIAO_OK; s = s->next, i++)
            st = run_story(c, files[f], s, i, t);
        cJSON_Delete(root);
        if (st != QIAO_OK) return cli_fail(st);
    }
    qsort(t->lat, t->n_lat, sizeof *t->lat, cmp_double);
    const double p50 = t->n_lat ? t->lat[t->n_lat / 2] : 0;
    const double p99 = t->n_lat ? t->lat[(size_t)((double)(t->n_lat - 1) * 0.99)] : 0;
    if (t->json) {
        printf("{\"conversations\": %d, \"passed\": %d, \"task_success\": %.4f, \"turns\": %d, \"failed_turns\": %d, "
               "\"latency_ms_p50\": %.2f, \"latency_ms_p99\": %.2f}\n",
               t->stories, t->passed, t->stories ? (double)t->passed / t->stories : 0.0, t->turns, t->failed_turns,
               p50, p99);
    } else {
        printf("\n%d/%d conversations passed (task success %.1f %%), %d/%d turns right; turn latency p50 %.1f ms, "
               "p99 %.1f ms (%zu turns, store included)\n",
               t->passed, t->stories, t->stories ? 100.0 * t->passed / t->stories : 0.0, t->turns - t->failed_turns,
               t->turns, p50, p99, t->n_lat);
    }
    return t->passed == t->stories ? 0 : 1;
}

int cmd_chat(int argc, char **argv) {
    chat c;
    memset(&c, 0, sizeof c);
    const char *conv = "terminal";
    bool json = false, verbose = false;
    char **tests = NULL;
    int n_tests = 0;
    c.store_path = "qiao-chat.sqlite";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const bool has = i + 1 < argc;
        if (!strcmp(a, "--bot") && has) c.bot_path = argv[++i];
        else if (!strcmp(a, "--model") && has) c.model = argv[++i];
        else if (!strcmp(a, "--store") && has) c.store_path = argv[++i];
        else if (!strcmp(a, "--orders") && has) c.orders = argv[++i];
        else if (!strcmp(a, "--conversation") && has) conv = argv[++i];
        else if (!strcmp(a, "--threads") && has) {
            int64_t n;
            if (!cli_int_arg("chat", "--threads", argv[++i], 0, 1024, &n)) return 2;
            c.threads = (int)n;
        } else if (!strcmp(a, "--json")) json = true;
        else if (!strcmp(a, "--verbose")) verbose = true;
        else if (!strcmp(a, "--test")) {
            tests = argv + i + 1;
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2)) i++, n_tests++;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "qiao chat: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!c.bot_path) {
        usage(stderr);
        return 2;
    }
    char dir[] = "/tmp/qiao-chat-XXXXXX";
    char store[64], orders[64];
    if (n_tests > 0) {
        /* A fresh store and a fresh copy of the sample orders for each run. */
        if (!mkdtemp(dir)) {
            perror("qiao chat: mkdtemp");
            return 1;
        }
        snprintf(store, sizeof store, "%s/store.sqlite", dir);
        snprintf(orders, sizeof orders, "%s/orders.sqlite", dir);
        c.store_path = store;
        if (!c.orders) c.orders = orders;
    }
    qiao_status st = chat_open(&c);
    if (st != QIAO_OK) return cli_fail(st);
    int rc;
    if (n_tests > 0) {
        tally t;
        memset(&t, 0, sizeof t);
        t.verbose = verbose, t.json = json;
        rc = run_tests(&c, tests, n_tests, &t);
        free(t.lat);
    } else {
        rc = interactive(&c, conv, json);
    }
    chat_close(&c);
    if (n_tests > 0) {
        const char *names[] = {"store.sqlite", "store.sqlite-wal", "store.sqlite-shm", "orders.sqlite",
                               "orders.sqlite-wal", "orders.sqlite-shm", "orders.sqlite-journal"};
        for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
            char p[128];
            snprintf(p, sizeof p, "%s/%s", dir, names[i]);
            remove(p);
        }
        rmdir(dir);
    }
    return rc;
}
