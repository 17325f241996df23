/* OpenBLAS's kernel choice (sdk/backend/cpu/blas_core.c): on a CPU where
 * OpenBLAS fell back to Prescott's kernels though the CPU runs AVX-512
 * (or AVX2 + FMA), qiao's first CPU context has it choose SkylakeX's (or
 * Haswell's); a choice that is not the fallback, or QIAO_OPENBLAS_CORE=keep
 * (the `kept` registration), is left alone; and GEMMs after a new choice
 * still give the right product. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "backend/cpu/cpu.h"
#include "testutil.h"

static void expect_core(void) {
    char before[64];
    snprintf(before, sizeof before, "%s", openblas_get_corename());
    qb_exec ex;
    qb_exec_cpu(&ex, 2);
    const char *after = openblas_get_corename();
    const char *keep = getenv("QIAO_OPENBLAS_CORE");
    __builtin_cpu_init();
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    print_message("OpenBLAS at load: %s; after qiao's first context: %s%s\n", before, after,
                  keep ? " (QIAO_OPENBLAS_CORE set)" : "");
    if (keep || getenv("OPENBLAS_CORETYPE") || strcmp(before, "Prescott") != 0 || (!avx512 && !avx2))
        assert_string_equal(after, before);
    else
        assert_string_equal(after, avx512 ? "SkylakeX" : "Haswell");
    /* A second context changes nothing. */
    qb_exec_cpu(&ex, 1);
    assert_string_equal(openblas_get_corename(), after);
}

static void gemm_still_right(void) {
    enum { M = 67, N = 45, K = 129 };
    float *a = qt_alloc(M * K), *b = qt_alloc(K * N), *c = qt_alloc(M * N);
    qt_fill_normal(a, M * K, 1.0f, 3);
    qt_fill_normal(b, K * N, 1.0f, 5);
    assert_true(qb_cpu_sgemm(false, false, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N));
    double worst = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += (double)a[i * K + k] * b[k * N + j];
            worst = fmax(worst, fabs(s - c[i * N + j]));
        }
    print_message("sgemm %dx%dx%d against double: max |diff| %.3g\n", M, N, K, worst);
    assert_true(worst < 1e-4);
    free(a), free(b), free(c);
}

static void chosen(void **state) {
    (void)state;
    expect_core();
    gemm_still_right();
}

static void kept(void **state) {
    (void)state;
    assert_non_null(getenv("QIAO_OPENBLAS_CORE"));
    expect_core();
    gemm_still_right();
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(chosen),
    cmocka_unit_test(kept),
};
QT_MAIN(tests)
