# Vocabulary pruning (issue 18, section 6: models/vocab/prune.c,
# tokenizers/spm_prune.c) on the tiny random XLM-R: the corpus's texts keep
# their pieces and vectors, other Chinese and English text is segmented
# again without <unk>, rows (a tied output's too) move with their ids, the
# file loads and prunes again, the SentencePiece wire-format edit, corpus
# files, bad arguments; and the real e5 pruned to the sample bot's corpus
# (fixture e5).
qiao_test(NAME test_vocab_prune SOURCES unit/test_vocab_prune.c
  CASES keeps_corpus_pieces resegments_without_unk rows_move embeds_the_same round_trip tied_rows_move
        wire_format corpus_files bad_arguments e5_bot_corpus
  LABELS "tokenizer;prune" TIMEOUT 120)
target_compile_definitions(test_vocab_prune PRIVATE
  QIAO_E5_MODEL="${CMAKE_BINARY_DIR}/e5/multilingual-e5-small.safetensors")
set_tests_properties(test_vocab_prune.e5_bot_corpus PROPERTIES FIXTURES_REQUIRED e5 LABELS "tokenizer;prune;golden")

# `qiao prune-vocab` as a user runs it.
set(QIAO_PRUNE_OUT ${CMAKE_CURRENT_BINARY_DIR}/cli-files/xlmr-pruned.safetensors)
cli_expect(NAME cli.prune_vocab.xlmr RC 0 ARGS prune-vocab --model ${CMAKE_CURRENT_SOURCE_DIR}/data/hf/xlmr/model.safetensors
  --keep ${PROJECT_SOURCE_DIR}/datasets/intent/ecommerce_zh/train.jsonl --script digits --out ${QIAO_PRUNE_OUT}
  STDOUT "xlmr-pruned\\.safetensors: 3002 -> [0-9]+ rows .* single characters, [0-9]+ of the scripts")
cli_expect(NAME cli.prune_vocab.usage RC 2 ARGS prune-vocab --model m.safetensors --out o.safetensors
  STDERR "at least one --keep")
cli_expect(NAME cli.prune_vocab.bad_script RC 2 ARGS prune-vocab --script zh,kana --model m --keep c --out o
  STDERR "'kana' is not zh, digits or en")
cli_expect(NAME cli.prune_vocab.hybrid RC 1 ARGS prune-vocab --model ${PROJECT_SOURCE_DIR}/models/qiao-base.safetensors
  --keep ${PROJECT_SOURCE_DIR}/datasets/intent/ecommerce_zh/train.jsonl --out ${CMAKE_CURRENT_BINARY_DIR}/cli-files/never.safetensors
  STDERR "unsupported.*kind \"spm\"")
cli_expect(NAME cli.prune_vocab.bad_corpus RC 1 ARGS prune-vocab --model ${CMAKE_CURRENT_SOURCE_DIR}/data/hf/xlmr/model.safetensors
  --keep ${CMAKE_CURRENT_SOURCE_DIR}/data/tokenizer/SOURCE.md --keep /nonexistent/corpus.jsonl
  --out ${CMAKE_CURRENT_BINARY_DIR}/cli-files/never.safetensors STDERR "i/o error: .*/nonexistent/corpus\\.jsonl")
set_tests_properties(cli.prune_vocab.xlmr cli.prune_vocab.usage cli.prune_vocab.bad_script cli.prune_vocab.hybrid
  cli.prune_vocab.bad_corpus PROPERTIES LABELS "cli;prune")

# libFuzzer: any bytes as a SentencePiece ModelProto through the wire-format
# pruning, and as a corpus file.
qiao_fuzz(NAME fuzz_vocab_prune SOURCES ${PROJECT_SOURCE_DIR}/tokenizers/spm_prune.c
  ${PROJECT_SOURCE_DIR}/models/vocab/corpus.c
  ${QIAO_FUZZ_TOK}/normalize.c ${QIAO_FUZZ_TOK}/tokenizer.c
  ${QIAO_FUZZ_TOK}/train.c ${QIAO_FUZZ_TOK}/spm_shim.cpp ${QIAO_FUZZ_TOK}/wordpiece.c ${QIAO_FUZZ_TOK}/clip_bpe.c
  ${PROJECT_SOURCE_DIR}/sdk/core/safetensors.c ${PROJECT_SOURCE_DIR}/sdk/core/status.c
  ${PROJECT_SOURCE_DIR}/sdk/core/half.c ${PROJECT_SOURCE_DIR}/sdk/core/tensor.c ${PROJECT_SOURCE_DIR}/sdk/core/rng.c
  ${PROJECT_SOURCE_DIR}/sdk/core/file.c ${PROJECT_SOURCE_DIR}/sdk/core/utf8.c
  LIBS PkgConfig::CJSON PkgConfig::ICU PkgConfig::SENTENCEPIECE
  DEFINES QIAO_FUZZ_XLMR="${CMAKE_CURRENT_SOURCE_DIR}/data/hf/xlmr/model.safetensors")

