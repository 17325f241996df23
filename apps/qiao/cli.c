/* apps/qiao/cli.c - what the subcommands share (cli.h): the failure line,
 * option values, file tests, the split folder, the progress line. Kept out
 * of main.c so a test can link a subcommand with these and no main(). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/core.h"
#include "cli.h"

int cli_fail(qiao_status st) {
    fprintf(stderr, "qiao: %s: %s\n", qiao_status_str(st), qiao_last_error());
    return 1;
}

bool cli_int(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool cli_num(const char *s, double lo, double hi, double *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !(v >= lo && v <= hi)) return false;
    *out = v;
    return true;
}

bool cli_int_arg(const char *cmd, const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out) {
    if (cli_int(s, lo, hi, out)) return true;
    fprintf(stderr, "qiao %s: %s needs an integer in [%lld, %lld], got '%s'\n", cmd, opt, (long long)lo, (long long)hi,
            s ? s : "");
    return false;
}

bool cli_num_arg(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out) {
    if (cli_num(s, lo, hi, out)) return true;
    fprintf(stderr, "qiao %s: %s needs a number in [%g, %g], got '%s'\n", cmd, opt, lo, hi, s ? s : "");
    return false;
}

bool cli_is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

char *cli_derive_path(const char *out, const char *ext) {
    size_t n = strlen(out);
    const char *sfx = ".safetensors";
    if (n > strlen(sfx) && !strcmp(out + n - strlen(sfx), sfx)) n -= strlen(sfx);
    char *s = malloc(n + strlen(ext) + 1);
    if (!s) return NULL;
    memcpy(s, out, n);
    strcpy(s + n, ext);
    return s;
}

void cli_split_dir(const char *data, const char *split, char *dir, size_t cap) {
    char probe[4200];
    snprintf(dir, cap, "%s", data);
    snprintf(probe, sizeof probe, "%.4000s/manifest.jsonl", data);
    if (cli_is_file(probe)) return;
    snprintf(probe, sizeof probe, "%.3000s/%.900s/manifest.jsonl", data, split);
    if (cli_is_file(probe)) snprintf(dir, cap, "%s/%s", data, split);
}

void cli_progress_start(cli_progress *p) {
    p->t0 = qc_now();
    p->last = 0;
}

void cli_progress_show(cli_progress *p, const char *label, const char *unit, int64_t done, int64_t total) {
    const double t = qc_now() - p->t0;
    if (done != total && t - p->last < 1.0) return;
    p->last = t;
    const double rate = t > 0 ? (double)done / t : 0.0;
    fprintf(stderr, "\r%s: %lld/%lld %s, %.0f %s/s, ETA %.0f s   ", label, (long long)done, (long long)total, unit,
            rate, unit, rate > 0 ? (double)(total - done) / rate : 0.0);
    if (done == total) fputc('\n', stderr);
}
