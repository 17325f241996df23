/* tests/golden/test_golden_block.c - the pre-norm transformer block and the
 * CLIP head against PyTorch.
 *
 * tests/golden/make_golden.py (see its docstring to regenerate) computes
 *     za = l2norm(head_a(mean_pool(block(x, mask), mask))), zb = l2norm(head_b(y)),
 *     loss = symmetric InfoNCE(za, zb) with a learnable logit_scale,
 * its gradients, and NSTEPS steps of torch.optim.AdamW, and stores them in
 * tests/data/golden_block.safetensors. This test loads the parameters by
 * name into a tensor table laid out by nn_block_describe("block.") plus the
 * head, recomputes everything with qiao's layers and compares:
 *   forward     block intermediates (h, attention probabilities, output),
 *               pooled, head outputs, za, zb, logits, loss;
 *   gradients   every parameter gradient (dlogit_scale included), dx, and the
 *               gradients reaching za, zb, pooled and the block output (these
 *               locate a failing layer);
 *   adamw_steps the loss before each of NSTEPS forward/backward/AdamW steps
 *               and the parameters after the last.
 *
 * Tolerances. Each element passes if |got - ref| <= ATOL + RTOL * |ref| with
 * ATOL = 1e-5, RTOL = 1e-4, for every compared tensor. The reference is
 * float64 arithmetic on the same float32 inputs (rounded to float32 when
 * stored), so the error measured is qiao's own float32 error: rounding in
 * sums of at most 64 terms of O(1) values, in a different order than any
 * other implementation (BLAS blocking, OpenMP reductions), ~1e-7 relative
 * per operation and a few 1e-7 absolute through the block. make_golden.py
 * prints how far PyTorch's own float32 run lands from the reference on the
 * same scale: at most 0.06 of the bound for forward and gradients and 0.1
 * for the parameters after AdamW, so the bound leaves a margin of >= 10x for
 * a correct implementation while any real bug (a wrong scale, mask, index or
 * missing term) gives errors of the size of the values themselves.
 * AdamW is no looser: its update lr * m / sqrt(v) depends on relative
 * gradient error only, and each gradient is accurate to ~1e-6 relative.
 * The one exception is block.attn.k.bias after AdamW: its gradient is
 * identically zero (a key bias adds q . b_k to every score of a query row,
 * which the softmax cancels), so Adam turns rounding noise into steps of up
 * to lr; the fixture does not carry its final value and it is not compared
 * (the loss at every step still shows it changes nothing).
 *
 * QIAO_TEST_VERBOSE=1 in the environment prints the max error of every
 * tensor; failures are always printed. */
#include "testutil.h"

#include "golden.h"

#include <string.h>

#include "backend/backend.h"
#include "core/safetensors.h"
#include "nn/nn.h"

#define FIXTURE QIAO_TEST_DATA "/golden_block.safetensors"
#define FIXTURE_VERSION "1"

#define ATOL 1e-5
#define RTOL 1e-4

/* The fixture's dimensions (checked against its metadata). */
enum { NB = 4, NT = 6, NC = 32, NH = 4, NF = 64, ND = 16, NE = 24, NSTEPS = 5 };

typedef struct model_params {
    nn_block_params blk;
    float *ha_w;        /* (D, C) head_a.weight */
    float *ha_b;        /* (D) */
    float *hb_w;        /* (D, E) head_b.weight */
    float *hb_b;        /* (D) */
    float *logit_scale; /* (1) */
} model_params;

/* Bound both to the activations and to their gradients (same layout). */
typedef struct model_acts {
    nn_block_acts blk;
    float *pooled;      /* (B, C) */
    float *ha, *za;     /* (B, D) head_a output, its L2-normalized rows */
    float *za_norm;     /* (B) */
    float *hb, *zb;     /* (B, D) */
    float *zb_norm;     /* (B) */
    float *block_dout;  /* (B, T, C) gradient arena only: the gradient reaching
                           the block output (blk.out there is backward scratch) */
    nn_infonce_acts nce;
} model_acts;

typedef struct golden {
    qc_st_file *f;
    qb_exec ex;
    nn_block_dims dims;
    qc_table ptab, atab;
    qc_arena params, grads, m, v, acts, dacts;
    model_params p, g;
    model_acts a, da;
    float x[NB * NT * NC], dx[NB * NT * NC]; /* (B, T, C) */
    float y[NB * NE];                         /* (B, E) */
    uint8_t mask[NB * NT];                    /* (B, T) */
    float loss;
} golden;

