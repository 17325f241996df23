/* tests/unit/test_profile.c - the per-layer profiler (sdk/core/profile.h)
 * and the trainer's profile (qtr_params.prof).
 *   nesting       scopes nest per thread: a child's name extends its
 *                 parent's base, counts equal the calls, and every scope's
 *                 children sum to no more than it (self time >= 0);
 *   gemm_flops    a linear layer's forward and backward GEMMs carry exactly
 *                 2 M N K FLOPs each, named after the weight, one row per
 *                 GEMM shape;
 *   off           a context without a profiler records nothing, and a
 *                 profiled layer computes the same bits as an unprofiled one;
 *   threads       two threads reporting to one profiler keep their own
 *                 nesting and exact counts;
 *   many_shapes   more GEMM shapes than scopes (a text encoder at batch 1
 *                 sees one M per text length): the report lists them all;
 *   trainer       a tiny transformer objective profiled by the trainer: the
 *                 steps counted, the layers and the trainer's own work named,
 *                 the top-level scopes within the steps' wall time, the
 *                 roofline measured and the report and CSV written.
 * No timing thresholds: only sums, counts, names and FLOPs. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/profile.h"
#include "models/train/trainer.h"
#include "nn/nn.h"
#include "testutil.h"

static qc_prof *new_prof(void) {
    qc_prof *p = NULL;
    assert_int_equal(qc_prof_create(&p), QIAO_OK);
    assert_non_null(p);
    return p;
}

static qc_prof_scope scope_named(const qc_prof *p, const char *name) {
    const int i = qc_prof_find(p, name);
    if (i < 0) printf("no scope %s\n", name);
    assert_true(i >= 0);
    qc_prof_scope s;
    assert_true(qc_prof_scope_get(p, i, &s));
    return s;
}

/* Every scope's children take no more than it (they ran inside it). */
static void assert_children_within(const qc_prof *p) {
    qc_prof_summary sm;
    qc_prof_summary_get(p, &sm);
    for (int i = 0; i < sm.n_scopes; i++) {
        qc_prof_scope s;
        assert_true(qc_prof_scope_get(p, i, &s));
        assert_true(s.self_seconds >= 0.0);
        if (s.parent >= 0) {
            qc_prof_scope par;
            assert_true(qc_prof_scope_get(p, s.parent, &par));
            assert_true(s.seconds <= par.seconds);
            assert_int_equal(s.depth, par.depth + 1);
        }
    }
}

/* Work the compiler cannot drop: the sum is returned through a volatile. */
static volatile double g_sink;
static void busy(int n) {
    double x = 0;
    for (int i = 0; i < n; i++) x += (double)i * 1e-9;
    g_sink = x;
}

static void test_nesting(void **state) {
    (void)state;
    qc_prof *p = new_prof();
    for (int r = 0; r < 4; r++) {
        const int o = qc_prof_begin(p, QC_PROF_GROUP, NULL, 0, "outer.fwd");
        for (int i = 0; i < 3; i++) {
            const int t = qc_prof_begin(p, QC_PROF_GELU, NULL, 0, "gelu");
            busy(1000);
            qc_prof_end(p, t, 0);
        }
        for (int i = 0; i < 2; i++) {
            const int t = qc_prof_begin(p, QC_PROF_NORM, NULL, 0, "norm");
            const int u = qc_prof_begin(p, QC_PROF_SOFTMAX, NULL, 0, "inner.sm");
            busy(500);
            qc_prof_end(p, u, 0);
            qc_prof_end(p, t, 0);
        }
        qc_prof_end(p, o, 0);
    }
    const qc_prof_scope outer = scope_named(p, "outer.fwd"), gelu = scope_named(p, "outer.gelu"),
                        norm = scope_named(p, "outer.norm"), sm = scope_named(p, "outer.inner.sm");
    assert_int_equal(outer.calls, 4);
    assert_int_equal(gelu.calls, 12);
    assert_int_equal(norm.calls, 8);
    assert_int_equal(sm.calls, 8);
    assert_int_equal(outer.parent, -1);
    assert_int_equal(gelu.parent, qc_prof_find(p, "outer.fwd"));
    assert_int_equal(sm.parent, qc_prof_find(p, "outer.norm"));
    assert_int_equal(gelu.kind, QC_PROF_GELU);
    assert_true(gelu.seconds + norm.seconds <= outer.seconds);
    assert_true(sm.seconds <= norm.seconds);
    assert_children_within(p);
    qc_prof_summary s;
    qc_prof_summary_get(p, &s);
    assert_int_equal(s.n_scopes, 4);
    assert_int_equal(s.dropped, 0);
    assert_true(s.top_seconds == outer.seconds);
    /* self time per kind adds up to the top-level time */
    double kinds = 0;
    for (int k = 0; k < QC_PROF_KINDS; k++) kinds += s.kind_seconds[k];
    assert_true(kinds > 0.999999 * s.top_seconds && kinds < 1.000001 * s.top_seconds);
    /* a token out of order is ignored rather than corrupting the stack */
    const int a = qc_prof_begin(p, QC_PROF_OTHER, NULL, 0, "a");
    const int b = qc_prof_begin(p, QC_PROF_OTHER, NULL, 0, "b");
    qc_prof_end(p, a, 0); /* not the innermost: nothing */
    qc_prof_end(p, b, 0);
    qc_prof_end(p, a, 0);
    assert_int_equal(scope_named(p, "a").calls, 1);
    assert_int_equal(scope_named(p, "b").calls, 1);
    qc_prof_reset(p);
    qc_prof_summary_get(p, &s);
    assert_int_equal(s.n_scopes, 0);
    qc_prof_free(p);
}

