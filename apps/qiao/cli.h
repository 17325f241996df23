/* apps/qiao/cli.h - subcommands of the qiao command. Each returns the
 * process exit code: 0 on success, 1 on failure (message on stderr),
 * 2 on a usage error. */
#ifndef QIAO_CLI_H
#define QIAO_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <qiao.h>

int cmd_info(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_selfcheck(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_image(int argc, char **argv);
int cmd_mel(int argc, char **argv);
int cmd_dataset(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_graft(int argc, char **argv);
int cmd_vqa(int argc, char **argv);
int cmd_caption(int argc, char **argv);
int cmd_intent(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_serve(int argc, char **argv);

/* `qiao caption --video` (caption_video.c), after cmd_caption read and
 * checked the options: captions the video through qiao_caption_video and
 * prints "[HH:MM:SS.mmm] caption" lines, or writes an SRT file (atomically)
 * and/or prints JSON. Returns the exit code. */
typedef struct cli_caption_video_opts {
    const char *model, *video, *lang, *srt;
    bool json, sample, scenes;
    int beam, max_len, threads; /* max_len 0: the decoder's positions */
    double alpha, temperature, top_p, fps;
    double scene_threshold; /* < 0: the library's default */
    int64_t max_frames;     /* 0: the library's default */
    uint64_t seed;
} cli_caption_video_opts;
int cli_caption_video(const cli_caption_video_opts *o);

/* Prints "qiao: <status>: <detail>" to stderr and returns 1. */
int cli_fail(qiao_status st);

/* An option's value as an integer (cli_int) or a number (cli_num) in
 * [lo, hi]: true when `s` is exactly that and nothing else. The _arg forms
 * also print "qiao CMD: OPT needs an integer in [lo, hi], got 'S'" when it
 * is not. The one parser every subcommand uses. */
bool cli_int(const char *s, int64_t lo, int64_t hi, int64_t *out);
bool cli_num(const char *s, double lo, double hi, double *out);
bool cli_int_arg(const char *cmd, const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out);
bool cli_num_arg(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out);

/* True when path names a regular file. */
bool cli_is_file(const char *path);
/* `out` with its .safetensors extension, if it has one, replaced by `ext`
 * (the file names a training run derives from its model's: "m.safetensors"
 * and ".csv" give "m.csv"; "m" gives "m.csv"). malloc'd; the caller frees
 * it; NULL when out of memory. */
char *cli_derive_path(const char *out, const char *ext);
/* The split directory that --data names: `data` itself when it holds a
 * manifest.jsonl, else data/<split> when that does, else `data` (whose
 * loading then says what is missing). */
void cli_split_dir(const char *data, const char *split, char *dir, size_t cap);

/* A progress line on stderr, "<label>: done/total <unit>, R <unit>/s, ETA S s",
 * redrawn at most once a second and ended by a newline when done == total. */
typedef struct cli_progress {
    double t0, last;
} cli_progress;
void cli_progress_start(cli_progress *p);
void cli_progress_show(cli_progress *p, const char *label, const char *unit, int64_t done, int64_t total);

/* ---- training subcommands (cli_train.c) ---------------------------------- */

#include <signal.h>

#include "models/train/trainer.h"

/* What `qiao train vqa` and `qiao train caption` share after reading their
 * options: cli_train_begin resolves --data (a split, or a root holding
 * train/ and, unless --val names one, val/) and derives the checkpoint
 * (OUT.ckpt.safetensors unless --ckpt) and log paths (PREFIX.csv and .png,
 * PREFIX = --log or OUT), false (message printed) when out of memory;
 * cli_train_start prints the run's opening line and installs the Ctrl-C
 * handler whose flag the trainer polls; cli_train_plot redraws the curves
 * at each validation and at the end; cli_train_end restores the handler,
 * prints the closing line and returns the exit code (130 when stopped). */
/* The options every `qiao train <objective>` takes: --config --init --data
 * --val --out --resume --ckpt --log (paths), --steps --batch --seed
 * --eval-every --lr --threads --loader-threads, --quiet; numbers not given
 * stay -1 (threads 0). `extra` lists further options that take a value
 * (NULL-terminated, e.g. {"--freeze", NULL}); extra_val[i] gets the value
 * of extra[i] or NULL. */
typedef struct cli_train_args {
    const char *recipe, *init, *data, *val, *out, *resume, *ckpt, *log;
    long long steps, batch, seed, eval_every;
    long long stop_after; /* --stop-after: stop with a checkpoint once this step is done (-1: run to the end) */
    double lr;
    int threads, loader_threads;
    bool quiet;
} cli_train_args;

/* Returns -1 to go on, else the exit code: 0 after --help (usage printed
 * to stdout), 2 for a bad option or a missing --data, --out or --init
 * (message and usage on stderr). */
int cli_train_parse(const char *cmd, int argc, char **argv, void (*usage)(FILE *f), const char *const *extra,
                    const char **extra_val, cli_train_args *a);
/* The JSON holding the run's "train" object: the recipe when one is given
 * (resuming too: the user's word wins), else, resuming, the hyperparameters
 * the checkpoint's run began with (qtr_checkpoint_recipe), else the starting
 * model's config (a model fine-tuned as it is); NULL when that model has
 * none. The caller frees it. *source names the file, for messages. */
qiao_status cli_train_config_json(const cli_train_args *a, char **json, const char **source);

typedef struct cli_train_run {
    const char *cmd; /* "train vqa" */
    char train_dir[4096], val_dir[4096];
    const char *val; /* the validation folder, or NULL */
    const char *ckpt;
    char *ckpt_owned, *csv_path, *png_path;
    bool quiet, tty, handler_set;
    long long stop_after;   /* cli_train_args.stop_after, set by the caller after cli_train_begin */
    bool stopped_as_asked;  /* the run stopped at stop_after */
} cli_train_run;

bool cli_train_begin(cli_train_run *r, const char *cmd, const char *data, const char *val, const char *out,
                     const char *ckpt, const char *log_prefix, bool quiet);
volatile sig_atomic_t *cli_train_start(cli_train_run *r);
/* After every step: redraws the curves at a validation and at the end;
 * returns nonzero (stop with a checkpoint) once the step is stop_after. */
int cli_train_step(cli_train_run *r, const qtr_log *l);
int cli_train_end(cli_train_run *r, qiao_status st, const char *out);
/* Frees the paths (cli_train_end does); the struct may be freed again. */
void cli_train_free(cli_train_run *r);

#endif
