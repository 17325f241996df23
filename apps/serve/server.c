/* apps/serve/server.c - the HTTP side of `qiao serve` on libmicrohttpd: a
 * thread pool of epoll loops that only speak HTTP and hand every request
 * for a model or the store to one queue of jobs, served first come first
 * served by the workers' threads while its connection is suspended (so a
 * loop never holds its other connections behind a computation), bearer
 * tokens compared in constant time and reloaded on SIGHUP, a token bucket
 * per token and one of failed authentications per client address
 * (auth_fail.c), body and time limits, Prometheus metrics, the embedded
 * pages, and a stop on SIGTERM that finishes the requests in flight (the
 * queued ones too) and closes the stores. */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "serve.h"

/* The embedded pages (generated from apps/serve/pages by CMake). */
typedef struct serve_page {
    const char *name;
    const unsigned char *data;
    size_t size;
} serve_page;
extern const serve_page serve_pages[];
extern const size_t serve_n_pages;


static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- Tokens ------------------------------------------------------------------------ */

bool serve_tokens_parse(FILE *f, const char *path, double burst, serve_tokens *out, char *err, size_t err_size) {
    memset(out, 0, sizeof *out);
    char line[1024];
    size_t lineno = 0, cap = 0;
    bool ok = true;
    while (ok && fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(err, err_size, "%s:%zu: the line is too long", path, lineno);
            ok = false;
            break;
        }
        char *save = NULL, *secret = strtok_r(line, " \t\r\n", &save);
        if (!secret || secret[0] == '#') continue;
        char *name = strtok_r(NULL, " \t\r\n", &save);
        const size_t len = strlen(secret);
        bool printable = true;
        for (size_t i = 0; i < len; i++) printable &= secret[i] > 32 && secret[i] < 127;
        if (len < SERVE_TOKEN_MIN || len > SERVE_TOKEN_MAX || !printable) {
            snprintf(err, err_size, "%s:%zu: a token has %d to %d printable ASCII characters", path, lineno,
                     SERVE_TOKEN_MIN, SERVE_TOKEN_MAX);
            ok = false;
            break;
        }
        if (out->n == cap) {
            cap = cap ? 2 * cap : 8;
            serve_token *grown = realloc(out->t, cap * sizeof *grown);
            if (!grown) {
                snprintf(err, err_size, "out of memory");
                ok = false;
                break;
            }
            out->t = grown;
        }
        serve_token *t = &out->t[out->n++];
        memset(t, 0, sizeof *t);
        memcpy(t->secret, secret, len);
        t->len = len;
        snprintf(t->name, sizeof t->name, "%s", name ? name : "");
        if (!name) snprintf(t->name, sizeof t->name, "line%zu", lineno);
        t->bucket = burst, t->last = mono();
    }
    if (ok && out->n == 0) {
        snprintf(err, err_size, "%s: no tokens", path);
        ok = false;
    }
    if (!ok) {
        free(out->t);
        memset(out, 0, sizeof *out);
    }
    return ok;
}

static bool tokens_read(const char *path, double burst, serve_tokens *out, char *err, size_t err_size) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        return false;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && (sb.st_mode & 0077))
        fprintf(stderr, "qiao serve: warning: %s can be read by other users (chmod 600 it)\n", path);
    const bool ok = serve_tokens_parse(f, path, burst, out, err, err_size);
    fclose(f);
    return ok;
}

long serve_tokens_find(const serve_tokens *s, const char *given, size_t len) {
    unsigned char g[SERVE_TOKEN_MAX];
    memset(g, 0, sizeof g);
    if (len > SERVE_TOKEN_MAX) return -1;
    memcpy(g, given, len);
    long found = -1;
    for (size_t i = 0; i < s->n; i++) {
        volatile unsigned diff = (unsigned)(s->t[i].len ^ len);
        for (size_t k = 0; k < SERVE_TOKEN_MAX; k++) diff |= s->t[i].secret[k] ^ g[k];
        found = diff == 0 ? (long)i : found;
    }
    return found;
}

/* ---- Metrics ------------------------------------------------------------------------ */

static const char *const ROUTE_NAMES[R_COUNT] = {"page",           "healthz",      "metrics",     "parse",
                                                 "chat",           "conv_list",    "conv_get",    "conv_handoff",
                                                 "conv_resume",    "conv_reply",   "conv_forget", "embed",
                                                 "search",         "vqa",          "caption",     "other"};
static const int CODES[] = {200, 400, 401, 404, 405, 408, 409, 413, 429, 500, 503};
#define N_CODES (sizeof CODES / sizeof *CODES)
static const double BUCKETS[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10};
#define N_BUCKETS (sizeof BUCKETS / sizeof *BUCKETS)

typedef struct metrics {
    atomic_ulong count[R_COUNT][N_CODES + 1]; /* the last: any other code */
    atomic_ulong le[R_COUNT][N_BUCKETS + 1];  /* per bucket (not cumulative); the last: +Inf */
    atomic_ulong micros[R_COUNT];
    atomic_ulong auth_failures, rate_limited, too_large, timeouts;
    atomic_ulong auth_fail_limited; /* refused 429 for their address's failures (not in auth_failures) */
    atomic_ulong overloaded;        /* refused 503: the queue of jobs was full */
} metrics;

/* ---- The server --------------------------------------------------------------------- */

