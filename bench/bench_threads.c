/* bench/bench_threads.c - what a parallel region costs: qiao's own pool
 * (sdk/backend/cpu/threads.c) against an OpenMP region, which is what the
 * kernels used before. Run it under each libgomp wait policy (the pool
 * ignores it; libgomp reads it once at start-up):
 *
 *   build/bin/bench_threads [--threads 2] [--ms 300]
 *   OMP_WAIT_POLICY=passive build/bin/bench_threads
 *   OMP_WAIT_POLICY=active build/bin/bench_threads
 *
 * Rows:
 *   empty        regions that do nothing, back to back;
 *   small        4,096 floats of axpy split over the threads, back to back;
 *   gap G us     the small region after G microseconds of serial work on the
 *                calling thread (a forward's serial ops between two GEMMs):
 *                once G passes the pool's spin, its workers sleep and the
 *                next region pays a wake-up, as libgomp's passive policy
 *                pays every time;
 * and for each, regions per second, the microseconds one costs beyond its
 * serial work, and the process's CPU time over wall time (2.0 = both
 * cores busy: the price of spinning for whoever else needs the machine).
 * Figures and their reading are in docs/benchmarks.md. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "backend/cpu/cpu.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

enum { SMALL_N = 4096 };
static float g_x[SMALL_N], g_y[SMALL_N];
static volatile float g_sink;

/* Serial work of about `us` microseconds on the calling thread (a spin on
 * the clock: the point is the time between regions, not what fills it). */
static void serial_gap(double us) {
    if (us <= 0) return;
    const double end = now_s() + us * 1e-6;
    while (now_s() < end) g_sink += 1.0f;
}

static void noop_part(void *ctx, int part, int n) { (void)ctx, (void)part, (void)n; }

static void axpy_range(void *ctx, int64_t b, int64_t e, int part) {
    (void)ctx, (void)part;
    for (int64_t i = b; i < e; i++) g_y[i] += 1.0001f * g_x[i];
}

typedef enum { EMPTY, SMALL } kind;

static void pool_region(const qb_exec *ex, kind k) {
    if (k == EMPTY) qb_parallel(ex, ex->n_threads, noop_part, NULL);
    else qb_parallel_for(ex, SMALL_N, true, axpy_range, NULL);
}

static void omp_region(int nt, kind k) {
    if (k == EMPTY) {
#pragma omp parallel num_threads(nt)
        g_sink += 0.0f * (float)omp_get_thread_num();
    } else {
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t i = 0; i < SMALL_N; i++) g_y[i] += 1.0001f * g_x[i];
    }
}

typedef struct result {
    double per_s, extra_us, cpu_ratio;
} result;

/* Regions for about `ms` milliseconds, each after a gap of `gap_us`. */
static result measure(int use_pool, const qb_exec *ex, kind k, double gap_us, double ms) {
    /* The serial gap alone, to subtract. */
    double g0 = now_s();
    for (int i = 0; i < 200; i++) serial_gap(gap_us);
    const double gap_cost = (now_s() - g0) / 200;
    for (int i = 0; i < 100; i++) use_pool ? pool_region(ex, k) : omp_region(ex->n_threads, k);
    long n = 0;
    const double c0 = cpu_s(), t0 = now_s(), end = t0 + ms * 1e-3;
    double t = t0;
    while (t < end) {
        for (int i = 0; i < 50; i++) {
            serial_gap(gap_us);
            use_pool ? pool_region(ex, k) : omp_region(ex->n_threads, k);
        }
        n += 50;
        t = now_s();
    }
    const double wall = t - t0;
    result r = {n / wall, (wall / n - gap_cost) * 1e6, (cpu_s() - c0) / wall};
    return r;
}

int main(int argc, char **argv) {
    int threads = 2;
    double ms = 300;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--threads")) threads = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--ms")) ms = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_threads [--threads N] [--ms MS]\n");
            return 2;
        }
    }
    if (threads < 2) threads = 2;
    for (int i = 0; i < SMALL_N; i++) g_x[i] = (float)i, g_y[i] = 0;
    qb_exec ex;
    qb_exec_cpu(&ex, threads);
    const char *policy = getenv("OMP_WAIT_POLICY");
    printf("threads %d, OMP_WAIT_POLICY=%s (OpenMP only; the pool ignores it)\n\n", threads,
           policy ? policy : "(unset)");
    printf("| region | pool regions/s | pool us | pool cpu/wall | OpenMP regions/s | OpenMP us | OpenMP cpu/wall |\n");
    printf("|---|---|---|---|---|---|---|\n");
    static const struct {
        const char *name;
        kind k;
        double gap;
    } rows[] = {{"empty", EMPTY, 0},      {"small", SMALL, 0},       {"small, gap 10 us", SMALL, 10},
                {"small, gap 40 us", SMALL, 40}, {"small, gap 100 us", SMALL, 100}, {"small, gap 1000 us", SMALL, 1000}};
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        const result p = measure(1, &ex, rows[r].k, rows[r].gap, ms);
        const result o = measure(0, &ex, rows[r].k, rows[r].gap, ms);
        printf("| %s | %.0f | %.2f | %.2f | %.0f | %.2f | %.2f |\n", rows[r].name, p.per_s, p.extra_us, p.cpu_ratio,
               o.per_s, o.extra_us, o.cpu_ratio);
    }
    return 0;
}
