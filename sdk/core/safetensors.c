/* The .safetensors reader and writer (format and guarantees: safetensors.h).
 *
 * Reading trusts nothing in the file: every number from the header is range-
 * checked before it is used in arithmetic, and every size product is
 * overflow-checked, so a hostile file can at worst produce an error. */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* madvise, MADV_DONTNEED */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/safetensors.h"

/* Data is stored little-endian and copied as-is; a big-endian port would
 * need byte swapping in load and write. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "qiao's safetensors code assumes a little-endian host"
#endif

/* Integers in the header arrive as JSON numbers parsed into doubles, which
 * are exact only up to 2^53; larger shapes or offsets are refused rather
 * than silently rounded. 2^53 bytes is 9 PB, far beyond any model. */
#define ST_MAX_JSON_INT 9007199254740992.0

/* Names from a file can be up to QC_ST_MAX_NAME bytes; messages show at
 * most this many of them so the detail fits the 1 KB error buffer. */
#define NAME_IN_MSG 200

struct qc_st_file {
    char *name;                   /* path or caller's name, for messages */
    const unsigned char *bytes;   /* the whole file image */
    size_t size;
    void *map;                    /* mmap'ed image (qc_st_open), else NULL */
    unsigned char *owned;         /* copied image (open_memory with copy), else NULL */
    const unsigned char *data;    /* first data byte: bytes + 8 + header length */
    size_t data_size;
    qc_st_tensor *t;              /* file order */
    size_t n;
    size_t *by_name;              /* indices into t, sorted by name */
    const char **meta_keys;       /* sorted */
    const char **meta_vals;
    size_t n_meta;
    char *pool;                   /* every string above, NUL-terminated */
    size_t pool_used, pool_cap;
};

/* ---- dtypes and UTF-8 --------------------------------------------------- */

static const struct {
    qiao_dtype dtype;
    const char *name;
    size_t size;
} dtypes[] = {
    {QIAO_DTYPE_F32, "F32", 4}, {QIAO_DTYPE_F16, "F16", 2}, {QIAO_DTYPE_BF16, "BF16", 2},
    {QIAO_DTYPE_I32, "I32", 4}, {QIAO_DTYPE_I64, "I64", 8}, {QIAO_DTYPE_U8, "U8", 1},
    {QIAO_DTYPE_I8, "I8", 1},   {QIAO_DTYPE_F64, "F64", 8},
};
#define N_DTYPES (sizeof dtypes / sizeof dtypes[0])

const char *qc_st_dtype_name(qiao_dtype dtype) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (dtypes[i].dtype == dtype) return dtypes[i].name;
    return NULL;
}

size_t qc_st_dtype_size(qiao_dtype dtype) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (dtypes[i].dtype == dtype) return dtypes[i].size;
    return 0;
}

static bool dtype_from_name(const char *s, qiao_dtype *out) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (strcmp(dtypes[i].name, s) == 0) {
            *out = dtypes[i].dtype;
            return true;
        }
    return false;
}

static bool dtype_is_float(qiao_dtype d) {
    return d == QIAO_DTYPE_F32 || d == QIAO_DTYPE_F16 || d == QIAO_DTYPE_BF16 || d == QIAO_DTYPE_F64;
}

static void format_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t n = 0;
    n += (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, ")");
}

/* ---- reading -------------------------------------------------------------- */

static const char *pool_add(qc_st_file *f, const char *s) {
    size_t len = strlen(s);
    /* Cannot happen (see validate_header on the pool size); checked anyway
     * because an overflow here would be a heap overrun. */
    if (len >= f->pool_cap - f->pool_used) return NULL;
    char *p = f->pool + f->pool_used;
    memcpy(p, s, len + 1);
    f->pool_used += len + 1;
    return p;
}

/* Reads a JSON number that must be an integer in [0, 2^53]. */
static bool json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0.0 && d <= ST_MAX_JSON_INT)) return false; /* also rejects NaN */
    uint64_t u = (uint64_t)d;
    if ((double)u != d) return false;
    *out = u;
    return true;
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const qc_st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* qsort has no context argument in C17, so name sorting goes through a
 * small array of (name, index) pairs instead of indices into f->t. */
typedef struct name_ix {
    const char *name;
    size_t ix;
} name_ix;

static int cmp_name_ix(const void *a, const void *b) {
    return strcmp(((const name_ix *)a)->name, ((const name_ix *)b)->name);
}

