/* tokenizers/clip_bpe.h - OpenAI CLIP's byte-level BPE tokenizer, giving the
 * ids of Hugging Face's CLIPTokenizer (the Python one, transformers 4.47)
 * for the public CLIP checkpoints.
 *
 * Loaded from the two texts a CLIP checkpoint ships, vocab.json (token ->
 * id) and merges.txt (ranked pairs), as HF reads them; the tokenizer keeps
 * copies of both, so a model file can store them and load them back.
 *
 * Encoding, per text:
 *   1. the exact strings "<|startoftext|>" and "<|endoftext|>" in the text
 *      are cut out first and become their ids (HF's added tokens);
 *   2. each piece between them is cleaned as HF does when ftfy is NOT
 *      installed (its BasicTokenizer, strip_accents=False, no punctuation
 *      split): NUL, U+FFFD and general category C* but tab, LF and CR are
 *      dropped; tab, LF, CR and Zs are white space; each CJK ideograph
 *      (BERT's block list) stands alone; NFC; split on white space (Python's
 *      str.isspace); each word lowercased (full Unicode mapping, final
 *      sigma);
 *   3. each word is cut by CLIP's pattern
 *        <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|
 *        [\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 *      with Python regex's IGNORECASE (simple case folding: "'ſ" is the
 *      contraction 's; U+0345, whose folding is a letter, matches no branch
 *      and is dropped);
 *   4. each match's UTF-8 bytes become GPT-2's byte characters, "</w>" marks
 *      the last one, and merges apply by rank, all occurrences of the best
 *      pair left to right before the next (OpenAI's loop). A match spelled
 *      exactly as a special token is that token's id;
 *   5. <|startoftext|> ... <|endoftext|> around the ids (optional), then
 *      optional truncation and padding to a context length.
 *
 * With ftfy installed HF instead runs ftfy.fix_text (which also
 * straightens curly quotes, narrows full-width forms and unescapes HTML)
 * and lowercases, without BasicTokenizer; CLIPTokenizerFast normalizes with NFC,
 * white space and lowercase only and keeps control and format characters
 * (NUL, ZWJ, soft hyphen). Neither cuts a run of CJK ideographs into single
 * characters, so both give other ids for nearly every Chinese text; OpenAI's
 * own tokenizer, which CLIP was trained with, is the ftfy one plus HTML
 * unescaping (tests/golden/make_clip_bpe_fixture.py counts the texts).
 * Unicode properties come from ICU: for characters assigned after the
 * Unicode version of the Python that runs HF (14.0 for Python 3.11) the two
 * can differ.
 *
 * Cost: the merges of a word run on a heap, O(n log n) in its bytes, so one
 * long word is not quadratic; HF has no word length limit and neither does
 * this. The whole text is limited to TK_BPE_MAX_TEXT bytes.
 *
 * A loaded tokenizer is immutable: any number of threads may encode with it
 * at once (each call has its own scratch memory; there is no cache).
 *
 * Not a public header: prefix tk_bpe_. */
#ifndef QIAO_CLIP_BPE_H
#define QIAO_CLIP_BPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* Longest text tk_bpe_encode takes, in bytes: CLIP reads 77 tokens, a few
 * hundred bytes of text; anything past this limit is refused
 * (QIAO_ERR_INVALID_ARGUMENT) rather than read. */
#define TK_BPE_MAX_TEXT ((size_t)1 << 20)
/* Longest vocab.json or merges.txt text the loader takes, in bytes (CLIP's
 * are under 1 MiB each), and the most tokens a vocabulary may have. */
#define TK_BPE_MAX_FILE ((size_t)64 << 20)
#define TK_BPE_MAX_VOCAB ((int32_t)1 << 22)

#define TK_BPE_SOT "<|startoftext|>"
#define TK_BPE_EOT "<|endoftext|>"
/* CLIP's context length, for tk_bpe_opts.context_length. */
#define TK_BPE_CLIP_CONTEXT 77

typedef struct tk_bpe tk_bpe;

