/* make_model_file KIND OUT: writes a small .safetensors file for the CLI
 * tests and the fuzz corpus, with the library's own writer.
 *
 *   model      a valid model: F32, F16 and BF16 parameters (52 of them), an
 *              I32 and a U8 tensor, metadata with a long and an awkward value
 *   truncated  the model without its last 10 bytes
 *   lying      a header whose data_offsets disagree with the shape
 *   empty      a valid file with no tensors and no metadata
 *   meta       a valid file with metadata only
 *   scalar     a valid file with a scalar, an empty tensor and an F64 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "core/safetensors.h"

static int fail(const char *what) {
    fprintf(stderr, "make_model_file: %s: %s\n", what, qiao_last_error());
    return 1;
}

static int write_model(const char *out) {
    qc_table tab;
    qc_table_init_empty(&tab);
    const int64_t s_embed[] = {8, 4}, s_w[] = {4, 4}, s_b[] = {4};
    if (qc_table_add(&tab, "embed.weight", 2, s_embed, QC_INIT_NORMAL, 0.5f, 0, QC_NO_FIELD) ||
        qc_table_add(&tab, "blk.0.w", 2, s_w, QC_INIT_NORMAL, 0.02f, 0, QC_NO_FIELD) ||
        qc_table_add(&tab, "blk.0.b", 1, s_b, QC_INIT_ZEROS, 0.0f, QC_NO_DECAY, QC_NO_FIELD))
        return fail("table");
    tab.t[1].storage = QIAO_DTYPE_F16;
    tab.t[2].storage = QIAO_DTYPE_BF16;
    qc_arena arena;
    if (qc_arena_alloc(&arena, tab.total) != QIAO_OK) return fail("arena");
    qc_table_init(&tab, arena.base, 1234);

    qc_st_entry e[5];
    qc_st_table_entries(&tab, arena.base, e);
    const int32_t tokens[6] = {3, 1, 4, 1, 5, 9};
    const char vocab[12] = "hello world";
    e[3] = (qc_st_entry){.name = "tokens", .dtype = QIAO_DTYPE_I32, .ndim = 1, .shape = {6}, .data = tokens};
    e[4] = (qc_st_entry){.name = "tokenizer.bytes", .dtype = QIAO_DTYPE_U8, .ndim = 1, .shape = {12},
                         .data = vocab};
    const qc_st_kv meta[] = {
        {"qiao.config", "{\"layers\":1,\"dim\":4,\"vocab\":8,\"heads\":1,\"ffn\":16,\"norm\":\"layer\","
                        "\"activation\":\"gelu\"}"},
        {"format", "pt"},
        {"note", "a \"quoted\" word,\na second line, a tab\tand \xe6\xa1\xa5"},
    };
    qiao_status st = qc_st_write(out, e, 5, meta, 3);
    qc_arena_free(&arena);
    qc_table_free(&tab);
    return st == QIAO_OK ? 0 : fail(out);
}

static int write_raw(const char *out, const char *json, size_t data_len) {
    size_t n = strlen(json);
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)n >> (8 * i));
    FILE *f = fopen(out, "wb");
    if (!f) {
        perror(out);
        return 1;
    }
    fwrite(len, 1, 8, f);
    fwrite(json, 1, n, f);
    for (size_t i = 0; i < data_len; i++) fputc(0, f);
    if (fclose(f) != 0) {
        perror(out);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: make_model_file model|truncated|lying|empty|meta|scalar OUT\n");
        return 2;
    }
    const char *kind = argv[1], *out = argv[2];
    if (!strcmp(kind, "model")) return write_model(out);
    if (!strcmp(kind, "truncated")) {
        if (write_model(out)) return 1;
        FILE *f = fopen(out, "rb");
        if (!f || fseek(f, 0, SEEK_END) != 0) return 1;
        long size = ftell(f);
        fclose(f);
        if (size < 10 || truncate(out, size - 10) != 0) {
            perror(out);
            return 1;
        }
        return 0;
    }
    if (!strcmp(kind, "lying"))
        return write_raw(out, "{\"blk.0.w\":{\"dtype\":\"F32\",\"shape\":[5,5],\"data_offsets\":[0,96]}}", 96);
    if (!strcmp(kind, "empty")) return qc_st_write(out, NULL, 0, NULL, 0) == QIAO_OK ? 0 : fail(out);
    if (!strcmp(kind, "meta")) {
        const qc_st_kv meta[] = {{"format", "pt"}, {"k", ""}, {"\xe6\xa1\xa5", "bridge"}};
        return qc_st_write(out, NULL, 0, meta, 3) == QIAO_OK ? 0 : fail(out);
    }
    if (!strcmp(kind, "scalar")) {
        const float one = 1.0f;
        const double pi = 3.141592653589793;
        qc_st_entry e[] = {
            {.name = "scale", .dtype = QIAO_DTYPE_F32, .ndim = 0, .data = &one},
            {.name = "none", .dtype = QIAO_DTYPE_BF16, .ndim = 2, .shape = {0, 4}},
            {.name = "pi", .dtype = QIAO_DTYPE_F64, .ndim = 1, .shape = {1}, .data = &pi},
        };
        return qc_st_write(out, e, 3, NULL, 0) == QIAO_OK ? 0 : fail(out);
    }
    fprintf(stderr, "make_model_file: unknown kind '%s'\n", kind);
    return 2;
}
