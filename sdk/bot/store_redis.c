/* The Redis tracker store: conversations that several processes (behind a
 * load balancer) share. Under the store's prefix P, per conversation:
 *
 *   P c:<id>   a hash: state (the JSON text), version, updated (unix seconds)
 *   P e:<id>   a list: the events, one JSON array text per turn
 *   P paused   a sorted set of the paused conversations' ids, scored by the
 *              time each was saved (an agent console's list; no TTL)
 *
 * A conversation's two keys carry the store's TTL, set again at each save
 * (PEXPIRE): Redis removes an idle conversation itself. A save is one Lua
 * script (the version check, the state, the events, the TTL and the paused
 * set, all or none), so of two processes saving one conversation at once
 * only one lands. Ids are any bytes: every command goes out as an argument
 * vector with lengths (hiredis' binary-safe form), never as text put
 * together. hiredis' blocking API; one connection per store, one thread's
 * at a time; a connection lost since the last call is made again. */
#define _POSIX_C_SOURCE 200809L

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>

#include "bot/bot.h"
#include "core/core.h"

/* The scripts: loaded once at open (SCRIPT LOAD) and run by their SHA1
 * (EVALSHA); a server that lost them (restarted) gets the text (EVAL). */
enum { R_SAVE = 0, R_REMOVE, R_TRIM, R_SCRIPTS };

static const char *const SCRIPTS[R_SCRIPTS] = {
    /* KEYS: the conversation, its events, the paused set. ARGV: the version
     * read ("0": the conversation must not exist), the new version, the
     * state, now, the TTL in ms ("0": none), the id, "1" when there are
     * events, the events. 1, or 0 (the conflict marker: nothing written)
     * when the stored version is not the one read. The state is decoded
     * before anything is written. Versions compare as text: no rounding
     * through Lua's doubles. */
    "local cur = redis.call('HGET', KEYS[1], 'version')\n"
    "if ARGV[1] == '0' then\n"
    "  if cur then return 0 end\n"
    "elseif cur ~= ARGV[1] then\n"
    "  return 0\n"
    "end\n"
    "local ok, state = pcall(cjson.decode, ARGV[3])\n"
    "local paused = ok and type(state) == 'table' and state.paused == true\n"
    /* A new conversation's events start empty (an old one's under an expired state). */
    "if ARGV[1] == '0' then redis.call('DEL', KEYS[2]) end\n"
    "redis.call('HSET', KEYS[1], 'state', ARGV[3], 'version', ARGV[2], 'updated', ARGV[4])\n"
    "if ARGV[7] == '1' then redis.call('RPUSH', KEYS[2], ARGV[8]) end\n"
    "if ARGV[5] ~= '0' then\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[5])\n"
    "  redis.call('PEXPIRE', KEYS[2], ARGV[5])\n"
    "else\n"
    "  redis.call('PERSIST', KEYS[1])\n"
    "  redis.call('PERSIST', KEYS[2])\n"
    "end\n"
    "if paused then\n"
    "  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[6])\n"
    "else\n"
    "  redis.call('ZREM', KEYS[3], ARGV[6])\n"
    "end\n"
    "return 1\n",
    /* KEYS: the conversation, its events, the paused set. ARGV: the id. */
    "redis.call('DEL', KEYS[1], KEYS[2])\n"
    "redis.call('ZREM', KEYS[3], ARGV[1])\n"
    "return 1\n",
    /* KEYS: the paused set, then the conversation of each id. ARGV: the ids.
     * Per id 1 when its conversation exists, else 0 and it leaves the set;
     * in one script, so a conversation saved paused meanwhile keeps its place. */
    "local keep = {}\n"
    "for i = 1, #ARGV do\n"
    "  if redis.call('EXISTS', KEYS[i + 1]) == 1 then\n"
    "    keep[i] = 1\n"
    "  else\n"
    "    redis.call('ZREM', KEYS[1], ARGV[i])\n"
    "    keep[i] = 0\n"
    "  end\n"
    "end\n"
    "return keep\n",
};

/* The paused set is read this many ids at a time. */
#define R_BATCH 256

