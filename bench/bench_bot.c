/* bench/bench_bot.c - a chatbot turn's latency (issue 19): the scripted
 * conversations' customer lines replayed, each conversation in its own id,
 * timed turn by turn at p50 and p99 through qiao_bot_send with
 *   sqlite      the SQLite tracker store on disk (WAL, a commit per turn);
 *   memory      an in-memory store of the application's own (qiao_bot_store_ops);
 * beside the floor every turn pays, the classifier alone
 *   classify    qiao_intent_classify on the same lines;
 * so the rows' differences are the dialog manager and the store.
 *
 *   build/bin/bench_bot --bot apps/chatbot/ecommerce.yml --rounds 5 \
 *       apps/chatbot/conversations/zh.yml apps/chatbot/conversations/en.yml
 *
 * Figures: docs/benchmarks.md ("Issue 19"). */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "apps/chatbot/shop_actions.h"
#include "bench_util.h"
#include "bot/bot.h"
#include "core/core.h"
#include "qiao_bot.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* ---- an in-memory store ---------------------------------------------------------- */

typedef struct mem_conv {
    char *id, *state;
    int64_t version;
} mem_conv;

typedef struct mem_store {
    mem_conv *c;
    size_t n, cap;
} mem_store;

static mem_conv *mem_find(mem_store *m, const char *id) {
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->c[i].id, id)) return &m->c[i];
    return NULL;
}

static qiao_status mem_load(void *user, const char *conv, char **state, int64_t *version) {
    mem_conv *c = mem_find(user, conv);
    if (!c) return QIAO_OK;
    *state = strdup(c->state);
    *version = c->version;
    return *state ? QIAO_OK : QIAO_ERR_OUT_OF_MEMORY;
}

static qiao_status mem_save(void *user, const char *conv, const char *state, int64_t version, const char *events) {
    (void)events;
    mem_store *m = user;
    mem_conv *c = mem_find(m, conv);
    if ((c ? c->version : 0) != version) return QIAO_ERR_CONFLICT;
    if (!c) {
        if (m->n == m->cap) {
            m->cap = m->cap ? 2 * m->cap : 64;
            mem_conv *g = realloc(m->c, m->cap * sizeof *g);
            if (!g) return QIAO_ERR_OUT_OF_MEMORY;
            m->c = g;
        }
        c = &m->c[m->n++];
        c->id = strdup(conv), c->state = NULL, c->version = 0;
    }
    free(c->state);
    c->state = strdup(state);
    c->version = version + 1;
    return c->id && c->state ? QIAO_OK : QIAO_ERR_OUT_OF_MEMORY;
}

static qiao_status mem_remove(void *user, const char *conv) {
    mem_conv *c = mem_find(user, conv);
    if (c) c->version = -1; /* a tombstone is enough for a benchmark */
    return QIAO_OK;
}

static qiao_status mem_expire(void *user, double before, size_t *removed) {
    (void)user, (void)before;
    if (removed) *removed = 0;
    return QIAO_OK;
}

static void mem_close(void *user) {
    mem_store *m = user;
    for (size_t i = 0; i < m->n; i++) free(m->c[i].id), free(m->c[i].state);
    free(m->c);
    free(m);
}

/* ---- the conversations -------------------------------------------------------------- */

typedef struct script {
    char **lines; /* per line: the customer's text, NULL between conversations */
    size_t n;
} script;

static void add(script *s, const char *t) {
    s->lines = realloc(s->lines, (s->n + 1) * sizeof *s->lines);
    s->lines[s->n++] = t ? strdup(t) : NULL;
}

static int read_script(const char *path, script *s) {
    uint8_t *data = NULL;
    size_t size = 0;
    cJSON *root = NULL;
    if (qc_read_file(path, (size_t)16 << 20, &data, &size) != QIAO_OK ||
        qbot_parse_yaml(path, (const char *)data, size, false, &root) != QIAO_OK) {
        fprintf(stderr, "bench_bot: %s\n", qiao_last_error());
        free(data);
        return -1;
    }
    free(data);
    for (const cJSON *c = root->child; c; c = c->next) {
        const cJSON *turns = cJSON_GetObjectItem(c, "turns");
        for (const cJSON *t = turns ? turns->child : NULL; t; t = t->next) {
            const cJSON *u = cJSON_GetObjectItem(t, "user");
            if (cJSON_IsString(u)) add(s, u->valuestring);
        }
        add(s, NULL);
    }
    cJSON_Delete(root);
    return 0;
}

