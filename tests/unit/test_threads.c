/* tests/unit/test_threads.c - the CPU kernels' thread pool
 * (sdk/backend/cpu/threads.c): every index is visited exactly once for many
 * (n, threads); qb_parallel_for's parts are OpenMP's schedule(static)
 * ranges, checked against libgomp itself; every part of qb_parallel runs
 * once; a region inside a region runs serially on its thread; many threads
 * run regions at once, each on its own pool, with the kernels' bits
 * unchanged; a pool's workers are joined when its thread exits; when no
 * worker can be created the work runs on the calling thread; a fork's child
 * still runs regions; and real kernels give the same bits for 1 to 4
 * threads. */
#include <dirent.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backend/cpu/cpu.h"
#include "testutil.h"

static const int64_t Ns[] = {0, 1, 2, 3, 5, 7, 8, 64, 100, 1000, 4097};
static const int THREADS[] = {1, 2, 3, 4, 7, 16};
#define NN (sizeof Ns / sizeof Ns[0])
#define NT (sizeof THREADS / sizeof THREADS[0])

/* ---- coverage and partition --------------------------------------------- */

typedef struct visit {
    atomic_int *count;  /* (n) visits per index */
    int64_t *part_of;   /* (n) the part that visited the index */
    atomic_int *calls;  /* (64) calls per part */
    pthread_t *thread;  /* (n) the thread that visited, or NULL */
    atomic_int empty;   /* a part was called with an empty range */
} visit;

static void visit_range(void *ctx, int64_t b, int64_t e, int part) {
    visit *v = ctx; /* runs on workers: no cmocka asserts here */
    if (b >= e) atomic_store(&v->empty, 1);
    atomic_fetch_add(&v->calls[part], 1);
    for (int64_t i = b; i < e; i++) {
        atomic_fetch_add(&v->count[i], 1);
        v->part_of[i] = part;
        if (v->thread) v->thread[i] = pthread_self();
    }
}

/* The ranges libgomp's schedule(static) gives each thread, recorded from a
 * real OpenMP loop: first[t], last[t] (-1 when empty). Returns false if the
 * team was not nt threads (an OMP_THREAD_LIMIT, say). */
static bool omp_static_ranges(int64_t n, int nt, int64_t *first, int64_t *last) {
    for (int t = 0; t < nt; t++) first[t] = last[t] = -1;
    int *owner = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    assert_non_null(owner);
    atomic_int team = 0;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        owner[i] = omp_get_thread_num();
        atomic_store(&team, omp_get_num_threads());
    }
    bool ok = n == 0 || atomic_load(&team) == nt;
    for (int64_t i = 0; ok && i < n; i++) {
        int t = owner[i];
        if (first[t] < 0) first[t] = i;
        assert_int_equal(last[t] < 0 ? i : last[t] + 1, i); /* contiguous */
        last[t] = i;
    }
    free(owner);
    return ok;
}

static void each_index_once_static(void **state) {
    (void)state;
    int compared = 0;
    for (size_t a = 0; a < NN; a++) {
        for (size_t b = 0; b < NT; b++) {
            const int64_t n = Ns[a];
            const int nt = THREADS[b];
            qb_exec ex;
            qb_exec_cpu(&ex, nt);
            visit v = {.count = calloc((size_t)n + 1, sizeof(atomic_int)),
                       .part_of = calloc((size_t)n + 1, sizeof(int64_t)), .calls = calloc(64, sizeof(atomic_int))};
            assert_true(v.count && v.part_of && v.calls);
            qb_parallel_for(&ex, n, true, visit_range, &v);
            for (int64_t i = 0; i < n; i++) assert_int_equal(atomic_load(&v.count[i]), 1);
            assert_int_equal(atomic_load(&v.empty), 0);
            for (int p = 0; p < 64; p++) assert_true(atomic_load(&v.calls[p]) <= 1);
            /* The parts are qb_static_range's, and those are libgomp's. */
            int64_t first[16], last[16];
            if (n > 1 && nt > 1 && omp_static_ranges(n, nt, first, last)) {
                for (int t = 0; t < nt; t++) {
                    int64_t rb, re;
                    qb_static_range(n, t, nt, &rb, &re);
                    assert_int_equal(rb < re ? rb : -1, first[t]);
                    assert_int_equal(rb < re ? re - 1 : -1, last[t]);
                    for (int64_t i = rb; i < re; i++) assert_int_equal(v.part_of[i], t);
                }
                compared++;
            }
            free(v.count), free(v.part_of), free(v.calls);
        }
    }
    printf("partitions compared with libgomp's schedule(static): %d\n", compared);
    assert_true(compared > 0);
}

