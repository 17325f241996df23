/* models/generate.c - greedy, beam search and sampling over a caller's
 * step function (generate.h says the contract).
 *
 * Scores are log-probabilities in double: a caption's sum over tens of
 * tokens then compares exactly enough that the search is deterministic
 * (ties go to the lower row, then the lower token id). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/generate.h"
#include "tokenizers/tokenizer.h"

qmod_gen_params qmod_gen_default_params(void) {
    qmod_gen_params p;
    memset(&p, 0, sizeof p);
    p.strategy = QMOD_GEN_GREEDY;
    p.max_len = 64;
    p.bos_id = QIAO_PIECE_BOS;
    p.eos_id = QIAO_PIECE_EOS;
    p.beam_size = 4;
    p.length_alpha = 0.6;
    p.early_stop = true;
    p.temperature = 1.0;
    p.top_p = 1.0;
    return p;
}

double qmod_gen_length_penalty(int len, double alpha) { return alpha == 0.0 ? 1.0 : pow((5.0 + len) / 6.0, alpha); }

void qmod_gen_result_free(qmod_gen_result *r) {
    if (!r) return;
    free(r->tokens);
    free(r->text);
    memset(r, 0, sizeof *r);
}

/* ---- arguments --------------------------------------------------------------- */

static qiao_status check_args(const qmod_gen_params *p, qmod_gen_step_fn step, int32_t vocab) {
    if (!step) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_generate: NULL step function");
    if (vocab < 1) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_generate: vocabulary size %d < 1", vocab);
    if (vocab > QMOD_GEN_MAX_VOCAB)
        return qc_error(QIAO_ERR_TOO_LARGE, "qmod_generate: vocabulary size %d over the limit %d", vocab,
                        QMOD_GEN_MAX_VOCAB);
    if (p->strategy != QMOD_GEN_GREEDY && p->strategy != QMOD_GEN_BEAM && p->strategy != QMOD_GEN_SAMPLE)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_generate: unknown strategy %d", (int)p->strategy);
    if (p->max_len < 1)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_generate: max_len %d < 1 (at least one token is generated)",
                        p->max_len);
    if (p->max_len > QMOD_GEN_MAX_LEN)
        return qc_error(QIAO_ERR_TOO_LARGE, "qmod_generate: max_len %d over the limit %d", p->max_len,
                        QMOD_GEN_MAX_LEN);
    int beams = p->strategy == QMOD_GEN_BEAM ? p->beam_size : 1;
    if (p->strategy == QMOD_GEN_BEAM) {
        if (p->beam_size < 1)
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_generate: beam_size %d < 1", p->beam_size);
        if (p->beam_size > QMOD_GEN_MAX_BEAM)
            return qc_error(QIAO_ERR_TOO_LARGE, "qmod_generate: beam_size %d over the limit %d", p->beam_size,
                            QMOD_GEN_MAX_BEAM);
        if (!isfinite(p->length_alpha) || p->length_alpha < 0)
            return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                            "qmod_generate: length_alpha %g must be finite and >= 0 (the early stop bound needs "
                            "a penalty that grows with length)",
                            p->length_alpha);
    }
    if (p->strategy == QMOD_GEN_SAMPLE) {
        if (!isfinite(p->temperature) || p->temperature < 0)
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_generate: temperature %g must be finite and >= 0",
                            p->temperature);
        if (!(p->top_p > 0 && p->top_p <= 1))
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_generate: top_p %g not in (0, 1]", p->top_p);
    }
    if ((size_t)beams * (size_t)vocab > QMOD_GEN_MAX_LOGITS_BYTES / sizeof(float))
        return qc_error(QIAO_ERR_TOO_LARGE, "qmod_generate: %d beams x %d vocabulary logits exceed %zu MiB", beams,
                        vocab, QMOD_GEN_MAX_LOGITS_BYTES >> 20);
    if (p->eos_id < -1 || p->eos_id >= vocab)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_generate: eos_id %d not in -1..%d", p->eos_id, vocab - 1);
    if (p->n_prompt == 0 && (p->bos_id < 0 || p->bos_id >= vocab))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_generate: no prompt and bos_id %d not in 0..%d", p->bos_id,
                        vocab - 1);
    if (p->n_prompt > QMOD_GEN_MAX_LEN)
        return qc_error(QIAO_ERR_TOO_LARGE, "qmod_generate: prompt of %zu tokens over the limit %d", p->n_prompt,
                        QMOD_GEN_MAX_LEN);
    if (p->n_prompt && !p->prompt) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_generate: NULL prompt");
    for (size_t i = 0; i < p->n_prompt; i++)
        if (p->prompt[i] < 0 || p->prompt[i] >= vocab)
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_generate: prompt[%zu] = %d not in 0..%d", i, p->prompt[i],
                            vocab - 1);
    if (p->tok && vocab > qiao_tokenizer_vocab_size(p->tok))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "qmod_generate: vocabulary size %d is larger than the tokenizer's %lld pieces", vocab,
                        (long long)qiao_tokenizer_vocab_size(p->tok));
    return QIAO_OK;
}