static qiao_status parse_metadata(qc_st_file *f, const cJSON *meta) {
    const char *fn = f->name;
    if (!cJSON_IsObject(meta))
        return qc_error(QIAO_ERR_FORMAT, "%s: \"__metadata__\" is not a JSON object", fn);
    size_t n = 0;
    for (const cJSON *m = meta->child; m; m = m->next) n++;
    if (n == 0) return QIAO_OK;
    name_ix *ix = malloc(n * sizeof *ix);
    f->meta_keys = malloc(n * sizeof *f->meta_keys);
    f->meta_vals = malloc(n * sizeof *f->meta_vals);
    if (!ix || !f->meta_keys || !f->meta_vals) {
        free(ix);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory reading metadata", fn);
    }
    qiao_status st = QIAO_OK;
    size_t i = 0;
    for (const cJSON *m = meta->child; m; m = m->next, i++) {
        if (!m->string) {
            st = qc_error(QIAO_ERR_FORMAT, "%s: metadata entry without a key", fn);
            goto done;
        }
        if (!cJSON_IsString(m) || !m->valuestring) {
            st = qc_error(QIAO_ERR_FORMAT, "%s: metadata '%.*s' is not a string (safetensors metadata "
                          "values must be strings)", fn, NAME_IN_MSG, m->string);
            goto done;
        }
        ix[i].name = m->string;
        ix[i].ix = i;
    }
    qsort(ix, n, sizeof *ix, cmp_name_ix);
    for (i = 0; i < n; i++) {
        if (i > 0 && strcmp(ix[i].name, ix[i - 1].name) == 0) {
            st = qc_error(QIAO_ERR_FORMAT, "%s: metadata key '%.*s' appears twice", fn, NAME_IN_MSG,
                          ix[i].name);
            goto done;
        }
    }
    /* Second pass in sorted order: find each value by its original position. */
    const cJSON **items = malloc(n * sizeof *items);
    if (!items) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory reading metadata", fn);
        goto done;
    }
    i = 0;
    for (const cJSON *m = meta->child; m; m = m->next) items[i++] = m;
    for (i = 0; i < n; i++) {
        const cJSON *m = items[ix[i].ix];
        f->meta_keys[i] = pool_add(f, m->string);
        f->meta_vals[i] = pool_add(f, m->valuestring);
        if (!f->meta_keys[i] || !f->meta_vals[i]) {
            free(items);
            st = qc_error(QIAO_ERR_INTERNAL, "%s: string pool overflow", fn);
            goto done;
        }
    }
    free(items);
    f->n_meta = n;
done:
    free(ix);
    return st;
}

/* Fills *t from one header entry `e` (already known not to be metadata). */
static qiao_status parse_tensor(qc_st_file *f, const cJSON *e, qc_st_tensor *t) {
    const char *fn = f->name;
    const char *name = e->string;
    size_t len = strlen(name);
    if (len == 0) return qc_error(QIAO_ERR_FORMAT, "%s: a tensor has an empty name", fn);
    if (len > QC_ST_MAX_NAME)
        return qc_error(QIAO_ERR_FORMAT, "%s: tensor '%.*s...': name is %zu bytes (at most %d)", fn,
                        64, name, len, QC_ST_MAX_NAME);
    if (!qc_utf8_valid(name, len))
        return qc_error(QIAO_ERR_FORMAT, "%s: a tensor name is not valid UTF-8", fn);
    if (!cJSON_IsObject(e))
        return qc_error(QIAO_ERR_FORMAT, "%s: tensor '%.*s': entry is not a JSON object", fn,
                        NAME_IN_MSG, name);

    const cJSON *jd = NULL, *js = NULL, *jo = NULL;
    for (const cJSON *c = e->child; c; c = c->next) {
        const cJSON **slot = NULL;
        if (!c->string) continue;
        if (!strcmp(c->string, "dtype")) slot = &jd;
        else if (!strcmp(c->string, "shape")) slot = &js;
        else if (!strcmp(c->string, "data_offsets")) slot = &jo;
        else continue; /* unknown fields are ignored, as the reference reader does */
        if (*slot)
            return qc_error(QIAO_ERR_FORMAT, "%s: tensor '%.*s': field \"%s\" appears twice", fn,
                            NAME_IN_MSG, name, c->string);
        *slot = c;
    }
    if (!jd || !js || !jo)
        return qc_error(QIAO_ERR_FORMAT, "%s: tensor '%.*s': missing \"%s\"", fn, NAME_IN_MSG, name,
                        !jd ? "dtype" : !js ? "shape" : "data_offsets");

    memset(t, 0, sizeof *t);
    if (!cJSON_IsString(jd) || !jd->valuestring)
        return qc_error(QIAO_ERR_FORMAT, "%s: tensor '%.*s': dtype is not a string", fn, NAME_IN_MSG,
                        name);
    if (!dtype_from_name(jd->valuestring, &t->dtype))
        return qc_error(QIAO_ERR_FORMAT,
                        "%s: tensor '%.*s': dtype '%.32s' is unknown or unsupported "
                        "(supported: F32 F16 BF16 F64 I32 I64 I8 U8)",
                        fn, NAME_IN_MSG, name, jd->valuestring);

    if (!cJSON_IsArray(js))
        return qc_error(QIAO_ERR_FORMAT, "%s: tensor '%.*s': shape is not an array", fn, NAME_IN_MSG,
                        name);
    int ndim = 0;
    size_t numel = 1;
    bool overflow = false;
    for (const cJSON *d = js->child; d; d = d->next) {
        if (ndim == QC_MAX_DIMS)
            return qc_error(QIAO_ERR_FORMAT, "%s: tensor '%.*s': shape has more than %d dimensions",
                            fn, NAME_IN_MSG, name, QC_MAX_DIMS);
        uint64_t v;
        if (!json_uint(d, &v))
            return qc_error(QIAO_ERR_FORMAT,
                            "%s: tensor '%.*s': dimension %d is not an integer in [0, 2^53]", fn,
                            NAME_IN_MSG, name, ndim);
        t->shape[ndim++] = (int64_t)v;
        /* Keep parsing after an overflow so a later bad dimension is still
         * reported as such; the overflow is reported below. */
        if (!overflow && !qc_mul_size(numel, (size_t)v, &numel)) overflow = true;
    }
    t->ndim = ndim;
    char shp[160];
    format_shape(shp, sizeof shp, ndim, t->shape);
    size_t esize = qc_st_dtype_size(t->dtype);
    size_t nbytes = 0;
    if (overflow || !qc_mul_size(numel, esize, &nbytes) || numel > (size_t)INT64_MAX)
        return qc_error(QIAO_ERR_FORMAT, "%s: tensor '%.*s': shape %s %s overflows the byte size", fn,
                        NAME_IN_MSG, name, shp, jd->valuestring);
    t->numel = (int64_t)numel;
    t->nbytes = nbytes;

    uint64_t b, en;
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2 || !json_uint(jo->child, &b) ||
        !json_uint(jo->child->next, &en))
        return qc_error(QIAO_ERR_FORMAT,
                        "%s: tensor '%.*s': data_offsets is not [begin, end] with integers in [0, 2^53]",
                        fn, NAME_IN_MSG, name);
    if (en < b)
        return qc_error(QIAO_ERR_FORMAT, "%s: tensor '%.*s': data_offsets [%" PRIu64 ", %" PRIu64
                        ") ends before it begins", fn, NAME_IN_MSG, name, b, en);
    if (en > f->data_size)
        return qc_error(QIAO_ERR_FORMAT, "%s: tensor '%.*s': data_offsets [%" PRIu64 ", %" PRIu64
                        ") run past the end of the %zu data bytes (truncated file?)", fn, NAME_IN_MSG,
                        name, b, en, f->data_size);
    if (en - b != nbytes)
        return qc_error(QIAO_ERR_FORMAT, "%s: tensor '%.*s': data_offsets [%" PRIu64 ", %" PRIu64
                        ") but shape %s %s needs %zu bytes", fn, NAME_IN_MSG, name, b, en, shp,
                        jd->valuestring, nbytes);
    t->begin = (size_t)b;
    t->data = f->data + t->begin;
    t->name = pool_add(f, name);
    if (!t->name) return qc_error(QIAO_ERR_INTERNAL, "%s: string pool overflow", fn);
    return QIAO_OK;
}