static int cmp(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(const char *name, double *ms, size_t n, double floor_p50) {
    qsort(ms, n, sizeof *ms, cmp);
    const double p50 = ms[n / 2], p99 = ms[(size_t)((double)(n - 1) * 0.99)];
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += ms[i];
    printf("| %-10s | %6zu | %8.2f | %8.2f | %8.2f | %+8.2f |\n", name, n, p50, p99, sum / (double)n,
           floor_p50 > 0 ? p50 - floor_p50 : 0.0);
}

int main(int argc, char **argv) {
    const char *bot_path = NULL;
    int rounds = 3, threads = 0;
    script s = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--bot") && i + 1 < argc) bot_path = argv[++i];
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (read_script(argv[i], &s) != 0) return 1;
    }
    if (!bot_path || s.n == 0 || rounds < 1) {
        fprintf(stderr, "usage: bench_bot --bot BOT.yml [--rounds R] [--threads N] CONVERSATIONS.yml...\n");
        return 2;
    }
    char dir[] = "/tmp/qiao-bench-bot-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char store_path[128], orders[128];
    snprintf(store_path, sizeof store_path, "%s/store.sqlite", dir);
    snprintf(orders, sizeof orders, "%s/orders.sqlite", dir);

    qiao_bot *bot = NULL;
    shop *sh = NULL;
    qiao_bot_store *sql = NULL, *mem = NULL;
    qiao_status st = qiao_bot_load(bot_path, NULL, &bot);
    if (st == QIAO_OK) st = shop_open(bot, orders, &sh);
    if (st == QIAO_OK) st = qiao_bot_store_open_sqlite(store_path, NULL, &sql);
    const qiao_bot_store_ops ops = {sizeof ops, mem_load, mem_save, mem_remove, mem_expire, mem_close, NULL};
    mem_store *m = calloc(1, sizeof *m);
    if (st == QIAO_OK) st = qiao_bot_store_new(&ops, m, &mem);
    qiao_bot_session_params sp = qiao_bot_session_default_params();
    sp.n_threads = threads;
    qiao_bot_session *ss = NULL, *ms = NULL;
    if (st == QIAO_OK) st = qiao_bot_session_new(bot, sql, &sp, &ss);
    if (st == QIAO_OK) st = qiao_bot_session_new(bot, mem, &sp, &ms);
    qiao_session_params np = qiao_session_default_params();
    np.n_threads = threads;
    qiao_session *nlu = NULL;
    if (st == QIAO_OK) st = qiao_session_new(qiao_bot_model(bot), &np, &nlu);
    if (st != QIAO_OK) {
        fprintf(stderr, "bench_bot: %s: %s\n", qiao_status_str(st), qiao_last_error());
        return 1;
    }
    const size_t cap = s.n * (size_t)rounds;
    double *t_cls = calloc(cap, sizeof *t_cls), *t_sql = calloc(cap, sizeof *t_sql), *t_mem = calloc(cap, sizeof *t_mem);
    size_t n_cls = 0, n_sql = 0, n_mem = 0;
    for (int r = 0; r < rounds; r++) {
        int conv = 0;
        char id[64];
        for (size_t i = 0; i < s.n; i++) {
            if (!s.lines[i]) {
                conv++;
                continue;
            }
            snprintf(id, sizeof id, "bench-%d-%d", r, conv);
            /* Interleaved, so a drift of the machine falls on every row alike. */
            qiao_intent_result ir;
            double t0 = now_ms();
            st = qiao_intent_classify(nlu, s.lines[i], NULL, &ir);
            t_cls[n_cls++] = now_ms() - t0;
            qiao_intent_result_free(&ir);
            qiao_bot_reply rep;
            t0 = now_ms();
            if (st == QIAO_OK) st = qiao_bot_send(ss, id, s.lines[i], &rep);
            t_sql[n_sql++] = now_ms() - t0;
            qiao_bot_reply_free(&rep);
            t0 = now_ms();
            if (st == QIAO_OK) st = qiao_bot_send(ms, id, s.lines[i], &rep);
            t_mem[n_mem++] = now_ms() - t0;
            qiao_bot_reply_free(&rep);
            if (st != QIAO_OK) {
                fprintf(stderr, "bench_bot: %s: %s\n", qiao_status_str(st), qiao_last_error());
                return 1;
            }
        }
    }
    char cpu[128];
    cpu_model_name(cpu, sizeof cpu);
    printf("bench_bot: %zu customer lines x %d rounds, %s, %ld cores, load %.2f\n\n", n_cls / (size_t)rounds, rounds,
           cpu, sysconf(_SC_NPROCESSORS_ONLN), loadavg());
    printf("| %-10s | %6s | %8s | %8s | %8s | %8s |\n", "path", "turns", "p50 ms", "p99 ms", "mean ms", "p50 - cls");
    printf("|------------|--------|----------|----------|----------|----------|\n");
    qsort(t_cls, n_cls, sizeof *t_cls, cmp);
    const double floor_p50 = t_cls[n_cls / 2];
    report("classify", t_cls, n_cls, 0);
    report("memory", t_mem, n_mem, floor_p50);
    report("sqlite", t_sql, n_sql, floor_p50);
    qiao_session_free(nlu);
    qiao_bot_session_free(ss);
    qiao_bot_session_free(ms);
    qiao_bot_store_free(sql);
    qiao_bot_store_free(mem);
    shop_close(sh);
    qiao_bot_free(bot);
    free(t_cls), free(t_sql), free(t_mem);
    for (size_t i = 0; i < s.n; i++) free(s.lines[i]);
    free(s.lines);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
