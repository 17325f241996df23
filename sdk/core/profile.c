/* sdk/core/profile.c - the per-layer profiler (see profile.h).
 *
 * A scope is found again by what opened it: (parent, tensor, name pointer,
 * drop, kind), hashed into an open-addressed table, so a layer's name is
 * built once and later calls cost a hash, a mutex and two clock reads. */
#define _POSIX_C_SOURCE 200809L
#include "core/profile.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define HASH_SLOTS (2 * QC_PROF_MAX_SCOPES)

typedef struct scope {
    qc_prof_scope s;
    char base[QC_PROF_NAME_MAX]; /* the name without its last part: what relative children extend */
    const void *tensor;          /* the key it was opened with */
    const char *key_name;
    int drop;
} scope;

typedef struct named {           /* a tensor's address range and its name */
    const float *lo, *hi;
    char name[QC_NAME_MAX];
} named;

struct qc_prof {
    pthread_mutex_t mu;
    scope *scopes;
    int n_scopes;
    int slots[HASH_SLOTS];       /* scope index + 1, 0 = empty */
    qc_prof_shape shapes[QC_PROF_MAX_SHAPES];
    int n_shapes;
    int64_t steps, dropped;
    double step_seconds, peak_gflops;
    char peak_label[96];
    named *names;                /* sorted by lo */
    size_t n_names;
};

/* Each thread's open scopes, whichever profiler they belong to. */
static _Thread_local struct {
    int n;
    struct {
        qc_prof *p;
        int scope;               /* -1: not recorded (the end is still matched) */
        double t0;
    } s[QC_PROF_MAX_DEPTH];
} tl_stack;

static const char *const kind_names[QC_PROF_KINDS] = {
    "group", "gemm", "attention", "norm", "softmax", "gelu", "elementwise",
    "embedding", "conv", "pool", "loss", "optimizer", "loader wait", "other"};

const char *qc_prof_kind_name(qc_prof_kind kind) {
    return kind >= 0 && kind < QC_PROF_KINDS ? kind_names[kind] : "?";
}

qiao_status qc_prof_create(qc_prof **out) {
    *out = NULL;
    qc_prof *p = calloc(1, sizeof *p);
    if (!p || !(p->scopes = calloc(QC_PROF_MAX_SCOPES, sizeof *p->scopes))) {
        free(p);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "profiler: out of memory");
    }
    pthread_mutex_init(&p->mu, NULL);
    *out = p;
    return QIAO_OK;
}

void qc_prof_free(qc_prof *p) {
    if (!p) return;
    pthread_mutex_destroy(&p->mu);
    free(p->scopes);
    free(p->names);
    free(p);
}

void qc_prof_reset(qc_prof *p) {
    pthread_mutex_lock(&p->mu);
    p->n_scopes = 0;
    memset(p->slots, 0, sizeof p->slots);
    p->n_shapes = 0;
    p->steps = p->dropped = 0;
    p->step_seconds = 0;
    pthread_mutex_unlock(&p->mu);
}

static int cmp_named(const void *a, const void *b) {
    const named *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

qiao_status qc_prof_names(qc_prof *p, const qc_table *tab, const float *base) {
    named *nm = tab->n ? calloc(tab->n, sizeof *nm) : NULL;
    if (tab->n && !nm) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "profiler: out of memory");
    size_t k = 0;
    for (size_t i = 0; i < tab->n; i++) {
        if (tab->t[i].numel <= 0) continue;
        nm[k].lo = base + tab->t[i].offset;
        nm[k].hi = nm[k].lo + tab->t[i].numel;
        snprintf(nm[k].name, sizeof nm[k].name, "%s", tab->t[i].name);
        k++;
    }
    qsort(nm, k, sizeof *nm, cmp_named);
    pthread_mutex_lock(&p->mu);
    free(p->names);
    p->names = nm;
    p->n_names = k;
    pthread_mutex_unlock(&p->mu);
    return QIAO_OK;
}

