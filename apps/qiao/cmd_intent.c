/* apps/qiao/cmd_intent.c - `qiao intent`: the intent classifier (issue 18,
 * models/intent): train on a business's JSONL examples, evaluate on a
 * labelled file, classify texts. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "models/intent/intent.h"

int cmd_intent(int argc, char **argv);

static void usage(FILE *f) {
    fprintf(f, "usage: qiao intent train --init MODEL.safetensors --data TRAIN.jsonl --out BOT.safetensors\n"
               "                         [--val VAL.jsonl] [--config RECIPE.json] [--resume CKPT] [--ckpt CKPT]\n"
               "                         [--log PREFIX] [--steps N] [--batch B] [--lr X] [--seed S]\n"
               "                         [--eval-every N] [--threads N] [--quiet]\n"
               "       qiao intent eval --model BOT.safetensors --data TEST.jsonl [--json] [--threads N]\n"
               "       qiao intent predict --model BOT.safetensors [--top K] [--json] [--threads N] [TEXT...]\n"
               "  train: fine-tunes MODEL's text tower (qiao's own or an imported encoder such as\n"
               "  multilingual-e5) with a new head over the intents of TRAIN.jsonl (one example per line:\n"
               "  {\"text\": ..., \"intent\": ...}); without --val a stratified tenth is held out. Defaults:\n"
               "  batch 32, 3 epochs, lr 2e-5 for the encoder and 1e-3 for the head; a recipe's \"train\"\n"
               "  object and top-level \"hidden\" and \"scale\" change them. Ctrl-C stops with a checkpoint.\n"
               "  eval: accuracy and macro-F1 on a labelled file. predict: the ranked intents of each TEXT\n"
               "  (or of each line of stdin).\n");
}

static int on_step(const qtr_log *l, void *user) {
    const cli_train_run *r = user;
    cli_train_plot(r, l);
    if (r->quiet)
        return 0;
    const bool line = r->tty || l->validated || l->step == l->steps || l->step % 20 == 0;
    if (line)
        fprintf(stderr, "%s%lld/%lld loss %.4f acc %.3f lr %.2e %.1f texts/s ETA %.0f s", r->tty ? "\r" : "",
                (long long)l->step, (long long)l->steps, (double)l->loss, (double)l->metrics[QMI_M_ACC], (double)l->lr,
                l->samples_per_s, isfinite(l->eta_s) ? l->eta_s : 0.0);
    if (l->validated)
        fprintf(stderr, "  val acc %.4f macro-F1 %.4f", (double)l->val[QMI_V_ACC], (double)l->val[QMI_V_MACRO_F1]);
    if (line && (!r->tty || l->validated || l->step == l->steps))
        fputc('\n', stderr);
    return 0;
}

static int intent_train(int argc, char **argv) {
    cli_train_args a;
    int rc = cli_train_parse("intent train", argc, argv, usage, NULL, NULL, &a);
    if (rc >= 0)
        return rc;
    qmi_train_params p;
    memset(&p, 0, sizeof p);
    char *json = NULL;
    const char *source = NULL;
    /* a recipe, or a resumed run's own; a starting model's config holds no intent recipe */
    qiao_status st = a.recipe || a.resume ? cli_train_config_json(&a, &json, &source) : QIAO_OK;
    if (st == QIAO_OK)
        st = qmi_hparams_from_json(json, source, &p.hp);
    free(json);
    if (st != QIAO_OK)
        return cli_fail(st);
    if (a.steps > 0)
        p.hp.tr.steps = a.steps;
    if (a.batch > 0)
        p.hp.batch = a.batch;
    if (a.seed >= 0)
        p.hp.seed = (uint64_t)a.seed;
    if (a.eval_every >= 0)
        p.hp.tr.eval_every = a.eval_every;
    if (a.lr > 0)
        p.hp.tr.lr = (float)a.lr;
    cli_train_run run;
    if (!cli_train_begin(&run, "intent train", a.data, a.val, a.out, a.ckpt, a.log, a.quiet))
        return 1;
    p.init_path = a.init, p.data_path = a.data, p.val_path = a.val, p.out_path = a.out, p.resume_path = a.resume;
    p.threads = a.threads;
    p.ckpt_path = run.ckpt;
    p.log_path = run.csv_path;
    p.on_step = on_step;
    p.user = &run;
    p.stop = cli_train_start(&run);
    return cli_train_end(&run, qmi_train(&p), a.out);
}

