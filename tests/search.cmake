# qiao search (apps/qiao/cmd_search.c + search_index*.c, compiled into the
# test, which makes its own tiny random models): indexing a folder of
# images, audio and junk, queries, incremental re-indexing, Ctrl-C and
# resume, corrupt index files, non-finite vectors, FIFOs, devices and
# folders where a file belongs (under an alarm, so a hang fails), what the
# walk says about links it does not follow, usage errors.
qiao_test(NAME test_search
  SOURCES unit/test_search.c ${PROJECT_SOURCE_DIR}/apps/qiao/cmd_search.c ${PROJECT_SOURCE_DIR}/apps/qiao/cli.c
          ${PROJECT_SOURCE_DIR}/apps/qiao/search_index.c ${PROJECT_SOURCE_DIR}/apps/qiao/search_index_file.c
  CASES index_and_query reindex model_change interrupt_resume cancel_resume corrupt_index nonfinite_vectors
        special_files walk_messages usage_errors
  LABELS search TIMEOUT 120)
target_include_directories(test_search PRIVATE ${PROJECT_SOURCE_DIR}/apps/qiao)

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
# the system builds it. search_index_file.c holds only the file format, so
# no model, decoder or session comes along.
if(QIAO_FUZZ)
  add_executable(fuzz_search_index fuzz/fuzz_search_index.c
    ${PROJECT_SOURCE_DIR}/apps/qiao/search_index_file.c
    ${QIAO_FUZZ_SDK}/core/safetensors.c ${QIAO_FUZZ_SDK}/core/file.c ${QIAO_FUZZ_SDK}/core/status.c
    ${QIAO_FUZZ_SDK}/core/half.c ${QIAO_FUZZ_SDK}/core/tensor.c ${QIAO_FUZZ_SDK}/core/rng.c
    ${QIAO_FUZZ_SDK}/core/utf8.c)
  target_include_directories(fuzz_search_index PRIVATE
    ${QIAO_FUZZ_SDK} ${QIAO_FUZZ_SDK}/include ${PROJECT_BINARY_DIR}/sdk ${PROJECT_SOURCE_DIR}/apps/qiao)
  target_compile_options(fuzz_search_index PRIVATE ${QIAO_FUZZ_FLAGS})
  target_link_options(fuzz_search_index PRIVATE ${QIAO_FUZZ_FLAGS})
  target_link_libraries(fuzz_search_index PRIVATE qiao_warnings PkgConfig::CJSON m)
  add_test(NAME fuzz.search_index.seeds
    COMMAND fuzz_search_index -runs=0 ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/search_index)
  set_tests_properties(fuzz.search_index.seeds PROPERTIES LABELS "fuzz;search" TIMEOUT 120)
endif()
