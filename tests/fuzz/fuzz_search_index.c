/* libFuzzer target for the search index reader (sdk/api/search_file.c,
 * behind qiao_index_open and `qiao search`): search_index_read_memory over the
 * fuzzer's exact-size buffer (borrowed, so any over-read is an ASan report),
 * the same parser search_index_read runs after reading a file. Any input
 * must either be refused with a message naming the file and a cleared
 * index, or yield an index whose every field keeps the format's promises
 * (sdk/api/search.h): N items == N rows of D finite floats, D == the
 * fingerprint's dim, non-empty UTF-8 paths, known kinds, sizes >= 0, no
 * file size or time on an item that is not a file, and a non-empty UTF-8
 * embedding space.
 *
 * Build: CC=clang cmake -S . -B build-fuzz -DQIAO_FUZZ=ON -DQIAO_BUILD_BENCH=OFF
 *        cmake --build build-fuzz --target fuzz_search_index
 * Run:   scripts/fuzz.sh fuzz_search_index (or, by hand,
 *        ./build-fuzz/bin/fuzz_search_index NEW_CORPUS_DIR tests/fuzz/corpus/search_index) */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/search.h"
#include "core/core.h"
#include "core/safetensors.h"

#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Keeps the reads from being optimized away. */
static volatile unsigned sink;

static void check_file(const search_file *f, bool with_kind) {
    CHECK(f->path != NULL && f->path[0] != '\0');
    CHECK(qc_utf8_valid(f->path, strlen(f->path)));
    if (with_kind) CHECK(f->kind == SEARCH_IMAGE || f->kind == SEARCH_AUDIO || f->kind == SEARCH_TEXT);
    else CHECK(f->is_file);
    CHECK(f->size >= 0);
    if (!f->is_file) CHECK(f->size == 0 && f->mtime_ns == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    search_index idx;
    memset(&idx, 0xA5, sizeof idx); /* the reader must clear it on every path */
    qiao_status st = search_index_read_memory(data, size, "fuzz.idx", &idx);
    if (st != QIAO_OK) {
        CHECK(st == QIAO_ERR_FORMAT || st == QIAO_ERR_UNSUPPORTED || st == QIAO_ERR_TOO_LARGE ||
              st == QIAO_ERR_OUT_OF_MEMORY);
        CHECK(strstr(qiao_last_error(), "fuzz.idx") != NULL);
        CHECK(idx.model == NULL && idx.items == NULL && idx.skipped == NULL && idx.emb == NULL);
        CHECK(idx.n == 0 && idx.n_skipped == 0);
        search_index_free(&idx); /* harmless on a cleared index */
        return 0;
    }
    CHECK(idx.model != NULL);
    CHECK(idx.dim >= 1 && idx.dim == idx.fp.dim);
    CHECK(strlen(idx.fp.name) < sizeof idx.fp.name);
    /* The space: the file's, or the fingerprint's name for a file without one. */
    CHECK(idx.fp.space[0] && strlen(idx.fp.space) < sizeof idx.fp.space);
    CHECK(qc_utf8_valid(idx.fp.space, strlen(idx.fp.space)));
    CHECK(idx.fp.params >= 0 && idx.fp.file_size >= 0);
    CHECK((idx.n == 0) == (idx.emb == NULL));
    unsigned sum = 0;
    for (size_t i = 0; i < idx.n; i++) {
        check_file(&idx.items[i], true);
        sum += (unsigned char)idx.items[i].path[0];
    }
    for (size_t i = 0; i < idx.n_skipped; i++) check_file(&idx.skipped[i], false);
    for (size_t i = 0; i < idx.n * (size_t)idx.dim; i++) CHECK(isfinite(idx.emb[i]));
    sink = sum;
    search_index_free(&idx);
    CHECK(idx.items == NULL && idx.emb == NULL && idx.n == 0);
    return 0;
}
