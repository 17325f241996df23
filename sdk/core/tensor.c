/* The tensor table and the arenas it sizes (see core.h for the why). */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

void qc_table_init_empty(qc_table *tab) { memset(tab, 0, sizeof *tab); }

void qc_table_free(qc_table *tab) {
    free(tab->t);
    memset(tab, 0, sizeof *tab);
}

qiao_status qc_table_add(qc_table *tab, const char *name, int ndim, const int64_t *shape,
                         qc_init init, float init_scale, uint32_t flags, size_t field) {
    if (!name || strlen(name) >= QC_NAME_MAX)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tensor name missing or longer than %d bytes",
                        QC_NAME_MAX - 1);
    if (ndim < 0 || ndim > QC_MAX_DIMS)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tensor '%s': %d dimensions (at most %d)", name,
                        ndim, QC_MAX_DIMS);
    if (qc_table_find(tab, name) >= 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tensor '%s' described twice", name);
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || !qc_mul_size(numel, (size_t)shape[i], &numel))
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tensor '%s': bad shape", name);
    }
    size_t padded = (numel + QC_ALIGN_FLOATS - 1) / QC_ALIGN_FLOATS * QC_ALIGN_FLOATS;
    size_t total;
    if (padded < numel || !qc_add_size(tab->total, padded, &total))
        return qc_error(QIAO_ERR_TOO_LARGE, "tensor '%s': table size overflows", name);
    if (tab->n == tab->cap) {
        size_t cap = tab->cap ? tab->cap * 2 : 32;
        qc_tensor_desc *t = realloc(tab->t, cap * sizeof *t);
        if (!t) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "tensor table: out of memory");
        tab->t = t;
        tab->cap = cap;
    }
    qc_tensor_desc *d = &tab->t[tab->n++];
    memset(d, 0, sizeof *d);
    strcpy(d->name, name);
    d->ndim = ndim;
    for (int i = 0; i < ndim; i++) d->shape[i] = shape[i];
    d->numel = (int64_t)numel;
    d->storage = QIAO_DTYPE_F32;
    d->init = init;
    d->init_scale = init_scale;
    d->flags = flags;
    d->offset = tab->total;
    d->field = field;
    tab->total = total;
    return QIAO_OK;
}

qiao_status qc_table_add_prefixed(qc_table *tab, const char *prefix, const char *name, int ndim,
                                  const int64_t *shape, qc_init init, float init_scale, uint32_t flags, size_t field) {
    char full[QC_NAME_MAX];
    int n = snprintf(full, sizeof full, "%s%s", prefix ? prefix : "", name ? name : "");
    if (n < 0 || (size_t)n >= sizeof full)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tensor name '%s%s' is longer than %d bytes", prefix ? prefix : "",
                        name ? name : "", QC_NAME_MAX - 1);
    return qc_table_add(tab, full, ndim, shape, init, init_scale, flags, field);
}

int64_t qc_table_find(const qc_table *tab, const char *name) {
    for (size_t i = 0; i < tab->n; i++)
        if (strcmp(tab->t[i].name, name) == 0) return (int64_t)i;
    return -1;
}

void qc_table_bind(const qc_table *tab, float *arena, void *obj) {
    for (size_t i = 0; i < tab->n; i++) {
        const qc_tensor_desc *d = &tab->t[i];
        if (d->field == QC_NO_FIELD) continue;
        float *p = arena + d->offset;
        memcpy((char *)obj + d->field, &p, sizeof p);
    }
}

static void sincos_axis(float *row, int64_t K, double where, float scale) {
    for (int64_t k = 0; k < K; k++) {
        const double omega = pow(100.0, -(double)k / (double)K);
        row[k] = scale * (float)sin(where * omega);
        row[K + k] = scale * (float)cos(where * omega);
    }
}

void qc_init_sincos(float *out, int64_t n, int64_t d, float scale) {
    int64_t g = (int64_t)llround(sqrt((double)n));
    const bool grid = n > 1 && g * g == n;
    for (int64_t t = 0; t < n; t++) {
        float *row = out + t * d;
        memset(row, 0, (size_t)d * sizeof *row);
        if (grid) {
            sincos_axis(row, d / 4, (double)(t / g), scale);
            sincos_axis(row + 2 * (d / 4), d / 4, (double)(t % g), scale);
        } else {
            sincos_axis(row, d / 2, (double)t, scale);
        }
    }
}

void qc_table_init(const qc_table *tab, float *arena, uint64_t seed) {
    for (size_t i = 0; i < tab->n; i++) {
        const qc_tensor_desc *d = &tab->t[i];
        if (d->init == QC_INIT_SINCOS) {
            const int64_t rows = d->ndim >= 1 ? d->shape[0] : 1;
            qc_init_sincos(arena + d->offset, rows, rows ? d->numel / rows : 0, d->init_scale);
            continue;
        }
        /* Each tensor draws from its own stream (seed, index), so adding a
         * tensor to a model does not change the others' initial values. */
        qc_rng rng;
        qc_rng_seed(&rng, seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(i + 1)));
        float *p = arena + d->offset;
        for (int64_t j = 0; j < d->numel; j++) {
            switch (d->init) {
            case QC_INIT_ZEROS: p[j] = 0.0f; break;
            case QC_INIT_ONES: p[j] = 1.0f; break;
            case QC_INIT_CONST: p[j] = d->init_scale; break;
            case QC_INIT_NORMAL: p[j] = d->init_scale * qc_rng_normal(&rng); break;
            case QC_INIT_UNIFORM: p[j] = d->init_scale * (2.0f * qc_rng_uniform(&rng) - 1.0f); break;
            case QC_INIT_SINCOS: break;
            }
        }
    }
}

qiao_status qc_arena_alloc(qc_arena *a, size_t n) {
    a->base = NULL;
    a->n = 0;
    size_t bytes;
    if (!qc_mul_size(n ? n : 1, sizeof(float), &bytes) || bytes > SIZE_MAX - 63)
        return qc_error(QIAO_ERR_TOO_LARGE, "arena of %zu floats is too large", n);
    bytes = (bytes + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes);
    if (!p) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "arena: cannot allocate %zu bytes", bytes);
    memset(p, 0, bytes);
    a->base = p;
    a->n = n;
    return QIAO_OK;
}

void qc_arena_free(qc_arena *a) {
    free(a->base);
    a->base = NULL;
    a->n = 0;
}

void qc_arena_zero(qc_arena *a) {
    if (a->base) memset(a->base, 0, a->n * sizeof(float));
}

qiao_status qc_table_add_dims(qc_table *tab, const char *prefix, const char *name, int ndim, int64_t d0, int64_t d1,
                              int64_t d2, qc_init init, float init_scale, uint32_t flags, size_t field) {
    const int64_t shape[3] = {d0, d1, d2};
    if (ndim < 0 || ndim > 3)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s%s: %d dims, at most 3 here", prefix, name, ndim);
    return qc_table_add_prefixed(tab, prefix, name, ndim, shape, init, init_scale, flags, field);
}