static qiao_status parse_json(qc_st_file *f, const cJSON *root) {
    const char *fn = f->name;
    if (!cJSON_IsObject(root))
        return qc_error(QIAO_ERR_FORMAT, "%s: header is JSON but not an object", fn);
    size_t n = 0;
    const cJSON *meta = NULL;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (!c->string) return qc_error(QIAO_ERR_FORMAT, "%s: header entry without a name", fn);
        if (strcmp(c->string, "__metadata__") == 0) {
            if (meta) return qc_error(QIAO_ERR_FORMAT, "%s: \"__metadata__\" appears twice", fn);
            meta = c;
        } else {
            n++;
        }
    }
    if (meta) {
        qiao_status st = parse_metadata(f, meta);
        if (st != QIAO_OK) return st;
    }
    if (n == 0) return QIAO_OK;
    f->t = calloc(n, sizeof *f->t);
    f->by_name = malloc(n * sizeof *f->by_name);
    name_ix *ix = malloc(n * sizeof *ix);
    if (!f->t || !f->by_name || !ix) {
        free(ix);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu tensors", fn, n);
    }
    size_t i = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (c == meta) continue;
        qiao_status st = parse_tensor(f, c, &f->t[i++]);
        if (st != QIAO_OK) {
            free(ix);
            return st;
        }
    }
    f->n = n;

    /* File order, then overlap check: after sorting by begin, a non-empty
     * tensor overlaps an earlier one iff it starts before the furthest end
     * seen so far. Empty tensors own no bytes and may sit anywhere. */
    qsort(f->t, n, sizeof *f->t, cmp_tensor_offset);
    size_t max_end = 0, max_ix = 0;
    for (i = 0; i < n; i++) {
        const qc_st_tensor *t = &f->t[i];
        if (t->nbytes == 0) continue;
        if (t->begin < max_end) {
            const qc_st_tensor *o = &f->t[max_ix];
            free(ix);
            return qc_error(QIAO_ERR_FORMAT,
                            "%s: tensor '%.*s' data [%zu, %zu) overlaps tensor '%.*s' data [%zu, %zu)", fn,
                            NAME_IN_MSG, t->name, t->begin, t->begin + t->nbytes, NAME_IN_MSG, o->name,
                            o->begin, o->begin + o->nbytes);
        }
        max_end = t->begin + t->nbytes;
        max_ix = i;
    }

    for (i = 0; i < n; i++) ix[i] = (name_ix){f->t[i].name, i};
    qsort(ix, n, sizeof *ix, cmp_name_ix);
    for (i = 0; i < n; i++) {
        if (i > 0 && strcmp(ix[i].name, ix[i - 1].name) == 0) {
            qiao_status st = qc_error(QIAO_ERR_FORMAT, "%s: tensor name '%.*s' appears twice", fn,
                                      NAME_IN_MSG, ix[i].name);
            free(ix);
            return st;
        }
        f->by_name[i] = ix[i].ix;
    }
    free(ix);
    return QIAO_OK;
}

