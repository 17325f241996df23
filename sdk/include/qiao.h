/* qiao.h - the public C API of qiao (桥, "bridge").
 *
 * qiao maps text, images and audio into one shared 1024-dimension embedding
 * space and trains its own models in C. This is the only header an
 * application includes; it is plain C99 and can be included from C++.
 *
 * QUICK EXAMPLE
 *
 *     #include <qiao.h>
 *     #include <stdio.h>
 *
 *     int main(int argc, char **argv) {
 *         qiao_model_file *f = NULL;
 *         qiao_status st = qiao_model_file_open(argv[1], &f);
 *         if (st != QIAO_OK) {
 *             fprintf(stderr, "%s: %s\n", qiao_status_str(st), qiao_last_error());
 *             return 1;
 *         }
 *         for (size_t i = 0; i < qiao_model_file_tensor_count(f); i++) {
 *             qiao_tensor_info ti;
 *             qiao_model_file_tensor(f, i, &ti);
 *             printf("%s %s\n", ti.name, qiao_dtype_str(ti.dtype));
 *         }
 *         qiao_model_file_close(f);
 *         return 0;
 *     }
 *
 * Build: cc app.c $(pkg-config --cflags --libs qiao)
 *        or, in CMake: find_package(qiao) and link qiao::qiao.
 *
 * CONVENTIONS
 *
 * - Every fallible function returns a qiao_status. On failure a detailed,
 *   human-readable message for the calling thread is kept until that
 *   thread's next failing call: read it with qiao_last_error().
 * - The library never exits, aborts or prints. It logs only through the
 *   callback set with qiao_set_log_callback().
 * - Handles are opaque. Every *_close / *_free function accepts NULL.
 * - Strings passed in are copied; the caller keeps ownership of its memory.
 *   Strings returned are owned by the library and valid as documented.
 * - Sizes and counts are size_t or int64_t.
 * - Parameter structs come from *_default_params() and carry struct_size,
 *   so fields can be added without breaking programs built against an older
 *   header: always start from the defaults, then set what you need.
 * - Callbacks carry a user_data pointer. A cancel callback that returns
 *   nonzero asks the call to stop; the call then returns QIAO_ERR_CANCELLED.
 *
 * THREAD SAFETY
 *
 * All functions may be called from any thread. A model (and a model file
 * handle) is immutable once loaded and may be shared by many threads at
 * once; per-thread objects (sessions, trainers) must not be used by two
 * threads at the same time. The log callback is process-wide and may be
 * called from any thread.
 */
#ifndef QIAO_H
#define QIAO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Version ------------------------------------------------------------ */

#define QIAO_VERSION_MAJOR 0
#define QIAO_VERSION_MINOR 1
#define QIAO_VERSION_PATCH 0
#define QIAO_VERSION_STRING "0.1.0"
/* One integer that grows with every release: 10000*major + 100*minor + patch. */
#define QIAO_VERSION_NUMBER \
    (QIAO_VERSION_MAJOR * 10000 + QIAO_VERSION_MINOR * 100 + QIAO_VERSION_PATCH)

#if defined(_WIN32) && !defined(QIAO_STATIC)
#  if defined(QIAO_BUILDING)
#    define QIAO_API __declspec(dllexport)
#  else
#    define QIAO_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__)
#  define QIAO_API __attribute__((visibility("default")))
#else
#  define QIAO_API
#endif

#if defined(__GNUC__)
#  define QIAO_MUST_CHECK __attribute__((warn_unused_result))
#else
#  define QIAO_MUST_CHECK
#endif

/* The version of the library actually linked, e.g. "0.1.0". Compare with
 * QIAO_VERSION_STRING to detect a header/library mismatch. */
QIAO_API const char *qiao_version(void);
/* The same as QIAO_VERSION_NUMBER, for the linked library. */
QIAO_API int qiao_version_number(void);

/* ---- Status and errors -------------------------------------------------- */