static const char *tensor_name(const qc_prof *p, const void *t) {
    const float *x = t;
    size_t lo = 0, hi = p->n_names;
    while (lo < hi) { /* the last range starting at or before x */
        size_t mid = (lo + hi) / 2;
        if (p->names[mid].lo <= x) lo = mid + 1;
        else hi = mid;
    }
    return lo && x < p->names[lo - 1].hi ? p->names[lo - 1].name : NULL;
}

/* s without its last `drop` dot-separated parts. */
static void drop_parts(char *out, size_t cap, const char *s, int drop) {
    snprintf(out, cap, "%s", s);
    for (int i = 0; i < drop; i++) {
        char *dot = strrchr(out, '.');
        if (!dot) {
            out[0] = '\0';
            return;
        }
        *dot = '\0';
    }
}

static void join(char *out, size_t cap, const char *a, const char *b) {
    if (*a) snprintf(out, cap, "%.*s.%s", (int)(cap / 2), a, b);
    else snprintf(out, cap, "%s", b);
}

static uint64_t key_hash(int parent, const void *tensor, const char *name, int drop, int kind) {
    uint64_t h = 1469598103934665603ull;
    const uint64_t parts[5] = {(uint64_t)(int64_t)parent, (uint64_t)(uintptr_t)tensor, (uint64_t)(uintptr_t)name,
                               (uint64_t)drop, (uint64_t)kind};
    for (int i = 0; i < 5; i++) {
        h ^= parts[i];
        h *= 1099511628211ull;
        h ^= h >> 29;
    }
    return h;
}

/* The scope for this key, made on first use; -1 when the table is full.
 * Called with the mutex held. */
static int scope_for(qc_prof *p, int parent, int depth, qc_prof_kind kind, const void *tensor, int drop,
                     const char *name) {
    uint64_t h = key_hash(parent, tensor, name, drop, (int)kind);
    for (int probe = 0; probe < HASH_SLOTS; probe++) {
        int *slot = &p->slots[(h + (uint64_t)probe) % HASH_SLOTS];
        if (*slot) {
            scope *s = &p->scopes[*slot - 1];
            if (s->s.parent == parent && s->tensor == tensor && s->key_name == name && s->drop == drop &&
                s->s.kind == kind)
                return *slot - 1;
            continue;
        }
        if (p->n_scopes >= QC_PROF_MAX_SCOPES) return -1;
        const int i = p->n_scopes++;
        scope *s = &p->scopes[i];
        memset(s, 0, sizeof *s);
        s->s.kind = kind;
        s->s.parent = parent;
        s->s.depth = depth;
        s->tensor = tensor;
        s->key_name = name;
        s->drop = drop;
        const char *tn = tensor && p->n_names ? tensor_name(p, tensor) : NULL;
        if (tn) drop_parts(s->base, sizeof s->base, tn, drop);
        else if (parent >= 0) snprintf(s->base, sizeof s->base, "%s", p->scopes[parent].base);
        join(s->s.name, sizeof s->s.name, s->base, name);
        /* a relative child of this scope extends its base: "text.blocks.2" for "text.blocks.2.fwd" */
        if (!tn) drop_parts(s->base, sizeof s->base, s->s.name, 1);
        *slot = i + 1;
        return i;
    }
    return -1;
}

int qc_prof_begin(qc_prof *p, qc_prof_kind kind, const void *tensor, int drop, const char *name) {
    if (!p) return -1;
    if (tl_stack.n >= QC_PROF_MAX_DEPTH) {
        pthread_mutex_lock(&p->mu);
        p->dropped++;
        pthread_mutex_unlock(&p->mu);
        return -1;
    }
    int parent = -1, depth = 0;
    for (int i = tl_stack.n - 1; i >= 0; i--)
        if (tl_stack.s[i].p == p) {
            parent = tl_stack.s[i].scope;
            depth = parent >= 0 ? p->scopes[parent].s.depth + 1 : 0;
            break;
        }
    pthread_mutex_lock(&p->mu);
    int id = scope_for(p, parent, depth, kind, tensor, drop, name ? name : "?");
    if (id < 0) p->dropped++;
    pthread_mutex_unlock(&p->mu);
    const int tok = tl_stack.n++;
    tl_stack.s[tok].p = p;
    tl_stack.s[tok].scope = id;
    tl_stack.s[tok].t0 = qc_now();
    return tok;
}

