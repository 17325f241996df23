# The shapes world generator (datasets/shapes): determinism, truth of
# captions and answers, the cogent hold-out, answer balance, layout, speech.
qiao_test(NAME test_shapes SOURCES unit/test_shapes.c
  CASES determinism captions_true qa_answers_correct cogent_holdout balance no_overlap speech speech_questions
  LABELS datasets TIMEOUT 120)
target_link_libraries(test_shapes PRIVATE qiao_datasets)

# The command: a usage error, a small run, and a rerun into the same
# directory with other arguments (refused).
cli_expect(NAME cli.dataset.shapes.usage RC 2 ARGS dataset shapes --n 5 STDERR "required")
cli_expect(NAME cli.dataset.shapes.bad_split RC 2 ARGS dataset shapes --n 5 --seed 1 --out x --split nope
  STDERR "bad option or value: --split nope")
cli_expect(NAME cli.dataset.shapes.run RC 0
  ARGS dataset shapes --n 3 --seed 1 --langs en --out ${CMAKE_CURRENT_BINARY_DIR}/shapes-cli
  STDERR "wrote 3 train scenes")

# Reading captions back (datasets/shapes/parse.c): every generated caption
# of 400 scenes (all splits, both languages) parses to a perfect score on its
# own scene; long captions with a colour changed, an object dropped or one
# added score as expected; hand-written captions; bad and random input.
qiao_test(NAME test_shapes_parse SOURCES unit/test_shapes_parse.c
  CASES generated corrupted hand bad_input LABELS datasets TIMEOUT 60)
target_link_libraries(test_shapes_parse PRIVATE qiao_datasets)

# libFuzzer target for the parser (fuzz/fuzz_shapes_parse.c): the parser, the
# word tables and the scene generator compiled in with the fuzzer's
# instrumentation, with the core files they use.
qiao_fuzz(NAME fuzz_shapes_parse SOURCES ${PROJECT_SOURCE_DIR}/datasets/shapes/parse.c
  ${PROJECT_SOURCE_DIR}/datasets/shapes/vocab.c ${PROJECT_SOURCE_DIR}/datasets/shapes/scene.c
  ${PROJECT_SOURCE_DIR}/sdk/core/status.c ${PROJECT_SOURCE_DIR}/sdk/core/utf8.c ${PROJECT_SOURCE_DIR}/sdk/core/rng.c
  INCLUDES ${PROJECT_SOURCE_DIR}/datasets LABELS datasets)
