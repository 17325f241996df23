/* The Redis tracker store (qiao_bot_store_open_redis, sdk/bot/store_redis.c)
 * against a redis-server of the test's own: started at setup on a Unix
 * socket in a fresh folder (no port, no persistence), killed and reaped at
 * teardown, and killed with the test if the test dies first (so ctest
 * leaves no server behind). Covered: versions and a stale write refused
 * with nothing changed, remove, the TTL as Redis expiry, the paused list,
 * ids of any bytes, bad and refused addresses, the server dying and coming
 * back, a conversation started through one connection and continued
 * through another (two processes behind a load balancer), and threads
 * with a connection each. */
#define _GNU_SOURCE /* mkdtemp, prctl */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <hiredis/hiredis.h>

#include "testutil.h"

#include "bot/bot.h"
#include "intent_fixture.h"
#include "qiao_bot.h"

static char g_dir[] = "/tmp/qiao-redis-XXXXXX";
static char g_sock[600];
static pid_t g_server = -1;

static void sleep_ms(long ms) { nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000L}, NULL); }

/* Starts redis-server on g_sock and waits until it answers PING. 0 on success. */
static int server_start(void) {
    char log[700];
    snprintf(log, sizeof log, "%s/redis.log", g_dir);
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        /* Killed when the test process ends, however it ends. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        const int null = open("/dev/null", O_RDWR);
        if (null >= 0) dup2(null, 0), dup2(null, 1), dup2(null, 2);
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", g_sock, "--save", "", "--appendonly",
               "no", "--dir", g_dir, "--logfile", log, (char *)NULL);
        _exit(127);
    }
    g_server = pid;
    for (int i = 0; i < 1000; i++) { /* 10 s */
        redisContext *c = redisConnectUnix(g_sock);
        if (c && !c->err) {
            redisReply *r = redisCommand(c, "PING");
            const int ok = r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "PONG");
            if (r) freeReplyObject(r);
            redisFree(c);
            if (ok) return 0;
        } else if (c) {
            redisFree(c);
        }
        int status = 0;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            g_server = -1;
            fprintf(stderr, "redis-server exited (status %d): is it installed? (scripts/install-deps.sh)\n", status);
            return -1;
        }
        sleep_ms(10);
    }
    fprintf(stderr, "redis-server did not answer on %s\n", g_sock);
    return -1;
}

static void server_stop(void) {
    if (g_server <= 0) return;
    kill(g_server, SIGKILL);
    waitpid(g_server, NULL, 0);
    g_server = -1;
}

static int setup(void **state) {
    (void)state;
    if (!mkdtemp(g_dir)) return -1;
    snprintf(g_sock, sizeof g_sock, "%s/redis.sock", g_dir);
    return server_start();
}