static bool is_json_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Validates f->bytes[0 .. f->size) and fills the tables. */
static qiao_status validate(qc_st_file *f) {
    const char *fn = f->name;
    if (f->size < 8)
        return qc_error(QIAO_ERR_FORMAT,
                        "%s: file is %zu bytes, too short for the 8-byte header length (truncated?)", fn,
                        f->size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->bytes[i];
    if (hlen > f->size - 8)
        return qc_error(QIAO_ERR_FORMAT,
                        "%s: header length %" PRIu64 " exceeds the %zu bytes after the length field "
                        "(truncated file, or not a safetensors file)",
                        fn, hlen, f->size - 8);
    if (hlen > QC_ST_MAX_HEADER)
        return qc_error(QIAO_ERR_TOO_LARGE, "%s: header length %" PRIu64 " is over the limit of %zu bytes",
                        fn, hlen, QC_ST_MAX_HEADER);
    if (hlen < 2)
        return qc_error(QIAO_ERR_FORMAT, "%s: header of %" PRIu64 " bytes cannot hold a JSON object",
                        fn, hlen);
    size_t n = (size_t)hlen;
    const unsigned char *h = f->bytes + 8;
    f->data = h + n;
    f->data_size = f->size - 8 - n;

    /* JSON text never holds a raw NUL; refusing it here lets cJSON parse a
     * NUL-terminated copy, its most robust entry point. */
    const unsigned char *nul = memchr(h, 0, n);
    if (nul)
        return qc_error(QIAO_ERR_FORMAT, "%s: header has a NUL byte at offset %zu", fn,
                        (size_t)(nul - h));
    size_t bad = qc_utf8_check((const char *)h, n);
    if (bad != n)
        return qc_error(QIAO_ERR_FORMAT, "%s: header is not valid UTF-8 at byte %zu", fn, bad);

    /* Decoded strings never outgrow their JSON spelling (quotes included),
     * so the header length bounds the string pool; see pool_add. */
    f->pool_cap = n + 1;
    f->pool = malloc(f->pool_cap);
    /* Extra zero bytes after the terminator: older cJSON releases read a
     * byte or two past the end of malformed input. */
    char *text = malloc(n + 16);
    if (!f->pool || !text) {
        free(text);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory for a %zu-byte header", fn, n);
    }
    memcpy(text, h, n);
    memset(text + n, 0, 16);
    /* Note: cJSON resets a process-global error pointer on every parse; we
     * never read it (the position comes back through `end`), so concurrent
     * opens only race on a value nobody uses. */
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 0);
    if (!root) {
        size_t at = end && end >= text && end <= text + n ? (size_t)(end - text) : 0;
        free(text);
        return qc_error(QIAO_ERR_FORMAT, "%s: header is not valid JSON (error near byte %zu of %zu)", fn,
                        at, n);
    }
    /* The reference writer pads the header with spaces; allow any JSON
     * whitespace, nothing else. */
    for (const char *p = end; p < text + n; p++) {
        if (!is_json_space((unsigned char)*p)) {
            size_t at = (size_t)(p - text);
            cJSON_Delete(root);
            free(text);
            return qc_error(QIAO_ERR_FORMAT, "%s: header has trailing bytes after the JSON at byte %zu",
                            fn, at);
        }
    }
    qiao_status st = parse_json(f, root);
    cJSON_Delete(root);
    free(text);
    return st;
}

static qc_st_file *file_new(const char *name) {
    qc_st_file *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    size_t len = strlen(name);
    f->name = malloc(len + 1);
    if (!f->name) {
        free(f);
        return NULL;
    }
    memcpy(f->name, name, len + 1);
    return f;
}

void qc_st_close(qc_st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->size);
    free(f->owned);
    free(f->t);
    free(f->by_name);
    free(f->meta_keys);
    free(f->meta_vals);
    free(f->pool);
    free(f->name);
    free(f);
}

qiao_status qc_st_open(const char *path, qc_st_file **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qc_st_open: out is NULL");
    *out = NULL;
    if (!path) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qc_st_open: path is NULL");
    int fd;
    int64_t fsize;
    qiao_status ost = qc_open_read(path, &fd, &fsize);
    if (ost != QIAO_OK) return ost;
    if ((uint64_t)fsize > SIZE_MAX) {
        close(fd);
        return qc_error(QIAO_ERR_TOO_LARGE, "%s: file too large to map", path);
    }
    qc_st_file *f = file_new(path);
    if (!f) {
        close(fd);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    f->size = (size_t)fsize;
    /* A file shorter than the length field cannot be valid; mmap of length
     * 0 would fail anyway, so report it as the format error it is. */
    if (f->size >= 8) {
        void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            qc_st_close(f);
            return qc_error(e == ENOMEM ? QIAO_ERR_OUT_OF_MEMORY : QIAO_ERR_IO, "%s: cannot map %zu bytes: %s",
                            path, (size_t)fsize, strerror(e));
        }
        f->map = m;
        f->bytes = m;
    }
    close(fd); /* the mapping keeps its own reference to the file */
    qiao_status st = validate(f);
    if (st != QIAO_OK) {
        qc_st_close(f);
        return st;
    }
    *out = f;
    return QIAO_OK;
}

