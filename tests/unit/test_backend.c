/* tests/unit/test_backend.c - the CPU backend's GEMM gives the same bits
 * for any thread count (the promise that makes training reproducible), over
 * a sweep of shapes around OpenBLAS's thresholds (K > 320 changes its
 * blocking; M*N*K <= 1e6 its small-matrix kernel), every transpose, and a
 * batched case; and agrees with a double-precision reference. */
#include <math.h>
#include <string.h>

#include "backend/backend.h"
#include "testutil.h"

static void gemm_threads(void **state) {
    (void)state;
    static const int64_t Ms[] = {1, 7, 16, 33, 64, 100, 128, 257};
    static const int64_t Ns[] = {1, 5, 24, 64, 130};
    static const int64_t Ks[] = {1, 16, 320, 321, 1024, 1500};
    qb_exec ex[3];
    for (int t = 0; t < 3; t++) qb_exec_cpu(&ex[t], t + 1);
    const int64_t maxM = 257, maxN = 130, maxK = 1500;
    float *A = qt_alloc(maxM * maxK), *B = qt_alloc(maxK * maxN), *C[3];
    for (int t = 0; t < 3; t++) C[t] = qt_alloc(maxM * maxN);
    qt_fill_normal(A, maxM * maxK, 1.0f, 1);
    qt_fill_normal(B, maxK * maxN, 1.0f, 2);
    int bad = 0, cases = 0;
    for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++)
        for (size_t ni = 0; ni < sizeof Ns / sizeof *Ns; ni++)
            for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++)
                for (int tr = 0; tr < 4; tr++) {
                    const int64_t M = Ms[mi], N = Ns[ni], K = Ks[ki];
                    const bool ta = tr & 1, tb = tr & 2;
                    const int64_t lda = ta ? M : K, ldb = tb ? K : N;
                    for (int t = 0; t < 3; t++) {
                        memset(C[t], 0, sizeof(float) * (size_t)(M * N));
                        ex[t].ops->gemm(&ex[t], ta, tb, M, N, K, 1.0f, A, lda, 0, B, ldb, 0, 0.0f, C[t], N, 0, 1);
                    }
                    cases++;
                    for (int t = 1; t < 3; t++)
                        if (memcmp(C[0], C[t], sizeof(float) * (size_t)(M * N))) {
                            printf("M=%lld N=%lld K=%lld ta=%d tb=%d: %d threads differ from 1\n", (long long)M,
                                   (long long)N, (long long)K, ta, tb, t + 1);
                            bad++;
                        }
                    /* spot-check against a double reference (entry 0 and the last) */
                    for (int e = 0; e < 2; e++) {
                        const int64_t r = e ? M - 1 : 0, c = e ? N - 1 : 0;
                        double ref = 0;
                        for (int64_t k = 0; k < K; k++)
                            ref += (double)(ta ? A[k * lda + r] : A[r * lda + k]) *
                                   (double)(tb ? B[c * ldb + k] : B[k * ldb + c]);
                        if (fabs(C[0][r * N + c] - ref) > 1e-4 * (1.0 + sqrt((double)K) * 4.0)) bad++;
                    }
                }
    printf("%d GEMMs, %d mismatches\n", cases, bad);
    assert_int_equal(bad, 0);
    free(A), free(B);
    for (int t = 0; t < 3; t++) free(C[t]);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(gemm_threads),
};

QT_MAIN(tests)