static int teardown(void **state) {
    (void)state;
    server_stop();
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static qiao_bot_store *open_store(const char *prefix, double ttl) {
    qiao_bot_store_params sp = qiao_bot_store_default_params();
    if (ttl >= 0) sp.ttl_seconds = ttl;
    qiao_bot_store *s = NULL;
    if (qiao_bot_store_open_redis(g_sock, prefix, &sp, &s) != QIAO_OK) fail_msg("%s", qiao_last_error());
    return s;
}

/* A command on a connection of the test's own, to look at the keys. */
static redisReply *peek(const char *fmt, ...) {
    redisContext *c = redisConnectUnix(g_sock);
    assert_non_null(c);
    if (c->err) fail_msg("peek: %s", c->errstr);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    assert_non_null(r);
    return r;
}

static long long peek_int(const char *fmt, const char *key, size_t len) {
    redisReply *r = peek(fmt, key, len);
    if (r->type != REDIS_REPLY_INTEGER) fail_msg("%s: not an integer (%s)", fmt, r->str ? r->str : "");
    const long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static void load_is(qiao_bot_store *s, const char *conv, const char *want, int64_t want_version) {
    char *text = (char *)1;
    int64_t v = -1;
    if (qbot_store_load(s, conv, &text, &v) != QIAO_OK) fail_msg("%s", qiao_last_error());
    if (want) {
        assert_non_null(text);
        assert_string_equal(text, want);
    } else {
        assert_null(text);
    }
    assert_int_equal(v, want_version);
    free(text);
}

static void save_ok(qiao_bot_store *s, const char *conv, const char *state, int64_t version, const char *events) {
    if (qbot_store_save(s, conv, state, version, events) != QIAO_OK) fail_msg("%s", qiao_last_error());
}

/* The paused list is exactly `want` (n of them), in order. */
static void paused_is(qiao_bot_store *s, size_t max, const char *const *want, size_t n) {
    char **ids = (char **)1;
    size_t got = 99;
    if (qiao_bot_store_paused(s, max, &ids, &got) != QIAO_OK) fail_msg("%s", qiao_last_error());
    assert_int_equal(got, n);
    for (size_t i = 0; i < n; i++) assert_string_equal(ids[i], want[i]);
    if (!n) assert_null(ids);
    qiao_bot_ids_free(ids, got);
}

/* A missing conversation, then versions 1, 2, 3, and the keys as documented. */
static void round_trip(void **state) {
    (void)state;
    qiao_bot_store *s = open_store("rt:", -1);
    load_is(s, "c1", NULL, 0);
    save_ok(s, "c1", "{\"n\":1}", 0, "[1]");
    load_is(s, "c1", "{\"n\":1}", 1);
    save_ok(s, "c1", "{\"n\":2}", 1, "[2]");
    load_is(s, "c1", "{\"n\":2}", 2);
    save_ok(s, "c1", "{\"n\":3}", 2, NULL); /* no events this turn */
    load_is(s, "c1", "{\"n\":3}", 3);
    redisReply *r = peek("HGETALL rt:c:c1");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 6); /* state, version, updated */
    freeReplyObject(r);
    r = peek("LRANGE rt:e:c1 0 -1");
    assert_int_equal(r->elements, 2);
    assert_string_equal(r->element[0]->str, "[1]");
    assert_string_equal(r->element[1]->str, "[2]");
    freeReplyObject(r);
    qiao_bot_store_free(s);
    /* The default prefix. */
    s = open_store(NULL, -1);
    save_ok(s, "d1", "{}", 0, "[]");
    assert_int_equal(peek_int("EXISTS %b", "qiao:c:d1", 9), 1);
    qiao_bot_store_free(s);
}

/* Two connections: a second "new" conversation and a stale version are
 * refused, naming the conversation, and change nothing (state, version,
 * events, the paused set). */
static void conflict(void **state) {
    (void)state;
    qiao_bot_store *a = open_store("cf:", -1), *b = open_store("cf:", -1);
    save_ok(a, "c1", "{\"n\":1}", 0, "[\"a\"]");
    assert_int_equal(qbot_store_save(b, "c1", "{\"n\":9}", 0, "[\"b\"]"), QIAO_ERR_CONFLICT);
    assert_non_null(strstr(qiao_last_error(), "'c1'"));
    load_is(b, "c1", "{\"n\":1}", 1);
    save_ok(b, "c1", "{\"n\":2}", 1, "[\"b\"]");
    assert_int_equal(qbot_store_save(a, "c1", "{\"n\":3,\"paused\":true}", 1, "[\"late\"]"), QIAO_ERR_CONFLICT);
    printf("conflict: %s\n", qiao_last_error());
    assert_non_null(strstr(qiao_last_error(), "conversation 'c1' was changed by another turn"));
    load_is(a, "c1", "{\"n\":2}", 2);
    assert_int_equal(peek_int("LLEN %b", "cf:e:c1", 7), 2);
    assert_int_equal(peek_int("ZCARD %b", "cf:paused", 9), 0);
    /* A version ahead of the store's is as stale. */
    assert_int_equal(qbot_store_save(a, "c1", "{}", 7, "[]"), QIAO_ERR_CONFLICT);
    load_is(a, "c1", "{\"n\":2}", 2);
    qiao_bot_store_free(a);
    qiao_bot_store_free(b);
}

static void remove_conversation(void **state) {
    (void)state;
    qiao_bot_store *s = open_store("rm:", -1);
    save_ok(s, "c1", "{\"paused\":true}", 0, "[]");
    save_ok(s, "c2", "{\"n\":2}", 0, "[]");
    const char *const c1[] = {"c1"};
    paused_is(s, 10, c1, 1);
    assert_int_equal(qbot_store_remove(s, "c1"), QIAO_OK);
    load_is(s, "c1", NULL, 0);
    assert_int_equal(peek_int("EXISTS %b", "rm:c:c1", 7), 0);
    assert_int_equal(peek_int("EXISTS %b", "rm:e:c1", 7), 0);
    assert_int_equal(peek_int("ZCARD %b", "rm:paused", 9), 0);
    load_is(s, "c2", "{\"n\":2}", 1);
    assert_int_equal(qbot_store_remove(s, "never"), QIAO_OK);
    /* A removed conversation starts again at version 0. */
    save_ok(s, "c1", "{}", 0, "[]");
    qiao_bot_store_free(s);
}

/* The TTL is Redis's own expiry, on both keys; ttl 0: none. */
static void ttl_expiry(void **state) {
    (void)state;
    qiao_bot_store *s = open_store("ttl:", 1.0), *forever = open_store("ttl0:", 0);
    save_ok(s, "c1", "{\"n\":1}", 0, "[1]");
    save_ok(forever, "c1", "{\"n\":1}", 0, "[1]");
    const long long pc = peek_int("PTTL %b", "ttl:c:c1", 8), pe = peek_int("PTTL %b", "ttl:e:c1", 8);
    assert_true(pc > 0 && pc <= 1000);
    assert_true(pe > 0 && pe <= 1000);
    assert_int_equal(peek_int("PTTL %b", "ttl0:c:c1", 9), -1);
    assert_int_equal(peek_int("PTTL %b", "ttl0:e:c1", 9), -1);
    sleep_ms(1500);
    load_is(s, "c1", NULL, 0); /* expired: starts afresh */
    assert_int_equal(peek_int("EXISTS %b", "ttl:e:c1", 8), 0);
    save_ok(s, "c1", "{\"n\":2}", 0, "[2]");
    load_is(s, "c1", "{\"n\":2}", 1);
    assert_int_equal(peek_int("LLEN %b", "ttl:e:c1", 8), 1);
    load_is(forever, "c1", "{\"n\":1}", 1);
    size_t removed = 9;
    assert_int_equal(qiao_bot_store_expire(s, &removed), QIAO_OK);
    assert_int_equal(removed, 0); /* Redis removed it */
    qiao_bot_store_free(s);
    qiao_bot_store_free(forever);
}

/* The paused list: the most recently saved first, at most max; a
 * conversation that is no longer paused leaves it; an expired one is
 * skipped and leaves the set (also through qiao_bot_store_expire). */
static void paused_list(void **state) {
    (void)state;
    qiao_bot_store *s = open_store("pz:", -1), *brief = open_store("pz:", 1.0), *other = open_store("pz2:", 1.0);
    const char *const P = "{\"paused\":true}", *const U = "{\"paused\":false}";
    save_ok(s, "p1", P, 0, "[]");
    sleep_ms(3);
    save_ok(s, "p2", P, 0, "[]");
    sleep_ms(3);
    save_ok(s, "n1", U, 0, "[]");
    save_ok(s, "n2", "{\"paused\":1}", 0, "[]"); /* only true is paused */
    save_ok(s, "n3", "not json", 0, "[]");
    sleep_ms(3);
    save_ok(s, "p3", P, 0, "[]");
    const char *const all[] = {"p3", "p2", "p1"};
    paused_is(s, 10, all, 3);
    paused_is(s, 2, all, 2);
    paused_is(s, 0, NULL, 0);
    sleep_ms(3);
    save_ok(s, "p1", P, 1, "[]");
    const char *const again[] = {"p1", "p3", "p2"};
    paused_is(s, 10, again, 3);
    save_ok(s, "p2", U, 1, "[]");
    const char *const resumed[] = {"p1", "p3"};
    paused_is(s, 10, resumed, 2);
    /* Two that expire, saved last (so listed first until they do). */
    sleep_ms(3);
    save_ok(brief, "p4", P, 0, "[]");
    sleep_ms(3);
    save_ok(brief, "p5", P, 0, "[]");
    save_ok(other, "q1", P, 0, "[]");
    const char *const with[] = {"p5", "p4", "p1", "p3"};
    paused_is(s, 10, with, 4);
    sleep_ms(1500);
    paused_is(s, 1, resumed, 1); /* p5 and p4 skipped */
    assert_int_equal(peek_int("ZCARD %b", "pz:paused", 9), 2);
    paused_is(s, 10, resumed, 2);
    assert_int_equal(peek_int("ZCARD %b", "pz2:paused", 10), 1);
    size_t removed = 9;
    assert_int_equal(qiao_bot_store_expire(other, &removed), QIAO_OK);
    assert_int_equal(removed, 0);
    assert_int_equal(peek_int("ZCARD %b", "pz2:paused", 10), 0);
    qiao_bot_store_free(s);
    qiao_bot_store_free(brief);
    qiao_bot_store_free(other);
}

/* Ids of any bytes: spaces, quotes, CR LF (a Redis command inside one),
 * Chinese, 256 bytes. Each is its own key, and comes back whole. */
static void odd_ids(void **state) {
    (void)state;
    char long_id[257];
    for (int i = 0; i < 85; i++) memcpy(long_id + 3 * i, "长", 3);
    long_id[255] = 'x', long_id[256] = 0;
    const char *const ids[] = {"a b c", "quote\"'`\\", "cr\r\nlf\r\n", "中文会话 ✓", "*1\r\n$8\r\nFLUSHALL\r\n",
                               "{tag}:c:x", "%s %b %d", long_id};
    const size_t n = sizeof ids / sizeof *ids;
    qiao_bot_store *s = open_store("odd:", -1);
    for (size_t i = 0; i < n; i++) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "id", ids[i]);
        cJSON_AddBoolToObject(j, "paused", 1);
        char *text = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
        save_ok(s, ids[i], text, 0, text);
        load_is(s, ids[i], text, 1);
        free(text);
        char key[300];
        snprintf(key, sizeof key, "odd:c:%s", ids[i]);
        assert_int_equal(peek_int("EXISTS %b", key, strlen(key)), 1);
    }
    char **got = NULL;
    size_t n_got = 0;
    assert_int_equal(qiao_bot_store_paused(s, 100, &got, &n_got), QIAO_OK);
    assert_int_equal(n_got, n);
    for (size_t i = 0; i < n; i++) {
        size_t hits = 0;
        for (size_t k = 0; k < n_got; k++) hits += !strcmp(got[k], ids[i]);
        if (hits != 1) fail_msg("id %zu is listed %zu times", i, hits);
    }
    qiao_bot_ids_free(got, n_got);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(qbot_store_remove(s, ids[i]), QIAO_OK);
        load_is(s, ids[i], NULL, 0);
    }
    assert_int_equal(peek_int("ZCARD %b", "odd:paused", 10), 0);
    qiao_bot_store_free(s);
}

