/* The generation search (models/generate.c) on toy decoders: no network.
 *
 * Each toy keeps a mock KV cache: one token history per row, rebuilt from
 * `parents` at every step exactly as a cached decoder would gather its
 * rows, and computes its logits from that history. A search that told the
 * decoder the wrong parents would then score the wrong prefixes, and the
 * comparison with an exhaustive search over every sequence (which uses the
 * true prefixes) would fail. */
#define _POSIX_C_SOURCE 200809L

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/generate.h"
#include "testutil.h"
#include "tokenizers/tokenizer.h"

#define TOK_PATH QIAO_TEST_DATA "/tokenizer/tok-test.safetensors"
#define MAXR QMOD_GEN_MAX_BEAM
#define MAXL 64

typedef struct toy toy;
/* Log-probabilities (or any logits) of the next token after hist[0 .. len). */
typedef void (*toy_fn)(const toy *m, const int32_t *hist, int len, float *out);

struct toy {
    int V;
    toy_fn fn;
    float table[MAXL][16][16]; /* random chains: [position][last token][next] */
    const int32_t *script;     /* spelling toy: the ids to spell */
    int n_script;
    /* the mock cache */
    int32_t hist[MAXR][MAXL + 8], tmp[MAXR][MAXL + 8];
    int len, rows;
    int calls;
    bool cancelled; /* set by the cancel callback when it says stop */
    int calls_after_cancel;
};

static qiao_status toy_step(void *ctx, const qmod_gen_step *s, float *logits) {
    toy *m = ctx;
    if (m->cancelled) m->calls_after_cancel++;
    m->calls++;
    if (!s->parents) {
        assert_int_equal(s->pos, 0);
        assert_int_equal(s->n_beams, 1);
        assert_true(s->n_new >= 1);
        memcpy(m->hist[0], s->tokens, (size_t)s->n_new * sizeof(int32_t));
        m->len = s->n_new;
    } else {
        assert_int_equal(s->pos, m->len);
        assert_int_equal(s->n_new, 1);
        assert_true(s->n_beams >= 1 && s->n_beams <= MAXR);
        for (int i = 0; i < s->n_beams; i++) {
            assert_true(s->parents[i] >= 0 && s->parents[i] < m->rows);
            memcpy(m->tmp[i], m->hist[s->parents[i]], (size_t)m->len * sizeof(int32_t));
            m->tmp[i][m->len] = s->tokens[i];
        }
        memcpy(m->hist, m->tmp, (size_t)s->n_beams * sizeof m->hist[0]);
        m->len++;
    }
    m->rows = s->n_beams;
    for (int i = 0; i < s->n_beams; i++) m->fn(m, m->hist[i], m->len, logits + (size_t)i * (size_t)m->V);
    return QIAO_OK;
}

/* A second-order chain with random log-probabilities: the next token
 * depends on the position and the last two tokens. */
static void chain_fn(const toy *m, const int32_t *hist, int len, float *out) {
    int a = hist[len - 1], b = len >= 2 ? hist[len - 2] : 0;
    const float *row = m->table[len % MAXL][(a * 5 + b) % 16];
    for (int v = 0; v < m->V; v++) out[v] = row[v];
}

static void make_chain(toy *m, int V, uint64_t seed) {
    memset(m, 0, sizeof *m);
    m->V = V;
    m->fn = chain_fn;
    qc_rng r;
    qc_rng_seed(&r, seed);
    for (int p = 0; p < MAXL; p++)
        for (int a = 0; a < 16; a++) {
            double z[16], s = 0;
            for (int v = 0; v < V; v++) s += z[v] = exp(2.0 * qc_rng_normal(&r));
            for (int v = 0; v < V; v++) m->table[p][a][v] = (float)log(z[v] / s);
        }
}

static qmod_gen_params params(qmod_gen_strategy strategy, int32_t bos, int32_t eos, int max_len) {
    qmod_gen_params p = qmod_gen_default_params();
    p.strategy = strategy;
    p.bos_id = bos;
    p.eos_id = eos;
    p.max_len = max_len;
    return p;
}

static void run(toy *m, const qmod_gen_params *p, qmod_gen_result *r) {
    m->calls = 0;
    qiao_status st = qmod_generate(p, toy_step, m, m->V, r);
    if (st != QIAO_OK) printf("generate: %s\n", qiao_last_error());
    assert_int_equal(st, QIAO_OK);
    assert_int_equal(r->steps, m->calls);
}

