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
#include "plot.h"
#include "core/safetensors.h"
#include "models/intent/intent.h"

int cmd_intent(int argc, char **argv);

static void usage(FILE *f) {
    fprintf(f, "usage: qiao intent train --init MODEL.safetensors --data TRAIN.jsonl --out BOT.safetensors\n"
               "                         [--val VAL.jsonl] [--config RECIPE.json] [--resume CKPT] [--ckpt CKPT]\n"
               "                         [--log PREFIX] [--steps N] [--stop-after N] [--batch B] [--lr X] [--seed S]\n"
               "                         [--eval-every N] [--threads N] [--quiet]\n"
               "       qiao intent eval --model BOT.safetensors --data TEST.jsonl [--json] [--confusion PREFIX]\n"
               "                        [--precision P] [--threads N]\n"
               "       qiao intent calibrate --model BOT.safetensors --data VAL.jsonl --out BOT2.safetensors\n"
               "                        [--held-out [--seed S] [--val-fraction F]] [--rejection R]\n"
               "                        [--oos-label L] [--precision P] [--threads N]\n"
               "       qiao intent predict --model BOT.safetensors [--top K] [--threshold T] [--json] [--threads N]\n"
               "                        [--context TURN]... [TEXT...]\n"
               "  train: fine-tunes MODEL's text tower (qiao's own or an imported encoder such as\n"
               "  multilingual-e5) with a new head over the intents of TRAIN.jsonl (one example per line:\n"
               "  {\"text\": ..., \"intent\": ...}); without --val a stratified tenth is held out. Defaults:\n"
               "  batch 32, 3 epochs, lr 2e-5 for the encoder and 1e-3 for the head; a recipe's \"train\"\n"
               "  object and top-level \"hidden\" and \"scale\" change them; top-level \"context\": N reads the\n"
               "  last N earlier turns of each example's \"context\" after its text. Ctrl-C stops with a\n"
               "  checkpoint.\n"
               "  The classifier is calibrated on the validation set at the end (see calibrate).\n"
               "  eval: accuracy, macro-F1, out-of-scope recall and precision, in-scope false rejection and\n"
               "  the calibration error on a labelled file; --confusion writes PREFIX.csv and PREFIX.png.\n"
               "  calibrate: fits the softmax temperature on VAL.jsonl and the out-of-scope threshold that\n"
               "  rejects at most R (default 0.05) of its in-scope texts; L (default \"oos\") is the label,\n"
               "  if the classifier has it, that means out of scope. With --held-out, --data is the training\n"
               "  file and the texts are the stratified part `intent train` held out (its --seed S, default 1,\n"
               "  and val_fraction F, default 0.1): recalibrating a bot after `qiao quantize` or\n"
               "  `qiao prune-vocab` on the texts it was calibrated on. Eval and calibrate compute at the\n"
               "  file's precision (int8 or bf16 GEMMs after quantize), as sessions do, unless --precision\n"
               "  (f32, bf16 or int8) says another. Calibrate writes BOT2 as BOT is, its calibration\n"
               "  changed: every tensor as stored, every other metadata key kept.\n"
               "  predict: the ranked intents of each TEXT (or of each line of stdin), with the confidence,\n"
               "  the margin to the second and the out-of-scope flag (T: a threshold of your own). Each\n"
               "  --context is an earlier turn of the conversation, oldest first, the same for every TEXT\n"
               "  (a classifier trained with context reads its last N; one trained without ignores them).\n");
}

