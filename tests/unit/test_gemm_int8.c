/* tests/unit/test_gemm_int8.c - int8 and bf16 inference GEMMs
 * (sdk/backend/cpu/gemm_lowp.c):
 *  - int8: every path this CPU has (forced with qb_cpu_isa_force) equals a
 *    reference built from the exact integer sum of the codes, over odd shapes
 *    (M = 1, N not a multiple of 16 or 32, K not a multiple of 4), zero rows,
 *    alpha/beta, bias and GELU; all paths and thread counts give the same bits;
 *  - bf16: every path within float rounding of the double sum of the
 *    bf16-rounded operands, bit-identical to the generic path, and within the
 *    documented tolerance of the f32 product (docs/design.md "Precision");
 *  - the forcing switch rejects unknown and unavailable paths;
 *  - through the public API, the shipped model's int8 and bf16 embeddings
 *    stay within the documented cosine of f32 on texts, pictures and clips;
 *  - a file `qiao quantize` wrote holds the library's int8 codes, loads,
 *    and computes in int8 by default. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "models/embed.h"
#include "models/model.h"
#include "qiao.h"
#include "testutil.h"

static const qb_isa int8_paths[] = {QB_ISA_GENERIC, QB_ISA_AVX2, QB_ISA_AVX_VNNI, QB_ISA_AVX512_VNNI};
static const qb_isa bf16_paths[] = {QB_ISA_GENERIC, QB_ISA_AVX512_BF16};

static void force(qb_isa isa) { assert_int_equal(qb_cpu_isa_force(qb_cpu_isa_name(isa)), QIAO_OK); }

typedef struct shape {
    int64_t M, N, K;
} shape;
static const shape shapes[] = {{1, 1, 1},   {1, 33, 7},    {3, 100, 67}, {8, 32, 64},
                               {9, 31, 5},  {17, 65, 130}, {64, 96, 256}, {70, 1024, 1024}};

/* C = alpha dq(A) dq(W)^T + beta C0 + bias through `prec` on path `isa`
 * with `threads` threads, via the fused-linear entry when gelu != NULL. */
static void run(qb_precision prec, qb_isa isa, int threads, const shape *s, const float *A, const float *W,
                const float *bias, float alpha, float beta, const float *C0, float *C, float *gelu) {
    force(isa);
    assert_int_equal(qb_cpu_isa_selected(prec), isa);
    qb_lowp_set *set = NULL;
    const qb_packed_src src = {W, s->N, s->K};
    assert_int_equal(qb_lowp_set_new(&src, 1, prec, &set), QIAO_OK);
    qb_exec ex;
    qb_exec_cpu(&ex, threads);
    memcpy(C, C0, sizeof(float) * (size_t)(s->M * s->N));
    if (gelu) {
        float *outs[1] = {C}, *gouts[1] = {gelu};
        const float *ws[1] = {W}, *bs[1] = {bias};
        assert_true(qb_lowp_linears(&ex, set, 1, outs, gouts, A, ws, bs, s->M, s->K, s->N));
    } else {
        assert_true(qb_lowp_gemm(&ex, set, s->M, s->N, s->K, alpha, A, s->K, W, s->K, beta, C, s->N));
    }
    qb_lowp_set_free(set);
}