/* The epoll loops: they parse HTTP and answer only what costs microseconds,
 * so two are plenty whatever the workers; the second keeps one slow page
 * or /metrics from holding the other loop's connections. */
#define N_LOOPS 2

typedef struct request request;
typedef struct server server;

typedef struct worker_thread {
    server *s;
    serve_worker *w; /* its own sessions and store connection, used by this thread alone */
    pthread_t thread;
    bool started;
} worker_thread;

struct server {
    const serve_opts *o;
    serve_models models;
    serve_worker *workers;
    worker_thread *threads;
    int n_workers;
    /* The queue of jobs, first come first served across every connection.
     * queue_mu guards it, each request's job state and answer, and closing. */
    pthread_mutex_t queue_mu;
    pthread_cond_t queue_cv; /* a job was queued, or closing was set */
    pthread_cond_t done_cv;  /* a job was done */
    request *head, *tail;
    long n_queued;
    bool closing; /* no job is computed any more: the workers answer what is queued 503 and leave */
    pthread_rwlock_t tok_lock;
    pthread_mutex_t rate_mu;
    pthread_mutex_t fail_mu; /* the failures table's */
    serve_fail_table fails;
    serve_tokens tokens;
    metrics m;
    atomic_long in_flight;
    double started;
    struct MHD_Daemon *d;
};

typedef enum job_state {
    JOB_NONE,    /* the loop answers the request itself */
    JOB_QUEUED,  /* in the queue, its connection suspended */
    JOB_RUNNING, /* a worker computes its answer */
    JOB_DONE,    /* its answer is in r->answer, its connection resumed or about to be */
} job_state;

struct request {
    serve_route route;
    char *id; /* the {id} of a conversation route */
    char *body;
    size_t len, cap;
    double start;
    size_t dropped; /* bytes of a body over the limit, read and thrown away */
    bool answered, too_large;
    bool suspended; /* its connection waits for a job's answer; read and written by its loop alone */
    /* A job: the loop fills these before queueing it and leaves them alone
     * until its answer is done; a worker reads them in between. */
    struct MHD_Connection *conn;
    char *paused; /* the ?paused= argument, copied: only the loop may read the connection */
    /* Under queue_mu: */
    job_state job;
    request *prev, *next; /* in the queue */
    serve_answer answer;     /* a job's answer, sent by the loop once resumed */
    const char *retry_after; /* its Retry-After header, or NULL */
};

static void count(server *s, request *r, int status) {
    size_t c = N_CODES;
    for (size_t i = 0; i < N_CODES; i++)
        if (CODES[i] == status) c = i;
    atomic_fetch_add(&s->m.count[r->route][c], 1);
    const double dt = mono() - r->start;
    size_t b = N_BUCKETS;
    for (size_t i = 0; i < N_BUCKETS && b == N_BUCKETS; i++)
        if (dt <= BUCKETS[i]) b = i;
    atomic_fetch_add(&s->m.le[r->route][b], 1);
    atomic_fetch_add(&s->m.micros[r->route], (unsigned long)(dt * 1e6));
    if (!s->o->quiet) fprintf(stderr, "%s %d %.2fms\n", ROUTE_NAMES[r->route], status, dt * 1e3);
}

