/* The CPU kernels' thread pool (threads.h says what it promises).
 *
 * One pool per calling thread, found through a pthread key whose destructor
 * stops and joins its workers when that thread exits. A region:
 *
 *   1. the caller writes the job (fn, ctx, n_parts), resets the claim word
 *      to (seq, n_parts, next part 0) and the done count, then publishes
 *      gen = (seq, helpers) and wakes the workers if any sleeps;
 *   2. the first `helpers` workers and the caller claim parts with a CAS on
 *      the claim word until none is left, each claimed part run once;
 *   3. the caller waits until `done` reaches n_parts.
 *
 * A worker touches the job only after a CAS that matched the region's seq,
 * and the caller cannot start the next region before that part is done, so
 * a late worker (still asleep when the caller ran its part) finds the claim
 * word moved on and touches nothing. Waits spin with pause for QB_SPIN_NS,
 * then sleep on a condition variable; the sleeper count is read after the
 * state it guards is published (both seq_cst), so a wake-up is never lost.
 * Everything is C11 atomics and pthreads, which ThreadSanitizer follows. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#endif
#include "backend/cpu/threads.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

/* How long a worker waiting for the next region, or a caller waiting for
 * its helpers, spins before it sleeps. Long enough to bridge the serial
 * gaps between a forward's regions (a small layernorm, a residual add) so
 * back-to-back regions cost no wake-up; short enough that a pool left idle
 * gives its core back within a fraction of a millisecond, where libgomp's
 * default spins for milliseconds. docs/benchmarks.md ("qiao's own thread
 * pool") has the measurements behind the figure. */
#define QB_SPIN_NS 50000
/* Pools grow to at most this many workers (threads beyond 256 are capped). */
#define QB_MAX_WORKERS 255

typedef struct qb_pool {
    pthread_mutex_t mu;
    pthread_cond_t wake_cv; /* workers sleep here for the next region */
    pthread_cond_t done_cv; /* the caller sleeps here for the parts to finish */
    /* gen = seq << 16 | helpers: bumped once per region; worker w helps if
     * w < helpers. stop ends the workers. */
    _Atomic uint64_t gen;
    atomic_int stop;
    atomic_int n_sleeping;      /* workers inside (or entering) cond_wait */
    atomic_int caller_sleeping; /* the caller is inside (or entering) its wait */
    /* claim = seq << 32 | n_parts << 16 | next part */
    _Atomic uint64_t claim;
    atomic_int done; /* parts finished in the current region */
    /* The current region's job: written by the caller before it publishes
     * claim (release), read by a worker only after a matching claim. */
    qb_part_fn fn;
    void *ctx;
    uint32_t seq;  /* the caller's count of regions, wrapping (caller-only) */
    int n_workers; /* caller-only */
    unsigned fork_epoch;
    struct qb_pool *forsaken_next; /* the list of pools dropped in fork children */
    pthread_t th[QB_MAX_WORKERS];
    struct worker_arg {
        struct qb_pool *pool;
        int index;
        uint64_t start_gen;
    } args[QB_MAX_WORKERS];
} qb_pool;

#define CLAIM_BITS 16
#define CLAIM_MASK ((UINT64_C(1) << CLAIM_BITS) - 1)
/* Parts per pooled region; a larger request runs in rounds of this many. */
#define MAX_PARTS ((int)CLAIM_MASK)

static _Thread_local int tl_depth; /* > 0 inside a region, and always on workers */
static pthread_key_t g_key;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_key_ok;
static atomic_int g_running;      /* threads inside regions, all pools together */
static atomic_int g_fail_create;  /* test hook */
static atomic_uint g_fork_epoch;  /* bumped in a fork's child */
static int g_ncpu;

/* ---- timing and waiting ---------------------------------------------------- */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Spins until *w != old (returns true) or QB_SPIN_NS pass (false). The
 * clock is read every 32 pauses: a pause is 10-140 cycles depending on the
 * core, so a fixed count would mean very different times. */
static bool spin_until_changed(_Atomic uint64_t *w, uint64_t old, atomic_int *stop) {
    int64_t t0 = 0;
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(w, memory_order_acquire) != old) return true;
        if (stop && atomic_load_explicit(stop, memory_order_relaxed)) return true;
        cpu_relax();
        if ((i & 31) == 0) {
            int64_t t = now_ns();
            if (t0 == 0) t0 = t;
            else if (t - t0 > QB_SPIN_NS) return false;
        }
    }
}

/* Spins until *done == n (true) or QB_SPIN_NS pass (false). */
static bool spin_until_done(atomic_int *done, int n) {
    int64_t t0 = 0;
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(done, memory_order_acquire) == n) return true;
        cpu_relax();
        if ((i & 31) == 0) {
            int64_t t = now_ns();
            if (t0 == 0) t0 = t;
            else if (t - t0 > QB_SPIN_NS) return false;
        }
    }
}