/* Stable numbers: a value, once released, never changes meaning. */
typedef enum qiao_status {
    QIAO_OK = 0,
    QIAO_ERR_INVALID_ARGUMENT = 1, /* a NULL, out-of-range or inconsistent argument */
    QIAO_ERR_OUT_OF_MEMORY = 2,    /* an allocation failed */
    QIAO_ERR_IO = 3,               /* a file could not be opened, read or written */
    QIAO_ERR_FORMAT = 4,           /* a file or buffer is malformed or inconsistent */
    QIAO_ERR_UNSUPPORTED = 5,      /* valid, but not supported by this build */
    QIAO_ERR_NOT_FOUND = 6,        /* a named item (tensor, key...) does not exist */
    QIAO_ERR_CANCELLED = 7,        /* a cancel callback asked to stop */
    QIAO_ERR_TOO_LARGE = 8,        /* a size over a configured or sane limit */
    QIAO_ERR_BACKEND = 9,          /* the compute backend (BLAS, CUDA) failed */
    QIAO_ERR_INTERNAL = 10         /* a bug in qiao: please report it */
} qiao_status;

/* A short constant English name for a status, e.g. "format error". Never NULL. */
QIAO_API const char *qiao_status_str(qiao_status status);

/* The detailed message of the calling thread's most recent failure, e.g.
 * "model.safetensors: tensor 'w' data [0, 4096) overlaps tensor 'b'".
 * Never NULL; "" if nothing failed yet on this thread. Valid until the
 * thread's next call into qiao. */
QIAO_API const char *qiao_last_error(void);

/* ---- Logging ------------------------------------------------------------- */

typedef enum qiao_log_level {
    QIAO_LOG_ERROR = 0,
    QIAO_LOG_WARN = 1,
    QIAO_LOG_INFO = 2,
    QIAO_LOG_DEBUG = 3
} qiao_log_level;

/* Receives one message, without a trailing newline. May be called from any
 * thread, including the library's worker threads. */
typedef void (*qiao_log_fn)(qiao_log_level level, const char *message, void *user_data);

/* Sets the process-wide log callback and the most verbose level passed to it.
 * NULL (the default) discards all messages. */
QIAO_API void qiao_set_log_callback(qiao_log_fn fn, qiao_log_level max_level, void *user_data);

/* ---- Callbacks for long work -------------------------------------------- */

/* Progress of a long call: `done` out of `total` units (total may be 0 when
 * unknown), with a short description of the phase ("train", "index"...). */
typedef void (*qiao_progress_fn)(const char *phase, int64_t done, int64_t total, void *user_data);
/* Polled during long calls. Return nonzero to stop: the call returns
 * QIAO_ERR_CANCELLED after leaving everything it wrote in a consistent state. */
typedef int (*qiao_cancel_fn)(void *user_data);

/* ---- Data types ---------------------------------------------------------- */

typedef enum qiao_dtype {
    QIAO_DTYPE_F32 = 0,
    QIAO_DTYPE_F16 = 1,
    QIAO_DTYPE_BF16 = 2,
    QIAO_DTYPE_I32 = 3,
    QIAO_DTYPE_I64 = 4,
    QIAO_DTYPE_U8 = 5,
    QIAO_DTYPE_I8 = 6,
    QIAO_DTYPE_F64 = 7
} qiao_dtype;

/* The safetensors name of a dtype ("F32", "BF16"...). Never NULL. */
QIAO_API const char *qiao_dtype_str(qiao_dtype dtype);
/* Bytes per element. */
QIAO_API size_t qiao_dtype_size(qiao_dtype dtype);

/* ---- Model files --------------------------------------------------------- */

/* A model is one .safetensors file: the standard header (JSON) with the
 * model's configuration under "__metadata__", then raw little-endian data.
 * Opening maps the file and validates all of it (header bounds, JSON, dtypes,
 * shapes, byte sizes, offsets inside the data, no overlaps) before returning;
 * a bad file gives QIAO_ERR_FORMAT with a message naming the file and tensor.
 * A handle is immutable and may be shared between threads. */
