# Retrieval evaluation (models/retrieval/eval.c, `qiao eval retrieval`): the ranking
# core on hand-made embeddings, invariants of a random tiny model on a few
# generated scenes with speech, signature duplicates, errors, and the
# command's --json output against the library's numbers.
qiao_test(NAME test_eval SOURCES unit/test_eval.c
  CASES recall_core invariants duplicate_hits errors cli_json
  LABELS eval TIMEOUT 120)
target_link_libraries(test_eval PRIVATE qiao_datasets)
target_compile_definitions(test_eval PRIVATE QIAO_CLI="$<TARGET_FILE:qiao_cli>")
add_dependencies(test_eval qiao_cli)

# Spoken digits as retrieval (models/retrieval/digits.c, qmod_eval_digits)
# with a made-up embedder whose every prediction is known: the confusion
# matrices, ties, skipped scenes, progress and the errors. The command on a
# real model is test_fsdd.eval_digits.
qiao_test(NAME test_eval_digits SOURCES unit/test_eval_digits.c
  CASES confusion errors
  LABELS "eval;fsdd" TIMEOUT 60)

cli_expect(NAME cli.eval.usage RC 2 ARGS eval STDERR "usage: qiao eval retrieval")
cli_expect(NAME cli.eval.unknown RC 2 ARGS eval frobnicate STDERR "unknown evaluation 'frobnicate'")
cli_expect(NAME cli.eval.required RC 2 ARGS eval retrieval --model m.safetensors
  STDERR "--model and --data are required")
cli_expect(NAME cli.eval.bad_pool RC 2 ARGS eval retrieval --model m --data d --pool -3
  STDERR "bad option or value: --pool -3")
cli_expect(NAME cli.eval.no_model RC 1
  ARGS eval retrieval --model ${CMAKE_CURRENT_BINARY_DIR}/no-such-model.safetensors --data .
  STDERR "^qiao: i/o error: .*no-such-model\\.safetensors")
set_tests_properties(cli.eval.usage cli.eval.unknown cli.eval.required cli.eval.bad_pool cli.eval.no_model
  PROPERTIES LABELS "cli;eval")

# Training curves (apps/qiao/plot.c, compiled in: it belongs to the command,
# not the library; cairo comes with qiao_datasets).
qiao_test(NAME test_plot SOURCES unit/test_plot.c ../apps/qiao/plot.c
  CASES full_log few_rows loss_gap failures
  LABELS eval TIMEOUT 60)
target_link_libraries(test_plot PRIVATE qiao_datasets)