/* log P of tokens (then EOS when eos >= 0) under the toy, from the prompt {bos}. */
static double seq_logprob(const toy *m, int32_t bos, const int32_t *toks, int n, int32_t eos) {
    int32_t h[MAXL + 2];
    float l[16];
    h[0] = bos;
    double lp = 0;
    for (int i = 0; i <= n; i++) {
        if (i == n && eos < 0) break;
        m->fn(m, h, i + 1, l);
        double mx = -INFINITY, s = 0;
        for (int v = 0; v < m->V; v++) mx = l[v] > mx ? l[v] : mx;
        for (int v = 0; v < m->V; v++) s += exp((double)l[v] - mx);
        int32_t v = i < n ? toks[i] : eos;
        lp += (double)l[v] - (mx + log(s));
        h[i + 1] = v;
    }
    return lp;
}

/* The best finished sequence by logP / lp(len incl. EOS) over every
 * sequence of at most L tokens, EOS included: depth-first over all of them. */
typedef struct exh {
    const toy *m;
    int32_t bos, eos;
    int L;
    double alpha;
    double best;
    int32_t best_seq[MAXL], cur[MAXL];
    int best_n;
} exh;

static void exh_walk(exh *e, int n, double lp) {
    float l[16];
    int32_t h[MAXL + 1];
    h[0] = e->bos;
    memcpy(h + 1, e->cur, (size_t)n * sizeof(int32_t));
    e->m->fn(e->m, h, n + 1, l);
    double mx = -INFINITY, s = 0;
    for (int v = 0; v < e->m->V; v++) mx = l[v] > mx ? l[v] : mx;
    for (int v = 0; v < e->m->V; v++) s += exp((double)l[v] - mx);
    double lse = mx + log(s);
    for (int v = 0; v < e->m->V; v++) {
        double x = lp + (double)l[v] - lse;
        if (v == e->eos) {
            double score = x / qmod_gen_length_penalty(n + 1, e->alpha);
            if (score > e->best) {
                e->best = score;
                memcpy(e->best_seq, e->cur, (size_t)n * sizeof(int32_t));
                e->best_n = n;
            }
        } else if (n + 1 < e->L) {
            e->cur[n] = v;
            exh_walk(e, n + 1, x);
        }
    }
}

static void check_result_scores(const toy *m, const qmod_gen_params *p, const qmod_gen_result *r) {
    double lp = seq_logprob(m, p->bos_id, r->tokens, (int)r->n, r->eos ? p->eos_id : -1);
    assert_true(fabs(lp - r->logprob) < 1e-5);
    if (p->strategy == QMOD_GEN_BEAM) {
        double want = lp / qmod_gen_length_penalty((int)r->n + (r->eos ? 1 : 0), p->length_alpha);
        assert_true(fabs(want - r->score) < 1e-5);
    }
}

/* A chain where greedy's first choice is a trap: BOS -> A (0.5) then at
 * best 0.35, while B (0.4) then EOS (0.9) is the most likely sequence. */
enum { T_BOS = 0, T_EOS = 1, T_A = 2, T_B = 3, T_C = 4, T_D = 5 };
static void trap_fn(const toy *m, const int32_t *hist, int len, float *out) {
    static const float P[6][6] = {
        [T_BOS] = {[T_EOS] = 0.1f, [T_A] = 0.5f, [T_B] = 0.4f},
        [T_A] = {[T_EOS] = 0.3f, [T_C] = 0.35f, [T_D] = 0.35f},
        [T_B] = {[T_EOS] = 0.9f, [T_C] = 0.1f},
        [T_C] = {[T_EOS] = 1.0f},
        [T_D] = {[T_EOS] = 1.0f},
        [T_EOS] = {[T_EOS] = 1.0f},
    };
    for (int v = 0; v < m->V; v++) out[v] = P[hist[len - 1]][v] > 0 ? logf(P[hist[len - 1]][v]) : -INFINITY;
}