/* Sends `text` (taken: freed by MHD) with `status`. */
static enum MHD_Result send_text(server *s, struct MHD_Connection *c, request *r, int status, char *text,
                                 const char *type, const char *extra_header, const char *extra_value) {
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(text ? strlen(text) : 0, text ? text : (char *)"",
                                        text ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (extra_header) MHD_add_response_header(resp, extra_header, extra_value);
    const enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    r->answered = true;
    count(s, r, status);
    return ret;
}

static enum MHD_Result send_answer(server *s, struct MHD_Connection *c, request *r, serve_answer *a,
                                   const char *extra_header, const char *extra_value) {
    char *text = a->body ? cJSON_PrintUnformatted(a->body) : NULL;
    cJSON_Delete(a->body);
    a->body = NULL;
    if (!text) return send_text(s, c, r, 500, strdup("{\"error\":{\"status\":500,\"message\":\"out of memory\"}}"),
                                "application/json", NULL, NULL);
    return send_text(s, c, r, a->status, text, "application/json; charset=utf-8", extra_header, extra_value);
}

static enum MHD_Result send_error(server *s, struct MHD_Connection *c, request *r, int status, const char *field,
                                  const char *msg, const char *extra_header, const char *extra_value) {
    serve_answer a = {0, NULL};
    serve_error(&a, status, field, "%s", msg);
    return send_answer(s, c, r, &a, extra_header, extra_value);
}

/* ---- Routing ------------------------------------------------------------------------- */

static const serve_page *page_named(const char *name) {
    for (size_t i = 0; i < serve_n_pages; i++)
        if (!strcmp(serve_pages[i].name, name)) return &serve_pages[i];
    return NULL;
}

static const char *page_type(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return "application/octet-stream";
    if (!strcmp(dot, ".html")) return "text/html; charset=utf-8";
    if (!strcmp(dot, ".js")) return "text/javascript; charset=utf-8";
    if (!strcmp(dot, ".css")) return "text/css; charset=utf-8";
    if (!strcmp(dot, ".svg")) return "image/svg+xml";
    if (!strcmp(dot, ".png")) return "image/png";
    if (!strcmp(dot, ".ico")) return "image/x-icon";
    return "application/octet-stream";
}

/* The route for a method and path; *allow names the methods when the path
 * is known but the method is not (405). *id is malloc'd for conversation
 * routes. */
serve_route serve_route_of(const char *method, const char *url, const char **allow, char **id) {
    *allow = NULL, *id = NULL;
    const bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST"),
               del = !strcmp(method, "DELETE");
    static const struct {
        const char *path;
        serve_route route;
        bool post;
    } fixed[] = {{"/healthz", R_HEALTHZ, false}, {"/metrics", R_METRICS, false}, {"/v1/parse", R_PARSE, true},
                 {"/v1/chat", R_CHAT, true},     {"/v1/conversations", R_CONV_LIST, false},
                 {"/v1/embed", R_EMBED, true},   {"/v1/search", R_SEARCH, true}, {"/v1/vqa", R_VQA, true},
                 {"/v1/caption", R_CAPTION, true}};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) {
        if (strcmp(url, fixed[i].path) != 0) continue;
        if (fixed[i].post ? post : get) return fixed[i].route;
        *allow = fixed[i].post ? "POST" : "GET, HEAD";
        return R_OTHER;
    }
    static const char CONV[] = "/v1/conversations/";
    if (!strncmp(url, CONV, sizeof CONV - 1) && url[sizeof CONV - 1]) {
        const char *rest = url + sizeof CONV - 1, *slash = strrchr(rest, '/');
        static const struct {
            const char *name;
            serve_route route;
        } acts[] = {{"handoff", R_CONV_HANDOFF}, {"resume", R_CONV_RESUME}, {"reply", R_CONV_REPLY}};
        for (size_t i = 0; slash && i < sizeof acts / sizeof *acts; i++) {
            if (strcmp(slash + 1, acts[i].name) != 0 || slash == rest) continue;
            if (!post) {
                *allow = "POST";
                return R_OTHER;
            }
            *id = strndup(rest, (size_t)(slash - rest));
            return acts[i].route;
        }
        if (!get && !del) {
            *allow = "GET, HEAD, DELETE";
            return R_OTHER;
        }
        *id = strdup(rest);
        return get ? R_CONV_GET : R_CONV_FORGET;
    }
    if (!strncmp(url, "/v1/", 4) || url[0] != '/') return R_OTHER; /* "*", an absolute URL, "" */
    const char *name = !strcmp(url, "/") ? "index.html" : !strcmp(url, "/agent") ? "agent.html" : url + 1;
    if (page_named(name) && !strchr(name, '/')) {
        if (get) return R_PAGE;
        *allow = "GET, HEAD";
    }
    return R_OTHER;
}

static bool needs_token(serve_route route) { return route != R_PAGE && route != R_HEALTHZ && route != R_OTHER; }

/* 0: allowed; else the seconds to wait. */
static double rate_take(server *s, long tok) {
    if (s->o->rate <= 0) return 0;
    pthread_mutex_lock(&s->rate_mu);
    serve_token *t = &s->tokens.t[tok];
    const double now = mono();
    t->bucket = fmin(s->o->burst, t->bucket + (now - t->last) * s->o->rate);
    t->last = now;
    double wait = 0;
    if (t->bucket >= 1) t->bucket -= 1;
    else wait = (1 - t->bucket) / s->o->rate;
    pthread_mutex_unlock(&s->rate_mu);
    return wait;
}

