/* apps/qiao/cli.h - subcommands of the qiao command. Each returns the
 * process exit code: 0 on success, 1 on failure (message on stderr),
 * 2 on a usage error. */
#ifndef QIAO_CLI_H
#define QIAO_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
int cmd_vqa(int argc, char **argv);
int cmd_caption(int argc, char **argv);

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

#endif
