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