typedef struct redis_store {
    redisContext *c; /* NULL while disconnected: the next call connects */
    char *address;   /* as given, for messages */
    char *host;      /* TCP ([] taken off an IPv6 address); NULL: address is a Unix socket */
    int port;
    char *prefix, *paused_key;
    size_t prefix_len, paused_len;
    int64_t ttl_ms;  /* 0: no expiry */
    int timeout_ms;  /* connect and command timeout; 0: none */
    char sha[R_SCRIPTS][41];
} redis_store;

static qiao_status redis_io(const redis_store *q, const char *what, const char *why) {
    return qc_error(QIAO_ERR_IO, "redis at %s: %s: %s", q->address, what, why && why[0] ? why : "connection failed");
}

/* prefix + kind + id, malloc'd (ids are any bytes but NUL). */
static char *redis_key(const redis_store *q, const char *kind, const char *id, size_t *len) {
    const size_t nk = strlen(kind), ni = strlen(id);
    char *k = malloc(q->prefix_len + nk + ni + 1);
    if (!k) return NULL;
    memcpy(k, q->prefix, q->prefix_len);
    memcpy(k + q->prefix_len, kind, nk);
    memcpy(k + q->prefix_len + nk, id, ni + 1);
    *len = q->prefix_len + nk + ni;
    return k;
}

static qiao_status redis_connect(redis_store *q) {
    const struct timeval tv = {q->timeout_ms / 1000, (q->timeout_ms % 1000) * 1000};
    redisContext *c = q->host ? (q->timeout_ms ? redisConnectWithTimeout(q->host, q->port, tv)
                                               : redisConnect(q->host, q->port))
                              : (q->timeout_ms ? redisConnectUnixWithTimeout(q->address, tv)
                                               : redisConnectUnix(q->address));
    if (!c) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "redis at %s: out of memory", q->address);
    qiao_status st = c->err ? redis_io(q, "connecting", c->errstr) : QIAO_OK;
    if (st == QIAO_OK && q->timeout_ms && redisSetTimeout(c, tv) != REDIS_OK)
        st = redis_io(q, "setting the timeout", c->errstr);
    /* Not inherited by the programs the application starts (hiredis 0.14
     * opens the socket without SOCK_CLOEXEC). */
    if (st == QIAO_OK) {
        const int flags = fcntl(c->fd, F_GETFD);
        if (flags >= 0) fcntl(c->fd, F_SETFD, flags | FD_CLOEXEC);
    }
    if (st != QIAO_OK) {
        redisFree(c);
        return st;
    }
    q->c = c;
    return QIAO_OK;
}

/* Sends one command and reads its reply (NULL: the connection failed,
 * c->errstr says why). hiredis writes with write(2), and writing to a
 * connection the server has closed raises SIGPIPE, which ends the process
 * unless the application ignores it: the signal is blocked in this thread
 * for the exchange, and one the exchange raised is taken off before it is
 * unblocked (the process's disposition stays the application's). *sent:
 * the command went out whole, so the server may have run it. */
static redisReply *redis_exchange(redisContext *c, int argc, const char **argv, const size_t *len, bool *sent) {
    *sent = false;
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigemptyset(&pending);
    const bool was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    void *reply = NULL;
    if (redisAppendCommandArgv(c, argc, argv, len) == REDIS_OK) {
        int done = 0;
        while (!done && redisBufferWrite(c, &done) == REDIS_OK) {
        }
        *sent = done;
        if (done && redisGetReply(c, &reply) != REDIS_OK) reply = NULL;
    }
    if (!was_pending) {
        const struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) == SIGPIPE) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return reply;
}

/* One command (an argument vector with lengths) and its reply, which may
 * be an error reply (freed by the caller with freeReplyObject). When the
 * connection made on an earlier call fails (the server restarted, a
 * timeout), it is made again once and the command sent again, unless the
 * command may already have run and is not `idempotent` (a save whose reply
 * was lost: sent again it would conflict with itself). Then QIAO_ERR_IO
 * naming `what`. */
