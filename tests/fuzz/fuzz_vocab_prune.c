/* libFuzzer target: any bytes as what vocabulary pruning reads from users
 * (models/vocab/prune.h): a corpus file, and a serialized SentencePiece
 * ModelProto cut in protobuf's wire format (tokenizers/spm_prune.c). A
 * corpus must parse or fail with QIAO_ERR_FORMAT keeping nothing, its texts
 * valid UTF-8; a model must be counted or refused; a pruned copy must hold
 * exactly the pieces kept, and prune again to the same bytes when all are
 * kept. The bytes also choose which pieces of the tiny XLM-R's real model
 * to keep: that tokenizer's pruning must succeed (or refuse to keep no
 * piece of text) and renumber consistently. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "models/vocab/prune.h"
#include "tokenizers/tokenizer.h"

static qiao_tokenizer *g_tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    CHECK(qiao_tokenizer_load(QIAO_FUZZ_XLMR, &g_tok) == QIAO_OK);
    return 0;
}

static void corpus(const uint8_t *data, size_t size) {
    qmv_texts t;
    memset(&t, 0, sizeof t);
    const qiao_status st = qmv_texts_parse("fuzz.txt", (const char *)data, size, &t);
    CHECK(st == QIAO_OK || (st == QIAO_ERR_FORMAT && t.n == 0));
    for (size_t i = 0; i < t.n; i++) {
        size_t len;
        const char *s = qmv_text(&t, i, &len);
        CHECK(s && qc_utf8_check(s, len) == len && len <= size);
    }
    qmv_texts_free(&t);
}

static void proto(const uint8_t *data, size_t size) {
    size_t n = 0;
    if (tk_spm_proto_count(data, size, "fuzz", &n) != QIAO_OK) return;
    CHECK(n <= size);
    bool *keep = calloc(n + 1, sizeof *keep);
    CHECK(keep);
    for (size_t i = 0; i < n; i++) keep[i] = (data[i % size] >> (i % 8)) & 1u;
    char *out = NULL, *again = NULL;
    size_t len = 0, len2 = 0, kept = 0, m = 0;
    CHECK(tk_spm_proto_prune(data, size, keep, n, "fuzz", &out, &len) == QIAO_OK && len <= size);
    for (size_t i = 0; i < n; i++) kept += keep[i];
    CHECK(tk_spm_proto_count(out, len, "out", &m) == QIAO_OK && m == kept);
    for (size_t i = 0; i < m; i++) keep[i] = true;
    CHECK(tk_spm_proto_prune(out, len, keep, m, "out", &again, &len2) == QIAO_OK);
    CHECK(len2 == len && !memcmp(again, out, len));
    free(out), free(again), free(keep);
}

static void real_model(const uint8_t *data, size_t size) {
    const int32_t n = spm_vocab_size(g_tok->spm);
    bool *keep = calloc((size_t)n, sizeof *keep);
    CHECK(keep);
    for (int32_t i = 0; size && i < n; i++) keep[i] = (data[(size_t)i % size] >> (i % 8)) & 1u;
    tk_pruned pr;
    const qiao_status st = tk_spm_prune(g_tok, keep, &pr);
    int64_t kept = 0, text = 0;
    for (int32_t i = 0; i < n; i++) {
        kept += keep[i];
        text += keep[i] && spm_piece_kind(g_tok->spm, i) == SPM_PIECE_NORMAL;
    }
    CHECK(st == (text ? QIAO_OK : QIAO_ERR_INVALID_ARGUMENT));
    if (st != QIAO_OK) {
        CHECK(!pr.spm && !pr.old_id);
        free(keep);
        return;
    }
    CHECK(pr.pieces == kept && pr.vocab_size == g_tok->vocab_size - n + kept);
    for (int64_t j = 1; j < pr.vocab_size; j++) CHECK(pr.old_id[j] > pr.old_id[j - 1]);
    tk_pruned_free(&pr);
    free(keep);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 16) return 0;
    corpus(data, size);
    proto(data, size);
    real_model(data, size);
    return 0;
}
