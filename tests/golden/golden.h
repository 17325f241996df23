/* tests/golden/golden.h - what every golden test does with its fixture:
 * find a tensor of the expected type and size, copy it out, and compare a
 * result with it element by element (|got - ref| <= atol + rtol |ref|),
 * printing the failures, and with QIAO_TEST_VERBOSE=1 every tensor's max
 * error and its share of the bound. */
#ifndef QIAO_TESTS_GOLDEN_H
#define QIAO_TESTS_GOLDEN_H

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/safetensors.h"

static inline bool qt_golden_verbose(void) {
    const char *s = getenv("QIAO_TEST_VERBOSE");
    return s && *s && strcmp(s, "0") != 0;
}

/* The tensor `name` of f if it has dtype and numel elements; else NULL, printed. */
static inline const qc_st_tensor *qt_golden_need(const qc_st_file *f, const char *fixture, const char *name,
                                                 qiao_dtype dtype, int64_t numel) {
    const qc_st_tensor *t = qc_st_find(f, name);
    if (!t) {
        printf("%s: no tensor '%s'\n", fixture, name);
        return NULL;
    }
    if (t->dtype != dtype || t->numel != numel) {
        printf("%s: tensor '%s' has dtype %d and %lld elements, expected %d and %lld\n", fixture, name, (int)t->dtype,
               (long long)t->numel, (int)dtype, (long long)numel);
        return NULL;
    }
    return t;
}

/* Copies a float32 (elem 4) or uint8 (elem 1) tensor out: data may be unaligned. */
static inline bool qt_golden_read(const qc_st_file *f, const char *fixture, const char *name, qiao_dtype dtype,
                                  void *dst, int64_t numel) {
    const qc_st_tensor *t = qt_golden_need(f, fixture, name, dtype, numel);
    if (!t) return false;
    memcpy(dst, t->data, t->nbytes);
    return true;
}

/* 1 when got (n floats) differs from the float32 tensor `name` beyond
 * atol + rtol |ref| anywhere (NaN included), printed as `label`; 0 otherwise. */
static inline int qt_golden_compare_as(const qc_st_file *f, const char *fixture, const char *name, const char *label,
                                       const float *got, int64_t n, double atol, double rtol) {
    const qc_st_tensor *t = qt_golden_need(f, fixture, name, QIAO_DTYPE_F32, n);
    if (!t) return 1;
    int64_t bad = 0, worst_i = 0;
    double max_err = 0.0, worst = 0.0;
    float worst_ref = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        float ref;
        memcpy(&ref, (const char *)t->data + (size_t)i * sizeof ref, sizeof ref);
        const double err = fabs((double)got[i] - (double)ref), lim = atol + rtol * fabs((double)ref);
        const double ratio = isnan(err) ? INFINITY : err / lim;
        if (!(err <= lim)) bad++;
        if (i == 0 || ratio > worst) worst = ratio, worst_i = i, worst_ref = ref;
        if (isnan(err) || err > max_err) max_err = isnan(err) ? INFINITY : err;
    }
    if (bad)
        printf("FAIL %-48s %lld of %lld over tolerance; max |err| %.3e; worst [%lld] got %.8g ref %.8g\n", label,
               (long long)bad, (long long)n, max_err, (long long)worst_i, (double)got[worst_i], (double)worst_ref);
    else if (qt_golden_verbose())
        printf("ok   %-48s max |err| %.3e  (%.3f of the tolerance)\n", label, max_err, worst);
    return bad ? 1 : 0;
}

static inline int qt_golden_compare(const qc_st_file *f, const char *fixture, const char *name, const float *got,
                                    int64_t n, double atol, double rtol) {
    return qt_golden_compare_as(f, fixture, name, name, got, n, atol, rtol);
}

/* Cosine similarity of each of n rows of got and want (dim wide): the worst
 * (and *worst_i, its row), the mean in *mean, the largest element
 * difference in *max_err; what a model's embeddings are checked with. */
static inline double qt_golden_cosines(const float *got, const float *want, int64_t n, int64_t dim, int64_t *worst_i,
                                       double *mean, double *max_err) {
    double worst = 1.0, sum = 0.0;
    *worst_i = 0, *max_err = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double dot = 0, na = 0, nb = 0;
        for (int64_t c = 0; c < dim; c++) {
            const double a = got[i * dim + c], b = want[i * dim + c];
            dot += a * b, na += a * a, nb += b * b;
            *max_err = fmax(*max_err, fabs(a - b));
        }
        const double cos = dot / sqrt(na * nb);
        sum += cos;
        if (!(cos >= worst)) worst = cos, *worst_i = i; /* NaN is the worst */
    }
    *mean = n ? sum / (double)n : 1.0;
    return worst;
}

/* The n NUL-separated texts of a U8 tensor, as pointers into it (malloc'd). */
static inline const char **qt_golden_texts(const qc_st_tensor *t, int64_t n) {
    const char **texts = calloc((size_t)(n ? n : 1), sizeof *texts);
    const char *s = t->data, *end = (const char *)t->data + t->nbytes;
    for (int64_t i = 0; texts && i < n && s < end; i++, s += strlen(s) + 1) texts[i] = s;
    return texts;
}

#endif /* QIAO_TESTS_GOLDEN_H */