static void int8_paths_exact(void **state) {
    (void)state;
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const shape *s = &shapes[si];
        const int64_t M = s->M, N = s->N, K = s->K;
        float *A = qt_alloc(M * K), *W = qt_alloc(N * K), *C0 = qt_alloc(M * N), *C = qt_alloc(M * N);
        float *ref = qt_alloc(M * N), *mag = qt_alloc(M * N), *bias = qt_alloc(N);
        qt_fill_normal(A, M * K, 1.0f, 10 + si);
        qt_fill_normal(W, N * K, 0.05f, 20 + si);
        qt_fill_normal(C0, M * N, 1.0f, 30 + si);
        qt_fill_normal(bias, N, 0.1f, 40 + si);
        /* A zero row (scale 0): its output is exactly beta C0 (+ bias). */
        if (M > 2) memset(A + 2 * K, 0, sizeof(float) * (size_t)K);
        int8_t *qa = malloc((size_t)(M * K)), *qw = malloc((size_t)(N * K));
        float *sa = qt_alloc(M), *sw = qt_alloc(N);
        assert_non_null(qa), assert_non_null(qw);
        for (int64_t i = 0; i < M; i++) sa[i] = qb_lowp_quantize_row(qa + i * K, A + i * K, K);
        for (int64_t j = 0; j < N; j++) sw[j] = qb_lowp_quantize_row(qw + j * K, W + j * K, K);
        if (M > 2) assert_true(sa[2] == 0.0f);
        for (int b = 0; b < 2; b++) {
            const float alpha = b ? 0.5f : 1.0f, beta = (float)b;
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) {
                    int64_t sum = 0;
                    for (int64_t k = 0; k < K; k++) sum += (int64_t)qa[i * K + k] * qw[j * K + k];
                    const double dot = (double)sum * (double)sw[j] * (double)sa[i] * alpha;
                    ref[i * N + j] = (float)(dot + beta * (double)C0[i * N + j]);
                    mag[i * N + j] = (float)(fabs(dot) + fabs(beta * (double)C0[i * N + j]));
                }
            float *first = NULL;
            for (size_t p = 0; p < sizeof int8_paths / sizeof *int8_paths; p++) {
                if (!qb_cpu_isa_available(int8_paths[p])) continue;
                for (int threads = 1; threads <= 3; threads += 2) {
                    run(QB_PREC_INT8, int8_paths[p], threads, s, A, W, NULL, alpha, beta, C0, C, NULL);
                    for (int64_t i = 0; i < M * N; i++)
                        assert_true(fabsf(C[i] - ref[i]) <= 1e-6f * mag[i] + 1e-30f);
                    if (!first) {
                        first = qt_alloc(M * N);
                        memcpy(first, C, sizeof(float) * (size_t)(M * N));
                    } else {
                        assert_memory_equal(first, C, sizeof(float) * (size_t)(M * N));
                    }
                }
            }
            free(first);
        }
        /* Fused bias and GELU: the same bits on every path, the values of
         * the plain GEMM plus bias, then GELU. */
        float *g = qt_alloc(M * N), *plain = qt_alloc(M * N), *firstg = NULL;
        run(QB_PREC_INT8, QB_ISA_GENERIC, 1, s, A, W, NULL, 1.0f, 0.0f, C0, plain, NULL);
        for (size_t p = 0; p < sizeof int8_paths / sizeof *int8_paths; p++) {
            if (!qb_cpu_isa_available(int8_paths[p])) continue;
            run(QB_PREC_INT8, int8_paths[p], 2, s, A, W, bias, 1.0f, 0.0f, C0, C, g);
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) {
                    assert_true(C[i * N + j] == plain[i * N + j] + bias[j]);
                    assert_true(g[i * N + j] == qb_gelu_fast(C[i * N + j]));
                }
            if (!firstg) {
                firstg = qt_alloc(M * N);
                memcpy(firstg, g, sizeof(float) * (size_t)(M * N));
            } else {
                assert_memory_equal(firstg, g, sizeof(float) * (size_t)(M * N));
            }
        }
        free(firstg), free(g), free(plain);
        free(A), free(W), free(C0), free(C), free(ref), free(mag), free(bias), free(qa), free(qw), free(sa), free(sw);
    }
    assert_int_equal(qb_cpu_isa_force("auto"), QIAO_OK);
}

/* Quantization error against the f32 product on Gaussian data: per-channel
 * and per-token scales keep each output within a few code steps. */