/* ---- the workers ------------------------------------------------------------ */

/* Claims and runs parts of region `seq` until none is left. */
static void run_parts(qb_pool *p, uint64_t seq) {
    uint64_t c = atomic_load_explicit(&p->claim, memory_order_acquire);
    for (;;) {
        if (c >> (2 * CLAIM_BITS) != seq) return;
        const uint64_t next = c & CLAIM_MASK, n = (c >> CLAIM_BITS) & CLAIM_MASK;
        if (next >= n) return;
        if (!atomic_compare_exchange_weak_explicit(&p->claim, &c, c + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        p->fn(p->ctx, (int)next, (int)n);
        if (atomic_fetch_add(&p->done, 1) + 1 == (int)n && atomic_load(&p->caller_sleeping)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
        c = atomic_load_explicit(&p->claim, memory_order_acquire);
    }
}

static void *worker_main(void *arg) {
    const struct worker_arg *a = arg;
    qb_pool *p = a->pool;
    const int w = a->index;
    uint64_t seen = a->start_gen;
    tl_depth = 1; /* a region asked for from inside a part runs serially */
    for (;;) {
        if (!spin_until_changed(&p->gen, seen, &p->stop)) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->n_sleeping, 1);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->wake_cv, &p->mu);
            atomic_fetch_sub(&p->n_sleeping, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (w < (int)(seen & 0xffff)) run_parts(p, (seen >> 16) & 0xffffffffu);
    }
}

static void pool_destroy(void *v) {
    qb_pool *p = v;
    if (!p) return;
    if (p->fork_epoch == atomic_load(&g_fork_epoch)) {
        atomic_store(&p->stop, 1);
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake_cv);
        pthread_mutex_unlock(&p->mu);
        for (int i = 0; i < p->n_workers; i++) pthread_join(p->th[i], NULL);
        pthread_cond_destroy(&p->wake_cv);
        pthread_cond_destroy(&p->done_cv);
        pthread_mutex_destroy(&p->mu);
        free(p);
    }
    /* A pool inherited across fork() has no threads in this process and its
     * mutex may be held by one that is gone: left alone (see atfork_child). */
}

/* In a fork's child only the forking thread exists: a pool it inherited
 * would wait forever for workers. Pools remember the epoch they were made
 * in; a pool of an older epoch is dropped: kept on this list, reachable,
 * never freed (its mutex may be locked by a thread that no longer exists).
 * Only the forking thread can hold such a pool, so the list needs no lock
 * (one pool per fork, in the process that forked). */
static qb_pool *g_forsaken;
static void atfork_child(void) { atomic_fetch_add(&g_fork_epoch, 1); }

static void init_once(void) {
    g_key_ok = pthread_key_create(&g_key, pool_destroy) == 0;
    pthread_atfork(NULL, NULL, atfork_child);
    g_ncpu = qb_cpu_count();
}

int qb_cpu_count(void) {
#ifdef CPU_COUNT
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* The calling thread's pool with at least `want` workers if they can be
 * made (fewer if not); NULL if there is no pool at all. */
static qb_pool *get_pool(int want) {
    pthread_once(&g_once, init_once);
    if (!g_key_ok) return NULL;
    qb_pool *p = pthread_getspecific(g_key);
    if (p && p->fork_epoch != atomic_load(&g_fork_epoch)) {
        p->forsaken_next = g_forsaken;
        g_forsaken = p;
        p = NULL;
        if (pthread_setspecific(g_key, NULL) != 0) return NULL;
    }
    if (!p) {
        p = calloc(1, sizeof *p);
        if (!p) return NULL;
        if (pthread_mutex_init(&p->mu, NULL) != 0) {
            free(p);
            return NULL;
        }
        if (pthread_cond_init(&p->wake_cv, NULL) != 0) {
            pthread_mutex_destroy(&p->mu);
            free(p);
            return NULL;
        }
        if (pthread_cond_init(&p->done_cv, NULL) != 0) {
            pthread_cond_destroy(&p->wake_cv);
            pthread_mutex_destroy(&p->mu);
            free(p);
            return NULL;
        }
        p->fork_epoch = atomic_load(&g_fork_epoch);
        if (pthread_setspecific(g_key, p) != 0) {
            pool_destroy(p);
            return NULL;
        }
    }
    if (want > QB_MAX_WORKERS) want = QB_MAX_WORKERS;
    if (p->n_workers < want && !atomic_load(&g_fail_create)) {
        /* Workers block every signal: an application's handlers run on its
         * own threads, as they did before qiao made any. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        while (p->n_workers < want) {
            struct worker_arg *a = &p->args[p->n_workers];
            a->pool = p;
            a->index = p->n_workers;
            a->start_gen = atomic_load(&p->gen);
            if (pthread_create(&p->th[p->n_workers], NULL, worker_main, a) != 0) break;
            p->n_workers++;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    return p;
}

/* ---- regions ----------------------------------------------------------------- */

static void run_serial(int n_parts, qb_part_fn fn, void *ctx) {
    tl_depth++;
    for (int i = 0; i < n_parts; i++) fn(ctx, i, n_parts);
    tl_depth--;
}

typedef struct offset_job {
    qb_part_fn fn;
    void *ctx;
    int base, n_parts;
} offset_job;
static void offset_part(void *ctx, int part, int n) {
    (void)n;
    const offset_job *j = ctx;
    j->fn(j->ctx, j->base + part, j->n_parts);
}

void qb_parallel(const qb_exec *ex, int n_parts, qb_part_fn fn, void *ctx) {
    if (n_parts <= 0) return;
    int nt = ex && ex->n_threads > 1 ? ex->n_threads : 1;
    if (nt > n_parts) nt = n_parts;
    if (nt <= 1 || tl_depth > 0) {
        run_serial(n_parts, fn, ctx);
        return;
    }
    if (n_parts > MAX_PARTS) {
        /* Beyond the claim word's 16 bits: rounds of MAX_PARTS (no kernel asks this). */
        for (int base = 0; base < n_parts; base += MAX_PARTS) {
            offset_job j = {fn, ctx, base, n_parts};
            qb_parallel(ex, n_parts - base < MAX_PARTS ? n_parts - base : MAX_PARTS, offset_part, &j);
        }
        return;
    }
    qb_pool *p = get_pool(nt - 1);
    int helpers = p ? p->n_workers : 0;
    if (helpers > nt - 1) helpers = nt - 1;
    /* Share the CPUs with regions already running on other threads' pools:
     * a lone region gets what it asked for; otherwise no more than the CPUs
     * left (the caller's own thread is busy either way). */
    const int others = atomic_load_explicit(&g_running, memory_order_relaxed);
    if (others > 0 && helpers > g_ncpu - others - 1) helpers = g_ncpu - others - 1 > 0 ? g_ncpu - others - 1 : 0;
    if (helpers <= 0) {
        run_serial(n_parts, fn, ctx);
        return;
    }
    atomic_fetch_add_explicit(&g_running, helpers + 1, memory_order_relaxed);
    const uint64_t seq = ++p->seq; /* 32 bits: seq << 32 fills the claim word */
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store_explicit(&p->claim, seq << (2 * CLAIM_BITS) | (uint64_t)n_parts << CLAIM_BITS, memory_order_release);
    atomic_store(&p->gen, seq << 16 | (uint64_t)helpers);
    if (atomic_load(&p->n_sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake_cv);
        pthread_mutex_unlock(&p->mu);
    }
    tl_depth++;
    run_parts(p, seq);
    tl_depth--;
    /* Every part is claimed; wait for the helpers' to finish. */
    if (!spin_until_done(&p->done, n_parts)) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->caller_sleeping, 1);
        while (atomic_load(&p->done) != n_parts) pthread_cond_wait(&p->done_cv, &p->mu);
        atomic_store(&p->caller_sleeping, 0);
        pthread_mutex_unlock(&p->mu);
    }
    atomic_fetch_sub_explicit(&g_running, helpers + 1, memory_order_relaxed);
}

typedef struct range_job {
    qb_range_fn fn;
    void *ctx;
    int64_t n;
} range_job;

static void range_part(void *ctx, int part, int n_parts) {
    const range_job *j = ctx;
    int64_t b, e;
    qb_static_range(j->n, part, n_parts, &b, &e);
    if (b < e) j->fn(j->ctx, b, e, part);
}

void qb_parallel_for(const qb_exec *ex, int64_t n, bool par, qb_range_fn fn, void *ctx) {
    if (n <= 0) return;
    const int nt = ex && ex->n_threads > 1 ? ex->n_threads : 1;
    if (!par || n == 1 || nt == 1 || tl_depth > 0) {
        tl_depth++;
        fn(ctx, 0, n, 0);
        tl_depth--;
        return;
    }
    /* schedule(static) over nt threads gives the first min(n, nt) threads a
     * non-empty range, the same ranges as a split into min(n, nt) parts. */
    range_job j = {fn, ctx, n};
    qb_parallel(ex, nt < n ? nt : (int)n, range_part, &j);
}

int qb_threads_workers(void) {
    pthread_once(&g_once, init_once);
    if (!g_key_ok) return 0;
    qb_pool *p = pthread_getspecific(g_key);
    return p && p->fork_epoch == atomic_load(&g_fork_epoch) ? p->n_workers : 0;
}

void qb_threads_test_fail_create(int fail) { atomic_store(&g_fail_create, fail); }
