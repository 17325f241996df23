/* The safetensors reader and writer: round trips, atomic writes, and hostile
 * files (truncated, overlapping, lying offsets, bad headers, random bytes),
 * which must all fail with a message naming the file and never crash. The
 * random cases borrow exact-size buffers, so an out-of-bounds read shows up
 * under AddressSanitizer. */
#define _GNU_SOURCE

#include <dirent.h>
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#include "core/safetensors.h"

/* ---- helpers -------------------------------------------------------------- */

typedef struct tmpdir {
    char path[64];
} tmpdir;

static void tmpdir_make(tmpdir *d) {
    strcpy(d->path, "/tmp/qiao-st-XXXXXX");
    assert_non_null(mkdtemp(d->path));
}

static char *join(const tmpdir *d, const char *name) {
    size_t n = strlen(d->path) + strlen(name) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", d->path, name);
    return p;
}

/* Number of entries in the directory other than . and .. */
static int dir_count(const char *path) {
    DIR *dir = opendir(path);
    assert_non_null(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(dir);
    return n;
}

static bool dir_has_tmp(const char *path) {
    DIR *dir = opendir(path);
    assert_non_null(dir);
    bool found = false;
    struct dirent *e;
    while ((e = readdir(dir)))
        if (strstr(e->d_name, ".tmp.") || strstr(e->d_name, ".part.")) found = true;
    closedir(dir);
    return found;
}

/* Removes the files (and empty subdirectories) of a test directory. */
static void tmpdir_remove(tmpdir *d) {
    DIR *dir = opendir(d->path);
    if (dir) {
        struct dirent *e;
        while ((e = readdir(dir))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char *p = join(d, e->d_name);
            if (unlink(p) != 0) rmdir(p);
            free(p);
        }
        closedir(dir);
    }
    assert_int_equal(rmdir(d->path), 0);
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len) assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* A small model table: the shapes exercise matrices, vectors, a scalar and
 * an empty tensor. The last tensor is non-empty, so any truncation of the
 * written file cuts into its data. */
static void make_table(qc_table *tab, qiao_dtype storage) {
    qc_table_init_empty(tab);
    const int64_t s_embed[] = {7, 5}, s_empty[] = {0, 3}, s_w[] = {5, 5}, s_b[] = {5};
    assert_int_equal(qc_table_add(tab, "embed.weight", 2, s_embed, QC_INIT_NORMAL, 1.0f, 0, QC_NO_FIELD),
                     QIAO_OK);
    assert_int_equal(qc_table_add(tab, "empty", 2, s_empty, QC_INIT_ZEROS, 0.0f, 0, QC_NO_FIELD),
                     QIAO_OK);
    assert_int_equal(qc_table_add(tab, "scale", 0, NULL, QC_INIT_CONST, 0.125f, 0, QC_NO_FIELD), QIAO_OK);
    assert_int_equal(qc_table_add(tab, "blk.0.b", 1, s_b, QC_INIT_UNIFORM, 0.5f, 0, QC_NO_FIELD), QIAO_OK);
    assert_int_equal(qc_table_add(tab, "blk.0.w", 2, s_w, QC_INIT_NORMAL, 0.02f, 0, QC_NO_FIELD), QIAO_OK);
    for (size_t i = 0; i < tab->n; i++) tab->t[i].storage = storage;
}

static const qc_st_kv test_meta[] = {
    {"qiao.config", "{\"layers\":2,\"dim\":5}"},
    {"format", "pt"},
    {"note", "quotes \" backslash \\ newline \n tab \t unicode \xe6\xa1\xa5"},
    {"empty", ""},
};
#define N_TEST_META (sizeof test_meta / sizeof test_meta[0])

/* Writes the test table in `storage` to dir/name; returns the path. */
static char *write_model(const tmpdir *d, const char *name, qiao_dtype storage, qc_table *tab,
                         qc_arena *arena, uint64_t seed) {
    make_table(tab, storage);
    assert_int_equal(qc_arena_alloc(arena, tab->total), QIAO_OK);
    qc_table_init(tab, arena->base, seed);
    char *path = join(d, name);
    qiao_status st = qc_st_write_table(path, tab, arena->base, test_meta, N_TEST_META);
    if (st != QIAO_OK) fail_msg("write: %s", qiao_last_error());
    return path;
}

/* A file image from a header text and `data_len` bytes of data (0x5A). */
static unsigned char *image(const char *json, size_t data_len, size_t *len) {
    size_t n = strlen(json);
    *len = 8 + n + data_len;
    unsigned char *b = malloc(*len ? *len : 1);
    assert_non_null(b);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(b + 8, json, n);
    memset(b + 8 + n, 0x5A, data_len);
    return b;
}

/* Opens an image from memory and expects `want` with a message containing
 * the file name and each of the given fragments (NULL-terminated list). */
static void expect_fail_image(const unsigned char *b, size_t len, qiao_status want, ...) {
    qc_st_file *f = (qc_st_file *)1;
    qiao_status st = qc_st_open_memory(b, len, "bad.safetensors", true, &f);
    if (st != want)
        fail_msg("expected status %s, got %s (%s)", qiao_status_str(want), qiao_status_str(st),
                 qiao_last_error());
    assert_null(f);
    const char *msg = qiao_last_error();
    if (!strstr(msg, "bad.safetensors")) fail_msg("message does not name the file: %s", msg);
    va_list ap;
    va_start(ap, want);
    const char *frag;
    while ((frag = va_arg(ap, const char *)))
        if (!strstr(msg, frag)) fail_msg("message lacks '%s': %s", frag, msg);
    va_end(ap);
}

static void expect_fail(const char *json, size_t data_len, qiao_status want, const char *frag1,
                        const char *frag2) {
    size_t len;
    unsigned char *b = image(json, data_len, &len);
    expect_fail_image(b, len, want, frag1, frag2, (const char *)NULL);
    free(b);
}

static void expect_ok(const char *json, size_t data_len, size_t n_tensors) {
    size_t len;
    unsigned char *b = image(json, data_len, &len);
    qc_st_file *f = NULL;
    qiao_status st = qc_st_open_memory(b, len, "ok.safetensors", false, &f);
    if (st != QIAO_OK) fail_msg("expected success for %s: %s", json, qiao_last_error());
    assert_int_equal(qc_st_count(f), n_tensors);
    qc_st_close(f);
    free(b);
}

/* ---- round trips ---------------------------------------------------------- */

static void roundtrip_f32(void **state) {
    (void)state;
    tmpdir d;
    tmpdir_make(&d);
    qc_table tab;
    qc_arena arena;
    char *path = write_model(&d, "m.safetensors", QIAO_DTYPE_F32, &tab, &arena, 42);

    /* The header is padded so data starts 8-byte aligned. */
    size_t len;
    unsigned char *raw = read_file(path, &len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | raw[i];
    assert_int_equal(hlen % 8, 0);
    assert_int_equal(raw[8], '{');
    free(raw);

    qc_st_file *f = NULL;
    assert_int_equal(qc_st_open(path, &f), QIAO_OK);
    assert_string_equal(qc_st_name(f), path);
    assert_int_equal(qc_st_count(f), tab.n);
    for (size_t i = 0; i < tab.n; i++) {
        const qc_tensor_desc *dsc = &tab.t[i];
        const qc_st_tensor *t = qc_st_find(f, dsc->name);
        assert_non_null(t);
        assert_string_equal(t->name, dsc->name);
        assert_int_equal(t->dtype, QIAO_DTYPE_F32);
        assert_int_equal(t->ndim, dsc->ndim);
        for (int k = 0; k < dsc->ndim; k++) assert_int_equal(t->shape[k], dsc->shape[k]);
        assert_int_equal(t->numel, dsc->numel);
        assert_int_equal(t->nbytes, (size_t)dsc->numel * 4);
        assert_int_equal((uintptr_t)t->data % 4, 0);
        if (t->nbytes) assert_memory_equal(t->data, arena.base + dsc->offset, t->nbytes);
    }
    /* File order is ascending offset and contiguous. */
    size_t end = 0;
    for (size_t i = 0; i < qc_st_count(f); i++) {
        const qc_st_tensor *t = qc_st_at(f, i);
        assert_int_equal(t->begin, end);
        end = t->begin + t->nbytes;
    }
    assert_null(qc_st_at(f, qc_st_count(f)));
    assert_null(qc_st_find(f, "nope"));
    assert_null(qc_st_find(f, ""));

    /* Metadata comes back equal, keys sorted. */
    assert_int_equal(qc_st_metadata_count(f), N_TEST_META);
    for (size_t i = 0; i < N_TEST_META; i++) {
        const char *v = qc_st_metadata_get(f, test_meta[i].key);
        assert_non_null(v);
        assert_string_equal(v, test_meta[i].value);
    }
    for (size_t i = 1; i < N_TEST_META; i++)
        assert_true(strcmp(qc_st_metadata_key(f, i - 1), qc_st_metadata_key(f, i)) < 0);
    assert_null(qc_st_metadata_key(f, N_TEST_META));
    assert_null(qc_st_metadata_get(f, "absent"));
    assert_int_equal(qc_st_param_count(f), 7 * 5 + 0 + 1 + 5 + 25);

    /* Loading into a fresh arena reproduces every bit. */
    qc_arena back;
    assert_int_equal(qc_arena_alloc(&back, tab.total), QIAO_OK);
    assert_int_equal(qc_st_load_table(f, &tab, back.base), QIAO_OK);
    assert_memory_equal(back.base, arena.base, tab.total * sizeof(float));

    /* The same bytes opened from memory give the same answers. */
    raw = read_file(path, &len);
    qc_st_file *g = NULL;
    assert_int_equal(qc_st_open_memory(raw, len, NULL, true, &g), QIAO_OK);
    free(raw); /* copied */
    assert_string_equal(qc_st_name(g), "<memory>");
    assert_int_equal(qc_st_count(g), qc_st_count(f));
    for (size_t i = 0; i < qc_st_count(f); i++) {
        assert_string_equal(qc_st_at(g, i)->name, qc_st_at(f, i)->name);
        assert_memory_equal(qc_st_at(g, i)->data, qc_st_at(f, i)->data, qc_st_at(f, i)->nbytes);
    }
    qc_st_close(g);

    qc_st_close(f);
    qc_st_close(NULL);
    qc_arena_free(&back);
    qc_arena_free(&arena);
    qc_table_free(&tab);
    free(path);
    tmpdir_remove(&d);
}

static void roundtrip_half(void **state) {
    (void)state;
    const qiao_dtype kinds[] = {QIAO_DTYPE_F16, QIAO_DTYPE_BF16};
    for (int k = 0; k < 2; k++) {
        tmpdir d;
        tmpdir_make(&d);
        qc_table tab;
        qc_arena arena;
        char *path = write_model(&d, "h.safetensors", kinds[k], &tab, &arena, 7 + (uint64_t)k);
        qc_st_file *f = NULL;
        assert_int_equal(qc_st_open(path, &f), QIAO_OK);
        qc_arena back;
        assert_int_equal(qc_arena_alloc(&back, tab.total), QIAO_OK);
        assert_int_equal(qc_st_load_table(f, &tab, back.base), QIAO_OK);
        /* Half precision: 11 significant bits (F16) or 8 (BF16). */
        double rel = kinds[k] == QIAO_DTYPE_F16 ? 1.0 / 2048 : 1.0 / 256;
        for (size_t i = 0; i < tab.n; i++) {
            const qc_tensor_desc *dsc = &tab.t[i];
            const qc_st_tensor *t = qc_st_find(f, dsc->name);
            assert_int_equal(t->dtype, kinds[k]);
            assert_int_equal(t->nbytes, (size_t)dsc->numel * 2);
            for (int64_t j = 0; j < dsc->numel; j++) {
                float x = arena.base[dsc->offset + (size_t)j];
                float y = back.base[dsc->offset + (size_t)j];
                /* Exactly what the library's rounding gives... */
                float want = kinds[k] == QIAO_DTYPE_F16 ? qc_f16_to_f32(qc_f32_to_f16(x))
                                                        : qc_bf16_to_f32(qc_f32_to_bf16(x));
                assert_true(memcmp(&want, &y, sizeof y) == 0);
                /* ...and within the format's half-ulp (f16 subnormals: 2^-25). */
                double err = fabs((double)x - (double)y);
                if (err > fmax(fabs((double)x) * rel, 3.0e-8))
                    fail_msg("%s[%lld]: %g -> %g", dsc->name, (long long)j, (double)x, (double)y);
            }
        }
        assert_int_equal(qc_st_param_count(f), 7 * 5 + 0 + 1 + 5 + 25);
        qc_st_close(f);
        qc_arena_free(&back);
        qc_arena_free(&arena);
        qc_table_free(&tab);
        free(path);
        tmpdir_remove(&d);
    }
}

/* Non-table tensors through the low-level writer: every dtype, element-size
 * alignment, exact bytes. */
static void raw_entries(void **state) {
    (void)state;
    tmpdir d;
    tmpdir_make(&d);
    char *path = join(&d, "raw.safetensors");
    uint8_t bytes[5] = {1, 2, 3, 250, 255};
    int8_t i8[3] = {-128, 0, 127};
    uint16_t f16[2] = {0x3C00, 0xC000};
    int32_t i32[4] = {-1, 0, 1, INT32_MAX};
    int64_t i64[2] = {INT64_MIN, 42};
    double f64[3] = {1.0 / 3.0, -2.5, 1e300};
    float from[3] = {0.5f, -1.25f, 3.0e38f};
    qc_st_entry e[] = {
        {.name = "tok.bytes", .dtype = QIAO_DTYPE_U8, .ndim = 1, .shape = {5}, .data = bytes},
        {.name = "i8", .dtype = QIAO_DTYPE_I8, .ndim = 1, .shape = {3}, .data = i8},
        {.name = "f16", .dtype = QIAO_DTYPE_F16, .ndim = 2, .shape = {1, 2}, .data = f16},
        {.name = "ids", .dtype = QIAO_DTYPE_I32, .ndim = 2, .shape = {2, 2}, .data = i32},
        {.name = "big", .dtype = QIAO_DTYPE_I64, .ndim = 1, .shape = {2}, .data = i64},
        {.name = "f64", .dtype = QIAO_DTYPE_F64, .ndim = 1, .shape = {3}, .data = f64},
        {.name = "f64.from32", .dtype = QIAO_DTYPE_F64, .ndim = 1, .shape = {3}, .data = from,
         .from_f32 = true},
        {.name = "none", .dtype = QIAO_DTYPE_I32, .ndim = 1, .shape = {0}, .data = NULL},
    };
    size_t n = sizeof e / sizeof e[0];
    assert_int_equal(qc_st_write(path, e, n, NULL, 0), QIAO_OK);
    qc_st_file *f = NULL;
    assert_int_equal(qc_st_open(path, &f), QIAO_OK);
    assert_int_equal(qc_st_count(f), n);
    assert_int_equal(qc_st_metadata_count(f), 0);
    for (size_t i = 0; i < n; i++) {
        const qc_st_tensor *t = qc_st_find(f, e[i].name);
        assert_non_null(t);
        assert_int_equal(t->dtype, e[i].dtype);
        assert_int_equal((uintptr_t)t->data % qc_st_dtype_size(t->dtype), 0);
        if (!e[i].from_f32 && t->nbytes) assert_memory_equal(t->data, e[i].data, t->nbytes);
    }
    const double *back = qc_st_find(f, "f64.from32")->data;
    for (int i = 0; i < 3; i++) assert_true(back[i] == (double)from[i]);
    /* Only float tensors count as parameters. */
    assert_int_equal(qc_st_param_count(f), 2 + 3 + 3);
    /* Larger elements come first in the data. */
    for (size_t i = 1; i < n; i++)
        assert_true(qc_st_dtype_size(qc_st_at(f, i - 1)->dtype) >= qc_st_dtype_size(qc_st_at(f, i)->dtype) ||
                    qc_st_at(f, i)->nbytes == 0 || qc_st_at(f, i - 1)->nbytes == 0);
    qc_st_close(f);

    /* Bad entries are refused before anything touches the disk. */
    qc_st_entry dup[2] = {e[0], e[0]};
    assert_int_equal(qc_st_write(path, dup, 2, NULL, 0), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "tok.bytes"));
    qc_st_entry bad = e[0];
    bad.name = "__metadata__";
    assert_int_equal(qc_st_write(path, &bad, 1, NULL, 0), QIAO_ERR_INVALID_ARGUMENT);
    bad = e[0];
    bad.name = "";
    assert_int_equal(qc_st_write(path, &bad, 1, NULL, 0), QIAO_ERR_INVALID_ARGUMENT);
    bad = e[0];
    bad.name = "bad\xff";
    assert_int_equal(qc_st_write(path, &bad, 1, NULL, 0), QIAO_ERR_INVALID_ARGUMENT);
    bad = e[0];
    bad.data = NULL;
    assert_int_equal(qc_st_write(path, &bad, 1, NULL, 0), QIAO_ERR_INVALID_ARGUMENT);
    bad = e[0];
    bad.from_f32 = true; /* U8 cannot hold converted floats */
    assert_int_equal(qc_st_write(path, &bad, 1, NULL, 0), QIAO_ERR_INVALID_ARGUMENT);
    bad = e[0];
    bad.shape[0] = -1;
    assert_int_equal(qc_st_write(path, &bad, 1, NULL, 0), QIAO_ERR_INVALID_ARGUMENT);
    bad = e[0];
    bad.ndim = QC_MAX_DIMS + 1;
    assert_int_equal(qc_st_write(path, &bad, 1, NULL, 0), QIAO_ERR_INVALID_ARGUMENT);
    bad = e[0];
    bad.dtype = (qiao_dtype)99;
    assert_int_equal(qc_st_write(path, &bad, 1, NULL, 0), QIAO_ERR_INVALID_ARGUMENT);
    const qc_st_kv dupmeta[] = {{"a", "1"}, {"a", "2"}};
    assert_int_equal(qc_st_write(path, e, 1, dupmeta, 2), QIAO_ERR_INVALID_ARGUMENT);
    const qc_st_kv nullmeta[] = {{"a", NULL}};
    assert_int_equal(qc_st_write(path, e, 1, nullmeta, 1), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qc_st_write(NULL, e, 1, NULL, 0), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qc_st_write("", e, 1, NULL, 0), QIAO_ERR_INVALID_ARGUMENT);
    /* The earlier good file is untouched and no temp file was made. */
    assert_int_equal(dir_count(d.path), 1);
    assert_int_equal(qc_st_open(path, &f), QIAO_OK);
    assert_int_equal(qc_st_count(f), n);
    qc_st_close(f);

    /* An empty model is a valid file. */
    assert_int_equal(qc_st_write(path, NULL, 0, NULL, 0), QIAO_OK);
    assert_int_equal(qc_st_open(path, &f), QIAO_OK);
    assert_int_equal(qc_st_count(f), 0);
    assert_int_equal(qc_st_param_count(f), 0);
    qc_st_close(f);
    free(path);
    tmpdir_remove(&d);
}

/* ---- atomic writes ---------------------------------------------------------- */

static void atomic_write(void **state) {
    (void)state;
    tmpdir d;
    tmpdir_make(&d);
    qc_table tab;
    qc_arena arena;
    char *path = write_model(&d, "m.safetensors", QIAO_DTYPE_F32, &tab, &arena, 1);
    size_t old_len;
    unsigned char *old = read_file(path, &old_len);

    /* A directory that does not exist: clean I/O error naming the path. */
    char *nodir = join(&d, "no/such/dir/m.safetensors");
    assert_int_equal(qc_st_write_table(nodir, &tab, arena.base, NULL, 0), QIAO_ERR_IO);
    assert_non_null(strstr(qiao_last_error(), nodir));
    free(nodir);
    /* A read-only directory (only meaningful when not running as root). */
    if (geteuid() != 0) {
        char *ro = join(&d, "ro");
        assert_int_equal(mkdir(ro, 0500), 0);
        char *target = join(&d, "ro/m.safetensors");
        assert_int_equal(qc_st_write_table(target, &tab, arena.base, NULL, 0), QIAO_ERR_IO);
        assert_int_equal(dir_count(ro), 0);
        free(target);
        rmdir(ro);
        free(ro);
    }
    /* The target is a directory: the rename fails, the temp file goes. */
    char *adir = join(&d, "adir");
    assert_int_equal(mkdir(adir, 0700), 0);
    assert_int_equal(qc_st_write_table(adir, &tab, arena.base, NULL, 0), QIAO_ERR_IO);
    assert_non_null(strstr(qiao_last_error(), adir));
    assert_false(dir_has_tmp(d.path));
    rmdir(adir);
    free(adir);

    /* A write that fails half-way (file size limit): the old target stays
     * byte-identical and no temp file is left. */
    qc_table big;
    qc_table_init_empty(&big);
    const int64_t shape[] = {256, 256};
    assert_int_equal(qc_table_add(&big, "w", 2, shape, QC_INIT_NORMAL, 1.0f, 0, QC_NO_FIELD), QIAO_OK);
    qc_arena barena;
    assert_int_equal(qc_arena_alloc(&barena, big.total), QIAO_OK);
    qc_table_init(&big, barena.base, 3);
    struct rlimit saved, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = saved;
    lim.rlim_cur = 4096;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    qiao_status st = qc_st_write_table(path, &big, barena.base, NULL, 0);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, old_handler);
    assert_int_equal(st, QIAO_ERR_IO);
    assert_non_null(strstr(qiao_last_error(), path));
    size_t now_len;
    unsigned char *now = read_file(path, &now_len);
    assert_int_equal(now_len, old_len);
    assert_memory_equal(now, old, old_len);
    free(now);
    assert_false(dir_has_tmp(d.path));
    assert_int_equal(dir_count(d.path), 1);

    /* A successful overwrite replaces the content and keeps the mode. */
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(qc_st_write_table(path, &big, barena.base, NULL, 0), QIAO_OK);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0640);
    qc_st_file *f = NULL;
    assert_int_equal(qc_st_open(path, &f), QIAO_OK);
    assert_int_equal(qc_st_count(f), 1);
    assert_memory_equal(qc_st_find(f, "w")->data, barena.base, 256 * 256 * 4);
    qc_st_close(f);
    assert_int_equal(dir_count(d.path), 1);

    /* A new file gets 0644 rather than mkstemp's 0600. */
    char *fresh = join(&d, "fresh.safetensors");
    assert_int_equal(qc_st_write_table(fresh, &tab, arena.base, NULL, 0), QIAO_OK);
    assert_int_equal(stat(fresh, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0644);
    free(fresh);

    free(old);
    qc_arena_free(&barena);
    qc_table_free(&big);
    qc_arena_free(&arena);
    qc_table_free(&tab);
    free(path);
    tmpdir_remove(&d);
}