static void beam_beats_greedy(void **state) {
    (void)state;
    static toy m;
    memset(&m, 0, sizeof m);
    m.V = 6;
    m.fn = trap_fn;
    qmod_gen_result g, b;
    qmod_gen_params pg = params(QMOD_GEN_GREEDY, T_BOS, T_EOS, 10);
    run(&m, &pg, &g);
    assert_int_equal(g.n, 2);
    assert_int_equal(g.tokens[0], T_A);
    assert_int_equal(g.tokens[1], T_C); /* C and D tie: the lower id */
    assert_true(g.eos);
    assert_true(fabs(g.logprob - log(0.5 * 0.35)) < 1e-6);
    qmod_gen_params pb = params(QMOD_GEN_BEAM, T_BOS, T_EOS, 10);
    pb.beam_size = 2;
    pb.length_alpha = 0;
    run(&m, &pb, &b);
    assert_int_equal(b.n, 1);
    assert_int_equal(b.tokens[0], T_B);
    assert_true(b.eos);
    assert_true(fabs(b.logprob - log(0.4 * 0.9)) < 1e-6);
    assert_true(b.logprob > g.logprob);
    exh e = {.m = &m, .bos = T_BOS, .eos = T_EOS, .L = 10, .alpha = 0, .best = -INFINITY};
    exh_walk(&e, 0, 0);
    assert_int_equal(e.best_n, 1);
    assert_int_equal(e.best_seq[0], T_B);
    qmod_gen_result_free(&g);
    qmod_gen_result_free(&b);
}

/* Beam search wide enough to keep every hypothesis equals an exhaustive
 * search, for random second-order chains, several alphas, with and
 * without early stopping; a narrow beam never beats it and reports its
 * own scores correctly. */
static void beam_matches_exhaustive(void **state) {
    (void)state;
    static toy m;
    const struct { int V, L; } shapes[] = {{3, 6}, {4, 4}, {5, 3}};
    const double alphas[] = {0.0, 0.6, 2.0};
    int early_saved = 0, checked = 0;
    for (size_t sh = 0; sh < 3; sh++)
        for (uint64_t seed = 1; seed <= 12; seed++)
            for (size_t a = 0; a < 3; a++) {
                make_chain(&m, shapes[sh].V, seed * 31 + sh);
                exh e = {.m = &m, .bos = 0, .eos = 1, .L = shapes[sh].L, .alpha = alphas[a], .best = -INFINITY};
                exh_walk(&e, 0, 0);
                for (int early = 0; early <= 1; early++) {
                    qmod_gen_params p = params(QMOD_GEN_BEAM, 0, 1, shapes[sh].L);
                    p.beam_size = QMOD_GEN_MAX_BEAM;
                    p.length_alpha = alphas[a];
                    p.early_stop = early;
                    qmod_gen_result r;
                    run(&m, &p, &r);
                    assert_true(r.eos);
                    if ((int)r.n != e.best_n || memcmp(r.tokens, e.best_seq, r.n * sizeof(int32_t)) != 0)
                        printf("V %d L %d seed %llu alpha %g early %d: beam %zu tokens score %.9g, exhaustive %d "
                               "tokens %.9g\n",
                               shapes[sh].V, shapes[sh].L, (unsigned long long)seed, alphas[a], early, r.n, r.score,
                               e.best_n, e.best);
                    assert_int_equal(r.n, e.best_n);
                    assert_memory_equal(r.tokens, e.best_seq, r.n * sizeof(int32_t));
                    assert_true(fabs(r.score - e.best) < 1e-6);
                    check_result_scores(&m, &p, &r);
                    if (early && r.steps < shapes[sh].L) early_saved++;
                    qmod_gen_result_free(&r);
                    for (int k = 1; k <= 3; k++) {
                        p.beam_size = k;
                        run(&m, &p, &r);
                        /* (a narrow beam may end with no hypothesis finished:
                         * then it is not among the exhaustive candidates) */
                        if (r.eos && r.score > e.best + 1e-9) printf("k %d: %.9g > %.9g\n", k, r.score, e.best);
                        if (r.eos) assert_true(r.score <= e.best + 1e-9);
                        check_result_scores(&m, &p, &r);
                        qmod_gen_result_free(&r);
                    }
                    checked++;
                }
            }
    printf("%d searches matched the exhaustive best; early stopping saved steps in %d\n", checked, early_saved);
    assert_true(early_saved > 0);
}

/* Early stopping changes how long the search runs, never its answer. */
static void early_stop_same_answer(void **state) {
    (void)state;
    static toy m;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        make_chain(&m, 12, seed);
        for (int k = 1; k <= 5; k += 2) {
            qmod_gen_params p = params(QMOD_GEN_BEAM, 0, 1, 30);
            p.beam_size = k;
            qmod_gen_result a, b;
            p.early_stop = true;
            run(&m, &p, &a);
            p.early_stop = false;
            run(&m, &p, &b);
            assert_int_equal(a.n, b.n);
            assert_memory_equal(a.tokens, b.tokens, a.n * sizeof(int32_t));
            assert_true(a.score == b.score);
            assert_true(a.steps <= b.steps);
            qmod_gen_result_free(&a);
            qmod_gen_result_free(&b);
        }
    }
}

