/* sdk/core/safetensors.h - reading and writing .safetensors model files.
 *
 * A model is one safetensors file: an 8-byte little-endian header length N,
 * N bytes of UTF-8 JSON mapping tensor names to {dtype, shape, data_offsets}
 * (plus an optional "__metadata__" object of string values), then the raw
 * little-endian tensor data. Offsets are relative to the first data byte.
 *
 * Reading validates the whole header before anything is returned: header
 * bounds, JSON, dtypes, shapes, byte sizes (overflow-checked), offsets inside
 * the data, no overlapping tensors, unique valid-UTF-8 names, string-only
 * metadata. Any defect is QIAO_ERR_FORMAT with a message naming the file and
 * the tensor; after a successful open every pointer handed out is in bounds.
 *
 * Writing is atomic: the file is written to a temporary file in the target's
 * directory, fsync'ed and renamed over the target, so readers see either the
 * old file or the complete new one, and a failure leaves the old one intact.
 *
 * Not a public header (see qiao.h for the public model-file API). */
#ifndef QIAO_SAFETENSORS_H
#define QIAO_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* Limits on what a file may declare. The header limit matches the reference
 * implementation's; names are bounded so messages and tables stay sane. */
#define QC_ST_MAX_HEADER ((size_t)100 * 1000 * 1000)
#define QC_ST_MAX_NAME 1024

/* One tensor of an open file. Everything points into the file handle and is
 * valid until qc_st_close(). `data` is NOT necessarily aligned to the
 * element size (another writer may not align its header): read it with
 * memcpy or the conversion helpers below. */
typedef struct qc_st_tensor {
    const char *name;              /* NUL-terminated, valid UTF-8 */
    qiao_dtype dtype;
    int ndim;
    int64_t shape[QC_MAX_DIMS];
    int64_t numel;                 /* product of shape; 1 for a scalar (ndim 0) */
    size_t begin;                  /* byte offset from the first data byte */
    size_t nbytes;                 /* numel * qiao_dtype_size(dtype) */
    const void *data;              /* begin bytes after the first data byte */
} qc_st_tensor;

typedef struct qc_st_file qc_st_file;

/* Opens and validates `path`, mapping it read-only (mmap). The file must not
 * be truncated by another process while the handle lives (that would be a
 * SIGBUS on access, as with any mapped file). Errors: QIAO_ERR_IO (open,
 * stat, map), QIAO_ERR_FORMAT (bad content), QIAO_ERR_TOO_LARGE (header
 * over QC_ST_MAX_HEADER), QIAO_ERR_OUT_OF_MEMORY. */
qiao_status qc_st_open(const char *path, qc_st_file **out);

/* Validates a file image held in memory. `name` is used in messages (NULL
 * gives "<memory>"). With copy = true the bytes are copied and the caller may
 * free `data` at once; with copy = false they are borrowed and must stay
 * valid and unchanged until qc_st_close(). */
qiao_status qc_st_open_memory(const void *data, size_t size, const char *name, bool copy,
                              qc_st_file **out);

/* Frees the handle (unmaps / frees the copy). Accepts NULL. */
void qc_st_close(qc_st_file *f);

/* The path or name given at open. */
const char *qc_st_name(const qc_st_file *f);

/* Tensors in file order (ascending data offset; ties by name). */
size_t qc_st_count(const qc_st_file *f);
/* The index-th tensor, or NULL when out of range. */
const qc_st_tensor *qc_st_at(const qc_st_file *f, size_t index);
/* The named tensor (binary search), or NULL when absent. */
const qc_st_tensor *qc_st_find(const qc_st_file *f, const char *name);

/* Metadata: string keys to string values, keys in ascending byte order. */
size_t qc_st_metadata_count(const qc_st_file *f);
/* The index-th key (sorted), or NULL when out of range. */
const char *qc_st_metadata_key(const qc_st_file *f, size_t index);
/* The value for `key`, or NULL when absent. */
const char *qc_st_metadata_get(const qc_st_file *f, const char *key);

/* Sum of numel over floating-point tensors (F32, F16, BF16, F64). */
int64_t qc_st_param_count(const qc_st_file *f);