enum { LN = 5, LC = 7, LOC = 3 };

typedef struct lin {
    qc_table tab;
    qc_arena params;
    float *w, *b;
} lin;

typedef struct lin_fields {
    float *w, *b;
} lin_fields;

static void lin_make(lin *l) {
    memset(l, 0, sizeof *l);
    qc_table_init_empty(&l->tab);
    assert_int_equal(qc_table_add_dims(&l->tab, "head.", "weight", 2, LOC, LC, 0, QC_INIT_NORMAL, 0.5f, 0,
                                       offsetof(lin_fields, w)),
                     QIAO_OK);
    assert_int_equal(qc_table_add_dims(&l->tab, "head.", "bias", 1, LOC, 0, 0, QC_INIT_NORMAL, 0.5f, 0,
                                       offsetof(lin_fields, b)),
                     QIAO_OK);
    assert_int_equal(qc_arena_alloc(&l->params, l->tab.total), QIAO_OK);
    qc_table_init(&l->tab, l->params.base, 3);
    lin_fields f;
    qc_table_bind(&l->tab, l->params.base, &f);
    l->w = f.w, l->b = f.b;
}

static void lin_free(lin *l) {
    qc_table_free(&l->tab);
    qc_arena_free(&l->params);
}

static void test_gemm_flops(void **state) {
    (void)state;
    lin l;
    lin_make(&l);
    qc_prof *p = new_prof();
    assert_int_equal(qc_prof_names(p, &l.tab, l.params.base), QIAO_OK);
    qb_exec ex;
    qb_exec_cpu(&ex, 2);
    ex.prof = p;
    float x[LN * LC], y[LN * LOC], dy[LN * LOC], dx[LN * LC] = {0}, dw[LOC * LC] = {0}, db[LOC] = {0};
    qt_fill_normal(x, LN * LC, 1.0f, 1);
    qt_fill_normal(dy, LN * LOC, 1.0f, 2);
    for (int r = 0; r < 3; r++) {
        nn_linear_forward(&ex, y, x, l.w, l.b, LN, LC, LOC);
        nn_linear_backward(&ex, dx, dw, db, dy, x, l.w, LN, LC, LOC);
    }
    const double f1 = 2.0 * LN * LC * LOC;
    const qc_prof_scope fwd = scope_named(p, "head.fwd"), bdx = scope_named(p, "head.bwd_dx"),
                        bdw = scope_named(p, "head.bwd_dw"), bias = scope_named(p, "head.bias.fwd"),
                        dbias = scope_named(p, "head.bias.bwd");
    assert_int_equal(fwd.calls, 3);
    assert_int_equal(fwd.kind, QC_PROF_GEMM);
    assert_true(fwd.flops == 3 * f1);
    assert_true(bdx.flops == 3 * f1);
    assert_true(bdw.flops == 3 * f1);
    assert_int_equal(bias.kind, QC_PROF_ELEMENTWISE);
    assert_int_equal(bias.calls, 3);
    assert_int_equal(dbias.calls, 3);
    assert_true(bias.flops == 0);
    /* one row per shape: forward (N x OC x C, B transposed), dx (N x C x OC), dw (OC x C x N, A transposed) */
    qc_prof_summary s;
    qc_prof_summary_get(p, &s);
    assert_int_equal(s.n_shapes, 3);
    const int64_t want[3][5] = {{LN, LOC, LC, 0, 1}, {LN, LC, LOC, 0, 0}, {LOC, LC, LN, 1, 0}};
    for (int i = 0; i < 3; i++) {
        qc_prof_shape sh;
        assert_true(qc_prof_shape_get(p, i, &sh));
        assert_int_equal(sh.M, want[i][0]);
        assert_int_equal(sh.N, want[i][1]);
        assert_int_equal(sh.K, want[i][2]);
        assert_int_equal(sh.trans_a, want[i][3]);
        assert_int_equal(sh.trans_b, want[i][4]);
        assert_int_equal(sh.batch, 1);
        assert_int_equal(sh.calls, 3);
        assert_true(sh.flops == 3 * f1);
    }
    assert_true(s.kind_flops[QC_PROF_GEMM] == 9 * f1);
    /* the attention core: 4 B Tq Tk C FLOPs forward (QK^T and PV over every head) */
    enum { AB = 2, AT = 3, AC = 4, AH = 2 };
    float q[AB * AT * AC], att[AB * AH * AT * AT], out[AB * AT * AC];
    qt_fill_normal(q, AB * AT * AC, 1.0f, 4);
    nn_attention_forward(&ex, out, att, q, q, q, NULL, NULL, AB, AT, AT, AC, AH, false);
    assert_true(scope_named(p, "attn.fwd").flops == 4.0 * AB * AT * AT * AC);
    assert_int_equal(scope_named(p, "attn.fwd").kind, QC_PROF_ATTENTION);
    qc_prof_free(p);
    lin_free(&l);
}

