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
        special_files walk_messages usage_errors texts
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
cli_expect(NAME cli.search.kind_bad RC 2 ARGS search query --index x.idx --text hello --kind video
  STDERR "--kind is image, audio or text, not 'video'")
# Documents: the lines of tests/data/search/docs.txt indexed with qiao-base,
# then a query equal to line 2 finds it first among the texts.
set(QIAO_SEARCH_DOCS ${CMAKE_CURRENT_SOURCE_DIR}/data/search/docs.txt)
cli_expect(NAME cli.search.texts_missing RC 1
  ARGS search index --model ${PROJECT_SOURCE_DIR}/models/qiao-base.safetensors --out ${QIAO_CLI_FILES}/docs.idx
       --texts ${QIAO_CLI_FILES}/no-such-docs.txt
  STDERR "^qiao: i/o error: .*no-such-docs\\.txt")
cli_expect(NAME cli.search.texts_index RC 0
  ARGS search index --model ${PROJECT_SOURCE_DIR}/models/qiao-base.safetensors --out ${QIAO_CLI_FILES}/docs.idx
       --texts ${QIAO_SEARCH_DOCS}
  STDOUT "docs\\.idx: 0 files .*; 4 texts: 4 embedded, 0 removed")
set_tests_properties(cli.search.texts_index PROPERTIES FIXTURES_SETUP search_docs DEPENDS cli.search.texts_missing)
cli_expect(NAME cli.search.texts_query RC 0
  ARGS search query --index ${QIAO_CLI_FILES}/docs.idx --text 右下角有两个蓝色的正方形 --kind text --json
  STDOUT "\"rank\":[ \t]*1,[^}]*docs\\.txt:2\"")
set_tests_properties(cli.search.texts_query PROPERTIES FIXTURES_REQUIRED "cli_files;search_docs")

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
