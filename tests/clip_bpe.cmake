# CLIP's byte-level BPE (tokenizers/clip_bpe.c) against Hugging Face's
# CLIPTokenizer: every intent corpus utterance, shapes captions and
# questions, edge cases and random strings (tests/data/clip_bpe/, written
# by tests/golden/make_clip_bpe_fixture.py, which says how), truncation and
# padding, merge order, errors, sizes and threads.
qiao_test(NAME test_clip_bpe SOURCES unit/test_clip_bpe.c
  CASES fixture_texts vocabulary edge_cases context_length merge_order invalid_utf8 sizes bad_arguments bad_vocab
        threads
  LABELS tokenizer TIMEOUT 300)
find_package(Threads REQUIRED)
target_link_libraries(test_clip_bpe PRIVATE Threads::Threads)

# libFuzzer: any bytes as text through the CLIP tokenizer, and the vocab.json
# and merges.txt loaders (tests/fuzz/fuzz_clip_bpe.c says how one input
# drives both).
qiao_fuzz(NAME fuzz_clip_bpe SOURCES ${PROJECT_SOURCE_DIR}/tokenizers/clip_bpe.c
  ${PROJECT_SOURCE_DIR}/tokenizers/normalize.c ${PROJECT_SOURCE_DIR}/sdk/core/status.c
  ${PROJECT_SOURCE_DIR}/sdk/core/utf8.c ${PROJECT_SOURCE_DIR}/sdk/core/file.c ${PROJECT_SOURCE_DIR}/sdk/core/rng.c
  LIBS PkgConfig::CJSON PkgConfig::ICU
  DEFINES QIAO_FUZZ_CLIP_BPE="${CMAKE_CURRENT_SOURCE_DIR}/data/clip_bpe")