/* Position-dependent: at once EOS (0.55) or A (0.45), then A A with 0.99
 * each and EOS (0.999). No penalty prefers the short sequence; alpha = 1
 * divides the long one's log-probability by 1.5 and prefers it. */
static void len_fn(const toy *m, const int32_t *hist, int len, float *out) {
    (void)hist;
    double pe = len == 1 ? 0.55 : len < 4 ? 0.01 : 0.999;
    for (int v = 0; v < m->V; v++) out[v] = -INFINITY;
    out[T_EOS] = (float)log(pe);
    out[T_A] = (float)log(1 - pe);
}

static void length_penalty(void **state) {
    (void)state;
    static toy m;
    memset(&m, 0, sizeof m);
    m.V = 3;
    m.fn = len_fn;
    assert_true(fabs(qmod_gen_length_penalty(4, 1.0) - 1.5) < 1e-12);
    assert_true(fabs(qmod_gen_length_penalty(1, 0.6) - 1.0) < 1e-12);
    const struct {
        double alpha;
        size_t n;
    } want[] = {{0.0, 0}, {0.6, 0}, {1.0, 3}, {2.0, 3}};
    for (size_t i = 0; i < 4; i++) {
        qmod_gen_params p = params(QMOD_GEN_BEAM, T_BOS, T_EOS, 8);
        p.beam_size = 2;
        p.length_alpha = want[i].alpha;
        qmod_gen_result r;
        run(&m, &p, &r);
        assert_int_equal(r.n, want[i].n);
        assert_true(r.eos);
        check_result_scores(&m, &p, &r);
        double lp = want[i].n ? log(0.45 * 0.99 * 0.99 * 0.999) : log(0.55);
        assert_true(fabs(r.score - lp / pow((5.0 + (double)want[i].n + 1) / 6.0, want[i].alpha)) < 1e-6);
        qmod_gen_result_free(&r);
    }
}

/* Greedy four other ways: beam of one without a length penalty, top-p
 * tiny, temperature 0, temperature near 0. */
static void greedy_equivalents(void **state) {
    (void)state;
    static toy m;
    for (uint64_t seed = 1; seed <= 10; seed++) {
        make_chain(&m, 16, seed + 100);
        qmod_gen_params p = params(QMOD_GEN_GREEDY, 0, 1, 40);
        qmod_gen_result g;
        run(&m, &p, &g);
        check_result_scores(&m, &p, &g);
        qmod_gen_params v[4];
        v[0] = params(QMOD_GEN_BEAM, 0, 1, 40);
        v[0].beam_size = 1;
        v[0].length_alpha = 0;
        for (int i = 1; i < 4; i++) {
            v[i] = params(QMOD_GEN_SAMPLE, 0, 1, 40);
            v[i].seed = seed;
        }
        v[1].top_p = 1e-6;
        v[2].temperature = 0;
        v[3].temperature = 1e-4;
        for (int i = 0; i < 4; i++) {
            qmod_gen_result r;
            run(&m, &v[i], &r);
            assert_int_equal(r.n, g.n);
            assert_memory_equal(r.tokens, g.tokens, g.n * sizeof(int32_t));
            assert_int_equal(r.eos, g.eos);
            assert_true(fabs(r.logprob - g.logprob) < 1e-9);
            qmod_gen_result_free(&r);
        }
        qmod_gen_result_free(&g);
    }
}

/* A fixed next-token distribution, whatever the history. */
static const double FIXED_P[8] = {0.3, 0.2, 0.15, 0.1, 0.1, 0.08, 0.05, 0.02};
static void fixed_fn(const toy *m, const int32_t *hist, int len, float *out) {
    (void)hist;
    (void)len;
    for (int v = 0; v < m->V; v++) out[v] = (float)log(FIXED_P[v]);
}

/* A toy without the mock cache, for long samples: the distribution does
 * not depend on the history. */
static qiao_status fixed_step(void *ctx, const qmod_gen_step *s, float *logits) {
    toy *m = ctx;
    m->calls++;
    for (int i = 0; i < s->n_beams; i++) fixed_fn(m, NULL, 0, logits + (size_t)i * (size_t)m->V);
    return QIAO_OK;
}

