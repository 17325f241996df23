/* apps/serve/serve.h - `qiao serve`: qiao's models behind an authenticated
 * HTTP service (libmicrohttpd). server.c is the HTTP side (the daemon,
 * tokens, rate limits, body and time limits, metrics, the static pages,
 * signals and a graceful stop); routes.c answers the API's routes with the
 * models and the bot. docs/serve.md describes the service. */
#ifndef QIAO_SERVE_H
#define QIAO_SERVE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "qiao.h"
#include "qiao_bot.h"

typedef struct serve_opts {
    const char *bot;           /* a bot file (qiao_bot_load): /v1/parse and /v1/chat */
    const char *intent_model;  /* the bot's classifier instead of the file's */
    const char *orders;        /* the sample shop's orders database instead of the bot file's */
    const char *embed_model;   /* /v1/embed */
    const char *index;         /* /v1/search: an index file (its model embeds the queries) */
    const char *vqa_model;     /* /v1/vqa */
    const char *caption_model; /* /v1/caption */
    const char *tokens;        /* the bearer tokens file (required) */
    const char *store;         /* the SQLite conversation store (default qiao-serve.sqlite) */
    const char *redis;         /* a Redis store's address instead ("host:port" or a socket path) */
    const char *redis_prefix;  /* its key prefix (NULL: the store's default) */
    const char *listen;        /* "host:port" (default 127.0.0.1:8080; port 0: any free one) */
    const char *port_file;     /* written with the bound port once the service listens */
    int workers;               /* requests computed at once, each on its own sessions; 0: the cores */
    int threads;               /* each worker's kernel threads (default 1) */
    int precision;             /* the sessions' qiao_precision (default: each model file's) */
    double rate, burst;        /* per token: requests a second (0: no limit) and the bucket's size */
    double auth_fail_rate;     /* per client address: failed authentications a second (0: no limit) */
    double auth_fail_burst;    /* and its bucket's size */
    size_t max_body;           /* bytes */
    int timeout_s;             /* an idle connection, or a request taking longer to arrive, is dropped */
    int max_connections;
    long queue_max;            /* requests waiting for a worker at most; past it 503 (default 4,096) */
    bool quiet;                /* no request log on stderr */
} serve_opts;

/* Runs the service until SIGTERM or SIGINT; SIGHUP reloads the tokens.
 * Returns the process exit code. */
int serve_run(const serve_opts *o);

/* ---- Between server.c and routes.c ------------------------------------------ */

typedef enum serve_route {
    R_PAGE,
    R_HEALTHZ,
    R_METRICS,
    R_PARSE,
    R_CHAT,
    R_CONV_LIST,
    R_CONV_GET,
    R_CONV_HANDOFF,
    R_CONV_RESUME,
    R_CONV_REPLY,
    R_CONV_FORGET,
    R_EMBED,
    R_SEARCH,
    R_VQA,
    R_CAPTION,
    R_OTHER,
    R_COUNT
} serve_route;

#define SERVE_CONV_LOCKS 64

/* One request's computing resources: the sessions of every loaded model and
 * a conversation store connection, used by one request at a time. */
typedef struct serve_worker {
    qiao_session *nlu, *embed, *search, *vqa, *caption;
    qiao_bot_store *store;
    qiao_bot_session *bot;
} serve_worker;

/* What the service holds for every worker. */
typedef struct serve_models {
    qiao_bot *bot;
    void *shop; /* the sample shop's actions (apps/chatbot), when the bot declares them */
    qiao_model *embed, *vqa, *caption;
    qiao_index *index;
    void *index_lock; /* a pthread_mutex_t: an index answers one query at a time */
    void *conv_locks; /* SERVE_CONV_LOCKS pthread_mutex_t: one conversation's turns, one at a time */
    double load_seconds;
} serve_models;

/* A route's answer: an HTTP status and a JSON body (owned). */
typedef struct serve_answer {
    int status;
    cJSON *body;
} serve_answer;

