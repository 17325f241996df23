/* sdk/core/core.h - internal core of qiao: errors, logging, the tensor table
 * and its arenas, the seeded RNG, f16/bf16 conversion.
 *
 * Not a public header: it may change at any time. Internal names that cross
 * files carry a module prefix (qc_ for core). */
#ifndef QIAO_CORE_H
#define QIAO_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "qiao.h"

#if defined(__GNUC__)
#define QC_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define QC_PRINTF(f, a)
#endif

/* ---- Errors (status.c) -------------------------------------------------- */

/* Records a detailed message for the calling thread and returns `status`,
 * so a failure reads `return qc_error(QIAO_ERR_IO, "%s: %s", path, strerror(e));`.
 * The message is also logged at QIAO_LOG_DEBUG. */
qiao_status qc_error(qiao_status status, const char *fmt, ...) QC_PRINTF(2, 3);
/* Clears the calling thread's message (used by successful public calls that
 * want qiao_last_error() to be "" afterwards; optional). */
void qc_error_clear(void);

/* ---- Versioned params structs (status.c) ---------------------------------
 *
 * Every public *_params struct starts with `size_t struct_size` so it can
 * grow. A caller built against an older header passes a shorter struct:
 * `out` already holds this library's defaults (out_size bytes); the first
 * min(in->struct_size, out_size) bytes of `in` replace them, so fields the
 * caller's header did not have keep their defaults, and out->struct_size
 * becomes out_size. `in` == NULL keeps the defaults. A struct_size below
 * `min_size` (it must cover the first real field) or above 64 KiB (so the
 * struct was surely not made by `defaults_fn`) is QIAO_ERR_INVALID_ARGUMENT. */
qiao_status qc_params_read(void *out, size_t out_size, const void *in, size_t min_size, const char *defaults_fn);

/* ---- Logging (status.c) ------------------------------------------------- */

void qc_log(qiao_log_level level, const char *fmt, ...) QC_PRINTF(2, 3);

/* Seconds on the monotonic clock (for durations, rates and ETAs only: the
 * origin is arbitrary). */
double qc_now(void);

/* ---- Files (file.c) ------------------------------------------------------
 *
 * Every path the library reads goes through qc_open_read: it never blocks
 * (a FIFO, a device or a folder is refused with a message naming what it
 * is) and the descriptor is close-on-exec. */

/* What a stat() mode is, for messages: "a folder", "a named pipe (FIFO)",
 * "a character device"... */
const char *qc_file_kind(unsigned mode);
/* Opens a regular file for reading; *size (may be NULL) gets its length. */
qiao_status qc_open_read(const char *path, int *fd, int64_t *size);
/* The same as a stdio stream ("rb"). */
qiao_status qc_fopen_read(const char *path, FILE **f, int64_t *size);
/* Reads a whole regular file, refusing one over `max` bytes
 * (QIAO_ERR_TOO_LARGE) before reading it. *data gets one extra zero byte
 * past *size, so text may be used as a string; the caller frees it. */
qiao_status qc_read_file(const char *path, size_t max, uint8_t **data, size_t *size);

/* Atomic replacement of a file: write to `fd` between begin and commit;
 * commit fsyncs and puts the file at `path` in one rename, discard (also
 * after a failed commit, harmless twice) removes every trace. A process
 * killed in between leaves no file behind where the file system has
 * O_TMPFILE (but in the instant between naming the finished file and
 * renaming it), and otherwise a `<path>.part.XXXXXX`; the next begin on the
 * same path removes what a dead writer left (qc_atomic_sweep). */
typedef struct qc_atomic_file {
    int fd;
    unsigned mode;  /* of the file replaced, else 0644 */
    char *path, *dir, *tmp;
} qc_atomic_file;
qiao_status qc_atomic_begin(qc_atomic_file *af, const char *path);
qiao_status qc_atomic_commit(qc_atomic_file *af);
void qc_atomic_discard(qc_atomic_file *af);
/* Removes temporaries of `path` left by dead writers; returns how many. */
int qc_atomic_sweep(const char *path);

/* Creates a folder and its missing parents (mode 0777 before the umask);
 * an existing folder is fine, an existing non-folder is QIAO_ERR_IO. */
qiao_status qc_mkdir_p(const char *path);