static qiao_status redis_run(redis_store *q, int argc, const char **argv, const size_t *len, bool idempotent,
                             const char *what, redisReply **out) {
    *out = NULL;
    for (int attempt = 0;; attempt++) {
        const bool fresh = !q->c;
        if (fresh) {
            const qiao_status st = redis_connect(q);
            if (st != QIAO_OK) return st;
        }
        bool sent = false;
        redisReply *r = redis_exchange(q->c, argc, argv, len, &sent);
        if (r) {
            *out = r;
            return QIAO_OK;
        }
        /* The context is unusable after an error (a late reply would answer
         * the next command): it goes, and the next call connects afresh. */
        char why[sizeof q->c->errstr];
        snprintf(why, sizeof why, "%s", q->c->errstr);
        const bool oom = q->c->err == REDIS_ERR_OOM;
        redisFree(q->c);
        q->c = NULL;
        if (oom) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "redis at %s: %s: out of memory", q->address, what);
        if (sent && !idempotent)
            return qc_error(QIAO_ERR_IO, "redis at %s: %s: the connection failed after the command was sent "
                            "(it may have run): %s", q->address, what, why[0] ? why : "connection failed");
        if (fresh || attempt > 0) return redis_io(q, what, why);
    }
}

/* redis_run, an error reply being QIAO_ERR_IO with the server's message. */
static qiao_status redis_cmd(redis_store *q, int argc, const char **argv, const size_t *len, bool idempotent,
                             const char *what, redisReply **out) {
    qiao_status st = redis_run(q, argc, argv, len, idempotent, what, out);
    if (st == QIAO_OK && (*out)->type == REDIS_REPLY_ERROR) {
        st = redis_io(q, what, (*out)->str);
        freeReplyObject(*out);
        *out = NULL;
    }
    return st;
}

static qiao_status redis_unexpected(const redis_store *q, const char *what, redisReply *r) {
    const int type = r ? r->type : -1;
    if (r) freeReplyObject(r);
    return qc_error(QIAO_ERR_IO, "redis at %s: %s: an unexpected reply (type %d)", q->address, what, type);
}

/* Runs script `which` on n_keys keys and n - n_keys arguments (a, alen):
 * by its SHA1, or by its text when the server does not have it. */
static qiao_status redis_script(redis_store *q, int which, size_t n_keys, size_t n, const char **a, const size_t *alen,
                                bool idempotent, const char *what, redisReply **out) {
    *out = NULL;
    const char **argv = malloc((n + 3) * sizeof *argv);
    size_t *len = malloc((n + 3) * sizeof *len);
    if (!argv || !len) {
        free(argv);
        free(len);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    }
    char nk[24];
    snprintf(nk, sizeof nk, "%zu", n_keys);
    argv[0] = "EVALSHA", len[0] = 7;
    argv[1] = q->sha[which], len[1] = 40;
    argv[2] = nk, len[2] = strlen(nk);
    memcpy(argv + 3, a, n * sizeof *a);
    memcpy(len + 3, alen, n * sizeof *alen);
    qiao_status st = redis_run(q, (int)(n + 3), argv, len, idempotent, what, out);
    if (st == QIAO_OK && (*out)->type == REDIS_REPLY_ERROR && !strncmp((*out)->str, "NOSCRIPT", 8)) {
        /* Not run: the server restarted (or SCRIPT FLUSH). EVAL caches it again. */
        freeReplyObject(*out);
        *out = NULL;
        argv[0] = "EVAL", len[0] = 4;
        argv[1] = SCRIPTS[which], len[1] = strlen(SCRIPTS[which]);
        st = redis_run(q, (int)(n + 3), argv, len, idempotent, what, out);
    }
    free(argv);
    free(len);
    if (st == QIAO_OK && (*out)->type == REDIS_REPLY_ERROR) {
        st = redis_io(q, what, (*out)->str);
        freeReplyObject(*out);
        *out = NULL;
    }
    return st;
}