/* Loads every tensor of `tab` from the file into `arena` (tab->total
 * floats) at desc->offset, converting F32/F16/BF16/F64 to f32. The file's
 * dtype need not equal desc->storage. Tensors in the file but not in the
 * table are ignored. A missing tensor, a shape mismatch or a non-float dtype
 * is QIAO_ERR_FORMAT naming the file and the tensor; the arena may then be
 * partly written. From a mapped file (qc_st_open) the pages of each tensor
 * are given back to the kernel as it is converted, so the file's pages and
 * the arena are not resident together; the tensors' data stays readable
 * (a read faults the pages in again). */
qiao_status qc_st_load_table(const qc_st_file *f, const qc_table *tab, float *arena);

/* ---- Writing --------------------------------------------------------------- */

typedef struct qc_st_kv {
    const char *key;
    const char *value;
} qc_st_kv;

/* One tensor to write. `data` holds numel elements: of `dtype` (raw,
 * little-endian) when from_f32 is false, or floats converted on the fly to
 * `dtype` (F32, F16, BF16 or F64) when from_f32 is true. The name and data
 * are only read during the call. */
typedef struct qc_st_entry {
    const char *name;
    qiao_dtype dtype;
    int ndim;
    int64_t shape[QC_MAX_DIMS];
    const void *data;      /* may be NULL only when numel == 0 */
    bool from_f32;
} qc_st_entry;

/* Writes `n` tensors and `n_meta` metadata pairs to `path`, atomically (temp
 * file in the same directory, fsync, rename). Data is laid out contiguously,
 * largest element size first, after a header padded with spaces to a
 * multiple of 8 bytes, so every tensor is aligned to its element size.
 * Everything is validated before the temp file is created (names non-empty,
 * unique, valid UTF-8, at most QC_ST_MAX_NAME bytes, not "__metadata__";
 * dtypes; shapes; metadata keys unique): QIAO_ERR_INVALID_ARGUMENT. I/O
 * failures are QIAO_ERR_IO; the temp file is then removed and an existing
 * `path` is left untouched. The new file keeps an existing target's mode
 * (else 0644); if `path` is a symlink, the link itself is replaced. */
qiao_status qc_st_write(const char *path, const qc_st_entry *tensors, size_t n, const qc_st_kv *meta,
                        size_t n_meta);

/* Writes a copy of the open file `src` to `path` (qc_st_write: atomic; `path`
 * may be src's own): every tensor of src as stored, except that an entry of
 * `repl` with its name takes its place; entries of `repl` naming no tensor
 * of src are added. The metadata are src's, except that a pair of `meta`
 * sets its key (a NULL value removes it). Tools that change part of a
 * model file (a recalibrated head's config, a pruned vocabulary) keep the
 * rest of it bit for bit this way, whatever its dtypes. */
qiao_status qc_st_rewrite(const qc_st_file *src, const char *path, const qc_st_entry *repl, size_t n_repl,
                          const qc_st_kv *meta, size_t n_meta);

/* Fills out[0 .. tab->n) with one entry per table tensor: its name, shape
 * and storage dtype, data pointing at arena + desc->offset (from_f32).
 * The entries borrow from `tab` and `arena`. Use it to write a table
 * together with extra tensors through qc_st_write(). */
void qc_st_table_entries(const qc_table *tab, const float *arena, qc_st_entry *out);

/* Writes every tensor of `tab` from `arena` (tab->total floats), each in
 * its desc->storage dtype, plus the metadata: qc_st_table_entries() followed
 * by qc_st_write(). */
qiao_status qc_st_write_table(const char *path, const qc_table *tab, const float *arena,
                              const qc_st_kv *meta, size_t n_meta);

/* ---- Helpers shared with the public API ------------------------------------ */

/* The safetensors name of a dtype ("F32"...), or NULL if not a qiao dtype. */
const char *qc_st_dtype_name(qiao_dtype dtype);
/* Bytes per element, or 0 if not a qiao dtype. */
size_t qc_st_dtype_size(qiao_dtype dtype);

#endif /* QIAO_SAFETENSORS_H */
