/* bench_gemm_packed: qb_cpu_gemm with weights packed once (gemm_packed.c)
 * against the same call through OpenBLAS, at the encoders' linear shapes
 * (out (M, N) = in (M, K) W^T, W (N, K)) over M. What QB_PACK_MAX_M was
 * picked from: the largest M where the packed kernel still wins.
 *
 *   build/bin/bench_gemm_packed [--threads 1] [--rounds 5]
 *
 * Each round times both sides back to back (loops of >= 20 ms); a figure is
 * the median over the rounds, so on a shared machine compare only the
 * ratio within one run. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "core/core.h"

typedef struct call {
    const qb_exec *ex;
    int64_t M, N, K;
    const float *a, *w;
    float *c;
} call;

static void run(const call *c) {
    qb_cpu_gemm(c->ex, false, true, c->M, c->N, c->K, 1.0f, c->a, c->K, 0, c->w, c->K, 0, 0.0f, c->c, c->N, 0, 1);
}

/* Seconds per call: calibrated to >= 20 ms per loop. */
static double timed(const call *c) {
    int reps = 1;
    for (;;) {
        double t0 = qc_now();
        for (int i = 0; i < reps; i++) run(c);
        double dt = qc_now() - t0;
        if (dt >= 0.02 || reps >= (1 << 20)) return dt / reps;
        reps *= 2;
    }
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    int threads = 1, rounds = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--threads N] [--rounds R]\n", argv[0]);
            return 2;
        }
    }
    if (rounds < 1 || rounds > 64 || threads < 1) return 2;
    if (!qb_cpu_gemm_packed_supported()) {
        printf("no AVX-512F on this CPU: the packed kernel never runs\n");
        return 0;
    }
    static const int64_t shapes[][2] = {{256, 256}, {1024, 256}, {256, 1024}, {256, 240}};
    static const int64_t Ms[] = {1, 8, 63, 64, 128, 256, 384, 512, 768, 1024, 2048};
    const int64_t maxM = 2048, maxNK = 1024 * 256;
    float *a = malloc(sizeof(float) * (size_t)(maxM * 1024)), *w = malloc(sizeof(float) * (size_t)maxNK);
    float *c = malloc(sizeof(float) * (size_t)(maxM * 1024));
    if (!a || !w || !c) return 1;
    for (int64_t i = 0; i < maxM * 1024; i++) a[i] = (float)((i * 7919) % 2001 - 1000) * 1e-3f;
    for (int64_t i = 0; i < maxNK; i++) w[i] = (float)((i * 104729) % 2001 - 1000) * 1e-3f;
    qb_exec plain, packed;
    qb_exec_cpu(&plain, threads);
    qb_exec_cpu(&packed, threads);
    printf("threads %d, %d rounds; GFLOP/s (median), packed / OpenBLAS speedup\n\n", threads, rounds);
    printf("| %5s | %5s | %5s | %9s | %9s | %7s |\n", "N", "K", "M", "OpenBLAS", "packed", "speedup");
    printf("|-------|-------|-------|-----------|-----------|---------|\n");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t N = shapes[s][0], K = shapes[s][1];
        qb_packed_set *set = NULL;
        qb_packed_src src = {w, N, K};
        if (qb_packed_set_new(&src, 1, &set) != QIAO_OK) return 1;
        packed.packed = set;
        for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
            const int64_t M = Ms[mi];
            call cp = {&plain, M, N, K, a, w, c};
            /* The packed side calls the kernel itself, whatever
             * QB_PACK_MAX_M says (above it qb_cpu_gemm falls back). */
            double tp[64], tk[64], ratio[64];
            run(&cp);
            for (int r = 0; r < rounds; r++) {
                tp[r] = timed(&cp);
                {
                    int reps = 1;
                    double dt;
                    for (;;) {
                        double t0 = qc_now();
                        for (int i = 0; i < reps; i++)
                            if (!qb_cpu_gemm_packed(&packed, false, true, M, N, K, 1.0f, a, K, w, K, 0.0f, c, N, 1))
                                return 1;
                        dt = qc_now() - t0;
                        if (dt >= 0.02) break;
                        reps *= 2;
                    }
                    tk[r] = dt / reps;
                }
                ratio[r] = tp[r] / tk[r];
            }
            qsort(tp, (size_t)rounds, sizeof *tp, cmp);
            qsort(tk, (size_t)rounds, sizeof *tk, cmp);
            qsort(ratio, (size_t)rounds, sizeof *ratio, cmp);
            const double f = 2.0 * (double)M * (double)N * (double)K * 1e-9;
            printf("| %5lld | %5lld | %5lld | %9.1f | %9.1f | %6.2fx |\n", (long long)N, (long long)K, (long long)M,
                   f / tp[rounds / 2], f / tk[rounds / 2], ratio[rounds / 2]);
            fflush(stdout);
        }
        qb_packed_set_free(set);
    }
    free(a), free(w), free(c);
    return 0;
}
