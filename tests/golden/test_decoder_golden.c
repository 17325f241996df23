/* tests/golden/test_decoder_golden.c - the caption decoder (fusion/decoder.c,
 * its causal blocks fusion/cross.c) against its PyTorch peer, the teacher-
 * forced forward and backward and the KV cache.
 *
 * tests/golden/make_decoder_fixture.py (see its docstring to regenerate) runs
 * the peer bench/peer/decoder_peer.py in float64 on float32 parameters and
 * inputs: B = 2 rows of T = 7 positions (max_len 16), each starting with a
 * language token, reading Ty = 5 context tokens of which row 1's last is
 * padding holding garbage; with the output layer tied to the token embedding
 * and untied, the logits and the gradients of sum(R logits) with respect to
 * every parameter and the context y. This test lays the parameters out with
 * qf_decoder_describe (prefix ""), loads them by name, runs
 * qf_decoder_forward and qf_decoder_backward (dlogits = R) and compares all
 * of it; two gradients must be exactly 0, not merely small: the padded
 * context token's (its keys are masked, so nothing reads it) and the
 * position table's rows from T on (never used). The cache cases start a
 * qf_decoder_cache of max_len positions on the same context and step it
 * over the same ids, one position at a time: each step's logits must be the
 * teacher-forced reference's at that position (causality: a position reads
 * only those written before it).
 *
 * Tolerances. Each element passes if |got - ref| <= ATOL + RTOL * |ref| with
 * ATOL = 1e-5, RTOL = 1e-4, the fuser's golden bound (test_fusion_golden.c),
 * on the same scale: the generator draws weights N(0, 1/fan_in) so logits are
 * O(1) (|max| 3.1), and R N(0, 1/(B T)) so each gradient, a sum over the
 * B T positions, is O(1) too (rms 0.1-1.7, |max| 9.5, the embeddings'). The
 * reference is float64 arithmetic on the same float32 values, so the error
 * measured is qiao's own float32 rounding: sums of at most 64 O(1) terms per
 * operation, through the embeddings, the context projection, two blocks of
 * two attentions and an MLP, the final norm and a 50-wide output, and back:
 * a few 1e-7 relative to each tensor's scale. The generator prints how far
 * PyTorch's own float32 run lands from the reference on this scale: 0.13 of
 * the bound at most (max |err| 3.5e-6, the embeddings' gradients, which sum
 * over every position that uses the row), its cached steps 0.067; qiao
 * measured 0.17 at most (max |err| 3.3e-6, the position table's gradient),
 * its cached steps 0.071. The bound so leaves a margin of about 6x for a
 * correct float32 implementation (summation order, BLAS blocking), while a
 * real bug moves values by O(0.1-10): measured, a non-causal self-attention
 * fails the logits and every gradient (max |err| 3.3 on the logits), a cache
 * that ignores the context mask fails row 1's steps (0.9-1.0), and a dropped
 * position-table gradient fails grad.pos (up to 9.5). Gradients that are
 * exactly 0 in exact arithmetic (the key biases attn.k.bias and xattn.k.bias:
 * the softmax cancels a per-query-row shift) are rounding noise of ~2e-7 in
 * both implementations, under ATOL.
 *
 * QIAO_TEST_VERBOSE=1 in the environment prints the max error of every
 * tensor; failures are always printed. */
#include "testutil.h"

#include "golden.h"

#include <string.h>

#include "backend/backend.h"
#include "core/safetensors.h"
#include "fusion/decoder.h"

#define FIXTURE QIAO_TEST_DATA "/decoder_golden.safetensors"
#define FIXTURE_VERSION "2"

#define ATOL 1e-5
#define RTOL 1e-4

/* The fixture's dimensions (tensor sizes are checked as they load). */
enum { NB = 2, NT = 7, NTY = 5, VOCAB = 50, WIDTH = 32, LAYERS = 2, HEADS = 4, MLP = 64, MAX_LEN = 16, CTX_WIDTH = 24, CTX_POSITIONS = 6 };
enum { PAD_ROW = 1, PAD_TOK = 4 }; /* row 1's last context token is padding */