/* ---- tables ------------------------------------------------------------- */

#define PFIELD(m) offsetof(model_params, m)
#define AFIELD(m) offsetof(model_acts, m)
#define NCEFIELD(m) (offsetof(model_acts, nce) + offsetof(nn_infonce_acts, m))

static qiao_status add(qc_table *tab, const char *name, int64_t d0, int64_t d1, uint32_t flags, size_t field) {
    int64_t shape[2] = {d0, d1};
    return qc_table_add(tab, name, d1 > 0 ? 2 : 1, shape, QC_INIT_ZEROS, 0.0f, flags, field);
}

static qiao_status describe(golden *G) {
    qiao_status st;
    qc_table_init_empty(&G->ptab);
    qc_table_init_empty(&G->atab);
    /* parameters: names as in the fixture (and in a qiao model file) */
    if ((st = nn_block_describe(&G->ptab, "block.", &G->dims, 1, PFIELD(blk))) != QIAO_OK) return st;
    if ((st = add(&G->ptab, "head_a.weight", ND, NC, 0, PFIELD(ha_w))) != QIAO_OK) return st;
    if ((st = add(&G->ptab, "head_a.bias", ND, 0, QC_NO_DECAY, PFIELD(ha_b))) != QIAO_OK) return st;
    if ((st = add(&G->ptab, "head_b.weight", ND, NE, 0, PFIELD(hb_w))) != QIAO_OK) return st;
    if ((st = add(&G->ptab, "head_b.bias", ND, 0, QC_NO_DECAY, PFIELD(hb_b))) != QIAO_OK) return st;
    if ((st = add(&G->ptab, "logit_scale", 1, 0, QC_NO_DECAY, PFIELD(logit_scale))) != QIAO_OK) return st;
    /* activations */
    if ((st = nn_block_describe_acts(&G->atab, "block.", &G->dims, AFIELD(blk))) != QIAO_OK) return st;
    if ((st = add(&G->atab, "pooled", NB, NC, 0, AFIELD(pooled))) != QIAO_OK) return st;
    if ((st = add(&G->atab, "ha", NB, ND, 0, AFIELD(ha))) != QIAO_OK) return st;
    if ((st = add(&G->atab, "za", NB, ND, 0, AFIELD(za))) != QIAO_OK) return st;
    if ((st = add(&G->atab, "za_norm", NB, 0, 0, AFIELD(za_norm))) != QIAO_OK) return st;
    if ((st = add(&G->atab, "hb", NB, ND, 0, AFIELD(hb))) != QIAO_OK) return st;
    if ((st = add(&G->atab, "zb", NB, ND, 0, AFIELD(zb))) != QIAO_OK) return st;
    if ((st = add(&G->atab, "zb_norm", NB, 0, 0, AFIELD(zb_norm))) != QIAO_OK) return st;
    if ((st = add(&G->atab, "block_dout", NB * NT, NC, 0, AFIELD(block_dout))) != QIAO_OK) return st;
    if ((st = add(&G->atab, "nce.logits", NB, NB, 0, NCEFIELD(logits))) != QIAO_OK) return st;
    if ((st = add(&G->atab, "nce.probs_r", NB, NB, 0, NCEFIELD(probs_r))) != QIAO_OK) return st;
    if ((st = add(&G->atab, "nce.probs_c", NB, NB, 0, NCEFIELD(probs_c))) != QIAO_OK) return st;
    if ((st = add(&G->atab, "nce.losses", NB, 0, 0, NCEFIELD(losses))) != QIAO_OK) return st;
    if ((st = add(&G->atab, "nce.scratch", NB, NB, 0, NCEFIELD(scratch))) != QIAO_OK) return st;
    return QIAO_OK;
}

/* ---- the fixture ---------------------------------------------------------- */

static const qc_st_tensor *need(const golden *G, const char *name, qiao_dtype dtype, int64_t numel) {
    return qt_golden_need(G->f, FIXTURE, name, dtype, numel);
}

static bool read_f32(const golden *G, const char *name, float *dst, int64_t numel) {
    return qt_golden_read(G->f, FIXTURE, name, QIAO_DTYPE_F32, dst, numel);
}

static bool check_meta(const golden *G, const char *key, const char *want) {
    const char *got = qc_st_metadata_get(G->f, key);
    if (got && strcmp(got, want) == 0) return true;
    printf("%s: metadata %s = %s, this test expects %s (regenerate or update the test)\n", FIXTURE, key,
           got ? got : "(absent)", want);
    return false;
}

