/* models/captioning/metrics.h - caption metrics: corpus BLEU-1..4 and
 * CIDEr-D as pycocoevalcap (the coco-caption toolkit) computes them, with
 * per-item scores, and the tokenization that turns a caption into tokens.
 *
 * Both metrics take sentences that are already tokenized: arrays of token
 * strings, compared as bytes. pycocoevalcap splits space-joined strings, so a
 * token here must be non-empty and hold no ASCII white space (refused with
 * QIAO_ERR_INVALID_ARGUMENT); under that rule the numbers are pycocoevalcap's
 * for the same tokens (tests/test_caption_metrics.c checks them against a
 * fixture its scorers wrote, tests/golden/make_caption_metrics_fixture.py).
 *
 * BLEU (pycocoevalcap.bleu, Papineni et al. 2002, as coco-caption has it):
 * clipped n-gram counts against the per-n-gram maximum over an item's
 * references; the brevity penalty uses the "closest" reference length (the
 * reference length nearest the candidate's, the shorter on a tie). The corpus
 * score sums clipped counts, candidate n-gram counts and both lengths over all
 * items before taking the geometric mean and the penalty (it is not the mean
 * of the per-item scores). Per item the same formula on one item. Like
 * pycocoevalcap, every precision is (matches + 1e-15) / (n-grams + 1e-9), so an
 * n-gram order without a match gives a score near 0 rather than 0 exactly.
 *
 * CIDEr-D (pycocoevalcap.cider, Vedantam et al. 2015, the version with
 * clipping and the length penalty): n = 1..4; each n-gram weighs tf *
 * (log N - log max(1, df)), where N is the number of items evaluated together
 * and df the number of items whose references contain the n-gram, so the score
 * of an item depends on the whole set; per reference and n, the cosine of the
 * candidate's and the reference's vectors with the candidate's weights clipped
 * to the reference's, times exp(-delta^2 / (2 * 6^2)); the mean over n and over
 * references, times 10. delta is the difference of the two sentences' counts
 * of bigrams (pycocoevalcap counts bigrams there, not words: kept for the same
 * numbers). The corpus score is the mean of the per-item scores.
 *
 * Thread-safety: no shared state; any call may run on any thread.
 *
 * Not a public header: prefix qmod_. */
#ifndef QIAO_MODELS_CAPTION_METRICS_H
#define QIAO_MODELS_CAPTION_METRICS_H

#include <stddef.h>

#include "core/core.h"

enum { QMOD_BLEU_N = 4 };

/* One tokenized sentence; borrowed, nothing is copied or kept. */
typedef struct qmod_sentence {
    const char *const *tok; /* (n) NUL-terminated UTF-8 tokens */
    size_t n;
} qmod_sentence;

/* One evaluated item: a candidate caption and its references (at least one). */
typedef struct qmod_caption_item {
    qmod_sentence cand;
    const qmod_sentence *refs; /* (n_refs) */
    size_t n_refs;
} qmod_caption_item;

/* Corpus BLEU-1..4 of items[0 .. n) into bleu[0..3] (bleu[k] is BLEU-(k+1));
 * when item_bleu is not NULL, each item's own BLEU-1..4 into
 * item_bleu[4 * i .. 4 * i + 3]. QIAO_ERR_INVALID_ARGUMENT for no items, an
 * item without references or a bad token; QIAO_ERR_OUT_OF_MEMORY. */
qiao_status qmod_caption_bleu(const qmod_caption_item *items, size_t n, double bleu[QMOD_BLEU_N], double *item_bleu);

/* CIDEr-D of items[0 .. n) together (the document frequencies are over
 * these items' references) into *cider, the mean of the per-item scores; when
 * item_cider is not NULL, each item's score into item_cider[i]. Errors as
 * qmod_caption_bleu. */
qiao_status qmod_caption_cider(const qmod_caption_item *items, size_t n, double *cider, double *item_cider);

/* How qmod_caption_tokenize cuts a caption:
 * - EN: as pycocoevalcap's PTBTokenizer then its punctuation filter: lower
 *   case (Unicode case folding after NFKC), punctuation split off and dropped
 *   (. , ; : ? ! - -- ... quotes, brackets), clitics split off and kept
 *   ("don't" -> "do n't", "it's" -> "it 's"), hyphenated words and decimal
 *   numbers kept whole, any other ASCII symbol ($ % & ...) a token of its own.
 *   Stanford's tokenizer has more rules (abbreviations, URLs); captions
 *   rarely need them.
 * - ZH_WORDS: ICU's word segmentation (the tokenizer's, tokenizers/), every
 *   segment a token except white space and punctuation (general category P).
 * - ZH_CHARS: every ideographic (CJK) character a token; runs of other
 *   characters (Latin words, digits) a token each; white space and
 *   punctuation dropped.
 * ZH modes apply the same NFKC and case folding. */
typedef enum qmod_caption_tok_mode {
    QMOD_CAPTION_TOK_EN = 0,
    QMOD_CAPTION_TOK_ZH_WORDS = 1,
    QMOD_CAPTION_TOK_ZH_CHARS = 2
} qmod_caption_tok_mode;

/* Tokens of one caption; one allocation owned by the struct. */
typedef struct qmod_caption_tokens {
    const char **tok; /* (n) tokens, pointing into the same allocation */
    size_t n;
} qmod_caption_tokens;

/* Cuts text[0 .. len) into tokens by `mode` into *out (n = 0 for a caption
 * of only punctuation and space). QIAO_ERR_FORMAT for invalid UTF-8 (naming
 * the byte), QIAO_ERR_INVALID_ARGUMENT for a bad mode or NULL,
 * QIAO_ERR_OUT_OF_MEMORY. On failure *out is empty. Free with
 * qmod_caption_tokens_free. */
qiao_status qmod_caption_tokenize(const char *text, size_t len, qmod_caption_tok_mode mode, qmod_caption_tokens *out);
/* Accepts NULL and an empty struct; leaves *t empty. */
void qmod_caption_tokens_free(qmod_caption_tokens *t);

/* The sentence view of tokens, for qmod_caption_item. */
static inline qmod_sentence qmod_caption_sentence(const qmod_caption_tokens *t) {
    qmod_sentence s = {t->tok, t->n};
    return s;
}

#endif
