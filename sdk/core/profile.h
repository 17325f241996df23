/* sdk/core/profile.h - the per-layer profiler (prefix qc_prof_): where a
 * training step's time goes, by layer and by kind of work.
 *
 * Layers in sdk/nn and the trainer open a scope around each piece of work
 * when their execution context carries a profiler (qb_exec.prof) and close
 * it with the FLOPs it did; the profiler sums calls, seconds and FLOPs per
 * scope, and per GEMM shape. Off (prof == NULL) a layer pays one branch at
 * the begin and one at the end.
 *
 * Names. A scope is named after a parameter tensor when the profiler knows
 * the table that tensor lives in (qc_prof_names): `tensor` with its last
 * `drop` dot-separated parts removed, then "." and `name`, so the GEMM of
 * the weight "text.blocks.2.mlp.fc.weight" with drop 1 and "fwd" is
 * "text.blocks.2.mlp.fc.fwd". A scope without a known tensor takes its
 * name relative to the scope it is opened in: that scope's base (its name
 * without its own last part) and `name`; at the top, `name` alone.
 *
 * Scopes nest per thread: each thread keeps its own stack of open scopes,
 * and a scope's parent is the innermost one the same thread holds open on
 * the same profiler. The sums are shared under a mutex, so layers on the
 * training thread and a loader on its own thread may report to one
 * profiler. A scope must end on the thread that began it, innermost first.
 *
 * Times are wall-clock (qc_now) and mean what they say on a CPU backend,
 * whose kernels return when they are done; a backend that queues work (a
 * GPU stream) would need a sync at each end.
 *
 * The library never prints: qc_prof_write_table and qc_prof_write_csv
 * write to the FILE the caller gives. */
#ifndef QIAO_CORE_PROFILE_H
#define QIAO_CORE_PROFILE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/core.h"

typedef struct qc_prof qc_prof;

/* What a scope's time is spent on; the report sums self time per kind. */
typedef enum qc_prof_kind {
    QC_PROF_GROUP = 0,   /* holds other scopes (a block, a tower's forward); its self time is what they leave */
    QC_PROF_GEMM,        /* a linear layer's matrix product, per GEMM call */
    QC_PROF_ATTENTION,   /* the attention core: QK^T, masked softmax, PV (and their backward) */
    QC_PROF_NORM,        /* LayerNorm, L2 normalization */
    QC_PROF_SOFTMAX,     /* a softmax layer outside attention */
    QC_PROF_GELU,
    QC_PROF_ELEMENTWISE, /* bias, residual adds, positions, dropout, zeroing activation gradients */
    QC_PROF_EMBEDDING,
    QC_PROF_CONV,
    QC_PROF_POOL,
    QC_PROF_LOSS,        /* InfoNCE and cross-entropy, their small GEMMs included */
    QC_PROF_OPTIMIZER,   /* AdamW, gradient clipping, zeroing the gradient arena, the schedule */
    QC_PROF_LOADER,      /* the step waiting for its batch */
    QC_PROF_OTHER,
    QC_PROF_KINDS
} qc_prof_kind;

/* "gemm", "attention", ... */
const char *qc_prof_kind_name(qc_prof_kind kind);

/* At most this many distinct scopes and GEMM shapes per profiler; later
 * ones are not recorded (qc_prof_summary's `dropped` counts them). */
#define QC_PROF_MAX_SCOPES 4096
#define QC_PROF_MAX_SHAPES 256
/* Deepest nesting per thread; deeper scopes are not recorded. */
#define QC_PROF_MAX_DEPTH 32
#define QC_PROF_NAME_MAX 128

/* A new profiler, empty. QIAO_ERR_OUT_OF_MEMORY if it cannot be allocated. */
qiao_status qc_prof_create(qc_prof **out);
/* Frees it (NULL is fine). No scope may be open on it. */
void qc_prof_free(qc_prof *p);
/* Forgets every scope, shape and step (the tensor names stay). No scope may
 * be open on it. */
void qc_prof_reset(qc_prof *p);
/* Names scopes after tensors: `tab`'s tensors lie at base + offset. Copies
 * what it needs; replaces an earlier table. */
qiao_status qc_prof_names(qc_prof *p, const qc_table *tab, const float *base);

/* Opens a scope (see the naming rules above; `tensor` may be NULL) and
 * returns a token for qc_prof_end, or -1 when nothing is recorded (too deep,
 * too many scopes). `name` must outlive the profiler (a string literal):
 * scopes are found again by its address. */
