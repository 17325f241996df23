# Spoken digits (FSDD): `qiao dataset fsdd` on the real recordings
# (/work/shared/datasets/fsdd as test_intent, or $QIAO_FSDD; case
# convert_real, also labelled shared_data) and on a made-up source tree,
# image-less data in the loader (distinct signatures per batch), `qiao train
# --init` for 3 steps and `qiao eval digits --json` with a random tiny model.
qiao_test(NAME test_fsdd SOURCES unit/test_fsdd.c
  CASES convert_real convert_fake imageless_manifest distinct_batches audio_batches train_init eval_digits
  LABELS fsdd TIMEOUT 120)
target_compile_definitions(test_fsdd PRIVATE QIAO_CLI="$<TARGET_FILE:qiao_cli>")
add_dependencies(test_fsdd qiao_cli)
set_property(TEST test_fsdd.convert_real APPEND PROPERTY LABELS shared_data)

# The converter as a library call (datasets/fsdd/fsdd.h, fsdd_convert) on a
# made-up source tree: exact lines and order, progress and cancelling,
# held-out speakers, and each error with its message.
qiao_test(NAME test_fsdd_convert SOURCES unit/test_fsdd_convert.c
  CASES manifests progress holdout errors
  LABELS fsdd TIMEOUT 60)
target_link_libraries(test_fsdd_convert PRIVATE qiao_datasets)

# Usage errors of the commands (cli_expect: tests/cli.cmake).
cli_expect(NAME cli.fsdd.required RC 2 ARGS dataset fsdd --out x STDERR "--src and --out are required")
cli_expect(NAME cli.fsdd.unknown RC 2 ARGS dataset fsdd --speakers 3 STDERR "unknown option '--speakers'")
cli_expect(NAME cli.fsdd.no_src RC 1
  ARGS dataset fsdd --src ${CMAKE_CURRENT_BINARY_DIR}/no-such-fsdd --out ${CMAKE_CURRENT_BINARY_DIR}/fsdd-out
  STDERR "^qiao: i/o error: .*no-such-fsdd")
cli_expect(NAME cli.eval.digits.required RC 2 ARGS eval digits --model m.safetensors
  STDERR "--model and --data are required")
cli_expect(NAME cli.eval.digits.bad_threads RC 2 ARGS eval digits --model m --data d --threads -2
  STDERR "bad option or value: --threads -2")
cli_expect(NAME cli.train.init_and_config RC 2 ARGS train --init m.safetensors --tokenizer t --data d --out o
  STDERR "--init takes the config and tokenizer from the model")
set_tests_properties(cli.fsdd.required cli.fsdd.unknown cli.fsdd.no_src cli.eval.digits.required
  cli.eval.digits.bad_threads cli.train.init_and_config PROPERTIES LABELS "cli;fsdd")