/* Compares got (n floats) with the fixture tensor `name`: returns 1 on a
 * mismatch (printed), 0 otherwise. */
static int compare(const golden *G, const char *name, const float *got, int64_t n) {
    return qt_golden_compare(G->f, FIXTURE, name, got, n, ATOL, RTOL);
}

/* ---- the model -------------------------------------------------------------- */

static void model_forward(golden *G) {
    const qb_exec *ex = &G->ex;
    model_acts *a = &G->a;
    const model_params *p = &G->p;
    nn_block_forward(ex, &a->blk, &p->blk, G->x, G->mask, &G->dims);
    nn_pool_mean_forward(ex, a->pooled, a->blk.out, G->mask, NB, NT, NC);
    nn_linear_forward(ex, a->ha, a->pooled, p->ha_w, p->ha_b, NB, NC, ND);
    nn_l2norm_forward(ex, a->za, a->za_norm, a->ha, NB, ND);
    nn_linear_forward(ex, a->hb, G->y, p->hb_w, p->hb_b, NB, NE, ND);
    nn_l2norm_forward(ex, a->zb, a->zb_norm, a->hb, NB, ND);
    nn_infonce_forward(ex, &G->loss, &a->nce, a->za, a->zb, p->logit_scale, NB, ND);
}

/* Zeroes the gradients, then backpropagates dloss = 1. */
static void model_backward(golden *G) {
    const qb_exec *ex = &G->ex;
    model_acts *a = &G->a, *da = &G->da;
    const model_params *p = &G->p;
    model_params *g = &G->g;
    qc_arena_zero(&G->grads);
    qc_arena_zero(&G->dacts);
    memset(G->dx, 0, sizeof G->dx);
    nn_infonce_backward(ex, da->za, da->zb, g->logit_scale, 1.0f, &a->nce, a->za, a->zb, p->logit_scale, NB,
                        ND);
    nn_l2norm_backward(ex, da->ha, da->za, a->za, a->za_norm, NB, ND);
    nn_l2norm_backward(ex, da->hb, da->zb, a->zb, a->zb_norm, NB, ND);
    nn_linear_backward(ex, da->pooled, g->ha_w, g->ha_b, da->ha, a->pooled, p->ha_w, NB, NC, ND);
    nn_linear_backward(ex, NULL, g->hb_w, g->hb_b, da->hb, G->y, p->hb_w, NB, NE, ND);
    nn_pool_mean_backward(ex, da->block_dout, da->pooled, G->mask, NB, NT, NC);
    nn_block_backward(ex, G->dx, &g->blk, &da->blk, da->block_dout, &a->blk, &p->blk, G->x, &G->dims);
}

/* ---- setup ---------------------------------------------------------------- */

static int teardown(void **state) {
    golden *G = *state;
    if (!G) return 0;
    qc_st_close(G->f);
    qc_arena_free(&G->params);
    qc_arena_free(&G->grads);
    qc_arena_free(&G->m);
    qc_arena_free(&G->v);
    qc_arena_free(&G->acts);
    qc_arena_free(&G->dacts);
    qc_table_free(&G->ptab);
    qc_table_free(&G->atab);
    free(G);
    *state = NULL;
    return 0;
}

static int setup(void **state) {
    golden *G = calloc(1, sizeof *G);
    if (!G) return -1;
    *state = G;
    G->dims = (nn_block_dims){.B = NB, .T = NT, .C = NC, .F = NF, .H = NH};
    qb_exec_cpu(&G->ex, 0);
    qiao_status st = qc_st_open(FIXTURE, &G->f);
    if (st != QIAO_OK) {
        printf("cannot open the fixture: %s\n", qiao_last_error());
        goto fail;
    }
    char buf[32];
    bool ok = check_meta(G, "format_version", FIXTURE_VERSION);
    const struct { const char *key; int v; } dims[] = {
        {"B", NB}, {"T", NT}, {"C", NC}, {"H", NH}, {"F", NF}, {"D", ND}, {"E", NE}, {"steps", NSTEPS}};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
        snprintf(buf, sizeof buf, "%d", dims[i].v);
        ok = check_meta(G, dims[i].key, buf) && ok;
    }
    if (!ok) goto fail;
    if ((st = describe(G)) != QIAO_OK || (st = qc_arena_alloc(&G->params, G->ptab.total)) != QIAO_OK ||
        (st = qc_arena_alloc(&G->grads, G->ptab.total)) != QIAO_OK ||
        (st = qc_arena_alloc(&G->m, G->ptab.total)) != QIAO_OK ||
        (st = qc_arena_alloc(&G->v, G->ptab.total)) != QIAO_OK ||
        (st = qc_arena_alloc(&G->acts, G->atab.total)) != QIAO_OK ||
        (st = qc_arena_alloc(&G->dacts, G->atab.total)) != QIAO_OK) {
        printf("setup: %s\n", qiao_last_error());
        goto fail;
    }
    qc_table_bind(&G->ptab, G->params.base, &G->p);
    qc_table_bind(&G->ptab, G->grads.base, &G->g);
    qc_table_bind(&G->atab, G->acts.base, &G->a);
    qc_table_bind(&G->atab, G->dacts.base, &G->da);
    if ((st = qc_st_load_table(G->f, &G->ptab, G->params.base)) != QIAO_OK) {
        printf("loading the parameters: %s\n", qiao_last_error());
        goto fail;
    }
    const qc_st_tensor *mask = need(G, "mask", QIAO_DTYPE_U8, NB * NT);
    if (!mask || !read_f32(G, "x", G->x, NB * NT * NC) || !read_f32(G, "y", G->y, NB * NE)) goto fail;
    memcpy(G->mask, mask->data, sizeof G->mask);
    return 0;
