/* libFuzzer target for the safetensors reader: open from memory (borrowing
 * the fuzzer's exact-size buffer, so any over-read is an ASan report), then
 * use everything an open file hands out and check its invariants. Any input
 * must either be refused with a message naming the file or yield a handle
 * whose every pointer is in bounds.
 *
 * Build: CC=clang cmake -S . -B build-fuzz -DQIAO_FUZZ=ON -DQIAO_BUILD_BENCH=OFF
 *        cmake --build build-fuzz --target fuzz_safetensors
 * Run:   ./build-fuzz/bin/fuzz_safetensors NEW_CORPUS_DIR tests/fuzz/corpus/safetensors
 *        (libFuzzer adds new inputs to the first directory it is given). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/safetensors.h"

#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Keeps the data reads from being optimized away. */
static volatile unsigned sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qc_st_file *f = NULL;
    qiao_status st = qc_st_open_memory(data, size, "fuzz.safetensors", false, &f);
    if (st != QIAO_OK) {
        CHECK(f == NULL);
        CHECK(st == QIAO_ERR_FORMAT || st == QIAO_ERR_TOO_LARGE || st == QIAO_ERR_OUT_OF_MEMORY);
        CHECK(strstr(qiao_last_error(), "fuzz.safetensors") != NULL);
        return 0;
    }

    /* Every tensor: in bounds, findable by name, sizes consistent, file
     * order ascending, non-empty tensors disjoint. */
    unsigned sum = 0;
    size_t n = qc_st_count(f), prev_end = 0;
    const unsigned char *first = size >= 8 ? data + 8 : data;
    qc_table tab;
    qc_table_init_empty(&tab);
    for (size_t i = 0; i < n; i++) {
        const qc_st_tensor *t = qc_st_at(f, i);
        CHECK(t != NULL);
        CHECK(qc_st_find(f, t->name) == t);
        CHECK(t->ndim >= 0 && t->ndim <= QC_MAX_DIMS);
        CHECK(t->name[0] != '\0' && qc_utf8_valid(t->name, strlen(t->name)));
        CHECK(t->nbytes == (size_t)t->numel * qc_st_dtype_size(t->dtype));
        const unsigned char *p = t->data;
        CHECK(p >= first && p + t->nbytes <= data + size);
        for (size_t j = 0; j < t->nbytes; j++) sum += p[j];
        if (t->nbytes > 0) {
            CHECK(t->begin >= prev_end);
            prev_end = t->begin + t->nbytes;
        }
        /* Float tensors with table-sized names go into a table for a load. */
        bool is_float = t->dtype == QIAO_DTYPE_F32 || t->dtype == QIAO_DTYPE_F16 ||
                        t->dtype == QIAO_DTYPE_BF16 || t->dtype == QIAO_DTYPE_F64;
        if (is_float && strlen(t->name) < QC_NAME_MAX)
            (void)qc_table_add(&tab, t->name, t->ndim, t->shape, QC_INIT_ZEROS, 0.0f, 0, QC_NO_FIELD);
    }
    CHECK(qc_st_at(f, n) == NULL);
    CHECK(qc_st_find(f, "") == NULL);

    /* Metadata: strictly sorted keys, each value reachable. */
    size_t m = qc_st_metadata_count(f);
    for (size_t i = 0; i < m; i++) {
        const char *k = qc_st_metadata_key(f, i);
        CHECK(k != NULL);
        if (i > 0) CHECK(strcmp(qc_st_metadata_key(f, i - 1), k) < 0);
        const char *v = qc_st_metadata_get(f, k);
        CHECK(v != NULL);
        sum += (unsigned)strlen(v);
    }
    CHECK(qc_st_metadata_key(f, m) == NULL);
    CHECK(qc_st_param_count(f) >= 0);

    /* Loading the file's own float tensors must succeed (numel is bounded
     * by the input size, so the arena stays small). */
    qc_arena arena;
    if (tab.n > 0 && qc_arena_alloc(&arena, tab.total) == QIAO_OK) {
        CHECK(qc_st_load_table(f, &tab, arena.base) == QIAO_OK);
        qc_arena_free(&arena);
    }
    qc_table_free(&tab);
    qc_st_close(f);
    sink = sum;
    return 0;
}
