/* apps/qiao/cli_train.c - what the training subcommands (`qiao train vqa`,
 * `qiao train caption`) share once their options are read (cli.h,
 * cli_train_run): the split folders --data names, the checkpoint and log
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

void cli_train_plot(const cli_train_run *r, const qtr_log *l) {
    if (!l->validated && l->step != l->steps) return;
    char err[256];
    if (plot_training_csv(r->csv_path, r->png_path, err, sizeof err) != 0)
        fprintf(stderr, "\nqiao %s: could not draw %s: %s\n", r->cmd, r->png_path, err);
}

int cli_train_end(cli_train_run *r, qiao_status st, const char *out) {
    if (r->handler_set) sigaction(SIGINT, &g_old, NULL);
    int rc;
    if (st == QIAO_ERR_CANCELLED) {
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