typedef struct tk_bpe_opts {
    bool add_special;       /* <|startoftext|> first and <|endoftext|> last (HF's default); default true */
    int64_t context_length; /* 0: no limit (default). Else at most this many ids: the text's ids are cut so that
                               <|endoftext|> stays last, as HF's truncation=True and OpenAI's clip.tokenize(...,
                               truncate=True) do. At least 2 with add_special, else at least 1. */
    bool pad;               /* fill up to context_length with pad_id (needs context_length > 0); default false */
    int32_t pad_id;         /* -1 (default): <|endoftext|>, HF's pad token; OpenAI's clip.tokenize pads with 0 */
} tk_bpe_opts;

/* add_special on, no limit, no padding. */
tk_bpe_opts tk_bpe_default_opts(void);

/* Builds a tokenizer from vocab.json (a JSON object of token -> id) and
 * merges.txt (an optional first line starting with "#version", then one
 * pair "left right" per line, best first; blank lines and a CR before LF
 * are ignored) held in memory; both are copied. The ids must be exactly
 * 0 .. n-1, each token given once (HF tolerates gaps; CLIP has none); every
 * merge's two tokens and their concatenation must be tokens, as must every
 * byte character with and without "</w>" and both special tokens. A pair
 * listed twice takes its later rank, as HF's dict does. Unlike HF's Python
 * tokenizer, which reads only merges.txt lines 1 .. 48894, every line is
 * used (CLIP's file has exactly those). Errors: QIAO_ERR_FORMAT naming the
 * text and line or token, QIAO_ERR_INVALID_ARGUMENT for NULL arguments or a
 * text over TK_BPE_MAX_FILE, QIAO_ERR_OUT_OF_MEMORY. On success *out is
 * new; free it with tk_bpe_free(). */
qiao_status tk_bpe_load(const char *vocab_json, size_t vocab_len, const char *merges_txt, size_t merges_len,
                        tk_bpe **out);
/* Accepts NULL. */
void tk_bpe_free(tk_bpe *bpe);

/* Number of tokens (ids are 0 .. size-1); 49408 for CLIP. */
int32_t tk_bpe_vocab_size(const tk_bpe *bpe);
/* Number of merges (48894 for CLIP). */
int32_t tk_bpe_merge_count(const tk_bpe *bpe);
/* The ids of <|startoftext|> and <|endoftext|> (49406 and 49407 for CLIP). */
int32_t tk_bpe_sot_id(const tk_bpe *bpe);
int32_t tk_bpe_eot_id(const tk_bpe *bpe);

/* The token of `id` as vocab.json spells it: GPT-2 byte characters, "</w>"
 * ending a word ("photo</w>"), or a special token. NUL-terminated, valid
 * UTF-8, owned by bpe. NULL for an id out of range. */
const char *tk_bpe_token(const tk_bpe *bpe, int32_t id);
/* The id of token[0 .. len), or -1 if it is not in the vocabulary. */
int32_t tk_bpe_find(const tk_bpe *bpe, const char *token, size_t len);

/* The two texts the tokenizer was loaded from, for writing a model file;
 * borrowed from bpe. */
void tk_bpe_texts(const tk_bpe *bpe, const char **vocab_json, size_t *vocab_len, const char **merges_txt,
                  size_t *merges_len);

/* Encodes text[0 .. len) (UTF-8; NUL bytes are text, and dropped as HF
 * drops them). opts NULL means tk_bpe_default_opts(). On success *ids is a
 * new array of *count ids (malloc'd, the caller frees it; not NULL even for
 * zero ids). Errors: QIAO_ERR_FORMAT for invalid UTF-8, naming the byte
 * offset; QIAO_ERR_INVALID_ARGUMENT for NULL arguments, a text over
 * TK_BPE_MAX_TEXT or inconsistent options; QIAO_ERR_OUT_OF_MEMORY;
 * QIAO_ERR_INTERNAL when ICU fails. With a context length, the text past
 * what fits is checked for UTF-8 but not encoded. */
qiao_status tk_bpe_encode(const tk_bpe *bpe, const char *text, size_t len, const tk_bpe_opts *opts, int32_t **ids,
                          size_t *count);

#endif