qiao_status qc_st_open_memory(const void *data, size_t size, const char *name, bool copy,
                              qc_st_file **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qc_st_open_memory: out is NULL");
    *out = NULL;
    if (!data && size > 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qc_st_open_memory: data is NULL but size is %zu",
                        size);
    if (!name) name = "<memory>";
    qc_st_file *f = file_new(name);
    if (!f) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", name);
    f->size = size;
    if (copy && size > 0) {
        f->owned = malloc(size);
        if (!f->owned) {
            qc_st_close(f);
            return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: cannot copy %zu bytes", name, size);
        }
        memcpy(f->owned, data, size);
        f->bytes = f->owned;
    } else {
        f->bytes = data;
    }
    qiao_status st = validate(f);
    if (st != QIAO_OK) {
        qc_st_close(f);
        return st;
    }
    *out = f;
    return QIAO_OK;
}

const char *qc_st_name(const qc_st_file *f) { return f ? f->name : NULL; }
size_t qc_st_count(const qc_st_file *f) { return f ? f->n : 0; }

const qc_st_tensor *qc_st_at(const qc_st_file *f, size_t index) {
    return f && index < f->n ? &f->t[index] : NULL;
}

const qc_st_tensor *qc_st_find(const qc_st_file *f, const char *name) {
    if (!f || !name) return NULL;
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const qc_st_tensor *t = &f->t[f->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

size_t qc_st_metadata_count(const qc_st_file *f) { return f ? f->n_meta : 0; }

const char *qc_st_metadata_key(const qc_st_file *f, size_t index) {
    return f && index < f->n_meta ? f->meta_keys[index] : NULL;
}

const char *qc_st_metadata_get(const qc_st_file *f, const char *key) {
    if (!f || !key) return NULL;
    size_t lo = 0, hi = f->n_meta;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(key, f->meta_keys[mid]);
        if (c == 0) return f->meta_vals[mid];
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

int64_t qc_st_param_count(const qc_st_file *f) {
    int64_t total = 0;
    /* Cannot overflow: each numel is at most the file size in bytes. */
    for (size_t i = 0; f && i < f->n; i++)
        if (dtype_is_float(f->t[i].dtype)) total += f->t[i].numel;
    return total;
}

/* Converts n elements of `dtype` at an arbitrarily aligned `src` to f32.
 * Half types go through an aligned bounce buffer: the mapped data need not
 * be 2-byte aligned, and the converters take uint16_t pointers. */
static void to_f32(float *dst, const unsigned char *src, qiao_dtype dtype, size_t n) {
    switch (dtype) {
    case QIAO_DTYPE_F32: memcpy(dst, src, n * sizeof(float)); break;
    case QIAO_DTYPE_F16:
    case QIAO_DTYPE_BF16: {
        uint16_t tmp[1024];
        for (size_t i = 0; i < n; i += 1024) {
            size_t k = n - i < 1024 ? n - i : 1024;
            memcpy(tmp, src + 2 * i, 2 * k);
            if (dtype == QIAO_DTYPE_F16) qc_f16_to_f32_n(dst + i, tmp, k);
            else qc_bf16_to_f32_n(dst + i, tmp, k);
        }
        break;
    }
    case QIAO_DTYPE_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, src + 8 * i, 8);
            dst[i] = (float)d;
        }
        break;
    default: break; /* callers only pass float dtypes */
    }
}

/* Gives the pages of a mapped file's [p, p + n) back to the kernel once
 * their values are copied out, so that a process loading a model does not
 * hold the file's pages and the f32 weights at once: e5-small's f16 file
 * (229 MiB) beside its 458 MiB of weights was a third of a session's peak
 * RSS (bench/bench_pretrained.c). The mapping stays valid: it is private and
 * never written, so a later read faults the same bytes in again from the
 * file. Advisory: a failure changes nothing. Pages at the ends may hold a
 * neighbour's bytes; those come back the same way. */
static void release_pages(const qc_st_file *f, const void *p, size_t n) {
#ifdef MADV_DONTNEED
    const long ps = sysconf(_SC_PAGESIZE);
    if (!f->map || !n || ps <= 0) return;
    const uintptr_t page = (uintptr_t)ps, base = (uintptr_t)f->map;
    const uintptr_t end = (base + f->size + page - 1) & ~(page - 1); /* the mapping covers whole pages */
    uintptr_t lo = (uintptr_t)p & ~(page - 1), hi = ((uintptr_t)p + n + page - 1) & ~(page - 1);
    if (lo < base) lo = base;
    if (hi > end) hi = end;
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
#else
    (void)f, (void)p, (void)n;
#endif
}

qiao_status qc_st_load_table(const qc_st_file *f, const qc_table *tab, float *arena) {
    if (!f || !tab || (!arena && tab->n > 0))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qc_st_load_table: NULL argument");
    for (size_t i = 0; i < tab->n; i++) {
        const qc_tensor_desc *d = &tab->t[i];
        char want[160], got[160];
        format_shape(want, sizeof want, d->ndim, d->shape);
        const qc_st_tensor *t = qc_st_find(f, d->name);
        if (!t)
            return qc_error(QIAO_ERR_FORMAT, "%s: tensor '%s' %s is missing (wrong model file?)",
                            f->name, d->name, want);
        bool same = t->ndim == d->ndim;
        for (int k = 0; same && k < d->ndim; k++) same = t->shape[k] == d->shape[k];
        if (!same) {
            format_shape(got, sizeof got, t->ndim, t->shape);
            return qc_error(QIAO_ERR_FORMAT, "%s: tensor '%s' has shape %s but the model expects %s",
                            f->name, d->name, got, want);
        }
        if (!dtype_is_float(t->dtype))
            return qc_error(QIAO_ERR_FORMAT,
                            "%s: tensor '%s' is stored as %s; the model needs F32, F16, BF16 or F64",
                            f->name, d->name, qc_st_dtype_name(t->dtype));
        /* In slices, each slice's file pages given back once converted. */
        const size_t es = qc_st_dtype_size(t->dtype), slice = (size_t)1 << 22;
        for (size_t j = 0; j < (size_t)t->numel; j += slice) {
            const size_t m = (size_t)t->numel - j < slice ? (size_t)t->numel - j : slice;
            const unsigned char *src = (const unsigned char *)t->data + j * es;
            to_f32(arena + d->offset + j, src, t->dtype, m);
            release_pages(f, src, m * es);
        }
    }
    return QIAO_OK;
}

/* ---- writing -------------------------------------------------------------- */

/* A small buffered writer over a file descriptor, so a model of many small
 * tensors costs few syscalls; the first error sticks. */
typedef struct wbuf {
    int fd;
    int err;             /* errno of the first failure, 0 if none */
    size_t len;
    unsigned char buf[1 << 16];
} wbuf;

static void write_all(wbuf *w, const void *p, size_t n) {
    const unsigned char *c = p;
    while (n > 0 && !w->err) {
        ssize_t k = write(w->fd, c, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            w->err = errno;
        } else if (k == 0) {
            w->err = EIO;
        } else {
            c += k;
            n -= (size_t)k;
        }
    }
}

static void wflush(wbuf *w) {
    write_all(w, w->buf, w->len);
    w->len = 0;
}

static void wput(wbuf *w, const void *p, size_t n) {
    if (w->err) return;
    if (n > sizeof w->buf - w->len) {
        wflush(w);
        if (n >= sizeof w->buf) {
            write_all(w, p, n);
            return;
        }
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static void put_tensor(wbuf *w, const qc_st_entry *e, size_t numel, size_t nbytes) {
    if (nbytes == 0) return; /* data may be NULL */
    if (!e->from_f32 || e->dtype == QIAO_DTYPE_F32) {
        wput(w, e->data, nbytes);
        return;
    }
    const float *src = e->data;
    union {
        uint16_t h[2048];
        double d[1024];
    } tmp;
    size_t chunk = e->dtype == QIAO_DTYPE_F64 ? 1024 : 2048;
    for (size_t i = 0; i < numel && !w->err; i += chunk) {
        size_t k = numel - i < chunk ? numel - i : chunk;
        if (e->dtype == QIAO_DTYPE_F16) {
            qc_f32_to_f16_n(tmp.h, src + i, k);
            wput(w, tmp.h, 2 * k);
        } else if (e->dtype == QIAO_DTYPE_BF16) {
            qc_f32_to_bf16_n(tmp.h, src + i, k);
            wput(w, tmp.h, 2 * k);
        } else {
            for (size_t j = 0; j < k; j++) tmp.d[j] = src[i + j];
            wput(w, tmp.d, 8 * k);
        }
    }
}

typedef struct order_ix {
    size_t esize;
    size_t ix;
} order_ix;

/* Larger elements first, then caller's order: every tensor then starts at a
 * multiple of its element size (sizes are 8, 4, 2, 1 and each tensor's byte
 * count is a multiple of its own), with no gaps, as the reference reader
 * requires contiguous data. */
static int cmp_order(const void *a, const void *b) {
    const order_ix *x = a, *y = b;
    if (x->esize != y->esize) return x->esize > y->esize ? -1 : 1;
    return x->ix < y->ix ? -1 : x->ix > y->ix;
}

static char *shape_json(int ndim, const int64_t *shape) {
    /* Integers are written as raw text: cJSON prints numbers through
     * doubles, which would turn 10^15 into "1e+15", not an integer to
     * strict readers. */
    char *s = malloc(QC_MAX_DIMS * 22 + 4);
    if (!s) return NULL;
    size_t n = 0;
    s[n++] = '[';
    for (int i = 0; i < ndim; i++) n += (size_t)sprintf(s + n, "%s%" PRId64, i ? "," : "", shape[i]);
    s[n++] = ']';
    s[n] = '\0';
    return s;
}

static qiao_status check_entries(const char *path, const qc_st_entry *e, size_t n, const qc_st_kv *meta,
                                 size_t n_meta, size_t *numel, size_t *nbytes) {
    for (size_t i = 0; i < n; i++) {
        const char *name = e[i].name;
        size_t len = name ? strlen(name) : 0;
        if (len == 0 || len > QC_ST_MAX_NAME || !qc_utf8_valid(name, len) ||
            !strcmp(name, "__metadata__"))
            return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                            "%s: tensor %zu: name missing, empty, over %d bytes, not UTF-8 or reserved",
                            path, i, QC_ST_MAX_NAME);
        size_t es = qc_st_dtype_size(e[i].dtype);
        if (es == 0)
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: tensor '%s': unknown dtype %d", path, name,
                            (int)e[i].dtype);
        if (e[i].from_f32 && !dtype_is_float(e[i].dtype))
            return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                            "%s: tensor '%s': f32 values can only be stored as F32/F16/BF16/F64, not %s",
                            path, name, qc_st_dtype_name(e[i].dtype));
        if (e[i].ndim < 0 || e[i].ndim > QC_MAX_DIMS)
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: tensor '%s': %d dimensions (at most %d)", path,
                            name, e[i].ndim, QC_MAX_DIMS);
        size_t ne = 1;
        for (int k = 0; k < e[i].ndim; k++) {
            if (e[i].shape[k] < 0)
                return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: tensor '%s': negative dimension", path,
                                name);
            if (!qc_mul_size(ne, (size_t)e[i].shape[k], &ne))
                return qc_error(QIAO_ERR_TOO_LARGE, "%s: tensor '%s': shape overflows", path, name);
        }
        size_t nb;
        if (!qc_mul_size(ne, es, &nb) || (double)nb > ST_MAX_JSON_INT)
            return qc_error(QIAO_ERR_TOO_LARGE, "%s: tensor '%s': too large", path, name);
        if (nb > 0 && !e[i].data)
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: tensor '%s': data is NULL", path, name);
        numel[i] = ne;
        nbytes[i] = nb;
    }
    for (size_t i = 0; i < n_meta; i++) {
        if (!meta[i].key || !meta[i].value)
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: metadata entry %zu has a NULL key or value",
                            path, i);
        if (!qc_utf8_valid(meta[i].key, strlen(meta[i].key)) ||
            !qc_utf8_valid(meta[i].value, strlen(meta[i].value)))
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: metadata '%.*s' is not valid UTF-8", path,
                            NAME_IN_MSG, meta[i].key);
    }
    return QIAO_OK;
}