typedef struct golden {
    qc_st_file *f;
    qb_exec ex;
    qf_decoder_config cfg;
    const char *case_name; /* "tied" / "untied": the fixture's prefix */
    qt_model m;
    qf_decoder_params p, g;
    qf_decoder_acts a, da;
    int32_t ids[NB * NT];
    float *y, *dy, *R; /* (B, Ty, ctx_width), same, (B, T, V) */
    uint8_t y_mask[NB * NTY];
} golden;

/* ---- the fixture (golden.h) ------------------------------------------------ */

/* data may be unaligned: copied out */
static bool read_raw(const golden *G, const char *name, qiao_dtype dtype, void *dst, int64_t numel) {
    return qt_golden_read(G->f, FIXTURE, name, dtype, dst, numel);
}

/* Compares got (n floats) with the fixture tensor `name`, printed as
 * `label`: returns 1 on a mismatch (printed), 0 otherwise. */
static int compare(const golden *G, const char *label, const char *name, const float *got, int64_t n) {
    return qt_golden_compare_as(G->f, FIXTURE, name, label, got, n, ATOL, RTOL);
}

/* 1 (printed) unless x[0..n) are all exactly 0. */
static int exact_zero(const char *what, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (x[i] != 0.0f) {
            printf("FAIL %s[%lld] = %g, expected exactly 0\n", what, (long long)i, (double)x[i]);
            return 1;
        }
    return 0;
}

/* ---- setup ---------------------------------------------------------------- */

static void golden_free(golden *G) {
    qc_st_close(G->f);
    qt_model_free(&G->m);
    free(G->y), free(G->dy), free(G->R);
    free(G);
}

/* The decoder (tied or not), its parameters and inputs from the fixture. */
static golden *golden_open(bool tied) {
    golden *G = calloc(1, sizeof *G);
    assert_non_null(G);
    qb_exec_cpu(&G->ex, 0);
    if (qc_st_open(FIXTURE, &G->f) != QIAO_OK) {
        printf("cannot open the fixture: %s\n", qiao_last_error());
        fail();
    }
    const char *ver = qc_st_metadata_get(G->f, "format_version");
    if (!ver || strcmp(ver, FIXTURE_VERSION) != 0) {
        printf("%s: format_version %s, this test expects %s (regenerate or update the test)\n", FIXTURE,
               ver ? ver : "(absent)", FIXTURE_VERSION);
        fail();
    }
    G->cfg = (qf_decoder_config){VOCAB, WIDTH, LAYERS, HEADS, MLP, MAX_LEN, CTX_WIDTH, tied, CTX_POSITIONS, 0};
    G->case_name = tied ? "tied" : "untied";
    assert_int_equal(qf_decoder_describe(&G->m.pt, "", &G->cfg, 0), QIAO_OK);
    assert_int_equal(qf_decoder_describe_acts(&G->m.at, "", &G->cfg, NB, NT, NTY, 0), QIAO_OK);
    qt_model_alloc(&G->m, &G->p, &G->g, &G->a, &G->da);
    /* tied: the table has no out.weight, and the fixture's is ignored */
    if (qc_st_load_table(G->f, &G->m.pt, G->m.params.base) != QIAO_OK) {
        printf("loading the parameters: %s\n", qiao_last_error());
        fail();
    }
    const int64_t ny = NB * NTY * CTX_WIDTH;
    G->y = qt_alloc(ny), G->dy = qt_alloc(ny), G->R = qt_alloc(NB * NT * VOCAB);
    bool ok = read_raw(G, "ids", QIAO_DTYPE_I32, G->ids, NB * NT);
    ok = read_raw(G, "y", QIAO_DTYPE_F32, G->y, ny) && ok;
    ok = read_raw(G, "y_mask", QIAO_DTYPE_U8, G->y_mask, NB * NTY) && ok;
    ok = read_raw(G, "R", QIAO_DTYPE_F32, G->R, NB * NT * VOCAB) && ok;
    assert_true(ok);
    assert_int_equal(qf_decoder_ids_check(&G->cfg, G->ids, NB * NT), QIAO_OK);
    /* the padding pattern the exact-zero check below relies on */
    assert_int_equal(G->y_mask[PAD_ROW * NTY + PAD_TOK], 0);
    return G;
}

