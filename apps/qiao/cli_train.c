/* apps/qiao/cli_train.c - what the training subcommands (`qiao train vqa`,
 * `qiao train caption`) share (cli.h): their common options and the JSON
 * their hyperparameters come from, and once those are read (cli_train_run)
 * the split folders --data names, the checkpoint and log
 * paths derived from --out, Ctrl-C that stops after the current step with a
 * checkpoint, the curves redrawn at each validation, the closing line. */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "plot.h"

int cli_train_parse(const char *cmd, int argc, char **argv, void (*usage)(FILE *f), const char *const *extra,
                    const char **extra_val, cli_train_args *a) {
    memset(a, 0, sizeof *a);
    a->steps = a->batch = a->seed = a->eval_every = a->stop_after = -1;
    a->lr = -1;
    for (const char *const *e = extra; e && *e; e++) extra_val[e - extra] = NULL;
    static const struct {
        const char *name;
        size_t off;
    } paths[] = {{"--config", offsetof(cli_train_args, recipe)}, {"--init", offsetof(cli_train_args, init)},
                 {"--data", offsetof(cli_train_args, data)},     {"--val", offsetof(cli_train_args, val)},
                 {"--out", offsetof(cli_train_args, out)},       {"--resume", offsetof(cli_train_args, resume)},
                 {"--ckpt", offsetof(cli_train_args, ckpt)},     {"--log", offsetof(cli_train_args, log)}};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(o, "--quiet")) {
            a->quiet = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "qiao %s: %s needs a value (or is an unknown option)\n", cmd, o);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        bool ok = true, known = false;
        int64_t x = 0;
        for (size_t k = 0; k < sizeof paths / sizeof paths[0] && !known; k++)
            if (!strcmp(o, paths[k].name)) *(const char **)((char *)a + paths[k].off) = v, known = true;
        for (const char *const *e = extra; e && *e && !known; e++)
            if (!strcmp(o, *e)) extra_val[e - extra] = v, known = true;
        if (known) continue;
        if (!strcmp(o, "--steps")) ok = cli_int_arg(cmd, o, v, 1, INT64_MAX / 2, &x), a->steps = x;
        else if (!strcmp(o, "--batch")) ok = cli_int_arg(cmd, o, v, 1, 65536, &x), a->batch = x;
        else if (!strcmp(o, "--seed")) ok = cli_int_arg(cmd, o, v, 0, INT64_MAX, &x), a->seed = x;
        else if (!strcmp(o, "--eval-every")) ok = cli_int_arg(cmd, o, v, 0, INT64_MAX, &x), a->eval_every = x;
        else if (!strcmp(o, "--stop-after")) ok = cli_int_arg(cmd, o, v, 1, INT64_MAX / 2, &x), a->stop_after = x;
        else if (!strcmp(o, "--lr")) ok = cli_num_arg(cmd, o, v, 1e-9, 10, &a->lr);
        else if (!strcmp(o, "--threads")) ok = cli_int_arg(cmd, o, v, 1, 1024, &x), a->threads = (int)x;
        else if (!strcmp(o, "--loader-threads")) ok = cli_int_arg(cmd, o, v, 1, 64, &x), a->loader_threads = (int)x;
        else {
            fprintf(stderr, "qiao %s: unknown option %s\n", cmd, o);
            usage(stderr);
            return 2;
        }
        if (!ok) return 2;
    }
    if (!a->data || !a->out || (!a->resume && !a->init)) {
        fprintf(stderr, "qiao %s: --data, --out and --init (or --resume) are required\n", cmd);
        usage(stderr);
        return 2;
    }
    return -1;
}

qiao_status cli_train_config_json(const cli_train_args *a, char **json, const char **source) {
    *json = NULL;
    *source = a->recipe ? a->recipe : a->resume ? a->resume : a->init;
    if (a->recipe) return qtr_recipe_read(a->recipe, json);
    if (a->resume) return qtr_checkpoint_recipe(a->resume, json);
    const char *model = a->init;
    qiao_model_file *f = NULL;
    qiao_status st = qiao_model_file_open(model, &f);
    if (st != QIAO_OK) return st;
    const char *cfg = qiao_model_file_metadata(f, "qiao.config");
    if (cfg && !(*json = strdup(cfg))) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", model);
    qiao_model_file_close(f);
    return st;
}

