/* libFuzzer target: what a client of `qiao serve` controls (apps/serve).
 * The first byte picks what the rest is:
 *   0: a tokens file (serve_tokens_parse), then a bearer token looked up;
 *   1: a method and a path (serve_route_of);
 *   2: an API route's body: a route, a conversation id up to the first
 *      newline, then the body's bytes parsed as JSON and answered by
 *      serve_route_api with the sample shop's bot loaded (its committed
 *      classifier, a SQLite store and orders in a temporary folder).
 * Every answer must be a status from 200 to 599 with a JSON body, and an
 * error body must name its status; nothing may crash, leak or hang. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apps/serve/serve.h"

static serve_opts g_opts;
static serve_models g_models;
static serve_worker g_worker;
static int g_ready;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    static char dir[] = "/tmp/qiao-fuzz-serve-XXXXXX", store[4096], orders[4096];
    if (!mkdtemp(dir)) return 0;
    snprintf(store, sizeof store, "%s/conv.sqlite", dir);
    snprintf(orders, sizeof orders, "%s/orders.sqlite", dir);
    g_opts.bot = QIAO_SOURCE_DIR "/apps/chatbot/ecommerce.yml";
    g_opts.store = store;
    g_opts.orders = orders;
    g_opts.threads = 1;
    if (!serve_models_load(&g_opts, &g_models)) return 0;
    g_ready = serve_worker_new(&g_opts, &g_models, &g_worker) == QIAO_OK;
    return 0;
}

static void check_answer(const serve_answer *a) {
    if (a->status < 200 || a->status > 599 || !cJSON_IsObject(a->body)) abort();
    if (a->status >= 400) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(a->body, "error");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(e, "status");
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
        if (!cJSON_IsNumber(st) || st->valueint != a->status || !cJSON_IsString(msg)) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    const int mode = data[0] % 3;
    const uint8_t *rest = data + 1;
    const size_t n = size - 1;
    if (mode == 0) {
        FILE *f = fmemopen((void *)rest, n, "r");
        if (!f) return 0;
        serve_tokens t;
        char err[256];
        if (serve_tokens_parse(f, "fuzz", 10, &t, err, sizeof err)) {
            if (t.n == 0) abort();
            for (size_t i = 0; i < t.n; i++)
                if (serve_tokens_find(&t, (const char *)t.t[i].secret, t.t[i].len) < 0) abort();
            if (serve_tokens_find(&t, "", 0) >= 0) abort();
            free(t.t);
        } else if (t.t || t.n || !err[0]) {
            abort();
        }
        fclose(f);
        return 0;
    }
    if (mode == 1) {
        static const char *const methods[] = {"GET", "POST", "DELETE", "PUT", "HEAD"};
        char *url = strndup((const char *)rest + 1, n - 1);
        if (!url) return 0;
        const char *allow = NULL;
        char *id = NULL;
        const serve_route r = serve_route_of(methods[rest[0] % 5], url, &allow, &id);
        if (r >= R_COUNT || (allow && r != R_OTHER)) abort();
        if ((r == R_CONV_GET || r == R_CONV_FORGET || r == R_CONV_HANDOFF || r == R_CONV_RESUME ||
             r == R_CONV_REPLY) &&
            !id)
            abort();
        free(id);
        free(url);
        return 0;
    }
    if (!g_ready) return 0;
    static const serve_route routes[] = {R_PARSE,       R_CHAT,       R_CONV_LIST,  R_CONV_GET,
                                         R_CONV_HANDOFF, R_CONV_RESUME, R_CONV_REPLY, R_CONV_FORGET,
                                         R_EMBED,       R_SEARCH,     R_VQA,        R_CAPTION};
    const serve_route route = routes[rest[0] % (sizeof routes / sizeof *routes)];
    const char *body_start = memchr(rest + 1, '\n', n - 1);
    const size_t id_len = body_start ? (size_t)(body_start - (const char *)rest - 1) : 0;
    char *id = strndup((const char *)rest + 1, id_len);
    const char *b = body_start ? body_start + 1 : (const char *)rest + 1;
    const size_t b_len = (size_t)((const char *)data + size - b);
    cJSON *body = cJSON_ParseWithLength(b, b_len);
    serve_answer a = {0, NULL};
    if (id) serve_route_api(route, &g_models, &g_worker, id, b_len % 2 ? "1" : NULL, body, &a);
    if (id) check_answer(&a);
    cJSON_Delete(a.body);
    cJSON_Delete(body);
    free(id);
    return 0;
}