static char *metrics_text(server *s) {
    pthread_mutex_lock(&s->queue_mu);
    const long n_queued = s->n_queued;
    pthread_mutex_unlock(&s->queue_mu);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
#define EMIT(...)                                                                                  \
    do {                                                                                           \
        for (;;) {                                                                                 \
            const int w = snprintf(out + len, cap - len, __VA_ARGS__);                             \
            if (w >= 0 && (size_t)w < cap - len) {                                                 \
                len += (size_t)w;                                                                  \
                break;                                                                             \
            }                                                                                      \
            char *grown = w >= 0 ? realloc(out, cap * 2) : NULL;                                   \
            if (!grown) {                                                                          \
                free(out);                                                                         \
                return NULL;                                                                       \
            }                                                                                      \
            out = grown, cap *= 2;                                                                 \
        }                                                                                          \
    } while (0)
    EMIT("# HELP qiao_http_requests_total Requests answered, by route and HTTP status.\n"
         "# TYPE qiao_http_requests_total counter\n");
    for (int r = 0; r < R_COUNT; r++)
        for (size_t c = 0; c <= N_CODES; c++) {
            const unsigned long n = atomic_load(&s->m.count[r][c]);
            if (!n) continue;
            if (c < N_CODES) EMIT("qiao_http_requests_total{route=\"%s\",code=\"%d\"} %lu\n", ROUTE_NAMES[r], CODES[c], n);
            else EMIT("qiao_http_requests_total{route=\"%s\",code=\"other\"} %lu\n", ROUTE_NAMES[r], n);
        }
    EMIT("# HELP qiao_http_request_duration_seconds Time from a request's first byte to its answer.\n"
         "# TYPE qiao_http_request_duration_seconds histogram\n");
    for (int r = 0; r < R_COUNT; r++) {
        unsigned long cum = 0, total = 0;
        for (size_t b = 0; b <= N_BUCKETS; b++) total += atomic_load(&s->m.le[r][b]);
        if (!total) continue;
        for (size_t b = 0; b < N_BUCKETS; b++) {
            cum += atomic_load(&s->m.le[r][b]);
            EMIT("qiao_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %lu\n", ROUTE_NAMES[r],
                 BUCKETS[b], cum);
        }
        EMIT("qiao_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %lu\n", ROUTE_NAMES[r], total);
        EMIT("qiao_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", ROUTE_NAMES[r],
             atomic_load(&s->m.micros[r]) * 1e-6);
        EMIT("qiao_http_request_duration_seconds_count{route=\"%s\"} %lu\n", ROUTE_NAMES[r], total);
    }
    EMIT("# HELP qiao_auth_failures_total Requests refused for a missing or wrong token.\n"
         "# TYPE qiao_auth_failures_total counter\nqiao_auth_failures_total %lu\n"
         "# HELP qiao_auth_fail_limited_total Requests with a missing or wrong token refused (429) because their "
         "client address failed too often (not counted in qiao_auth_failures_total).\n"
         "# TYPE qiao_auth_fail_limited_total counter\nqiao_auth_fail_limited_total %lu\n"
         "# HELP qiao_rate_limited_total Requests refused by a token's rate limit.\n"
         "# TYPE qiao_rate_limited_total counter\nqiao_rate_limited_total %lu\n"
         "# HELP qiao_too_large_total Requests refused for their body's size.\n"
         "# TYPE qiao_too_large_total counter\nqiao_too_large_total %lu\n"
         "# HELP qiao_request_timeouts_total Requests dropped for arriving too slowly.\n"
         "# TYPE qiao_request_timeouts_total counter\nqiao_request_timeouts_total %lu\n"
         "# HELP qiao_overloaded_total Requests refused (503) because the queue of jobs was full.\n"
         "# TYPE qiao_overloaded_total counter\nqiao_overloaded_total %lu\n"
         "# HELP qiao_requests_in_flight Requests being answered now.\n"
         "# TYPE qiao_requests_in_flight gauge\nqiao_requests_in_flight %ld\n"
         "# HELP qiao_queue_length Requests waiting for a worker now.\n"
         "# TYPE qiao_queue_length gauge\nqiao_queue_length %ld\n"
         "# HELP qiao_model_load_seconds Time to load the models at start.\n"
         "# TYPE qiao_model_load_seconds gauge\nqiao_model_load_seconds %.3f\n"
         "# HELP qiao_uptime_seconds Seconds since the service started.\n"
         "# TYPE qiao_uptime_seconds gauge\nqiao_uptime_seconds %.1f\n"
         "# HELP qiao_workers Requests the service computes at once.\n"
         "# TYPE qiao_workers gauge\nqiao_workers %d\n",
         atomic_load(&s->m.auth_failures), atomic_load(&s->m.auth_fail_limited), atomic_load(&s->m.rate_limited),
         atomic_load(&s->m.too_large), atomic_load(&s->m.timeouts), atomic_load(&s->m.overloaded),
         atomic_load(&s->in_flight), n_queued, s->models.load_seconds, mono() - s->started, s->n_workers);
#undef EMIT
    return out;
}

static enum MHD_Result answer_health(server *s, struct MHD_Connection *c, request *r) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "status", "ok");
    cJSON_AddStringToObject(j, "version", qiao_version());
    cJSON *m = cJSON_AddObjectToObject(j, "models");
    const serve_models *mo = &s->models;
    cJSON_AddStringToObject(m, "bot", mo->bot ? qiao_bot_name(mo->bot) : "");
    cJSON_AddStringToObject(m, "embed", mo->embed ? qiao_model_name(mo->embed) : "");
    cJSON_AddBoolToObject(m, "search", mo->index != NULL);
    cJSON_AddStringToObject(m, "vqa", mo->vqa ? qiao_model_name(mo->vqa) : "");
    cJSON_AddStringToObject(m, "caption", mo->caption ? qiao_model_name(mo->caption) : "");
    cJSON_AddNumberToObject(j, "workers", s->n_workers);
    serve_answer a = {200, j};
    return send_answer(s, c, r, &a, NULL, NULL);
}

/* ---- The queue of jobs ------------------------------------------------------------- */

static void queue_unlink(server *s, request *r) {
    if (r->prev) r->prev->next = r->next;
    else s->head = r->next;
    if (r->next) r->next->prev = r->prev;
    else s->tail = r->prev;
    r->prev = r->next = NULL;
    s->n_queued--;
}

/* A job's answer: the body read as UTF-8 JSON, then the route, on the
 * worker's sessions. Parsing is here, not on the loop: an 8 MiB body takes
 * milliseconds. */