/* Pops the token's entry; its scope and seconds, or -1. */
static int pop(qc_prof *p, int token, double *dt) {
    if (!p || token < 0 || token != tl_stack.n - 1 || tl_stack.s[token].p != p) return -1;
    *dt = qc_now() - tl_stack.s[token].t0;
    tl_stack.n--;
    return tl_stack.s[token].scope;
}

void qc_prof_end(qc_prof *p, int token, double flops) {
    double dt;
    const int id = pop(p, token, &dt);
    if (id < 0) return;
    pthread_mutex_lock(&p->mu);
    scope *s = &p->scopes[id];
    s->s.calls++;
    s->s.seconds += dt;
    s->s.flops += flops;
    pthread_mutex_unlock(&p->mu);
}

void qc_prof_cancel(qc_prof *p, int token) {
    double dt;
    (void)pop(p, token, &dt);
}

void qc_prof_end_gemm(qc_prof *p, int token, int64_t M, int64_t N, int64_t K, int64_t batch, bool trans_a,
                      bool trans_b) {
    double dt;
    const int id = pop(p, token, &dt);
    if (id < 0) return;
    const double flops = 2.0 * (double)M * (double)N * (double)K * (double)batch;
    pthread_mutex_lock(&p->mu);
    scope *s = &p->scopes[id];
    s->s.calls++;
    s->s.seconds += dt;
    s->s.flops += flops;
    int k = 0;
    while (k < p->n_shapes && !(p->shapes[k].M == M && p->shapes[k].N == N && p->shapes[k].K == K &&
                                p->shapes[k].batch == batch && p->shapes[k].trans_a == trans_a &&
                                p->shapes[k].trans_b == trans_b))
        k++;
    if (k == p->n_shapes && k < QC_PROF_MAX_SHAPES) {
        memset(&p->shapes[k], 0, sizeof p->shapes[k]);
        p->shapes[k] = (qc_prof_shape){.M = M, .N = N, .K = K, .batch = batch, .trans_a = trans_a, .trans_b = trans_b};
        p->n_shapes++;
    }
    if (k < p->n_shapes) {
        p->shapes[k].calls++;
        p->shapes[k].seconds += dt;
        p->shapes[k].flops += flops;
    }
    pthread_mutex_unlock(&p->mu);
}

void qc_prof_add_steps(qc_prof *p, int64_t steps, double seconds) {
    pthread_mutex_lock(&p->mu);
    p->steps += steps;
    p->step_seconds += seconds;
    pthread_mutex_unlock(&p->mu);
}

void qc_prof_set_peak(qc_prof *p, double gflops, const char *label) {
    pthread_mutex_lock(&p->mu);
    p->peak_gflops = gflops;
    snprintf(p->peak_label, sizeof p->peak_label, "%s", label ? label : "");
    pthread_mutex_unlock(&p->mu);
}

/* ---- reading ------------------------------------------------------------------ */

/* Self seconds of every scope (callers hold no lock: reading happens after the run). */
static double *self_seconds(const qc_prof *p) {
    double *self = calloc((size_t)(p->n_scopes ? p->n_scopes : 1), sizeof *self);
    if (!self) return NULL;
    for (int i = 0; i < p->n_scopes; i++) self[i] = p->scopes[i].s.seconds;
    for (int i = 0; i < p->n_scopes; i++)
        if (p->scopes[i].s.parent >= 0) self[p->scopes[i].s.parent] -= p->scopes[i].s.seconds;
    return self;
}