static void test_off(void **state) {
    (void)state;
    lin l;
    lin_make(&l);
    qc_prof *p = new_prof();
    qb_exec off, on;
    qb_exec_cpu(&off, 2);
    assert_null(off.prof); /* a fresh context is off */
    on = off;
    on.prof = p;
    float x[LN * LC], y0[LN * LOC], y1[LN * LOC], dy[LN * LOC];
    float dx0[LN * LC] = {0}, dx1[LN * LC] = {0}, dw0[LOC * LC] = {0}, dw1[LOC * LC] = {0};
    qt_fill_normal(x, LN * LC, 1.0f, 1);
    qt_fill_normal(dy, LN * LOC, 1.0f, 2);
    nn_linear_forward(&off, y0, x, l.w, l.b, LN, LC, LOC);
    nn_linear_backward(&off, dx0, dw0, NULL, dy, x, l.w, LN, LC, LOC);
    nn_gelu_forward(&off, y0, y0, LN * LOC);
    qc_prof_summary s;
    qc_prof_summary_get(p, &s);
    assert_int_equal(s.n_scopes, 0); /* the profiler exists but nobody reported to it */
    assert_int_equal(s.n_shapes, 0);
    nn_linear_forward(&on, y1, x, l.w, l.b, LN, LC, LOC);
    nn_linear_backward(&on, dx1, dw1, NULL, dy, x, l.w, LN, LC, LOC);
    nn_gelu_forward(&on, y1, y1, LN * LOC);
    assert_memory_equal(y0, y1, sizeof y0);
    assert_memory_equal(dx0, dx1, sizeof dx0);
    assert_memory_equal(dw0, dw1, sizeof dw0);
    qc_prof_summary_get(p, &s);
    assert_true(s.n_scopes > 0);
    /* a NULL profiler is inert through the macros and the functions */
    assert_int_equal(QC_PROF_BEGIN((qc_prof *)NULL, QC_PROF_GEMM, NULL, 0, "x"), -1);
    assert_int_equal(qc_prof_begin(NULL, QC_PROF_GEMM, NULL, 0, "x"), -1);
    qc_prof_end(NULL, 0, 1.0);
    qc_prof_free(p);
    lin_free(&l);
}

static void test_many_shapes(void **state) {
    (void)state;
    qc_prof *p = new_prof();
    enum { SHAPES = 200 };
    for (int m = 1; m <= SHAPES; m++) {
        const int t = qc_prof_begin(p, QC_PROF_GEMM, NULL, 0, "fc.fwd");
        busy(100);
        qc_prof_end_gemm(p, t, m, 8, 4, 1, false, true);
    }
    qc_prof_add_steps(p, 1, 1.0);
    qc_prof_summary s;
    qc_prof_summary_get(p, &s);
    assert_int_equal(s.n_scopes, 1);
    assert_int_equal(s.n_shapes, SHAPES);
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(qc_prof_write_table(p, f, 0), QIAO_OK);
    rewind(f);
    char line[512];
    int rows = 0;
    while (fgets(line, sizeof line, f)) rows += strstr(line, "x8x4 tB") != NULL;
    fclose(f);
    assert_int_equal(rows, SHAPES);
    qc_prof_free(p);
}

