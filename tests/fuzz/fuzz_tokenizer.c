/* libFuzzer target: tokenize arbitrary bytes with the committed test
 * tokenizer, in both invalid-UTF-8 modes. Error mode must either succeed or
 * give QIAO_ERR_FORMAT; replacement mode must always succeed. Every token's
 * offsets must lie inside the input, and the two modes must agree whenever
 * the input is valid UTF-8. The tokenizer path comes from the build
 * (QIAO_FUZZ_TOKENIZER). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizers/tokenizer.h"

static qiao_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    if (qiao_tokenizer_load(QIAO_FUZZ_TOKENIZER, &tok) != QIAO_OK) abort();
    return 0;
}

static void check(const qiao_tokens *t, size_t len) {
    for (size_t i = 0; i < t->count; i++) {
        int64_t b = t->offsets[2 * i], e = t->offsets[2 * i + 1];
        if (b < 0 || b > e || e > (int64_t)len) abort();
        if (t->tags[i] < QIAO_TAG_B || t->tags[i] > QIAO_TAG_S) abort();
        if (t->ids[i] < 0 || t->ids[i] >= qiao_tokenizer_vocab_size(tok)) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qiao_tokenize_params p = qiao_tokenize_default_params();
    qiao_tokens *strict = NULL, *lax = NULL;
    qiao_status st = qiao_tokenize(tok, (const char *)data, size, &p, &strict);
    if (st != QIAO_OK && st != QIAO_ERR_FORMAT) abort();
    p.replace_invalid = 1;
    if (qiao_tokenize(tok, (const char *)data, size, &p, &lax) != QIAO_OK) abort();
    check(lax, size);
    if (strict) {
        check(strict, size);
        if (strict->count != lax->count || memcmp(strict->ids, lax->ids, lax->count * sizeof(int32_t)) != 0) abort();
    }
    qiao_tokens_free(strict);
    qiao_tokens_free(lax);
    return 0;
}