/* Sets the times of the `.part.` files in `path` a day back. */
static void age_parts(const char *path) {
    DIR *dir = opendir(path);
    assert_non_null(dir);
    struct dirent *e;
    struct timespec old[2] = {{.tv_sec = time(NULL) - 86400}, {.tv_sec = time(NULL) - 86400}};
    while ((e = readdir(dir)))
        if (strstr(e->d_name, ".part.")) assert_int_equal(utimensat(dirfd(dir), e->d_name, old, 0), 0);
    closedir(dir);
}

/* A writer killed part-way (issue 12: 14 kills during training left 3
 * checkpoint-sized temporaries that no later run removed). The data goes to
 * an unnamed file until it is complete, so SIGKILL leaves the old target
 * intact and, but for a kill in the instant between naming the finished file
 * and renaming it, nothing else; the next write of the same target removes
 * what such a kill leaves. */
static void killed_writer(void **state) {
    (void)state;
    tmpdir d;
    tmpdir_make(&d);
    qc_table tab;
    qc_arena arena;
    char *path = write_model(&d, "ckpt.safetensors", QIAO_DTYPE_F32, &tab, &arena, 1);
    size_t old_len;
    unsigned char *old = read_file(path, &old_len);
    qc_table big;
    qc_table_init_empty(&big);
    const int64_t shape[] = {2048, 2048}; /* 16 MiB: each write takes a while */
    assert_int_equal(qc_table_add(&big, "w", 2, shape, QC_INIT_NORMAL, 1.0f, 0, QC_NO_FIELD), QIAO_OK);
    qc_arena barena;
    assert_int_equal(qc_arena_alloc(&barena, big.total), QIAO_OK);
    qc_table_init(&big, barena.base, 3);
    char *other = join(&d, "other.safetensors");
    int left = 0;
    int probe = open(d.path, O_TMPFILE | O_WRONLY, 0600);
    const bool tmpfile_ok = probe >= 0;
    if (probe >= 0) close(probe);
    print_message("killed_writer: %s\n", tmpfile_ok ? "O_TMPFILE" : "no O_TMPFILE here: named .part. files");
    for (int round = 0; round < 6; round++) {
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            /* Writes forever to a second file, so the target itself stays
             * the old one whatever the moment of the kill. */
            for (;;)
                if (qc_st_write_table(other, &big, barena.base, NULL, 0) != QIAO_OK) _exit(3);
        }
        usleep(20000 + 37000 * (useconds_t)round);
        assert_int_equal(kill(pid, SIGKILL), 0);
        int ws;
        assert_int_equal(waitpid(pid, &ws, 0), pid);
        assert_true(WIFSIGNALED(ws));
        left += dir_has_tmp(d.path);
        /* Without O_TMPFILE the writer's `.part.` file is named from the
         * start and spared for 5 s (a live writer may not hold its lock
         * yet): age what the kill left, as the next run would find it. */
        if (!tmpfile_ok) age_parts(d.path);
        /* The next run writes the same file: nothing may remain after it. */
        assert_int_equal(qc_st_write_table(other, &tab, arena.base, NULL, 0), QIAO_OK);
        if (dir_has_tmp(d.path)) fail_msg("round %d: a temporary file outlived the next write", round);
    }
    print_message("killed_writer: %d of 6 kills left a named temporary before the next write\n", left);
    size_t now_len;
    unsigned char *now = read_file(path, &now_len);
    assert_int_equal(now_len, old_len);
    assert_memory_equal(now, old, old_len);
    free(now);
    free(old);
    free(other);
    qc_arena_free(&barena);
    qc_table_free(&big);
    qc_arena_free(&arena);
    qc_table_free(&tab);
    free(path);
    tmpdir_remove(&d);
}

