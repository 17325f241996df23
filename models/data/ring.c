/* models/data/ring.c - the loaders' ring of prefetched batches (see ring.h). */
#include "models/data/ring.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RING_MSG_MAX 1024

typedef enum slot_state { SLOT_FREE = 0, SLOT_BUILDING, SLOT_READY, SLOT_OUT } slot_state;

typedef struct slot {
    slot_state state;
    int64_t next; /* the batch index this slot is for while FREE or BUILDING */
    void *batch;  /* (batch_size bytes) holds batch `next` once READY or OUT */
} slot;

typedef struct worker {
    qmod_ring *r;
    int w;
    bool started;
    pthread_t th;
} worker;

struct qmod_ring {
    qmod_ring_params p;
    pthread_mutex_t mu;
    pthread_cond_t ready; /* a slot became READY, or an error or stop happened (the consumer waits) */
    pthread_cond_t space; /* a slot became FREE, or an error or stop happened (workers wait) */
    slot *slots;          /* (prefetch) */
    unsigned char *store; /* (prefetch, stride) the slots' batches */
    worker *workers;      /* (threads) */
    int64_t next_out;     /* the index qmod_ring_next hands out next */
    bool stop;
    int64_t err_index; /* the failed batch with the lowest index; INT64_MAX: none */
    qiao_status err;
    char err_msg[RING_MSG_MAX]; /* copied: qc_error's message is the worker thread's */
};

static slot *slot_of(qmod_ring *r, int64_t index) {
    return &r->slots[(index - r->p.first_batch) % r->p.prefetch];
}

static void *worker_main(void *arg) {
    worker *w = arg;
    qmod_ring *r = w->r;
    for (int64_t k = r->p.first_batch + w->w; k < r->p.end; k += r->p.threads) {
        slot *s = slot_of(r, k);
        pthread_mutex_lock(&r->mu);
        while (!r->stop && k <= r->err_index && !(s->state == SLOT_FREE && s->next == k))
            pthread_cond_wait(&r->space, &r->mu);
        /* Past a failure nothing more is delivered, so stop building. */
        bool quit = r->stop || k > r->err_index;
        if (!quit) s->state = SLOT_BUILDING;
        pthread_mutex_unlock(&r->mu);
        if (quit) break;

        /* Build outside the lock: the slot is this worker's until READY. */
        r->p.free_batch(r->p.ctx, s->batch);
        qiao_status st = r->p.make(r->p.ctx, k, s->batch, w->w);

        pthread_mutex_lock(&r->mu);
        if (st == QIAO_OK) {
            s->state = SLOT_READY;
        } else {
            s->state = SLOT_FREE;
            if (k < r->err_index) {
                r->err_index = k;
                r->err = st;
                snprintf(r->err_msg, sizeof r->err_msg, "%s", qiao_last_error());
            }
            /* Workers waiting on indices past this one must see it and leave. */
            pthread_cond_broadcast(&r->space);
        }
        pthread_cond_broadcast(&r->ready);
        pthread_mutex_unlock(&r->mu);
        if (st != QIAO_OK) break;
    }
    return NULL;
}

/* Each slot's batch aligned for any struct a loader's batch may be; 0 when
 * prefetch of them would not fit in a size_t. */
static size_t stride_of(const qmod_ring_params *p) {
    const size_t a = alignof(max_align_t);
    if (p->batch_size > SIZE_MAX - a) return 0;
    const size_t stride = (p->batch_size + a - 1) / a * a;
    return stride <= SIZE_MAX / (size_t)p->prefetch ? stride : 0;
}

