/* datasets/intent/intent.h - intent corpora converted to one JSONL format.
 *
 * Every converter writes <out>/{train,val,test}.jsonl (the splits the corpus
 * has), one JSON object per line:
 *
 *   {"text": "...", "intent": "...", "intents": [...], "entities":
 *    [{"start": 3, "end": 9, "type": "date", "value": "..."}]}
 *
 * "text" is valid UTF-8. "start"/"end" are BYTE offsets into the UTF-8 text,
 * half-open: text[start:end] == value (qiao's tokenizer offsets are byte
 * offsets too). "intents" appears only for multi-label corpora (CrossWOZ);
 * "entities" only for corpora with spans (xSID, CrossWOZ, e-commerce);
 * "context" (the turns of the conversation before the text, oldest first)
 * only for dialogues (CrossWOZ).
 *
 * Internal to the qiao command (not the public SDK): functions return a
 * qiao_status and leave the detail (file:line) in qiao_last_error(). No
 * global state; separate calls may run on separate threads. */
#ifndef QIAO_DATASETS_INTENT_H
#define QIAO_DATASETS_INTENT_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

enum { QINT_TRAIN = 0, QINT_VAL = 1, QINT_TEST = 2, QINT_NSPLITS = 3 };

/* What a conversion wrote. */
typedef struct qint_stats {
    int64_t examples[QINT_NSPLITS]; /* lines written per split (train, val, test) */
    int64_t entities;             /* entity spans written, all splits */
    int64_t entities_dropped;     /* annotated values not found verbatim in the text */
    int64_t labels;               /* distinct "intent" values, all splits */
    int64_t multi_label;          /* examples with more than one label (CrossWOZ) */
} qint_stats;

/* Split names as used in file names ("train", "val", "test"). */
const char *qint_split_name(int split);

/* Converts one upstream corpus in `in_dir` (the folder with its SOURCE.txt /
 * LICENSE.txt, as in /work/shared/datasets) to JSONL in `out_dir` (created if
 * missing), copies LICENSE.txt and writes SOURCE.md. `from` is one of
 * "clinc150", "banking77", "xsid", "crosswoz"; `lang` selects the xSID
 * language ("zh" or "en"; NULL means "zh"; ignored otherwise). Files are
 * written under temporary names and renamed only when everything succeeded.
 * `stats` may be NULL. Malformed input gives QIAO_ERR_FORMAT naming file:line. */
QIAO_MUST_CHECK qiao_status qint_convert(const char *from, const char *in_dir, const char *lang,
                                       const char *out_dir, qint_stats *stats);

/* Builds the e-commerce set from its marked-up source (see
 * datasets/intent/ecommerce_zh/SOURCE.md for the markup): computes byte spans
 * and writes train.jsonl / test.jsonl to `out_dir` with a deterministic split
 * stratified by intent (25% of each intent to test, chosen by a seeded hash of
 * the text). Duplicate texts, unknown entity types and bad markup are errors
 * naming source:line. `stats` may be NULL. */
QIAO_MUST_CHECK qiao_status qint_ecommerce_build(const char *source, const char *out_dir, qint_stats *stats);

/* The entity types the e-commerce markup accepts, NULL-terminated. */
extern const char *const qint_ecommerce_entity_types[];

/* Checks a JSONL file of this format: each line one object with a string
 * "text" (valid UTF-8), a string "intent", entities whose byte spans lie
 * inside the text and equal their "value", and a "context", when present,
 * of non-empty strings. Errors name path:line. Counts the
 * lines into stats->examples[QINT_TRAIN] and spans into stats->entities. */
QIAO_MUST_CHECK qiao_status qint_check_jsonl(const char *path, qint_stats *stats);

/* ---- shared by the converters (intent_io.c) ------------------------------ */

/* Reads a whole file (at most 512 MiB) into a NUL-terminated buffer; the
 * caller frees *data. */
QIAO_MUST_CHECK qiao_status qint_read_file(const char *path, char **data, size_t *len);

/* Reads the member `name` of the zip archive at `path` (stored or deflated,
 * its CRC-32 checked; no ZIP64) into a NUL-terminated buffer of at most
 * 512 MiB; the caller frees *data. QIAO_ERR_NOT_FOUND when the archive has
 * no such member, QIAO_ERR_FORMAT for a damaged or unsupported archive. */
QIAO_MUST_CHECK qiao_status qint_zip_read(const char *path, const char *name, char **data, size_t *len);

/* 1 if s[0..len) is valid UTF-8 (no overlongs, surrogates or NUL bytes);
 * otherwise 0 with *bad set to the offset of the first bad byte. */
int qint_utf8_valid(const char *s, size_t len, size_t *bad);

/* One entity: a byte span of the text and its type (borrowed string). */
typedef struct qint_entity {
    size_t start, end;
    const char *type;
} qint_entity;

/* An example to write: text (borrowed, `len` bytes), its labels (borrowed;
 * labels[0] is "intent" when n_labels == 1), entities. */
typedef struct qint_example {
    const char *text;
    size_t len;
    const char *intent;       /* the "intent" field */
    const char *const *labels; /* written as "intents" when with_intents */
    size_t n_labels;
    const qint_entity *entities;
    size_t n_entities;
    const char *const *context; /* written as "context" when n_context > 0: earlier turns, oldest first */
    size_t n_context;
} qint_example;

typedef struct qint_writer qint_writer;

/* Opens a writer on out_dir (created if missing). with_entities: always write
 * "entities"; with_intents: always write "intents". */
QIAO_MUST_CHECK qiao_status qint_writer_open(qint_writer **w, const char *out_dir, int with_entities,
                                           int with_intents);
/* Appends one example to a split; `where` (e.g. "file:12") names the input in
 * errors (invalid UTF-8, span outside the text). */
QIAO_MUST_CHECK qiao_status qint_writer_add(qint_writer *w, int split, const qint_example *ex, const char *where);
/* Finishes: renames the temporary files into place (commit != 0) or removes
 * them. Fills stats. Accepts NULL. Returns the first error seen. */
qiao_status qint_writer_close(qint_writer *w, int commit, qint_stats *stats);

/* Copies a file byte for byte. */
QIAO_MUST_CHECK qiao_status qint_copy_file(const char *from, const char *to);
/* Joins a directory and a file name into buf; QIAO_ERR_TOO_LARGE if it does
 * not fit. */
QIAO_MUST_CHECK qiao_status qint_path(char *buf, size_t cap, const char *dir, const char *name);

#endif
