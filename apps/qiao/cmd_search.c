/* qiao search: cross-modal search over folders of images and audio, and
 * over documents (lines of text files).
 *
 *   qiao search index --model M --out INDEX [--texts FILE]... [--threads N] [--batch 32] [-v] [PATH...]
 *   qiao search query --index INDEX [--model M] (--text T | --image F | --audio F)
 *                     [--top 5] [--kind image|audio|text] [--threads N] [--json]
 *
 * `index` embeds every image and audio file under the paths, and every line
 * of each --texts file, into an index file (search_index.h's search_update,
 * on qiao.h's qiao_index; the incremental rules are qiao_index_add_files';
 * lines are embedded again on every run); rerunning it only embeds the
 * files that are new or changed. Ctrl-C stops after the current batch and
 * writes what is done, so the same command continues later (exit 130).
 * `query` opens the index with its model (qiao_index_open), embeds one
 * text, image or audio file with it and lists the closest items by cosine
 * similarity. A model with prompts (e5) gets them: the query's before the
 * query, the document's before each line. */
#define _POSIX_C_SOURCE 200809L /* sigaction */

#include <math.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "search_index.h"

/* Exit code after Ctrl-C, as a shell reports a process killed by SIGINT. */
#define EXIT_INTERRUPTED 130
/* Progress lines start once a run has lasted this long (seconds). */
#define PROGRESS_AFTER 2.0

static void usage(FILE *f) {
    fprintf(f, "usage: qiao search index --model M --out INDEX [--texts FILE]... [--threads N] [--batch 32] [-v]\n"
               "                         [PATH...]\n"
               "       qiao search query --index INDEX [--model M] (--text T | --image F | --audio F)\n"
               "                         [--top 5] [--kind image|audio|text] [--threads N] [--json]\n"
               "index: INDEX holds the image and audio files under the PATHs and each line of\n"
               "  each --texts FILE (a document per line, UTF-8; blank lines skipped), keyed\n"
               "  FILE:LINE (FILE's absolute path, lines counted from 1).\n");
}

/* The value of option argv[*i]; NULL (after a message) when it is missing. */
static const char *option_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "qiao search: %s needs a value\n", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

/* ---- index ------------------------------------------------------------------- */

static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig) {
    if (g_interrupted) { /* a second Ctrl-C: quit now, as without the handler */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    g_interrupted = 1;
    static const char msg[] = "\nqiao search: stopping after the current batch (Ctrl-C again to quit at once)\n";
    if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0) {
        /* nothing to do about it in a signal handler */
    }
}

static int interrupted(void *user_data) {
    (void)user_data;
    return g_interrupted != 0;
}

typedef struct progress_state {
    int tty;            /* stderr is a terminal: redraw one line */
    double last;        /* seconds of the last line printed; < 0 before the first */
    int texts;          /* the texts' progress has begun */
} progress_state;

static void format_duration(char *buf, size_t cap, double s) {
    if (!(s < 1e7)) snprintf(buf, cap, "?");
    else if (s >= 3600) snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else if (s >= 60) snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, cap, "%ds", (int)s);
}

static void progress_line(const char *unit, int64_t done, int64_t total, int64_t embedded, double seconds,
                          void *user_data) {
    progress_state *ps = user_data;
    bool last = done >= total;
    /* Short runs print nothing; a pipe gets a line every 10 s, a terminal one redrawn each second. */
    if (seconds < PROGRESS_AFTER || (!last && ps->last >= 0 && seconds - ps->last < (ps->tty ? 1.0 : 10.0)))
        return;
    if (last && ps->last < 0 && !ps->tty) return;
    double rate = seconds > 0 ? (double)done / seconds : 0;
    char eta[32];
    format_duration(eta, sizeof eta, rate > 0 ? (double)(total - done) / rate : INFINITY);
    fprintf(stderr, "%sindexing: %lld/%lld %s (%lld embedded), %.1f %s/s, ETA %s%s", ps->tty ? "\r" : "",
            (long long)done, (long long)total, unit, (long long)embedded, rate, unit, eta,
            ps->tty ? (last ? "\n" : "\033[K") : "\n");
    fflush(stderr);
    ps->last = seconds;
}

static void on_progress(int64_t done, int64_t total, int64_t embedded, double seconds, void *user_data) {
    progress_line("files", done, total, embedded, seconds, user_data);
}

static void on_text_progress(int64_t done, int64_t total, int64_t embedded, double seconds, void *user_data) {
    progress_state *ps = user_data;
    if (!ps->texts) { /* the texts' seconds count from their own start */
        ps->texts = 1;
        ps->last = -1;
    }
    progress_line("texts", done, total, embedded, seconds, user_data);
}