/* ---- Model config JSON (config.c) -----------------------------------------
 *
 * One reader per value kind, for every config section, so a bad value reads
 * the same wherever it is: "<section> config: key '<key>' ...". */

struct cJSON;
/* A required integer in [lo, hi]. */
qiao_status qc_json_int(const struct cJSON *obj, const char *section, const char *key, int64_t lo, int64_t hi,
                        int64_t *out);
/* The same for a value already found (an array element). */
qiao_status qc_json_int_value(const struct cJSON *it, const char *section, const char *key, int64_t lo, int64_t hi,
                              int64_t *out);
/* An optional string among names[0 .. n): *out its index, `dflt` when the
 * key is absent. */
qiao_status qc_json_choice(const struct cJSON *obj, const char *section, const char *key, const char *const *names,
                           int n, int dflt, int *out);
/* An optional number in [lo, hi]; `dflt` when the key is absent. */
qiao_status qc_json_float(const struct cJSON *obj, const char *section, const char *key, double lo, double hi,
                          float dflt, float *out);

/* ---- UTF-8 (utf8.c) ------------------------------------------------------- */

/* Offset of the first byte that is not strict UTF-8 (RFC 3629: no overlong
 * forms, surrogates or code points above U+10FFFF), or len if all of it is. */
size_t qc_utf8_check(const char *s, size_t len);
static inline bool qc_utf8_valid(const char *s, size_t len) { return qc_utf8_check(s, len) == len; }
/* True when s[0 .. len) (valid UTF-8) holds nothing but Unicode White_Space
 * (or nothing at all): a text a tokenizer makes no token of. */
bool qc_utf8_blank(const char *s, size_t len);

/* ---- Seeded RNG (rng.c) ------------------------------------------------- */

/* xoshiro256** seeded through splitmix64: fast, small state, reproducible
 * on every platform, so same seed gives the same model bytes everywhere. */
typedef struct qc_rng {
    uint64_t s[4];
} qc_rng;

void qc_rng_seed(qc_rng *rng, uint64_t seed);
uint64_t qc_rng_u64(qc_rng *rng);
/* Uniform in [0, 1) with 24 random bits. */
float qc_rng_uniform(qc_rng *rng);
/* Uniform integer in [0, n); n > 0. Unbiased (rejection sampling). */
uint64_t qc_rng_below(qc_rng *rng, uint64_t n);
/* Standard normal (Box-Muller, one value per call). */
float qc_rng_normal(qc_rng *rng);

/* ---- f16 / bf16 storage (half.c) ---------------------------------------- */

/* Round-to-nearest-even conversions; NaN stays NaN, overflow goes to inf. */
uint16_t qc_f32_to_f16(float f);
float qc_f16_to_f32(uint16_t h);
uint16_t qc_f32_to_bf16(float f);
float qc_bf16_to_f32(uint16_t h);
void qc_f32_to_f16_n(uint16_t *dst, const float *src, size_t n);
void qc_f16_to_f32_n(float *dst, const uint16_t *src, size_t n);
void qc_f32_to_bf16_n(uint16_t *dst, const float *src, size_t n);
void qc_bf16_to_f32_n(float *dst, const uint16_t *src, size_t n);

/* ---- The tensor table (tensor.c) ----------------------------------------
 *
 * Each tensor of a model is described once: name, shape, storage dtype,
 * initializer, flags, and where its pointer goes in the model's struct.
 * The same table then
 *   - sizes the arenas (parameters, gradients, AdamW m and v, all laid out
 *     identically, so tensor i sits at the same offset in each),
 *   - points a struct's float* fields into any of those arenas (qc_table_bind),
 *   - initializes the parameters from a seed (qc_table_init),
 *   - names the tensors in the model file (safetensors writer and loader),
 *   - tells AdamW which tensors skip weight decay (QC_NO_DECAY).
 * There are no parallel hand-kept lists of counts and sizes. */

#define QC_MAX_DIMS QIAO_MAX_DIMS
#define QC_NAME_MAX 96
/* Every tensor starts on a 64-byte boundary inside its arena. */
#define QC_ALIGN_FLOATS 16

typedef enum qc_init {
    QC_INIT_ZEROS = 0,
    QC_INIT_ONES,
    QC_INIT_NORMAL,   /* N(0, scale^2) */
    QC_INIT_UNIFORM,  /* U(-scale, scale) */
    QC_INIT_CONST,    /* every element = scale */
    QC_INIT_SINCOS    /* (n, d) position table: scale * sin-cos of where row t lies, qc_init_sincos */
} qc_init;

