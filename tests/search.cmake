# qiao search (apps/qiao/cmd_search.c + search_index.c, compiled into the
# test, over the library's index, sdk/api/search*.c; the test makes its own
# tiny random models): indexing a folder of
# images, audio and junk, queries, incremental re-indexing, Ctrl-C and
# resume, corrupt index files, non-finite vectors, FIFOs, devices and
# folders where a file belongs (under an alarm, so a hang fails), what the
# walk says about links it does not follow, usage errors.
qiao_test(NAME test_search
  SOURCES unit/test_search.c ${PROJECT_SOURCE_DIR}/apps/qiao/cmd_search.c ${PROJECT_SOURCE_DIR}/apps/qiao/cli.c
          ${PROJECT_SOURCE_DIR}/apps/qiao/search_index.c
  CASES index_and_query reindex model_change interrupt_resume cancel_resume corrupt_index nonfinite_vectors
        special_files walk_messages usage_errors
  LABELS search TIMEOUT 120)
target_include_directories(test_search PRIVATE ${PROJECT_SOURCE_DIR}/apps/qiao)

# The public index (qiao.h, "Search index") through qiao.h alone: vectors
# by key (ranking, ties, top-k, kinds, replace, remove, refusals; many keys
# added, removed and replaced in a scattered order), files
# from folders (kinds by content, incremental, what an add covers, mirror,
# recursion), queries by text, picture, recording and vector, save and
# reopen (version 1 for files, 2 with vectors), another model's index
# refused, cancel from the progress callback, queries on four threads
# beside a writer; documents added under keys (qiao_index_add_texts: ranking,
# replace, mirror, refusals naming the text, cancel and resume, save and
# reopen), a model's prompts applied to documents and queries, and the
# embedding space recorded and checked (another space refused naming both).
qiao_test(NAME test_search_api SOURCES unit/test_search_api.c
  CASES vectors many_keys files save_and_open cancel threads texts texts_cancel prompts space
  LABELS search TIMEOUT 120)

# The same command through the installed binary: wiring, exit codes, messages.
cli_expect(NAME cli.search.no_args RC 2 ARGS search STDERR "usage: qiao search index")
cli_expect(NAME cli.search.missing_index RC 1
  ARGS search query --index ${QIAO_CLI_FILES}/does-not-exist.idx --text hello
  STDERR "^qiao: i/o error: .*does-not-exist\\.idx")
cli_expect(NAME cli.search.not_an_index RC 1
  ARGS search query --index ${QIAO_CLI_FILES}/model.safetensors --text hello
  STDERR "^qiao: format error: .*model\\.safetensors: not a qiao search index")

# libFuzzer target for the index reader (see tests/fuzz.cmake): the reader
# and the core it uses (the safetensors container, qc_read_file, status)
# are compiled into the fuzzer with its instrumentation; cJSON is linked as
# the system builds it. sdk/api/search_file.c holds only the file format, so
# no model, decoder or session comes along.
qiao_fuzz(NAME fuzz_search_index SOURCES ${PROJECT_SOURCE_DIR}/sdk/api/search_file.c
  ${PROJECT_SOURCE_DIR}/sdk/core/safetensors.c ${PROJECT_SOURCE_DIR}/sdk/core/file.c
  ${PROJECT_SOURCE_DIR}/sdk/core/status.c ${PROJECT_SOURCE_DIR}/sdk/core/half.c
  ${PROJECT_SOURCE_DIR}/sdk/core/tensor.c ${PROJECT_SOURCE_DIR}/sdk/core/rng.c ${PROJECT_SOURCE_DIR}/sdk/core/utf8.c
  LIBS PkgConfig::CJSON LABELS search)