/* --model M, --data F, --top K, --threads N, --json; the rest positional. */
typedef struct intent_opts {
    const char *model, *data;
    int64_t top;
    int threads;
    bool json;
    const char **texts;
    int n_texts;
} intent_opts;

static int parse(const char *cmd, int argc, char **argv, intent_opts *o) {
    memset(o, 0, sizeof *o);
    o->top = 3;
    o->texts = calloc((size_t)argc, sizeof *o->texts);
    if (!o->texts)
        return 1;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        const bool has = i + 1 < argc;
        if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(s, "--model") && has) {
            o->model = argv[++i];
        } else if (!strcmp(s, "--data") && has) {
            o->data = argv[++i];
        } else if (!strcmp(s, "--json")) {
            o->json = true;
        } else if (!strcmp(s, "--top") && has) {
            if (!cli_int_arg(cmd, "--top", argv[++i], 1, 1000, &o->top))
                return 2;
        } else if (!strcmp(s, "--threads") && has) {
            int64_t t = 0;
            if (!cli_int_arg(cmd, "--threads", argv[++i], 0, 1024, &t))
                return 2;
            o->threads = (int)t;
        } else if (s[0] == '-' && s[1]) {
            fprintf(stderr, "qiao %s: unknown option or missing value '%s'\n", cmd, s);
            usage(stderr);
            return 2;
        } else {
            o->texts[o->n_texts++] = s;
        }
    }
    return -1;
}

static int intent_eval(int argc, char **argv) {
    intent_opts o;
    int rc = parse("intent eval", argc, argv, &o);
    if (rc < 0 && (!o.model || !o.data || o.n_texts)) {
        fprintf(stderr, "qiao intent eval: --model and --data are required (and nothing else)\n");
        usage(stderr);
        rc = 2;
    }
    if (rc >= 0) {
        free(o.texts);
        return rc;
    }
    qmod_model *m = NULL;
    qmi_set space, set;
    memset(&space, 0, sizeof space);
    memset(&set, 0, sizeof set);
    qmi_eval e;
    memset(&e, 0, sizeof e);
    qiao_status st = qmod_load(o.model, &m);
    if (st == QIAO_OK)
        st = qmi_model_space(m, &space);
    if (st == QIAO_OK)
        st = qmi_set_load(o.data, &space, &set);
    if (st == QIAO_OK)
        st = qmi_evaluate(m, &set, o.threads, 32, &e);
    if (st == QIAO_OK && o.json) {
        printf("{\"model\": \"%s\", \"examples\": %lld, \"accuracy\": %.6f, \"macro_f1\": %.6f, \"seconds\": %.3f}\n",
               m->cfg.name, (long long)e.n, e.accuracy, e.macro_f1, e.seconds);
    } else if (st == QIAO_OK) {
        printf("%s on %s: %lld examples, accuracy %.4f, macro-F1 %.4f (%.1f s, %.0f texts/s)\n", m->cfg.name, o.data,
               (long long)e.n, e.accuracy, e.macro_f1, e.seconds, e.seconds > 0 ? (double)e.n / e.seconds : 0.0);
    }
    qmi_eval_free(&e);
    qmi_set_free(&set);
    qmi_set_free(&space);
    qmod_free(m);
    free(o.texts);
    return st == QIAO_OK ? 0 : cli_fail(st);
}

/* The `top` most probable classes of p (K of them) into rank[], best first
 * (ties to the lower index); returns how many. */