qiao_status qmod_ring_check(const qmod_ring_params *p) {
    if (!p || !p->name || !p->make || !p->free_batch || p->batch_size == 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_ring: name, batch_size, make and free_batch are required");
    if (p->threads < 1 || p->threads > QMOD_RING_MAX_THREADS || p->prefetch < 1 ||
        p->prefetch > QMOD_RING_MAX_PREFETCH || p->first_batch < 0)
        return qc_error(
            QIAO_ERR_INVALID_ARGUMENT, "%s_start: threads %d (1..%d), prefetch %d (1..%d), first_batch %lld (>= 0)",
            p->name, p->threads, QMOD_RING_MAX_THREADS, p->prefetch, QMOD_RING_MAX_PREFETCH, (long long)p->first_batch);
    if (stride_of(p) == 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s_start: batch_size %zu too large", p->name, p->batch_size);
    return QIAO_OK;
}

qiao_status qmod_ring_start(const qmod_ring_params *p, qmod_ring **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_ring_start: out is NULL");
    *out = NULL;
    qiao_status st = qmod_ring_check(p);
    if (st != QIAO_OK) return st;
    const size_t stride = stride_of(p);
    qmod_ring *r = calloc(1, sizeof *r);
    if (!r) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s_start: out of memory", p->name);
    r->p = *p;
    r->next_out = p->first_batch;
    r->err_index = INT64_MAX;
    r->slots = calloc((size_t)p->prefetch, sizeof *r->slots);
    r->store = calloc((size_t)p->prefetch, stride);
    r->workers = calloc((size_t)p->threads, sizeof *r->workers);
    if (!r->slots || !r->store || !r->workers) {
        free(r->slots);
        free(r->store);
        free(r->workers);
        free(r);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s_start: out of memory", p->name);
    }
    for (int i = 0; i < p->prefetch; i++) {
        r->slots[i].next = p->first_batch + i;
        r->slots[i].batch = r->store + (size_t)i * stride;
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->ready, NULL);
    pthread_cond_init(&r->space, NULL);
    for (int i = 0; i < p->threads; i++) {
        worker *w = &r->workers[i];
        w->r = r;
        w->w = i;
        int e = pthread_create(&w->th, NULL, worker_main, w);
        if (e != 0) {
            qmod_ring_stop(r);
            return qc_error(QIAO_ERR_INTERNAL, "%s_start: pthread_create: %s", p->name, strerror(e));
        }
        w->started = true;
    }
    *out = r;
    return QIAO_OK;
}

qiao_status qmod_ring_next(qmod_ring *r, void **out) {
    if (!r || !out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_ring_next: ring and out are required");
    *out = NULL;
    pthread_mutex_lock(&r->mu);
    const int64_t k = r->next_out;
    if (k >= r->p.end) {
        pthread_mutex_unlock(&r->mu);
        return QIAO_OK;
    }
    slot *s = slot_of(r, k);
    qiao_status st = QIAO_OK;
    bool held = false;
    char msg[RING_MSG_MAX];
    for (;;) {
        if (k >= r->err_index) {
            st = r->err;
            snprintf(msg, sizeof msg, "%s", r->err_msg);
            break;
        }
        if (s->state == SLOT_READY && s->next == k) break;
        if (s->state == SLOT_OUT) {
            /* Batch k - prefetch is still held: batch k can never be built. */
            held = true;
            break;
        }
        pthread_cond_wait(&r->ready, &r->mu);
    }
    if (st == QIAO_OK && !held) {
        s->state = SLOT_OUT;
        r->next_out++;
        *out = s->batch;
    }
    pthread_mutex_unlock(&r->mu);
    if (held)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "%s_next: batch %lld is still held; with prefetch %d, release it before asking for batch %lld",
                        r->p.name, (long long)(k - r->p.prefetch), r->p.prefetch, (long long)k);
    if (st != QIAO_OK) return qc_error(st, "%s", msg);
    return QIAO_OK;
}

void qmod_ring_release(qmod_ring *r, const void *batch) {
    if (!r || !batch) return;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->p.prefetch; i++) {
        slot *s = &r->slots[i];
        if (s->batch != batch || s->state != SLOT_OUT) continue;
        s->state = SLOT_FREE;
        s->next += r->p.prefetch;
        pthread_cond_broadcast(&r->space);
        break;
    }
    pthread_mutex_unlock(&r->mu);
}

void qmod_ring_stop(qmod_ring *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    r->stop = true;
    pthread_cond_broadcast(&r->space);
    pthread_cond_broadcast(&r->ready);
    pthread_mutex_unlock(&r->mu);
    for (int i = 0; i < r->p.threads; i++)
        if (r->workers[i].started) pthread_join(r->workers[i].th, NULL);
    for (int i = 0; i < r->p.prefetch; i++)
        r->p.free_batch(r->p.ctx, r->slots[i].batch);
    pthread_cond_destroy(&r->space);
    pthread_cond_destroy(&r->ready);
    pthread_mutex_destroy(&r->mu);
    free(r->slots);
    free(r->store);
    free(r->workers);
    free(r);
}
