/* libFuzzer target for the shapes-world caption parser
 * (datasets/shapes/parse.c): any bytes (invalid UTF-8, NULs, 200 KB) must
 * either parse, into mentions whose ids are in range or -1 and a count of
 * -1 or more, and score against a scene with precision, recall and F1 in
 * [0, 1] and `exact` only when nothing is wrong, or be refused as invalid
 * UTF-8 (QIAO_ERR_FORMAT, with a message, and an empty parse).
 *
 * Build: CC=clang CXX=clang++ cmake -S . -B build-fuzz -DQIAO_FUZZ=ON -DQIAO_BUILD_BENCH=OFF
 *        cmake --build build-fuzz --target fuzz_shapes_parse
 * Run:   scripts/fuzz.sh fuzz_shapes_parse */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shapes/shapes.h"

#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int in_range(int v, int n) { return v >= -1 && v < n; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 200000) return 0;
    /* the scene comes from the first byte, so every object count is met */
    static shapes_scene sc;
    if (shapes_scene_make(1, SHAPES_TRAIN, size ? data[0] : 0, &sc) != QIAO_OK) __builtin_trap();
    /* a copy of exactly `size` bytes, so ASan sees any read past the end */
    char *text = malloc(size ? size : 1);
    if (!text) return 0;
    memcpy(text, data, size);
    shapes_parse p;
    qiao_status st = shapes_caption_parse(text, size, &p);
    if (st == QIAO_OK) {
        CHECK(p.n >= 0 && p.n <= SHAPES_PARSE_MAX && p.n_dropped >= 0 && p.count >= -1);
        CHECK(p.count_conflict == 0 || p.count >= 0);
        for (int i = 0; i < p.n; i++) {
            const shapes_mention *m = &p.m[i];
            CHECK(in_range(m->shape, SHAPES_NSHAPES) && in_range(m->color, SHAPES_NCOLORS));
            CHECK(in_range(m->size, SHAPES_NSIZES) && in_range(m->cell, SHAPES_NPLACES));
        }
        shapes_caption_score s;
        CHECK(shapes_caption_score_of(&p, &sc, &s) == QIAO_OK);
        CHECK(s.matched >= 0 && s.matched <= s.mentions && s.matched <= s.objects);
        CHECK(s.precision >= 0 && s.precision <= 1 && s.recall >= 0 && s.recall <= 1 && s.f1 >= 0 && s.f1 <= 1);
        CHECK(!s.exact || (s.faithful && s.precision == 1 && s.recall == 1));
        CHECK(!s.faithful || s.matched == s.mentions);
    } else {
        CHECK(st == QIAO_ERR_FORMAT);
        CHECK(qiao_last_error()[0] != '\0');
        CHECK(!qc_utf8_valid(text, size));
        CHECK(p.n == 0 && p.n_dropped == 0 && p.count == -1);
    }
    free(text);
    return 0;
}