static qiao_status check_unique(const char *path, const char *what, name_ix *ix, size_t n) {
    qsort(ix, n, sizeof *ix, cmp_name_ix);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(ix[i].name, ix[i - 1].name))
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: %s '%.*s' given twice", path, what,
                            NAME_IN_MSG, ix[i].name);
    return QIAO_OK;
}

/* Builds the padded header: 8-byte length + JSON + spaces. */
static qiao_status build_header(const char *path, const qc_st_entry *e, const order_ix *ord, size_t n,
                                const size_t *nbytes, const qc_st_kv *meta, size_t n_meta,
                                unsigned char **out, size_t *out_len) {
    qiao_status st = QIAO_OK;
    char *json = NULL;
    cJSON *root = cJSON_CreateObject();
    if (!root) goto oom;
    if (n_meta > 0) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        if (!m) goto oom;
        for (size_t i = 0; i < n_meta; i++)
            if (!cJSON_AddStringToObject(m, meta[i].key, meta[i].value)) goto oom;
    }
    size_t off = 0;
    for (size_t j = 0; j < n; j++) {
        const qc_st_entry *t = &e[ord[j].ix];
        cJSON *o = cJSON_AddObjectToObject(root, t->name);
        if (!o || !cJSON_AddStringToObject(o, "dtype", qc_st_dtype_name(t->dtype))) goto oom;
        char *s = shape_json(t->ndim, t->shape);
        cJSON *r = s ? cJSON_AddRawToObject(o, "shape", s) : NULL;
        free(s);
        if (!r) goto oom;
        char offs[64];
        snprintf(offs, sizeof offs, "[%zu,%zu]", off, off + nbytes[ord[j].ix]);
        if (!cJSON_AddRawToObject(o, "data_offsets", offs)) goto oom;
        off += nbytes[ord[j].ix];
    }
    json = cJSON_PrintUnformatted(root);
    if (!json) goto oom;
    size_t jlen = strlen(json);
    size_t hlen = (jlen + 7) & ~(size_t)7; /* data starts 8-byte aligned */
    if (hlen > QC_ST_MAX_HEADER) {
        st = qc_error(QIAO_ERR_TOO_LARGE, "%s: header of %zu bytes is over the %zu-byte limit", path,
                      hlen, QC_ST_MAX_HEADER);
        goto done;
    }
    unsigned char *buf = malloc(8 + hlen);
    if (!buf) goto oom;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(buf + 8, json, jlen);
    memset(buf + 8 + jlen, ' ', hlen - jlen);
    *out = buf;
    *out_len = 8 + hlen;
    goto done;
