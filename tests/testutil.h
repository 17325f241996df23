/* tests/testutil.h - shared by the C tests: the cmocka entry point with a
 * case filter, and the finite-difference gradient checker. */
#ifndef QIAO_TESTUTIL_H
#define QIAO_TESTUTIL_H

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "core/core.h"

/* main() of a cmocka test binary: `bin [case]` runs one case (exact name or
 * glob), `bin` runs all. The exit code is the number of failures. */
#define QT_MAIN(tests)                                                                   \
    int main(int argc, char **argv) {                                                    \
        if (argc > 1) cmocka_set_test_filter(argv[1]);                                  \
        return cmocka_run_group_tests(tests, NULL, NULL);                                \
    }

/* Deterministic test data. */
static inline void qt_fill_normal(float *x, int64_t n, float scale, uint64_t seed) {
    qc_rng r;
    qc_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) x[i] = scale * qc_rng_normal(&r);
}

static inline void qt_fill_uniform(float *x, int64_t n, float lo, float hi, uint64_t seed) {
    qc_rng r;
    qc_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * qc_rng_uniform(&r);
}

static inline float *qt_alloc(int64_t n) {
    float *p = calloc((size_t)(n > 0 ? n : 1), sizeof(float));
    assert_non_null(p);
    return p;
}

/* ---- a model under test -------------------------------------------------
 * Its parameter and activation tables and the four arenas they size, the
 * way a model holds them (see docs/design.md). Describe into pt and at,
 * then qt_model_alloc binds the caller's parameter, gradient, activation
 * and activation-gradient structs into fresh zeroed arenas. */
typedef struct qt_model {
    qc_table pt, at;                     /* parameters, activations */
    qc_arena params, grads, acts, dacts; /* sized by pt, pt, at, at */
} qt_model;

static inline void qt_model_alloc(qt_model *m, void *p, void *g, void *a, void *da) {
    assert_int_equal(qc_arena_alloc(&m->params, m->pt.total), QIAO_OK);
    assert_int_equal(qc_arena_alloc(&m->grads, m->pt.total), QIAO_OK);
    assert_int_equal(qc_arena_alloc(&m->acts, m->at.total), QIAO_OK);
    assert_int_equal(qc_arena_alloc(&m->dacts, m->at.total), QIAO_OK);
    qc_table_bind(&m->pt, m->params.base, p);
    qc_table_bind(&m->pt, m->grads.base, g);
    qc_table_bind(&m->at, m->acts.base, a);
    qc_table_bind(&m->at, m->dacts.base, da);
}

static inline void qt_model_free(qt_model *m) {
    qc_arena_free(&m->params);
    qc_arena_free(&m->grads);
    qc_arena_free(&m->acts);
    qc_arena_free(&m->dacts);
    qc_table_free(&m->pt);
    qc_table_free(&m->at);
}

/* The named parameter tensor (the test fails if it is absent), and its gradient. */
static inline const qc_tensor_desc *qt_model_tensor(const qt_model *m, const char *name) {
    int64_t i = qc_table_find(&m->pt, name);
    if (i < 0) printf("no tensor %s\n", name);
    assert_true(i >= 0);
    return &m->pt.t[i];
}

/* ---- gradient check ------------------------------------------------------
 *
 * The scalar under test is L(x) = sum_i R_i * out_i (R fixed random weights),
 * so backward is run with dout = R and the analytic dL/dx it produces is
 * compared with the central difference (L(x+h) - L(x-h)) / 2h, L summed in
 * double. Each element passes if |num - ana| <= atol + rtol * max(|num|, |ana|).
 *
 * Why these tolerances mean something in f32: the forward is deterministic,
 * so outputs that do not depend on x_i cancel exactly between the two
 * evaluations; the remaining noise is ~1e-7 * |out| / h, about 1e-4 for
 * h = 1e-3, and the truncation error is O(h^2). A wrong backward gives errors
 * of the order of the gradient itself. A weight moves every output, so for
 * weights the noise grows with the number and size of outputs: draw weights
 * so outputs stay O(1) (e.g. N(0, 1/fan_in)) rather than loosening tolerances. */
typedef void (*qt_forward_fn)(void *ctx);

static inline double qt_weighted_sum(const float *out, const float *R, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)R[i] * (double)out[i];
    return s;
}

/* Checks up to `max_checks` elements of x (all if n <= max_checks, else a
 * deterministic spread). Returns the number of mismatches; prints the worst. */
static inline int qt_gradcheck(const char *what, qt_forward_fn fwd, void *ctx, const float *out,
                               const float *R, int64_t nout, float *x, const float *grad, int64_t n,
                               float h, double atol, double rtol, int64_t max_checks) {
    int bad = 0;
    double worst = 0.0;
    int64_t worst_i = -1;
    double worst_num = 0, worst_ana = 0;
    int64_t step = n <= max_checks ? 1 : n / max_checks;
    for (int64_t i = 0; i < n; i += step) {
        float saved = x[i];
        x[i] = saved + h;
        fwd(ctx);
        double lp = qt_weighted_sum(out, R, nout);
        x[i] = saved - h;
        fwd(ctx);
        double lm = qt_weighted_sum(out, R, nout);
        x[i] = saved;
        double num = (lp - lm) / (2.0 * (double)h);
        double ana = grad[i];
        double err = fabs(num - ana);
        double lim = atol + rtol * fmax(fabs(num), fabs(ana));
        if (err > lim) bad++;
        if (err / lim > worst) {
            worst = err / lim;
            worst_i = i;
            worst_num = num;
            worst_ana = ana;
        }
    }
    fwd(ctx); /* leave outputs consistent with the restored inputs */
    if (bad)
        printf("gradcheck %s: %d mismatches; worst at %lld: numeric %.6g analytic %.6g\n", what, bad,
               (long long)worst_i, worst_num, worst_ana);
    return bad;
}

#endif