typedef struct qiao_model_file qiao_model_file;

#define QIAO_MAX_DIMS 8

typedef struct qiao_tensor_info {
    const char *name;           /* owned by the file handle */
    qiao_dtype dtype;
    int ndim;
    int64_t shape[QIAO_MAX_DIMS];
    size_t nbytes;
    const void *data;           /* mapped, read-only, valid while the handle lives */
} qiao_tensor_info;

QIAO_API QIAO_MUST_CHECK qiao_status qiao_model_file_open(const char *path, qiao_model_file **out);
QIAO_API void qiao_model_file_close(qiao_model_file *file);
QIAO_API size_t qiao_model_file_tensor_count(const qiao_model_file *file);
/* Tensors in file order (ascending data offset). */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_model_file_tensor(const qiao_model_file *file, size_t index,
                                                            qiao_tensor_info *out);
QIAO_API QIAO_MUST_CHECK qiao_status qiao_model_file_find(const qiao_model_file *file, const char *name,
                                                          qiao_tensor_info *out);
/* Total element count of all floating-point tensors. */
QIAO_API int64_t qiao_model_file_param_count(const qiao_model_file *file);
/* Metadata (string to string, as safetensors defines it). Returns NULL when the
 * key is absent. The string is owned by the handle. */
QIAO_API const char *qiao_model_file_metadata(const qiao_model_file *file, const char *key);
QIAO_API size_t qiao_model_file_metadata_count(const qiao_model_file *file);
/* The index-th metadata key (sorted), or NULL when out of range. */
QIAO_API const char *qiao_model_file_metadata_key(const qiao_model_file *file, size_t index);

/* ---- Text: the hybrid character+word tokenizer ---------------------------- */
/* @@TOKENIZER-API@@ */

/* ---- Images --------------------------------------------------------------- */
/* @@IMAGE-API@@ */

/* ---- Audio ---------------------------------------------------------------- */
/* @@AUDIO-API@@ */

/* ---- Self-check training -------------------------------------------------- */

/* Trains the built-in 2-layer transformer sequence classifier on a synthetic
 * task (each sequence of 8..16 symbols holds one marker; the class is the
 * symbol right after it, which no bag-of-tokens model can tell) and measures
 * its accuracy on held-out sequences from a separate seed stream. It exercises the whole training runtime
 * (layers, backward, AdamW, schedules, model file writing) and is what
 * `qiao demo` runs until the encoders exist. */
typedef struct qiao_selfcheck_params {
    size_t struct_size;      /* set by qiao_selfcheck_default_params() */
    int n_threads;           /* worker threads for kernels; 0 = all cores */
    uint64_t seed;           /* data and initialization seed */
    int64_t steps;           /* optimizer steps */
    int64_t batch_size;
    float learning_rate;     /* peak, after linear warmup, then cosine decay */
    const char *out_path;    /* if not NULL, the trained model is written here */
    qiao_progress_fn progress;
    void *progress_user_data;
    qiao_cancel_fn cancel;
    void *cancel_user_data;
} qiao_selfcheck_params;

typedef struct qiao_selfcheck_result {
    float final_loss;        /* mean training loss over the last 10% of steps */
    float accuracy;          /* on 2048 held-out sequences */
    float chance_accuracy;   /* what guessing gets: 1 / classes (classes are balanced) */
    int64_t steps;
    double seconds;
} qiao_selfcheck_result;

QIAO_API qiao_selfcheck_params qiao_selfcheck_default_params(void);
QIAO_API QIAO_MUST_CHECK qiao_status qiao_selfcheck_train(const qiao_selfcheck_params *params,
                                                          qiao_selfcheck_result *result);

#ifdef __cplusplus
}
#endif

#endif /* QIAO_H */