typedef struct worker {
    qc_prof *p;
    const char *outer, *inner;
    int n;
} worker;

static void *work(void *arg) {
    worker *w = arg;
    for (int i = 0; i < w->n; i++) {
        const int o = qc_prof_begin(w->p, QC_PROF_GROUP, NULL, 0, w->outer);
        const int t = qc_prof_begin(w->p, QC_PROF_LOADER, NULL, 0, w->inner);
        qc_prof_end(w->p, t, 1.0);
        qc_prof_end(w->p, o, 0);
    }
    return NULL;
}

static void test_threads(void **state) {
    (void)state;
    qc_prof *p = new_prof();
    worker a = {p, "a.fwd", "x", 20000}, b = {p, "b.fwd", "y", 15000};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, work, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, work, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    qc_prof_summary s;
    qc_prof_summary_get(p, &s);
    assert_int_equal(s.n_scopes, 4); /* each thread's inner scope only under its own outer one */
    assert_int_equal(scope_named(p, "a.fwd").calls, 20000);
    assert_int_equal(scope_named(p, "a.x").calls, 20000);
    assert_int_equal(scope_named(p, "b.fwd").calls, 15000);
    assert_int_equal(scope_named(p, "b.y").calls, 15000);
    assert_true(scope_named(p, "a.x").flops == 20000.0);
    assert_int_equal(scope_named(p, "b.y").parent, qc_prof_find(p, "b.fwd"));
    assert_children_within(p);
    qc_prof_free(p);
}

/* ---- the trainer: a one-block trunk classifying random tokens -------------------- */

enum { TB = 4, TT = 6, TC = 16, TF = 32, TH = 2, TD = 4, SKIP = 2, PROFILED = 3 };

typedef struct tiny {
    qt_model m;
    nn_trunk_dims d;
    nn_trunk_params p, g;
    nn_trunk_acts a, da;
    float x[TB * TT * TC], dx[TB * TT * TC], losses[TB], probs[TB * TD], demb[TB * TD];
    int32_t y[TB];
    int64_t batches;
} tiny;

static qiao_status tiny_next(void *user, int64_t step) {
    tiny *k = user;
    qt_fill_normal(k->x, TB * TT * TC, 1.0f, 100 + (uint64_t)step);
    for (int i = 0; i < TB; i++) k->y[i] = (int32_t)((step + i) % TD);
    k->batches++;
    return QIAO_OK;
}

static qiao_status tiny_step(void *user, const qtr_step_ctx *c, float *loss, float *metrics) {
    (void)metrics;
    tiny *k = user;
    qc_table_bind(&k->m.pt, c->grads, &k->g);
    nn_trunk_forward(c->ex, &k->a, &k->p, k->x, NULL, &k->d);
    nn_cross_entropy_forward(c->ex, loss, k->losses, k->probs, k->a.emb, k->y, TB, TD, 0.0f, -1);
    memset(k->demb, 0, sizeof k->demb);
    nn_cross_entropy_backward(c->ex, k->demb, 1.0f, k->probs, k->y, TB, TD, 0.0f, -1);
    qc_arena_zero(&k->m.dacts);
    nn_trunk_backward(c->ex, k->dx, &k->g, &k->da, k->demb, NULL, &k->a, &k->p, k->x, NULL, &k->d);
    return QIAO_OK;
}