static int on_step(const qtr_log *l, void *user) {
    cli_train_run *r = user;
    const int stop = cli_train_step(r, l);
    if (r->quiet)
        return stop;
    const bool line = r->tty || l->validated || l->step == l->steps || l->step % 20 == 0;
    if (line)
        fprintf(stderr, "%s%lld/%lld loss %.4f acc %.3f lr %.2e %.1f texts/s ETA %.0f s", r->tty ? "\r" : "",
                (long long)l->step, (long long)l->steps, (double)l->loss, (double)l->metrics[QMI_M_ACC], (double)l->lr,
                l->samples_per_s, isfinite(l->eta_s) ? l->eta_s : 0.0);
    if (l->validated)
        fprintf(stderr, "  val acc %.4f macro-F1 %.4f entity-F1 %.4f", (double)l->val[QMI_V_ACC],
                (double)l->val[QMI_V_MACRO_F1], (double)l->val[QMI_V_ENT_F1]);
    if (line && (!r->tty || l->validated || l->step == l->steps))
        fputc('\n', stderr);
    return stop;
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
    run.stop_after = a.stop_after;
    p.init_path = a.init, p.data_path = a.data, p.val_path = a.val, p.out_path = a.out, p.resume_path = a.resume;
    p.threads = a.threads;
    p.ckpt_path = run.ckpt;
    p.log_path = run.csv_path;
    p.on_step = on_step;
    p.user = &run;
    p.stop = cli_train_start(&run);
    return cli_train_end(&run, qmi_train(&p), a.out);
}

/* --model M, --data F, --out F, --confusion P, --top K, --threshold T,
 * --rejection R, --oos-label L, --held-out, --seed S, --val-fraction F,
 * --precision P, --threads N, --json, --context TURN (repeated); the rest
 * positional. */
typedef struct intent_opts {
    const char *model, *data, *out, *confusion, *oos_label;
    int64_t top, seed;
    double threshold, rejection, val_fraction;
    bool held_out;
    const char *precision; /* NULL: the model file's */
    int threads;
    bool json;
    const char **texts;
    int n_texts;
    const char **context; /* the turns before the texts, oldest first */
    int n_context;
} intent_opts;