/* ---- one search --------------------------------------------------------------- */

typedef struct gen_run {
    const qmod_gen_params *p;
    qmod_gen_step_fn step;
    void *ctx;
    int32_t vocab;
    const int32_t *prompt;
    int n_prompt;
    float *logits; /* (beams, vocab) */
    int steps;
    size_t emitted;  /* tokens handed to on_token */
    size_t text_len; /* length of the text handed with the last one */
} gen_run;

/* Polls cancel, runs the step, checks its logits. */
static qiao_status run_step(gen_run *g, int t, int n_beams, const int32_t *tokens, const int32_t *parents) {
    const qmod_gen_params *p = g->p;
    if (p->cancel && p->cancel(p->cancel_user_data))
        return qc_error(QIAO_ERR_CANCELLED, "generation cancelled after %d of at most %d tokens", t, p->max_len);
    qmod_gen_step s = {.pos = t == 0 ? 0 : g->n_prompt + t - 1,
                       .n_new = t == 0 ? g->n_prompt : 1,
                       .n_beams = n_beams,
                       .tokens = t == 0 ? g->prompt : tokens,
                       .parents = t == 0 ? NULL : parents};
    qiao_status st = g->step(g->ctx, &s, g->logits);
    g->steps++;
    if (st != QIAO_OK) return st;
    for (int b = 0; b < n_beams; b++) {
        const float *l = g->logits + (size_t)b * (size_t)g->vocab;
        bool any = false;
        for (int32_t v = 0; v < g->vocab; v++) {
            if (isnan(l[v]) || l[v] == INFINITY)
                return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                                "qmod_generate: step %d returned logit %g for row %d token %d", t, (double)l[v], b, v);
            any |= l[v] != -INFINITY;
        }
        if (!any)
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_generate: step %d forbade every token of row %d", t, b);
    }
    return QIAO_OK;
}

/* log(sum(exp(l))) of one row, in double. */
static double row_lse(const float *l, int32_t vocab) {
    float m = -INFINITY;
    for (int32_t v = 0; v < vocab; v++)
        if (l[v] > m) m = l[v];
    double s = 0;
    for (int32_t v = 0; v < vocab; v++)
        if (l[v] != -INFINITY) s += exp((double)l[v] - m);
    return m + log(s);
}

/* Hands tokens [g->emitted, upto) of `toks` to on_token, each with the text
 * of the tokens up to it. */
static qiao_status emit(gen_run *g, const int32_t *toks, size_t upto) {
    const qmod_gen_params *p = g->p;
    for (; g->emitted < upto; g->emitted++) {
        if (!p->on_token) continue;
        qmod_gen_token t = {.id = toks[g->emitted], .index = g->emitted};
        char *text = NULL;
        if (p->tok) {
            size_t len = 0;
            qiao_status st = tk_detokenize(p->tok, toks, g->emitted + 1, false, true, "qmod_generate", &text, &len);
            if (st != QIAO_OK) return st;
            t.text = text;
            t.text_len = len;
            t.new_from = g->text_len < len ? g->text_len : len;
            g->text_len = len;
        }
        p->on_token(&t, p->on_token_user_data);
        free(text);
    }
    return QIAO_OK;
}

static int32_t argmax(const float *l, int32_t vocab) {
    int32_t best = 0;
    for (int32_t v = 1; v < vocab; v++)
        if (l[v] > l[best]) best = v;
    return best;
}

/* Uniform in [0, 1) with 53 random bits (qc_rng_uniform has 24, too coarse
 * for the tail of a large vocabulary). */