void qc_prof_summary_get(const qc_prof *p, qc_prof_summary *out) {
    memset(out, 0, sizeof *out);
    qc_prof *mp = (qc_prof *)p;
    pthread_mutex_lock(&mp->mu);
    out->n_scopes = p->n_scopes;
    out->n_shapes = p->n_shapes;
    out->steps = p->steps;
    out->step_seconds = p->step_seconds;
    out->peak_gflops = p->peak_gflops;
    out->dropped = p->dropped;
    double *self = self_seconds(p);
    for (int i = 0; i < p->n_scopes; i++) {
        const qc_prof_scope *s = &p->scopes[i].s;
        if (s->parent < 0) out->top_seconds += s->seconds;
        out->kind_seconds[s->kind] += self ? self[i] : s->seconds;
        out->kind_flops[s->kind] += s->flops;
    }
    free(self);
    pthread_mutex_unlock(&mp->mu);
}

bool qc_prof_scope_get(const qc_prof *p, int i, qc_prof_scope *out) {
    if (i < 0 || i >= p->n_scopes) return false;
    *out = p->scopes[i].s;
    double self = out->seconds;
    for (int j = 0; j < p->n_scopes; j++)
        if (p->scopes[j].s.parent == i) self -= p->scopes[j].s.seconds;
    out->self_seconds = self;
    return true;
}

int qc_prof_find(const qc_prof *p, const char *name) {
    for (int i = 0; i < p->n_scopes; i++)
        if (!strcmp(p->scopes[i].s.name, name)) return i;
    return -1;
}

bool qc_prof_shape_get(const qc_prof *p, int i, qc_prof_shape *out) {
    if (i < 0 || i >= p->n_shapes) return false;
    *out = p->shapes[i];
    return true;
}

void qc_prof_set_shape_raw(qc_prof *p, int i, double gflops) {
    if (i >= 0 && i < p->n_shapes) p->shapes[i].raw_gflops = gflops;
}

/* ---- the report ----------------------------------------------------------------- */

static double gfs(double flops, double s) { return s > 0 && flops > 0 ? flops / s * 1e-9 : 0.0; }

/* qsort has no user pointer: the key array, under sort_mu */
static double *sort_key;
static int cmp_desc(const void *a, const void *b) {
    const double x = sort_key[*(const int *)a], y = sort_key[*(const int *)b];
    return x < y ? 1 : x > y ? -1 : 0;
}

static void shape_label(char *buf, size_t cap, const qc_prof_shape *s) {
    if (s->batch > 1)
        snprintf(buf, cap, "%lldx%lldx%lld%s%s x%lld", (long long)s->M, (long long)s->N, (long long)s->K,
                 s->trans_a ? " tA" : "", s->trans_b ? " tB" : "", (long long)s->batch);
    else
        snprintf(buf, cap, "%lldx%lldx%lld%s%s", (long long)s->M, (long long)s->N, (long long)s->K,
                 s->trans_a ? " tA" : "", s->trans_b ? " tB" : "");
}

static pthread_mutex_t sort_mu = PTHREAD_MUTEX_INITIALIZER;