static void sample_counts(toy *m, qmod_gen_params *p, int seeds, int64_t *count) {
    memset(count, 0, 8 * sizeof *count);
    for (int s = 0; s < seeds; s++) {
        p->seed = 1000 + (uint64_t)s;
        qmod_gen_result r;
        assert_int_equal(qmod_generate(p, fixed_step, m, m->V, &r), QIAO_OK);
        assert_int_equal(r.n, (size_t)p->max_len);
        for (size_t i = 0; i < r.n; i++) count[r.tokens[i]]++;
        qmod_gen_result_free(&r);
    }
}

/* Pearson's chi-square of counts against probabilities q (renormalized
 * over the tokens with q > 0; a count where q = 0 fails outright). */
static double chi_square(const int64_t *count, const double *q, int V, int *df) {
    double qs = 0, n = 0, x = 0;
    for (int v = 0; v < V; v++) {
        qs += q[v];
        n += (double)count[v];
    }
    *df = -1;
    for (int v = 0; v < V; v++) {
        if (q[v] == 0) {
            assert_int_equal(count[v], 0);
            continue;
        }
        double e = n * q[v] / qs;
        x += ((double)count[v] - e) * ((double)count[v] - e) / e;
        (*df)++;
    }
    return x;
}

/* Token frequencies over 5 x 4096 draws against the distribution the
 * parameters define. The seeds are fixed, so the test is deterministic;
 * the bounds are chi-square's 0.1% critical values for the degrees of
 * freedom (a correct sampler fails one in a thousand seed sets). */
static void sample_frequencies(void **state) {
    (void)state;
    static toy m;
    memset(&m, 0, sizeof m);
    m.V = 8;
    int64_t count[8];
    double q[8];
    int df;
    /* temperature 1, no nucleus: FIXED_P itself */
    qmod_gen_params p = params(QMOD_GEN_SAMPLE, 0, -1, QMOD_GEN_MAX_LEN);
    sample_counts(&m, &p, 5, count);
    double x = chi_square(count, FIXED_P, 8, &df);
    printf("T 1: chi2 %.2f (df %d, 0.1%% bound 24.32)\n", x, df);
    assert_int_equal(df, 7);
    assert_true(x < 24.32);
    /* temperature 2: p^(1/2) */
    p.temperature = 2;
    sample_counts(&m, &p, 5, count);
    for (int v = 0; v < 8; v++) q[v] = sqrt(FIXED_P[v]);
    x = chi_square(count, q, 8, &df);
    printf("T 2: chi2 %.2f (df %d, 0.1%% bound 24.32)\n", x, df);
    assert_true(x < 24.32);
    /* and it is not FIXED_P: the same counts are far from it */
    x = chi_square(count, FIXED_P, 8, &df);
    assert_true(x > 200);
    /* top-p 0.6: the nucleus is {0.3, 0.2, 0.15} (0.65 >= 0.6), renormalized */
    p.temperature = 1;
    p.top_p = 0.6;
    sample_counts(&m, &p, 5, count);
    for (int v = 0; v < 8; v++) q[v] = v < 3 ? FIXED_P[v] : 0;
    x = chi_square(count, q, 8, &df);
    printf("top-p 0.6: chi2 %.2f (df %d, 0.1%% bound 13.82)\n", x, df);
    assert_int_equal(df, 2);
    assert_true(x < 13.82);
}

static void sample_seeds(void **state) {
    (void)state;
    static toy m;
    make_chain(&m, 16, 5);
    qmod_gen_params p = params(QMOD_GEN_SAMPLE, 0, -1, 60);
    p.top_p = 0.9;
    p.temperature = 1.3;
    qmod_gen_result a, b, c;
    p.seed = 42;
    run(&m, &p, &a);
    run(&m, &p, &b);
    p.seed = 43;
    run(&m, &p, &c);
    assert_int_equal(a.n, 60);
    assert_memory_equal(a.tokens, b.tokens, a.n * sizeof(int32_t));
    assert_true(a.logprob == b.logprob);
    assert_true(memcmp(a.tokens, c.tokens, a.n * sizeof(int32_t)) != 0);
    check_result_scores(&m, &p, &a);
    qmod_gen_result_free(&a);
    qmod_gen_result_free(&b);
    qmod_gen_result_free(&c);
}

/* ---- callbacks ---------------------------------------------------------------- */

typedef struct seen {
    int32_t ids[QMOD_GEN_MAX_LEN];
    size_t n;
    char text[4096];
    bool text_grew_only;
    toy *m;
    int polls, stop_at;
} seen;