static void int8_close_to_f32(void **state) {
    (void)state;
    const shape s = {16, 64, 512};
    float *A = qt_alloc(s.M * s.K), *W = qt_alloc(s.N * s.K), *C = qt_alloc(s.M * s.N), *Z = qt_alloc(s.M * s.N);
    qt_fill_normal(A, s.M * s.K, 1.0f, 5);
    qt_fill_normal(W, s.N * s.K, 0.05f, 6);
    run(QB_PREC_INT8, qb_cpu_isa_selected(QB_PREC_INT8), 2, &s, A, W, NULL, 1.0f, 0.0f, Z, C, NULL);
    double err = 0, mag = 0;
    for (int64_t i = 0; i < s.M; i++)
        for (int64_t j = 0; j < s.N; j++) {
            double e = 0;
            for (int64_t k = 0; k < s.K; k++) e += (double)A[i * s.K + k] * W[j * s.K + k];
            err += (C[i * s.N + j] - e) * (C[i * s.N + j] - e), mag += e * e;
        }
    printf("int8 vs f32: relative RMS error %.4f\n", sqrt(err / mag));
    assert_true(sqrt(err / mag) < 0.02);
    free(A), free(W), free(C), free(Z);
    assert_int_equal(qb_cpu_isa_force("auto"), QIAO_OK);
}

static void bf16_all_paths(void **state) {
    (void)state;
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const shape *s = &shapes[si];
        const int64_t M = s->M, N = s->N, K = s->K;
        float *A = qt_alloc(M * K), *W = qt_alloc(N * K), *Z = qt_alloc(M * N), *C = qt_alloc(M * N);
        float *first = NULL;
        qt_fill_normal(A, M * K, 1.0f, 50 + si);
        qt_fill_normal(W, N * K, 0.05f, 60 + si);
        for (size_t p = 0; p < sizeof bf16_paths / sizeof *bf16_paths; p++) {
            if (!qb_cpu_isa_available(bf16_paths[p])) continue;
            run(QB_PREC_BF16, bf16_paths[p], 2, s, A, W, NULL, 1.0f, 0.0f, Z, C, NULL);
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) {
                    double rb = 0, exact = 0, mag = 0;
                    for (int64_t k = 0; k < K; k++) {
                        const float a = A[i * K + k], w = W[j * K + k];
                        uint32_t ab = (uint32_t)qb_bf16_from_f32(a) << 16, wb = (uint32_t)qb_bf16_from_f32(w) << 16;
                        float fa, fw;
                        memcpy(&fa, &ab, 4), memcpy(&fw, &wb, 4);
                        rb += (double)fa * fw, exact += (double)a * w, mag += fabs((double)a * w);
                    }
                    const double c = C[i * N + j];
                    /* f32 summation of K exact products of the rounded
                     * operands: within K * 2^-24 * sum |products|. */
                    assert_true(fabs(c - rb) <= (double)K * 0x1p-24 * mag + 1e-30);
                    /* The documented bf16 tolerance against f32: each
                     * operand off by at most 2^-8 relative (8 significant bits), a product by 2^-7 + 2^-16. */
                    assert_true(fabs(c - exact) <= 0x1.01p-7 * mag + (double)K * 0x1p-24 * mag);
                }
            if (!first) {
                first = qt_alloc(M * N);
                memcpy(first, C, sizeof(float) * (size_t)(M * N));
            } else {
                assert_memory_equal(first, C, sizeof(float) * (size_t)(M * N));
            }
        }
        free(first), free(A), free(W), free(Z), free(C);
    }
    assert_int_equal(qb_cpu_isa_force("auto"), QIAO_OK);
}