/* What dead writers leave is removed by the next write of the same target;
 * what a live writer holds (its flock) is not, nor a `.part.` file younger
 * than the grace given to a writer between mkstemp() and flock(), nor
 * another target's temporaries. */
static void stale_temporaries_swept(void **state) {
    (void)state;
    tmpdir d;
    tmpdir_make(&d);
    qc_table tab;
    qc_arena arena;
    char *path = write_model(&d, "m.safetensors", QIAO_DTYPE_F32, &tab, &arena, 1);
    char *dead = join(&d, "m.safetensors.tmp.Ab12Cd");      /* named, lock free: removed */
    char *live = join(&d, "m.safetensors.tmp.Xy34Zw");      /* named, locked: kept */
    char *old_part = join(&d, "m.safetensors.part.Qq11Rr"); /* mkstemp's, old, free: removed */
    char *new_part = join(&d, "m.safetensors.part.Ss22Tt"); /* mkstemp's, fresh: kept */
    char *unrelated = join(&d, "n.safetensors.tmp.Ab12Cd");
    const char *all[5] = {dead, live, old_part, new_part, unrelated};
    for (int i = 0; i < 5; i++) write_bytes(all[i], "partial", 7);
    struct timespec old[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
    assert_int_equal(utimensat(AT_FDCWD, old_part, old, 0), 0);
    int lfd = open(live, O_RDONLY);
    assert_true(lfd >= 0);
    assert_int_equal(flock(lfd, LOCK_EX), 0);
    assert_int_equal(qc_st_write_table(path, &tab, arena.base, NULL, 0), QIAO_OK);
    struct stat sb;
    assert_int_equal(stat(dead, &sb), -1);
    assert_int_equal(stat(live, &sb), 0);
    assert_int_equal(stat(old_part, &sb), -1);
    assert_int_equal(stat(new_part, &sb), 0);
    assert_int_equal(stat(unrelated, &sb), 0);
    close(lfd);
    assert_int_equal(qc_atomic_sweep(path), 1); /* the lock is free now */
    assert_int_equal(stat(live, &sb), -1);
    for (int i = 0; i < 5; i++) free((char *)all[i]);
    qc_arena_free(&arena);
    qc_table_free(&tab);
    free(path);
    tmpdir_remove(&d);
}

/* ---- hostile files ------------------------------------------------------------ */

static void truncated(void **state) {
    (void)state;
    tmpdir d;
    tmpdir_make(&d);
    qc_table tab;
    qc_arena arena;
    char *path = write_model(&d, "full.safetensors", QIAO_DTYPE_F32, &tab, &arena, 5);
    size_t len;
    unsigned char *full = read_file(path, &len);
    char *cut = join(&d, "trunc.safetensors");
    for (size_t n = 0; n < len; n++) {
        /* From memory, with an exact-size buffer so over-reads are caught. */
        unsigned char *b = malloc(n ? n : 1);
        assert_non_null(b);
        memcpy(b, full, n);
        qc_st_file *f = NULL;
        qiao_status st = qc_st_open_memory(b, n, "trunc.safetensors", false, &f);
        if (st != QIAO_ERR_FORMAT) fail_msg("length %zu: %s (%s)", n, qiao_status_str(st), qiao_last_error());
        assert_null(f);
        assert_non_null(strstr(qiao_last_error(), "trunc.safetensors"));
        free(b);
        /* From disk, through mmap. */
        write_bytes(cut, full, n);
        st = qc_st_open(cut, &f);
        if (st != QIAO_ERR_FORMAT && st != QIAO_ERR_IO)
            fail_msg("file length %zu: %s (%s)", n, qiao_status_str(st), qiao_last_error());
        assert_non_null(strstr(qiao_last_error(), cut));
    }
    /* Cut inside the data: the message names the tensor whose data is gone. */
    write_bytes(cut, full, len - 1);
    qc_st_file *f = NULL;
    assert_int_equal(qc_st_open(cut, &f), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "'blk.0.w'"));
    assert_non_null(strstr(qiao_last_error(), "truncated"));
    /* The whole file still opens. */
    assert_int_equal(qc_st_open(path, &f), QIAO_OK);
    qc_st_close(f);
    /* Not a file at all. */
    char *missing = join(&d, "missing.safetensors");
    assert_int_equal(qc_st_open(missing, &f), QIAO_ERR_IO);
    assert_non_null(strstr(qiao_last_error(), missing));
    assert_int_equal(qc_st_open(d.path, &f), QIAO_ERR_IO);
    assert_non_null(strstr(qiao_last_error(), "not a regular file"));
    /* A FIFO with no writer: refused at once, not a hang. */
    char *fifo = join(&d, "fifo");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(qc_st_open(fifo, &f), QIAO_ERR_IO);
    assert_non_null(strstr(qiao_last_error(), "not a regular file"));
    free(fifo);
    assert_int_equal(qc_st_open(NULL, &f), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qc_st_open(path, NULL), QIAO_ERR_INVALID_ARGUMENT);
    free(missing);
    free(cut);
    free(full);
    qc_arena_free(&arena);
    qc_table_free(&tab);
    free(path);
    tmpdir_remove(&d);
}

