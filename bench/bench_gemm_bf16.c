/* bench_gemm_bf16: mixed-precision training's bf16 GEMM (sdk/backend/cpu/
 * gemm_bf16.c) against OpenBLAS sgemm through qiao's f32 GEMM path
 * (qb_cpu_gemm, the same threads), at the linear layers' training shapes of
 * base.json at batch 128 (8192 rows of width 256, MLP 1024): forward
 * (op(B) = W^T), dX and dW (op(A) = dY^T). First it measures the two
 * instructions' peak on one core: vdpbf16ps (32 multiply-adds) and
 * vfmadd231ps (16), 12 independent accumulators each, which bounds what
 * either GEMM can reach on this CPU.
 *
 *   build/bin/bench_gemm_bf16 [--threads 2] [--isa NAME] [--only TEXT]
 *
 * --only runs the shapes whose name contains TEXT (e.g. "dW"). *
 * Each figure is the median of 5 loops of >= 50 ms. Run it under the
 * exclusive lock on the shared machine. */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <math.h>
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

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* n iterations of 24 instructions on 12 accumulators (zmm0-11) from two
 * sources (zmm14, zmm15): throughput, not latency, bound. */
#define ACC(I, r) I " %%zmm14, %%zmm15, %%zmm" #r "\n\t"
#define ROUND(I)                                                                                                       \
    ACC(I, 0)                                                                                                          \
    ACC(I, 1)                                                                                                          \
    ACC(I, 2) ACC(I, 3) ACC(I, 4) ACC(I, 5) ACC(I, 6) ACC(I, 7) ACC(I, 8) ACC(I, 9) ACC(I, 10) ACC(I, 11)