static void on_token(const qmod_gen_token *t, void *user) {
    seen *s = user;
    if (s->m && s->m->cancelled) s->m->calls_after_cancel++;
    assert_int_equal(t->index, s->n);
    s->ids[s->n++] = t->id;
    if (t->text) {
        size_t had = strlen(s->text);
        assert_int_equal(t->new_from, had);
        if (strncmp(t->text, s->text, had) != 0) s->text_grew_only = false;
        assert_true(t->text_len < sizeof s->text);
        memcpy(s->text, t->text, t->text_len + 1);
    }
}

static int cancel_at(void *user) {
    seen *s = user;
    if (++s->polls < s->stop_at) return 0;
    s->m->cancelled = true;
    return 1;
}

/* Tokens reach the callback in order, and they are the result's tokens,
 * for every strategy (beam search hands a token over once every hypothesis
 * that can still win agrees on it). */
static void callback_order(void **state) {
    (void)state;
    static toy m;
    static seen s;
    for (int strat = 0; strat < 3; strat++)
        for (uint64_t seed = 1; seed <= 6; seed++) {
            make_chain(&m, 10, seed + 7);
            memset(&s, 0, sizeof s);
            qmod_gen_params p = params((qmod_gen_strategy)strat, 0, 1, 50);
            p.beam_size = 3;
            p.seed = seed;
            p.on_token = on_token;
            p.on_token_user_data = &s;
            qmod_gen_result r;
            run(&m, &p, &r);
            assert_int_equal(s.n, r.n);
            assert_memory_equal(s.ids, r.tokens, r.n * sizeof(int32_t));
            qmod_gen_result_free(&r);
        }
}

/* Cancel after a few polls: QIAO_ERR_CANCELLED, an empty result, and
 * neither the step nor the token callback runs once cancel said stop. */
static void cancel_midway(void **state) {
    (void)state;
    static toy m;
    static seen s;
    for (int strat = 0; strat < 3; strat++) {
        make_chain(&m, 10, 3);
        memset(&s, 0, sizeof s);
        s.m = &m;
        s.stop_at = 5;
        qmod_gen_params p = params((qmod_gen_strategy)strat, 0, -1, 40);
        p.beam_size = 3;
        p.on_token = on_token;
        p.on_token_user_data = &s;
        p.cancel = cancel_at;
        p.cancel_user_data = &s;
        qmod_gen_result r;
        assert_int_equal(qmod_generate(&p, toy_step, &m, m.V, &r), QIAO_ERR_CANCELLED);
        assert_non_null(strstr(qiao_last_error(), "cancelled"));
        assert_true(m.cancelled);
        assert_int_equal(m.calls, 4);
        assert_int_equal(m.calls_after_cancel, 0);
        assert_null(r.tokens);
        assert_int_equal(r.n, 0);
        if (strat != QMOD_GEN_BEAM) assert_int_equal(s.n, 4);
    }
}

/* A toy that spells a tokenized sentence: the next id of the script gets
 * logit 20, the rest 0 (so the spelled sentence is by far the most likely
 * one, for beam search too), and EOS after the last. */
static void spell_fn(const toy *m, const int32_t *hist, int len, float *out) {
    (void)hist;
    int i = len - 1; /* tokens generated so far (the prompt is one BOS) */
    for (int v = 0; v < m->V; v++) out[v] = 0;
    out[i < m->n_script ? m->script[i] : QIAO_PIECE_EOS] = 20;
}

/* With a tokenizer: streamed text only grows, ends as the result's text,
 * and that is the written text of the sentence. */
static void streaming_text(void **state) {
    (void)state;
    qiao_tokenizer *tok = NULL;
    assert_int_equal(qiao_tokenizer_load(TOK_PATH, &tok), QIAO_OK);
    static toy m;
    static seen s;
    const char *sentence = "Hello , world ! 我 喜欢 北京 。 A cat: \xF0\x9F\x90\x88 ( ok ) .";
    qiao_tokens *t = NULL;
    assert_int_equal(qiao_tokenize(tok, sentence, strlen(sentence), NULL, &t), QIAO_OK);
    for (int strat = 0; strat < 2; strat++) {
        memset(&m, 0, sizeof m);
        m.V = (int)qiao_tokenizer_vocab_size(tok);
        m.fn = spell_fn;
        m.script = t->ids;
        m.n_script = (int)t->count;
        memset(&s, 0, sizeof s);
        s.text_grew_only = true;
        qmod_gen_params p = params(strat ? QMOD_GEN_BEAM : QMOD_GEN_GREEDY, QIAO_PIECE_BOS, QIAO_PIECE_EOS, 60);
        p.tok = tok;
        p.on_token = on_token;
        p.on_token_user_data = &s;
        qmod_gen_result r;
        run(&m, &p, &r);
        assert_int_equal(r.n, t->count);
        assert_memory_equal(r.tokens, t->ids, t->count * sizeof(int32_t));
        assert_true(s.text_grew_only);
        assert_string_equal(s.text, r.text);
        assert_string_equal(r.text, "hello, world! 我喜欢北京。 a cat: \xF0\x9F\x90\x88 (ok).");
        qmod_gen_result_free(&r);
    }
    qiao_tokens_free(t);
    qiao_tokenizer_free(tok);
}