static void overlapping(void **state) {
    (void)state;
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
                24, QIAO_ERR_FORMAT, "overlaps", "'a'");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
                16, QIAO_ERR_FORMAT, "overlaps", "[0, 16)");
    /* A small tensor wholly inside a big one, listed first. */
    expect_fail("{\"in\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[9,10]},"
                "\"big\":{\"dtype\":\"U8\",\"shape\":[32],\"data_offsets\":[0,32]}}",
                32, QIAO_ERR_FORMAT, "'in'", "'big'");
    /* A tensor overlapping one that is not its immediate predecessor. */
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[30],\"data_offsets\":[0,30]},"
                "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]},"
                "\"c\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[28,32]}}",
                32, QIAO_ERR_FORMAT, "overlaps", NULL);
    /* Touching is fine; empty tensors own no bytes; gaps are tolerated. */
    expect_ok("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"e\":{\"dtype\":\"F32\",\"shape\":[0,7],\"data_offsets\":[4,4]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
              "\"c\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[20,21]}}",
              24, 4);
}

static void lying_offsets(void **state) {
    (void)state;
    /* The message format the users see. */
    expect_fail("{\"blk.0.w\":{\"dtype\":\"F32\",\"shape\":[5,5],\"data_offsets\":[0,96]}}", 96,
                QIAO_ERR_FORMAT, "tensor 'blk.0.w': data_offsets [0, 96) but shape (5, 5) F32 needs 100 bytes",
                NULL);
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[5,5],\"data_offsets\":[0,100]}}", 99,
                QIAO_ERR_FORMAT, "'w'", "past the end");
    expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[200,200]}}", 100,
                QIAO_ERR_FORMAT, "'w'", "past the end");
    expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[16,8]}}", 16, QIAO_ERR_FORMAT,
                "'w'", "ends before");
    expect_fail("{\"w\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,4]}}", 16, QIAO_ERR_FORMAT,
                "'w'", "needs 6 bytes");
    expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[-4,0]}}", 16, QIAO_ERR_FORMAT,
                "'w'", "data_offsets");
    expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0.5,4.5]}}", 16,
                QIAO_ERR_FORMAT, "'w'", "data_offsets");
    expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4,8]}}", 16, QIAO_ERR_FORMAT,
                "'w'", "data_offsets");
    expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0]}}", 16, QIAO_ERR_FORMAT, "'w'",
                "data_offsets");
    expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":\"0,4\"}}", 16, QIAO_ERR_FORMAT,
                "'w'", "data_offsets");
    expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[\"0\",\"4\"]}}", 16,
                QIAO_ERR_FORMAT, "'w'", "data_offsets");
    expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[1e300,1e300]}}", 16,
                QIAO_ERR_FORMAT, "'w'", "data_offsets");
    expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[18446744073709551612,"
                "18446744073709551616]}}",
                16, QIAO_ERR_FORMAT, "'w'", "data_offsets");
    /* Shapes whose byte size overflows 64 bits must not wrap to a match. */
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 16,
                QIAO_ERR_FORMAT, "'w'", "overflows");
    expect_fail("{\"w\":{\"dtype\":\"I64\",\"shape\":[2147483648,2147483648],\"data_offsets\":[0,0]}}", 16,
                QIAO_ERR_FORMAT, "'w'", "overflows");
    expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[65536,65536,65536,65536,0],\"data_offsets\":[0,0]}}",
                16, QIAO_ERR_FORMAT, "'w'", "overflows");
}