/* par = false, or one thread: one call over everything, on this thread. */
static void serial_when_asked(void **state) {
    (void)state;
    const int64_t n = 1000;
    for (int nt = 1; nt <= 4; nt++) {
        for (int par = 0; par < 2; par++) {
            if (par && nt > 1) continue;
            qb_exec ex;
            qb_exec_cpu(&ex, nt);
            visit v = {.count = calloc(n, sizeof(atomic_int)), .part_of = calloc(n, sizeof(int64_t)),
                       .calls = calloc(64, sizeof(atomic_int)), .thread = calloc(n, sizeof(pthread_t))};
            qb_parallel_for(&ex, n, par, visit_range, &v);
            assert_int_equal(atomic_load(&v.calls[0]), 1);
            for (int64_t i = 0; i < n; i++) {
                assert_int_equal(atomic_load(&v.count[i]), 1);
                assert_true(pthread_equal(v.thread[i], pthread_self()));
            }
            free(v.count), free(v.part_of), free(v.calls), free(v.thread);
        }
    }
}

/* ---- qb_parallel ----------------------------------------------------------- */

typedef struct parts {
    atomic_int calls[300];
    atomic_int bad_n;
    int n_parts;
} parts;

static void count_part(void *ctx, int part, int n_parts) {
    parts *p = ctx;
    if (n_parts != p->n_parts) atomic_store(&p->bad_n, 1);
    atomic_fetch_add(&p->calls[part], 1);
}

static void every_part_once(void **state) {
    (void)state;
    static const int n_parts[] = {1, 2, 3, 4, 5, 9, 17, 100, 300};
    for (size_t a = 0; a < sizeof n_parts / sizeof n_parts[0]; a++) {
        for (size_t b = 0; b < NT; b++) {
            qb_exec ex;
            qb_exec_cpu(&ex, THREADS[b]);
            for (int rep = 0; rep < 20; rep++) {
                static parts p;
                memset(&p, 0, sizeof p);
                p.n_parts = n_parts[a];
                qb_parallel(&ex, n_parts[a], count_part, &p);
                assert_int_equal(atomic_load(&p.bad_n), 0);
                for (int i = 0; i < n_parts[a]; i++) assert_int_equal(atomic_load(&p.calls[i]), 1);
            }
        }
    }
    /* The pool grew to the largest team asked for, less the caller. */
    assert_int_equal(qb_threads_workers(), 15);
}

/* ---- nesting ------------------------------------------------------------------ */

typedef struct nest {
    const qb_exec *ex;
    atomic_int inner[4][256];
    atomic_int inner_elsewhere; /* an inner index run on another thread than its outer part */
} nest;

typedef struct inner_ctx {
    nest *n;
    int outer;
    pthread_t self;
} inner_ctx;

static void inner_range(void *ctx, int64_t b, int64_t e, int part) {
    (void)part;
    inner_ctx *c = ctx;
    if (!pthread_equal(pthread_self(), c->self)) atomic_store(&c->n->inner_elsewhere, 1);
    for (int64_t i = b; i < e; i++) atomic_fetch_add(&c->n->inner[c->outer][i], 1);
}