oom:
    st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory building the header", path);
done:
    free(json);
    cJSON_Delete(root);
    return st;
}

qiao_status qc_st_write(const char *path, const qc_st_entry *tensors, size_t n, const qc_st_kv *meta,
                        size_t n_meta) {
    if (!path || !path[0] || (!tensors && n > 0) || (!meta && n_meta > 0))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qc_st_write: NULL argument or empty path");
    qiao_status st = QIAO_OK;
    size_t *numel = calloc(n ? n : 1, sizeof *numel);
    size_t *nbytes = calloc(n ? n : 1, sizeof *nbytes);
    order_ix *ord = calloc(n ? n : 1, sizeof *ord);
    size_t nix = n > n_meta ? n : n_meta;
    name_ix *ix = calloc(nix ? nix : 1, sizeof *ix);
    unsigned char *header = NULL;
    size_t header_len = 0;
    wbuf *w = NULL;
    qc_atomic_file af = {.fd = -1};
    if (!numel || !nbytes || !ord || !ix) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
        goto done;
    }
    st = check_entries(path, tensors, n, meta, n_meta, numel, nbytes);
    if (st != QIAO_OK) goto done;
    for (size_t i = 0; i < n; i++) ix[i] = (name_ix){tensors[i].name, i};
    st = check_unique(path, "tensor", ix, n);
    if (st != QIAO_OK) goto done;
    for (size_t i = 0; i < n_meta; i++) ix[i] = (name_ix){meta[i].key, i};
    st = check_unique(path, "metadata key", ix, n_meta);
    if (st != QIAO_OK) goto done;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!qc_add_size(total, nbytes[i], &total) || (double)total > ST_MAX_JSON_INT) {
            st = qc_error(QIAO_ERR_TOO_LARGE, "%s: total data size overflows", path);
            goto done;
        }
        ord[i] = (order_ix){qc_st_dtype_size(tensors[i].dtype), i};
    }
    qsort(ord, n, sizeof *ord, cmp_order);
    st = build_header(path, tensors, ord, n, nbytes, meta, n_meta, &header, &header_len);
    if (st != QIAO_OK) goto done;

    /* Written under a temporary (unnamed where the file system allows)
     * next to the target and renamed over it when complete, so readers see
     * the old file or the new one, and a killed writer leaves nothing. */
    w = malloc(sizeof *w);
    if (!w) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
        goto done;
    }
    st = qc_atomic_begin(&af, path);
    if (st != QIAO_OK) goto done;
    w->fd = af.fd;
    w->err = 0;
    w->len = 0;
    wput(w, header, header_len);
    for (size_t j = 0; j < n && !w->err; j++) {
        size_t i = ord[j].ix;
        put_tensor(w, &tensors[i], numel[i], nbytes[i]);
    }
    wflush(w);
    if (w->err) {
        st = qc_error(QIAO_ERR_IO, "%s: cannot write: %s", path, strerror(w->err));
        goto done;
    }
    st = qc_atomic_commit(&af);