#define PEAK_LOOP(NAME, I, TARGET)                                                                                     \
    __attribute__((target(TARGET))) static void NAME(long n) {                                                         \
        __asm__ volatile("vpxord %%zmm14, %%zmm14, %%zmm14\n\tvpxord %%zmm15, "                                        \
                         "%%zmm15, %%zmm15\n\t"                                                                        \
                         "1:\n\t" ROUND(I) ROUND(I) "dec %0\n\tjnz 1b\n\t"                                             \
                         : "+r"(n)                                                                                     \
                         :                                                                                             \
                         : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",    \
                           "xmm11", "xmm14", "xmm15", "cc");                                                           \
    }
PEAK_LOOP(peak_bf16, "vdpbf16ps", "avx512f,avx512bf16")
PEAK_LOOP(peak_fma, "vfmadd231ps", "avx512f")

/* Instructions per second, best of 3. */
static double peak(void (*fn)(long)) {
    const long n = 2000000;
    double best = 0;
    for (int r = 0; r < 3; r++) {
        const double t0 = now();
        fn(n);
        const double rate = 24.0 * (double)n / (now() - t0);
        best = rate > best ? rate : best;
    }
    return best;
}
#endif

typedef struct shape {
    const char *what;
    bool ta, tb;
    int64_t M, N, K;
} shape;

static void call(const qb_exec *ex, bool bf16, const shape *s, const float *A, const float *B, float *C) {
    const int64_t lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
    if (bf16) {
        if (!qb_cpu_gemm_bf16(ex, s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 1.0f, C, s->N)) {
            fprintf(stderr, "bench_gemm_bf16: out of memory\n");
            exit(1);
        }
    } else {
        qb_cpu_gemm(ex, s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, 0, B, ldb, 0, 1.0f, C, s->N, 0, 1);
    }
}

static double time_call(const qb_exec *ex, bool bf16, const shape *s, const float *A, const float *B, float *C) {
    call(ex, bf16, s, A, B, C);
    int reps = 1;
    for (;;) {
        const double t0 = now();
        for (int r = 0; r < reps; r++)
            call(ex, bf16, s, A, B, C);
        if (now() - t0 > 0.05) break;
        reps *= 2;
    }
    double t[5];
    for (int i = 0; i < 5; i++) {
        const double t0 = now();
        for (int r = 0; r < reps; r++)
            call(ex, bf16, s, A, B, C);
        t[i] = (now() - t0) / reps;
    }
    qsort(t, 5, sizeof *t, cmp);
    return t[2];
}

int main(int argc, char **argv) {
    int threads = 2;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--threads"))
            threads = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--only"))
            only = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--isa")) {
            if (qb_cpu_isa_force(argv[++i]) != QIAO_OK) {
                fprintf(stderr, "bench_gemm_bf16: %s\n", qiao_last_error());
                return 2;
            }
        } else {
            fprintf(stderr, "usage: bench_gemm_bf16 [--threads N] [--isa NAME] [--only TEXT]\n");
            return 2;
        }
    }
    qb_exec ex;
    qb_exec_cpu(&ex, threads);
    double pk_bf = 0, pk_fma = 0;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (qb_cpu_isa_available(QB_ISA_AVX512_BF16)) {
        pk_bf = peak(peak_bf16);
        pk_fma = peak(peak_fma);
        printf("one core: vdpbf16ps zmm %.2f G/s = %.0f GFLOP/s; vfmadd231ps zmm "
               "%.2f G/s = %.0f GFLOP/s "
               "(bf16 / f32 peak %.2fx)\n",
               pk_bf * 1e-9, pk_bf * 64e-9, pk_fma * 1e-9, pk_fma * 32e-9, pk_bf * 64 / (pk_fma * 32));
    }
#endif
    printf("threads %d; bf16 path %s; f32 = qb_cpu_gemm (OpenBLAS %s, "
           "single-threaded, split over qiao's threads)\n\n",
           threads, qb_cpu_isa_name(qb_cpu_isa_selected(QB_PREC_BF16)), openblas_get_corename());
    static const shape shapes[] = {
        {"q/k/v/proj fwd", false, true, 8192, 256, 256},
        {"fc fwd", false, true, 8192, 1024, 256},
        {"fc2 fwd", false, true, 8192, 256, 1024},
        {"q/k/v/proj dX", false, false, 8192, 256, 256},
        {"fc dX", false, false, 8192, 256, 1024},
        {"fc2 dX", false, false, 8192, 1024, 256},
        {"q/k/v/proj dW", true, false, 256, 256, 8192},
        {"fc dW", true, false, 1024, 256, 8192},
        {"fc2 dW", true, false, 256, 1024, 8192},
        {"batch 32 text fwd", false, true, 2880, 256, 256},
        {"batch 32 text fc fwd", false, true, 2880, 1024, 256},
    };
    printf("| GEMM | M x N x K | f32 ms | bf16 ms | f32 GFLOP/s | bf16 GFLOP/s | "
           "bf16 / f32 speed | bf16 of its peak "
           "| max rel err |\n");
    printf("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const shape *s = &shapes[i];
        if (only && !strstr(s->what, only)) continue;
        const size_t na = (size_t)(s->M * s->K), nb = (size_t)(s->K * s->N), nc = (size_t)(s->M * s->N);
        float *A = malloc(na * sizeof(float)), *B = malloc(nb * sizeof(float)), *C = calloc(nc, sizeof(float));
        float *C32 = calloc(nc, sizeof(float)), *C16 = calloc(nc, sizeof(float));
        if (!A || !B || !C || !C32 || !C16) return 1;
        for (size_t k = 0; k < na; k++)
            A[k] = (float)((k * 104729) % 1001) * 1e-3f - 0.5f;
        for (size_t k = 0; k < nb; k++)
            B[k] = (float)((k * 7919) % 201) * 1e-2f - 1.0f;
        /* Accuracy from C = 0 (beta = 1 adds to zeros), relative to max |C|. */
        const int64_t lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
        qb_cpu_gemm(&ex, s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, 0, B, ldb, 0, 0.0f, C32, s->N, 0, 1);
        if (!qb_cpu_gemm_bf16(&ex, s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 0.0f, C16, s->N)) return 1;
        double emax = 0, cmax = 0;
        for (size_t k = 0; k < nc; k++) {
            emax = fmax(emax, fabs((double)C16[k] - (double)C32[k]));
            cmax = fmax(cmax, fabs((double)C32[k]));
        }
        const double t32 = time_call(&ex, false, s, A, B, C), t16 = time_call(&ex, true, s, A, B, C);
        const double flops = 2.0 * (double)s->M * (double)s->N * (double)s->K;
        char dims[64];
        snprintf(dims, sizeof dims, "%lldx%lldx%lld%s%s", (long long)s->M, (long long)s->N, (long long)s->K,
                 s->ta ? " tA" : "", s->tb ? " tB" : "");
        char of_peak[16] = "-";
        if (pk_bf > 0) snprintf(of_peak, sizeof of_peak, "%.0f%%", 100.0 * flops / t16 / (pk_bf * 64.0 * threads));
        printf("| %s | %s | %.2f | %.2f | %.0f | %.0f | %.2fx | %s | %.1e |\n", s->what, dims, t32 * 1e3, t16 * 1e3,
               flops / t32 * 1e-9, flops / t16 * 1e-9, t32 / t16, of_peak, cmax > 0 ? emax / cmax : 0.0);
        free(A), free(B), free(C), free(C32), free(C16);
    }
    return 0;
}