static void outer_part(void *ctx, int part, int n_parts) {
    (void)n_parts;
    nest *n = ctx;
    inner_ctx c = {n, part, pthread_self()};
    qb_parallel_for(n->ex, 256, true, inner_range, &c);
}

static void nested_runs_serially(void **state) {
    (void)state;
    qb_exec ex;
    qb_exec_cpu(&ex, 3);
    static nest n;
    memset(&n, 0, sizeof n);
    n.ex = &ex;
    qb_parallel(&ex, 4, outer_part, &n);
    assert_int_equal(atomic_load(&n.inner_elsewhere), 0);
    for (int o = 0; o < 4; o++)
        for (int i = 0; i < 256; i++) assert_int_equal(atomic_load(&n.inner[o][i]), 1);
}

/* ---- real kernels: the same bits for any thread count ---------------------------- */

typedef struct kernel_out {
    float *ln, *gelu, *gemm, *att, *sm;
} kernel_out;

enum { KN = 96, KC = 512, KOC = 384, KB = 4, KT = 24, KH = 4 };

/* Also called on other threads than cmocka's: returns false rather than
 * asserting when the backend reports a fault. */
static bool run_kernels(int nt, kernel_out *o) {
    qb_exec ex;
    qb_exec_cpu(&ex, nt);
    float *x = qt_alloc(KN * KC), *w = qt_alloc(KC), *b = qt_alloc(KC), *W = qt_alloc(KOC * KC);
    float *mean = qt_alloc(KN), *rstd = qt_alloc(KN);
    float *q = qt_alloc(KB * KT * KC), *k = qt_alloc(KB * KT * KC), *v = qt_alloc(KB * KT * KC);
    qt_fill_normal(x, KN * KC, 1.0f, 1), qt_fill_normal(w, KC, 1.0f, 2), qt_fill_normal(b, KC, 1.0f, 3);
    qt_fill_normal(W, KOC * KC, 0.05f, 4);
    qt_fill_normal(q, KB * KT * KC, 1.0f, 5), qt_fill_normal(k, KB * KT * KC, 1.0f, 6);
    qt_fill_normal(v, KB * KT * KC, 1.0f, 7);
    o->ln = qt_alloc(KN * KC), o->gelu = qt_alloc(KN * KC), o->gemm = qt_alloc(KN * KOC);
    o->att = qt_alloc(KB * KT * KC), o->sm = qt_alloc(KN * KC);
    float *P = qt_alloc(KB * KH * KT * KT);
    ex.ops->layernorm_forward(&ex, o->ln, mean, rstd, x, w, b, KN, KC, 1e-5f);
    ex.ops->gelu_forward(&ex, o->gelu, o->ln, KN * KC);
    ex.ops->gemm(&ex, false, true, KN, KOC, KC, 1.0f, o->gelu, KC, 0, W, KC, 0, 0.0f, o->gemm, KOC, 0, 1);
    ex.ops->attention_forward(&ex, o->att, P, q, k, v, NULL, NULL, KB, KT, KT, KC, KH, false);
    ex.ops->softmax_forward(&ex, o->sm, x, KN, KC);
    const bool ok = ex.ops->sync(&ex) == QIAO_OK;
    free(x), free(w), free(b), free(W), free(mean), free(rstd), free(q), free(k), free(v), free(P);
    return ok;
}

static void kernel_out_free(kernel_out *o) { free(o->ln), free(o->gelu), free(o->gemm), free(o->att), free(o->sm); }

static void kernel_out_equal(const kernel_out *a, const kernel_out *b) {
    assert_memory_equal(a->ln, b->ln, sizeof(float) * KN * KC);
    assert_memory_equal(a->gelu, b->gelu, sizeof(float) * KN * KC);
    assert_memory_equal(a->gemm, b->gemm, sizeof(float) * KN * KOC);
    assert_memory_equal(a->att, b->att, sizeof(float) * KB * KT * KC);
    assert_memory_equal(a->sm, b->sm, sizeof(float) * KN * KC);
}