static void force_switch(void **state) {
    (void)state;
    assert_int_equal(qb_cpu_isa_force("sse9"), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qb_cpu_isa_force("generic"), QIAO_OK);
    assert_int_equal(qb_cpu_isa_selected(QB_PREC_INT8), QB_ISA_GENERIC);
    assert_int_equal(qb_cpu_isa_selected(QB_PREC_BF16), QB_ISA_GENERIC);
    for (int i = 0; i < QB_ISA_COUNT; i++)
        assert_int_equal(qb_cpu_isa_force(qb_cpu_isa_name((qb_isa)i)),
                         qb_cpu_isa_available((qb_isa)i) ? QIAO_OK : QIAO_ERR_UNSUPPORTED);
    assert_int_equal(qb_cpu_isa_force(NULL), QIAO_OK);
    /* auto: the best int8 path this CPU has. */
    qb_isa best = QB_ISA_GENERIC;
    for (int i = 0; i <= QB_ISA_AVX512_VNNI; i++)
        if (qb_cpu_isa_available((qb_isa)i)) best = (qb_isa)i;
    assert_int_equal(qb_cpu_isa_selected(QB_PREC_INT8), best);
    /* A weight not in the set, or a column range, is not taken. */
    float W[8 * 4], A[4], C[8];
    qt_fill_normal(W, 32, 1.0f, 1);
    qt_fill_normal(A, 4, 1.0f, 2);
    qb_lowp_set *set = NULL;
    const qb_packed_src src = {W, 8, 4};
    assert_int_equal(qb_lowp_set_new(&src, 1, QB_PREC_INT8, &set), QIAO_OK);
    qb_exec ex;
    qb_exec_cpu(&ex, 1);
    assert_false(qb_lowp_gemm(&ex, set, 1, 8, 2, 1.0f, A, 2, W + 2, 4, 0.0f, C, 8));
    assert_false(qb_lowp_gemm(&ex, set, 1, 8, 4, 1.0f, A, 4, A, 4, 0.0f, C, 8));
    qb_lowp_set_free(set);
    const qb_packed_src big = {W, 1, QB_LOWP_MAX_K + 1};
    assert_int_equal(qb_lowp_set_new(&big, 1, QB_PREC_INT8, &set), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qb_lowp_set_new(&src, 1, QB_PREC_F32, &set), QIAO_ERR_INVALID_ARGUMENT);
}


/* The shipped model through the public API: int8 and bf16 sessions give
 * embeddings within the documented cosine of f32 (docs/design.md
 * "Precision"), the same bits for 1 and 2 threads and for the generic and
 * the best path, and a session asking
 * for an unknown precision is refused. */
#define BASE_MODEL QIAO_SOURCE_DIR "/models/qiao-base.safetensors"
static const char *const TEXTS[] = {
    "左上角有一个小的红色圆形", "a large blue square in the bottom right", "两个绿色三角形和一个黄色星形",
    "a small purple cross next to an orange diamond", "中间有什么？ what is in the middle?",
};
#define N_TEXTS (sizeof TEXTS / sizeof TEXTS[0])
static const char *const IMAGES[] = {"/image/000000126107.jpg", "/image/000000159269.jpg", "/image/000000205401.jpg"};
static const char *const CLIPS[] = {"/audio/fsdd_3_jackson_0.wav", "/audio/esc10_1-110389-A.ogg"};
#define N_ITEMS (N_TEXTS + 3 + 2)

static void embed_items(qiao_session *s, int64_t d, float *out) {
    char path[4096];
    if (qiao_embed_texts(s, TEXTS, N_TEXTS, out, N_TEXTS * (size_t)d) != QIAO_OK) fail_msg("%s", qiao_last_error());
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s%s", QIAO_TEST_DATA, IMAGES[i]);
        if (qiao_embed_image_file(s, path, out + (N_TEXTS + i) * (size_t)d, (size_t)d) != QIAO_OK)
            fail_msg("%s: %s", path, qiao_last_error());
    }
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s%s", QIAO_TEST_DATA, CLIPS[i]);
        if (qiao_embed_audio_file(s, path, out + (N_TEXTS + 3 + i) * (size_t)d, (size_t)d) != QIAO_OK)
            fail_msg("%s: %s", path, qiao_last_error());
    }
}

static double cosine(const float *a, const float *b, int64_t d) {
    double ab = 0, aa = 0, bb = 0;
    for (int64_t i = 0; i < d; i++) ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
    return ab / sqrt(aa * bb);
}

