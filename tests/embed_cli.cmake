# `qiao embed`, run as a user would. The model is the tiny test model that
# test_embed_api writes (tests/embed_api.cmake); cli_expect comes from
# tests/cli.cmake, which is included before this file.
set(QIAO_EMBED_FILES ${CMAKE_CURRENT_BINARY_DIR}/embed-cli-files)
file(MAKE_DIRECTORY ${QIAO_EMBED_FILES})
set(QIAO_EMBED_MODEL ${QIAO_EMBED_FILES}/tiny.safetensors)
add_test(NAME cli.embed.make_model COMMAND test_embed_api --write-model ${QIAO_EMBED_MODEL})
set_tests_properties(cli.embed.make_model PROPERTIES FIXTURES_SETUP embed_model LABELS "cli;api")

# cli_expect with the model as a further fixture.
function(embed_expect name)
  cli_expect(NAME ${name} ${ARGN})
  set_property(TEST ${name} APPEND PROPERTY FIXTURES_REQUIRED embed_model)
  set_property(TEST ${name} APPEND PROPERTY LABELS api)
endfunction()

# Eight numbers, then the end. (CMake's regex has no {n}; a newline inside
# a regex does not survive the trip through add_test, and "." matches it.)
string(REPEAT " -?[0-9]+\\.[0-9]+" 8 eight)
set(first8 "first 8:${eight}.$")
embed_expect(cli.embed.text RC 0 ARGS embed --model ${QIAO_EMBED_MODEL} --text 我想听周杰伦的歌
  STDOUT "model: tiny, 1024 dims.text embedding: norm 1\\.0000[0-9]*.${first8}")
embed_expect(cli.embed.text_en RC 0 ARGS embed --text hello --threads 1 --model ${QIAO_EMBED_MODEL}
  STDOUT "norm 1\\.0000[0-9]*.${first8}")
embed_expect(cli.embed.image RC 0
  ARGS embed --model ${QIAO_EMBED_MODEL} --image ${CMAKE_CURRENT_SOURCE_DIR}/data/image/000000126107.jpg
  STDOUT "image embedding: norm 1\\.0000[0-9]*.${first8}")
embed_expect(cli.embed.audio RC 0
  ARGS embed --model ${QIAO_EMBED_MODEL} --audio ${CMAKE_CURRENT_SOURCE_DIR}/data/audio/fsdd_3_jackson_0.wav
  STDOUT "audio embedding: norm 1\\.0000[0-9]*.${first8}")

# -o writes a (1, 1024) float32 .npy equal, bit for bit, to what the API gives.
embed_expect(cli.embed.npy RC 0
  ARGS embed --model ${QIAO_EMBED_MODEL} --text 今天北京天气怎么样 -o ${QIAO_EMBED_FILES}/text.npy
  STDOUT "text: \\(1, 1024\\) float32 -> .*text\\.npy")
set_property(TEST cli.embed.npy APPEND PROPERTY FIXTURES_SETUP embed_npy)
add_test(NAME cli.embed.npy_check
  COMMAND test_embed_api --check-npy ${QIAO_EMBED_FILES}/text.npy ${QIAO_EMBED_MODEL} 今天北京天气怎么样)
set_tests_properties(cli.embed.npy_check PROPERTIES FIXTURES_REQUIRED "embed_model;embed_npy" LABELS "cli;api")

# Usage errors (exit 2) and failures (exit 1, "qiao: <status>: <detail>").
embed_expect(cli.embed.no_input RC 2 ARGS embed --model ${QIAO_EMBED_MODEL} STDERR "usage: qiao embed")
embed_expect(cli.embed.no_model RC 2 ARGS embed --text hi STDERR "usage: qiao embed")
embed_expect(cli.embed.two_inputs RC 2 ARGS embed --model ${QIAO_EMBED_MODEL} --text hi --audio x.wav
  STDERR "one of --text, --image, --audio")
embed_expect(cli.embed.bad_option RC 2 ARGS embed --model ${QIAO_EMBED_MODEL} --text hi --fast
  STDERR "unknown option '--fast'")
embed_expect(cli.embed.bad_threads RC 2 ARGS embed --model ${QIAO_EMBED_MODEL} --text hi --threads -1
  STDERR "--threads needs an integer")
embed_expect(cli.embed.missing_value RC 2 ARGS embed --model ${QIAO_EMBED_MODEL} --text STDERR "--text needs a value")
embed_expect(cli.embed.model_missing RC 1 ARGS embed --model ${QIAO_EMBED_FILES}/none.safetensors --text hi
  STDERR "^qiao: i/o error: .*none\\.safetensors")
embed_expect(cli.embed.not_a_model RC 1 ARGS embed --model ${QIAO_CLI_FILES}/model.safetensors --text hi
  STDERR "^qiao: format error: .*model\\.safetensors")
embed_expect(cli.embed.bad_image RC 1
  ARGS embed --model ${QIAO_EMBED_MODEL} --image ${CMAKE_CURRENT_SOURCE_DIR}/data/audio/fsdd_3_jackson_0.wav
  STDERR "^qiao: format error: .*fsdd_3_jackson_0\\.wav: not a recognized image format")
embed_expect(cli.embed.bad_audio RC 1
  ARGS embed --model ${QIAO_EMBED_MODEL} --audio ${CMAKE_CURRENT_SOURCE_DIR}/data/image/000000126107.jpg
  STDERR "^qiao: format error: .*000000126107\\.jpg")
embed_expect(cli.embed.bad_npy_path RC 1
  ARGS embed --model ${QIAO_EMBED_MODEL} --text hi -o ${QIAO_EMBED_FILES}/no/such/dir/x.npy
  STDERR "^qiao: i/o error: .*x\\.npy")
# --prompt: only with a text; a model without that prompt (qiao's own has
# none) embeds the text as given, saying so.
embed_expect(cli.embed.prompt_not_text RC 2
  ARGS embed --model ${QIAO_EMBED_MODEL} --image x.jpg --prompt query STDERR "--prompt goes with --text")
embed_expect(cli.embed.prompt_none RC 0 ARGS embed --model ${QIAO_EMBED_MODEL} --text hi --prompt query
  STDERR "model tiny has no \"query\" prompt" STDOUT "text embedding: norm 1\\.0000")
