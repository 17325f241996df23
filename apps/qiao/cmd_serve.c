/* apps/qiao/cmd_serve.c - `qiao serve`: reads the options and runs the
 * HTTP service (apps/serve). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/serve/serve.h"
#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: qiao serve --tokens FILE [--bot BOT.yml [--model M] [--orders F]] [--embed-model M]\n"
            "                  [--index INDEX] [--vqa-model M] [--caption-model M] [--store F | --redis ADDR\n"
            "                  [--redis-prefix P]] [--listen HOST:PORT] [--port-file F] [--workers N] [--threads N]\n"
            "                  [--precision P] [--rate R] [--burst B] [--auth-fail-rate R] [--auth-fail-burst B]\n"
            "                  [--max-body BYTES] [--timeout S] [--max-connections N] [--queue N] [--quiet]\n"
            "  An HTTP service (docs/serve.md): POST /v1/parse, /v1/chat, /v1/embed, /v1/search, /v1/vqa,\n"
            "  /v1/caption; GET/DELETE /v1/conversations/ID, POST .../handoff, .../reply, .../resume,\n"
            "  GET /v1/conversations?paused=1; GET /healthz, /metrics; the chat page at / and the agent\n"
            "  console at /agent. Every /v1 route and /metrics need 'Authorization: Bearer TOKEN' with a\n"
            "  token of FILE (one per line, 16 to 256 characters, an optional name after it; SIGHUP rereads\n"
            "  it). A route whose model is not loaded answers 503.\n"
            "  --listen    default 127.0.0.1:8080 (port 0: any free port, written to --port-file)\n"
            "  --store     the SQLite conversation store (default qiao-serve.sqlite); --redis HOST:PORT\n"
            "              or a socket path shares conversations between several processes\n"
            "  --workers   requests computed at once (default: the cores), each with its own sessions\n"
            "  --threads   kernel threads per request (default 1); --precision model|f32|bf16|int8\n"
            "              the sessions' arithmetic (default: each model file's)\n"
            "  --rate      requests a second per token (default 50; 0: no limit), --burst (default 100)\n"
            "  --auth-fail-rate  failed authentications (a missing or wrong token) a second per client\n"
            "              address before it is answered 429 (default 5; 0: no limit), --auth-fail-burst\n"
            "              (default 20); a good token from the address still passes\n"
            "  --max-body  bytes (default 8 MiB); --timeout seconds for an idle connection or a request\n"
            "              to arrive (default 10); --max-connections (default 1024)\n"
            "  --queue     requests waiting for a worker at most (default 4096); past it, 503 with\n"
            "              Retry-After\n"
            "  SIGTERM or SIGINT: stop accepting, finish the requests in flight, close the stores.\n");
}

int cmd_serve(int argc, char **argv) {
    serve_opts o;
    memset(&o, 0, sizeof o);
    o.listen = "127.0.0.1:8080";
    o.rate = 50, o.burst = 100;
    o.auth_fail_rate = 5, o.auth_fail_burst = 20;
    o.max_body = 8u << 20;
    o.timeout_s = 10;
    o.max_connections = 1024;
    /* At a millisecond or so a classification, seconds of work: a client
     * is better told to come back than kept waiting longer. */
    o.queue_max = 4096;
    o.threads = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **str = !strcmp(a, "--bot")             ? &o.bot
                           : !strcmp(a, "--model")         ? &o.intent_model
                           : !strcmp(a, "--orders")        ? &o.orders
                           : !strcmp(a, "--embed-model")   ? &o.embed_model
                           : !strcmp(a, "--index")         ? &o.index
                           : !strcmp(a, "--vqa-model")     ? &o.vqa_model
                           : !strcmp(a, "--caption-model") ? &o.caption_model
                           : !strcmp(a, "--tokens")        ? &o.tokens
                           : !strcmp(a, "--store")         ? &o.store
                           : !strcmp(a, "--redis")         ? &o.redis
                           : !strcmp(a, "--redis-prefix")  ? &o.redis_prefix
                           : !strcmp(a, "--listen")        ? &o.listen
                           : !strcmp(a, "--port-file")     ? &o.port_file
                                                           : NULL;
        int64_t n = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--quiet")) {
            o.quiet = true;
        } else if (i + 1 >= argc) {
            fprintf(stderr, "qiao serve: %s needs a value (or is unknown)\n", a);
            usage(stderr);
            return 2;
        } else if (str) {
            *str = argv[++i];
        } else if (!strcmp(a, "--workers")) {
            if (!cli_int_arg("serve", a, argv[++i], 0, 256, &n)) return 2;
            o.workers = (int)n;
        } else if (!strcmp(a, "--threads")) {
            if (!cli_int_arg("serve", a, argv[++i], 1, 64, &n)) return 2;
            o.threads = (int)n;
        } else if (!strcmp(a, "--precision")) {
            const char *v = argv[++i];
            o.precision = !strcmp(v, "model") ? QIAO_PRECISION_MODEL
                          : !strcmp(v, "f32") ? QIAO_PRECISION_F32
                          : !strcmp(v, "bf16") ? QIAO_PRECISION_BF16
                          : !strcmp(v, "int8") ? QIAO_PRECISION_INT8
                                               : -1;
            if (o.precision < 0) {
                fprintf(stderr, "qiao serve: --precision is model, f32, bf16 or int8, not '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--rate")) {
            if (!cli_num_arg("serve", a, argv[++i], 0, 1e9, &o.rate)) return 2;
        } else if (!strcmp(a, "--burst")) {
            if (!cli_num_arg("serve", a, argv[++i], 1, 1e9, &o.burst)) return 2;
        } else if (!strcmp(a, "--auth-fail-rate")) {
            if (!cli_num_arg("serve", a, argv[++i], 0, 1e9, &o.auth_fail_rate)) return 2;
        } else if (!strcmp(a, "--auth-fail-burst")) {
            if (!cli_num_arg("serve", a, argv[++i], 1, 1e9, &o.auth_fail_burst)) return 2;
        } else if (!strcmp(a, "--max-body")) {
            if (!cli_int_arg("serve", a, argv[++i], 1024, (int64_t)1 << 30, &n)) return 2;
            o.max_body = (size_t)n;
        } else if (!strcmp(a, "--timeout")) {
            if (!cli_int_arg("serve", a, argv[++i], 1, 3600, &n)) return 2;
            o.timeout_s = (int)n;
        } else if (!strcmp(a, "--queue")) {
            if (!cli_int_arg("serve", a, argv[++i], 1, 1 << 20, &n)) return 2;
            o.queue_max = (long)n;
        } else if (!strcmp(a, "--max-connections")) {
            if (!cli_int_arg("serve", a, argv[++i], 1, 65536, &n)) return 2;
            o.max_connections = (int)n;
        } else {
            fprintf(stderr, "qiao serve: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!o.tokens) {
        fprintf(stderr, "qiao serve: --tokens FILE is required (every /v1 route needs a bearer token)\n");
        usage(stderr);
        return 2;
    }
    if (o.store && o.redis) {
        fprintf(stderr, "qiao serve: --store and --redis are two stores: give one\n");
        return 2;
    }
    if (!o.bot && (o.intent_model || o.orders || o.store || o.redis)) {
        fprintf(stderr, "qiao serve: --model, --orders, --store and --redis go with --bot\n");
        return 2;
    }
    return serve_run(&o);
}
