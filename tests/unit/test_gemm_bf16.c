/* tests/unit/test_gemm_bf16.c - mixed-precision training's bf16 GEMM
 * (sdk/backend/cpu/gemm_bf16.c) and the linear layer on it:
 *  - every path this CPU has (forced with qb_cpu_isa_force), every
 *    (trans_a, trans_b), odd shapes (M, N not multiples of 8 or 32, odd K),
 *    alpha and beta: within float rounding of the double sum of the
 *    bf16-rounded operands, bit-identical to the generic path and across 1,
 *    2 and 3 threads;
 *  - nn_linear_forward / nn_linear_backward with qb_exec.linear_prec = bf16
 *    against f32: out, dX and dW within the bound of docs/design.md
 *    "Precision" (|bf16 - f32| <= 2^-7 sum_k |a_k b_k| plus f32 summation,
 *    K 2^-23 sum_k |a_k b_k|), db identical (it is not a GEMM);
 *  - qmod_train with bf16 refused (QIAO_ERR_UNSUPPORTED, before touching its
 *    paths) when the path is capped below avx512bf16, as on a CPU without it.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "models/train/train.h"
#include "nn/nn.h"
#include "testutil.h"

static const qb_isa bf16_paths[] = {QB_ISA_GENERIC, QB_ISA_AVX512_BF16};

static float bf(float x) {
    const uint32_t b = (uint32_t)qb_bf16_from_f32(x) << 16;
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

typedef struct shape {
    int64_t M, N, K;
} shape;
static const shape shapes[] = {{1, 1, 1}, {1, 33, 7}, {9, 31, 5}, {17, 65, 130}, {70, 100, 257}, {130, 64, 1024}};

/* op(X) element (r, c) of a row-major matrix with leading dimension ld. */
static float at(const float *X, bool t, int64_t ld, int64_t r, int64_t c) {
    return t ? X[c * ld + r] : X[r * ld + c];
}

static void paths_exact(void **state) {
    (void)state;
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const shape *s = &shapes[si];
        const int64_t M = s->M, N = s->N, K = s->K;
        for (int tr = 0; tr < 4; tr++) {
            const bool ta = tr & 1, tb = tr >> 1;
            const int64_t lda = ta ? M : K, ldb = tb ? K : N;
            float *A = qt_alloc(M * K), *B = qt_alloc(K * N), *C0 = qt_alloc(M * N), *ref = qt_alloc(M * N);
            float *first = qt_alloc(M * N), *C = qt_alloc(M * N);
            qt_fill_normal(A, M * K, 1.0f, 11 + si);
            qt_fill_normal(B, K * N, 0.5f, 23 + si);
            qt_fill_normal(C0, M * N, 1.0f, 37 + si);
            const float alpha = tr == 3 ? 0.5f : 1.0f, beta = tr == 1 ? 0.0f : 1.0f;
            double *mag = calloc((size_t)(M * N), sizeof(double));
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) {
                    double sum = 0, abs = 0;
                    for (int64_t k = 0; k < K; k++) {
                        const double p = (double)bf(at(A, ta, lda, i, k)) * (double)bf(at(B, tb, ldb, k, j));
                        sum += p;
                        abs += fabs(p);
                    }
                    ref[i * N + j] = (float)(alpha * sum + beta * C0[i * N + j]);
                    mag[i * N + j] = fabs(alpha) * abs + fabs(beta * C0[i * N + j]);
                }
            bool have_first = false;
            for (size_t pi = 0; pi < sizeof bf16_paths / sizeof *bf16_paths; pi++) {
                if (!qb_cpu_isa_available(bf16_paths[pi])) continue;
                assert_int_equal(qb_cpu_isa_force(qb_cpu_isa_name(bf16_paths[pi])), QIAO_OK);
                for (int threads = 1; threads <= 3; threads++) {
                    qb_exec ex;
                    qb_exec_cpu(&ex, threads);
                    memcpy(C, C0, sizeof(float) * (size_t)(M * N));
                    assert_true(qb_cpu_gemm_bf16(&ex, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, N));
                    for (int64_t e = 0; e < M * N; e++) {
                        /* f32 sums of exact products: (K + 2) roundings at most. */
                        const double tol = (double)(K + 2) * 0x1p-24 * mag[e] + 1e-30;
                        if (fabs((double)C[e] - (double)ref[e]) > tol) {
                            fprintf(stderr,
                                    "path %s M %lld N %lld K %lld ta %d tb %d elt %lld: %g "
                                    "vs %g\n",
                                    qb_cpu_isa_name(bf16_paths[pi]), (long long)M, (long long)N, (long long)K, ta, tb,
                                    (long long)e, C[e], ref[e]);
                            fail();
                        }
                    }
                    if (!have_first) {
                        memcpy(first, C, sizeof(float) * (size_t)(M * N));
                        have_first = true;
                    } else {
                        assert_memory_equal(first, C, sizeof(float) * (size_t)(M * N));
                    }
                }
            }
            free(mag), free(A), free(B), free(C0), free(ref), free(first), free(C);
        }
    }
    assert_int_equal(qb_cpu_isa_force("auto"), QIAO_OK);
}

/* |x - y| <= 2^-7 s + K 2^-23 s + 1e-6 per element, s = sum_k |a_k b_k| (in f32
 * operands). */