/* ---- cases ------------------------------------------------------------------ */

static void run_forward_backward(bool tied) {
    golden *G = golden_open(tied);
    qf_decoder_forward(&G->ex, &G->a, &G->p, G->ids, G->y, G->y_mask, &G->cfg, NB, NT, NTY);
    qf_decoder_backward(&G->ex, G->dy, &G->g, &G->da, G->R, &G->a, &G->p, G->ids, G->y, &G->cfg, NB, NT, NTY);
    int bad = 0;
    char name[QC_NAME_MAX + 32];
    snprintf(name, sizeof name, "%s.logits", G->case_name);
    bad += compare(G, name, name, G->a.logits, NB * NT * VOCAB);
    snprintf(name, sizeof name, "%s.grad.y", G->case_name);
    bad += compare(G, name, name, G->dy, NB * NTY * CTX_WIDTH);
    for (size_t i = 0; i < G->m.pt.n; i++) {
        const qc_tensor_desc *t = &G->m.pt.t[i];
        snprintf(name, sizeof name, "%s.grad.%s", G->case_name, t->name);
        bad += compare(G, name, name, G->m.grads.base + t->offset, t->numel);
    }
    bad += exact_zero("grad.y (the padded context token)", G->dy + (PAD_ROW * NTY + PAD_TOK) * CTX_WIDTH, CTX_WIDTH);
    bad += exact_zero("grad.pos (rows T.. max_len)", G->g.pos + NT * WIDTH, (MAX_LEN - NT) * WIDTH);
    golden_free(G);
    assert_int_equal(bad, 0);
}

/* The cache of max_len positions stepped over the fixture's ids: position t's
 * logits against the teacher-forced reference's. */
static void run_cache(bool tied) {
    golden *G = golden_open(tied);
    qf_decoder_cache c;
    assert_int_equal(qf_decoder_cache_init(&c, &G->cfg, NB, MAX_LEN, NTY), QIAO_OK);
    qf_decoder_cache_start(&G->ex, &c, &G->p, G->y, G->y_mask, &G->cfg);
    float *got = qt_alloc(NB * NT * VOCAB); /* (B, T, V) as the fixture's */
    for (int64_t t = 0; t < NT; t++) {
        int32_t col[NB];
        for (int64_t b = 0; b < NB; b++) col[b] = G->ids[b * NT + t];
        const float *logits = NULL;
        assert_int_equal(qf_decoder_step(&G->ex, &c, &G->p, col, NULL, &G->cfg, &logits), QIAO_OK);
        assert_int_equal(c.len, t + 1);
        for (int64_t b = 0; b < NB; b++) memcpy(got + (b * NT + t) * VOCAB, logits + b * VOCAB, VOCAB * sizeof(float));
    }
    char label[64], name[64];
    snprintf(label, sizeof label, "%s cache steps vs %s.logits", G->case_name, G->case_name);
    snprintf(name, sizeof name, "%s.logits", G->case_name);
    int bad = compare(G, label, name, got, NB * NT * VOCAB);
    free(got);
    qf_decoder_cache_free(&c);
    golden_free(G);
    assert_int_equal(bad, 0);
}

static void test_forward_tied(void **state) {
    (void)state;
    run_forward_backward(true);
}

static void test_forward_untied(void **state) {
    (void)state;
    run_forward_backward(false);
}

static void test_cache_tied(void **state) {
    (void)state;
    run_cache(true);
}

static void test_cache_untied(void **state) {
    (void)state;
    run_cache(false);
}

static const struct CMUnitTest tests[] = {
    {"forward_tied", test_forward_tied, NULL, NULL, NULL},
    {"forward_untied", test_forward_untied, NULL, NULL, NULL},
    {"cache_tied", test_cache_tied, NULL, NULL, NULL},
    {"cache_untied", test_cache_untied, NULL, NULL, NULL},
};

QT_MAIN(tests)