/* A TCP port nobody listens on: bound, not listening (fd kept open). */
static int closed_port(int *fd) {
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(*fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(*fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(*fd, (struct sockaddr *)&a, &len), 0);
    return ntohs(a.sin_port);
}

static void bad_addresses(void **state) {
    (void)state;
    qiao_bot_store *s = (qiao_bot_store *)1;
    static const char *const malformed[] = {"localhost", "localhost:", "localhost:port", "localhost:0",
                                            "localhost:70000", ":6379", "[::1:6379", "127.0.0.1:63790x", "redis"};
    for (size_t i = 0; i < sizeof malformed / sizeof *malformed; i++) {
        assert_int_equal(qiao_bot_store_open_redis(malformed[i], NULL, NULL, &s), QIAO_ERR_INVALID_ARGUMENT);
        assert_null(s);
        if (!strstr(qiao_last_error(), malformed[i])) fail_msg("'%s' does not name '%s'", qiao_last_error(), malformed[i]);
    }
    assert_int_equal(qiao_bot_store_open_redis(NULL, NULL, NULL, &s), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_bot_store_open_redis("", NULL, NULL, &s), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_bot_store_open_redis(g_sock, NULL, NULL, NULL), QIAO_ERR_INVALID_ARGUMENT);
    qiao_bot_store_params sp = qiao_bot_store_default_params();
    sp.ttl_seconds = -1;
    assert_int_equal(qiao_bot_store_open_redis(g_sock, NULL, &sp, &s), QIAO_ERR_INVALID_ARGUMENT);
    char path[300];
    memset(path, 'a', sizeof path - 1);
    path[0] = '/', path[sizeof path - 1] = 0;
    assert_int_equal(qiao_bot_store_open_redis(path, NULL, NULL, &s), QIAO_ERR_INVALID_ARGUMENT);
    /* No server at a socket path. */
    snprintf(path, sizeof path, "%s/none.sock", g_dir);
    assert_int_equal(qiao_bot_store_open_redis(path, NULL, NULL, &s), QIAO_ERR_IO);
    assert_null(s);
    printf("no socket: %s\n", qiao_last_error());
    assert_non_null(strstr(qiao_last_error(), path));
    assert_non_null(strstr(qiao_last_error(), "No such file"));
    /* A refused connection. */
    int fd = -1;
    char address[64];
    snprintf(address, sizeof address, "127.0.0.1:%d", closed_port(&fd));
    assert_int_equal(qiao_bot_store_open_redis(address, NULL, NULL, &s), QIAO_ERR_IO);
    close(fd);
    assert_null(s);
    printf("refused: %s\n", qiao_last_error());
    assert_non_null(strstr(qiao_last_error(), address));
    assert_non_null(strstr(qiao_last_error(), "refused"));
}

/* The server restarts between two calls: the next call connects again by
 * itself. The server is down: every call fails with QIAO_ERR_IO (and the
 * process lives: no SIGPIPE), until it is back. */
static void server_dies(void **state) {
    (void)state;
    qiao_bot_store *s = open_store("sd:", -1);
    save_ok(s, "c1", "{\"n\":1}", 0, "[]");
    server_stop();
    assert_int_equal(server_start(), 0);
    load_is(s, "c1", NULL, 0);                    /* reconnected; the server kept nothing */
    save_ok(s, "c1", "{\"n\":2}", 0, "[]");       /* its scripts are gone too: EVAL again */
    save_ok(s, "c1", "{\"paused\":true}", 1, "[]");
    load_is(s, "c1", "{\"paused\":true}", 2);

    server_stop();
    char *text = NULL;
    int64_t v = 0;
    assert_int_equal(qbot_store_load(s, "c1", &text, &v), QIAO_ERR_IO);
    printf("down: %s\n", qiao_last_error());
    assert_non_null(strstr(qiao_last_error(), g_sock));
    assert_null(text);
    assert_int_equal(qbot_store_save(s, "c1", "{}", 2, "[]"), QIAO_ERR_IO);
    assert_int_equal(qbot_store_remove(s, "c1"), QIAO_ERR_IO);
    char **ids = NULL;
    size_t n = 0;
    assert_int_equal(qiao_bot_store_paused(s, 5, &ids, &n), QIAO_ERR_IO);
    assert_int_equal(qiao_bot_store_expire(s, NULL), QIAO_ERR_IO);
    qiao_bot_store *t = (qiao_bot_store *)1;
    assert_int_equal(qiao_bot_store_open_redis(g_sock, "sd:", NULL, &t), QIAO_ERR_IO);
    assert_null(t);

    assert_int_equal(server_start(), 0);
    load_is(s, "c1", NULL, 0);
    save_ok(s, "c1", "{\"paused\":true}", 0, "[]");
    const char *const c1[] = {"c1"};
    paused_is(s, 5, c1, 1);
    qiao_bot_store_free(s);

    /* A server that stops answering: the command timeout, not a hang. */
    qiao_bot_store_params sp = qiao_bot_store_default_params();
    sp.busy_timeout_ms = 200;
    assert_int_equal(qiao_bot_store_open_redis(g_sock, "sd:", &sp, &s), QIAO_OK);
    kill(g_server, SIGSTOP);
    assert_int_equal(qbot_store_load(s, "c1", &text, &v), QIAO_ERR_IO);
    printf("stopped: %s\n", qiao_last_error());
    kill(g_server, SIGCONT);
    load_is(s, "c1", "{\"paused\":true}", 1);
    qiao_bot_store_free(s);
}

/* ---- The bot on two connections -------------------------------------------------- */

static const char *const k_bot =
    "version: 1\n"
    "name: redis\n"
    "model: MODEL\n"
    "slots:\n"
    "  order_id: {entity: order_id, regex: '[0-9]{16}', keep: true, ask: ask_order, label: {zh: 订单号, en: order}}\n"
    "  reason: {free_text: true, ask: ask_reason}\n"
    "forms:\n"
    "  return: {slots: [order_id, reason], confirm: confirm, done: done}\n"
    "intents:\n"
    "  return_request: {form: return}\n"
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
    "  done: \"好了{order_id}\"\n";

/* The bot on the tiny classifier, whose guesses are poor: every intent it
 * may guess (its out-of-scope one too) is made to start the return form,
 * at any confidence (the classifier has no out-of-scope threshold), so the
 * conversation's course is the form's. */
static qiao_bot *load_bot(void) {
    char model[700], path[700];
    snprintf(model, sizeof model, "%s/bot.safetensors", g_dir);
    if (qt_train_tiny_classifier_with(QT_ECOMMERCE_TRAIN, model, 30, 0, 0.0) != 0) fail_msg("training the tiny classifier");
    char text[4096];
    const char *m = strstr(k_bot, "MODEL");
    snprintf(text, sizeof text, "%.*s%s%s", (int)(m - k_bot), k_bot, model, m + 5);
    snprintf(path, sizeof path, "%s/bot.yml", g_dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    qiao_bot *bot = NULL;
    if (qiao_bot_load(path, NULL, &bot) != QIAO_OK) fail_msg("%s", qiao_last_error());
    const int form = 0;
    assert_string_equal(bot->forms[form].name, "return");
    for (size_t i = 0; i < bot->n_intents; i++) {
        qbot_intent *it = &bot->intents[i];
        it->handled = true, it->kind = QBOT_FORM, it->form = form, it->global = false;
        it->response = it->action = -1;
    }
    bot->min_confidence = 0, bot->min_margin = 0;
    assert_true(qiao_model_intent_threshold(bot->model) <= 0);
    return bot;
}

static qiao_bot_session *session_of(qiao_bot *bot, qiao_bot_store *store) {
    qiao_bot_session_params sp = qiao_bot_session_default_params();
    sp.n_threads = 1;
    qiao_bot_session *s = NULL;
    if (qiao_bot_session_new(bot, store, &sp, &s) != QIAO_OK) fail_msg("%s", qiao_last_error());
    return s;
}

static void send_is(qiao_bot_session *s, const char *conv, const char *text, const char *action, const char *says) {
    qiao_bot_reply r;
    if (qiao_bot_send(s, conv, text, &r) != QIAO_OK) fail_msg("%s", qiao_last_error());
    printf("%s -> %s: %s\n", text, r.action, r.n_messages ? r.messages[0] : "");
    assert_string_equal(r.action, action);
    assert_true(r.n_messages >= 1);
    assert_string_equal(r.messages[r.n_messages - 1], says);
    qiao_bot_reply_free(&r);
}

static const char *slot_of(const cJSON *state, const char *slot) {
    const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(state, "slots"), slot), "value");
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Two processes behind a load balancer: session A (its own connection)
 * starts a return, session B (another connection) takes the next message
 * with A's form and slots, and so on, turn by turn. */
static void two_sessions(void **state) {
    (void)state;
    qiao_bot *bot = load_bot();
    qiao_bot_store *sa = open_store("lb:", -1), *sb = open_store("lb:", -1);
    qiao_bot_session *a = session_of(bot, sa), *b = session_of(bot, sb);
    const char *conv = "顾客 42";
    send_is(a, conv, "我想退货", "form:return/ask:order_id", "订单号？");
    send_is(b, conv, "2025112800007766", "form:return/ask:reason", "原因？");
    send_is(a, conv, "尺码不合适", "form:return/confirm", "确认2025112800007766？");
    char *json = NULL;
    assert_int_equal(qiao_bot_conversation(b, conv, &json), QIAO_OK);
    cJSON *j = cJSON_Parse(json);
    free(json);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "form")->valuestring, "return");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "confirming")));
    assert_string_equal(slot_of(j, "order_id"), "2025112800007766");
    assert_string_equal(slot_of(j, "reason"), "尺码不合适");
    assert_int_equal((int)cJSON_GetObjectItem(j, "turns")->valuedouble, 3);
    cJSON_Delete(j);
    char key[64];
    snprintf(key, sizeof key, "lb:e:%s", conv);
    assert_int_equal(peek_int("LLEN %b", key, strlen(key)), 3);
    /* A human takes it on A; B's agent console lists it. */
    assert_int_equal(qiao_bot_pause(a, conv), QIAO_OK);
    const char *const listed[] = {conv};
    paused_is(sb, 10, listed, 1);
    qiao_bot_reply r;
    assert_int_equal(qiao_bot_resume(b, conv, &r), QIAO_OK);
    assert_false(r.paused);
    qiao_bot_reply_free(&r);
    paused_is(sa, 10, NULL, 0);
    assert_int_equal(qiao_bot_forget(b, conv), QIAO_OK);
    assert_int_equal(qiao_bot_conversation(a, conv, &json), QIAO_OK);
    assert_string_equal(json, "null");
    free(json);
    qiao_bot_session_free(a);
    qiao_bot_session_free(b);
    qiao_bot_store_free(sa);
    qiao_bot_store_free(sb);
    qiao_bot_free(bot);
}

