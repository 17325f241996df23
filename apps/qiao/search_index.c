/* apps/qiao/search_index.c - `qiao search index` on the public index API:
 * open the index (or start one), add the roots with `mirror`, save when
 * anything changed, and turn the library's notices into the command's
 * stderr lines. The index is reached through qiao.h alone. See
 * search_index.h. */
#define _POSIX_C_SOURCE 200809L /* stat */

#include "search_index.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/core.h" /* qc_error: the command's messages are the thread's last error, as the library's */

static void on_notice(qiao_log_level level, const char *path, const char *message, void *user_data) {
    (void)path;
    const search_update_params *p = user_data;
    /* Warnings always; what is simply not media only when asked. */
    if (level <= QIAO_LOG_WARN || p->verbose) fprintf(stderr, "qiao search: %s\n", message);
}

static void on_progress(const qiao_index_progress *pr, void *user_data) {
    const search_update_params *p = user_data;
    p->progress(pr->done, pr->total, pr->embedded, pr->seconds, p->progress_user_data);
}

qiao_status search_update(const search_update_params *p, search_update_stats *stats) {
    memset(stats, 0, sizeof *stats);
    if (!p || !p->model_path || !p->index_path || (p->n_roots && !p->roots))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "search_update: model, index and roots are required");
    qiao_index_params ip = qiao_index_default_params();
    ip.n_threads = p->n_threads;
    qiao_index *ix = NULL;
    /* The model first: a bad --model is reported as such, whatever --out is. */
    qiao_status st = qiao_index_create(p->model_path, p->index_path, &ip, &ix);
    if (st != QIAO_OK) return st;
    struct stat sb;
    if (stat(p->index_path, &sb) == 0) {
        st = qiao_index_load(ix, p->index_path);
        if (st == QIAO_ERR_INVALID_ARGUMENT) {
            /* Another model's index: start afresh, so everything is embedded again. */
            stats->model_changed = true;
            st = QIAO_OK;
        } else if (st != QIAO_OK) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", qiao_last_error());
            st = qc_error(st, "%s exists and is not a valid search index (not overwritten; remove it or choose "
                              "another --out): %s", p->index_path, msg);
        }
    } else if (errno != ENOENT) {
        st = qc_error(QIAO_ERR_IO, "%s: %s", p->index_path, strerror(errno));
    }
    qiao_index_add_stats as;
    memset(&as, 0, sizeof as);
    if (st == QIAO_OK) {
        qiao_index_add_params ap = qiao_index_add_default_params();
        ap.mirror = 1;
        ap.batch = p->batch < 1 ? 1 : p->batch > 512 ? 512 : p->batch;
        ap.progress = p->progress ? on_progress : NULL;
        ap.progress_user_data = (void *)p;
        ap.cancel = p->cancel;
        ap.cancel_user_data = p->cancel_user_data;
        ap.notice = on_notice;
        ap.notice_user_data = (void *)p;
        st = qiao_index_add_files(ix, p->roots, p->n_roots, &ap, &as);
    }
    stats->found = as.found;
    stats->embedded = as.embedded;
    stats->kept = as.kept;
    stats->removed = as.removed;
    stats->failed = as.failed;
    stats->skipped_known = as.skipped_known;
    stats->pending = as.pending;
    /* A cancel while listing (found is 0 then) changed nothing: leave the file. */
    bool listed = st == QIAO_OK || (st == QIAO_ERR_CANCELLED && as.found > 0);
    if (listed && qiao_index_modified(ix)) {
        qiao_status ws = qiao_index_save(ix, NULL);
        if (ws != QIAO_OK) st = ws;
        else stats->written = true;
    }
    stats->images = (int64_t)qiao_index_count(ix, QIAO_INDEX_IMAGE);
    stats->audios = (int64_t)qiao_index_count(ix, QIAO_INDEX_AUDIO);
    qiao_index_free(ix);
    return st;
}