static double uniform53(qc_rng *r) { return (double)(qc_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }

typedef struct prob_id {
    double p;
    int32_t id;
} prob_id;

static int by_prob(const void *a, const void *b) {
    const prob_id *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* One draw from softmax(l / T), restricted to the nucleus when top_p < 1.
 * (l - max) / T is formed before exp, so a tiny T sends every token but the
 * most likely to exactly 0 instead of overflowing. */
static int32_t sample(const float *l, int32_t vocab, double T, double top_p, qc_rng *rng, prob_id *w) {
    float m = l[argmax(l, vocab)];
    double sum = 0;
    for (int32_t v = 0; v < vocab; v++) {
        w[v].p = l[v] == -INFINITY ? 0.0 : exp(((double)l[v] - m) / T);
        w[v].id = v;
        sum += w[v].p;
    }
    int32_t n = vocab;
    if (top_p < 1) {
        qsort(w, (size_t)vocab, sizeof *w, by_prob);
        double cum = 0;
        n = 0;
        while (n < vocab && w[n].p > 0 && (n == 0 || cum < top_p * sum)) cum += w[n++].p;
        sum = cum;
    }
    double u = uniform53(rng) * sum;
    int32_t last = w[0].id;
    for (int32_t i = 0; i < n; i++) {
        if (w[i].p <= 0) continue;
        if (u < w[i].p) return w[i].id;
        u -= w[i].p;
        last = w[i].id;
    }
    return last; /* rounding left u just above the total */
}

/* Greedy and sampling: one row. */
static qiao_status run_single(gen_run *g, qmod_gen_result *r) {
    const qmod_gen_params *p = g->p;
    int32_t vocab = g->vocab;
    bool greedy = p->strategy == QMOD_GEN_GREEDY || p->temperature == 0;
    prob_id *w = greedy ? NULL : malloc((size_t)vocab * sizeof *w);
    r->tokens = malloc((size_t)p->max_len * sizeof *r->tokens);
    if ((!greedy && !w) || !r->tokens) {
        free(w);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qmod_generate: out of memory");
    }
    qc_rng rng;
    qc_rng_seed(&rng, p->seed);
    const int32_t zero = 0;
    int32_t last = 0;
    qiao_status st = QIAO_OK;
    for (int t = 0; t < p->max_len; t++) {
        if ((st = run_step(g, t, 1, &last, &zero)) != QIAO_OK) break;
        const float *l = g->logits;
        int32_t v = greedy ? argmax(l, vocab) : sample(l, vocab, p->temperature, p->top_p, &rng, w);
        r->logprob += (double)l[v] - row_lse(l, vocab);
        if (v == p->eos_id) {
            r->eos = true;
            break;
        }
        r->tokens[r->n++] = v;
        last = v;
        if ((st = emit(g, r->tokens, r->n)) != QIAO_OK) break;
    }
    r->score = r->logprob;
    free(w);
    return st;
}

/* ---- beam search ------------------------------------------------------------- */

typedef struct cand {
    double s;     /* log-probability of the prefix with this token */
    int32_t beam; /* row of the step that scored it */
    int32_t tok;
} cand;

/* Better first: higher score, then lower row, then lower token. */
static int by_cand(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    if (x->beam != y->beam) return x->beam < y->beam ? -1 : 1;
    return x->tok < y->tok ? -1 : x->tok > y->tok;
}

/* A min-heap on (logit, -token) holding the m best tokens of a row; its root
 * is the worst of them. */
static bool worse(const cand *a, const cand *b) { return a->s < b->s || (a->s == b->s && a->tok > b->tok); }

static void sift_down(cand *h, int n, int i) {
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && worse(&h[c + 1], &h[c])) c++;
        if (!worse(&h[c], &h[i])) return;
        cand t = h[c];
        h[c] = h[i];
        h[i] = t;
        i = c;
    }
}

static int row_top(const float *l, int32_t vocab, int m, int32_t beam, cand *h) {
    int n = 0;
    for (int32_t v = 0; v < vocab; v++) {
        if (l[v] == -INFINITY) continue;
        cand c = {.s = l[v], .beam = beam, .tok = v};
        if (n < m) {
            h[n++] = c;
            for (int i = n - 1; i > 0 && worse(&h[i], &h[(i - 1) / 2]); i = (i - 1) / 2) {
                cand t = h[i];
                h[i] = h[(i - 1) / 2];
                h[(i - 1) / 2] = t;
            }
        } else if (worse(&h[0], &c)) {
            h[0] = c;
            sift_down(h, n, 0);
        }
    }
    return n;
}