int qc_prof_begin(qc_prof *p, qc_prof_kind kind, const void *tensor, int drop, const char *name);
/* Closes the innermost scope (token from qc_prof_begin; -1 does nothing),
 * adding one call, its seconds and `flops`. */
void qc_prof_end(qc_prof *p, int token, double flops);
/* Closes the innermost scope without counting it: for work that turned out
 * not to happen (a fused kernel that declined the call). A scope that was
 * never counted is left out of the report. */
void qc_prof_cancel(qc_prof *p, int token);
/* qc_prof_end for a GEMM of `batch` products (M x K)(K x N): adds
 * 2 M N K batch FLOPs to the scope and the call to its shape's row. */
void qc_prof_end_gemm(qc_prof *p, int token, int64_t M, int64_t N, int64_t K, int64_t batch, bool trans_a,
                      bool trans_b);

/* What layers write: no call at all when the context has no profiler. */
#define QC_PROF_BEGIN(prof, kind, tensor, drop, name) \
    ((prof) ? qc_prof_begin((prof), (kind), (tensor), (drop), (name)) : -1)
#define QC_PROF_END(prof, token, flops)                         \
    do {                                                        \
        if (prof) qc_prof_end((prof), (token), (double)(flops)); \
    } while (0)
#define QC_PROF_END_GEMM(prof, token, M, N, K, batch, ta, tb)                       \
    do {                                                                            \
        if (prof) qc_prof_end_gemm((prof), (token), (M), (N), (K), (batch), (ta), (tb)); \
    } while (0)

/* Adds `steps` measured steps that took `seconds` of wall time in all: the
 * denominator of every "per step" and "share" in the report. */
void qc_prof_add_steps(qc_prof *p, int64_t steps, double seconds);
/* The machine's roofline: GFLOP/s of raw single-threaded sgemm on a large
 * square product times the threads, and a label for the report ("2 threads
 * x raw sgemm 1024^3"). */
void qc_prof_set_peak(qc_prof *p, double gflops, const char *label);

/* One scope's sums. */
typedef struct qc_prof_scope {
    char name[QC_PROF_NAME_MAX];
    qc_prof_kind kind;
    int parent;          /* index of the enclosing scope, -1 at the top of its thread */
    int depth;
    int64_t calls;
    double seconds;      /* inclusive of the scopes inside it */
    double self_seconds; /* seconds minus its children's */
    double flops;
} qc_prof_scope;

/* One GEMM shape's sums. raw_gflops is what qc_prof_set_shape_raw gave
 * (0 until then). */
typedef struct qc_prof_shape {
    int64_t M, N, K, batch;
    bool trans_a, trans_b;
    int64_t calls;
    double seconds, flops;
    double raw_gflops;   /* roofline on this shape: raw sgemm rate x threads */
} qc_prof_shape;

typedef struct qc_prof_summary {
    int n_scopes, n_shapes;
    int64_t steps;
    double step_seconds;  /* wall time of those steps */
    double top_seconds;   /* sum of the top-level scopes of the thread that reported the steps */
    double peak_gflops;   /* 0 if not measured */
    int64_t dropped;      /* scopes not recorded (table full or too deep) */
    double kind_seconds[QC_PROF_KINDS]; /* self seconds per kind */
    double kind_flops[QC_PROF_KINDS];
} qc_prof_summary;

void qc_prof_summary_get(const qc_prof *p, qc_prof_summary *out);
/* Scope i (0 <= i < n_scopes) in the order first opened; false if out of range. */
bool qc_prof_scope_get(const qc_prof *p, int i, qc_prof_scope *out);
/* Index of the first scope with this name, or -1. */
int qc_prof_find(const qc_prof *p, const char *name);
bool qc_prof_shape_get(const qc_prof *p, int i, qc_prof_shape *out);
void qc_prof_set_shape_raw(qc_prof *p, int i, double gflops);

/* The report: per kind, the top-level scopes, the `top` costliest scopes
 * (0 = all) and every GEMM shape, per step. A FILE error is QIAO_ERR_IO. */
qiao_status qc_prof_write_table(const qc_prof *p, FILE *f, int top);
/* Every scope, kind and shape as CSV rows with a header:
 * section,name,kind,parent,calls_per_step,ms_per_step,self_ms_per_step,share,gflops,roofline */
qiao_status qc_prof_write_csv(const qc_prof *p, FILE *f);

#endif /* QIAO_CORE_PROFILE_H */
