# The hybrid character+word tokenizer (tokenizers/): ICU normalization,
# segmentation tags, offsets, batches, training round trips, corrupt files,
# threads. The committed tests/data/tokenizer/tok-test.safetensors is
# regenerated with
#   build/bin/qiao tokenizer train --input tests/data/tokenizer/corpus.txt \
#     --vocab-size 2000 --out tests/data/tokenizer/tok-test.safetensors
qiao_test(NAME test_tokenizer SOURCES unit/test_tokenizer.c
  CASES normalize_fullwidth normalize_nfkc_compat normalize_case_fold normalize_whitespace
        normalize_traditional normalize_byte_map invalid_utf8_error invalid_utf8_replace
        segment_chinese segment_english mixed_zh_en_emoji offsets_cover_text offsets_highlight
        long_text limit_reads_prefix batch_padding_mask train_roundtrip load_memory inside_model_file corrupt_file
        thread_safety bad_arguments cache_consistent
  LABELS tokenizer TIMEOUT 120)
find_package(Threads REQUIRED)
target_link_libraries(test_tokenizer PRIVATE Threads::Threads)

# The commands, as a user runs them.
set(QIAO_TOK_TEST ${CMAKE_CURRENT_SOURCE_DIR}/data/tokenizer/tok-test.safetensors)
cli_expect(NAME cli.tokenize.zh RC 0 ARGS tokenize --tokenizer ${QIAO_TOK_TEST} "我喜欢北京天安门"
  STDOUT "北京 +[0-9]+  \\[[0-9]+ [0-9]+ 0 0\\]  S  \\[9, 15\\)  '北京'")
cli_expect(NAME cli.tokenize.json RC 0 ARGS tokenize --json --tokenizer ${QIAO_TOK_TEST} "ｓｅｔ 北京"
  JSON_KEY "0|text" JSON_VALUE "ｓｅｔ")
cli_expect(NAME cli.tokenize.json_end RC 0 ARGS tokenize --json --tokenizer ${QIAO_TOK_TEST} "ｓｅｔ 北京"
  JSON_KEY "0|end" JSON_VALUE 9)
cli_expect(NAME cli.tokenize.missing RC 1 ARGS tokenize --tokenizer /nonexistent.safetensors x
  STDERR "i/o error")
cli_expect(NAME cli.tokenize.not_tokenizer RC 1 ARGS tokenize --tokenizer
  ${CMAKE_CURRENT_BINARY_DIR}/cli-files/model.safetensors x STDERR "no tensor 'tokenizer.spm'")
cli_expect(NAME cli.tokenize.usage RC 2 ARGS tokenize STDERR "usage")
cli_expect(NAME cli.tokenizer.train RC 0 ARGS tokenizer train --input
  ${CMAKE_CURRENT_SOURCE_DIR}/data/tokenizer/corpus.txt --vocab-size 1500 --char-vocab 800 --k 2
  --out ${CMAKE_CURRENT_BINARY_DIR}/cli-files/tok-cli.safetensors
  STDOUT "1500 pieces, 800 characters, K = 2")
cli_expect(NAME cli.tokenizer.bad_corpus RC 1 ARGS tokenizer train --input /nonexistent.txt --vocab-size 1000
  --out ${CMAKE_CURRENT_BINARY_DIR}/cli-files/never.safetensors STDERR "nonexistent.txt")