typedef struct beam_state {
    int K, L;
    int32_t *cur, *nxt;        /* (K, L) token histories of the live beams */
    double *cur_lp, *nxt_lp;   /* (K) */
    int32_t *tokens, *parents; /* (K) the next step's input */
    int32_t *fin;              /* (K, L) finished hypotheses, best score first */
    int *fin_len;              /* (K) tokens without EOS */
    double *fin_lp, *fin_score;
    int n_fin;
    cand *cands; /* (K * (K + 1)) */
} beam_state;

static void beam_free(beam_state *b) {
    free(b->cur);
    free(b->nxt);
    free(b->cur_lp);
    free(b->nxt_lp);
    free(b->tokens);
    free(b->parents);
    free(b->fin);
    free(b->fin_len);
    free(b->fin_lp);
    free(b->fin_score);
    free(b->cands);
}

/* Keeps the K best finished hypotheses; among equal scores the earlier
 * stays ahead, which is what makes stopping early give the same winner as
 * searching on. */
static void finish(beam_state *b, const int32_t *toks, int len, double lp, double alpha) {
    double score = lp / qmod_gen_length_penalty(len + 1, alpha);
    int at = b->n_fin;
    while (at > 0 && b->fin_score[at - 1] < score) at--;
    if (at >= b->K) return;
    int last = b->n_fin < b->K ? b->n_fin : b->K - 1;
    for (int i = last; i > at; i--) {
        memcpy(b->fin + (size_t)i * b->L, b->fin + (size_t)(i - 1) * b->L, (size_t)b->fin_len[i - 1] * sizeof(int32_t));
        b->fin_len[i] = b->fin_len[i - 1];
        b->fin_lp[i] = b->fin_lp[i - 1];
        b->fin_score[i] = b->fin_score[i - 1];
    }
    memcpy(b->fin + (size_t)at * b->L, toks, (size_t)len * sizeof(int32_t));
    b->fin_len[at] = len;
    b->fin_lp[at] = lp;
    b->fin_score[at] = score;
    if (b->n_fin < b->K) b->n_fin++;
}

/* Length of the prefix every hypothesis that can still win shares: the
 * live beams (len tokens each) and the kept finished ones. */
static size_t common_prefix(const beam_state *b, int n_live, int len) {
    const int32_t *ref = n_live ? b->cur : b->fin;
    size_t c = n_live ? (size_t)len : (size_t)b->fin_len[0];
    for (int i = 0; i < n_live; i++)
        for (size_t j = 0; j < c; j++)
            if (b->cur[(size_t)i * b->L + j] != ref[j]) c = j;
    for (int i = 0; i < b->n_fin; i++) {
        if ((size_t)b->fin_len[i] < c) c = (size_t)b->fin_len[i];
        for (size_t j = 0; j < c; j++)
            if (b->fin[(size_t)i * b->L + j] != ref[j]) c = j;
    }
    return c;
}