/* The offset of the first byte of `s` that is not well-formed UTF-8, or len. */
size_t serve_utf8_check(const char *s, size_t len);

/* Sets `a` to the error body {"error": {"status", "message", "field"}}
 * (field may be NULL). */
void serve_error(serve_answer *a, int status, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The HTTP status for a library failure (400 for bad input, 404, 409, 413,
 * 503 for an unsupported model, 500 otherwise) with qiao_last_error(). */
void serve_fail(serve_answer *a, qiao_status st, const char *field);

/* The route of a method and a path (unescaped, without the query); *allow
 * names the methods when the path is known but not the method (405); *id
 * is the malloc'd {id} of a conversation route (NULL if out of memory). */
serve_route serve_route_of(const char *method, const char *url, const char **allow, char **id);

/* ---- Bearer tokens ------------------------------------------------------------------- */

#define SERVE_TOKEN_MIN 16
#define SERVE_TOKEN_MAX 256

typedef struct serve_token {
    unsigned char secret[SERVE_TOKEN_MAX]; /* zero-padded: every comparison reads all of it */
    size_t len;
    char name[64];
    double bucket, last; /* the rate limit's bucket and when it was last filled */
} serve_token;

typedef struct serve_tokens {
    serve_token *t;
    size_t n;
} serve_tokens;

/* Reads a tokens file from f (`path` names it in errors): one token per
 * line (16 to 256 printable ASCII characters), an optional name after a
 * space, '#' comments, at least one token. False with err set (and *out
 * empty) on any mistake. Each bucket starts full (burst). */
bool serve_tokens_parse(FILE *f, const char *path, double burst, serve_tokens *out, char *err, size_t err_size);
/* The index of the token `given` is, or -1. Every token is compared over
 * all SERVE_TOKEN_MAX bytes, so the time says nothing of how much matched. */
long serve_tokens_find(const serve_tokens *s, const char *given, size_t len);

/* ---- Failed authentications per client address (auth_fail.c) -------------------- */

struct sockaddr;

#define SERVE_FAIL_SLOTS 4096 /* addresses remembered at once: 160 KiB, whatever comes */
#define SERVE_FAIL_PROBE 8    /* the slots an address may take, from its hash on */

typedef struct serve_fail_slot {
    unsigned char key[16]; /* an IPv4 address (IPv4-mapped form) or an IPv6 address's /64 */
    double bucket, last;   /* failures it may still make; when the bucket was last filled (seconds) */
    bool used;
} serve_fail_slot;

typedef struct serve_fail_table {
    serve_fail_slot slot[SERVE_FAIL_SLOTS];
    uint64_t seed;      /* starts the hash, so that no client can aim its addresses at one slot's neighbours */
    double rate, burst; /* failures a second (0: no limit) and the bucket's size */
} serve_fail_table;

/* Empties the table (rate 0: every call of serve_fail_take allows). */
void serve_fail_init(serve_fail_table *t, double rate, double burst, uint64_t seed);
/* Takes one failure from the bucket of the client at `addr` at time `now`
 * (seconds, monotonic): 0 when it had one (answer 401), else the seconds
 * until it has one again (answer 429). A client the table has no room for
 * takes the slot of the fullest bucket near its hash; an address of
 * another family (a Unix socket) or NULL is never limited. Not
 * thread-safe: the caller holds a lock. */
double serve_fail_take(serve_fail_table *t, const struct sockaddr *addr, double now);

/* Loads what the options name; on failure prints why and returns false. */
bool serve_models_load(const serve_opts *o, serve_models *m);
void serve_models_free(serve_models *m);
qiao_status serve_worker_new(const serve_opts *o, serve_models *m, serve_worker *w);
void serve_worker_free(serve_worker *w);

/* Answers an API route. `id` is the conversation in /v1/conversations/{id}
 * routes; `query_paused` the ?paused= argument; body the parsed request
 * (NULL for a GET). */
void serve_route_api(serve_route route, serve_models *m, serve_worker *w, const char *id, const char *query_paused,
                     const cJSON *body, serve_answer *a);

#endif