static qiao_status redis_load(void *user, const char *conv, char **state, int64_t *version) {
    redis_store *q = user;
    size_t lc = 0;
    char *kc = redis_key(q, "c:", conv, &lc);
    if (!kc) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    const char *argv[] = {"HMGET", kc, "state", "version"};
    const size_t len[] = {5, lc, 5, 7};
    redisReply *r = NULL;
    qiao_status st = redis_cmd(q, 4, argv, len, true, "reading a conversation", &r);
    free(kc);
    if (st != QIAO_OK) return st;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) return redis_unexpected(q, "reading a conversation", r);
    const redisReply *s = r->element[0], *v = r->element[1];
    if (s->type == REDIS_REPLY_NIL) { /* none, or expired */
        freeReplyObject(r);
        return QIAO_OK;
    }
    char *end = NULL;
    const long long n = v->type == REDIS_REPLY_STRING ? strtoll(v->str, &end, 10) : -1;
    if (s->type != REDIS_REPLY_STRING || n < 1 || !end || *end) {
        st = qc_error(QIAO_ERR_FORMAT, "redis at %s: conversation '%s': not a conversation qiao saved (its state or "
                      "version is missing)", q->address, conv);
        freeReplyObject(r);
        return st;
    }
    *state = malloc(s->len + 1);
    if (*state) {
        memcpy(*state, s->str, s->len);
        (*state)[s->len] = 0;
        *version = n;
    }
    freeReplyObject(r);
    return *state ? QIAO_OK : qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
}

/* A conversation's two keys, its state's and its events' (false: out of memory, neither made). */
static bool conv_keys(const redis_store *q, const char *conv, char **kc, size_t *lc, char **ke, size_t *le) {
    *kc = redis_key(q, "c:", conv, lc), *ke = redis_key(q, "e:", conv, le);
    if (*kc && *ke) return true;
    free(*kc), free(*ke);
    *kc = *ke = NULL;
    return false;
}

static qiao_status redis_save(void *user, const char *conv, const char *state, int64_t version, const char *events) {
    redis_store *q = user;
    size_t lc = 0, le = 0;
    char *kc = NULL, *ke = NULL;
    if (!conv_keys(q, conv, &kc, &lc, &ke, &le)) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    char was[24], next[24], now[40], ttl[24];
    snprintf(was, sizeof was, "%" PRId64, version);
    snprintf(next, sizeof next, "%" PRId64, version + 1);
    snprintf(now, sizeof now, "%.6f", qbot_unix_now());
    snprintf(ttl, sizeof ttl, "%" PRId64, q->ttl_ms);
    const char *a[] = {kc, ke, q->paused_key, was, next, state, now, ttl, conv, events ? "1" : "0", events ? events : ""};
    const size_t alen[] = {lc, le, q->paused_len, strlen(was), strlen(next), strlen(state), strlen(now), strlen(ttl),
                           strlen(conv), 1, events ? strlen(events) : 0};
    redisReply *r = NULL;
    qiao_status st = redis_script(q, R_SAVE, 3, sizeof a / sizeof *a, a, alen, false, "saving a conversation", &r);
    free(kc);
    free(ke);
    if (st != QIAO_OK) return st;
    if (r->type != REDIS_REPLY_INTEGER) return redis_unexpected(q, "saving a conversation", r);
    const long long ok = r->integer;
    freeReplyObject(r);
    if (!ok)
        return qc_error(QIAO_ERR_CONFLICT, "redis at %s: conversation '%s' was changed by another turn since it was read",
                        q->address, conv);
    return QIAO_OK;
}

static qiao_status redis_remove(void *user, const char *conv) {
    redis_store *q = user;
    size_t lc = 0, le = 0;
    char *kc = NULL, *ke = NULL;
    if (!conv_keys(q, conv, &kc, &lc, &ke, &le)) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    const char *a[] = {kc, ke, q->paused_key, conv};
    const size_t alen[] = {lc, le, q->paused_len, strlen(conv)};
    redisReply *r = NULL;
    qiao_status st = redis_script(q, R_REMOVE, 3, 4, a, alen, true, "removing a conversation", &r);
    free(kc);
    free(ke);
    if (r) freeReplyObject(r);
    return st;
}

/* The ids of one page of the paused set (a ZREVRANGE reply) whose
 * conversations still exist (keep[i]); the others leave the set. */