# scripts/make-intent-bot.sh's steps on a classifier trained for 4 steps on
# the tiny XLM-R: pruned, quantized, recalibrated on training's held-out
# part (an int8 file stays int8, the pruning's record stays), evaluated.
set(QIAO_BOT ${CMAKE_CURRENT_BINARY_DIR}/cli-files/bot-tiny)
set(QIAO_BOT_DATA ${PROJECT_SOURCE_DIR}/datasets/intent/ecommerce_zh)
cli_expect(NAME cli.bot.train RC 0 ARGS intent train --init ${CMAKE_CURRENT_SOURCE_DIR}/data/hf/xlmr/model.safetensors
  --data ${QIAO_BOT_DATA}/train.jsonl --steps 4 --batch 16 --quiet --out ${QIAO_BOT}.safetensors)
cli_expect(NAME cli.bot.prune RC 0 ARGS prune-vocab --model ${QIAO_BOT}.safetensors --keep ${QIAO_BOT_DATA}/train.jsonl
  --script zh,digits --out ${QIAO_BOT}-pruned.safetensors STDOUT "3002 -> [0-9]+ rows")
cli_expect(NAME cli.bot.quantize RC 0 ARGS quantize --model ${QIAO_BOT}-pruned.safetensors
  --out ${QIAO_BOT}-int8.safetensors STDOUT "stored int8")
cli_expect(NAME cli.bot.calibrate RC 0 ARGS intent calibrate --model ${QIAO_BOT}-int8.safetensors
  --data ${QIAO_BOT_DATA}/train.jsonl --held-out --seed 1 --out ${QIAO_BOT}-small.safetensors
  STDOUT "calibrated on 313 texts of the held-out part of .*train\\.jsonl: temperature")
cli_expect(NAME cli.bot.small_int8 RC 0 ARGS info --json ${QIAO_BOT}-small.safetensors
  JSON_KEY "metadata|qiao.quantized" JSON_VALUE int8)
cli_expect(NAME cli.bot.small_record RC 0 ARGS info ${QIAO_BOT}-small.safetensors
  STDOUT "qiao\\.pruned = \\{\"rows_before\":3002")
cli_expect(NAME cli.bot.eval RC 0 ARGS intent eval --model ${QIAO_BOT}-small.safetensors
  --data ${QIAO_BOT_DATA}/test.jsonl --json JSON_KEY examples JSON_VALUE 1000)
cli_expect(NAME cli.bot.held_out_fraction RC 2 ARGS intent calibrate --model m --data d --out o --held-out
  --val-fraction 1.5 STDERR "--val-fraction")
set_tests_properties(cli.bot.train PROPERTIES FIXTURES_SETUP bot_train)
set_tests_properties(cli.bot.prune PROPERTIES FIXTURES_REQUIRED "cli_files;bot_train" FIXTURES_SETUP bot_pruned)
set_tests_properties(cli.bot.quantize PROPERTIES FIXTURES_REQUIRED "cli_files;bot_pruned" FIXTURES_SETUP bot_int8)
set_tests_properties(cli.bot.calibrate PROPERTIES FIXTURES_REQUIRED "cli_files;bot_int8" FIXTURES_SETUP bot_small)
set_tests_properties(cli.bot.small_int8 cli.bot.small_record cli.bot.eval PROPERTIES
  FIXTURES_REQUIRED "cli_files;bot_small")
set_tests_properties(cli.bot.train cli.bot.prune cli.bot.quantize cli.bot.calibrate cli.bot.small_int8
  cli.bot.small_record cli.bot.eval cli.bot.held_out_fraction PROPERTIES LABELS "cli;intent;prune")

# The committed sample bot (apps/chatbot/models/ecommerce-zh.md) loads,
# classifies and tags, and is the pruned int8 file its card describes.
set(QIAO_BOT_MODEL ${PROJECT_SOURCE_DIR}/apps/chatbot/models/ecommerce-zh.safetensors)
cli_expect(NAME cli.bot.committed_predict RC 0 ARGS intent predict --model ${QIAO_BOT_MODEL} --top 1
  "这件衣服能退货吗" "我的手机号换了，新号码 13800138000"
  STDOUT "-> return_request .*-> change_phone .*entity phone +\\[[0-9]+, [0-9]+\\) \"13800138000\"")
cli_expect(NAME cli.bot.committed_info RC 0 ARGS info --json ${QIAO_BOT_MODEL}
  JSON_KEY "metadata|tokenizer.config" JSON_VALUE
  "{\"version\":1,\"kind\":\"spm\",\"vocab_size\":24564,\"id_offset\":1,\"bos\":0,\"pad\":1,\"eos\":2,\"unk\":3,\"mask\":24563,\"add_bos\":true,\"add_eos\":true}")
set_tests_properties(cli.bot.committed_predict cli.bot.committed_info PROPERTIES LABELS "cli;intent;prune")
