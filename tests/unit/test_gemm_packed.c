/* tests/unit/test_gemm_packed.c - the inference GEMM on weights packed once
 * (sdk/backend/cpu/gemm_packed.c): agrees with a double-precision reference
 * over ragged M and N, short and long K, alpha, beta 0 and 1, padded lda and
 * ldc (never writing past N); gives the same bits for 1, 2 and 3 threads;
 * handles a column range of a packed weight (conv.c's K blocks); fuses a
 * linear layer's bias and GELU without changing a bit; leaves every
 * call it does not match to OpenBLAS, bit for bit; and through the public
 * API gives the embeddings of the unpacked forward up to rounding.
 *
 * The kernel needs AVX-512F: on a CPU without it the kernel cases are
 * skipped, and the fallback and API cases check that nothing changes. */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "backend/cpu/cpu.h"
#include "model_fixture.h"
#include "models/embed.h"
#include "nn/nn.h"
#include "qiao.h"
#include "testutil.h"

#define SENTINEL 777.0f

/* C (M, N) with ldc, through ex->ops->gemm as nn_linear_forward calls it:
 * C = alpha A W^T + beta C, A (M, K) with lda, W (N, K). */
static void linear_gemm(const qb_exec *ex, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                        int64_t lda, const float *W, int64_t ldw, float beta, float *C, int64_t ldc) {
    ex->ops->gemm(ex, false, true, M, N, K, alpha, A, lda, 0, W, ldw, 0, beta, C, ldc, 0, 1);
}

static void kernel_reference(void **state) {
    (void)state;
    if (!qb_cpu_gemm_packed_supported()) skip();
    static const int64_t Ms[] = {1, 7, 63, 64, 65, 200};
    static const int64_t Ns[] = {1000, 1024, 256, 33};
    static const int64_t Ks[] = {1, 80, 256, 1024};
    const int64_t maxM = 200, maxN = 1024, maxK = 1024, pad = 5;
    float *A = qt_alloc(maxM * (maxK + pad)), *W = qt_alloc(maxN * maxK), *C0 = qt_alloc(maxM * (maxN + pad));
    float *C[3];
    double *ref = malloc(sizeof(double) * (size_t)(maxM * maxN)), *mag = malloc(sizeof(double) * (size_t)(maxM * maxN));
    assert_non_null(ref);
    assert_non_null(mag);
    for (int t = 0; t < 3; t++) C[t] = qt_alloc(maxM * (maxN + pad));
    qt_fill_normal(A, maxM * (maxK + pad), 1.0f, 1);
    qt_fill_normal(C0, maxM * (maxN + pad), 1.0f, 3);
    int bad = 0, cases = 0;
    for (size_t ni = 0; ni < sizeof Ns / sizeof *Ns; ni++)
        for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++) {
            const int64_t N = Ns[ni], K = Ks[ki];
            qt_fill_normal(W, N * K, 1.0f, 2 + (uint64_t)(N * 7 + K));
            qb_packed_set *set = NULL;
            const qb_packed_src src = {W, N, K};
            assert_int_equal(qb_packed_set_new(&src, 1, &set), QIAO_OK);
            qb_exec ex[3];
            for (int t = 0; t < 3; t++) {
                qb_exec_cpu(&ex[t], t + 1);
                ex[t].packed = set;
            }
            for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++) {
                const int64_t M = Ms[mi];
                /* Odd cases use padded rows, so lda and ldc matter. */
                const bool padded = (mi + ni + ki) % 2;
                const int64_t lda = padded ? K + pad : K, ldc = padded ? N + pad : N;
                for (int64_t i = 0; i < M; i++)
                    for (int64_t j = 0; j < N; j++) {
                        double s = 0, a = 0;
                        for (int64_t k = 0; k < K; k++) {
                            const double p = (double)A[i * lda + k] * (double)W[j * K + k];
                            s += p, a += fabs(p);
                        }
                        ref[i * N + j] = s, mag[i * N + j] = a;
                    }
                for (int b = 0; b < 2; b++) {
                    const float alpha = b ? 0.5f : 1.0f, beta = (float)b;
                    for (int t = 0; t < 3; t++) {
                        /* beta = 0 must not read C: start from NaN there. */
                        for (int64_t i = 0; i < M * ldc; i++) C[t][i] = b ? C0[i] : NAN;
                        for (int64_t i = 0; i < M; i++)
                            for (int64_t j = N; j < ldc; j++) C[t][i * ldc + j] = SENTINEL;
                        assert_true(qb_cpu_gemm_packed(&ex[t], false, true, M, N, K, alpha, A, lda, W, K, beta, C[t],
                                                       ldc, 1));
                    }
                    cases++;
                    for (int t = 1; t < 3; t++)
                        if (memcmp(C[0], C[t], sizeof(float) * (size_t)(M * ldc))) {
                            printf("M=%lld N=%lld K=%lld beta=%d: %d threads differ from 1\n", (long long)M,
                                   (long long)N, (long long)K, b, t + 1);
                            bad++;
                        }
                    /* fp32 summation of K products: error within K eps sum|p| */
                    for (int64_t i = 0; i < M; i++) {
                        for (int64_t j = 0; j < N; j++) {
                            const double want = alpha * ref[i * N + j] + (b ? (double)C0[i * ldc + j] : 0.0);
                            const double tol = 1e-7 * (double)(K + 2) * (mag[i * N + j] + 1.0);
                            if (!(fabs(C[0][i * ldc + j] - want) <= tol)) {
                                if (bad < 10)
                                    printf("M=%lld N=%lld K=%lld beta=%d: C[%lld][%lld] = %g, want %g\n",
                                           (long long)M, (long long)N, (long long)K, b, (long long)i, (long long)j,
                                           C[0][i * ldc + j], want);
                                bad++;
                            }
                        }
                        for (int64_t j = N; j < ldc; j++)
                            if (C[0][i * ldc + j] != SENTINEL) bad++;
                    }
                    /* The public entry (qb_cpu_gemm) takes the same path. */
                    if (M <= QB_PACK_MAX_M) {
                        for (int64_t i = 0; i < M * ldc; i++) C[1][i] = b ? C0[i] : NAN;
                        linear_gemm(&ex[1], M, N, K, alpha, A, lda, W, K, beta, C[1], ldc);
                        for (int64_t i = 0; i < M; i++)
                            if (memcmp(C[0] + i * ldc, C[1] + i * ldc, sizeof(float) * (size_t)N)) bad++;
                    }
                }
            }
            qb_packed_set_free(set);
        }
    printf("%d packed GEMMs (x 3 thread counts), %d mismatches\n", cases, bad);
    assert_int_equal(bad, 0);
    free(A), free(W), free(C0), free(ref), free(mag);
    for (int t = 0; t < 3; t++) free(C[t]);
}