qiao_status qc_prof_write_table(const qc_prof *p, FILE *f, int top) {
    qc_prof_summary sm;
    qc_prof_summary_get(p, &sm);
    const double steps = sm.steps > 0 ? (double)sm.steps : 1.0;
    const double step_s = sm.step_seconds / steps;
    const double peak = sm.peak_gflops;
    fprintf(f, "profile: %lld steps, %.1f ms per step (wall); top-level scopes cover %.1f%%\n", (long long)sm.steps,
            1e3 * step_s, sm.step_seconds > 0 ? 100.0 * sm.top_seconds / sm.step_seconds : 0.0);
    if (peak > 0) fprintf(f, "roofline: %.1f GFLOP/s (%s)\n", peak, p->peak_label);
    if (sm.dropped) fprintf(f, "(%lld scopes not recorded: table full or too deep)\n", (long long)sm.dropped);

    fprintf(f, "\n%-14s %10s %7s %9s %9s\n", "kind (self)", "ms/step", "share", "GFLOP/s", "roofline");
    for (int k = 0; k < QC_PROF_KINDS; k++) {
        if (sm.kind_seconds[k] <= 0 && sm.kind_flops[k] <= 0) continue;
        const double g = gfs(sm.kind_flops[k], sm.kind_seconds[k]);
        fprintf(f, "%-14s %10.2f %6.1f%% ", qc_prof_kind_name((qc_prof_kind)k), 1e3 * sm.kind_seconds[k] / steps,
                sm.step_seconds > 0 ? 100.0 * sm.kind_seconds[k] / sm.step_seconds : 0.0);
        if (g > 0) fprintf(f, "%9.1f %8.1f%%\n", g, peak > 0 ? 100.0 * g / peak : 0.0);
        else fprintf(f, "%9s %9s\n", "", "");
    }

    double *self = self_seconds(p);
    /* order and key sort the scopes, then the GEMM shapes: room for either */
    const int cap = p->n_scopes > p->n_shapes ? p->n_scopes : p->n_shapes > 0 ? p->n_shapes : 1;
    int *order = malloc(sizeof(int) * (size_t)cap);
    double *key = malloc(sizeof(double) * (size_t)cap);
    if (!self || !order || !key) {
        free(self), free(order), free(key);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "profiler: out of memory");
    }
    fprintf(f, "\n%-44s %10s %7s\n", "top-level scope", "ms/step", "share");
    for (int i = 0; i < p->n_scopes; i++) {
        const qc_prof_scope *s = &p->scopes[i].s;
        if (s->parent >= 0 || !s->calls) continue;
        fprintf(f, "%-44s %10.2f %6.1f%%\n", s->name, 1e3 * s->seconds / steps,
                sm.step_seconds > 0 ? 100.0 * s->seconds / sm.step_seconds : 0.0);
    }

    int n = 0;
    for (int i = 0; i < p->n_scopes; i++)
        if (p->scopes[i].s.calls) order[n++] = i, key[i] = self[i];
    pthread_mutex_lock(&sort_mu);
    sort_key = key;
    qsort(order, (size_t)n, sizeof *order, cmp_desc);
    pthread_mutex_unlock(&sort_mu);
    const int shown = top > 0 && top < n ? top : n;
    fprintf(f, "\n%-44s %-11s %7s %9s %9s %7s %9s %9s\n", "scope (by self time)", "kind", "calls", "ms/step",
            "self ms", "share", "GFLOP/s", "roofline");
    for (int r = 0; r < shown; r++) {
        const qc_prof_scope *s = &p->scopes[order[r]].s;
        const double g = gfs(s->flops, s->seconds);
        fprintf(f, "%-44.44s %-11s %7.1f %9.2f %9.2f %6.1f%% ", s->name, qc_prof_kind_name(s->kind),
                (double)s->calls / steps, 1e3 * s->seconds / steps, 1e3 * self[order[r]] / steps,
                sm.step_seconds > 0 ? 100.0 * self[order[r]] / sm.step_seconds : 0.0);
        if (g > 0) fprintf(f, "%9.1f %8.1f%%\n", g, peak > 0 ? 100.0 * g / peak : 0.0);
        else fprintf(f, "%9s %9s\n", "", "");
    }
    if (shown < n) fprintf(f, "(%d more scopes: the CSV has them all)\n", n - shown);

    if (p->n_shapes) {
        for (int i = 0; i < p->n_shapes; i++) order[i] = i, key[i] = p->shapes[i].seconds;
        pthread_mutex_lock(&sort_mu);
        sort_key = key;
        qsort(order, (size_t)p->n_shapes, sizeof *order, cmp_desc);
        pthread_mutex_unlock(&sort_mu);
        fprintf(f, "\n%-26s %7s %9s %7s %9s %10s %9s %9s\n", "GEMM shape MxNxK", "calls", "ms/step", "share",
                "GFLOP/s", "raw GF/s", "of raw", "roofline");
        for (int r = 0; r < p->n_shapes; r++) {
            const qc_prof_shape *s = &p->shapes[order[r]];
            char lab[64];
            shape_label(lab, sizeof lab, s);
            const double g = gfs(s->flops, s->seconds);
            fprintf(f, "%-26s %7.1f %9.2f %6.1f%% %9.1f ", lab, (double)s->calls / steps, 1e3 * s->seconds / steps,
                    sm.step_seconds > 0 ? 100.0 * s->seconds / sm.step_seconds : 0.0, g);
            if (s->raw_gflops > 0) fprintf(f, "%10.1f %8.1f%% ", s->raw_gflops, 100.0 * g / s->raw_gflops);
            else fprintf(f, "%10s %9s ", "", "");
            if (peak > 0) fprintf(f, "%8.1f%%\n", 100.0 * g / peak);
            else fprintf(f, "%9s\n", "");
        }
    }
    free(self), free(order), free(key);
    return ferror(f) ? qc_error(QIAO_ERR_IO, "profiler: cannot write the report") : QIAO_OK;
}