done:
    qc_atomic_discard(&af);
    free(w);
    free(header);
    free(numel);
    free(nbytes);
    free(ord);
    free(ix);
    return st;
}

qiao_status qc_st_rewrite(const qc_st_file *src, const char *path, const qc_st_entry *repl, size_t n_repl,
                          const qc_st_kv *meta, size_t n_meta) {
    if (!src || !path || (!repl && n_repl) || (!meta && n_meta))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qc_st_rewrite: NULL argument");
    qc_st_entry *e = malloc((src->n + n_repl + 1) * sizeof *e);
    qc_st_kv *kv = malloc((src->n_meta + n_meta + 1) * sizeof *kv);
    if (!e || !kv) {
        free(e), free(kv);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    size_t n = 0, nm = 0;
    for (size_t i = 0; i < src->n; i++) {
        const qc_st_tensor *t = &src->t[i];
        bool replaced = false;
        for (size_t j = 0; j < n_repl && !replaced; j++) replaced = repl[j].name && !strcmp(repl[j].name, t->name);
        if (replaced) continue;
        e[n] = (qc_st_entry){.name = t->name, .dtype = t->dtype, .ndim = t->ndim, .data = t->data};
        memcpy(e[n].shape, t->shape, sizeof e[n].shape);
        n++;
    }
    for (size_t j = 0; j < n_repl; j++) e[n++] = repl[j];
    for (size_t i = 0; i < src->n_meta; i++) {
        bool set = false;
        for (size_t j = 0; j < n_meta && !set; j++) set = meta[j].key && !strcmp(meta[j].key, src->meta_keys[i]);
        if (!set) kv[nm++] = (qc_st_kv){src->meta_keys[i], src->meta_vals[i]};
    }
    for (size_t j = 0; j < n_meta; j++)
        if (meta[j].value) kv[nm++] = meta[j];
    qiao_status st = qc_st_write(path, e, n, kv, nm);
    free(e), free(kv);
    return st;
}

void qc_st_table_entries(const qc_table *tab, const float *arena, qc_st_entry *out) {
    for (size_t i = 0; i < tab->n; i++) {
        const qc_tensor_desc *d = &tab->t[i];
        qc_st_entry *e = &out[i];
        memset(e, 0, sizeof *e);
        e->name = d->name;
        e->dtype = d->storage;
        e->ndim = d->ndim;
        for (int k = 0; k < d->ndim; k++) e->shape[k] = d->shape[k];
        e->data = arena + d->offset;
        e->from_f32 = true;
    }
}

qiao_status qc_st_write_table(const char *path, const qc_table *tab, const float *arena,
                              const qc_st_kv *meta, size_t n_meta) {
    if (!path || !tab || (!arena && tab->n > 0))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qc_st_write_table: NULL argument");
    qc_st_entry *e = calloc(tab->n ? tab->n : 1, sizeof *e);
    if (!e) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    qc_st_table_entries(tab, arena, e);
    qiao_status st = qc_st_write(path, e, tab->n, meta, n_meta);
    free(e);
    return st;
}