/* ---- arguments and failures ---------------------------------------------------- */

static void expect_fail(const qmod_gen_params *p, qmod_gen_step_fn step, void *ctx, int32_t V, qiao_status want,
                        const char *msg) {
    qmod_gen_result r;
    qiao_status st = qmod_generate(p, step, ctx, V, &r);
    if (st != want || !strstr(qiao_last_error(), msg))
        printf("status %d (want %d), message '%s' (want '%s')\n", st, want, qiao_last_error(), msg);
    assert_int_equal(st, want);
    assert_non_null(strstr(qiao_last_error(), msg));
    assert_null(r.tokens);
}

static void bad_arguments(void **state) {
    (void)state;
    static toy m;
    make_chain(&m, 8, 1);
    qmod_gen_params p = params(QMOD_GEN_BEAM, 0, 1, 10);
    p.beam_size = 0;
    expect_fail(&p, toy_step, &m, 8, QIAO_ERR_INVALID_ARGUMENT, "beam_size 0 < 1");
    p.beam_size = 1000;
    expect_fail(&p, toy_step, &m, 8, QIAO_ERR_TOO_LARGE, "beam_size 1000 over the limit 256");
    p = params(QMOD_GEN_GREEDY, 0, 1, 0);
    expect_fail(&p, toy_step, &m, 8, QIAO_ERR_INVALID_ARGUMENT, "max_len 0 < 1");
    p.max_len = 1000000;
    expect_fail(&p, toy_step, &m, 8, QIAO_ERR_TOO_LARGE, "max_len 1000000 over the limit 4096");
    p.max_len = 10;
    expect_fail(&p, NULL, &m, 8, QIAO_ERR_INVALID_ARGUMENT, "NULL step function");
    expect_fail(&p, toy_step, &m, 0, QIAO_ERR_INVALID_ARGUMENT, "vocabulary size 0 < 1");
    expect_fail(&p, toy_step, &m, QMOD_GEN_MAX_VOCAB + 1, QIAO_ERR_TOO_LARGE, "vocabulary size 16777217 over");
    p.eos_id = 8;
    expect_fail(&p, toy_step, &m, 8, QIAO_ERR_INVALID_ARGUMENT, "eos_id 8 not in -1..7");
    p.eos_id = 1;
    p.bos_id = -1;
    expect_fail(&p, toy_step, &m, 8, QIAO_ERR_INVALID_ARGUMENT, "no prompt and bos_id -1");
    int32_t prompt[] = {0, 9};
    p.prompt = prompt;
    p.n_prompt = 2;
    expect_fail(&p, toy_step, &m, 8, QIAO_ERR_INVALID_ARGUMENT, "prompt[1] = 9 not in 0..7");
    p = params(QMOD_GEN_SAMPLE, 0, 1, 10);
    p.top_p = 0;
    expect_fail(&p, toy_step, &m, 8, QIAO_ERR_INVALID_ARGUMENT, "top_p 0 not in (0, 1]");
    p.top_p = 1.5;
    expect_fail(&p, toy_step, &m, 8, QIAO_ERR_INVALID_ARGUMENT, "top_p 1.5 not in (0, 1]");
    p.top_p = 1;
    p.temperature = -1;
    expect_fail(&p, toy_step, &m, 8, QIAO_ERR_INVALID_ARGUMENT, "temperature -1");
    p.temperature = NAN;
    expect_fail(&p, toy_step, &m, 8, QIAO_ERR_INVALID_ARGUMENT, "temperature nan");
    p = params(QMOD_GEN_BEAM, 0, 1, 10);
    p.length_alpha = -0.5;
    expect_fail(&p, toy_step, &m, 8, QIAO_ERR_INVALID_ARGUMENT, "length_alpha -0.5");
    p = params(QMOD_GEN_BEAM, 0, 1, 10);
    p.beam_size = QMOD_GEN_MAX_BEAM;
    expect_fail(&p, toy_step, &m, QMOD_GEN_MAX_VOCAB, QIAO_ERR_TOO_LARGE, "256 beams x 16777216 vocabulary logits");
    p.strategy = (qmod_gen_strategy)7;
    expect_fail(&p, toy_step, &m, 8, QIAO_ERR_INVALID_ARGUMENT, "unknown strategy 7");
    qiao_tokenizer *tok = NULL;
    assert_int_equal(qiao_tokenizer_load(TOK_PATH, &tok), QIAO_OK);
    p = params(QMOD_GEN_GREEDY, 0, 1, 10);
    p.tok = tok;
    expect_fail(&p, toy_step, &m, 100000, QIAO_ERR_INVALID_ARGUMENT, "larger than the tokenizer's");
    qiao_tokenizer_free(tok);
    qmod_gen_result r;
    assert_int_equal(qmod_generate(NULL, toy_step, &m, 8, &r), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qmod_generate(&p, toy_step, &m, 8, NULL), QIAO_ERR_INVALID_ARGUMENT);
    qmod_gen_result_free(NULL);
}

