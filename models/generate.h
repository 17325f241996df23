/* models/generate.h - choosing the tokens of a generated sequence (a
 * caption): greedy, beam search and sampling, for any decoder.
 *
 * The search knows nothing of networks. The caller's step function runs
 * the decoder one position further for a batch of rows (beams) and returns
 * the next-token logits of each row; the search picks tokens, keeps the
 * beams, and tells the decoder through `parents` which of its cached rows
 * each new row continues, so a KV-cached decoder gathers its cache rows
 * instead of recomputing the prefixes.
 *
 * The step contract, call by call (P = prompt length, t = tokens generated
 * so far, n = rows of the previous call):
 *   call 0:  pos = 0, n_new = P, n_beams = 1, tokens = the prompt,
 *            parents = NULL (nothing cached yet).
 *   call t:  pos = P + t - 1, n_new = 1, n_beams = 1..beam_size,
 *            tokens[i] = the token row i appends at `pos`, parents[i] in
 *            0 .. n-1: row i's prefix (positions 0 .. pos-1) is the prefix of
 *            row parents[i] of the previous call. It is a gather, not a
 *            permutation: a parent may be repeated (one beam forks) or left
 *            out (it fell off the beam), and n_beams may differ from n.
 *            Greedy and sampling always pass parents = {0}.
 *   Each call writes logits (n_beams, vocab) for the token after `pos +
 *   n_new - 1`; -INFINITY forbids a token. NaN or +inf, or a row with no
 *   finite logit, fails the search with QIAO_ERR_INVALID_ARGUMENT. A status
 *   other than QIAO_OK from the step stops the search and is returned.
 *
 * Not thread-safe per call (the callbacks run on the calling thread); any
 * number of searches may run at once on different threads.
 * Not a public header: prefix qmod_gen_. */
#ifndef QIAO_MODELS_GENERATE_H
#define QIAO_MODELS_GENERATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* Bounds on what a caller may ask: a caption is tens of tokens and a
 * decoder's context a few hundred, so 4096 tokens is generous; beyond 256
 * beams and 2^24 vocabulary entries a request is a mistake, not a search.
 * The logits of one step, (beams, vocab) floats, must also fit in 1 GiB. */
#define QMOD_GEN_MAX_LEN 4096
#define QMOD_GEN_MAX_BEAM 256
#define QMOD_GEN_MAX_VOCAB ((int32_t)1 << 24)
#define QMOD_GEN_MAX_LOGITS_BYTES ((size_t)1 << 30)

typedef enum qmod_gen_strategy {
    QMOD_GEN_GREEDY = 0, /* the most likely token at each step (ties: the lowest id) */
    QMOD_GEN_BEAM = 1,   /* beam search with the GNMT length penalty */
    QMOD_GEN_SAMPLE = 2  /* sampling with temperature and top-p, from a seeded RNG */
} qmod_gen_strategy;

typedef struct qmod_gen_step {
    int pos;                /* position of the first new token; each row has `pos` tokens cached */
    int n_new;              /* new tokens per row: P on the first call, then 1 */
    int n_beams;            /* rows in this call */
    const int32_t *tokens;  /* (n_beams, n_new) */
    const int32_t *parents; /* (n_beams) rows of the previous call; NULL on the first call */
} qmod_gen_step;

/* Runs the decoder for one step: writes logits (s->n_beams, vocab). */
typedef qiao_status (*qmod_gen_step_fn)(void *ctx, const qmod_gen_step *s, float *logits);

/* One token of the output, handed to the token callback as soon as it is
 * certain to be in the result. */
typedef struct qmod_gen_token {
    int32_t id;
    size_t index;     /* 0 = the first generated token */
    const char *text; /* with a tokenizer: the text of tokens 0 .. index (written
                         spacing, an unfinished UTF-8 character left out), NUL-
                         terminated, valid during the call; NULL without one */
    size_t text_len;
    size_t new_from; /* text + new_from is what this token added (text only grows) */
} qmod_gen_token;

typedef void (*qmod_gen_token_fn)(const qmod_gen_token *t, void *user_data);

typedef struct qmod_gen_params {
    qmod_gen_strategy strategy; /* default QMOD_GEN_GREEDY */
    int max_len;                /* tokens generated at most, EOS included: 1..QMOD_GEN_MAX_LEN; default 64 */
    int32_t bos_id;             /* the prompt when n_prompt is 0; default QIAO_PIECE_BOS */
    int32_t eos_id;             /* ends a sequence; -1: none (max_len ends it); default QIAO_PIECE_EOS */
    const int32_t *prompt;      /* fed to the first step (BOS, a language token...); read during the call */
    size_t n_prompt;            /* 0 (default): the prompt is {bos_id} */
    /* beam search */
    int beam_size;       /* 1..QMOD_GEN_MAX_BEAM; default 4 */
    double length_alpha; /* GNMT alpha >= 0 (0: no length penalty); default 0.6 */
    bool early_stop;     /* stop once no live beam can beat the best finished one; default true */
    /* sampling */
    double temperature; /* >= 0; 0 is greedy; default 1 */
    double top_p;       /* (0, 1]: sample from the smallest set of most likely tokens whose
                           probability reaches top_p (after temperature); default 1 */
    uint64_t seed;      /* same seed, same logits: same tokens */
    /* streaming and cancelling */
    const qiao_tokenizer *tok; /* optional: text for on_token and the result; vocab must fit in it */
    qmod_gen_token_fn on_token;
    void *on_token_user_data;
    qiao_cancel_fn cancel; /* polled before each step: nonzero stops with QIAO_ERR_CANCELLED */
    void *cancel_user_data;
} qmod_gen_params;

typedef struct qmod_gen_result {
    int32_t *tokens; /* (n) generated, without the prompt and without EOS */
    size_t n;
    bool eos;       /* the sequence ended with EOS (else it reached max_len) */
    double logprob; /* sum of the model's log-softmax (temperature 1, before top-p) of
                       the generated tokens, EOS included */
    double score;   /* beam: logprob / lp(length incl. EOS); otherwise logprob */
    int steps;      /* step calls made */
    char *text;     /* with a tokenizer: the written text of `tokens`; else NULL */
} qmod_gen_result;

qmod_gen_params qmod_gen_default_params(void);

/* The GNMT length penalty (Wu et al. 2016, eq. 14): ((5 + len) / 6)^alpha. */
double qmod_gen_length_penalty(int len, double alpha);

/* Generates one sequence. Beam search keeps beam_size live hypotheses
 * ranked by log-probability and the beam_size best finished ones ranked by
 * logprob / lp(length); an EOS candidate finishes a hypothesis only when it
 * ranks among the best beam_size candidates of its step (as fairseq and
 * Hugging Face do). The result is the best finished hypothesis, or, when
 * none finished within max_len, the best live one. The coverage penalty of
 * GNMT is not applied: it needs the decoder's attention, which the step
 * does not expose. On success *out holds the result; free it with
 * qmod_gen_result_free(). On failure *out is empty. */
qiao_status qmod_generate(const qmod_gen_params *p, qmod_gen_step_fn step, void *ctx, int32_t vocab,
                          qmod_gen_result *out);
void qmod_gen_result_free(qmod_gen_result *r);

#endif