static int parse(const char *cmd, int argc, char **argv, intent_opts *o) {
    memset(o, 0, sizeof *o);
    o->top = 3;
    o->threshold = -1;
    o->rejection = 0.05;
    o->seed = 1;
    o->val_fraction = 0.1; /* intent train's defaults (models/intent/train.c) */
    o->oos_label = "oos";
    o->texts = calloc((size_t)argc, sizeof *o->texts);
    o->context = calloc((size_t)argc, sizeof *o->context);
    if (!o->texts || !o->context)
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
        } else if (!strcmp(s, "--out") && has) {
            o->out = argv[++i];
        } else if (!strcmp(s, "--confusion") && has) {
            o->confusion = argv[++i];
        } else if (!strcmp(s, "--oos-label") && has) {
            o->oos_label = argv[++i];
        } else if (!strcmp(s, "--context") && has) {
            o->context[o->n_context++] = argv[++i];
        } else if (!strcmp(s, "--threshold") && has) {
            if (!cli_num_arg(cmd, "--threshold", argv[++i], 0, 1, &o->threshold))
                return 2;
        } else if (!strcmp(s, "--rejection") && has) {
            if (!cli_num_arg(cmd, "--rejection", argv[++i], 0, 0.5, &o->rejection))
                return 2;
        } else if (!strcmp(s, "--json")) {
            o->json = true;
        } else if (!strcmp(s, "--precision") && has) {
            o->precision = argv[++i];
            if (strcmp(o->precision, "f32") != 0 && strcmp(o->precision, "bf16") != 0 &&
                strcmp(o->precision, "int8") != 0 && strcmp(o->precision, "model") != 0) {
                fprintf(stderr, "qiao %s: --precision is model, f32, bf16 or int8, not '%s'\n", cmd, o->precision);
                return 2;
            }
        } else if (!strcmp(s, "--held-out")) {
            o->held_out = true;
        } else if (!strcmp(s, "--seed") && has) {
            if (!cli_int_arg(cmd, "--seed", argv[++i], 0, INT64_MAX, &o->seed))
                return 2;
        } else if (!strcmp(s, "--val-fraction") && has) {
            if (!cli_num_arg(cmd, "--val-fraction", argv[++i], 0.001, 0.999, &o->val_fraction))
                return 2;
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

/* The confusion matrix as PREFIX.csv (a header of the predicted labels, a
 * row per true label) and PREFIX.png. */
static qiao_status write_confusion(const char *prefix, const qmod_model *m, const qmi_set *space, const qmi_eval *e) {
    const int K = e->n_labels;
    const size_t n = strlen(prefix) + 5;
    char *csv = malloc(n), *png = malloc(n);
    qiao_status st = csv && png ? QIAO_OK : qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    FILE *f = NULL;
    if (st == QIAO_OK) {
        snprintf(csv, n, "%s.csv", prefix);
        snprintf(png, n, "%s.png", prefix);
        if (!(f = fopen(csv, "w")))
            st = qc_error(QIAO_ERR_IO, "%s: cannot write", csv);
    }
    if (st == QIAO_OK) {
        /* labels are JSON strings from the model: quote them as CSV does */
        fputs("true\\predicted", f);
        for (int j = 0; j < K; j++) {
            fputs(",\"", f);
            for (const char *c = space->labels[j]; *c; c++)
                fputs(*c == '"' ? "\"\"" : (char[2]){*c, 0}, f);
            fputc('"', f);
        }
        fputc('\n', f);
        for (int i = 0; i < K; i++) {
            fputc('"', f);
            for (const char *c = space->labels[i]; *c; c++)
                fputs(*c == '"' ? "\"\"" : (char[2]){*c, 0}, f);
            fputc('"', f);
            for (int j = 0; j < K; j++)
                fprintf(f, ",%lld", (long long)e->confusion[(int64_t)i * K + j]);
            fputc('\n', f);
        }
        if (fclose(f) != 0)
            st = qc_error(QIAO_ERR_IO, "%s: write failed", csv);
    }
    char err[512], title[QMOD_NAME_MAX + 64];
    snprintf(title, sizeof title, "%s: confusion matrix (%lld texts)", m->cfg.name, (long long)e->n);
    if (st == QIAO_OK &&
        plot_confusion(png, title, (const char *const *)space->labels, K, e->confusion, err, sizeof err) != 0)
        st = qc_error(QIAO_ERR_IO, "%s", err);
    free(csv), free(png);
    return st;
}

/* A rate as JSON: null when there is none (NAN). */
static void json_rate(FILE *f, const char *key, double v) {
    if (isfinite(v))
        fprintf(f, ", \"%s\": %.6f", key, v);
    else
        fprintf(f, ", \"%s\": null", key);
}

/* parse()'s result with the subcommand's own check: -1 to go on, else the
 * exit code (usage printed after `bad`'s message when it is not NULL). */
static int checked(int rc, const char *bad, intent_opts *o) {
    if (rc < 0 && bad) {
        fprintf(stderr, "%s\n", bad);
        usage(stderr);
        rc = 2;
    }
    if (rc >= 0)
        free(o->texts), free(o->context);
    return rc;
}

/* The classifier at `model`, computing at `precision` ("f32", "bf16",
 * "int8"; NULL or "model": the file's), and the labelled file at `data`
 * read against its labels (space: the labels, kept for names). */
static qiao_status load_model_and_set(const char *model, const char *data, const char *precision, qmod_model **m,
                                      qmi_set *space, qmi_set *set) {
    memset(space, 0, sizeof *space);
    memset(set, 0, sizeof *set);
    qiao_status st = qmod_load(model, m);
    if (st == QIAO_OK && precision && strcmp(precision, "model") != 0)
        (*m)->precision = !strcmp(precision, "f32")    ? QB_PREC_F32
                          : !strcmp(precision, "bf16") ? QB_PREC_BF16
                                                       : QB_PREC_INT8;
    if (st == QIAO_OK)
        st = qmi_model_space(*m, space);
    if (st == QIAO_OK)
        st = qmi_set_load(data, space, set);
    return st;
}

static int intent_eval(int argc, char **argv) {
    intent_opts o;
    int rc = parse("intent eval", argc, argv, &o);
    rc = checked(rc,
                 !o.model || !o.data || o.n_texts || o.out || o.n_context
                     ? "qiao intent eval: --model and --data are required (and no texts, --out or --context: the "
                       "file's lines carry their context)"
                     : NULL,
                 &o);
    if (rc >= 0)
        return rc;
    qmod_model *m = NULL;
    qmi_set space, set;
    qmi_eval e;
    memset(&e, 0, sizeof e);
    qiao_status st = load_model_and_set(o.model, o.data, o.precision, &m, &space, &set);
    if (st == QIAO_OK)
        st = qmi_evaluate(m, &set, o.threads, 32, &e);
    if (st == QIAO_OK && o.confusion && !e.confusion)
        st = qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: a multi-label classifier has no confusion matrix", o.model);
    if (st == QIAO_OK && o.confusion)
        st = write_confusion(o.confusion, m, &space, &e);
    const int head = st == QIAO_OK ? qmod_head_find(&m->cfg, QMI_HEAD) : -1;
    const bool multi = head >= 0 && m->cfg.heads[head].multi_label;
    if (st == QIAO_OK && o.json) {
        printf("{\"model\": \"%s\", \"examples\": %lld, \"accuracy\": %.6f, \"macro_f1\": %.6f", m->cfg.name,
               (long long)e.n, e.accuracy, e.macro_f1);
        if (multi)
            printf(", \"multi_label\": true, \"micro_f1\": %.6f", e.micro_f1);
        else
            printf(", \"in_scope\": %lld, \"oos\": %lld, \"in_scope_accuracy\": %.6f, \"false_rejection\": %.6f",
                   (long long)e.n_in, (long long)e.n_oos, e.in_scope_accuracy, e.false_rejection);
        json_rate(stdout, "oos_recall", e.oos_recall);
        json_rate(stdout, "oos_precision", e.oos_precision);
        printf(", \"ece_uncalibrated\": %.6f, \"ece\": %.6f, \"nll_uncalibrated\": %.6f, \"nll\": %.6f",
               e.ece_raw, e.ece, e.nll_raw, e.nll);
        if (qmod_head_find(&m->cfg, QMI_ENT_HEAD) >= 0)
            printf(", \"entities\": {\"gold\": %lld, \"found\": %lld, \"right\": %lld, \"precision\": %.6f, "
                   "\"recall\": %.6f, \"f1\": %.6f}",
                   (long long)e.ent_gold, (long long)e.ent_found, (long long)e.ent_right, e.ent_precision,
                   e.ent_recall, e.ent_f1);
        printf(", \"seconds\": %.3f}\n", e.seconds);
    } else if (st == QIAO_OK) {
        const qmod_head_config *h = &m->cfg.heads[head];
        printf("%s on %s: %lld examples (%.1f s, %.0f texts/s)\n", m->cfg.name, o.data, (long long)e.n, e.seconds,
               e.seconds > 0 ? (double)e.n / e.seconds : 0.0);
        if (multi)
            printf("  multi-label: exact match %.4f, micro-F1 %.4f, macro-F1 %.4f (the intents at 0.5 or more)\n",
                   e.accuracy, e.micro_f1, e.macro_f1);
        else
            printf("  accuracy %.4f, macro-F1 %.4f (the top intent)\n", e.accuracy, e.macro_f1);
        if (!multi)
            printf("  out of scope (threshold %.4f%s%s): in-scope accuracy %.4f, false rejection %.4f of %lld in "
                   "scope",
                   (double)h->threshold, h->oos_class >= 0 ? ", label " : "",
                   h->oos_class >= 0 ? space.labels[h->oos_class] : "", e.in_scope_accuracy, e.false_rejection,
                   (long long)e.n_in);
        if (e.n_oos)
            printf(", OOS recall %.4f of %lld", e.oos_recall, (long long)e.n_oos);
        if (isfinite(e.oos_precision))
            printf(", OOS precision %.4f", e.oos_precision);
        if (!multi)
            putchar('\n');
        printf("  calibration (temperature %.3f): ECE %.4f -> %.4f, NLL %.4f -> %.4f\n", (double)h->temperature,
               e.ece_raw, e.ece, e.nll_raw, e.nll);
        if (qmod_head_find(&m->cfg, QMI_ENT_HEAD) >= 0)
            printf("  entities: span precision %.4f, recall %.4f, F1 %.4f (%lld found, %lld in the file, %lld "
                   "equal)\n",
                   e.ent_precision, e.ent_recall, e.ent_f1, (long long)e.ent_found, (long long)e.ent_gold,
                   (long long)e.ent_right);
        if (o.confusion)
            printf("  confusion matrix: %s.csv, %s.png\n", o.confusion, o.confusion);
    }
    qmi_eval_free(&e);
    qmi_set_free(&set);
    qmi_set_free(&space);
    qmod_free(m);
    free(o.texts), free(o.context);
    return st == QIAO_OK ? 0 : cli_fail(st);
}

static int intent_calibrate(int argc, char **argv) {
    intent_opts o;
    int rc = parse("intent calibrate", argc, argv, &o);
    rc = checked(rc,
                 !o.model || !o.data || !o.out || o.n_texts || o.n_context
                     ? "qiao intent calibrate: --model, --data and --out are required (and no texts or --context)"
                     : NULL,
                 &o);
    if (rc >= 0)
        return rc;
    qmod_model *m = NULL;
    qmi_set space, set, train, val;
    memset(&train, 0, sizeof train);
    memset(&val, 0, sizeof val);
    qmi_calibration c;
    qc_st_file *f = NULL;
    qiao_status st = load_model_and_set(o.model, o.data, o.precision, &m, &space, &set);
    /* the same split as training's (qmi_set_split depends only on the file, the fraction and the seed) */
    if (st == QIAO_OK && o.held_out)
        st = qmi_set_split(&set, o.val_fraction, (uint64_t)o.seed, &train, &val);
    if (st == QIAO_OK)
        st = qmi_calibrate(m, o.held_out ? &val : &set, o.threads, o.rejection, o.oos_label, &c);
    /* the file as it is but its config: int8 or bf16 GEMM weights, a pruned
     * vocabulary's record and any other metadata stay */
    if (st == QIAO_OK)
        st = qc_st_open(o.model, &f);
    if (st == QIAO_OK)
        st = qc_st_rewrite(f, o.out, NULL, 0, &(qc_st_kv){QMOD_META_CONFIG, m->cfg.json}, 1);
    qc_st_close(f);
    if (st == QIAO_OK)
        printf("%s calibrated on %lld texts of %s%s: temperature %.4f (NLL %.4f -> %.4f, ECE %.4f -> %.4f), "
               "out-of-scope threshold %.4f -> %s\n",
               m->cfg.name, (long long)c.n, o.held_out ? "the held-out part of " : "", o.data, (double)c.temperature,
               c.nll_before, c.nll_after, c.ece_before, c.ece_after, (double)c.threshold, o.out);
    qmi_set_free(&train);
    qmi_set_free(&val);
    qmi_set_free(&set);
    qmi_set_free(&space);
    qmod_free(m);
    free(o.texts), free(o.context);
    return st == QIAO_OK ? 0 : cli_fail(st);
}

/* Reads stdin's non-empty lines (without their line ends) into *lines. */
static qiao_status stdin_lines(char ***lines, size_t *n) {
    size_t cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t got;
    qiao_status st = QIAO_OK;
    while (st == QIAO_OK && (got = getline(&line, &lcap, stdin)) > 0) {
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
            line[--got] = '\0';
        if (!got)
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(*lines, cap * sizeof **lines);
            if (!grown) {
                st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
                break;
            }
            *lines = grown;
        }
        if (!((*lines)[*n] = strdup(line)))
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
        else
            (*n)++;
    }
    free(line);
    return st;
}