/* The prompt reaches the first step whole; later steps add one token. */
static void prompt_first_step(void **state) {
    (void)state;
    static toy m;
    make_chain(&m, 8, 2);
    int32_t prompt[] = {0, 5, 6};
    for (int strat = 0; strat < 3; strat++) {
        qmod_gen_params p = params((qmod_gen_strategy)strat, 0, 1, 12);
        p.prompt = prompt;
        p.n_prompt = 3;
        qmod_gen_result r;
        run(&m, &p, &r);
        assert_memory_equal(m.hist[0], prompt, sizeof prompt); /* the toy asserted pos and n_new */
        assert_int_equal(m.len, 3 + r.steps - 1);
        qmod_gen_result_free(&r);
    }
}

typedef struct bad_step {
    int mode; /* 0 backend failure, 1 NaN, 2 +inf, 3 all -inf */
} bad_step;

static qiao_status failing_step(void *ctx, const qmod_gen_step *s, float *logits) {
    const bad_step *b = ctx;
    if (b->mode == 0) return qc_error(QIAO_ERR_BACKEND, "toy decoder: out of device memory");
    for (int v = 0; v < 4 * s->n_beams; v++) logits[v] = b->mode == 3 ? -INFINITY : 0;
    if (b->mode == 1) logits[2] = NAN;
    if (b->mode == 2) logits[3] = INFINITY;
    return QIAO_OK;
}

static void step_failures(void **state) {
    (void)state;
    qmod_gen_params p = params(QMOD_GEN_BEAM, 0, 1, 10);
    bad_step b = {0};
    expect_fail(&p, failing_step, &b, 4, QIAO_ERR_BACKEND, "out of device memory");
    b.mode = 1;
    expect_fail(&p, failing_step, &b, 4, QIAO_ERR_INVALID_ARGUMENT, "returned logit nan for row 0 token 2");
    b.mode = 2;
    expect_fail(&p, failing_step, &b, 4, QIAO_ERR_INVALID_ARGUMENT, "returned logit inf for row 0 token 3");
    b.mode = 3;
    expect_fail(&p, failing_step, &b, 4, QIAO_ERR_INVALID_ARGUMENT, "forbade every token of row 0");
}

/* Without EOS (or never reaching it) the search stops at max_len. */
static void max_len_stops(void **state) {
    (void)state;
    static toy m;
    make_chain(&m, 6, 9);
    for (int strat = 0; strat < 3; strat++) {
        qmod_gen_params p = params((qmod_gen_strategy)strat, 0, -1, 7);
        qmod_gen_result r;
        run(&m, &p, &r);
        assert_int_equal(r.n, 7);
        assert_false(r.eos);
        assert_int_equal(r.steps, 7);
        check_result_scores(&m, &p, &r);
        qmod_gen_result_free(&r);
    }
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(beam_beats_greedy),      cmocka_unit_test(beam_matches_exhaustive),
        cmocka_unit_test(early_stop_same_answer), cmocka_unit_test(length_penalty),
        cmocka_unit_test(greedy_equivalents),     cmocka_unit_test(sample_frequencies),
        cmocka_unit_test(sample_seeds),           cmocka_unit_test(callback_order),
        cmocka_unit_test(cancel_midway),          cmocka_unit_test(streaming_text),
        cmocka_unit_test(bad_arguments),          cmocka_unit_test(prompt_first_step),
        cmocka_unit_test(step_failures),          cmocka_unit_test(max_len_stops),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
