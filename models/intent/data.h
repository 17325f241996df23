/* models/intent/data.h - a business's intent examples as the intent
 * classifier trains and evaluates on them (issue 18): the repository's JSONL
 * format (datasets/intent/intent.h), one object per line,
 *
 *   {"text": "我想退货", "intent": "return_request",
 *    "entities": [{"start": 9, "end": 27, "type": "order_id", "value": "..."}]}
 *   {"text": "...", "intents": ["Inform-酒店", "Request-酒店"], "intent": "Inform-酒店|Request-酒店"}
 *   {"text": "有wifi吗", "intent": "Request-酒店", "context": ["推荐一家酒店", "推荐您去北京饭店"]}
 *
 * read strictly, because a business's own file is where mistakes are:
 * every line a JSON object with only the keys above (an unknown key, say a
 * misspelt "intnet", would otherwise drop the label silently); "text" valid
 * UTF-8 and not blank; "intent" a non-empty string, or "intents" a list
 * of distinct non-empty strings (multi-label; then "intent", when present,
 * is them joined by "|", as the converters write it, and "none" for an
 * empty list: a CrossWOZ thank-you asks nothing); each
 * entity {"start", "end", "type", "value"} with 0 <= start < end <= the
 * text's bytes and text[start:end] == value. Spans may overlap: CrossWOZ
 * gives one phrase to several slots (a "是" that answers two facilities);
 * a tagger that needs disjoint spans chooses among them. "context", when
 * present, is the conversation before the text: a list of its earlier turns,
 * oldest first, each a non-blank string of valid UTF-8 (a classifier trained
 * with context reads the last few after the text; entities are the text's
 * only).
 * Blank lines are skipped. Any other line is QIAO_ERR_FORMAT naming
 * file:line and what is wrong; nothing is returned then.
 *
 * Labels and entity types are numbered in sorted (byte) order, so the same
 * file gives the same numbers. Evaluating a model reads its test file
 * against the model's own label space: an intent the model does not know
 * is an error naming file:line, not a silently wrong row. An entity type
 * the model's tagger does not know cannot be right whatever the tagger
 * does: the span is dropped and counted (unknown_spans; evaluation counts
 * it as missed), with a warning naming the first such file:line. CrossWOZ's
 * test split has types its validation split never shows.
 *
 * Not a public header: prefix qmi_. */
#ifndef QIAO_MODELS_INTENT_DATA_H
#define QIAO_MODELS_INTENT_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* Limits that only refuse absurd input: a line of a few MB, a label set of a
 * size no classifier head is built for. */
#define QMI_MAX_FILE ((size_t)1 << 30)
#define QMI_MAX_LINE ((size_t)1 << 20)
#define QMI_MAX_LABELS 10000 /* a classifier's head; its labels are checked pairwise in the model config */
#define QMI_MAX_LABELS_PER_EXAMPLE 64
#define QMI_MAX_SPANS_PER_EXAMPLE 256
#define QMI_MAX_NAME 255 /* bytes of a label or entity type (a model config's labels are shorter than 256) */
#define QMI_MAX_CONTEXT 256 /* earlier turns of one example */

typedef struct qmi_span {
    int64_t start, end; /* byte offsets into the text, half-open */
    int32_t type;       /* index into qmi_set.types */
} qmi_span;

typedef struct qmi_example {
    const char *text;      /* NUL-terminated, valid UTF-8; owned by the set */
    size_t len;            /* bytes */
    const int32_t *labels; /* n_labels indices into qmi_set.labels, ascending; */
    int n_labels;          /* at least 1, except an empty "intents" list */
    const qmi_span *spans; /* n_spans, by start (ties in file order) */
    int n_spans;
    const char *const *context; /* n_context earlier turns, oldest first (NUL-terminated, valid UTF-8); NULL
                                   when none */
    int n_context;
    int64_t line; /* the example's line in its file, from 1 */
} qmi_example;

typedef struct qmi_set {
    char *path;      /* the file it was read from (for messages) */
    qmi_example *ex; /* n examples in file order */
    int64_t n;
    char **labels; /* n_labels names, sorted */
    int32_t n_labels;
    char **types; /* n_types entity type names, sorted */
    int32_t n_types;
    bool multi_label; /* some example has "intents" (a list, maybe of one or none) */
    int64_t unknown_spans; /* spans dropped for an entity type outside the space's */
    void *store;      /* owned storage the examples point into */
} qmi_set;

/* Reads the JSONL file at `path`. With `space` NULL the labels and entity
 * types are those the file uses; with a set (a model's training set, or
 * just its names) they are that set's: an intent outside them is an
 * error, a span of an entity type outside them is dropped and counted
 * (entity types only when the space has some: a classifier without an
 * entity tagger takes the file's own). QIAO_ERR_IO for a file that cannot be read, QIAO_ERR_FORMAT for
 * its content (file:line), QIAO_ERR_TOO_LARGE past the limits above,
 * QIAO_ERR_OUT_OF_MEMORY. On success *out is filled; free it with
 * qmi_set_free. On failure *out is empty (safe to free). */
qiao_status qmi_set_load(const char *path, const qmi_set *space, qmi_set *out);

/* The same from text in memory (`name` stands for the file in messages). */
qiao_status qmi_set_parse(const char *name, const char *text, size_t len, const qmi_set *space, qmi_set *out);

/* Accepts an empty or zeroed set. */
void qmi_set_free(qmi_set *s);

/* Index of `name` in names[0 .. n) (sorted), or -1. */
int32_t qmi_find(char *const *names, int32_t n, const char *name);

/* Splits `all` into a training and a validation set, stratified by each
 * example's first label (examples without one form a group of their own):
 * of a label's k examples, round(k * val_fraction)
 * go to validation, at least one when k >= 2 and none when k == 1 (a label
 * seen once stays trainable), chosen by a shuffle seeded with `seed` and the
 * label, so the split depends only on the file, the fraction and the seed.
 * Both keep all's labels and types. val_fraction in (0, 1), else
 * QIAO_ERR_INVALID_ARGUMENT. The examples are copies; `all` may be freed
 * after. */
qiao_status qmi_set_split(const qmi_set *all, double val_fraction, uint64_t seed, qmi_set *train, qmi_set *val);

#endif /* QIAO_MODELS_INTENT_DATA_H */
