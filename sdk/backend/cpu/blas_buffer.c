/* Every cblas_sgemm qiao makes goes through qb_cpu_sgemm, gated so that
 * OpenBLAS never has to map a work buffer that cannot be had.
 *
 * Why: OpenBLAS (0.3.21 as Debian 12 ships it, libopenblas0-pthread; the
 * OpenMP build has the same allocator) takes a 128 MiB work buffer for each
 * GEMM from one process-wide pool of slots (driver/others/memory.c, built
 * without USE_TLS: a second thread reuses the first thread's buffer, checked
 * with /proc/self/status). A call takes the first free slot and a slot keeps
 * its buffer once mapped, so the mapped slots are a prefix of the pool, and a
 * call maps a new one only when every mapped slot is in use. When neither
 * mmap nor malloc can give 128 MiB (an address-space limit, a container's
 * cap), blas_memory_alloc retries forever: under `ulimit -v` the OpenMP team
 * of qb_cpu_attention_forward spun in malloc(134221824) for good.
 *
 * The gate: `g_active` counts qiao's calls in flight (each holds at most one
 * slot) and `g_known` counts the slots seen mapped. A call that finds fewer
 * calls in flight than known slots finds a mapped slot free in OpenBLAS, so
 * nothing is mapped: that is the path of every call once the pool has grown
 * to the team sizes in use. Otherwise the pool must grow first, under
 * g_lock: qiao itself takes buffers from OpenBLAS's pool
 * (blas_memory_alloc, exported though not in cblas.h) and holds them until
 * there is a known slot to spare, and before each one that could be a new
 * mapping it checks that 128 MiB can be mapped right now. If they cannot,
 * the call waits for a call in flight to return and runs in its slot (the
 * GEMMs are serialized, the result is the same); only when no slot is
 * mapped at all does qb_cpu_sgemm return false. The kernel then records
 * QIAO_ERR_OUT_OF_MEMORY for its calling thread and qb_cpu_sync reports it
 * (kernels return void, as on a GPU an asynchronous error surfaces at sync).
 *
 * What this cannot see: memory that another thread takes between the check
 * and OpenBLAS's own mmap (once per new slot, microseconds), OpenBLAS calls
 * that the application makes itself while qiao runs (their slots are not
 * counted), and an OpenBLAS built with USE_TLS=1 (a buffer per thread: the
 * first call of each thread may still map one unchecked). */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>

#include <cblas.h>

#include "backend/cpu/cpu.h"
#include "core/core.h"

/* OpenBLAS's internal pool (common.h); procpos 0 is what its GEMM passes. */
void *blas_memory_alloc(int procpos);
void blas_memory_free(void *buffer);

/* OpenBLAS's BUFFER_SIZE on x86-64 (32 << 22), plus the page its malloc
 * fallback adds and malloc's own header. */
#define BLAS_BUFFER_PROBE (((size_t)128 << 20) + ((size_t)64 << 10))
/* OpenBLAS's pool has 2 * MAX_THREADS slots (128 in Debian's build). */
#define MAX_SLOTS 128

static atomic_int g_active; /* slots qiao may hold: calls in flight, buffers held while growing */
static atomic_int g_known;  /* distinct slot buffers seen, all mapped for good */
static atomic_int g_waiters;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_freed = PTHREAD_COND_INITIALIZER;
static void *g_seen[MAX_SLOTS]; /* under g_lock */

/* The first failure of a kernel called on this thread, until qb_cpu_sync. */
static _Thread_local qiao_status tl_fault;

static bool buffer_available(void) {
    void *p = mmap(NULL, BLAS_BUFFER_PROBE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return false;
    munmap(p, BLAS_BUFFER_PROBE);
    return true;
}

/* Under g_lock: records a slot buffer OpenBLAS handed out. */
static void note_slot(void *buf) {
    const int k = atomic_load(&g_known);
    for (int i = 0; i < k; i++)
        if (g_seen[i] == buf) return;
    if (k < MAX_SLOTS) {
        g_seen[k] = buf;
        atomic_store(&g_known, k + 1);
    }
}

/* Under g_lock: grows the known slots until one is to spare for a call, by
 * holding buffers of the pool (each counted in g_active while held, so no
 * call slips past the count meanwhile). False when a buffer that could be a
 * new mapping cannot be had. */
static bool grow(void) {
    void *held[MAX_SLOTS];
    int n = 0;
    bool ok = true;
    /* Until the calls in flight, not counting what this holds, leave a
     * known slot free. A buffer handed out is a new mapping or a known slot
     * that nobody held; either way the loop ends within the pool's size. */
    while (atomic_load(&g_active) - n >= atomic_load(&g_known) && n < MAX_SLOTS) {
        if (!buffer_available()) {
            ok = false;
            break;
        }
        atomic_fetch_add(&g_active, 1);
        held[n] = blas_memory_alloc(0);
        if (!held[n]) { /* the pool overflowed: OpenBLAS gives up, and so do we */
            atomic_fetch_sub(&g_active, 1);
            ok = false;
            break;
        }
        note_slot(held[n++]);
    }
    for (int i = 0; i < n; i++) blas_memory_free(held[i]);
    atomic_fetch_sub(&g_active, n);
    return ok;
}

/* Takes a place among the calls in flight once a mapped slot is free for
 * it. False when none is mapped and none can be. */
static bool enter(void) {
    for (;;) {
        int a = atomic_load(&g_active);
        if (a < atomic_load(&g_known)) {
            if (atomic_compare_exchange_weak(&g_active, &a, a + 1)) return true;
            continue;
        }
        pthread_mutex_lock(&g_lock);
        bool grown = grow();
        if (!grown) {
            if (atomic_load(&g_known) == 0) {
                pthread_mutex_unlock(&g_lock);
                return false;
            }
            /* Wait for a call to return a known slot. g_waiters is raised
             * before g_active is read again and leave() lowers g_active
             * before it reads g_waiters (both sequentially consistent), so
             * one of the two sees the other: no wake-up is lost. */
            atomic_fetch_add(&g_waiters, 1);
            while (atomic_load(&g_active) >= atomic_load(&g_known)) pthread_cond_wait(&g_freed, &g_lock);
            atomic_fetch_sub(&g_waiters, 1);
        }
        pthread_mutex_unlock(&g_lock);
    }
}

static void leave(void) {
    atomic_fetch_sub(&g_active, 1);
    if (atomic_load(&g_waiters) > 0) {
        pthread_mutex_lock(&g_lock);
        pthread_cond_broadcast(&g_freed);
        pthread_mutex_unlock(&g_lock);
    }
}

bool qb_cpu_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                  const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (!enter()) return false;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (blasint)M,
                (blasint)N, (blasint)K, alpha, A, (blasint)lda, B, (blasint)ldb, beta, C, (blasint)ldc);
    leave();
    return true;
}

void qb_cpu_fault_oom(void) {
    if (tl_fault == QIAO_OK) tl_fault = QIAO_ERR_OUT_OF_MEMORY;
}

qiao_status qb_cpu_sync(const qb_exec *ex) {
    (void)ex;
    const qiao_status st = tl_fault;
    tl_fault = QIAO_OK;
    if (st == QIAO_OK) return QIAO_OK;
    return qc_error(st, "OpenBLAS needs a %zu MiB work buffer and none can be mapped",
                    BLAS_BUFFER_PROBE >> 20);
}
