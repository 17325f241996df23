/* sdk/backend/cpu/threads.h - qiao's own thread pool, which every CPU kernel
 * runs its parallel regions on (docs/design.md, "Threads").
 *
 * Why not OpenMP: libgomp takes its wait policy from OMP_WAIT_POLICY at
 * process start. Under "passive" every region put the second thread to
 * sleep and woke it with a futex (~28 us on the 2-core VM, a fifth of a
 * batch-1 forward); under the default its workers spin for milliseconds
 * against anything else on the machine. This pool spins for a bounded few
 * tens of microseconds (QB_SPIN_NS in threads.c), then sleeps, whatever the
 * environment says, and a caller never waits for a sleeping worker to wake
 * when it can run the work itself.
 *
 * Partition and bits. A region is split into n_parts parts, each run exactly
 * once; which thread runs a part is decided at run time (the first to claim
 * it), but what a part computes is fixed by (part, n_parts) alone. The range
 * of qb_parallel_for's part p is OpenMP's schedule(static) split of [0, n)
 * over ex->n_threads threads, so kernels keep the bits they had under
 * OpenMP, and bits never depend on how many workers actually helped.
 *
 * Concurrency. Each calling thread gets its own pool, created on its first
 * parallel region and joined when the thread exits, so sessions on several
 * threads never queue behind one another. Oversubscription is bounded
 * process-wide: a region started while others are running takes helpers
 * only up to the number of online CPUs (a lone caller gets the threads it
 * asked for, as OpenMP gives them), so two sessions on a 2-core desktop run
 * side by side on one core each instead of four threads on two cores.
 *
 * Failure. Nothing here fails: when a pool or a worker cannot be created,
 * the parts run on the calling thread. A region inside a region (or on a
 * worker) runs serially on the thread that asks. */
#ifndef QIAO_BACKEND_CPU_THREADS_H
#define QIAO_BACKEND_CPU_THREADS_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"

/* Runs part `part` of `n_parts`. Called on the caller's thread or a worker. */
typedef void (*qb_part_fn)(void *ctx, int part, int n_parts);
/* Runs indices [begin, end): the static range of part `part`. */
typedef void (*qb_range_fn)(void *ctx, int64_t begin, int64_t end, int part);

/* fn(ctx, p, n_parts) for every p in [0, n_parts), each exactly once, on up
 * to min(n_parts, ex->n_threads) threads including the caller's; returns
 * when all are done. For kernels that split by hand (dense's GEMM slabs,
 * the packed GEMM's tiles). */
void qb_parallel(const qb_exec *ex, int n_parts, qb_part_fn fn, void *ctx);

/* `#pragma omp parallel for num_threads(ex->n_threads) schedule(static)
 * if (par)` over [0, n): with par false, n <= 1 or one thread, a single
 * fn(ctx, 0, n, 0) on the calling thread; otherwise parts of
 * qb_static_range(n, p, min(n, ex->n_threads)). */
void qb_parallel_for(const qb_exec *ex, int64_t n, bool par, qb_range_fn fn, void *ctx);

/* libgomp's schedule(static) without a chunk: n / n_parts indices each, the
 * first n % n_parts parts one more. */
static inline void qb_static_range(int64_t n, int part, int n_parts, int64_t *begin, int64_t *end) {
    const int64_t q = n / n_parts, r = n % n_parts;
    const int64_t b = part < r ? part * (q + 1) : part * q + r;
    *begin = b;
    *end = b + q + (part < r);
}

/* Online CPUs this process may run on (its affinity mask), >= 1. */
int qb_cpu_count(void);

/* ---- for tests and benchmarks ------------------------------------------- */
/* Workers the calling thread's pool holds now (0 before its first region). */
int qb_threads_workers(void);
/* While nonzero, creating a worker thread fails as if pthread_create had
 * (the serial fallback). Process-wide; tests only. */
void qb_threads_test_fail_create(int fail);

#endif