fail:
    teardown(state);
    return -1;
}

/* ---- cases ------------------------------------------------------------------ */

static void test_forward(void **state) {
    golden *G = *state;
    model_forward(G);
    int bad = 0;
    bad += compare(G, "fwd.h", G->a.blk.h, NB * NT * NC);
    bad += compare(G, "fwd.att", G->a.blk.att, NB * NH * NT * NT);
    bad += compare(G, "fwd.block_out", G->a.blk.out, NB * NT * NC);
    bad += compare(G, "fwd.pooled", G->a.pooled, NB * NC);
    bad += compare(G, "fwd.ha", G->a.ha, NB * ND);
    bad += compare(G, "fwd.za", G->a.za, NB * ND);
    bad += compare(G, "fwd.zb", G->a.zb, NB * ND);
    bad += compare(G, "fwd.logits", G->a.nce.logits, NB * NB);
    bad += compare(G, "loss", &G->loss, 1);
    assert_int_equal(bad, 0);
}

static void test_gradients(void **state) {
    golden *G = *state;
    model_forward(G);
    model_backward(G);
    int bad = 0;
    /* upstream first: the first failing one names the layer */
    bad += compare(G, "grad.fwd.za", G->da.za, NB * ND);
    bad += compare(G, "grad.fwd.zb", G->da.zb, NB * ND);
    bad += compare(G, "grad.fwd.pooled", G->da.pooled, NB * NC);
    bad += compare(G, "grad.fwd.block_out", G->da.block_dout, NB * NT * NC);
    char name[QC_NAME_MAX + 8];
    for (size_t i = 0; i < G->ptab.n; i++) {
        const qc_tensor_desc *d = &G->ptab.t[i];
        snprintf(name, sizeof name, "grad.%s", d->name);
        bad += compare(G, name, G->grads.base + d->offset, d->numel);
    }
    bad += compare(G, "grad.x", G->dx, NB * NT * NC);
    assert_int_equal(bad, 0);
}

static void test_adamw_steps(void **state) {
    golden *G = *state;
    nn_adamw_config cfg = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.1f};
    float losses[NSTEPS];
    for (int s = 0; s < NSTEPS; s++) {
        model_forward(G);
        losses[s] = G->loss;
        model_backward(G);
        nn_adamw_update(&G->ex, &G->ptab, G->params.base, G->grads.base, G->m.base, G->v.base, s + 1, 1.0f, &cfg);
    }
    int bad = compare(G, "losses", losses, NSTEPS);
    char name[QC_NAME_MAX + 8];
    for (size_t i = 0; i < G->ptab.n; i++) {
        const qc_tensor_desc *d = &G->ptab.t[i];
        if (strcmp(d->name, "block.attn.k.bias") == 0) continue; /* zero gradient: see the top */
        snprintf(name, sizeof name, "final.%s", d->name);
        bad += compare(G, name, G->params.base + d->offset, d->numel);
    }
    assert_int_equal(bad, 0);
}

static const struct CMUnitTest tests[] = {
    {"forward", test_forward, setup, teardown, NULL},
    {"gradients", test_gradients, setup, teardown, NULL},
    {"adamw_steps", test_adamw_steps, setup, teardown, NULL},
};

QT_MAIN(tests)