static void kernels_match_serial(void **state) {
    (void)state;
    kernel_out ref, o;
    assert_true(run_kernels(1, &ref));
    for (int nt = 2; nt <= 4; nt++) {
        assert_true(run_kernels(nt, &o));
        kernel_out_equal(&ref, &o);
        kernel_out_free(&o);
    }
    kernel_out_free(&ref);
}

/* ---- many callers at once ------------------------------------------------------ */

typedef struct caller {
    int index;
    const kernel_out *ref;
    atomic_int *failures;
} caller;

static void *caller_main(void *arg) {
    caller *c = arg;
    const int nt = 2 + c->index % 2;
    qb_exec ex;
    qb_exec_cpu(&ex, nt);
    int bad = 0;
    for (int rep = 0; rep < 40; rep++) {
        const int64_t n = 1 + (rep * 37 + c->index * 11) % 3000;
        atomic_int *count = calloc((size_t)n, sizeof(atomic_int));
        int64_t *part_of = calloc((size_t)n, sizeof(int64_t));
        atomic_int calls[64] = {0};
        visit v = {.count = count, .part_of = part_of, .calls = calls};
        qb_parallel_for(&ex, n, true, visit_range, &v);
        for (int64_t i = 0; i < n; i++) bad += atomic_load(&count[i]) != 1;
        free(count), free(part_of);
    }
    /* Two rounds of real kernels: their bits must not depend on how many
     * helpers the other callers left this one. */
    for (int rep = 0; rep < 2; rep++) {
        kernel_out o;
        bad += !run_kernels(nt, &o);
        bad += memcmp(o.gemm, c->ref->gemm, sizeof(float) * KN * KOC) != 0;
        bad += memcmp(o.att, c->ref->att, sizeof(float) * KB * KT * KC) != 0;
        bad += memcmp(o.ln, c->ref->ln, sizeof(float) * KN * KC) != 0;
        kernel_out_free(&o);
    }
    if (qb_threads_workers() != nt - 1) bad++;
    atomic_fetch_add(c->failures, bad);
    return NULL;
}

static void concurrent_callers(void **state) {
    (void)state;
    enum { CALLERS = 6 };
    kernel_out ref;
    assert_true(run_kernels(1, &ref));
    pthread_t th[CALLERS];
    caller cs[CALLERS];
    atomic_int failures = 0;
    for (int i = 0; i < CALLERS; i++) {
        cs[i] = (caller){i, &ref, &failures};
        assert_int_equal(pthread_create(&th[i], NULL, caller_main, &cs[i]), 0);
    }
    for (int i = 0; i < CALLERS; i++) pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&failures), 0);
    kernel_out_free(&ref);
}

/* ---- a pool's life ---------------------------------------------------------------- */

