/* bench_gemm_lowp: the int8 and bf16 inference GEMMs (sdk/backend/cpu/
 * gemm_lowp.c) against the f32 packed kernel (gemm_packed.c) at the base
 * encoders' linear shapes (width 256, MLP 1024), over M, through the fused
 * linear entry the forward uses (bias, no GELU).
 *
 *   build/bin/bench_gemm_lowp [--threads 2] [--isa NAME]
 *
 * --isa caps the low-precision path (qb_cpu_isa_force; QIAO_ISA does the
 * same). Each figure is the median of 5 loops of >= 30 ms. Run it under the
 * exclusive lock on the shared machine. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cpu/cpu.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One linear layer as nn_linears_forward runs it: the fused entry, or
 * (f32 above QB_PACK_MAX_M rows) the GEMM and the bias pass. */
static void linear(const qb_exec *ex, float *out, const float *A, const float *W, const float *bias, int64_t M,
                   int64_t N, int64_t K) {
    float *outs[1] = {out};
    const float *ws[1] = {W}, *bs[1] = {bias};
    if (ex->ops->linears_fused(ex, 1, outs, NULL, A, ws, bs, M, K, N)) return;
    ex->ops->gemm(ex, false, true, M, N, K, 1.0f, A, K, 0, W, K, 0, 0.0f, out, N, 0, 1);
    qb_cpu_bias_forward(ex, out, bias, M, N);
}

/* Seconds per call, median of 5 loops. */
static double time_linear(const qb_exec *ex, float *out, const float *A, const float *W, const float *bias,
                          int64_t M, int64_t N, int64_t K) {
    linear(ex, out, A, W, bias, M, N, K);
    int reps = 1;
    for (;;) {
        double t0 = now();
        for (int r = 0; r < reps; r++) linear(ex, out, A, W, bias, M, N, K);
        if (now() - t0 > 0.03) break;
        reps *= 2;
    }
    double t[5];
    for (int i = 0; i < 5; i++) {
        double t0 = now();
        for (int r = 0; r < reps; r++) linear(ex, out, A, W, bias, M, N, K);
        t[i] = (now() - t0) / reps;
    }
    qsort(t, 5, sizeof *t, cmp);
    return t[2];
}

int main(int argc, char **argv) {
    int threads = 2;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--threads")) threads = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--isa")) {
            if (qb_cpu_isa_force(argv[++i]) != QIAO_OK) {
                fprintf(stderr, "bench_gemm_lowp: %s\n", qiao_last_error());
                return 2;
            }
        } else {
            fprintf(stderr, "usage: bench_gemm_lowp [--threads N] [--isa NAME]\n");
            return 2;
        }
    }
    static const int64_t NK[][2] = {{256, 256}, {1024, 256}, {256, 1024}};
    static const int64_t Ms[] = {1, 8, 64, 256, 1024, 2880, 8000};
    printf("threads %d; paths: int8 %s, bf16 %s; f32 = the packed AVX-512 kernel up to 2048 rows, OpenBLAS above\n\n",
           threads, qb_cpu_isa_name(qb_cpu_isa_selected(QB_PREC_INT8)),
           qb_cpu_isa_name(qb_cpu_isa_selected(QB_PREC_BF16)));
    printf("| N | K | M | f32 us | bf16 us | int8 us | f32/bf16 | f32/int8 | int8 GOP/s |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    for (size_t s = 0; s < sizeof NK / sizeof *NK; s++) {
        const int64_t N = NK[s][0], K = NK[s][1];
        float *W = malloc(sizeof(float) * (size_t)(N * K)), *bias = calloc((size_t)N, sizeof(float));
        for (int64_t i = 0; i < N * K; i++) W[i] = (float)((i * 7919) % 201 - 100) * 1e-3f;
        const qb_packed_src src = {W, N, K};
        qb_packed_set *sets[3] = {NULL, NULL, NULL};
        const qb_precision precs[3] = {QB_PREC_F32, QB_PREC_BF16, QB_PREC_INT8};
        for (int q = 0; q < 3; q++)
            if (qb_packed_set_new_prec(&src, 1, precs[q], &sets[q]) != QIAO_OK) {
                fprintf(stderr, "bench_gemm_lowp: %s\n", qiao_last_error());
                return 1;
            }
        for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++) {
            const int64_t M = Ms[mi];
            float *A = malloc(sizeof(float) * (size_t)(M * K)), *C = malloc(sizeof(float) * (size_t)(M * N));
            for (int64_t i = 0; i < M * K; i++) A[i] = (float)((i * 104729) % 1001 - 500) * 1e-3f;
            double t[3];
            for (int q = 0; q < 3; q++) {
                qb_exec ex;
                qb_exec_cpu(&ex, threads);
                ex.packed = sets[q];
                t[q] = time_linear(&ex, C, A, W, bias, M, N, K);
            }
            printf("| %lld | %lld | %lld | %.1f | %.1f | %.1f | %.2fx | %.2fx | %.0f |\n", (long long)N, (long long)K,
                   (long long)M, t[0] * 1e6, t[1] * 1e6, t[2] * 1e6, t[0] / t[1], t[0] / t[2],
                   2.0 * (double)M * (double)N * (double)K / t[2] * 1e-9);
            free(A), free(C);
        }
        for (int q = 0; q < 3; q++) qb_packed_set_free(sets[q]);
        free(W), free(bias);
    }
    return 0;
}