static qiao_status redis_trim(redis_store *q, const redisReply *page, bool *keep) {
    const size_t n = page->elements;
    const char **a = calloc(2 * n + 1, sizeof *a);
    size_t *alen = calloc(2 * n + 1, sizeof *alen);
    qiao_status st = a && alen ? QIAO_OK : qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == QIAO_OK) a[0] = q->paused_key, alen[0] = q->paused_len;
    for (size_t i = 0; i < n && st == QIAO_OK; i++) {
        const redisReply *id = page->element[i];
        if (id->type != REDIS_REPLY_STRING) {
            st = qc_error(QIAO_ERR_IO, "redis at %s: listing paused conversations: an unexpected reply", q->address);
            break;
        }
        a[1 + n + i] = id->str, alen[1 + n + i] = id->len;
        char *k = redis_key(q, "c:", id->str, &alen[1 + i]);
        if (!k) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
        a[1 + i] = k;
    }
    redisReply *r = NULL;
    if (st == QIAO_OK)
        st = redis_script(q, R_TRIM, 1 + n, 2 * n + 1, a, alen, true, "listing paused conversations", &r);
    if (st == QIAO_OK && (r->type != REDIS_REPLY_ARRAY || r->elements != n)) {
        st = redis_unexpected(q, "listing paused conversations", r);
        r = NULL;
    }
    for (size_t i = 0; st == QIAO_OK && i < n; i++)
        keep[i] = r->element[i]->type == REDIS_REPLY_INTEGER && r->element[i]->integer == 1;
    if (r) freeReplyObject(r);
    for (size_t i = 0; a && i < n; i++) free((char *)a[1 + i]);
    free(a);
    free(alen);
    return st;
}

/* Walks the paused set, most recently saved first, taking out the ids whose
 * conversation expired, until `max` live ones are found (collected in
 * *ids_out when it is not NULL) or the set ends. */
static qiao_status redis_walk(redis_store *q, size_t max, char ***ids_out, size_t *n_out) {
    char **ids = NULL;
    size_t n = 0, cap = 0, live = 0;
    long long start = 0; /* the rank of the next unseen id: the trimmed ones leave the ranks */
    qiao_status st = QIAO_OK;
    while (st == QIAO_OK && live < max) {
        const size_t want = max - live < R_BATCH ? max - live : R_BATCH;
        char lo[24], hi[24];
        snprintf(lo, sizeof lo, "%lld", start);
        snprintf(hi, sizeof hi, "%lld", start + (long long)want - 1);
        const char *argv[] = {"ZREVRANGE", q->paused_key, lo, hi};
        const size_t len[] = {9, q->paused_len, strlen(lo), strlen(hi)};
        redisReply *page = NULL;
        st = redis_cmd(q, 4, argv, len, true, "listing paused conversations", &page);
        if (st != QIAO_OK) break;
        if (page->type != REDIS_REPLY_ARRAY) {
            st = redis_unexpected(q, "listing paused conversations", page);
            break;
        }
        const size_t got = page->elements;
        bool *keep = got ? calloc(got, sizeof *keep) : NULL;
        if (got && !keep) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
        if (st == QIAO_OK && got) st = redis_trim(q, page, keep);
        for (size_t i = 0; st == QIAO_OK && i < got; i++) {
            if (!keep[i]) continue;
            start++, live++;
            if (ids_out) st = qbot_ids_push(&ids, &n, &cap, page->element[i]->str, page->element[i]->len);
        }
        free(keep);
        freeReplyObject(page);
        if (got < want) break;
    }
    if (st != QIAO_OK) {
        qiao_bot_ids_free(ids, n);
        ids = NULL, n = 0;
    }
    if (ids_out) *ids_out = ids, *n_out = n;
    return st;
}

static qiao_status redis_paused(void *user, size_t max, char ***ids, size_t *n) {
    return redis_walk(user, max, ids, n);
}

/* Redis expires the conversations itself: nothing to remove, but the
 * paused set loses the ids of those that expired. */
static qiao_status redis_expire(void *user, double unix_time, size_t *removed) {
    if (removed) *removed = 0;
    return redis_walk(user, SIZE_MAX, NULL, NULL);
}