/* A weight used a column range at a time (conv.c's K-blocked GEMM, the
 * text encoder's gate): B = W + k0, ldb = W's K, K = the block's length. */
static void column_range(void **state) {
    (void)state;
    if (!qb_cpu_gemm_packed_supported()) skip();
    const int64_t M = 37, N = 70, KW = 400;
    float *A = qt_alloc(M * KW), *W = qt_alloc(N * KW), *C = qt_alloc(M * N);
    qt_fill_normal(A, M * KW, 1.0f, 4);
    qt_fill_normal(W, N * KW, 1.0f, 5);
    qb_packed_set *set = NULL;
    const qb_packed_src src = {W, N, KW};
    assert_int_equal(qb_packed_set_new(&src, 1, &set), QIAO_OK);
    qb_exec ex;
    qb_exec_cpu(&ex, 2);
    ex.packed = set;
    /* Blocks [0, 256) then [256, 400) accumulated with beta = 1: C = A W^T. */
    const int64_t blocks[][2] = {{0, 256}, {256, 144}};
    for (int bl = 0; bl < 2; bl++) {
        const int64_t k0 = blocks[bl][0], kn = blocks[bl][1];
        assert_true(qb_cpu_gemm_packed(&ex, false, true, M, N, kn, 1.0f, A + k0, KW, W + k0, KW, bl ? 1.0f : 0.0f, C,
                                       N, 1));
    }
    int bad = 0;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0, a = 0;
            for (int64_t k = 0; k < KW; k++) {
                const double p = (double)A[i * KW + k] * (double)W[j * KW + k];
                s += p, a += fabs(p);
            }
            if (!(fabs(C[i * N + j] - s) <= 1e-7 * (double)(KW + 2) * (a + 1.0))) bad++;
        }
    assert_int_equal(bad, 0);
    /* A range running past W's columns is not W: not taken. */
    assert_false(qb_cpu_gemm_packed(&ex, false, true, M, N, 145, 1.0f, A, KW, W + 256, KW, 0.0f, C, N, 1));
    qb_packed_set_free(set);
    free(A), free(W), free(C);
}

