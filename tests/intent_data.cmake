# The intent classifier's examples (models/intent/data.c, issue 18): the
# repository's converted corpora read whole, a test file against a model's
# labels, every kind of bad line refused naming file:line, the stratified
# validation split.
qiao_test(NAME test_intent_data SOURCES unit/test_intent_data.c CASES real_sets bad_lines split
  LABELS "intent;data" TIMEOUT 120)

# libFuzzer: any bytes as an intent JSONL file; what loads must hold only
# in-range labels, types and spans whose bytes are their text's.
qiao_fuzz(NAME fuzz_intent_data SOURCES ${PROJECT_SOURCE_DIR}/models/intent/data.c
  ${PROJECT_SOURCE_DIR}/sdk/core/status.c ${PROJECT_SOURCE_DIR}/sdk/core/utf8.c ${PROJECT_SOURCE_DIR}/sdk/core/rng.c
  ${PROJECT_SOURCE_DIR}/sdk/core/file.c
  LIBS PkgConfig::CJSON)