static void bad_header(void **state) {
    (void)state;
    /* Too short for the length field; length past the end of the file. */
    const unsigned char seven[7] = {2, 0, 0, 0, 0, 0, 0};
    expect_fail_image(seven, 7, QIAO_ERR_FORMAT, "too short", (const char *)NULL);
    expect_fail_image(seven, 0, QIAO_ERR_FORMAT, "too short", (const char *)NULL);
    unsigned char huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
    expect_fail_image(huge, sizeof huge, QIAO_ERR_FORMAT, "header length", (const char *)NULL);
    unsigned char nine[10] = {9, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    expect_fail_image(nine, sizeof nine, QIAO_ERR_FORMAT, "exceeds", (const char *)NULL);
    unsigned char zero[8] = {0};
    expect_fail_image(zero, sizeof zero, QIAO_ERR_FORMAT, "header", (const char *)NULL);
    /* A header over the 100 MB limit inside a file that really is that big:
     * refused before parsing (calloc'ed pages are never touched). */
    size_t big = QC_ST_MAX_HEADER + 1;
    unsigned char *b = calloc(8 + big, 1);
    assert_non_null(b);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)big >> (8 * i));
    expect_fail_image(b, 8 + big, QIAO_ERR_TOO_LARGE, "limit", (const char *)NULL);
    free(b);

    expect_fail("{not json", 0, QIAO_ERR_FORMAT, "not valid JSON", NULL);
    expect_fail("", 0, QIAO_ERR_FORMAT, "header", NULL);
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, QIAO_ERR_FORMAT,
                "not valid JSON", NULL);
    expect_fail("[1, 2, 3]", 0, QIAO_ERR_FORMAT, "not an object", NULL);
    expect_fail("\"str\"", 0, QIAO_ERR_FORMAT, "not an object", NULL);
    expect_fail("{} x", 0, QIAO_ERR_FORMAT, "trailing", NULL);
    expect_fail("{}{}", 0, QIAO_ERR_FORMAT, "trailing", NULL);
    expect_fail("{\"a\":1}", 0, QIAO_ERR_FORMAT, "'a'", "not a JSON object");
    expect_fail("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, QIAO_ERR_FORMAT, "'a'", "dtype");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, QIAO_ERR_FORMAT, "'a'", "shape");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, QIAO_ERR_FORMAT, "'a'", "data_offsets");
    expect_fail("{\"a\":{\"dtype\":\"F8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 4, QIAO_ERR_FORMAT,
                "'a'", "dtype 'F8'");
    expect_fail("{\"a\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[0,1]}}", 4, QIAO_ERR_FORMAT,
                "'a'", "dtype");
    expect_fail("{\"a\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, QIAO_ERR_FORMAT, "'a'",
                "dtype");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1,2],\"data_offsets\":[0,4]}}", 4, QIAO_ERR_FORMAT,
                "'a'", "dimension 0");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,2.5],\"data_offsets\":[0,4]}}", 4, QIAO_ERR_FORMAT,
                "'a'", "dimension 1");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4, QIAO_ERR_FORMAT,
                "'a'", "dimension 0");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", 4, QIAO_ERR_FORMAT, "'a'",
                "shape");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
                QIAO_ERR_FORMAT, "'a'", "more than 8 dimensions");
    expect_ok("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, 1);
    expect_fail("{\"__metadata__\":{\"k\":1}}", 0, QIAO_ERR_FORMAT, "'k'", "not a string");
    expect_fail("{\"__metadata__\":{\"k\":null}}", 0, QIAO_ERR_FORMAT, "'k'", "not a string");
    expect_fail("{\"__metadata__\":{\"k\":{\"x\":\"y\"}}}", 0, QIAO_ERR_FORMAT, "'k'", "not a string");
    expect_fail("{\"__metadata__\":[\"k\"]}", 0, QIAO_ERR_FORMAT, "__metadata__", "not a JSON object");
    /* cJSON keeps duplicate keys, so they are seen and refused. */
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
                2, QIAO_ERR_FORMAT, "'a'", "twice");
    expect_fail("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, QIAO_ERR_FORMAT, "'k'", "twice");
    expect_fail("{\"__metadata__\":{},\"__metadata__\":{}}", 0, QIAO_ERR_FORMAT, "__metadata__", "twice");
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,1]}}", 4,
                QIAO_ERR_FORMAT, "'a'", "twice");
    /* Names: empty, too long, not UTF-8 (raw or escaped). */
    expect_fail("{\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, QIAO_ERR_FORMAT,
                "empty name", NULL);
    expect_fail("{\"a\xff\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, QIAO_ERR_FORMAT,
                "UTF-8", NULL);
    expect_fail("{\"a\xc0\xaf\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                QIAO_ERR_FORMAT, "UTF-8", NULL);
    expect_fail("{\"a\xed\xa0\x80\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                QIAO_ERR_FORMAT, "UTF-8", NULL);
    expect_fail("{\"a\\ud800\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                QIAO_ERR_FORMAT, "JSON", NULL);
    {
        char json[4096];
        int n = snprintf(json, sizeof json, "{\"");
        for (int i = 0; i < QC_ST_MAX_NAME + 1; i++) json[n++] = 'x';
        snprintf(json + n, sizeof json - (size_t)n,
                 "\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}");
        expect_fail(json, 1, QIAO_ERR_FORMAT, "name is 1025 bytes", NULL);
    }
    /* A NUL byte inside the header. */
    {
        size_t len;
        unsigned char *img = image("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, &len);
        img[8 + 3] = 0;
        expect_fail_image(img, len, QIAO_ERR_FORMAT, "NUL", (const char *)NULL);
        free(img);
    }
    /* Deep nesting stays within cJSON's nesting limit rather than the stack. */
    {
        char json[8192];
        size_t n = 0;
        for (int i = 0; i < 3000; i++) json[n++] = '[';
        json[n] = '\0';
        expect_fail(json, 0, QIAO_ERR_FORMAT, "JSON", NULL);
    }

    /* Valid variations: space padding, other whitespace, unknown fields,
     * non-ASCII names, escaped names, an empty object. */
    expect_ok("{}", 0, 0);
    expect_ok("{}        ", 0, 0);
    expect_ok(" \n{ \"__metadata__\" : { \"a\" : \"b\" } }\r\n\t ", 0, 0);
    expect_ok("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"extra\":[1,{}]}}", 1, 1);
    expect_ok("{\"\xe6\xa1\xa5.w\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1]}}", 1, 1);
    expect_ok("{\"a\\u00e9\\n\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, 1);
    expect_ok("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1.0]}}", 1, 1);
    expect_ok("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1e0]}}", 1, 1);
    expect_ok("{\"a\":{\"dtype\":\"U8\",\"shape\":[-0],\"data_offsets\":[0,0]}}", 1, 1);
}

/* Checks that everything an open file hands out is readable and consistent;
 * returns a checksum so the reads cannot be optimized away. */
static unsigned touch_all(const qc_st_file *f) {
    unsigned sum = 0;
    size_t n = qc_st_count(f);
    for (size_t i = 0; i < n; i++) {
        const qc_st_tensor *t = qc_st_at(f, i);
        const unsigned char *p = t->data;
        for (size_t j = 0; j < t->nbytes; j++) sum += p[j];
        assert_true(qc_st_find(f, t->name) == t);
        assert_true(t->ndim >= 0 && t->ndim <= QC_MAX_DIMS);
        assert_int_equal(t->nbytes, (size_t)t->numel * qc_st_dtype_size(t->dtype));
        sum += (unsigned)strlen(t->name);
    }
    for (size_t i = 0; i < qc_st_metadata_count(f); i++) {
        const char *k = qc_st_metadata_key(f, i);
        const char *v = qc_st_metadata_get(f, k);
        assert_non_null(v);
        sum += (unsigned)strlen(k) + (unsigned)strlen(v);
    }
    (void)qc_st_param_count(f);
    return sum;
}

static void random_bytes(void **state) {
    (void)state;
    tmpdir d;
    tmpdir_make(&d);
    qc_table tab;
    qc_arena arena;
    char *path = write_model(&d, "seed.safetensors", QIAO_DTYPE_BF16, &tab, &arena, 9);
    size_t base_len;
    unsigned char *base = read_file(path, &base_len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | base[i];

    static const char json_chars[] = "{}[]\":,0123456789-+.eE \\u_abF";
    qc_rng r;
    qc_rng_seed(&r, 0x5AFE7E45);
    int ok = 0, failed = 0;
    unsigned sink = 0;
    qc_arena back;
    assert_int_equal(qc_arena_alloc(&back, tab.total), QIAO_OK);
    for (int it = 0; it < 6000; it++) {
        size_t len = base_len;
        unsigned char *b = NULL;
        int kind = (int)qc_rng_below(&r, 5);
        if (kind == 0) {
            /* Pure noise, sometimes with a plausible length prefix. */
            len = (size_t)qc_rng_below(&r, 300);
            b = malloc(len ? len : 1);
            for (size_t j = 0; j < len; j++) b[j] = (unsigned char)qc_rng_u64(&r);
            if (len >= 8 && qc_rng_below(&r, 2)) {
                uint64_t n = qc_rng_below(&r, len - 7);
                for (int i = 0; i < 8; i++) b[i] = (unsigned char)(n >> (8 * i));
            }
        } else {
            if (kind == 4) len = (size_t)qc_rng_below(&r, base_len + 1); /* truncate too */
            b = malloc(len ? len : 1);
            memcpy(b, base, len);
            int flips = 1 + (int)qc_rng_below(&r, 8);
            for (int k = 0; k < flips && len > 0; k++) {
                size_t at;
                if (kind == 1) at = (size_t)qc_rng_below(&r, len);           /* anywhere */
                else at = 8 + (size_t)qc_rng_below(&r, hlen) % (len > 8 ? len - 8 : 1); /* header */
                if (at >= len) continue;
                if (kind == 2) b[at] = (unsigned char)qc_rng_u64(&r);
                else b[at] = (unsigned char)json_chars[qc_rng_below(&r, sizeof json_chars - 1)];
            }
        }
        /* Borrowed, exact-size buffer: any read past it is an ASan error. */
        qc_st_file *f = NULL;
        qiao_status st = qc_st_open_memory(b, len, "fuzz.safetensors", false, &f);
        if (st == QIAO_OK) {
            ok++;
            sink += touch_all(f);
            /* Loading either works or names the problem; never crashes. */
            if (qc_st_load_table(f, &tab, back.base) != QIAO_OK)
                assert_non_null(strstr(qiao_last_error(), "fuzz.safetensors"));
            qc_st_close(f);
        } else {
            failed++;
            assert_null(f);
            assert_true(st == QIAO_ERR_FORMAT || st == QIAO_ERR_TOO_LARGE);
            if (!strstr(qiao_last_error(), "fuzz.safetensors"))
                fail_msg("message without the file name: %s", qiao_last_error());
        }
        free(b);
    }
    printf("random_bytes: %d opened, %d refused (checksum %u)\n", ok, failed, sink);
    /* Both outcomes must occur, or the mutations test nothing. */
    assert_true(ok > 100);
    assert_true(failed > 1000);
    qc_arena_free(&back);
    free(base);
    qc_arena_free(&arena);
    qc_table_free(&tab);
    free(path);
    tmpdir_remove(&d);
}

static void missing_tensor(void **state) {
    (void)state;
    tmpdir d;
    tmpdir_make(&d);
    qc_table tab;
    qc_arena arena;
    char *path = write_model(&d, "m.safetensors", QIAO_DTYPE_F16, &tab, &arena, 11);
    qc_st_file *f = NULL;
    assert_int_equal(qc_st_open(path, &f), QIAO_OK);

    /* A model with one more tensor than the file. */
    qc_table more;
    make_table(&more, QIAO_DTYPE_F32);
    const int64_t s[] = {3};
    assert_int_equal(qc_table_add(&more, "head.bias", 1, s, QC_INIT_ZEROS, 0, 0, QC_NO_FIELD), QIAO_OK);
    qc_arena a2;
    assert_int_equal(qc_arena_alloc(&a2, more.total), QIAO_OK);
    assert_int_equal(qc_st_load_table(f, &more, a2.base), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), path));
    assert_non_null(strstr(qiao_last_error(), "'head.bias'"));
    assert_non_null(strstr(qiao_last_error(), "missing"));
    qc_arena_free(&a2);
    qc_table_free(&more);

    /* Same name, another shape. */
    qc_table other;
    qc_table_init_empty(&other);
    const int64_t s54[] = {5, 4};
    assert_int_equal(qc_table_add(&other, "blk.0.w", 2, s54, QC_INIT_ZEROS, 0, 0, QC_NO_FIELD), QIAO_OK);
    assert_int_equal(qc_arena_alloc(&a2, other.total), QIAO_OK);
    assert_int_equal(qc_st_load_table(f, &other, a2.base), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "'blk.0.w'"));
    assert_non_null(strstr(qiao_last_error(), "(5, 5)"));
    assert_non_null(strstr(qiao_last_error(), "(5, 4)"));
    qc_arena_free(&a2);
    qc_table_free(&other);

    /* Same shape, another rank. */
    qc_table_init_empty(&other);
    const int64_t s25[] = {25};
    assert_int_equal(qc_table_add(&other, "blk.0.w", 1, s25, QC_INIT_ZEROS, 0, 0, QC_NO_FIELD), QIAO_OK);
    assert_int_equal(qc_arena_alloc(&a2, other.total), QIAO_OK);
    assert_int_equal(qc_st_load_table(f, &other, a2.base), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "'blk.0.w'"));
    qc_arena_free(&a2);
    qc_table_free(&other);

    /* A subset of the file loads (extra tensors in the file are ignored). */
    qc_table_init_empty(&other);
    const int64_t s55[] = {5, 5};
    assert_int_equal(qc_table_add(&other, "blk.0.w", 2, s55, QC_INIT_ZEROS, 0, 0, QC_NO_FIELD), QIAO_OK);
    assert_int_equal(qc_arena_alloc(&a2, other.total), QIAO_OK);
    assert_int_equal(qc_st_load_table(f, &other, a2.base), QIAO_OK);
    const qc_tensor_desc *w = &tab.t[qc_table_find(&tab, "blk.0.w")];
    for (int i = 0; i < 25; i++)
        assert_true(a2.base[i] == qc_f16_to_f32(qc_f32_to_f16(arena.base[w->offset + (size_t)i])));
    qc_arena_free(&a2);
    qc_table_free(&other);
    qc_st_close(f);

    /* An integer tensor cannot feed a float parameter. */
    int32_t ids[4] = {1, 2, 3, 4};
    qc_st_entry e = {.name = "ids", .dtype = QIAO_DTYPE_I32, .ndim = 1, .shape = {4}, .data = ids};
    assert_int_equal(qc_st_write(path, &e, 1, NULL, 0), QIAO_OK);
    assert_int_equal(qc_st_open(path, &f), QIAO_OK);
    qc_table_init_empty(&other);
    const int64_t s4[] = {4};
    assert_int_equal(qc_table_add(&other, "ids", 1, s4, QC_INIT_ZEROS, 0, 0, QC_NO_FIELD), QIAO_OK);
    assert_int_equal(qc_arena_alloc(&a2, other.total), QIAO_OK);
    assert_int_equal(qc_st_load_table(f, &other, a2.base), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "'ids'"));
    assert_non_null(strstr(qiao_last_error(), "I32"));
    assert_int_equal(qc_st_load_table(NULL, &other, a2.base), QIAO_ERR_INVALID_ARGUMENT);
    qc_arena_free(&a2);
    qc_table_free(&other);
    qc_st_close(f);

    qc_arena_free(&arena);
    qc_table_free(&tab);
    free(path);
    tmpdir_remove(&d);
}