/* A linear layer with its bias and GELU fused into the packed GEMM
 * (nn_linears_forward through the backend's linears_fused) gives exactly the bits of the packed GEMM followed by
 * the separate bias and GELU kernels, for ragged shapes and 1-3 threads,
 * and writes nothing past its outputs; without a packed weight nn
 * composes gemm, bias and GELU, bit for bit as well. */
static void linear_fused(void **state) {
    (void)state;
    static const int64_t Ns[] = {1, 7, 64, 100};
    static const int64_t OCs[] = {1024, 40, 256};
    const int64_t C = 96, maxN = 100, maxOC = 1024;
    float *inp = qt_alloc(maxN * C), *w = qt_alloc(maxOC * C), *b = qt_alloc(maxOC);
    float *out = qt_alloc(maxN * maxOC + 1), *g = qt_alloc(maxN * maxOC + 1);
    float *ref = qt_alloc(maxN * maxOC), *refg = qt_alloc(maxN * maxOC);
    qt_fill_normal(inp, maxN * C, 1.0f, 11);
    qt_fill_normal(w, maxOC * C, 0.3f, 12);
    qt_fill_normal(b, maxOC, 1.0f, 13);
    const float *const wc = w, *const bc = b; /* the shapes nn_linears_forward takes */
    float *const gp = g;
    for (size_t oi = 0; oi < sizeof OCs / sizeof *OCs; oi++) {
        const int64_t OC = OCs[oi];
        qb_packed_set *set = NULL;
        const qb_packed_src src = {w, OC, C};
        assert_int_equal(qb_packed_set_new(&src, 1, &set), QIAO_OK);
        for (int packed = 0; packed < 2; packed++)
            for (size_t ni = 0; ni < sizeof Ns / sizeof *Ns; ni++)
                for (int t = 1; t <= 3; t++) {
                    const int64_t N = Ns[ni];
                    qb_exec ex;
                    qb_exec_cpu(&ex, t);
                    ex.packed = packed ? set : NULL;
                    /* The reference: the three kernels one after the other. */
                    linear_gemm(&ex, N, OC, C, 1.0f, inp, C, w, C, 0.0f, ref, OC);
                    qb_cpu_bias_forward(&ex, ref, b, N, OC);
                    qb_cpu_gelu_forward(&ex, refg, ref, N * OC);
                    out[N * OC] = g[N * OC] = SENTINEL;
                    nn_linears_forward(&ex, 1, &out, &gp, inp, &wc, &bc, N, C, OC);
                    assert_memory_equal(out, ref, sizeof(float) * (size_t)(N * OC));
                    assert_memory_equal(g, refg, sizeof(float) * (size_t)(N * OC));
                    assert_true(out[N * OC] == SENTINEL && g[N * OC] == SENTINEL);
                    /* No bias, no GELU: the plain GEMM. */
                    linear_gemm(&ex, N, OC, C, 1.0f, inp, C, w, C, 0.0f, ref, OC);
                    nn_linears_forward(&ex, 1, &out, NULL, inp, &wc, NULL, N, C, OC);
                    assert_memory_equal(out, ref, sizeof(float) * (size_t)(N * OC));
                }
        /* The CPU backend's fused slot is the packed kernel's: it takes the
         * call only with the set (so the loops above ran it, not nn's
         * composition). */
        qb_exec ex;
        qb_exec_cpu(&ex, 2);
        ex.packed = set;
        const bool fused = ex.ops->linears_fused(&ex, 1, &out, &gp, inp, &wc, &bc, 7, C, OC);
        assert_true(fused == qb_cpu_gemm_packed_supported());
        ex.packed = NULL;
        assert_false(ex.ops->linears_fused(&ex, 1, &out, &gp, inp, &wc, &bc, 7, C, OC));
        qb_packed_set_free(set);
    }
    free(inp), free(w), free(b), free(out), free(g), free(ref), free(refg);
}

