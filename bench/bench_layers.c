/* bench_layers: throughput of qiao's linear and attention layers, forward and
 * backward, at encoder-like sizes, beside raw cblas_sgemm doing exactly the
 * GEMMs the layer needs (the roofline: a layer can only add work around
 * them). Prints a table; figures go to docs/benchmarks.md.
 *
 *   build/bin/bench_layers [--threads N] [--batch B] [--tokens T] [--width C]
 *
 * GFLOP/s counts only the GEMM flops (2*M*N*K each) for both columns, so the
 * ratio is the share of the roofline the layer reaches; softmax, bias and
 * layout work is overhead the layer pays on top. */
#define _POSIX_C_SOURCE 200809L

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"

typedef void (*bench_fn)(void *ctx);

/* Median seconds per call over 7 timed runs, each long enough (>= 50 ms) to
 * swamp timer resolution, after warm-up runs. */
static double time_it(bench_fn fn, void *ctx) {
    for (int i = 0; i < 3; i++) fn(ctx);
    int reps = 1;
    for (;;) {
        double t0 = qc_now();
        for (int i = 0; i < reps; i++) fn(ctx);
        if (qc_now() - t0 >= 0.05) break;
        reps *= 2;
    }
    double s[7];
    for (int r = 0; r < 7; r++) {
        double t0 = qc_now();
        for (int i = 0; i < reps; i++) fn(ctx);
        s[r] = (qc_now() - t0) / reps;
    }
    for (int i = 0; i < 7; i++)
        for (int j = i + 1; j < 7; j++)
            if (s[j] < s[i]) {
                double t = s[i];
                s[i] = s[j];
                s[j] = t;
            }
    return s[3];
}

static float *buf(int64_t n, uint64_t seed) {
    float *p = aligned_alloc(64, (size_t)((n * 4 + 63) / 64 * 64));
    if (!p) {
        fprintf(stderr, "bench_layers: out of memory\n");
        exit(1);
    }
    qc_rng r;
    qc_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) p[i] = 0.1f * qc_rng_normal(&r);
    return p;
}

/* ---- linear ---------------------------------------------------------------- */
typedef struct lin {
    qb_exec ex;
    int64_t N, C, OC;
    float *x, *w, *b, *y, *dy, *dx, *dw, *db;
} lin;

static void lin_fwd(void *c) {
    lin *l = c;
    nn_linear_forward(&l->ex, l->y, l->x, l->w, l->b, l->N, l->C, l->OC);
}
static void lin_bwd(void *c) {
    lin *l = c;
    nn_linear_backward(&l->ex, l->dx, l->dw, l->db, l->dy, l->x, l->w, l->N, l->C, l->OC);
}
static void lin_fwd_raw(void *c) {
    lin *l = c;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)l->N, (int)l->OC, (int)l->C, 1.0f, l->x, (int)l->C,
                l->w, (int)l->C, 0.0f, l->y, (int)l->OC);
}
static void lin_bwd_raw(void *c) {
    lin *l = c;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)l->N, (int)l->C, (int)l->OC, 1.0f, l->dy,
                (int)l->OC, l->w, (int)l->C, 1.0f, l->dx, (int)l->C);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)l->OC, (int)l->C, (int)l->N, 1.0f, l->dy,
                (int)l->OC, l->x, (int)l->C, 1.0f, l->dw, (int)l->C);
}

/* ---- attention -------------------------------------------------------------- */
typedef struct att {
    qb_exec ex;
    int64_t B, T, C, H;
    float *q, *k, *v, *out, *p, *dout, *dq, *dk, *dv, *datt, *s;
    uint8_t *mask;
} att;

static void att_fwd(void *c) {
    att *a = c;
    nn_attention_forward(&a->ex, a->out, a->p, a->q, a->k, a->v, a->mask, NULL, a->B, a->T, a->T, a->C, a->H, false);
}
static void att_bwd(void *c) {
    att *a = c;
    nn_attention_backward(&a->ex, a->dq, a->dk, a->dv, NULL, a->datt, a->dout, a->q, a->k, a->v, a->p, a->B, a->T,
                          a->T, a->C, a->H);
}
/* The per-(batch, head) GEMMs attention needs, nothing else: forward
 * S = Q K^T and O = P V; backward dP = dO V^T, dV = P^T dO, dQ = dS K,
 * dK = dS^T Q. Heads are column slices (ld = C), as in the layer. */
static void att_gemms(att *a, int backward) {
    const int T = (int)a->T, C = (int)a->C, D = (int)(a->C / a->H);
    for (int64_t b = 0; b < a->B; b++)
        for (int64_t h = 0; h < a->H; h++) {
            const int64_t xo = b * a->T * a->C + h * D, so = (b * a->H + h) * a->T * a->T;
            if (!backward) {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, D, 1.0f, a->q + xo, C, a->k + xo, C,
                            0.0f, a->s + so, T);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, D, T, 1.0f, a->p + so, T, a->v + xo, C,
                            0.0f, a->out + xo, C);
            } else {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, D, 1.0f, a->dout + xo, C, a->v + xo, C,
                            0.0f, a->datt + so, T);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, D, T, 1.0f, a->p + so, T, a->dout + xo, C,
                            1.0f, a->dv + xo, C);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, D, T, 1.0f, a->datt + so, T, a->k + xo, C,
                            1.0f, a->dq + xo, C);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, D, T, 1.0f, a->datt + so, T, a->q + xo, C,
                            1.0f, a->dk + xo, C);
            }
        }
}
static void att_fwd_raw(void *c) { att_gemms(c, 0); }
static void att_bwd_raw(void *c) { att_gemms(c, 1); }