static int task_count(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* On its own thread: no cmocka asserts; *workers = -1 on a wrong count. */
static void *one_region(void *arg) {
    int *workers = arg;
    qb_exec ex;
    qb_exec_cpu(&ex, 4);
    parts *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_parts = 8;
    qb_parallel(&ex, 8, count_part, p);
    int ok = 1;
    for (int i = 0; i < 8; i++) ok &= atomic_load(&p->calls[i]) == 1;
    free(p);
    *workers = ok ? qb_threads_workers() : -1;
    return NULL;
}

static void workers_joined_at_thread_exit(void **state) {
    (void)state;
    const int before = task_count();
    if (before < 0) skip();
    for (int round = 0; round < 3; round++) {
        pthread_t th;
        int workers = -1;
        assert_int_equal(pthread_create(&th, NULL, one_region, &workers), 0);
        pthread_join(th, NULL);
        assert_int_equal(workers, 3);
        /* The pool's destructor ran as that thread exited and joined its
         * three workers. A joined thread can stay listed in /proc/self/task
         * for a moment: pthread_join returns when the kernel clears its tid,
         * a little before it releases the task (seen once under a loaded
         * suite: 3 tasks for 2). So wait up to a second for the count. */
        int now = task_count();
        for (int i = 0; i < 200 && now != before; i++) {
            nanosleep(&(struct timespec){0, 5000000}, NULL);
            now = task_count();
        }
        assert_int_equal(now, before);
    }
}

typedef struct fail_arg {
    atomic_int bad;
    const kernel_out *ref;
} fail_arg;

static void *fail_region(void *arg) {
    fail_arg *fa = arg;
    atomic_int *bad = &fa->bad;
    qb_exec ex;
    qb_exec_cpu(&ex, 4);
    const int64_t n = 5000;
    visit v = {.count = calloc(n, sizeof(atomic_int)), .part_of = calloc(n, sizeof(int64_t)),
               .calls = calloc(64, sizeof(atomic_int)), .thread = calloc(n, sizeof(pthread_t))};
    qb_parallel_for(&ex, n, true, visit_range, &v);
    for (int64_t i = 0; i < n; i++)
        if (atomic_load(&v.count[i]) != 1 || !pthread_equal(v.thread[i], pthread_self())) atomic_store(bad, 1);
    /* The parts are still the static ones: only who runs them changed. */
    for (int p = 0; p < 4; p++)
        if (atomic_load(&v.calls[p]) != 1) atomic_store(bad, 1);
    if (qb_threads_workers() != 0) atomic_store(bad, 1);
    kernel_out o;
    if (!run_kernels(4, &o)) atomic_store(bad, 1);
    const kernel_out *ref = fa->ref;
    if (memcmp(o.gemm, ref->gemm, sizeof(float) * KN * KOC) || memcmp(o.att, ref->att, sizeof(float) * KB * KT * KC))
        atomic_store(bad, 1);
    kernel_out_free(&o);
    free(v.count), free(v.part_of), free(v.calls), free(v.thread);
    return NULL;
}

/* pthread_create failing (forced): the work runs on the calling thread. */
static void creation_failure_runs_serially(void **state) {
    (void)state;
    kernel_out ref;
    assert_true(run_kernels(1, &ref));
    fail_arg fa = {0, &ref};
    qb_threads_test_fail_create(1);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, fail_region, &fa), 0);
    pthread_join(th, NULL);
    qb_threads_test_fail_create(0);
    assert_int_equal(atomic_load(&fa.bad), 0);
    kernel_out_free(&ref);
}

/* A fork's child inherits this thread's pool but none of its workers (and
 * maybe a mutex some worker held): its regions must run on a fresh pool
 * whose workers exist in the child (counted in /proc/self/task), twice,
 * each part once. The child exits with 0 on success; an alarm ends a hung
 * child. */
static void fork_child_runs_regions(void **state) {
    (void)state;
    qb_exec ex;
    qb_exec_cpu(&ex, 3);
    static parts p;
    memset(&p, 0, sizeof p);
    p.n_parts = 6;
    qb_parallel(&ex, 6, count_part, &p); /* this thread's pool now has workers */
    assert_true(qb_threads_workers() >= 2);
    fflush(NULL);
    const pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(20);
        int bad = 0;
        for (int round = 0; round < 2; round++) {
            memset(&p, 0, sizeof p);
            p.n_parts = 6;
            qb_parallel(&ex, 6, count_part, &p);
            for (int i = 0; i < 6; i++) bad += atomic_load(&p.calls[i]) != 1;
        }
        const int tasks = task_count();
        bad += tasks >= 0 && (qb_threads_workers() != 2 || tasks != 3);
        _exit(bad ? 1 : 0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(each_index_once_static),
    cmocka_unit_test(serial_when_asked),
    cmocka_unit_test(every_part_once),
    cmocka_unit_test(nested_runs_serially),
    cmocka_unit_test(kernels_match_serial),
    cmocka_unit_test(concurrent_callers),
    cmocka_unit_test(workers_joined_at_thread_exit),
    cmocka_unit_test(creation_failure_runs_serially),
    cmocka_unit_test(fork_child_runs_regions),
};

QT_MAIN(tests)