static int64_t ranked(const float *p, int64_t K, int64_t top, int64_t *rank) {
    int64_t n = 0;
    for (; n < top && n < K; n++) {
        int64_t best = -1;
        for (int64_t k = 0; k < K; k++) {
            bool taken = false;
            for (int64_t j = 0; j < n && !taken; j++)
                taken = rank[j] == k;
            if (!taken && (best < 0 || p[k] > p[best]))
                best = k;
        }
        rank[n] = best;
    }
    return n;
}

static int intent_predict(int argc, char **argv) {
    intent_opts o;
    int rc = parse("intent predict", argc, argv, &o);
    if (rc < 0 && (!o.model || o.data)) {
        fprintf(stderr, "qiao intent predict: --model is required, --data is eval's\n");
        usage(stderr);
        rc = 2;
    }
    if (rc >= 0) {
        free(o.texts);
        return rc;
    }
    qmod_model *m = NULL;
    qiao_status st = qmod_load(o.model, &m);
    const int head = st == QIAO_OK ? qmod_head_find(&m->cfg, QMI_HEAD) : -1;
    if (st == QIAO_OK && head < 0)
        st = qc_error(QIAO_ERR_INVALID_ARGUMENT, "model %s is not an intent classifier", m->cfg.name);
    /* texts: the arguments, else stdin's lines */
    char **lines = NULL;
    size_t n_lines = 0, cap = 0;
    if (st == QIAO_OK && !o.n_texts) {
        char *line = NULL;
        size_t lcap = 0;
        ssize_t got;
        while ((got = getline(&line, &lcap, stdin)) > 0) {
            while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
                line[--got] = '\0';
            if (!got)
                continue;
            if (n_lines == cap) {
                cap = cap ? 2 * cap : 64;
                char **grown = realloc(lines, cap * sizeof *lines);
                if (!grown)
                    break;
                lines = grown;
            }
            lines[n_lines++] = strdup(line);
        }
        free(line);
    }
    const char *const *texts = o.n_texts ? o.texts : (const char *const *)lines;
    const size_t n = o.n_texts ? (size_t)o.n_texts : n_lines;
    const int64_t K = st == QIAO_OK ? m->cfg.heads[head].mlp.classes : 1;
    float *probs = n ? malloc(n * (size_t)K * sizeof *probs) : NULL;
    if (st == QIAO_OK && n && !probs)
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == QIAO_OK && n)
        st = qmi_classify(m, texts, n, o.threads, probs);
    const int64_t top = o.top < K ? o.top : K;
    int64_t *rank = malloc((size_t)top * sizeof *rank);
    if (st == QIAO_OK && !rank) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    for (size_t i = 0; st == QIAO_OK && i < n; i++) {
        const float *p = probs + i * (size_t)K;
        const int64_t got = ranked(p, K, top, rank);
        char buf[QMI_MAX_NAME + 1];
        if (o.json) {
            cJSON *r = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(r, "intents");
            cJSON_AddStringToObject(r, "text", texts[i]);
            for (int64_t t = 0; t < got; t++) {
                cJSON *it = cJSON_CreateObject();
                cJSON_AddStringToObject(it, "intent", qmod_head_label(&m->cfg, head, rank[t], NULL, buf, sizeof buf));
                cJSON_AddNumberToObject(it, "probability", p[rank[t]]);
                cJSON_AddItemToArray(arr, it);
            }
            char *js = cJSON_PrintUnformatted(r);
            if (js)
                puts(js);
            cJSON_free(js);
            cJSON_Delete(r);
        } else {
            printf("%s\n", texts[i]);
            for (int64_t t = 0; t < got; t++)
                printf("  %lld. %-32s %.4f\n", (long long)(t + 1),
                       qmod_head_label(&m->cfg, head, rank[t], NULL, buf, sizeof buf), (double)p[rank[t]]);
        }
    }
    for (size_t i = 0; i < n_lines; i++)
        free(lines[i]);
    free(lines), free(probs), free(o.texts), free(rank);
    qmod_free(m);
    return st == QIAO_OK ? 0 : cli_fail(st);
}

int cmd_intent(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "train"))
        return intent_train(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "eval"))
        return intent_eval(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "predict"))
        return intent_predict(argc - 1, argv + 1);
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 2;
}