enum {
    QC_NO_DECAY = 1u << 0,  /* AdamW applies no weight decay (norms, biases, temperature) */
    QC_FROZEN = 1u << 1     /* not updated by the optimizer */
};

typedef struct qc_tensor_desc {
    char name[QC_NAME_MAX];
    int ndim;
    int64_t shape[QC_MAX_DIMS];
    int64_t numel;
    qiao_dtype storage;   /* dtype in the model file; compute is always f32 */
    qc_init init;
    float init_scale;
    uint32_t flags;
    float lr_scale;       /* AdamW's learning rate times this for the tensor; 0 (the default) = 1 */
    size_t offset;        /* in floats from the arena base; multiple of QC_ALIGN_FLOATS */
    size_t field;         /* offsetof() of the float* field in the bound struct, or SIZE_MAX */
} qc_tensor_desc;

typedef struct qc_table {
    qc_tensor_desc *t;
    size_t n, cap;
    size_t total;         /* floats an arena for this table needs */
} qc_table;

#define QC_NO_FIELD ((size_t)-1)

void qc_table_init_empty(qc_table *tab);
void qc_table_free(qc_table *tab);
/* Appends a tensor. `field` is offsetof(struct, member) of a float* member
 * (or QC_NO_FIELD). Fails on a duplicate name, a bad shape or OOM. */
qiao_status qc_table_add(qc_table *tab, const char *name, int ndim, const int64_t *shape,
                         qc_init init, float init_scale, uint32_t flags, size_t field);
/* qc_table_add with the name "<prefix><name>": how composite layers name
 * their tensors under their owner's prefix ("text.trunk.blocks.0."). */
qiao_status qc_table_add_prefixed(qc_table *tab, const char *prefix, const char *name, int ndim,
                                  const int64_t *shape, qc_init init, float init_scale, uint32_t flags, size_t field);
/* qc_table_add_prefixed with the shape written out: the first `ndim` of
 * d0, d1, d2 (the rest are ignored). */
qiao_status qc_table_add_dims(qc_table *tab, const char *prefix, const char *name, int ndim, int64_t d0, int64_t d1,
                              int64_t d2, qc_init init, float init_scale, uint32_t flags, size_t field);
/* Index of the named tensor, or -1. */
int64_t qc_table_find(const qc_table *tab, const char *name);
/* Sets every bound float* field of `obj` to point into `arena`. */
void qc_table_bind(const qc_table *tab, float *arena, void *obj);
/* Fills `arena` (host memory, tab->total floats) from each tensor's initializer. */
void qc_table_init(const qc_table *tab, float *arena, uint64_t seed);
/* Fills out (n, d) with scale * the fixed sin-cos code of each row's place
 * (MAE's 2-D code): when n is a square g*g, row t lies at (t / g, t % g) of
 * a row-major grid and the first half of the columns code its row, the
 * second half its column; otherwise t lies on a line and all columns code
 * it. Each coded axis takes d/4 (2-D) or d/2 (line) frequencies, omega_k =
 * 1/base^(k/K) with base 100: a grid of a few dozen cells is told apart by
 * every pair of columns, where base 10000 leaves half of them constant.
 * Columns left over (d not a multiple of 4 or 2) are 0. Values have rms
 * about scale/sqrt(2), the order of a LayerNormed token's, so a learned
 * table that starts here is heard from the first step. */
void qc_init_sincos(float *out, int64_t n, int64_t d, float scale);

/* An arena: one 64-byte aligned host allocation of `n` floats, zeroed. */
typedef struct qc_arena {
    float *base;
    size_t n;
} qc_arena;

qiao_status qc_arena_alloc(qc_arena *a, size_t n);
void qc_arena_free(qc_arena *a);
void qc_arena_zero(qc_arena *a);

/* Overflow-checked size arithmetic: returns false (and leaves *out alone) on
 * overflow. Used wherever a size comes from a file or a caller. */
static inline bool qc_mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return false;
    *out = a * b;
    return true;
}
static inline bool qc_add_size(size_t a, size_t b, size_t *out) {
    if (b > SIZE_MAX - a) return false;
    *out = a + b;
    return true;
}

#endif /* QIAO_CORE_H */