/* Three linear layers on one input (attention's Q, K, V) through
 * nn_linears_forward, run in one region when all three weights are packed:
 * the bits of three nn_linear_forward calls, for 1-3 threads, with the set,
 * without it, and with one weight left unpacked (then it falls back). */
static void linears_shared_input(void **state) {
    (void)state;
    const int64_t C = 64, OC = 72, maxN = 65;
    float *inp = qt_alloc(maxN * C), *w = qt_alloc(3 * OC * C), *b = qt_alloc(3 * OC);
    float *out = qt_alloc(3 * maxN * OC), *ref = qt_alloc(3 * maxN * OC);
    qt_fill_normal(inp, maxN * C, 1.0f, 21);
    qt_fill_normal(w, 3 * OC * C, 0.3f, 22);
    qt_fill_normal(b, 3 * OC, 1.0f, 23);
    const qb_packed_src src[3] = {{w, OC, C}, {w + OC * C, OC, C}, {w + 2 * OC * C, OC, C}};
    qb_packed_set *all = NULL, *two = NULL;
    assert_int_equal(qb_packed_set_new(src, 3, &all), QIAO_OK);
    assert_int_equal(qb_packed_set_new(src, 2, &two), QIAO_OK);
    const float *const ws[3] = {w, w + OC * C, w + 2 * OC * C}, *const bs[3] = {b, NULL, b + 2 * OC};
    static const int64_t Ns[] = {1, 9, 65};
    for (int set = 0; set < 3; set++)
        for (size_t ni = 0; ni < sizeof Ns / sizeof *Ns; ni++)
            for (int t = 1; t <= 3; t++) {
                const int64_t N = Ns[ni];
                qb_exec ex;
                qb_exec_cpu(&ex, t);
                ex.packed = set == 0 ? NULL : set == 1 ? all : two;
                float *const outs[3] = {out, out + N * OC, out + 2 * N * OC};
                for (int j = 0; j < 3; j++)
                    nn_linear_forward(&ex, ref + j * N * OC, inp, ws[j], bs[j], N, C, OC);
                memset(out, 0, sizeof(float) * (size_t)(3 * N * OC));
                nn_linears_forward(&ex, 3, outs, NULL, inp, ws, bs, N, C, OC);
                assert_memory_equal(out, ref, sizeof(float) * (size_t)(3 * N * OC));
            }
    qb_exec ex;
    qb_exec_cpu(&ex, 2);
    ex.packed = two;
    float *const outs[3] = {out, out + OC, out + 2 * OC};
    assert_false(qb_cpu_linears_packed(&ex, 3, outs, NULL, inp, ws, bs, 1, C, OC)); /* the third is not packed */
    ex.packed = all;
    assert_true(qb_cpu_linears_packed(&ex, 3, outs, NULL, inp, ws, bs, 1, C, OC) == qb_cpu_gemm_packed_supported());
    qb_packed_set_free(all);
    qb_packed_set_free(two);
    free(inp), free(w), free(b), free(out), free(ref);
}

/* Calls the kernel does not match go to OpenBLAS unchanged: the same bits as
 * a context without a packed set. */