/* predict runs through the public API (qiao.h), as an application would. */
static int intent_predict(int argc, char **argv) {
    intent_opts o;
    int rc = parse("intent predict", argc, argv, &o);
    rc = checked(rc,
                 !o.model || o.data || o.out
                     ? "qiao intent predict: --model is required, --data is eval's, --out calibrate's"
                     : NULL,
                 &o);
    if (rc >= 0)
        return rc;
    qiao_model *model = NULL;
    qiao_session *session = NULL;
    qiao_status st = qiao_model_load(o.model, &model);
    if (st == QIAO_OK && !qiao_model_can_classify(model))
        st = qc_error(QIAO_ERR_INVALID_ARGUMENT, "model %s is not an intent classifier", qiao_model_name(model));
    qiao_session_params sp = qiao_session_default_params();
    sp.n_threads = o.threads;
    if (st == QIAO_OK)
        st = qiao_session_new(model, &sp, &session);
    char **lines = NULL;
    size_t n_lines = 0;
    if (st == QIAO_OK && !o.n_texts)
        st = stdin_lines(&lines, &n_lines);
    const char *const *texts = o.n_texts ? o.texts : (const char *const *)lines;
    const size_t n = o.n_texts ? (size_t)o.n_texts : n_lines;
    qiao_intent_params ip = qiao_intent_default_params();
    ip.top_k = (int)o.top;
    ip.threshold = (float)o.threshold;
    ip.context = o.context;
    ip.n_context = (size_t)o.n_context;
    qiao_intent_result *res = n ? calloc(n, sizeof *res) : NULL;
    if (st == QIAO_OK && n && !res)
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == QIAO_OK && n)
        st = qiao_intent_classify_batch(session, texts, n, &ip, res);
    for (size_t i = 0; st == QIAO_OK && i < n; i++) {
        const qiao_intent_result *r = &res[i];
        if (o.json) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "text", texts[i]);
            cJSON_AddStringToObject(j, "intent", r->intent);
            cJSON_AddNumberToObject(j, "confidence", r->confidence);
            cJSON_AddNumberToObject(j, "margin", r->margin);
            cJSON_AddBoolToObject(j, "out_of_scope", r->out_of_scope);
            cJSON *arr = cJSON_AddArrayToObject(j, "intent_ranking");
            for (size_t t = 0; t < r->n_ranking; t++) {
                cJSON *it = cJSON_CreateObject();
                cJSON_AddStringToObject(it, "name", r->ranking[t].intent);
                cJSON_AddNumberToObject(it, "confidence", r->ranking[t].confidence);
                cJSON_AddItemToArray(arr, it);
            }
            /* Rasa's entity shape: entity, start, end, value, confidence_entity */
            cJSON *ents = cJSON_AddArrayToObject(j, "entities");
            for (size_t t = 0; t < r->n_entities; t++) {
                const qiao_entity *e = &r->entities[t];
                char *value = strndup(texts[i] + e->start, e->end - e->start);
                cJSON *it = cJSON_CreateObject();
                cJSON_AddStringToObject(it, "entity", e->type);
                cJSON_AddNumberToObject(it, "start", (double)e->start);
                cJSON_AddNumberToObject(it, "end", (double)e->end);
                cJSON_AddStringToObject(it, "value", value ? value : "");
                cJSON_AddNumberToObject(it, "confidence_entity", e->confidence);
                cJSON_AddItemToArray(ents, it);
                free(value);
            }
            char *js = cJSON_PrintUnformatted(j);
            if (js)
                puts(js);
            cJSON_free(js);
            cJSON_Delete(j);
        } else {
            printf("%s\n  -> %s (confidence %.4f, margin %.4f)%s\n", texts[i], r->intent, (double)r->confidence,
                   (double)r->margin, r->out_of_scope ? "  OUT OF SCOPE" : "");
            for (size_t t = 0; t < r->n_ranking; t++)
                printf("  %zu. %-32s %.4f\n", t + 1, r->ranking[t].intent, (double)r->ranking[t].confidence);
            for (size_t t = 0; t < r->n_entities; t++)
                printf("  entity %-12s [%zu, %zu) \"%.*s\" %.4f\n", r->entities[t].type, r->entities[t].start,
                       r->entities[t].end, (int)(r->entities[t].end - r->entities[t].start),
                       texts[i] + r->entities[t].start, (double)r->entities[t].confidence);
        }
    }
    for (size_t i = 0; res && i < n; i++)
        qiao_intent_result_free(&res[i]);
    for (size_t i = 0; i < n_lines; i++)
        free(lines[i]);
    free(lines), free(res), free(o.texts), free(o.context);
    qiao_session_free(session);
    qiao_model_free(model);
    return st == QIAO_OK ? 0 : cli_fail(st);
}

int cmd_intent(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "train"))
        return intent_train(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "eval"))
        return intent_eval(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "predict"))
        return intent_predict(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "calibrate"))
        return intent_calibrate(argc - 1, argv + 1);
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 2;
}