/* ---- Threads ------------------------------------------------------------------------ */

typedef struct job {
    int id;
    qiao_status st;
    char error[256];
} job;

static void *talk(void *arg) {
    job *j = arg;
    qiao_bot_store *s = NULL;
    qiao_bot_store_params sp = qiao_bot_store_default_params();
    j->st = qiao_bot_store_open_redis(g_sock, "th:", &sp, &s);
    char conv[32], text[64];
    snprintf(conv, sizeof conv, "thread-%d", j->id);
    for (int64_t v = 0; v < 50 && j->st == QIAO_OK; v++) {
        char *got = NULL;
        int64_t have = -1;
        j->st = qbot_store_load(s, conv, &got, &have);
        if (j->st == QIAO_OK && have != v) j->st = QIAO_ERR_CONFLICT;
        free(got);
        snprintf(text, sizeof text, "{\"n\":%d,\"paused\":%s}", (int)v, v % 2 ? "true" : "false");
        if (j->st == QIAO_OK) j->st = qbot_store_save(s, conv, text, v, "[]");
    }
    char **ids = NULL;
    size_t n = 0;
    if (j->st == QIAO_OK) j->st = qiao_bot_store_paused(s, 10, &ids, &n);
    qiao_bot_ids_free(ids, n);
    if (j->st != QIAO_OK) snprintf(j->error, sizeof j->error, "%s", qiao_last_error());
    qiao_bot_store_free(s);
    return NULL;
}

/* Four threads, a connection each, a conversation each, at once. */
static void threads(void **state) {
    (void)state;
    pthread_t th[4];
    job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (job){i, QIAO_OK, ""};
        assert_int_equal(pthread_create(&th[i], NULL, talk, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++)
        if (jobs[i].st != QIAO_OK) fail_msg("thread %d: %s", i, jobs[i].error);
    qiao_bot_store *s = open_store("th:", -1);
    for (int i = 0; i < 4; i++) {
        char conv[32];
        snprintf(conv, sizeof conv, "thread-%d", i);
        load_is(s, conv, "{\"n\":49,\"paused\":true}", 50);
    }
    assert_int_equal(peek_int("ZCARD %b", "th:paused", 9), 4);
    qiao_bot_store_free(s);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(round_trip),    cmocka_unit_test(conflict),      cmocka_unit_test(remove_conversation),
    cmocka_unit_test(ttl_expiry),    cmocka_unit_test(paused_list),   cmocka_unit_test(odd_ids),
    cmocka_unit_test(bad_addresses), cmocka_unit_test(server_dies),   cmocka_unit_test(two_sessions),
    cmocka_unit_test(threads)};

int main(int argc, char **argv) {
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, setup, teardown);
}
