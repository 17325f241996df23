/* apps/qiao/cmd_train_caption.c - `qiao train caption`: the caption decoder
 * trained on an embedding model's image tower (models/captioning), with a
 * progress line, a CSV log and its PNG, and Ctrl-C that stops after the
 * current step with a checkpoint. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "models/answering/answering.h"
#include "models/captioning/captioning.h"

int cmd_train_caption(int argc, char **argv);

static void usage(FILE *f) {
    fprintf(f, "usage: qiao train caption --init MODEL.safetensors --config models/configs/caption.json --data DIR\n"
               "                          --out CAP.safetensors [--val DIR] [--resume CKPT] [--ckpt CKPT]\n"
               "                          [--log PREFIX] [--steps N] [--batch B] [--lr X] [--seed S]\n"
               "                          [--eval-every N] [--threads N] [--loader-threads N] [--quiet]\n"
               "  Trains a caption decoder on MODEL's image tower (a trained embedding model) with the\n"
               "  recipe's decoder section and \"train\" object, or fine-tunes MODEL when it already\n"
               "  writes captions. DIR is a shapes split or a root holding train/ (and val/). --ckpt\n"
               "  defaults to CAP.ckpt.safetensors and --log to CAP (CAP.csv, CAP.png). Ctrl-C stops\n"
               "  after the current step with a checkpoint; --resume CKPT continues where it stopped.\n");
}

static int on_step(const qtr_log *l, void *user) {
    const cli_train_run *r = user;
    cli_train_plot(r, l);
    if (r->quiet) return 0;
    const bool line = r->tty || l->validated || l->step == l->steps || l->step % 50 == 0;
    if (line)
        fprintf(stderr, "%s%lld/%lld loss %.3f token acc %.3f lr %.2e %.1f captions/s ETA %.0f s", r->tty ? "\r" : "",
                (long long)l->step, (long long)l->steps, (double)l->loss, (double)l->metrics[0], (double)l->lr,
                l->samples_per_s, isfinite(l->eta_s) ? l->eta_s : 0.0);
    if (l->validated) fprintf(stderr, "  val loss %.4f token acc %.4f", (double)l->val[0], (double)l->val[1]);
    if (line && (!r->tty || l->validated || l->step == l->steps)) fputc('\n', stderr);
    return 0;
}

/* The recipe's JSON (or the checkpoint's stored config, whose "train" object
 * the run kept) -> hyperparameters. */
static qiao_status read_hparams(const char *path, bool model_file, qmod_cap_hparams *hp) {
    if (model_file) {
        qiao_model_file *f = NULL;
        qiao_status st = qiao_model_file_open(path, &f);
        if (st != QIAO_OK) return st;
        st = qmod_cap_hparams_from_json(qiao_model_file_metadata(f, "qiao.config"), path, hp);
        qiao_model_file_close(f);
        return st;
    }
    char *json = NULL;
    qiao_status st = qmod_vqa_recipe_read(path, &json);
    if (st == QIAO_OK) st = qmod_cap_hparams_from_json(json, path, hp);
    free(json);
    return st;
}

int cmd_train_caption(int argc, char **argv) {
    qmod_cap_train_params p;
    memset(&p, 0, sizeof p);
    const char *data = NULL, *val = NULL, *ckpt = NULL, *logp = NULL;
    long long steps = -1, batch = -1, seed = -1, eval_every = -1;
    double lr = -1;
    int quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--quiet")) {
            quiet = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "qiao train caption: %s needs a value (or is an unknown option)\n", a);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        bool ok = true;
        int64_t x = 0;
        double y = 0;
        if (!strcmp(a, "--config")) p.recipe_path = v;
        else if (!strcmp(a, "--init")) p.init_path = v;
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--val")) val = v;
        else if (!strcmp(a, "--out")) p.out_path = v;
        else if (!strcmp(a, "--resume")) p.resume_path = v;
        else if (!strcmp(a, "--ckpt")) ckpt = v;
        else if (!strcmp(a, "--log")) logp = v;
        else if (!strcmp(a, "--steps")) ok = cli_int_arg("train caption", a, v, 1, INT64_MAX / 2, &x), steps = x;
        else if (!strcmp(a, "--batch")) ok = cli_int_arg("train caption", a, v, 1, 65536, &x), batch = x;
        else if (!strcmp(a, "--seed")) ok = cli_int_arg("train caption", a, v, 0, INT64_MAX, &x), seed = x;
        else if (!strcmp(a, "--eval-every"))
            ok = cli_int_arg("train caption", a, v, 0, INT64_MAX, &x), eval_every = x;
        else if (!strcmp(a, "--lr")) ok = cli_num_arg("train caption", a, v, 1e-9, 10, &y), lr = y;
        else if (!strcmp(a, "--threads")) ok = cli_int_arg("train caption", a, v, 1, 1024, &x), p.threads = (int)x;
        else if (!strcmp(a, "--loader-threads"))
            ok = cli_int_arg("train caption", a, v, 1, 64, &x), p.loader_threads = (int)x;
        else {
            fprintf(stderr, "qiao train caption: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
        if (!ok) return 2;
    }
    if (!data || !p.out_path || (!p.resume_path && !p.init_path)) {
        fprintf(stderr, "qiao train caption: --data, --out and --init (or --resume) are required\n");
        usage(stderr);
        return 2;
    }
    cli_train_run run;
    if (!cli_train_begin(&run, "train caption", data, val, p.out_path, ckpt, logp, quiet)) return 1;
    p.data_dir = run.train_dir;
    p.val_dir = run.val;
    qiao_status st;
    if (p.resume_path)
        st = read_hparams(p.resume_path, true, &p.hp);
    else if (p.recipe_path)
        st = read_hparams(p.recipe_path, false, &p.hp);
    else
        st = read_hparams(p.init_path, true, &p.hp);
    if (st != QIAO_OK) {
        cli_train_free(&run);
        return cli_fail(st);
    }
    if (steps > 0) p.hp.tr.steps = steps;
    if (batch > 0) p.hp.batch = batch;
    if (seed >= 0) p.hp.seed = (uint64_t)seed;
    if (eval_every >= 0) p.hp.tr.eval_every = eval_every;
    if (lr > 0) p.hp.tr.lr = (float)lr;
    p.ckpt_path = run.ckpt;
    p.log_path = run.csv_path;
    p.on_step = on_step;
    p.user = &run;
    p.stop = cli_train_start(&run);
    return cli_train_end(&run, qmod_cap_train(&p), p.out_path);
}