static void fallback(void **state) {
    (void)state;
    const int64_t M = 20, N = 48, K = 64;
    float *A = qt_alloc(4 * K * K), *W = qt_alloc(N * K), *other = qt_alloc(N * K), *C1 = qt_alloc(4 * K * K),
          *C2 = qt_alloc(4 * K * K);
    qt_fill_normal(A, 4 * K * K, 1.0f, 6);
    qt_fill_normal(W, N * K, 1.0f, 7);
    memcpy(other, W, sizeof(float) * (size_t)(N * K));
    qb_packed_set *set = NULL;
    const qb_packed_src src = {W, N, K};
    assert_int_equal(qb_packed_set_new(&src, 1, &set), QIAO_OK);
    qb_exec plain, packed;
    qb_exec_cpu(&plain, 2);
    qb_exec_cpu(&packed, 2);
    packed.packed = set;
    const struct {
        bool ta, tb;
        int64_t M, N, K;
        const float *B;
        int64_t ldb, batch;
        const char *what;
    } cs[] = {
        {false, true, M, N, K, other, K, 1, "a weight not in the set"},
        {false, false, M, K, N, W, K, 1, "trans_b = false (the backward's dinp)"},
        {true, true, M, N, K, W, K, 1, "trans_a = true"},
        {false, true, M, N - 1, K, W, K, 1, "N != the weight's rows"},
        {false, true, M, N, K - 1, W, K - 1, 1, "ldb != the weight's K"},
        {false, true, M, N, K, W, K, 2, "batch = 2"},
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
        const int64_t lda = cs[i].ta ? cs[i].M : cs[i].K, ldc = cs[i].N;
        assert_false(qb_cpu_gemm_packed(&packed, cs[i].ta, cs[i].tb, cs[i].M, cs[i].N, cs[i].K, 1.0f, A, lda,
                                        cs[i].B, cs[i].ldb, 0.0f, C1, ldc, cs[i].batch));
        memset(C1, 0, sizeof(float) * (size_t)(4 * K * K));
        memset(C2, 0, sizeof(float) * (size_t)(4 * K * K));
        /* stride M*lda / N*ldb per batch item: within the buffers for batch 2 */
        plain.ops->gemm(&plain, cs[i].ta, cs[i].tb, cs[i].M, cs[i].N, cs[i].K, 1.0f, A, lda, 0, cs[i].B, cs[i].ldb,
                        0, 0.0f, C1, ldc, cs[i].M * ldc, cs[i].batch);
        packed.ops->gemm(&packed, cs[i].ta, cs[i].tb, cs[i].M, cs[i].N, cs[i].K, 1.0f, A, lda, 0, cs[i].B,
                         cs[i].ldb, 0, 0.0f, C2, ldc, cs[i].M * ldc, cs[i].batch);
        if (memcmp(C1, C2, sizeof(float) * (size_t)(4 * K * K))) fail_msg("%s: not OpenBLAS's bits", cs[i].what);
    }
    /* Above QB_PACK_MAX_M rows qb_cpu_gemm keeps OpenBLAS, even for W. */
    const int64_t big = QB_PACK_MAX_M + 1;
    float *Abig = qt_alloc(big * K), *D1 = qt_alloc(big * N), *D2 = qt_alloc(big * N);
    qt_fill_normal(Abig, big * K, 1.0f, 8);
    linear_gemm(&plain, big, N, K, 1.0f, Abig, K, W, K, 0.0f, D1, N);
    linear_gemm(&packed, big, N, K, 1.0f, Abig, K, W, K, 0.0f, D2, N);
    assert_memory_equal(D1, D2, sizeof(float) * (size_t)(big * N));
    /* The matching call is taken where the CPU can. */
    assert_int_equal(qb_cpu_gemm_packed(&packed, false, true, M, N, K, 1.0f, A, K, W, K, 0.0f, C1, N, 1),
                     qb_cpu_gemm_packed_supported());
    qb_packed_set_free(set);
    free(A), free(W), free(other), free(C1), free(C2), free(Abig), free(D1), free(D2);
}

static void set_errors(void **state) {
    (void)state;
    float *W = qt_alloc(100);
    qb_packed_set *set = NULL;
    /* overlapping weights */
    const qb_packed_src two[] = {{W, 4, 10}, {W + 30, 2, 10}};
    assert_int_equal(qb_packed_set_new(two, 2, &set), QIAO_ERR_INVALID_ARGUMENT);
    assert_null(set);
    const qb_packed_src empty = {W, 0, 10};
    assert_int_equal(qb_packed_set_new(&empty, 1, &set), QIAO_ERR_INVALID_ARGUMENT);
    /* an empty set is fine and matches nothing; sizes round N up to panels */
    assert_int_equal(qb_packed_set_new(NULL, 0, &set), QIAO_OK);
    qb_packed_set_free(set);
    const qb_packed_src ok2[] = {{W + 40, 3, 20}, {W, 4, 10}};
    assert_int_equal(qb_packed_set_new(ok2, 2, &set), QIAO_OK);
    assert_true(qb_packed_set_bytes(set) >= sizeof(float) * QB_PACK_NR * (20 + 10));
    qb_packed_set_free(set);
    qb_packed_set_free(NULL);
    free(W);
}

