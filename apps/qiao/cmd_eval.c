/* qiao eval retrieval: cross-modal recall@1/5/10 of a model on a shapes
 * split (models/retrieval/eval.h), as a table or as JSON on stdout. Progress goes to
 * stderr, so `--json` output can be piped as is. `qiao eval digits` (spoken
 * digits, cmd_eval_digits.c) is dispatched from here too. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "backend/backend.h"
#include "cli.h"
#include "models/data/data.h"
#include "models/retrieval/eval.h"
#include "models/model.h"

int cmd_eval_digits(int argc, char **argv);
int cmd_eval_vqa(int argc, char **argv);
int cmd_eval_caption(int argc, char **argv);

static void usage(FILE *f) {
    fprintf(f,
            "usage: qiao eval retrieval --model M.safetensors --data DIR [--split test]\n"
            "                           [--pool 1000] [--batch 64] [--threads N] [--no-audio] [--json]\n"
            "                           [--misses FILE.jsonl]\n"
            "  DIR is a split directory (DIR/manifest.jsonl) or a data set root holding\n"
            "  DIR/<split>/manifest.jsonl. The first --pool scenes are ranked against each\n"
            "  other: t2i, i2t, a2i, a2t, i2a per language; a hit is the query's own scene\n"
            "  or one with the same signature; a candidate tied with the hit ranks below it.\n"
            "  --misses writes one JSON line per query whose hit did not rank first: the\n"
            "  direction, language, query and top-ranked scene ids, the rank and both scores.\n"
            "       qiao eval digits --model M.safetensors --data DIR [--threads N] [--json]\n"
            "  spoken-digit accuracy on a `qiao dataset fsdd` split (qiao eval digits --help).\n"
            "       qiao eval vqa --model VQA.safetensors --data DIR [--json] [--robustness]\n"
            "  visual question answering accuracy, typed and spoken (qiao eval vqa --help).\n"
            "       qiao eval caption --model CAP.safetensors --data DIR [--beam K] [--json]\n"
            "  captions' BLEU-4, CIDEr-D and objects against the scene (qiao eval caption --help).\n");
}

static void on_progress(const char *phase, int64_t done, int64_t total, void *user_data) {
    char label[64];
    snprintf(label, sizeof label, "eval: %s", phase);
    cli_progress_show(user_data, label, "items", done, total);
}

typedef struct miss_log {
    FILE *f;
    const qmod_dataset *d;
    int64_t n;
} miss_log;

static void on_miss(const qmod_miss *m, void *user) {
    miss_log *g = user;
    cJSON *o = cJSON_CreateObject();
    if (!o) return;
    cJSON_AddStringToObject(o, "dir", qmod_dir_name(m->dir));
    cJSON_AddStringToObject(o, "lang", qmod_lang_name(m->lang));
    cJSON_AddStringToObject(o, "query", g->d->scenes[m->query].id);
    cJSON_AddStringToObject(o, "top", g->d->scenes[m->top].id);
    cJSON_AddNumberToObject(o, "rank", (double)m->rank);
    cJSON_AddNumberToObject(o, "hit_score", m->hit_score);
    cJSON_AddNumberToObject(o, "top_score", m->top_score);
    char *line = cJSON_PrintUnformatted(o);
    if (line) fprintf(g->f, "%s\n", line);
    cJSON_free(line);
    cJSON_Delete(o);
    g->n++;
}

static void add_recalls(cJSON *o, const double r[QMOD_N_KS], int64_t n) {
    static const char *const keys[QMOD_N_KS] = {"r1", "r5", "r10"};
    for (int k = 0; k < QMOD_N_KS; k++) {
        if (n > 0 && isfinite(r[k])) cJSON_AddNumberToObject(o, keys[k], r[k]);
        else cJSON_AddNullToObject(o, keys[k]);
    }
    cJSON_AddNumberToObject(o, "n", (double)n);
}

static int print_json(const char *model, const char *data, const qmod_retrieval *r) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return 0;
    cJSON_AddStringToObject(root, "model", model);
    cJSON_AddStringToObject(root, "data", data);
    cJSON_AddNumberToObject(root, "pool", (double)r->pool);
    for (int dir = 0; dir < QMOD_N_DIRS; dir++) {
        cJSON *d = cJSON_AddObjectToObject(root, qmod_dir_name(dir));
        int64_t n = 0;
        for (int l = 0; l < QMOD_N_LANGS; l++) n += r->n_queries[l][dir];
        add_recalls(d, r->mean[dir], n);
        for (int l = 0; l < QMOD_N_LANGS; l++)
            add_recalls(cJSON_AddObjectToObject(d, qmod_lang_name(l)), r->recall[l][dir], r->n_queries[l][dir]);
    }
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    if (!s) return 0;
    printf("%s\n", s);
    cJSON_free(s);
    return 1;
}

static void print_row(const char *dir, const char *lang, const double r[QMOD_N_KS], int64_t n) {
    printf("%-4s %-4s %7lld", dir, lang, (long long)n);
    for (int k = 0; k < QMOD_N_KS; k++) {
        if (n > 0 && isfinite(r[k])) printf(" %7.1f", 100.0 * r[k]);
        else printf(" %7s", "-");
    }
    putchar('\n');
}

static void print_table(const char *model, const char *name, const char *data, const qmod_retrieval *r) {
    printf("model %s (%s)\ndata  %s, pool of %lld scenes\n\n", model, name, data, (long long)r->pool);
    printf("%-4s %-4s %7s %7s %7s %7s\n", "dir", "lang", "queries", "R@1 %", "R@5 %", "R@10 %");
    for (int dir = 0; dir < QMOD_N_DIRS; dir++) {
        int64_t n = 0;
        for (int l = 0; l < QMOD_N_LANGS; l++) {
            print_row(qmod_dir_name(dir), qmod_lang_name(l), r->recall[l][dir], r->n_queries[l][dir]);
            n += r->n_queries[l][dir];
        }
        print_row(qmod_dir_name(dir), "all", r->mean[dir], n);
    }
}

static int retrieval(int argc, char **argv) {
    const char *model_path = NULL, *data = NULL, *split = "test", *misses = NULL;
    qmod_eval_params p = qmod_eval_default_params();
    int64_t threads = 0;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t x;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        } else if (!strcmp(a, "--no-audio")) {
            p.audio = false;
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || !v) {
            fprintf(stderr, "qiao eval retrieval: %s: unknown option or missing value\n", a);
            usage(stderr);
            return 2;
        }
        i++;
        if (!strcmp(a, "--model")) {
            model_path = v;
        } else if (!strcmp(a, "--data")) {
            data = v;
        } else if (!strcmp(a, "--split")) {
            split = v;
        } else if (!strcmp(a, "--misses")) {
            misses = v;
        } else if (!strcmp(a, "--pool") && cli_int(v, 1, INT64_MAX, &x)) {
            p.pool = x;
        } else if (!strcmp(a, "--batch") && cli_int(v, 1, 4096, &x)) {
            p.batch = x;
        } else if (!strcmp(a, "--threads") && cli_int(v, 0, 1024, &x)) {
            threads = x;
        } else {
            fprintf(stderr, "qiao eval retrieval: bad option or value: %s %s\n", a, v);
            usage(stderr);
            return 2;
        }
    }
    if (!model_path || !data) {
        fprintf(stderr, "qiao eval retrieval: --model and --data are required\n");
        usage(stderr);
        return 2;
    }

    /* --data names the split directory, or the data set root holding it. */
    char dir[4096];
    cli_split_dir(data, split, dir, sizeof dir);

    qmod_model *m = NULL;
    qiao_status st = qmod_load(model_path, &m);
    if (st != QIAO_OK) return cli_fail(st);
    qmod_dataset d;
    memset(&d, 0, sizeof d);
    if ((st = qmod_dataset_load(dir, &d)) != QIAO_OK) {
        qmod_free(m);
        return cli_fail(st);
    }
    qb_exec ex;
    qb_exec_cpu(&ex, (int)threads);
    cli_progress pr;
    cli_progress_start(&pr);
    p.progress = on_progress;
    p.progress_user = &pr;
    miss_log ml = {NULL, &d, 0};
    if (misses) {
        if (!(ml.f = fopen(misses, "w"))) {
            fprintf(stderr, "qiao eval retrieval: %s: %s\n", misses, strerror(errno));
            qmod_dataset_free(&d);
            qmod_free(m);
            return 1;
        }
        p.on_miss = on_miss;
        p.miss_user = &ml;
    }
    qmod_retrieval r;
    st = qmod_eval_retrieval(&ex, m, &d, &p, &r);
    int rc = 0;
    if (ml.f && fclose(ml.f) != 0 && st == QIAO_OK) {
        fprintf(stderr, "qiao eval retrieval: %s: %s\n", misses, strerror(errno));
        rc = 1;
    }
    if (ml.f && st == QIAO_OK) fprintf(stderr, "eval: %lld misses written to %s\n", (long long)ml.n, misses);
    if (st != QIAO_OK) {
        fputc('\n', stderr);
        rc = cli_fail(st);
    } else {
        fprintf(stderr, "eval: %lld scenes in %.1f s\n", (long long)r.pool, qc_now() - pr.t0);
        if (json) {
            if (!print_json(model_path, dir, &r)) {
                fprintf(stderr, "qiao: out of memory writing JSON\n");
                rc = 1;
            }
        } else {
            print_table(model_path, m->cfg.name, dir, &r);
        }
    }
    qmod_dataset_free(&d);
    qmod_free(m);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "retrieval")) return retrieval(argc - 1, argv + 1);
    if (!strcmp(argv[1], "digits")) return cmd_eval_digits(argc - 1, argv + 1);
    if (!strcmp(argv[1], "vqa")) return cmd_eval_vqa(argc - 1, argv + 1);
    if (!strcmp(argv[1], "caption")) return cmd_eval_caption(argc - 1, argv + 1);
    fprintf(stderr, "qiao eval: unknown evaluation '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
