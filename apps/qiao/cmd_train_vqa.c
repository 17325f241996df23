/* apps/qiao/cmd_train_vqa.c - `qiao train vqa`: visual question answering
 * trained on the fused towers of an embedding model (models/answering),
 * with a progress line, a CSV log and its PNG, and Ctrl-C that stops after
 * the current step with a checkpoint. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "models/answering/answering.h"

int cmd_train_vqa(int argc, char **argv);

static void usage(FILE *f) {
    fprintf(f,
            "usage: qiao train vqa --init MODEL.safetensors --config models/configs/vqa.json --data DIR\n"
            "                      --out VQA.safetensors [--val DIR] [--resume CKPT] [--ckpt CKPT] [--log PREFIX]\n"
            "                      [--steps N] [--stop-after N] [--batch B] [--lr X] [--seed S] [--eval-every N]\n"
            "                      [--freeze text,image,audio | --freeze none] [--threads N]\n"
            "                      [--loader-threads N] [--quiet]\n"
            "  Trains a fuser and answer head on MODEL's towers (a trained embedding model) with\n"
            "  the recipe's fusion section and \"train\" object, or fine-tunes MODEL when it already\n"
            "  answers questions (grown first when the recipe's fusion section differs from MODEL's:\n"
            "  what both hold is copied, the rest starts fresh). DIR is a shapes split (with\n"
            "  --speech-questions for spoken questions) or a root holding train/ (and val/). --ckpt\n"
            "  defaults to VQA.ckpt.safetensors and --log to VQA (VQA.csv, VQA.png). Ctrl-C stops\n"
            "  after the current step with a checkpoint; --resume CKPT continues where it stopped,\n"
            "  with the run's own hyperparameters unless --config gives others. --stop-after N stops\n"
            "  the same way at step N of the --steps schedule (exit status 0).\n");
}

static int on_step(const qtr_log *l, void *user) {
    cli_train_run *r = user;
    const int stop = cli_train_step(r, l);
    if (r->quiet) return stop;
    const bool line = r->tty || l->validated || l->step == l->steps || l->step % 50 == 0;
    if (line)
        fprintf(stderr,
                "%s%lld/%lld loss %.3f (answer %.3f lang %.3f) acc %.3f w t/i/a %.2f/%.2f/%.2f lr %.2e "
                "%.1f q/s ETA %.0f s",
                r->tty ? "\r" : "", (long long)l->step, (long long)l->steps, (double)l->loss, (double)l->metrics[0],
                (double)l->metrics[1], (double)l->metrics[2], (double)l->metrics[3], (double)l->metrics[4],
                (double)l->metrics[5], (double)l->lr, l->samples_per_s, isfinite(l->eta_s) ? l->eta_s : 0.0);
    if (l->validated)
        fprintf(stderr, "  val acc %.4f (typed %.4f, spoken %.4f)", (double)l->val[0], (double)l->val[1],
                (double)l->val[2]);
    if (line && (!r->tty || l->validated || l->step == l->steps)) fputc('\n', stderr);
    return stop;
}

int cmd_train_vqa(int argc, char **argv) {
    cli_train_args a;
    static const char *const extra[] = {"--freeze", NULL};
    const char *extra_val[1];
    int rc = cli_train_parse("train vqa", argc, argv, usage, extra, extra_val, &a);
    if (rc >= 0) return rc;
    const char *freeze = extra_val[0];
    qmod_vqa_train_params p;
    memset(&p, 0, sizeof p);
    p.recipe_path = a.recipe, p.init_path = a.init, p.out_path = a.out, p.resume_path = a.resume;
    p.threads = a.threads, p.loader_threads = a.loader_threads;
    cli_train_run run;
    if (!cli_train_begin(&run, "train vqa", a.data, a.val, a.out, a.ckpt, a.log, a.quiet)) return 1;
    run.stop_after = a.stop_after;
    p.data_dir = run.train_dir;
    p.val_dir = run.val;
    char *json = NULL;
    const char *source = NULL;
    qiao_status st = cli_train_config_json(&a, &json, &source);
    if (st == QIAO_OK) st = qmod_vqa_hparams_from_json(json, source, &p.hp);
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
    if (freeze) {
        p.hp.freeze = 0;
        for (const char *c = freeze; *c && strcmp(freeze, "none") != 0;) {
            const size_t n = strcspn(c, ",");
            int mod = -1;
            for (int m = 0; m < QF_NMOD; m++)
                if (strlen(qf_modality_name(m)) == n && !strncmp(c, qf_modality_name(m), n)) mod = m;
            if (mod < 0) {
                fprintf(stderr, "qiao train vqa: --freeze takes text, image, audio (comma-separated) or none\n");
                cli_train_free(&run);
                return 2;
            }
            p.hp.freeze |= 1u << mod;
            c += n + (c[n] == ',');
        }
    }
    p.ckpt_path = run.ckpt;
    p.log_path = run.csv_path;
    p.on_step = on_step;
    p.user = &run;
    p.stop = cli_train_start(&run);
    return cli_train_end(&run, qmod_vqa_train(&p), p.out_path);
}
