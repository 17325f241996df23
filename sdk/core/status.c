/* Status names, the per-thread error message, the process-wide log hook and
 * the monotonic clock. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "qiao_build_version.h"

/* One message per thread, as stb_image keeps its failure reason, but
 * thread-local so encoders on many threads never see each other's errors. */
static _Thread_local char tl_error[1024];

/* The log hook is read on every log call from any thread; a torn read of
 * (fn, user_data) is avoided by publishing a pointer to an immutable pair. */
typedef struct log_hook {
    qiao_log_fn fn;
    qiao_log_level max_level;
    void *user_data;
} log_hook;

static log_hook hooks[2];
static _Atomic(log_hook *) current_hook = NULL;
static atomic_int hook_slot = 0;

QIAO_API const char *qiao_version(void) { return QIAO_BUILD_VERSION_STRING; }
QIAO_API int qiao_version_number(void) { return QIAO_VERSION_NUMBER; }

QIAO_API const char *qiao_status_str(qiao_status status) {
    switch (status) {
    case QIAO_OK: return "ok";
    case QIAO_ERR_INVALID_ARGUMENT: return "invalid argument";
    case QIAO_ERR_OUT_OF_MEMORY: return "out of memory";
    case QIAO_ERR_IO: return "i/o error";
    case QIAO_ERR_FORMAT: return "format error";
    case QIAO_ERR_UNSUPPORTED: return "unsupported";
    case QIAO_ERR_NOT_FOUND: return "not found";
    case QIAO_ERR_CANCELLED: return "cancelled";
    case QIAO_ERR_TOO_LARGE: return "too large";
    case QIAO_ERR_BACKEND: return "backend error";
    case QIAO_ERR_INTERNAL: return "internal error";
    case QIAO_ERR_CONFLICT: return "conflict";
    }
    return "unknown status";
}

QIAO_API const char *qiao_last_error(void) { return tl_error; }

qiao_status qc_error(qiao_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_error, sizeof tl_error, fmt, ap);
    va_end(ap);
    qc_log(QIAO_LOG_DEBUG, "%s: %s", qiao_status_str(status), tl_error);
    return status;
}

void qc_error_clear(void) { tl_error[0] = '\0'; }

qiao_status qc_params_read(void *out, size_t out_size, const void *in, size_t min_size, const char *defaults_fn) {
    if (!in) return QIAO_OK;
    size_t given;
    memcpy(&given, in, sizeof given); /* struct_size is the first field of every params struct */
    if (given < min_size || given > 65536)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "params.struct_size is %zu: start from %s()", given, defaults_fn);
    memcpy(out, in, given < out_size ? given : out_size);
    memcpy(out, &out_size, sizeof out_size);
    return QIAO_OK;
}

QIAO_API void qiao_set_log_callback(qiao_log_fn fn, qiao_log_level max_level, void *user_data) {
    if (!fn) {
        current_hook = NULL;
        return;
    }
    /* Two slots: a reader holding the old pointer still sees a whole pair.
     * Callers are expected to set the hook rarely (at start-up). */
    int slot = atomic_fetch_xor(&hook_slot, 1) ^ 1;
    hooks[slot] = (log_hook){fn, max_level, user_data};
    current_hook = &hooks[slot];
}

void qc_log(qiao_log_level level, const char *fmt, ...) {
    log_hook *h = current_hook;
    if (!h || level > h->max_level) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    h->fn(level, msg, h->user_data);
}

double qc_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