static void test_trainer(void **state) {
    (void)state;
    tiny *k = calloc(1, sizeof *k);
    assert_non_null(k);
    k->d = (nn_trunk_dims){.B = TB, .T = TT, .C = TC, .F = TF, .H = TH, .L = 1, .max_T = TT, .D = TD,
                           .pool = NN_POOL_MEAN};
    qc_table_init_empty(&k->m.pt);
    qc_table_init_empty(&k->m.at);
    assert_int_equal(nn_trunk_describe(&k->m.pt, "enc.trunk.", &k->d, 0), QIAO_OK);
    assert_int_equal(nn_trunk_describe_acts(&k->m.at, "enc.trunk.", &k->d, 0), QIAO_OK);
    qt_model_alloc(&k->m, &k->p, &k->g, &k->a, &k->da);
    qc_table_init(&k->m.pt, k->m.params.base, 5);
    qtr_objective obj = {.name = "tiny", .tab = &k->m.pt, .params = k->m.params.base, .samples_per_step = TB,
                         .user = k, .next_batch = tiny_next, .step = tiny_step};
    qb_exec ex;
    qb_exec_cpu(&ex, 2);
    qc_prof *prof = new_prof();
    qtr_params tp = {.hp = qtr_hparams_default(), .ex = &ex, .prof = prof, .prof_skip = SKIP,
                     .prof_roofline_s = 0.02};
    tp.hp.steps = SKIP + PROFILED;
    qtr_result res;
    assert_int_equal(qtr_run(&obj, &tp, &res), QIAO_OK);
    assert_int_equal(res.step, SKIP + PROFILED);
    assert_null(ex.prof); /* the caller's context is left as it was */

    qc_prof_summary s;
    qc_prof_summary_get(prof, &s);
    assert_int_equal(s.steps, PROFILED);
    assert_int_equal(s.dropped, 0);
    /* the top-level scopes ran one after another inside the measured steps */
    assert_true(s.top_seconds > 0);
    assert_true(s.top_seconds <= s.step_seconds);
    assert_children_within(prof);
    /* the trainer's own work, once per profiled step */
    const char *const top[] = {"loader.wait", "zero_grads", "forward_backward", "sync", "schedule", "clip",
                               "adamw"};
    for (size_t i = 0; i < sizeof top / sizeof *top; i++) {
        const qc_prof_scope t = scope_named(prof, top[i]);
        assert_int_equal(t.calls, PROFILED);
        assert_int_equal(t.parent, -1);
    }
    assert_int_equal(scope_named(prof, "loader.wait").kind, QC_PROF_LOADER);
    assert_int_equal(scope_named(prof, "adamw").kind, QC_PROF_OPTIMIZER);
    /* the layers, named after their weights, inside forward_backward */
    const int fb = qc_prof_find(prof, "forward_backward");
    assert_int_equal(scope_named(prof, "enc.trunk.fwd").parent, fb);
    assert_int_equal(scope_named(prof, "enc.trunk.blocks.0.fwd").parent, qc_prof_find(prof, "enc.trunk.fwd"));
    const char *const layers[] = {"enc.trunk.blocks.0.ln1.fwd",      "enc.trunk.blocks.0.attn.q.fwd",
                                  "enc.trunk.blocks.0.attn.fwd",     "enc.trunk.blocks.0.gelu.fwd",
                                  "enc.trunk.blocks.0.mlp.fc2.bwd_dw", "enc.trunk.blocks.0.attn.bwd",
                                  "enc.trunk.ln_f.bwd",              "enc.trunk.pool.fwd",
                                  "enc.trunk.proj.fwd",              "enc.trunk.l2norm.bwd",
                                  "cross_entropy.fwd"};
    for (size_t i = 0; i < sizeof layers / sizeof *layers; i++)
        assert_int_equal(scope_named(prof, layers[i]).calls, PROFILED);
    const qc_prof_scope fc = scope_named(prof, "enc.trunk.blocks.0.mlp.fc.fwd");
    assert_int_equal(fc.kind, QC_PROF_GEMM);
    assert_true(fc.flops == (double)PROFILED * 2.0 * TB * TT * TC * TF);
    /* the roofline was measured, on the big square and on every shape */
    assert_true(s.peak_gflops > 0);
    assert_true(s.n_shapes > 0);
    for (int i = 0; i < s.n_shapes; i++) {
        qc_prof_shape sh;
        assert_true(qc_prof_shape_get(prof, i, &sh));
        assert_true(sh.raw_gflops > 0);
        assert_true(sh.calls % PROFILED == 0);
    }
    /* the report and the CSV */
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(qc_prof_write_table(prof, f, 10), QIAO_OK);
    assert_int_equal(qc_prof_write_csv(prof, f), QIAO_OK);
    rewind(f);
    char line[512];
    int rows = 0, header = 0, attn = 0, shapes = 0;
    while (fgets(line, sizeof line, f)) {
        rows++;
        header += !strncmp(line, "section,name,kind,parent,", 25);
        attn += !strncmp(line, "scope,enc.trunk.blocks.0.attn.fwd,attention,enc.trunk.blocks.0.fwd,", 67);
        shapes += !strncmp(line, "gemm_shape,", 11);
    }
    fclose(f);
    assert_int_equal(header, 1);
    assert_int_equal(attn, 1);
    assert_int_equal(shapes, s.n_shapes);
    assert_true(rows > s.n_scopes);
    qc_prof_free(prof);
    qt_model_free(&k->m);
    free(k);
}

#define CASE(name) {#name, test_##name, NULL, NULL, NULL}
static const struct CMUnitTest tests[] = {
    CASE(nesting), CASE(gemm_flops), CASE(off), CASE(threads), CASE(many_shapes), CASE(trainer),
};

QT_MAIN(tests)
