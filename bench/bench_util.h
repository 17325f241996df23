/* bench/bench_util.h - what the benchmarks that race a peer share: the
 * timing loop and its calibration, medians over rounds, the pause after
 * the peer's loop, the machine's description, and the peer process with
 * its line protocol (the scripts in bench/peer: "ready ..." on start, one
 * reply line per command, "quit" answered with "rss <peak kB>").
 *
 * Header-only, every function static inline: each .c file in bench/ is its
 * own program (bench/CMakeLists.txt builds each file alone), and a bench
 * that uses only part of this must not warn about the rest. Include it
 * after defining _POSIX_C_SOURCE (fork, pipe, setenv, nanosleep). */
#ifndef QIAO_BENCH_UTIL_H
#define QIAO_BENCH_UTIL_H

#include <cblas.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"

/* Rounds a bench may ask for (the size of median()'s copy). */
#define BENCH_MAX_ROUNDS 64

/* ---- timing ----------------------------------------------------------------------- */

typedef void (*bench_fn)(void *ctx);

/* Seconds per call over `reps` calls. */
static inline double loop(bench_fn fn, void *ctx, int reps) {
    double t0 = qc_now();
    for (int i = 0; i < reps; i++) fn(ctx);
    return (qc_now() - t0) / reps;
}

/* After 3 warm-up calls: the calls per timed loop (a power of two) that
 * last >= 50 ms, enough to swamp timer resolution and thread start-up. */
static inline int calibrate(bench_fn fn, void *ctx) {
    for (int i = 0; i < 3; i++) fn(ctx);
    int reps = 1;
    while (loop(fn, ctx, reps) * reps < 0.05 && reps < (1 << 20)) reps *= 2;
    return reps;
}

/* OpenBLAS's worker threads spin (yielding) for about 0.1 s after a call
 * before they sleep (THREAD_TIMEOUT 28: 2^28 cycles); after the peer's loop
 * (torch calls OpenBLAS with N threads) wait that out, so the next side
 * timed does not share the cores with them. */
static inline void pause_blas(void) {
    struct timespec ts = {0, 150 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* The median of n <= BENCH_MAX_ROUNDS values (x is left as it is). */
static inline double median(const double *x, int n) {
    double s[BENCH_MAX_ROUNDS];
    memcpy(s, x, (size_t)n * sizeof *s);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (s[j] < s[i]) {
                double t = s[i];
                s[i] = s[j];
                s[j] = t;
            }
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

/* The 1-minute load average; 0 without /proc. */
static inline double loadavg(void) {
    double l = 0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = 0;
        fclose(f);
    }
    return l;
}

/* The first "model name" of /proc/cpuinfo, or "unknown CPU". */
static inline void cpu_model_name(char *out, size_t n) {
    snprintf(out, n, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        const char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) != 0 || !colon) continue;
        colon += strspn(colon + 1, " \t") + 1;
        snprintf(out, n, "%.*s", (int)strcspn(colon, "\n"), colon);
        break;
    }
    fclose(f);
}

/* ---- the peer process ------------------------------------------------------------- */

typedef struct peer_proc {
    pid_t pid;
    FILE *to, *from;
    int ok;
    char version[128]; /* what follows "ready " */
    const char *who;   /* the bench's name, for messages */
} peer_proc;

/* One command, one reply line (without the newline) into `reply`. A dead
 * or confused peer clears p->ok; later commands then do nothing. */
static inline int peer_cmd(peer_proc *p, char *reply, size_t n, const char *fmt, ...) {
    if (!p->ok) return 1;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(p->to, fmt, ap);
    va_end(ap);
    fputc('\n', p->to);
    if (fflush(p->to) != 0 || !fgets(reply, (int)n, p->from)) {
        fprintf(stderr, "%s: the peer stopped answering\n", p->who);
        p->ok = 0;
        return 1;
    }
    reply[strcspn(reply, "\n")] = 0;
    return 0;
}

/* Runs argv[0] (an interpreter's path, also its argv[0]: a virtual
 * environment's Python finds its pyvenv.cfg from it) with argv[1..] (the
 * script and its arguments, at most 12, NULL-terminated) and "--threads
 * N", talking over pipes; p->ok once it said "ready". Its environment:
 * OMP_NUM_THREADS and OPENBLAS_NUM_THREADS = N (torch's OpenMP team and
 * the OpenBLAS it calls), OMP_WAIT_POLICY = wait unless "inherit", and with
 * blas_core OPENBLAS_CORETYPE = the kernel set qiao's OpenBLAS runs (qiao
 * makes Debian's OpenBLAS choose SkylakeX on CPUs it does not know,
 * sdk/backend/cpu/blas_core.c; the peer multiplies through the same
 * library) unless the environment already sets it. */
static inline void peer_start(peer_proc *p, const char *who, const char *const *argv, int threads, const char *wait,
                              bool blas_core) {
    memset(p, 0, sizeof *p);
    p->who = who;
    char n[16];
    snprintf(n, sizeof n, "%d", threads);
    const char *args[16];
    int k = 0;
    while (argv[k] && k < 12) args[k] = argv[k], k++;
    args[k++] = "--threads", args[k++] = n, args[k] = NULL;
    int to[2], from[2];
    if (pipe(to) || pipe(from)) return;
    p->pid = fork();
    if (p->pid < 0) return;
    if (p->pid == 0) {
        setenv("OMP_NUM_THREADS", n, 1);
        setenv("OPENBLAS_NUM_THREADS", n, 1);
        if (strcmp(wait, "inherit") != 0) setenv("OMP_WAIT_POLICY", wait, 1);
        const char *core = blas_core ? openblas_get_corename() : NULL;
        if (core) setenv("OPENBLAS_CORETYPE", core, 0);
        dup2(to[0], 0), dup2(from[1], 1);
        close(to[0]), close(to[1]), close(from[0]), close(from[1]);
        execv(args[0], (char *const *)args);
        _exit(127);
    }
    close(to[0]), close(from[1]);
    p->to = fdopen(to[1], "w");
    p->from = fdopen(from[0], "r");
    char line[256];
    p->ok = p->to && p->from && fgets(line, sizeof line, p->from) && !strncmp(line, "ready ", 6);
    if (p->ok) {
        line[strcspn(line, "\n")] = 0;
        snprintf(p->version, sizeof p->version, "%.100s", line + 6);
    }
}

/* Ends the peer; returns its peak RSS in MiB (0 if unknown). */
static inline double peer_stop(peer_proc *p) {
    char line[256];
    double rss = 0;
    if (p->ok && !peer_cmd(p, line, sizeof line, "quit") && !strncmp(line, "rss ", 4)) rss = atof(line + 4) / 1024;
    if (p->to) fclose(p->to);
    if (p->from) fclose(p->from);
    if (p->pid > 0) waitpid(p->pid, NULL, 0);
    return rss;
}

#endif /* QIAO_BENCH_UTIL_H */