/* ---- the public API ----------------------------------------------------------- */

static void public_api(void **state) {
    (void)state;
    tmpdir d;
    tmpdir_make(&d);
    qc_table tab;
    qc_arena arena;
    char *path = write_model(&d, "pub.safetensors", QIAO_DTYPE_BF16, &tab, &arena, 13);

    qiao_model_file *f = NULL;
    assert_int_equal(qiao_model_file_open(path, &f), QIAO_OK);
    assert_non_null(f);
    assert_int_equal(qiao_model_file_tensor_count(f), tab.n);
    size_t prev_end = 0;
    for (size_t i = 0; i < qiao_model_file_tensor_count(f); i++) {
        qiao_tensor_info ti;
        assert_int_equal(qiao_model_file_tensor(f, i, &ti), QIAO_OK);
        assert_int_equal(ti.dtype, QIAO_DTYPE_BF16);
        const qc_tensor_desc *dsc = &tab.t[qc_table_find(&tab, ti.name)];
        assert_int_equal(ti.ndim, dsc->ndim);
        for (int k = 0; k < ti.ndim; k++) assert_int_equal(ti.shape[k], dsc->shape[k]);
        assert_int_equal(ti.nbytes, (size_t)dsc->numel * 2);
        /* File order: ascending data pointers. */
        uintptr_t at = (uintptr_t)ti.data;
        if (i > 0) assert_true(at >= prev_end);
        prev_end = (size_t)at + ti.nbytes;
        qiao_tensor_info byname;
        assert_int_equal(qiao_model_file_find(f, ti.name, &byname), QIAO_OK);
        assert_true(byname.data == ti.data);
    }
    qiao_tensor_info ti;
    assert_int_equal(qiao_model_file_find(f, "blk.0.w", &ti), QIAO_OK);
    assert_int_equal(ti.ndim, 2);
    assert_int_equal(ti.shape[0], 5);
    assert_int_equal(ti.shape[1], 5);
    assert_int_equal(qiao_model_file_find(f, "nope", &ti), QIAO_ERR_NOT_FOUND);
    assert_non_null(strstr(qiao_last_error(), "'nope'"));
    assert_non_null(strstr(qiao_last_error(), path));
    assert_int_equal(qiao_model_file_tensor(f, 999, &ti), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_model_file_param_count(f), 7 * 5 + 0 + 1 + 5 + 25);

    assert_int_equal(qiao_model_file_metadata_count(f), N_TEST_META);
    assert_string_equal(qiao_model_file_metadata(f, "format"), "pt");
    assert_null(qiao_model_file_metadata(f, "absent"));
    assert_string_equal(qiao_model_file_metadata_key(f, 0), "empty"); /* sorted */
    assert_string_equal(qiao_model_file_metadata_key(f, 1), "format");
    assert_string_equal(qiao_model_file_metadata_key(f, 2), "note");
    assert_string_equal(qiao_model_file_metadata_key(f, 3), "qiao.config");
    assert_null(qiao_model_file_metadata_key(f, 4));

    /* NULL arguments. */
    qiao_model_file *g = (qiao_model_file *)1;
    assert_int_equal(qiao_model_file_open(NULL, &g), QIAO_ERR_INVALID_ARGUMENT);
    assert_null(g);
    assert_true(strlen(qiao_last_error()) > 0);
    assert_int_equal(qiao_model_file_open(path, NULL), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_model_file_tensor(NULL, 0, &ti), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_model_file_tensor(f, 0, NULL), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_model_file_find(NULL, "a", &ti), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_model_file_find(f, NULL, &ti), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_model_file_find(f, "a", NULL), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "NULL"));
    assert_int_equal(qiao_model_file_tensor_count(NULL), 0);
    assert_int_equal(qiao_model_file_param_count(NULL), 0);
    assert_null(qiao_model_file_metadata(NULL, "a"));
    assert_null(qiao_model_file_metadata(f, NULL));
    assert_int_equal(qiao_model_file_metadata_count(NULL), 0);
    assert_null(qiao_model_file_metadata_key(NULL, 0));
    qiao_model_file_close(NULL);
    qiao_model_file_close(f);

    /* A bad file: the status and a message naming the file and tensor. */
    char *bad = join(&d, "bad.safetensors");
    size_t len;
    unsigned char *img = image("{\"enc.w\":{\"dtype\":\"F32\",\"shape\":[5,5],\"data_offsets\":[0,96]}}", 96,
                               &len);
    write_bytes(bad, img, len);
    free(img);
    f = (qiao_model_file *)1;
    assert_int_equal(qiao_model_file_open(bad, &f), QIAO_ERR_FORMAT);
    assert_null(f);
    assert_non_null(strstr(qiao_last_error(), bad));
    assert_non_null(strstr(qiao_last_error(), "'enc.w'"));
    assert_int_equal(qiao_model_file_open("/nonexistent/x.safetensors", &f), QIAO_ERR_IO);
    assert_non_null(strstr(qiao_last_error(), "/nonexistent/x.safetensors"));
    free(bad);

    /* dtype names and sizes. */
    const struct {
        qiao_dtype t;
        const char *s;
        size_t n;
    } dt[] = {{QIAO_DTYPE_F32, "F32", 4}, {QIAO_DTYPE_F16, "F16", 2}, {QIAO_DTYPE_BF16, "BF16", 2},
              {QIAO_DTYPE_I32, "I32", 4}, {QIAO_DTYPE_I64, "I64", 8}, {QIAO_DTYPE_U8, "U8", 1},
              {QIAO_DTYPE_I8, "I8", 1},   {QIAO_DTYPE_F64, "F64", 8}};
    for (size_t i = 0; i < sizeof dt / sizeof dt[0]; i++) {
        assert_string_equal(qiao_dtype_str(dt[i].t), dt[i].s);
        assert_int_equal(qiao_dtype_size(dt[i].t), dt[i].n);
    }
    assert_string_equal(qiao_dtype_str((qiao_dtype)99), "?");
    assert_int_equal(qiao_dtype_size((qiao_dtype)-1), 0);

    qc_arena_free(&arena);
    qc_table_free(&tab);
    free(path);
    tmpdir_remove(&d);
}

