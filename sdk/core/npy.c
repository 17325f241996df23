/* NumPy .npy writer: magic, version 1.0, a Python-dict header padded with
 * spaces so the data starts on a 64-byte boundary, then raw f32 data. */
#define _POSIX_C_SOURCE 200809L

#include "core/npy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

qiao_status qc_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape) {
    if (!path || (!data && ndim > 0) || ndim < 0 || ndim > QC_MAX_DIMS)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "npy: bad arguments");
    char dims[256] = "";
    size_t numel = 1, used = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || !qc_mul_size(numel, (size_t)shape[i], &numel))
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: bad npy shape", path);
        used += (size_t)snprintf(dims + used, sizeof dims - used, "%lld%s", (long long)shape[i],
                                 ndim == 1 ? "," : (i + 1 < ndim ? ", " : ""));
    }
    char header[512];
    int hl = snprintf(header, sizeof header, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", dims);
    /* 10 bytes of preamble + header + '\n' must be a multiple of 64. */
    size_t total = 10 + (size_t)hl + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)hl + pad + 1;
    qc_atomic_file af;
    qiao_status st = qc_atomic_begin(&af, path);
    if (st != QIAO_OK) return st;
    /* The stream gets its own descriptor of the same open file, so closing
     * it flushes the data and leaves af's descriptor for the commit. */
    int sfd = dup(af.fd);
    FILE *f = sfd >= 0 ? fdopen(sfd, "wb") : NULL;
    if (!f) {
        if (sfd >= 0) close(sfd);
        qc_atomic_discard(&af);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff),
                             (unsigned char)(hlen >> 8)};
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(header, 1, (size_t)hl, f) == (size_t)hl;
    for (size_t i = 0; ok && i < pad; i++) ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    /* x86 and arm64 are little-endian, as '<f4' says. */
    ok = ok && (numel == 0 || fwrite(data, sizeof(float), numel, f) == numel);
    ok = (fclose(f) == 0) && ok;
    int e = errno;
    if (ok) st = qc_atomic_commit(&af);
    else st = qc_error(QIAO_ERR_IO, "%s: write failed: %s", path, strerror(e));
    qc_atomic_discard(&af);
    return st;
}
