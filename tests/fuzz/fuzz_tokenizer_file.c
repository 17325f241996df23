/* libFuzzer target: a tokenizer file's "tokenizer.config" (issue 17's kinds:
 * hybrid, spm, wordpiece, bpe), arbitrary bytes as that JSON, around real
 * tensors: the first input byte modulo 3 picks the committed spm-kind
 * SentencePiece model (0), the bert-base-chinese vocab.txt (1) or CLIP's
 * vocab.json and merges.txt (2). Loading must either succeed or give a
 * clear status; a loaded tokenizer must tokenize a mixed text with every id
 * inside its vocabulary and every offset inside the text. The files come
 * from the build (QIAO_FUZZ_SPM_FILE, QIAO_FUZZ_WP_VOCAB,
 * QIAO_FUZZ_CLIP_DIR). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/safetensors.h"
#include "tokenizers/tokenizer.h"

static uint8_t *spm, *vocab, *clip_vocab, *clip_merges;
static size_t spm_n, vocab_n, clip_vocab_n, clip_merges_n;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    qc_st_file *f = NULL;
    if (qc_st_open(QIAO_FUZZ_SPM_FILE, &f) != QIAO_OK) abort();
    const qc_st_tensor *t = qc_st_find(f, TK_TENSOR_SPM);
    if (!t || !(spm = malloc(t->nbytes))) abort();
    memcpy(spm, t->data, t->nbytes);
    spm_n = t->nbytes;
    qc_st_close(f);
    if (qc_read_file(QIAO_FUZZ_WP_VOCAB, 1 << 24, &vocab, &vocab_n) != QIAO_OK ||
        qc_read_file(QIAO_FUZZ_CLIP_DIR "/vocab.json", 1 << 24, &clip_vocab, &clip_vocab_n) != QIAO_OK ||
        qc_read_file(QIAO_FUZZ_CLIP_DIR "/merges.txt", 1 << 24, &clip_merges, &clip_merges_n) != QIAO_OK)
        abort();
    return 0;
}

/* A safetensors image of the U8 tensors names[0 .. nt) (data[i], size[i]
 * bytes each) and metadata {"tokenizer.config": config}, in memory (*n
 * bytes; free()). */
static uint8_t *image(int nt, const char *const *names, const uint8_t *const *data, const size_t *size,
                      const char *config, size_t *n) {
    cJSON *h = cJSON_CreateObject(), *m = cJSON_AddObjectToObject(h, "__metadata__");
    size_t total = 0;
    for (int i = 0; i < nt; i++) {
        cJSON *t = cJSON_AddObjectToObject(h, names[i]);
        cJSON_AddStringToObject(t, "dtype", "U8");
        cJSON *shape = cJSON_AddArrayToObject(t, "shape"), *offs = cJSON_AddArrayToObject(t, "data_offsets");
        cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)size[i]));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)total));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(total + size[i])));
        total += size[i];
    }
    cJSON_AddStringToObject(m, "tokenizer.config", config);
    char *js = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    if (!js) abort();
    const size_t hl = strlen(js), padded = (hl + 7) / 8 * 8;
    uint8_t *out = malloc(8 + padded + total);
    if (!out) abort();
    const uint64_t len = padded;
    memcpy(out, &len, 8);
    memcpy(out + 8, js, hl);
    memset(out + 8 + hl, ' ', padded - hl);
    for (int i = 0, at = 0; i < nt; at += (int)size[i], i++) memcpy(out + 8 + padded + at, data[i], size[i]);
    cJSON_free(js);
    *n = 8 + padded + total;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 4096) return 0;
    char *config = malloc(size);
    if (!config) abort();
    memcpy(config, data + 1, size - 1);
    config[size - 1] = '\0'; /* the JSON text (cJSON stops at a NUL inside it, as it would reading the file) */
    const int kind = data[0] % 3;
    size_t n = 0;
    static const char *const spm_names[] = {TK_TENSOR_SPM}, *const wp_names[] = {TK_TENSOR_VOCAB},
                             *const bpe_names[] = {TK_TENSOR_VOCAB, TK_TENSOR_MERGES};
    const uint8_t *spm_data[] = {spm}, *wp_data[] = {vocab}, *bpe_data[] = {clip_vocab, clip_merges};
    const size_t spm_size[] = {spm_n}, wp_size[] = {vocab_n}, bpe_size[] = {clip_vocab_n, clip_merges_n};
    uint8_t *img = kind == 0   ? image(1, spm_names, spm_data, spm_size, config, &n)
                   : kind == 1 ? image(1, wp_names, wp_data, wp_size, config, &n)
                               : image(2, bpe_names, bpe_data, bpe_size, config, &n);
    qiao_tokenizer *tok = NULL;
    qiao_status st = qiao_tokenizer_load_memory(img, n, &tok);
    if (st == QIAO_OK) {
        static const char text[] = "你好, World! 价格从1299降到999了 naïve 😀 <s>[CLS]<|endoftext|>";
        qiao_tokenize_params p = qiao_tokenize_default_params();
        for (int64_t limit = 0; limit < 4; limit += 3) {
            p.max_tokens = limit;
            qiao_tokens *t = NULL;
            if (qiao_tokenize(tok, text, sizeof text - 1, &p, &t) == QIAO_OK) {
                for (size_t i = 0; i < t->count; i++) {
                    if (t->ids[i] < 0 || t->ids[i] >= qiao_tokenizer_vocab_size(tok)) abort();
                    if (t->offsets[2 * i] < 0 || t->offsets[2 * i] > t->offsets[2 * i + 1] ||
                        t->offsets[2 * i + 1] > (int64_t)(sizeof text - 1))
                        abort();
                    if (!qiao_tokenizer_piece(tok, t->ids[i])) abort();
                }
                if (limit && t->count > (size_t)limit) abort();
            }
            qiao_tokens_free(t);
        }
        qiao_tokenizer_free(tok);
    } else if (st != QIAO_ERR_FORMAT && st != QIAO_ERR_NOT_FOUND && st != QIAO_ERR_INVALID_ARGUMENT &&
               st != QIAO_ERR_TOO_LARGE) {
        abort();
    }
    free(img);
    free(config);
    return 0;
}