static void api_embeddings(void **state) {
    (void)state;
    qiao_model *m = NULL;
    if (qiao_model_load(BASE_MODEL, &m) != QIAO_OK) fail_msg("%s", qiao_last_error());
    const int64_t d = qiao_model_dim(m);
    const size_t before = qiao_model_memory(m);
    float *ref = qt_alloc(N_ITEMS * d), *got = qt_alloc(N_ITEMS * d), *again = qt_alloc(N_ITEMS * d);
    qiao_session_params p = qiao_session_default_params();
    assert_int_equal(p.precision, QIAO_PRECISION_MODEL); /* f32 for this file */
    p.n_threads = 2;
    qiao_session *s = NULL;
    assert_int_equal(qiao_session_new(m, &p, &s), QIAO_OK);
    embed_items(s, d, ref);
    qiao_session_free(s);
    /* Bounds: docs/design.md "Precision" (measured minima 0.99+; see there). */
    const int precs[2] = {QIAO_PRECISION_BF16, QIAO_PRECISION_INT8};
    const double bound[2] = {0.9999, 0.999};
    for (int q = 0; q < 2; q++) {
        p.precision = precs[q];
        p.n_threads = 2;
        assert_int_equal(qiao_session_new(m, &p, &s), QIAO_OK);
        embed_items(s, d, got);
        qiao_session_free(s);
        p.n_threads = 1;
        assert_int_equal(qiao_session_new(m, &p, &s), QIAO_OK);
        embed_items(s, d, again);
        qiao_session_free(s);
        assert_memory_equal(got, again, sizeof(float) * (size_t)(N_ITEMS * d));
        /* The portable path gives the same embeddings, bit for bit. */
        assert_int_equal(qb_cpu_isa_force("generic"), QIAO_OK);
        assert_int_equal(qiao_session_new(m, &p, &s), QIAO_OK);
        embed_items(s, d, again);
        qiao_session_free(s);
        assert_int_equal(qb_cpu_isa_force("auto"), QIAO_OK);
        assert_memory_equal(got, again, sizeof(float) * (size_t)(N_ITEMS * d));
        double cmin = 1, cmean = 0;
        int differ = 0;
        for (size_t i = 0; i < N_ITEMS; i++) {
            const double c = cosine(got + i * (size_t)d, ref + i * (size_t)d, d);
            cmin = fmin(cmin, c), cmean += c / N_ITEMS;
            differ += memcmp(got + i * (size_t)d, ref + i * (size_t)d, sizeof(float) * (size_t)d) != 0;
        }
        printf("%s vs f32 (isa %s): min cosine %.6f, mean %.6f over %d texts, pictures and clips\n",
               q ? "int8" : "bf16", qb_cpu_isa_name(qb_cpu_isa_selected(q ? QB_PREC_INT8 : QB_PREC_BF16)), cmin, cmean,
               (int)N_ITEMS);
        assert_true(cmin >= bound[q]);
        assert_int_equal(differ, (int)N_ITEMS); /* low precision really ran */
    }
    assert_true(qiao_model_memory(m) > before); /* the two sets are counted */
    p.precision = 4;
    assert_int_equal(qiao_session_new(m, &p, &s), QIAO_ERR_INVALID_ARGUMENT);
    assert_null(s);
    free(ref), free(got), free(again);
    qiao_model_free(m);
}

/* `qiao quantize` (the ctest fixture qiao_quantize.base writes the file):
 * its I8 codes are the library's codes of the same weights, loading
 * dequantizes them so the int8 path re-quantizes to the same codes, a
 * session on the file computes in int8 by default, and its embeddings are
 * those of an int8 session on the f32 file up to the scales' last bit
 * (re-quantizing the dequantized weights gives the same codes, and scales
 * within an ulp). */