static void redis_close(void *user) {
    redis_store *q = user;
    if (!q) return;
    if (q->c) redisFree(q->c);
    free(q->address);
    free(q->host);
    free(q->prefix);
    free(q->paused_key);
    free(q);
}

/* "host:port" (an IPv6 host in brackets) into q->host and q->port. */
static bool redis_parse_address(redis_store *q, const char *address) {
    const char *colon = strrchr(address, ':');
    if (!colon || colon == address || !colon[1] || strlen(colon + 1) > 5) return false;
    int port = 0;
    for (const char *p = colon + 1; *p; p++) {
        if (*p < '0' || *p > '9') return false;
        port = 10 * port + (*p - '0');
    }
    if (port < 1 || port > 65535) return false;
    const char *host = address;
    size_t n = (size_t)(colon - address);
    if (host[0] == '[') {
        if (n < 3 || host[n - 1] != ']') return false;
        host++, n -= 2;
    }
    if (!(q->host = malloc(n + 1))) return false;
    memcpy(q->host, host, n);
    q->host[n] = 0;
    q->port = port;
    return true;
}

QIAO_API qiao_status qiao_bot_store_open_redis(const char *address, const char *prefix,
                                               const qiao_bot_store_params *params, qiao_bot_store **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_store_open_redis: out is NULL");
    *out = NULL;
    if (!address || !address[0]) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_store_open_redis: no address");
    qiao_bot_store_params p = qiao_bot_store_default_params();
    qiao_status st = qc_params_read(&p, sizeof p, params, sizeof(size_t), "qiao_bot_store_default_params");
    if (st != QIAO_OK) return st;
    if (!(p.ttl_seconds >= 0) || p.busy_timeout_ms < 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_store_open_redis: a negative ttl or busy timeout");
    const struct sockaddr_un *un = NULL; /* for the size of a socket's path */
    if (address[0] == '/' && strlen(address) >= sizeof un->sun_path)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_store_open_redis: the socket path '%s' is longer than "
                        "%zu bytes", address, sizeof un->sun_path - 1);
    redis_store *q = calloc(1, sizeof *q);
    if (q && (q->address = strdup(address)) && (q->prefix = strdup(prefix ? prefix : "qiao:"))) {
        q->prefix_len = strlen(q->prefix);
        q->paused_key = redis_key(q, "paused", "", &q->paused_len);
    }
    if (!q || !q->paused_key) {
        redis_close(q);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    }
    if (address[0] != '/' && !redis_parse_address(q, address)) {
        redis_close(q);
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_store_open_redis: '%s' is neither host:port nor a Unix "
                        "socket's path (starting with '/')", address);
    }
    /* Milliseconds, at least 1; past a century is as good as never. */
    const double ms = fmin(ceil(p.ttl_seconds * 1000.0), 100 * 365.25 * 86400e3);
    q->ttl_ms = p.ttl_seconds > 0 ? (int64_t)fmax(ms, 1.0) : 0;
    q->timeout_ms = p.busy_timeout_ms;
    st = redis_connect(q);
    for (int i = 0; i < R_SCRIPTS && st == QIAO_OK; i++) {
        const char *argv[] = {"SCRIPT", "LOAD", SCRIPTS[i]};
        const size_t len[] = {6, 4, strlen(SCRIPTS[i])};
        redisReply *r = NULL;
        st = redis_cmd(q, 3, argv, len, true, "loading a script", &r);
        if (st == QIAO_OK && (r->type != REDIS_REPLY_STRING || r->len != 40)) {
            st = redis_unexpected(q, "loading a script", r);
            r = NULL;
        }
        if (st == QIAO_OK) memcpy(q->sha[i], r->str, 40);
        if (r) freeReplyObject(r);
    }
    if (st != QIAO_OK) {
        redis_close(q);
        return st;
    }
    const qiao_bot_store_ops ops = {sizeof ops, redis_load, redis_save, redis_remove, redis_expire, redis_close,
                                    redis_paused};
    st = qiao_bot_store_new(&ops, q, out);
    if (st == QIAO_OK) qbot_store_set_ttl(*out, p.ttl_seconds);
    return st;
}
