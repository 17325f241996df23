/* models/data/ring.h - the background loaders' ring of prefetched batches,
 * shared by the retrieval loader (data.c) and the VQA loader (vqa.c). It
 * knows nothing of what a batch holds: a loader gives the size of its batch
 * struct and two callbacks, one that builds batch k and one that frees a
 * batch's contents.
 *
 * Worker w of T builds batches first_batch + w, + w + T, ... into a ring of
 * `prefetch` slots; the consumer takes them in index order and gives each
 * back. Batch k always goes to slot (k - first_batch) % prefetch, so a slot
 * is reused only by the batch `prefetch` places later, and only after the
 * consumer released the earlier one. That both bounds how far the workers
 * run ahead and keeps a slow worker's batch from being starved of a slot by
 * faster ones: the consumer can always get the batch it waits for unless it
 * still holds the one `prefetch` places before (then qmod_ring_next says so
 * instead of hanging).
 *
 * A batch that fails to build stops the ring at its index. Batches before
 * the failure with the lowest index are still delivered in order, so a run
 * sees the same batches whatever the thread count; qmod_ring_next gives
 * that failure's status and message for it and every later index.
 *
 * Threads: one consumer calls next and release (from any one thread at a
 * time); make runs on the workers, several at once, each on its own batch.
 *
 * Not a public header: prefix qmod_ring_. */
#ifndef QIAO_MODELS_DATA_RING_H
#define QIAO_MODELS_DATA_RING_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* Sanity limits: more would be a mistake, not a bigger machine. */
#define QMOD_RING_MAX_THREADS 256
#define QMOD_RING_MAX_PREFETCH 4096

/* Builds batch `index` into `batch` (batch_size bytes: zeroed, or as
 * free_batch left them) on worker thread `worker` (0 .. threads - 1). State
 * a loader keeps per worker, indexed by `worker`, is only ever touched by
 * that worker's thread. A failure returns its status with the thread's
 * error message set (qc_error), which the ring copies for the consumer. */
typedef qiao_status (*qmod_ring_make_fn)(void *ctx, int64_t index, void *batch, int worker);
/* Frees what make put into `batch` and zeroes it. It runs on a batch that
 * is zeroed, built, or left half built by a failed make, and may run on the
 * same batch twice. */
typedef void (*qmod_ring_free_fn)(void *ctx, void *batch);

typedef struct qmod_ring_params {
    const char *name;    /* the loader's prefix in messages: "qmod_loader" gives "qmod_loader_next: ...";
                          * not copied: a string literal */
    size_t batch_size;   /* bytes of one batch (sizeof the loader's batch struct) */
    int threads;         /* workers, 1 .. QMOD_RING_MAX_THREADS */
    int prefetch;        /* slots, 1 .. QMOD_RING_MAX_PREFETCH */
    int64_t first_batch; /* the first index built and handed out, >= 0 (at or past end: none) */
    int64_t end;         /* one past the last index; INT64_MAX: the batches never end */
    qmod_ring_make_fn make;
    qmod_ring_free_fn free_batch;
    void *ctx; /* passed to make and free_batch; outlives the ring */
} qmod_ring_params;

typedef struct qmod_ring qmod_ring;

/* What qmod_ring_start checks first, for a loader to call before it
 * allocates per-worker state: QIAO_ERR_INVALID_ARGUMENT, "NAME_start:
 * threads ... prefetch ... first_batch ...", when threads, prefetch or
 * first_batch is out of range (ctx may still be NULL). */
qiao_status qmod_ring_check(const qmod_ring_params *p);
/* Starts the workers; they begin building at once, so ctx must be ready.
 * Bad params are qmod_ring_check's error; a thread that cannot be
 * started is QIAO_ERR_INTERNAL, after the ones that were are joined. */
qiao_status qmod_ring_start(const qmod_ring_params *p, qmod_ring **out);
/* The next batch in index order (blocks until it is built), owned by the
 * ring until released; *out NULL, with QIAO_OK, from `end` on. Fails with
 * the failure that stopped the ring, for its index and every later one, and
 * with QIAO_ERR_INVALID_ARGUMENT while the batch `prefetch` places back is
 * still held (it could never be built). */
qiao_status qmod_ring_next(qmod_ring *r, void **out);
/* Gives a batch from qmod_ring_next back; its slot takes the batch
 * `prefetch` places later. Its contents are freed by the worker that reuses
 * the slot, off the consumer's thread. Anything else is ignored. */
void qmod_ring_release(qmod_ring *r, const void *batch);
/* Stops and joins the workers, frees every slot's batch (free_batch) and
 * the ring. Accepts NULL. */
void qmod_ring_stop(qmod_ring *r);

#endif /* QIAO_MODELS_DATA_RING_H */