static void compute(server *s, serve_worker *w, request *r, serve_answer *a) {
    cJSON *body = NULL;
    if (r->len) {
        const char *nul = memchr(r->body, 0, r->len);
        const size_t bad = nul ? (size_t)(nul - r->body) : serve_utf8_check(r->body, r->len);
        if (bad != r->len) {
            serve_error(a, 400, NULL, "the body is not UTF-8 text (byte %zu)", bad);
            return;
        }
        const char *end = NULL;
        body = cJSON_ParseWithLengthOpts(r->body, r->len, &end, 0);
        while (body && end && end < r->body + r->len && (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t'))
            end++;
        if (!body || end != r->body + r->len) {
            const bool trailing = body != NULL;
            cJSON_Delete(body);
            serve_error(a, 400, NULL, "%s",
                        trailing ? "the body is not one JSON value (text after it)" : "the body is not JSON");
            return;
        }
    }
    serve_route_api(r->route, &s->models, w, r->id, r->paused, body, a);
    cJSON_Delete(body);
    if (!a->body) serve_error(a, 500, NULL, "the route gave no answer");
}

/* A worker's thread: takes the oldest job, computes its answer, hands it to
 * the request and resumes the connection, whose loop then sends it. */
static void *worker_main(void *arg) {
    worker_thread *wt = arg;
    server *s = wt->s;
    pthread_mutex_lock(&s->queue_mu);
    for (;;) {
        while (!s->head && !s->closing) pthread_cond_wait(&s->queue_cv, &s->queue_mu);
        request *r = s->head;
        if (!r) break; /* closing, and nothing left to answer */
        queue_unlink(s, r);
        r->job = JOB_RUNNING;
        const bool closing = s->closing;
        pthread_mutex_unlock(&s->queue_mu);
        serve_answer a = {500, NULL};
        if (closing) serve_error(&a, 503, NULL, "the service is stopping");
        else compute(s, wt->w, r, &a);
        pthread_mutex_lock(&s->queue_mu);
        r->answer = a;
        r->job = JOB_DONE;
        struct MHD_Connection *c = r->conn;
        pthread_cond_broadcast(&s->done_cv);
        pthread_mutex_unlock(&s->queue_mu);
        /* Called outside queue_mu, so no lock of ours is ever held inside
         * libmicrohttpd. The connection is still valid: libmicrohttpd neither
         * watches nor closes a suspended connection, and serve_run stops the
         * daemon only after joining the workers. From here on its loop may
         * send the answer and free the request: r is not touched again. */
        MHD_resume_connection(c);
        pthread_mutex_lock(&s->queue_mu);
    }
    pthread_mutex_unlock(&s->queue_mu);
    return NULL;
}

/* Stops the workers: what is still queued is answered 503 (the service is
 * stopping) and every running job finishes, so that no connection is left
 * suspended when the daemon stops. */
static void workers_stop(server *s) {
    pthread_mutex_lock(&s->queue_mu);
    s->closing = true;
    pthread_cond_broadcast(&s->queue_cv);
    pthread_mutex_unlock(&s->queue_mu);
    for (int i = 0; s->threads && i < s->n_workers; i++)
        if (s->threads[i].started) pthread_join(s->threads[i].thread, NULL), s->threads[i].started = false;
}

/* The whole request is in (its token and size were checked at its first
 * call): the cheap routes are answered here, the others queued for a
 * worker with their connection suspended until the answer is in. */
static enum MHD_Result answer(server *s, struct MHD_Connection *c, request *r) {
    switch (r->route) {
    case R_HEALTHZ: return answer_health(s, c, r);
    case R_METRICS: {
        char *text = metrics_text(s);
        if (!text) return send_error(s, c, r, 503, NULL, "out of memory", NULL, NULL);
        return send_text(s, c, r, 200, text, "text/plain; version=0.0.4; charset=utf-8", NULL, NULL);
    }
    default: break;
    }
    const char *paused = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "paused");
    if (paused && !(r->paused = strdup(paused))) return send_error(s, c, r, 503, NULL, "out of memory", NULL, NULL);
    r->conn = c;
    /* Suspended before a worker can see the job: a worker's resume must
     * come after the suspend. A refused job is resumed by the loop itself
     * and answered on the next call, like any other. */
    MHD_suspend_connection(c);
    r->suspended = true;
    pthread_mutex_lock(&s->queue_mu);
    const bool full = s->n_queued >= s->o->queue_max, refused = full || s->closing;
    if (refused) {
        r->job = JOB_DONE;
    } else {
        r->job = JOB_QUEUED;
        r->prev = s->tail;
        if (s->tail) s->tail->next = r;
        else s->head = r;
        s->tail = r;
        s->n_queued++;
        pthread_cond_signal(&s->queue_cv);
    }
    pthread_mutex_unlock(&s->queue_mu);
    if (refused) {
        if (full) {
            atomic_fetch_add(&s->m.overloaded, 1);
            serve_error(&r->answer, 503, NULL, "the service is overloaded (%ld requests wait for a worker)",
                        s->o->queue_max);
            r->retry_after = "1";
        } else {
            serve_error(&r->answer, 503, NULL, "the service is stopping");
        }
        MHD_resume_connection(c);
    }
    return MHD_YES;
}

/* The access handler's call after a job's connection was resumed: the
 * answer is sent from the loop, which alone may queue it. */
static enum MHD_Result answer_job(server *s, struct MHD_Connection *c, request *r) {
    pthread_mutex_lock(&s->queue_mu);
    const bool done = r->job == JOB_DONE;
    serve_answer a = r->answer;
    const char *retry = r->retry_after;
    if (done) r->answer.body = NULL;
    pthread_mutex_unlock(&s->queue_mu);
    /* Resumed only once done; anything else would be a bug, and closing the
     * connection (on_completed waits for the job) is the safe way out. */
    if (!done) return MHD_NO;
    r->suspended = false;
    return send_answer(s, c, r, &a, retry ? MHD_HTTP_HEADER_RETRY_AFTER : NULL, retry);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    server *s = cls;
    request *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        *con_cls = r;
        r->start = mono();
        atomic_fetch_add(&s->in_flight, 1);
        const char *allow = NULL;
        r->route = serve_route_of(method, url, &allow, &r->id);
        if (r->route == R_OTHER) {
            if (allow) return send_error(s, c, r, 405, NULL, "method not allowed", MHD_HTTP_HEADER_ALLOW, allow);
            return send_error(s, c, r, 404, NULL, "no such route", NULL, NULL);
        }
        if ((r->route == R_CONV_GET || r->route == R_CONV_FORGET || r->route == R_CONV_HANDOFF ||
             r->route == R_CONV_RESUME || r->route == R_CONV_REPLY) &&
            !r->id)
            return send_error(s, c, r, 503, NULL, "out of memory", NULL, NULL);
        if (r->route == R_PAGE) {
            const serve_page *p = page_named(!strcmp(url, "/") ? "index.html" : !strcmp(url, "/agent") ? "agent.html"
                                                                                                          : url + 1);
            struct MHD_Response *resp =
                MHD_create_response_from_buffer(p->size, (void *)p->data, MHD_RESPMEM_PERSISTENT);
            if (!resp) return MHD_NO;
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, page_type(p->name));
            MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
            MHD_add_response_header(resp, "X-Frame-Options", "DENY");
            MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
            MHD_add_response_header(resp, "Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                                    "frame-ancestors 'none'");
            const enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
            MHD_destroy_response(resp);
            r->answered = true;
            count(s, r, 200);
            return ret;
        }
        if (needs_token(r->route)) {
            /* Checked before the body is read, so no one without a token can
             * make the service read a megabyte. */
            const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
            long tok = -1;
            pthread_rwlock_rdlock(&s->tok_lock);
            if (auth && !strncmp(auth, "Bearer ", 7)) tok = serve_tokens_find(&s->tokens, auth + 7, strlen(auth + 7));
            double wait = tok >= 0 ? rate_take(s, tok) : 0;
            pthread_rwlock_unlock(&s->tok_lock);
            if (tok < 0) {
                /* Only a failure takes from its address's bucket, so a good
                 * token from that address still passes. */
                const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
                pthread_mutex_lock(&s->fail_mu);
                const double fail_wait = serve_fail_take(&s->fails, ci ? ci->client_addr : NULL, mono());
                pthread_mutex_unlock(&s->fail_mu);
                if (fail_wait > 0) {
                    atomic_fetch_add(&s->m.auth_fail_limited, 1);
                    char after[32];
                    snprintf(after, sizeof after, "%d", (int)fmax(1, ceil(fail_wait)));
                    return send_error(s, c, r, 429, NULL,
                                      "too many failed authentications from this address: slow down",
                                      MHD_HTTP_HEADER_RETRY_AFTER, after);
                }
                atomic_fetch_add(&s->m.auth_failures, 1);
                return send_error(s, c, r, 401, NULL,
                                  auth ? "the bearer token is not valid" : "an Authorization: Bearer header is needed",
                                  MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"qiao\"");
            }
            if (wait > 0) {
                atomic_fetch_add(&s->m.rate_limited, 1);
                char after[32];
                snprintf(after, sizeof after, "%d", (int)ceil(wait));
                return send_error(s, c, r, 429, NULL, "too many requests for this token: slow down",
                                  MHD_HTTP_HEADER_RETRY_AFTER, after);
            }
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > s->o->max_body) {
            atomic_fetch_add(&s->m.too_large, 1);
            char msg[96];
            snprintf(msg, sizeof msg, "the body is larger than %zu bytes", s->o->max_body);
            return send_error(s, c, r, 413, NULL, msg, NULL, NULL);
        }
        return MHD_YES;
    }
    if (r->suspended) return answer_job(s, c, r);
    if (r->answered) {
        *upload_size = 0; /* the rest of a refused body is dropped */
        return MHD_YES;
    }
    if (*upload_size) {
        /* libmicrohttpd takes no answer before the whole body is in: a body
         * arriving too slowly ends the connection, and one over the limit
         * (chunked, so its size was not known at the start) is read and
         * thrown away, up to a bound, to answer 413 at its end. */
        if (mono() - r->start > s->o->timeout_s) {
            atomic_fetch_add(&s->m.timeouts, 1);
            return MHD_NO;
        }
        if (r->too_large || r->len + *upload_size > s->o->max_body) {
            r->too_large = true;
            r->dropped += *upload_size;
            *upload_size = 0;
            return r->dropped > 16 * s->o->max_body ? MHD_NO : MHD_YES;
        }
        if (r->len + *upload_size + 1 > r->cap) {
            size_t cap = r->cap ? r->cap : 4096;
            while (cap < r->len + *upload_size + 1) cap *= 2;
            char *grown = realloc(r->body, cap);
            if (!grown) return MHD_NO;
            r->body = grown, r->cap = cap;
        }
        memcpy(r->body + r->len, upload, *upload_size);
        r->len += *upload_size;
        r->body[r->len] = 0;
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->too_large) {
        atomic_fetch_add(&s->m.too_large, 1);
        char msg[96];
        snprintf(msg, sizeof msg, "the body is larger than %zu bytes", s->o->max_body);
        return send_error(s, c, r, 413, NULL, msg, MHD_HTTP_HEADER_CONNECTION, "close");
    }
    return answer(s, c, r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode why) {
    (void)c, (void)why;
    server *s = cls;
    request *r = *con_cls;
    if (!r) return;
    if (r->suspended) {
        /* Its answer was not sent. Normally its job is done (the daemon
         * stopped right after the resume, or the client left once resumed):
         * libmicrohttpd does not close a suspended connection. Were it ever
         * to, a queued job is taken out and a running one waited for, so
         * that no worker writes to a freed request. */
        pthread_mutex_lock(&s->queue_mu);
        if (r->job == JOB_QUEUED) queue_unlink(s, r), r->job = JOB_DONE;
        while (r->job == JOB_RUNNING) pthread_cond_wait(&s->done_cv, &s->queue_mu);
        pthread_mutex_unlock(&s->queue_mu);
    }
    atomic_fetch_sub(&s->in_flight, 1);
    cJSON_Delete(r->answer.body);
    free(r->paused);
    free(r->id);
    free(r->body);
    free(r);
    *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    fputs("qiao serve: libmicrohttpd: ", stderr);
    vfprintf(stderr, fmt, ap);
}

/* ---- Starting and stopping ---------------------------------------------------------- */

static bool parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *len) {
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen || (size_t)(colon - listen) >= sizeof host || !colon[1]) return false;
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = 0;
    char *h = host;
    if (h[0] == '[' && h[strlen(h) - 1] == ']') h[strlen(h) - 1] = 0, h++;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC, hints.ai_socktype = SOCK_STREAM, hints.ai_flags = AI_PASSIVE;
    if (getaddrinfo(h, colon + 1, &hints, &res) != 0 || !res) return false;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return true;
}

