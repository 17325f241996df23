/* The public model-file API (qiao.h, "Model files"): a thin, argument-checking
 * layer over the safetensors reader in core/safetensors.c. */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/safetensors.h"

/* The public handle wraps the internal one, so the internal reader can grow
 * fields (or be swapped) without touching the public type. */
struct qiao_model_file {
    qc_st_file *st;
};

QIAO_API const char *qiao_dtype_str(qiao_dtype dtype) {
    const char *s = qc_st_dtype_name(dtype);
    return s ? s : "?";
}

QIAO_API size_t qiao_dtype_size(qiao_dtype dtype) { return qc_st_dtype_size(dtype); }

QIAO_API qiao_status qiao_model_file_open(const char *path, qiao_model_file **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_model_file_open: out is NULL");
    *out = NULL;
    if (!path) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_model_file_open: path is NULL");
    qiao_model_file *f = calloc(1, sizeof *f);
    if (!f) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    qiao_status st = qc_st_open(path, &f->st);
    if (st != QIAO_OK) {
        free(f);
        return st;
    }
    *out = f;
    return QIAO_OK;
}

QIAO_API void qiao_model_file_close(qiao_model_file *file) {
    if (!file) return;
    qc_st_close(file->st);
    free(file);
}

QIAO_API size_t qiao_model_file_tensor_count(const qiao_model_file *file) {
    return file ? qc_st_count(file->st) : 0;
}

static void fill_info(const qc_st_tensor *t, qiao_tensor_info *out) {
    memset(out, 0, sizeof *out);
    out->name = t->name;
    out->dtype = t->dtype;
    out->ndim = t->ndim;
    for (int i = 0; i < t->ndim; i++) out->shape[i] = t->shape[i];
    out->nbytes = t->nbytes;
    out->data = t->data;
}

QIAO_API qiao_status qiao_model_file_tensor(const qiao_model_file *file, size_t index,
                                            qiao_tensor_info *out) {
    if (!file || !out)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_model_file_tensor: %s is NULL",
                        !file ? "file" : "out");
    const qc_st_tensor *t = qc_st_at(file->st, index);
    if (!t)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: tensor index %zu out of range (%zu tensors)",
                        qc_st_name(file->st), index, qc_st_count(file->st));
    fill_info(t, out);
    return QIAO_OK;
}

QIAO_API qiao_status qiao_model_file_find(const qiao_model_file *file, const char *name,
                                          qiao_tensor_info *out) {
    if (!file || !name || !out)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_model_file_find: %s is NULL",
                        !file ? "file" : !name ? "name" : "out");
    const qc_st_tensor *t = qc_st_find(file->st, name);
    if (!t)
        return qc_error(QIAO_ERR_NOT_FOUND, "%s: no tensor named '%.200s'", qc_st_name(file->st),
                        name);
    fill_info(t, out);
    return QIAO_OK;
}

QIAO_API int64_t qiao_model_file_param_count(const qiao_model_file *file) {
    return file ? qc_st_param_count(file->st) : 0;
}

QIAO_API const char *qiao_model_file_metadata(const qiao_model_file *file, const char *key) {
    return file && key ? qc_st_metadata_get(file->st, key) : NULL;
}

QIAO_API size_t qiao_model_file_metadata_count(const qiao_model_file *file) {
    return file ? qc_st_metadata_count(file->st) : 0;
}

QIAO_API const char *qiao_model_file_metadata_key(const qiao_model_file *file, size_t index) {
    return file ? qc_st_metadata_key(file->st, index) : NULL;
}