qiao_status qc_prof_write_csv(const qc_prof *p, FILE *f) {
    qc_prof_summary sm;
    qc_prof_summary_get(p, &sm);
    const double steps = sm.steps > 0 ? (double)sm.steps : 1.0;
    const double peak = sm.peak_gflops, tot = sm.step_seconds;
    double *self = self_seconds(p);
    if (!self) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "profiler: out of memory");
    fprintf(f, "section,name,kind,parent,calls_per_step,ms_per_step,self_ms_per_step,share,gflops,roofline\n");
    fprintf(f, "step,step,,,1,%.6f,%.6f,1,,\n", 1e3 * tot / steps, 1e3 * tot / steps);
    for (int k = 0; k < QC_PROF_KINDS; k++) {
        if (sm.kind_seconds[k] <= 0 && sm.kind_flops[k] <= 0) continue;
        const double g = gfs(sm.kind_flops[k], sm.kind_seconds[k]);
        fprintf(f, "kind,%s,%s,,,%.6f,%.6f,%.6f,%.3f,%.6f\n", qc_prof_kind_name((qc_prof_kind)k),
                qc_prof_kind_name((qc_prof_kind)k), 1e3 * sm.kind_seconds[k] / steps, 1e3 * sm.kind_seconds[k] / steps,
                tot > 0 ? sm.kind_seconds[k] / tot : 0.0, g, peak > 0 ? g / peak : 0.0);
    }
    for (int i = 0; i < p->n_scopes; i++) {
        const qc_prof_scope *s = &p->scopes[i].s;
        if (!s->calls) continue;
        const double g = gfs(s->flops, s->seconds);
        fprintf(f, "scope,%s,%s,%s,%.3f,%.6f,%.6f,%.6f,%.3f,%.6f\n", s->name, qc_prof_kind_name(s->kind),
                s->parent >= 0 ? p->scopes[s->parent].s.name : "", (double)s->calls / steps, 1e3 * s->seconds / steps,
                1e3 * self[i] / steps, tot > 0 ? self[i] / tot : 0.0, g, peak > 0 ? g / peak : 0.0);
    }
    for (int i = 0; i < p->n_shapes; i++) {
        const qc_prof_shape *s = &p->shapes[i];
        char lab[64];
        shape_label(lab, sizeof lab, s);
        const double g = gfs(s->flops, s->seconds);
        fprintf(f, "gemm_shape,%s,gemm,,%.3f,%.6f,%.6f,%.6f,%.3f,%.6f\n", lab, (double)s->calls / steps,
                1e3 * s->seconds / steps, 1e3 * s->seconds / steps, tot > 0 ? s->seconds / tot : 0.0, g,
                s->raw_gflops > 0 ? g / s->raw_gflops : 0.0);
    }
    free(self);
    return ferror(f) ? qc_error(QIAO_ERR_IO, "profiler: cannot write the CSV") : QIAO_OK;
}