static int search_index_cmd(int argc, char **argv) {
    const char *model = NULL, *out = NULL;
    int threads = 0, batch = 32, verbose = 0;
    const char **roots = calloc((size_t)argc, sizeof *roots), **texts = calloc((size_t)argc, sizeof *texts);
    size_t n_roots = 0, n_texts = 0;
    if (!roots || !texts) {
        fprintf(stderr, "qiao search: out of memory\n");
        free(roots);
        free(texts);
        return 1;
    }
    int rc = -1;
    for (int i = 1; i < argc && rc < 0; i++) {
        const char *a = argv[i];
        int64_t n = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            rc = 0;
        } else if (!strcmp(a, "--model")) {
            if (!(model = option_value(argc, argv, &i))) rc = 2;
        } else if (!strcmp(a, "--out")) {
            if (!(out = option_value(argc, argv, &i))) rc = 2;
        } else if (!strcmp(a, "--texts")) {
            if (!(texts[n_texts++] = option_value(argc, argv, &i))) rc = 2;
        } else if (!strcmp(a, "--threads")) {
            if (!cli_int_arg("search", a, i + 1 < argc ? argv[++i] : NULL, 0, 1024, &n)) rc = 2;
            else threads = (int)n;
        } else if (!strcmp(a, "--batch")) {
            if (!cli_int_arg("search", a, i + 1 < argc ? argv[++i] : NULL, 1, 512, &n)) rc = 2;
            else batch = (int)n;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = 1;
        } else if (!strcmp(a, "--")) {
            while (++i < argc) roots[n_roots++] = argv[i];
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "qiao search: unknown option '%s'\n", a);
            rc = 2;
        } else {
            roots[n_roots++] = a;
        }
    }
    if (rc < 0 && (!model || !out || n_roots + n_texts == 0)) {
        fprintf(stderr, "qiao search index: --model, --out and at least one PATH or --texts FILE are required\n");
        rc = 2;
    }
    if (rc >= 0) {
        if (rc == 2) usage(stderr);
        free(roots);
        free(texts);
        return rc;
    }

    progress_state ps = {.tty = isatty(STDERR_FILENO), .last = -1};
    search_update_params p = {.model_path = model, .index_path = out, .roots = roots, .n_roots = n_roots,
                              .text_files = texts, .n_text_files = n_texts, .n_threads = threads, .batch = batch,
                              .verbose = verbose, .progress = on_progress, .text_progress = on_text_progress,
                              .progress_user_data = &ps, .cancel = interrupted};
    /* Ctrl-C finishes the batch and writes the index. Where SIGINT is
     * ignored (a background job of a script), it stays ignored. */
    struct sigaction sa, old_sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESTART; /* reads in flight go on; the flag is polled between batches */
    sigemptyset(&sa.sa_mask);
    g_interrupted = 0;
    bool catch_int = sigaction(SIGINT, NULL, &old_sa) == 0 && old_sa.sa_handler != SIG_IGN;
    if (catch_int) sigaction(SIGINT, &sa, NULL);
    search_update_stats s;
    qiao_status st = search_update(&p, &s);
    if (catch_int) sigaction(SIGINT, &old_sa, NULL);
    free(roots);
    free(texts);
    if (st != QIAO_OK && st != QIAO_ERR_CANCELLED) return cli_fail(st);
    if (st == QIAO_ERR_CANCELLED && !s.written) {
        fprintf(stderr, "qiao search: interrupted; %s left as it was\n", out);
        return EXIT_INTERRUPTED;
    }

    printf("%s: %lld files (%lld images, %lld audio): %lld embedded, %lld unchanged, %lld removed, %lld not indexed",
           out, (long long)(s.images + s.audios), (long long)s.images, (long long)s.audios, (long long)s.embedded,
           (long long)s.kept, (long long)s.removed, (long long)s.failed);
    if (s.skipped_known) printf(", %lld known non-media skipped", (long long)s.skipped_known);
    if (n_texts || s.texts || s.texts_removed) {
        printf("; %lld texts: %lld embedded, %lld removed", (long long)s.texts, (long long)s.texts_embedded,
               (long long)s.texts_removed);
        if (s.texts_failed) printf(", %lld lines not indexed", (long long)s.texts_failed);
    }
    if (s.model_changed) printf(" (another model: everything re-embedded)");
    if (!s.written) printf(" (nothing changed)");
    printf("\n");
    if (st == QIAO_ERR_CANCELLED) {
        if (s.texts_pending)
            fprintf(stderr, "qiao search: interrupted: %lld texts left; run the same command again to continue\n",
                    (long long)s.texts_pending);
        else
            fprintf(stderr, "qiao search: interrupted: %lld files left; run the same command again to continue\n",
                    (long long)s.pending);
        return EXIT_INTERRUPTED;
    }
    return 0;
}

/* ---- query ------------------------------------------------------------------- */

static const char *kind_name(qiao_index_kind kind) {
    return kind == QIAO_INDEX_AUDIO ? "audio" : kind == QIAO_INDEX_TEXT ? "text" : "image";
}

