# BERT's WordPiece tokenizer (tokenizers/wordpiece.c) against transformers'
# slow BertTokenizer on the bert-base-chinese vocabulary. The committed
# tests/data/wordpiece/fixture.bin is regenerated with
#   build/bin/qiao dataset shapes --n 200 --seed 5 --split test --out /tmp/wp-shapes
#   .venv-peer/bin/python3 tests/golden/make_wordpiece_fixture.py --shapes /tmp/wp-shapes
# (transformers and tokenizers; the versions it ran with are in its header).
qiao_test(NAME test_wordpiece SOURCES unit/test_wordpiece.c
  CASES fixture_texts unicode_sweep edge_cases offsets truncation vocab_parsing errors hostile_texts threads
  LABELS tokenizer TIMEOUT 300)
find_package(Threads REQUIRED)
target_link_libraries(test_wordpiece PRIVATE Threads::Threads PkgConfig::CJSON PkgConfig::ICU)

# libFuzzer: any bytes as a text for the real vocabulary in both cases, or
# (first byte odd) as a vocabulary that then encodes a few texts.
qiao_fuzz(NAME fuzz_wordpiece SOURCES ${PROJECT_SOURCE_DIR}/tokenizers/wordpiece.c
  ${PROJECT_SOURCE_DIR}/tokenizers/normalize.c ${PROJECT_SOURCE_DIR}/sdk/core/status.c
  ${PROJECT_SOURCE_DIR}/sdk/core/utf8.c ${PROJECT_SOURCE_DIR}/sdk/core/file.c ${PROJECT_SOURCE_DIR}/sdk/core/rng.c
  LIBS PkgConfig::ICU
  DEFINES QIAO_FUZZ_WP_VOCAB="${CMAKE_CURRENT_SOURCE_DIR}/data/wordpiece/vocab.txt"
  LABELS tokenizer)
