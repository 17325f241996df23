/* sdk/core/npy.h - NumPy .npy output (format version 1.0), so preprocessed
 * tensors (images, log-mel features) can be inspected with numpy.load. */
#ifndef QIAO_NPY_H
#define QIAO_NPY_H

#include "core/core.h"

/* Writes a C-order little-endian float32 array of `ndim` dims (<= QC_MAX_DIMS)
 * to `path`, atomically (temp file + rename). QIAO_ERR_IO on failure. */
qiao_status qc_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape);

#endif
