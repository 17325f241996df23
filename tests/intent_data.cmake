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

# The classifier trained through the generic trainer (models/intent/train.c)
# on the e-commerce set with the tiny random XLM-R encoder: it learns, a
# stopped run resumes to the same bits, it refuses what it cannot train on,
# it ends calibrated (temperature, out-of-scope threshold and class), the
# entity tagger's targets decode back to the file's spans; with context, the
# text's tokens and spans are those without, and a label only the context
# holds is learned; distillation's gradient and recipe keys, a distilled
# student of one layer chosen from the init's two, a teacher with other
# intents refused.
qiao_test(NAME test_intent_train SOURCES unit/test_intent_train.c CASES learns resumes refuses calibrates bio_round_trip
  multi_label context_rows learns_context distill_gradient distills
  LABELS "intent;train" TIMEOUT 300)

# `qiao intent`: usage errors, a model that is not a classifier, a missing file.
cli_expect(NAME cli.intent.usage RC 2 ARGS intent STDERR "usage: qiao intent train")
cli_expect(NAME cli.intent.eval_required RC 2 ARGS intent eval --model m.safetensors
  STDERR "--model and --data are required")
cli_expect(NAME cli.intent.predict_not_classifier RC 1
  ARGS intent predict --model ${CMAKE_CURRENT_SOURCE_DIR}/data/hf/xlmr/model.safetensors hello
  STDERR "not an intent classifier")
cli_expect(NAME cli.intent.train_missing_data RC 1
  ARGS intent train --init ${CMAKE_CURRENT_SOURCE_DIR}/data/hf/xlmr/model.safetensors
       --data ${CMAKE_CURRENT_BINARY_DIR}/no-such.jsonl --out ${CMAKE_CURRENT_BINARY_DIR}/intent-none.safetensors
  STDERR "i/o error: .*no-such\\.jsonl")
cli_expect(NAME cli.intent.eval_context RC 2
  ARGS intent eval --model m.safetensors --data d.jsonl --context hi
  STDERR "the file's lines carry their context")
cli_expect(NAME cli.intent.recipe_unknown_key RC 1
  ARGS intent train --init ${CMAKE_CURRENT_SOURCE_DIR}/data/hf/xlmr/model.safetensors
       --data ${PROJECT_SOURCE_DIR}/datasets/intent/ecommerce_zh/train.jsonl
       --config ${CMAKE_CURRENT_SOURCE_DIR}/data/intent/bad-recipe.json
       --out ${CMAKE_CURRENT_BINARY_DIR}/intent-none.safetensors
  STDERR "unknown key contxt")
set_tests_properties(cli.intent.usage cli.intent.eval_required cli.intent.predict_not_classifier
  cli.intent.train_missing_data cli.intent.eval_context cli.intent.recipe_unknown_key PROPERTIES LABELS "cli;intent")

# The public intent API (sdk/api/intent_api.c) on a tiny classifier trained
# at setup: labels, calibration, rankings, a batch against single calls,
# bad arguments and text, and four threads giving the same bits; a second
# one trained with context reads the turn before the text.
qiao_test(NAME test_intent_api SOURCES unit/test_intent_api.c
  CASES labels_and_ranking batch_equals_single bad_input threads context
  LABELS "intent;api" TIMEOUT 300)