static void check_bound(const char *what, const float *x, const float *y, const double *s, int64_t n, int64_t K) {
    double worst = 0;
    for (int64_t e = 0; e < n; e++) {
        const double tol = (0x1p-7 + (double)K * 0x1p-23) * s[e] + 1e-6;
        const double err = fabs((double)x[e] - (double)y[e]);
        if (err > tol) {
            fprintf(stderr, "%s: element %lld: bf16 %g f32 %g (bound %g)\n", what, (long long)e, x[e], y[e], tol);
            fail();
        }
        worst = fmax(worst, err / (s[e] + 1e-30));
    }
    fprintf(stderr, "%s: max |bf16 - f32| / sum|ab| = %.2e (bound 2^-7 = %.2e)\n", what, worst, 0x1p-7);
}

static void linear_mixed(void **state) {
    (void)state;
    if (!qb_cpu_isa_available(QB_ISA_AVX512_BF16)) {
        /* The generic path computes the same bits, only slowly; still check it. */
        assert_int_equal(qb_cpu_isa_force("generic"), QIAO_OK);
    }
    const int64_t N = 96, C = 72, OC = 40;
    float *inp = qt_alloc(N * C), *w = qt_alloc(OC * C), *b = qt_alloc(OC), *dout = qt_alloc(N * OC);
    qt_fill_normal(inp, N * C, 1.0f, 1);
    qt_fill_normal(w, OC * C, 0.2f, 2);
    qt_fill_normal(b, OC, 0.1f, 3);
    qt_fill_normal(dout, N * OC, 0.05f, 4);
    float *out[2], *dinp[2], *dw[2], *db[2];
    for (int p = 0; p < 2; p++) {
        qb_exec ex;
        qb_exec_cpu(&ex, 2);
        ex.linear_prec = p ? QB_PREC_BF16 : QB_PREC_F32;
        out[p] = qt_alloc(N * OC), dinp[p] = qt_alloc(N * C), dw[p] = qt_alloc(OC * C), db[p] = qt_alloc(OC);
        /* Start the accumulating gradients at a nonzero value, as in gradient
         * accumulation. */
        for (int64_t e = 0; e < N * C; e++)
            dinp[p][e] = 0.25f;
        for (int64_t e = 0; e < OC * C; e++)
            dw[p][e] = -0.5f;
        nn_linear_forward(&ex, out[p], inp, w, b, N, C, OC);
        nn_linear_backward(&ex, dinp[p], dw[p], db[p], dout, inp, w, N, C, OC);
    }
    double *s = calloc((size_t)(N * C > OC * C ? N * C : OC * C) + (size_t)(N * OC), sizeof(double));
    for (int64_t i = 0; i < N; i++)
        for (int64_t o = 0; o < OC; o++) {
            double a = 0;
            for (int64_t c = 0; c < C; c++)
                a += fabs((double)inp[i * C + c] * w[o * C + c]);
            s[i * OC + o] = a;
        }
    check_bound("forward", out[1], out[0], s, N * OC, C);
    for (int64_t i = 0; i < N; i++)
        for (int64_t c = 0; c < C; c++) {
            double a = 0;
            for (int64_t o = 0; o < OC; o++)
                a += fabs((double)dout[i * OC + o] * w[o * C + c]);
            s[i * C + c] = a;
        }
    check_bound("dX", dinp[1], dinp[0], s, N * C, OC);
    for (int64_t o = 0; o < OC; o++)
        for (int64_t c = 0; c < C; c++) {
            double a = 0;
            for (int64_t i = 0; i < N; i++)
                a += fabs((double)dout[i * OC + o] * inp[i * C + c]);
            s[o * C + c] = a;
        }
    check_bound("dW", dw[1], dw[0], s, OC * C, N);
    assert_memory_equal(db[0], db[1], sizeof(float) * (size_t)OC);
    for (int p = 0; p < 2; p++)
        free(out[p]), free(dinp[p]), free(dw[p]), free(db[p]);
    free(s), free(inp), free(w), free(b), free(dout);
    assert_int_equal(qb_cpu_isa_force("auto"), QIAO_OK);
}

static void trainer_refuses(void **state) {
    (void)state;
    /* A cap below avx512bf16 stands for a CPU without it (Ice Lake). */
    assert_int_equal(qb_cpu_isa_force("generic"), QIAO_OK);
    assert_false(qb_cpu_gemm_bf16_supported());
    qmod_train_params p;
    memset(&p, 0, sizeof p);
    assert_int_equal(qmod_train_hparams_from_config("{}", &p.hp), QIAO_OK);
    p.data_dir = "/nonexistent/qiao-bf16";
    p.out_path = "/nonexistent/qiao-bf16/out.safetensors";
    p.ckpt_path = "/nonexistent/qiao-bf16/out.ckpt.safetensors";
    p.config_path = "/nonexistent/qiao-bf16/c.json";
    p.tokenizer_path = "/nonexistent/qiao-bf16/t.safetensors";
    p.bf16 = true;
    assert_int_equal(qmod_train(&p), QIAO_ERR_UNSUPPORTED);
    assert_non_null(strstr(qiao_last_error(), "AVX512-BF16"));
    assert_int_equal(qb_cpu_isa_force("auto"), QIAO_OK);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(paths_exact),
    cmocka_unit_test(linear_mixed),
    cmocka_unit_test(trainer_refuses),
};

QT_MAIN(tests)
