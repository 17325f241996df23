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
               "                          [--log PREFIX] [--steps N] [--stop-after N] [--batch B] [--lr X] [--seed S]\n"
               "                          [--eval-every N] [--threads N] [--loader-threads N] [--quiet]\n"
               "  Trains a caption decoder on MODEL's image tower (a trained embedding model) with the\n"
               "  recipe's decoder section and \"train\" object, or fine-tunes MODEL when it already\n"
               "  writes captions (grown first when the recipe's decoder section differs from MODEL's:\n"
               "  what both hold is copied, the rest starts fresh). DIR is a shapes split or a root\n"
               "  holding train/ (and val/). --ckpt defaults to CAP.ckpt.safetensors and --log to CAP\n"
               "  (CAP.csv, CAP.png). Ctrl-C stops after the current step with a checkpoint; --resume\n"
               "  CKPT continues where it stopped, with the run's own hyperparameters unless --config\n"
               "  gives others. --stop-after N stops the same way at step N of the --steps schedule\n"
               "  (exit status 0).\n");
}

static int on_step(const qtr_log *l, void *user) {
    cli_train_run *r = user;
    const int stop = cli_train_step(r, l);
    if (r->quiet) return stop;
    const bool line = r->tty || l->validated || l->step == l->steps || l->step % 50 == 0;
    if (line)
        fprintf(stderr, "%s%lld/%lld loss %.3f token acc %.3f lr %.2e %.1f captions/s ETA %.0f s", r->tty ? "\r" : "",
                (long long)l->step, (long long)l->steps, (double)l->loss, (double)l->metrics[0], (double)l->lr,
                l->samples_per_s, isfinite(l->eta_s) ? l->eta_s : 0.0);
    if (l->validated) fprintf(stderr, "  val loss %.4f token acc %.4f", (double)l->val[0], (double)l->val[1]);
    if (line && (!r->tty || l->validated || l->step == l->steps)) fputc('\n', stderr);
    return stop;
}

int cmd_train_caption(int argc, char **argv) {
    cli_train_args a;
    int rc = cli_train_parse("train caption", argc, argv, usage, NULL, NULL, &a);
    if (rc >= 0) return rc;
    qmod_cap_train_params p;
    memset(&p, 0, sizeof p);
    p.recipe_path = a.recipe, p.init_path = a.init, p.out_path = a.out, p.resume_path = a.resume;
    p.threads = a.threads, p.loader_threads = a.loader_threads;
    cli_train_run run;
    if (!cli_train_begin(&run, "train caption", a.data, a.val, a.out, a.ckpt, a.log, a.quiet)) return 1;
    run.stop_after = a.stop_after;
    p.data_dir = run.train_dir;
    p.val_dir = run.val;
    char *json = NULL;
    const char *source = NULL;
    qiao_status st = cli_train_config_json(&a, &json, &source);
    if (st == QIAO_OK) st = qmod_cap_hparams_from_json(json, source, &p.hp);
    free(json);
    if (st != QIAO_OK) {
        cli_train_free(&run);
        return cli_fail(st);
    }
    if (a.steps > 0) p.hp.tr.steps = a.steps;
    if (a.batch > 0) p.hp.batch = a.batch;
    if (a.seed >= 0) p.hp.seed = (uint64_t)a.seed;
    if (a.eval_every >= 0) p.hp.tr.eval_every = a.eval_every;
    if (a.lr > 0) p.hp.tr.lr = (float)a.lr;
    p.ckpt_path = run.ckpt;
    p.log_path = run.csv_path;
    p.on_step = on_step;
    p.user = &run;
    p.stop = cli_train_start(&run);
    return cli_train_end(&run, qmod_cap_train(&p), p.out_path);
}