/* One run per process: the flag and the handler it replaced. */
static volatile sig_atomic_t g_stop = 0;
static struct sigaction g_old;
static void on_sigint(int sig) {
    (void)sig;
    g_stop = 1;
}

bool cli_train_begin(cli_train_run *r, const char *cmd, const char *data, const char *val, const char *out,
                     const char *ckpt, const char *log_prefix, bool quiet) {
    memset(r, 0, sizeof *r);
    r->cmd = cmd;
    r->stop_after = -1;
    r->quiet = quiet;
    r->tty = isatty(2);
    cli_split_dir(data, "train", r->train_dir, sizeof r->train_dir);
    r->val = val;
    if (!val && strcmp(r->train_dir, data) != 0) {
        /* a root holding train/ offers its val/ too */
        cli_split_dir(data, "val", r->val_dir, sizeof r->val_dir);
        char manifest[4200];
        snprintf(manifest, sizeof manifest, "%.4000s/manifest.jsonl", r->val_dir);
        if (cli_is_file(manifest)) r->val = r->val_dir;
    }
    r->ckpt_owned = ckpt ? NULL : cli_derive_path(out, ".ckpt.safetensors");
    r->ckpt = ckpt ? ckpt : r->ckpt_owned;
    r->csv_path = cli_derive_path(log_prefix ? log_prefix : out, ".csv");
    r->png_path = cli_derive_path(log_prefix ? log_prefix : out, ".png");
    if (!r->ckpt || !r->csv_path || !r->png_path) {
        fprintf(stderr, "qiao %s: out of memory\n", cmd);
        cli_train_free(r);
        return false;
    }
    return true;
}

volatile sig_atomic_t *cli_train_start(cli_train_run *r) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    g_stop = 0;
    sigaction(SIGINT, &sa, &g_old);
    r->handler_set = true;
    if (!r->quiet)
        fprintf(stderr, "qiao %s: data %s%s%s, checkpoint %s, log %s\n", r->cmd, r->train_dir,
                r->val ? ", validation " : "", r->val ? r->val : "", r->ckpt, r->csv_path);
    return &g_stop;
}

int cli_train_step(cli_train_run *r, const qtr_log *l) {
    const bool stop = r->stop_after > 0 && l->step >= r->stop_after && l->step < l->steps;
    if (l->validated || l->step == l->steps || stop) {
        char err[256];
        if (plot_training_csv(r->csv_path, r->png_path, err, sizeof err) != 0)
            fprintf(stderr, "\nqiao %s: could not draw %s: %s\n", r->cmd, r->png_path, err);
    }
    r->stopped_as_asked = stop;
    return stop;
}

int cli_train_end(cli_train_run *r, qiao_status st, const char *out) {
    if (r->handler_set) sigaction(SIGINT, &g_old, NULL);
    int rc;
    if (st == QIAO_ERR_CANCELLED && r->stopped_as_asked) {
        fprintf(stderr, "\nqiao %s: stopped after step %lld as --stop-after asked; the checkpoint %s holds it\n",
                r->cmd, r->stop_after, r->ckpt);
        rc = 0;
    } else if (st == QIAO_ERR_CANCELLED) {
        fprintf(stderr, "\nqiao %s: %s\n", r->cmd, qiao_last_error());
        rc = 130;
    } else if (st != QIAO_OK) {
        fputc('\n', stderr);
        rc = cli_fail(st);
    } else {
        fprintf(stderr, "qiao %s: wrote %s (curves: %s, %s)\n", r->cmd, out, r->csv_path, r->png_path);
        rc = 0;
    }
    cli_train_free(r);
    return rc;
}

void cli_train_free(cli_train_run *r) {
    free(r->ckpt_owned), free(r->csv_path), free(r->png_path);
    r->ckpt_owned = r->csv_path = r->png_path = NULL;
    r->ckpt = NULL;
}