static bool is_loopback(const struct sockaddr_storage *ss) {
    if (ss->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
    if (ss->ss_family == AF_INET6) {
        static const unsigned char lo[16] = {[15] = 1};
        return !memcmp(&((const struct sockaddr_in6 *)ss)->sin6_addr, lo, 16);
    }
    return false;
}

/* The service's threads, the main one included, block the signals, and
 * the main thread takes them with sigtimedwait. A thread a library started
 * before main (OpenBLAS's) may still be given one: there the handler
 * writes the signal's number to a pipe the main thread also reads (a
 * synchronous wait, not a handler, in the main thread: ThreadSanitizer
 * defers handlers while a thread is blocked in a call it does not know). */
static int g_signal_pipe[2] = {-1, -1};

static void on_signal(int sig) {
    const int saved = errno;
    const unsigned char b = (unsigned char)sig;
    if (write(g_signal_pipe[1], &b, 1) < 0) { /* full: a signal is already waiting */
    }
    errno = saved;
}

/* The next signal, waiting at most timeout_s (< 0: for ever); 0 when none came. */
static int next_signal(const sigset_t *sigs, double timeout_s) {
    for (;;) {
        unsigned char b = 0;
        if (read(g_signal_pipe[0], &b, 1) == 1) return b;
        const double wait = timeout_s < 0 || timeout_s > 0.25 ? 0.25 : timeout_s;
        const struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
        const int sig = sigtimedwait(sigs, NULL, &ts);
        if (sig > 0) return sig;
        if (read(g_signal_pipe[0], &b, 1) == 1) return b;
        if (timeout_s >= 0) return 0;
    }
}

static bool write_port_file(const char *path, unsigned port) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return false;
    const bool ok = fprintf(f, "%u\n", port) > 0;
    if (fclose(f) != 0 || !ok) return false;
    return rename(tmp, path) == 0;
}