/* ---- through the public API ------------------------------------------------- */

static double cosine_rows_min(const float *a, const float *b, int64_t n, int64_t D) {
    double lo = 1.0;
    for (int64_t i = 0; i < n; i++) {
        const double c = qiao_cosine(a + i * D, b + i * D, (size_t)D);
        lo = c < lo ? c : lo;
    }
    return lo;
}

/* tiny.json with MLP width 512, written to `path`: fc2's K = 512 is past
 * OpenBLAS's K block (GEMM_Q = 320, see sdk/backend/cpu/conv.c), where its
 * rounding differs from the packed kernel's single pass over K, so the two
 * paths give different bits and the test can tell which one ran. */
static void write_model_mlp512(const char *path) {
    FILE *fp = fopen(QT_TINY_JSON, "rb");
    assert_non_null(fp);
    char json[4096];
    const size_t len = fread(json, 1, sizeof json - 1, fp);
    fclose(fp);
    json[len] = 0;
    int swapped = 0;
    for (char *q = strstr(json, "\"mlp\": 128"); q; q = strstr(q, "\"mlp\": 128")) memcpy(q + 7, "512", 3), swapped++;
    assert_int_equal(swapped, 3);
    qiao_tokenizer *tok = NULL;
    qmod_config file, cfg;
    qmod_model *m = NULL;
    assert_int_equal(qiao_tokenizer_load(QT_TOKENIZER, &tok), QIAO_OK);
    assert_int_equal(qmod_config_from_string(json, "tiny, mlp 512", &file), QIAO_OK);
    assert_int_equal(qmod_config_for_tokenizer(&file, tok, &cfg), QIAO_OK);
    assert_int_equal(qmod_create(&cfg, 9, &m), QIAO_OK);
    m->tok = tok;
    assert_int_equal(qmod_save(m, path, QIAO_DTYPE_F32), QIAO_OK);
    qmod_free(m);
    qmod_config_free(&file);
    qmod_config_free(&cfg);
}

/* qiao_model_load packs the weights: the API's embeddings equal an internal
 * forward with qmod_pack_weights bit for bit (at 1 and 3 threads), and the
 * unpacked (OpenBLAS) forward's up to rounding (cosine >= 0.999999 per row). */