/* The peer runs OpenBLAS with its own threading, as an application calling
 * cblas_sgemm directly would; qiao keeps OpenBLAS single-threaded and
 * splits GEMMs over its own thread pool (see sdk/backend/cpu/dense.c), and sets
 * that up again itself on its next call. */
static int peer_threads = 2;
static double time_peer(bench_fn fn, void *ctx) {
    openblas_set_num_threads(peer_threads);
    return time_it(fn, ctx);
}

static void row(const char *name, const char *shape, double flops, double t_qiao, double t_raw) {
    double g_q = flops / t_qiao * 1e-9, g_r = flops / t_raw * 1e-9;
    printf("| %-18s | %-22s | %9.3f | %8.1f | %8.1f | %5.0f%% |\n", name, shape, t_qiao * 1e3, g_q, g_r,
           100.0 * g_q / g_r);
}

int main(int argc, char **argv) {
    int threads = 2;
    int64_t B = 32, T = 64, C = 256, H = 4;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) B = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--tokens")) T = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--width")) C = atoll(argv[i + 1]);
        else {
            fprintf(stderr, "usage: bench_layers [--threads N] [--batch B] [--tokens T] [--width C]\n");
            return 2;
        }
    }
    peer_threads = threads;
    qb_exec ex;
    qb_exec_cpu(&ex, threads);
    const int64_t N = B * T;
    printf("qiao %s, %d threads, OpenBLAS %s\n", qiao_version(), threads, openblas_get_config());
    printf("batch %lld x %lld tokens, width %lld, %lld heads; GEMM GFLOP/s (2*M*N*K per GEMM)\n\n", (long long)B,
           (long long)T, (long long)C, (long long)H);
    printf("| %-18s | %-22s | %9s | %8s | %8s | %6s |\n", "layer", "shape", "qiao ms", "qiao GF", "sgemm GF",
           "share");
    printf("|--------------------|------------------------|-----------|----------|----------|--------|\n");

    const int64_t shapes[][2] = {{C, C}, {C, 4 * C}, {4 * C, C}};
    for (int s = 0; s < 3; s++) {
        lin l = {ex, N, shapes[s][0], shapes[s][1], 0, 0, 0, 0, 0, 0, 0, 0};
        l.x = buf(N * l.C, 1);
        l.w = buf(l.OC * l.C, 2);
        l.b = buf(l.OC, 3);
        l.y = buf(N * l.OC, 4);
        l.dy = buf(N * l.OC, 5);
        l.dx = buf(N * l.C, 6);
        l.dw = buf(l.OC * l.C, 7);
        l.db = buf(l.OC, 8);
        char shape[64];
        snprintf(shape, sizeof shape, "%lldx%lld -> %lld", (long long)N, (long long)l.C, (long long)l.OC);
        double f = 2.0 * (double)N * (double)l.C * (double)l.OC;
        row("linear fwd", shape, f, time_it(lin_fwd, &l), time_peer(lin_fwd_raw, &l));
        row("linear bwd", shape, 2 * f, time_it(lin_bwd, &l), time_peer(lin_bwd_raw, &l));
        free(l.x), free(l.w), free(l.b), free(l.y), free(l.dy), free(l.dx), free(l.dw), free(l.db);
    }

    att a = {ex, B, T, C, H, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    a.q = buf(N * C, 11);
    a.k = buf(N * C, 12);
    a.v = buf(N * C, 13);
    a.out = buf(N * C, 14);
    a.dout = buf(N * C, 15);
    a.dq = buf(N * C, 16);
    a.dk = buf(N * C, 17);
    a.dv = buf(N * C, 18);
    a.p = buf(B * H * T * T, 19);
    a.datt = buf(B * H * T * T, 20);
    a.s = buf(B * H * T * T, 21);
    a.mask = malloc((size_t)N);
    for (int64_t i = 0; i < N; i++) a.mask[i] = (i % T) < T - (i / T) % 8; /* some padding per sequence */
    char shape[64];
    snprintf(shape, sizeof shape, "%lldx%lldx%lld, %lld heads", (long long)B, (long long)T, (long long)C,
             (long long)H);
    double D = (double)(C / H), f = 2.0 * 2.0 * (double)(B * H) * (double)T * (double)T * D;
    att_fwd(&a); /* valid probabilities in a.p for the backward */
    row("attention fwd", shape, f, time_it(att_fwd, &a), time_peer(att_fwd_raw, &a));
    row("attention bwd", shape, 2 * f, time_it(att_bwd, &a), time_peer(att_bwd_raw, &a));
    free(a.q), free(a.k), free(a.v), free(a.out), free(a.dout), free(a.dq), free(a.dk), free(a.dv), free(a.p);
    free(a.datt), free(a.s), free(a.mask);
    return 0;
}