int serve_run(const serve_opts *o) {
    server *s = calloc(1, sizeof *s);
    if (!s) {
        fprintf(stderr, "qiao serve: out of memory\n");
        return 1;
    }
    s->o = o;
    s->started = mono();
    pthread_mutex_init(&s->queue_mu, NULL);
    pthread_cond_init(&s->queue_cv, NULL);
    pthread_cond_init(&s->done_cv, NULL);
    pthread_rwlock_init(&s->tok_lock, NULL);
    pthread_mutex_init(&s->rate_mu, NULL);
    pthread_mutex_init(&s->fail_mu, NULL);
    uint64_t seed = 0;
    /* Without getrandom (an old kernel), the clock: no client chooses it. */
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
        seed = (uint64_t)(mono() * 1e9) ^ ((uint64_t)getpid() << 32);
    serve_fail_init(&s->fails, o->auth_fail_rate, o->auth_fail_burst, seed);
    int rc = 1;
    char err[512];
    struct sockaddr_storage ss;
    socklen_t ss_len = 0;
    if (g_signal_pipe[0] < 0 && pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        fprintf(stderr, "qiao serve: pipe: %s\n", strerror(errno));
        free(s);
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL), sigaction(SIGINT, &sa, NULL), sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigset_t sigs, old_mask;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM), sigaddset(&sigs, SIGINT), sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, &old_mask); /* inherited by every thread started from here */
    if (!parse_listen(o->listen, &ss, &ss_len)) {
        fprintf(stderr, "qiao serve: --listen %s: give HOST:PORT (e.g. 127.0.0.1:8080)\n", o->listen);
        goto out;
    }
    if (!tokens_read(o->tokens, o->burst, &s->tokens, err, sizeof err)) {
        fprintf(stderr, "qiao serve: --tokens: %s\n", err);
        goto out;
    }
    if (!serve_models_load(o, &s->models)) goto out;
    s->n_workers = o->workers > 0 ? o->workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (s->n_workers < 1) s->n_workers = 1;
    s->workers = calloc((size_t)s->n_workers, sizeof *s->workers);
    s->threads = calloc((size_t)s->n_workers, sizeof *s->threads);
    if (!s->workers || !s->threads) {
        fprintf(stderr, "qiao serve: out of memory\n");
        goto out;
    }
    for (int i = 0; i < s->n_workers; i++) {
        const qiao_status st = serve_worker_new(o, &s->models, &s->workers[i]);
        if (st != QIAO_OK) {
            fprintf(stderr, "qiao serve: a worker's sessions: %s: %s\n", qiao_status_str(st), qiao_last_error());
            goto out;
        }
    }
    for (int i = 0; i < s->n_workers; i++) {
        worker_thread *wt = &s->threads[i];
        wt->s = s, wt->w = &s->workers[i];
        const int err_no = pthread_create(&wt->thread, NULL, worker_main, wt);
        if (err_no != 0) {
            fprintf(stderr, "qiao serve: a worker's thread: %s\n", strerror(err_no));
            goto out;
        }
        wt->started = true;
    }
    if (!is_loopback(&ss))
        fprintf(stderr, "qiao serve: warning: listening beyond this machine (%s) without TLS: put a TLS proxy "
                        "in front\n", o->listen);
    /* MHD_ALLOW_SUSPEND_RESUME sets MHD_USE_ITC, which lets a worker's
     * MHD_resume_connection wake the connection's loop. */
    const unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                           MHD_USE_ERROR_LOG | (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    s->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned)N_LOOPS, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)o->timeout_s, MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_connections,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u,
                            MHD_OPTION_END);
    if (!s->d) {
        fprintf(stderr, "qiao serve: cannot listen on %s (in use, or not this machine's address)\n", o->listen);
        goto out;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    const unsigned port = info ? info->port : 0;
    if (o->port_file && !write_port_file(o->port_file, port)) {
        fprintf(stderr, "qiao serve: cannot write --port-file %s: %s\n", o->port_file, strerror(errno));
        goto out;
    }
    fprintf(stderr, "qiao serve: listening on %s (port %u), %d workers, %zu tokens, models loaded in %.2f s\n",
            o->listen, port, s->n_workers, s->tokens.n, s->models.load_seconds);
    for (;;) {
        const int sig = next_signal(&sigs, -1);
        if (sig == SIGHUP) {
            serve_tokens fresh;
            if (!tokens_read(o->tokens, o->burst, &fresh, err, sizeof err)) {
                fprintf(stderr, "qiao serve: SIGHUP: the tokens stay as they were: %s\n", err);
                continue;
            }
            pthread_rwlock_wrlock(&s->tok_lock);
            serve_tokens old = s->tokens;
            s->tokens = fresh;
            pthread_rwlock_unlock(&s->tok_lock);
            free(old.t);
            fprintf(stderr, "qiao serve: SIGHUP: %zu tokens\n", fresh.n);
            continue;
        }
        if (sig != SIGTERM && sig != SIGINT) continue;
        fprintf(stderr, "qiao serve: %s: finishing the requests in flight (again: stop now)\n",
                sig == SIGTERM ? "SIGTERM" : "SIGINT");
        break;
    }
    /* Stop accepting, let the requests in flight finish, the queued ones
     * too (at most the timeout), then answer what is still queued 503, close
     * every connection and the stores. */
    const MHD_socket lfd = MHD_quiesce_daemon(s->d);
    if (lfd != MHD_INVALID_SOCKET) close(lfd);
    const double until = mono() + o->timeout_s;
    while (atomic_load(&s->in_flight) > 0 && mono() < until) {
        const int sig = next_signal(&sigs, 0.005);
        if (sig == SIGTERM || sig == SIGINT) break;
    }
    if (atomic_load(&s->in_flight) > 0)
        fprintf(stderr, "qiao serve: %ld requests still in flight after %d s: closing them\n",
                atomic_load(&s->in_flight), o->timeout_s);
    rc = 0;
out:
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    /* The workers first: libmicrohttpd must not be stopped with a
     * connection suspended (microhttpd.h), and every job's connection is
     * resumed by the time its worker leaves. A keep-alive connection's next
     * request meanwhile is refused 503 without waiting for a worker. */
    workers_stop(s);
    if (s->d) MHD_stop_daemon(s->d);
    for (int i = 0; s->workers && i < s->n_workers; i++) serve_worker_free(&s->workers[i]);
    free(s->workers);
    free(s->threads);
    serve_models_free(&s->models);
    free(s->tokens.t);
    pthread_mutex_destroy(&s->queue_mu);
    pthread_cond_destroy(&s->queue_cv);
    pthread_cond_destroy(&s->done_cv);
    pthread_rwlock_destroy(&s->tok_lock);
    pthread_mutex_destroy(&s->rate_mu);
    pthread_mutex_destroy(&s->fail_mu);
    free(s);
    if (rc == 0) fprintf(stderr, "qiao serve: stopped\n");
    return rc;
}