static void quantized_file(void **state) {
    (void)state;
    qiao_model_file *file = NULL;
    if (qiao_model_file_open(QIAO_INT8_FILE, &file) != QIAO_OK)
        fail_msg("%s (written by the ctest fixture qiao_quantize.base): %s", QIAO_INT8_FILE, qiao_last_error());
    assert_string_equal(qiao_model_file_metadata(file, "qiao.quantized"), "int8");
    qmod_model *m = NULL, *m8 = NULL;
    assert_int_equal(qmod_load(BASE_MODEL, &m), QIAO_OK);
    assert_int_equal(qmod_load(QIAO_INT8_FILE, &m8), QIAO_OK);
    assert_int_equal(m->precision, QB_PREC_F32);
    assert_int_equal(m8->precision, QB_PREC_INT8);
    qb_packed_set *set = NULL, *set8 = NULL;
    assert_int_equal(qmod_pack_weights_prec(m, QB_PREC_INT8, &set), QIAO_OK);
    assert_int_equal(qmod_pack_weights_prec(m8, QB_PREC_INT8, &set8), QIAO_OK);
    int n_i8 = 0;
    for (size_t i = 0; i < m->tab.n; i++) {
        const qc_tensor_desc *t = &m->tab.t[i];
        qiao_tensor_info ti, si;
        assert_int_equal(qiao_model_file_find(file, t->name, &ti), QIAO_OK);
        if (ti.dtype != QIAO_DTYPE_I8) continue;
        n_i8++;
        char sname[512];
        snprintf(sname, sizeof sname, "%s.scale", t->name);
        assert_int_equal(qiao_model_file_find(file, sname, &si), QIAO_OK);
        const int64_t rows = t->shape[0];
        int8_t *codes = malloc((size_t)t->numel), *codes8 = malloc((size_t)t->numel);
        float *sc = qt_alloc(rows), *sc8 = qt_alloc(rows);
        assert_true(qb_lowp_weight_codes(qb_packed_set_lowp(set), m->arena.base + t->offset, codes, sc));
        assert_true(qb_lowp_weight_codes(qb_packed_set_lowp(set8), m8->arena.base + t->offset, codes8, sc8));
        assert_memory_equal(codes, ti.data, (size_t)t->numel);
        assert_memory_equal(codes8, ti.data, (size_t)t->numel);
        for (int64_t r = 0; r < rows; r++) {
            float fs;
            memcpy(&fs, (const char *)si.data + r * 4, 4);
            assert_true(fabsf(sc[r] - fs) <= 1e-6f * fs);
            assert_true(fabsf(sc8[r] - fs) <= 1e-6f * fs);
        }
        free(codes), free(codes8), free(sc), free(sc8);
    }
    assert_true(n_i8 > 50);
    qb_packed_set_free(set), qb_packed_set_free(set8);
    qmod_free(m), qmod_free(m8);
    qiao_model_file_close(file);

    qiao_model *pm = NULL, *pm8 = NULL;
    assert_int_equal(qiao_model_load(BASE_MODEL, &pm), QIAO_OK);
    assert_int_equal(qiao_model_load(QIAO_INT8_FILE, &pm8), QIAO_OK);
    const int64_t d = qiao_model_dim(pm);
    float *a = qt_alloc(N_ITEMS * d), *b = qt_alloc(N_ITEMS * d), *f32 = qt_alloc(N_ITEMS * d);
    qiao_session_params p = qiao_session_default_params();
    p.n_threads = 2;
    qiao_session *s = NULL;
    assert_int_equal(qiao_session_new(pm8, &p, &s), QIAO_OK); /* the file's precision: int8 */
    embed_items(s, d, a);
    qiao_session_free(s);
    p.precision = QIAO_PRECISION_INT8;
    assert_int_equal(qiao_session_new(pm, &p, &s), QIAO_OK);
    embed_items(s, d, b);
    qiao_session_free(s);
    p.precision = QIAO_PRECISION_MODEL;
    assert_int_equal(qiao_session_new(pm, &p, &s), QIAO_OK);
    embed_items(s, d, f32);
    qiao_session_free(s);
    double cmin = 1, cf = 1;
    for (size_t i = 0; i < N_ITEMS; i++) {
        cmin = fmin(cmin, cosine(a + i * (size_t)d, b + i * (size_t)d, d));
        cf = fmin(cf, cosine(a + i * (size_t)d, f32 + i * (size_t)d, d));
    }
    printf("int8 file vs int8 session on the f32 file: min cosine %.8f; vs f32: %.6f\n", cmin, cf);
    assert_true(cmin >= 0.9999); /* measured 0.99998854: a scale one ulp off moves an activation code here and there */
    assert_true(cf >= 0.999);
    free(a), free(b), free(f32);
    qiao_model_free(pm), qiao_model_free(pm8);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(int8_paths_exact),
    cmocka_unit_test(int8_close_to_f32),
    cmocka_unit_test(bf16_all_paths),
    cmocka_unit_test(force_switch),
    cmocka_unit_test(api_embeddings),
    cmocka_unit_test(quantized_file),
};

QT_MAIN(tests)
