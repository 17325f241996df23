# qiao search (apps/qiao/cmd_search.c + search_index.c, compiled into the
# test, which makes its own tiny random models): indexing a folder of
# images, audio and junk, queries, incremental re-indexing, Ctrl-C and
# resume, corrupt index files, usage errors.
qiao_test(NAME test_search
  SOURCES unit/test_search.c ${PROJECT_SOURCE_DIR}/apps/qiao/cmd_search.c
          ${PROJECT_SOURCE_DIR}/apps/qiao/search_index.c
  CASES index_and_query reindex model_change interrupt_resume cancel_resume corrupt_index usage_errors
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