/* qc_st_rewrite: a copy with one tensor replaced, one added, one metadata
 * key changed and one removed; every other tensor and key as it was, and
 * the file may be rewritten onto itself. */
static void rewrite(void **state) {
    (void)state;
    tmpdir d;
    tmpdir_make(&d);
    char *a = join(&d, "a.safetensors"), *b = join(&d, "b.safetensors");
    int8_t q[4] = {-127, -1, 1, 127};
    uint16_t h[3] = {0x3F80, 0xBF80, 0x4000};
    float x[2] = {1.5f, -2.5f}, y[3] = {7.0f, 8.0f, 9.0f};
    const qc_st_entry e[] = {
        {.name = "w", .dtype = QIAO_DTYPE_I8, .ndim = 2, .shape = {2, 2}, .data = q},
        {.name = "h", .dtype = QIAO_DTYPE_BF16, .ndim = 1, .shape = {3}, .data = h},
        {.name = "x", .dtype = QIAO_DTYPE_F32, .ndim = 1, .shape = {2}, .data = x},
    };
    const qc_st_kv m[] = {{"keep", "1"}, {"change", "old"}, {"drop", "gone"}};
    assert_int_equal(qc_st_write(a, e, 3, m, 3), QIAO_OK);
    qc_st_file *f = NULL, *g = NULL;
    assert_int_equal(qc_st_open(a, &f), QIAO_OK);
    const qc_st_entry repl[] = {
        {.name = "x", .dtype = QIAO_DTYPE_F32, .ndim = 1, .shape = {3}, .data = y},
        {.name = "new", .dtype = QIAO_DTYPE_I8, .ndim = 1, .shape = {1}, .data = q},
    };
    const qc_st_kv meta[] = {{"change", "new"}, {"drop", NULL}, {"added", "yes"}};
    assert_int_equal(qc_st_rewrite(f, b, repl, 2, meta, 3), QIAO_OK);
    assert_int_equal(qc_st_open(b, &g), QIAO_OK);
    assert_int_equal(qc_st_count(g), 4);
    assert_memory_equal(qc_st_find(g, "w")->data, q, sizeof q);
    assert_memory_equal(qc_st_find(g, "h")->data, h, sizeof h);
    assert_int_equal(qc_st_find(g, "x")->shape[0], 3);
    assert_memory_equal(qc_st_find(g, "x")->data, y, sizeof y);
    assert_int_equal(qc_st_find(g, "new")->dtype, QIAO_DTYPE_I8);
    assert_int_equal(qc_st_metadata_count(g), 3);
    assert_string_equal(qc_st_metadata_get(g, "keep"), "1");
    assert_string_equal(qc_st_metadata_get(g, "change"), "new");
    assert_string_equal(qc_st_metadata_get(g, "added"), "yes");
    assert_null(qc_st_metadata_get(g, "drop"));
    qc_st_close(g);
    /* onto itself: the open file's mapping stays readable, the name gets the new file */
    assert_int_equal(qc_st_rewrite(f, a, NULL, 0, meta, 1), QIAO_OK);
    assert_memory_equal(qc_st_find(f, "w")->data, q, sizeof q);
    qc_st_close(f);
    assert_int_equal(qc_st_open(a, &f), QIAO_OK);
    assert_int_equal(qc_st_count(f), 3);
    assert_string_equal(qc_st_metadata_get(f, "change"), "new");
    assert_memory_equal(qc_st_find(f, "x")->data, x, sizeof x);
    assert_int_equal(qc_st_rewrite(NULL, b, NULL, 0, NULL, 0), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qc_st_rewrite(f, b, NULL, 1, NULL, 0), QIAO_ERR_INVALID_ARGUMENT);
    qc_st_close(f);
    free(a), free(b);
    tmpdir_remove(&d);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(roundtrip_f32), cmocka_unit_test(roundtrip_half),
    cmocka_unit_test(raw_entries),   cmocka_unit_test(atomic_write), cmocka_unit_test(killed_writer),
    cmocka_unit_test(stale_temporaries_swept),
    cmocka_unit_test(truncated),     cmocka_unit_test(overlapping),
    cmocka_unit_test(lying_offsets), cmocka_unit_test(bad_header),
    cmocka_unit_test(random_bytes),  cmocka_unit_test(missing_tensor),
    cmocka_unit_test(public_api),    cmocka_unit_test(rewrite),
};

QT_MAIN(tests)