static void print_json(const char *model, const char *qkind, const char *qvalue, const qiao_index_hit *hits,
                       size_t n) {
    cJSON *root = cJSON_CreateObject();
    cJSON *q = cJSON_AddObjectToObject(root, "query");
    cJSON_AddStringToObject(q, qkind, qvalue);
    cJSON_AddStringToObject(root, "model", model);
    cJSON *res = cJSON_AddArrayToObject(root, "results");
    for (size_t k = 0; k < n; k++) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddNumberToObject(r, "rank", (double)(k + 1));
        cJSON_AddStringToObject(r, "path", hits[k].key);
        cJSON_AddStringToObject(r, "kind", kind_name(hits[k].kind));
        /* six decimals: float cosines carry no more, and the JSON stays readable */
        cJSON_AddNumberToObject(r, "score", round((double)hits[k].score * 1e6) / 1e6);
        cJSON_AddItemToArray(res, r);
    }
    char *s = cJSON_Print(root);
    if (s) puts(s);
    cJSON_free(s);
    cJSON_Delete(root);
}

static int search_query_cmd(int argc, char **argv) {
    const char *index = NULL, *model_path = NULL, *qflag = NULL, *qvalue = NULL, *kind = NULL;
    int top = 5, threads = 0, json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int64_t n = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--index") || !strcmp(a, "--model") || !strcmp(a, "--kind")) {
            const char *v = option_value(argc, argv, &i);
            if (!v) return 2;
            if (a[2] == 'i') index = v;
            else if (a[2] == 'm') model_path = v;
            else kind = v;
        } else if (!strcmp(a, "--text") || !strcmp(a, "--image") || !strcmp(a, "--audio")) {
            if (qflag) {
                fprintf(stderr, "qiao search query: one of --text, --image, --audio (got %s and %s)\n", qflag, a);
                return 2;
            }
            if (!(qvalue = option_value(argc, argv, &i))) return 2;
            qflag = a;
        } else if (!strcmp(a, "--top")) {
            if (!cli_int_arg("search", a, i + 1 < argc ? argv[++i] : NULL, 1, 1000000, &n)) return 2;
            else top = (int)n;
        } else if (!strcmp(a, "--threads")) {
            if (!cli_int_arg("search", a, i + 1 < argc ? argv[++i] : NULL, 0, 1024, &n)) return 2;
            else threads = (int)n;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else {
            fprintf(stderr, "qiao search query: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!index || !qflag) {
        fprintf(stderr, "qiao search query: --index and one of --text, --image, --audio are required\n");
        usage(stderr);
        return 2;
    }
    const char *qkind = qflag + 2; /* "text", "image", "audio" */
    qiao_index_query_params qp = qiao_index_query_default_params();
    qp.top_k = (size_t)top;
    if (kind && !strcmp(kind, "image")) qp.kind = QIAO_INDEX_IMAGE;
    else if (kind && !strcmp(kind, "audio")) qp.kind = QIAO_INDEX_AUDIO;
    else if (kind && !strcmp(kind, "text")) qp.kind = QIAO_INDEX_TEXT;
    else if (kind) {
        fprintf(stderr, "qiao search query: --kind is image, audio or text, not '%s'\n", kind);
        return 2;
    }

    qiao_index_params ip = qiao_index_default_params();
    ip.n_threads = threads;
    qiao_index *ix = NULL;
    qiao_status st = qiao_index_open(index, model_path, &ip, &ix);
    if (st == QIAO_ERR_INVALID_ARGUMENT) {
        /* Every argument is there, so the index is another model's. */
        fprintf(stderr, "qiao search: %s: re-index, or pass --model with the model it was built with\n",
                qiao_last_error());
        return 1;
    }
    if (st != QIAO_OK) return cli_fail(st);

    qiao_index_hit *hits = NULL;
    size_t n = 0;
    if (!strcmp(qkind, "text")) st = qiao_index_query_text(ix, qvalue, &qp, &hits, &n);
    else if (!strcmp(qkind, "image")) st = qiao_index_query_image(ix, qvalue, &qp, &hits, &n);
    else st = qiao_index_query_audio(ix, qvalue, &qp, &hits, &n);
    int rc = 0;
    if (st != QIAO_OK) {
        rc = cli_fail(st);
    } else if (json) {
        print_json(qiao_index_model_path(ix), qkind, qvalue, hits, n);
    } else if (n == 0) {
        fprintf(stderr, "qiao search: %s holds no %s\n", index, kind ? kind : "items");
    } else {
        printf("rank  score    kind   path\n");
        for (size_t k = 0; k < n; k++)
            printf("%4zu  %7.4f  %-5s  %s\n", k + 1, (double)hits[k].score, kind_name(hits[k].kind), hits[k].key);
    }
    qiao_index_hits_free(hits);
    qiao_index_free(ix);
    return rc;
}

int cmd_search(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "index")) return search_index_cmd(argc - 1, argv + 1);
    if (!strcmp(argv[1], "query")) return search_query_cmd(argc - 1, argv + 1);
    fprintf(stderr, "qiao search: unknown subcommand '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