static qiao_status run_beam(gen_run *g, qmod_gen_result *r) {
    const qmod_gen_params *p = g->p;
    int K = p->beam_size, L = p->max_len;
    int32_t vocab = g->vocab;
    int m = vocab < K + 1 ? (int)vocab : K + 1; /* per row, enough for K non-EOS candidates */
    size_t KL = (size_t)K * (size_t)L;
    beam_state b = {.K = K, .L = L};
    b.cur = malloc(KL * sizeof *b.cur);
    b.nxt = malloc(KL * sizeof *b.nxt);
    b.fin = malloc(KL * sizeof *b.fin);
    b.cur_lp = calloc((size_t)K, sizeof *b.cur_lp);
    b.nxt_lp = calloc((size_t)K, sizeof *b.nxt_lp);
    b.fin_lp = calloc((size_t)K, sizeof *b.fin_lp);
    b.fin_score = calloc((size_t)K, sizeof *b.fin_score);
    b.fin_len = calloc((size_t)K, sizeof *b.fin_len);
    b.tokens = calloc((size_t)K, sizeof *b.tokens);
    b.parents = calloc((size_t)K, sizeof *b.parents);
    b.cands = malloc((size_t)K * (size_t)m * sizeof *b.cands);
    if (!b.cur || !b.nxt || !b.fin || !b.cur_lp || !b.nxt_lp || !b.fin_lp || !b.fin_score || !b.fin_len || !b.tokens ||
        !b.parents || !b.cands) {
        beam_free(&b);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qmod_generate: out of memory for %d beams of %d tokens", K, L);
    }
    qiao_status st = QIAO_OK;
    int n_live = 1, len = 0; /* live beams and their length */
    for (int t = 0; t < L; t++) {
        if ((st = run_step(g, t, n_live, b.tokens, b.parents)) != QIAO_OK) break;
        int nc = 0;
        for (int i = 0; i < n_live; i++) {
            const float *l = g->logits + (size_t)i * (size_t)vocab;
            double lse = row_lse(l, vocab);
            int n = row_top(l, vocab, m, i, b.cands + nc);
            for (int j = 0; j < n; j++) b.cands[nc + j].s = b.cur_lp[i] + ((double)b.cands[nc + j].s - lse);
            nc += n;
        }
        qsort(b.cands, (size_t)nc, sizeof *b.cands, by_cand);
        int nl = 0;
        for (int k = 0; k < nc && (nl < K || k < K); k++) {
            const cand *c = &b.cands[k];
            const int32_t *hist = b.cur + (size_t)c->beam * L;
            if (c->tok == p->eos_id) {
                if (k < K) finish(&b, hist, len, c->s, p->length_alpha);
                continue;
            }
            if (nl == K) continue;
            int32_t *h = b.nxt + (size_t)nl * L;
            memcpy(h, hist, (size_t)len * sizeof *h);
            h[len] = c->tok;
            b.nxt_lp[nl] = c->s;
            b.tokens[nl] = c->tok;
            b.parents[nl] = c->beam;
            nl++;
        }
        int32_t *tmp = b.cur;
        b.cur = b.nxt;
        b.nxt = tmp;
        double *tl = b.cur_lp;
        b.cur_lp = b.nxt_lp;
        b.nxt_lp = tl;
        n_live = nl;
        len++;
        if (n_live == 0 && b.n_fin == 0) {
            st = qc_error(QIAO_ERR_INTERNAL, "qmod_generate: beam search lost every hypothesis at step %d", t);
            break;
        }
        if ((st = emit(g, n_live ? b.cur : b.fin, common_prefix(&b, n_live, len))) != QIAO_OK) break;
        if (n_live == 0) break;
        /* The live beams' scores can only fall: log-probabilities only
         * decrease, and a longer hypothesis divides by at most lp(L). */
        if (p->early_stop && b.n_fin > 0 && len < L &&
            b.fin_score[0] >= b.cur_lp[0] / qmod_gen_length_penalty(L, p->length_alpha))
            break;
    }
    if (st == QIAO_OK) {
        const int32_t *best;
        int n;
        if (b.n_fin > 0) {
            best = b.fin;
            n = b.fin_len[0];
            r->eos = true;
            r->logprob = b.fin_lp[0];
            r->score = b.fin_score[0];
        } else {
            best = b.cur;
            n = len;
            r->logprob = b.cur_lp[0];
            r->score = b.cur_lp[0] / qmod_gen_length_penalty(len, p->length_alpha);
        }
        r->tokens = malloc(((size_t)n + 1) * sizeof *r->tokens);
        if (!r->tokens) {
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "qmod_generate: out of memory");
        } else {
            memcpy(r->tokens, best, (size_t)n * sizeof *r->tokens);
            r->n = (size_t)n;
            st = emit(g, r->tokens, r->n);
        }
    }
    beam_free(&b);
    return st;
}

qiao_status qmod_generate(const qmod_gen_params *p, qmod_gen_step_fn step, void *ctx, int32_t vocab,
                          qmod_gen_result *out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_generate: NULL result");
    memset(out, 0, sizeof *out);
    if (!p) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_generate: NULL params");
    qiao_status st = check_args(p, step, vocab);
    if (st != QIAO_OK) return st;
    int beams = p->strategy == QMOD_GEN_BEAM ? p->beam_size : 1;
    gen_run g = {.p = p, .step = step, .ctx = ctx, .vocab = vocab};
    g.prompt = p->n_prompt ? p->prompt : &p->bos_id;
    g.n_prompt = p->n_prompt ? (int)p->n_prompt : 1;
    g.logits = malloc((size_t)beams * (size_t)vocab * sizeof *g.logits);
    if (!g.logits)
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qmod_generate: out of memory for %d x %d logits", beams, vocab);
    st = p->strategy == QMOD_GEN_BEAM ? run_beam(&g, out) : run_single(&g, out);
    if (st == QIAO_OK && p->tok)
        st = tk_detokenize(p->tok, out->tokens, out->n, false, false, "qmod_generate", &out->text, NULL);
    out->steps = g.steps;
    free(g.logits);
    if (st != QIAO_OK) qmod_gen_result_free(out);
    return st;
}