# libFuzzer: arbitrary bytes through the whole tokenizer (normalization,
# segmentation, SentencePiece), both invalid-UTF-8 modes. As tests/fuzz.cmake
# explains, the code under test is compiled into the fuzzer with its
# instrumentation, the C++ shim included (so CXX must be clang++ too).
if(QIAO_FUZZ AND NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "fuzz_tokenizer needs clang++ for the SentencePiece shim: configure with CXX=clang++")
endif()
set(QIAO_FUZZ_TOK ${PROJECT_SOURCE_DIR}/tokenizers)
qiao_fuzz(NAME fuzz_tokenizer SOURCES ${QIAO_FUZZ_TOK}/normalize.c ${QIAO_FUZZ_TOK}/tokenizer.c
  ${QIAO_FUZZ_TOK}/train.c ${QIAO_FUZZ_TOK}/spm_shim.cpp ${QIAO_FUZZ_TOK}/wordpiece.c ${QIAO_FUZZ_TOK}/clip_bpe.c
  ${PROJECT_SOURCE_DIR}/sdk/core/safetensors.c ${PROJECT_SOURCE_DIR}/sdk/core/status.c
  ${PROJECT_SOURCE_DIR}/sdk/core/half.c ${PROJECT_SOURCE_DIR}/sdk/core/tensor.c ${PROJECT_SOURCE_DIR}/sdk/core/rng.c
  ${PROJECT_SOURCE_DIR}/sdk/core/file.c ${PROJECT_SOURCE_DIR}/sdk/core/utf8.c
  LIBS PkgConfig::CJSON PkgConfig::ICU PkgConfig::SENTENCEPIECE
  DEFINES QIAO_FUZZ_TOKENIZER="${CMAKE_CURRENT_SOURCE_DIR}/data/tokenizer/tok-test.safetensors")

# Detokenization (tokenizers/detokenize.c): round trips over the corpus and
# the shapes captions, written spacing by script and punctuation, special
# and byte-fallback pieces, streaming prefixes, bad ids.
qiao_test(NAME test_detokenize SOURCES unit/test_detokenize.c
  CASES roundtrip_exact roundtrip_written punctuation mixed_scripts decoder_pieces byte_pieces partial_prefixes
        bad_ids
  LABELS tokenizer TIMEOUT 120)
target_link_libraries(test_detokenize PRIVATE qiao_datasets)

# The "spm" kind, an imported model's SentencePiece tokenizer (issue 17),
# against transformers' XLMRobertaTokenizer: tests/golden/make_spm_kind_fixture.py
# writes tests/data/tokenizer/spm-kind.safetensors (the tokenizer and its texts).
qiao_test(NAME test_tokenizer_spm SOURCES unit/test_tokenizer_spm.c
  CASES matches_transformers specials truncation invalid_utf8 batch bad_configs threads wordpiece_kind bpe_kind
  LABELS tokenizer TIMEOUT 120)
target_link_libraries(test_tokenizer_spm PRIVATE Threads::Threads)

# libFuzzer: a tokenizer file's config (the hybrid, spm, wordpiece and bpe
# kinds) as arbitrary bytes around a real SentencePiece model, BERT vocabulary
# or CLIP vocabulary and merges;
# what loads must tokenize with ids and offsets in range.
qiao_fuzz(NAME fuzz_tokenizer_file SOURCES ${QIAO_FUZZ_TOK}/normalize.c ${QIAO_FUZZ_TOK}/tokenizer.c
  ${QIAO_FUZZ_TOK}/train.c ${QIAO_FUZZ_TOK}/spm_shim.cpp ${QIAO_FUZZ_TOK}/wordpiece.c ${QIAO_FUZZ_TOK}/clip_bpe.c
  ${PROJECT_SOURCE_DIR}/sdk/core/safetensors.c ${PROJECT_SOURCE_DIR}/sdk/core/status.c
  ${PROJECT_SOURCE_DIR}/sdk/core/half.c ${PROJECT_SOURCE_DIR}/sdk/core/tensor.c ${PROJECT_SOURCE_DIR}/sdk/core/rng.c
  ${PROJECT_SOURCE_DIR}/sdk/core/file.c ${PROJECT_SOURCE_DIR}/sdk/core/utf8.c
  LIBS PkgConfig::CJSON PkgConfig::ICU PkgConfig::SENTENCEPIECE
  DEFINES QIAO_FUZZ_SPM_FILE="${CMAKE_CURRENT_SOURCE_DIR}/data/tokenizer/spm-kind.safetensors"
          QIAO_FUZZ_WP_VOCAB="${CMAKE_CURRENT_SOURCE_DIR}/data/wordpiece/vocab.txt"
          QIAO_FUZZ_CLIP_DIR="${CMAKE_CURRENT_SOURCE_DIR}/data/clip_bpe")