static void api_embeddings(void **state) {
    (void)state;
    char path[256];
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/qiao_test_gemm_packed_%d.safetensors", dir && *dir ? dir : "/tmp", (int)getpid());
    write_model_mlp512(path);
    qiao_model *pm = NULL;
    assert_int_equal(qiao_model_load(path, &pm), QIAO_OK);
    qmod_model *m = NULL;
    assert_int_equal(qmod_load(path, &m), QIAO_OK);
    unlink(path);
    qb_packed_set *set = NULL;
    assert_int_equal(qmod_pack_weights(m, &set), QIAO_OK);
    assert_true((set != NULL) == qb_cpu_gemm_packed_supported());
    if (set) printf("packed weights: %.2f MiB (parameters %.2f MiB f32)\n", qb_packed_set_bytes(set) / 1048576.0,
                    (double)m->arena.n * 4 / 1048576.0);

    const int64_t D = qiao_model_dim(pm), n = 3;
    const char *texts[] = {"一个红色的圆形在左上角", "a big blue square in the lower right", "hello"};
    qiao_image *imgs[3] = {0};
    const char *photos[] = {QIAO_TEST_DATA "/image/000000126107.jpg", QIAO_TEST_DATA "/image/000000159269.jpg",
                            QIAO_TEST_DATA "/image/000000205401.jpg"};
    for (int i = 0; i < 3; i++) assert_int_equal(qiao_image_decode_file(photos[i], NULL, &imgs[i]), QIAO_OK);
    qiao_audio *auds[3] = {0};
    for (int i = 0; i < 3; i++) {
        const int64_t len = 16000 * (i + 1) / 2;
        float *x = qt_alloc(len);
        qt_fill_uniform(x, len, -0.5f, 0.5f, 20 + (uint64_t)i);
        for (int64_t j = 0; j < len; j++) x[j] *= (float)sin(0.01 * (double)j * (i + 1));
        qiao_audio_params ap = qiao_audio_default_params();
        assert_int_equal(qiao_audio_from_pcm(x, len, 16000, 1, &ap, &auds[i]), QIAO_OK);
        free(x);
    }
    float *api = qt_alloc(n * D), *pk = qt_alloc(n * D), *plain = qt_alloc(n * D);
    int differ = 0; /* forwards where packed and OpenBLAS bits differ */
    for (int threads = 1; threads <= 3; threads += 2) {
        qiao_session_params sp = qiao_session_default_params();
        sp.n_threads = threads;
        qiao_session *s = NULL;
        assert_int_equal(qiao_session_new(pm, &sp, &s), QIAO_OK);
        qb_exec ex_pk, ex_plain;
        qb_exec_cpu(&ex_pk, threads);
        qb_exec_cpu(&ex_plain, threads);
        ex_pk.packed = set;
        for (int mod = 0; mod < 3; mod++) {
            qmod_work w1, w2;
            memset(&w1, 0, sizeof w1), memset(&w2, 0, sizeof w2);
            if (mod == QMOD_TEXT) {
                assert_int_equal(qiao_embed_texts(s, texts, (size_t)n, api, (size_t)(n * D)), QIAO_OK);
                assert_int_equal(qmod_embed_texts(&ex_pk, m, &w1, texts, (size_t)n, pk), QIAO_OK);
                assert_int_equal(qmod_embed_texts(&ex_plain, m, &w2, texts, (size_t)n, plain), QIAO_OK);
            } else if (mod == QMOD_IMAGE) {
                const qiao_image *const *im = (const qiao_image *const *)imgs;
                assert_int_equal(qiao_embed_images(s, im, (size_t)n, api, (size_t)(n * D)), QIAO_OK);
                assert_int_equal(qmod_embed_images(&ex_pk, m, &w1, im, (size_t)n, pk), QIAO_OK);
                assert_int_equal(qmod_embed_images(&ex_plain, m, &w2, im, (size_t)n, plain), QIAO_OK);
            } else {
                const qiao_audio *const *au = (const qiao_audio *const *)auds;
                assert_int_equal(qiao_embed_audios(s, au, (size_t)n, api, (size_t)(n * D)), QIAO_OK);
                assert_int_equal(qmod_embed_audio(&ex_pk, m, &w1, au, (size_t)n, pk), QIAO_OK);
                assert_int_equal(qmod_embed_audio(&ex_plain, m, &w2, au, (size_t)n, plain), QIAO_OK);
            }
            double md = 0;
            for (int64_t i = 0; i < n * D; i++) md = fmax(md, fabs((double)pk[i] - plain[i]));
            const double cmin = cosine_rows_min(pk, plain, n, D);
            printf("%s, %d threads: packed vs OpenBLAS forward: max |diff| %.3g, min cosine %.9f\n",
                   qmod_modality_name((qmod_modality)mod), threads, md, cmin);
            assert_memory_equal(api, pk, sizeof(float) * (size_t)(n * D));
            assert_true(cmin >= 0.999999);
            differ += md > 0;
            qmod_work_free(&w1), qmod_work_free(&w2);
        }
        qiao_session_free(s);
    }
    /* With AVX-512F the API must have run the packed kernel: its bits are
     * the packed forward's, and those differ from OpenBLAS's (K = 512). */
    if (qb_cpu_gemm_packed_supported()) assert_true(differ > 0);
    else assert_int_equal(differ, 0);
    for (int i = 0; i < 3; i++) qiao_image_free(imgs[i]), qiao_audio_free(auds[i]);
    free(api), free(pk), free(plain);
    qb_packed_set_free(set);
    qmod_free(m);
    qiao_model_free(pm);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(kernel_reference), cmocka_unit_test(column_range), cmocka_unit_test(linear_fused),
    cmocka_unit_test(linears_shared_input),
    cmocka_unit_test(fallback),
    cmocka_unit_test(set_errors),       cmocka_unit_test(api_embeddings),
};

QT_MAIN(tests)
