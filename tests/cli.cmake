# The qiao command line, run as a user would: exit codes and messages.
# make_model_file writes the input files with the library's own writer.
add_executable(make_model_file unit/make_model_file.c)
target_link_libraries(make_model_file PRIVATE qiao_internal qiao_warnings m)

set(QIAO_CLI_FILES ${CMAKE_CURRENT_BINARY_DIR}/cli-files)
file(MAKE_DIRECTORY ${QIAO_CLI_FILES})
foreach(kind model truncated lying empty meta)
  add_test(NAME cli.make.${kind}
    COMMAND make_model_file ${kind} ${QIAO_CLI_FILES}/${kind}.safetensors)
  set_tests_properties(cli.make.${kind} PROPERTIES FIXTURES_SETUP cli_files LABELS cli)
endforeach()

# cli_expect(NAME <name> RC <code> ARGS <args...> [STDOUT <regex>] [STDERR <regex>]
#            [JSON_KEY <key|path|...> JSON_VALUE <value>])
# A JSON key path is written with | (a ; would split it into several arguments).
function(cli_expect)
  cmake_parse_arguments(C "" "NAME;RC;STDOUT;STDERR;JSON_KEY;JSON_VALUE" "ARGS" ${ARGN})
  string(REPLACE ";" "|" args "${C_ARGS}")
  set(defs -DPROG=$<TARGET_FILE:qiao_cli> -DARGS=${args} -DEXPECT_RC=${C_RC})
  if(DEFINED C_STDOUT)
    list(APPEND defs -DEXPECT_STDOUT=${C_STDOUT})
  endif()
  if(DEFINED C_STDERR)
    list(APPEND defs -DEXPECT_STDERR=${C_STDERR})
  endif()
  if(DEFINED C_JSON_KEY)
    list(APPEND defs -DJSON_KEY=${C_JSON_KEY} -DJSON_VALUE=${C_JSON_VALUE})
  endif()
  add_test(NAME ${C_NAME}
    COMMAND ${CMAKE_COMMAND} ${defs} -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/expect.cmake)
  set_tests_properties(${C_NAME} PROPERTIES FIXTURES_REQUIRED cli_files LABELS cli TIMEOUT 60)
endfunction()

cli_expect(NAME cli.version RC 0 ARGS version STDOUT "^qiao [0-9]+\\.[0-9]+\\.[0-9]+")
cli_expect(NAME cli.no_command RC 2 ARGS "" STDERR "usage")
cli_expect(NAME cli.info.model RC 0 ARGS info ${QIAO_CLI_FILES}/model.safetensors
  STDOUT "blk\\.0\\.w.*parameters: 52 ")
cli_expect(NAME cli.info.model_table RC 0 ARGS info ${QIAO_CLI_FILES}/model.safetensors
  STDOUT "embed\\.weight +F32 +\\(8, 4\\) +32.*qiao\\.config = .*\\.\\.\\. \\([0-9]+ bytes\\)")
cli_expect(NAME cli.info.json RC 0 ARGS info --json ${QIAO_CLI_FILES}/model.safetensors
  JSON_KEY parameters JSON_VALUE 52)
cli_expect(NAME cli.info.json_metadata RC 0 ARGS info ${QIAO_CLI_FILES}/model.safetensors --json
  JSON_KEY "metadata|format" JSON_VALUE pt)
cli_expect(NAME cli.info.json_shape RC 0 ARGS info --json ${QIAO_CLI_FILES}/model.safetensors
  JSON_KEY "tensors|0|numel" JSON_VALUE 32)
cli_expect(NAME cli.info.empty RC 0 ARGS info ${QIAO_CLI_FILES}/empty.safetensors
  STDOUT "0 tensors.*parameters: 0")
cli_expect(NAME cli.info.meta_json RC 0 ARGS info --json ${QIAO_CLI_FILES}/meta.safetensors
  JSON_KEY "metadata|format" JSON_VALUE pt)
cli_expect(NAME cli.info.truncated RC 1 ARGS info ${QIAO_CLI_FILES}/truncated.safetensors
  STDERR "^qiao: format error: .*truncated\\.safetensors: tensor '")
cli_expect(NAME cli.info.lying RC 1 ARGS info ${QIAO_CLI_FILES}/lying.safetensors
  STDERR "^qiao: format error: .*lying\\.safetensors: tensor 'blk\\.0\\.w': data_offsets \\[0, 96\\) but shape \\(5, 5\\) F32 needs 100 bytes")
cli_expect(NAME cli.info.nonexistent RC 1 ARGS info ${QIAO_CLI_FILES}/does-not-exist.safetensors
  STDERR "^qiao: i/o error: .*does-not-exist\\.safetensors")
cli_expect(NAME cli.info.no_file RC 2 ARGS info STDERR "usage: qiao info")
cli_expect(NAME cli.info.bad_option RC 2 ARGS info --frobnicate x.safetensors STDERR "unknown option")

# qiao train's option checks, before any work
cli_expect(NAME cli.train.freeze_bad RC 1
  ARGS train --config ${PROJECT_SOURCE_DIR}/models/configs/tiny.json --tokenizer x --data x --out x.safetensors
       --freeze text,video
  STDERR "train\\.freeze: video is not a tower")
cli_expect(NAME cli.train.restart_needs_resume RC 2
  ARGS train --config ${PROJECT_SOURCE_DIR}/models/configs/tiny.json --tokenizer x --data x --out x.safetensors
       --restart
  STDERR "--restart needs --resume")
cli_expect(NAME cli.train.precision_bad RC 2
  ARGS train --config ${PROJECT_SOURCE_DIR}/models/configs/tiny.json --tokenizer x --data x --out x.safetensors
       --precision fp8
  STDERR "--precision takes f32 or bf16, not fp8")

# qiao train plot: the shipped model's log drawn again; a missing log; no log
cli_expect(NAME cli.train.plot RC 0
  ARGS train plot ${PROJECT_SOURCE_DIR}/docs/qiao-base.csv -o ${QIAO_CLI_FILES}/qiao-base.png
  STDOUT "wrote .*qiao-base\\.png")
cli_expect(NAME cli.train.plot_missing RC 1 ARGS train plot ${QIAO_CLI_FILES}/no-such-log.csv
  STDERR "no-such-log\\.csv: No such file")
cli_expect(NAME cli.train.plot_no_log RC 2 ARGS train plot STDERR "usage: qiao train")

# qiao caption, qiao train caption and qiao eval caption: bad requests get a
# clear message and exit code before any work (an embedding-only model writes
# no captions; a file that is not a picture; options that exclude each other).
set(QIAO_BASE ${PROJECT_SOURCE_DIR}/models/qiao-base.safetensors)
cli_expect(NAME cli.caption.embedding_model RC 1
  ARGS caption --model ${QIAO_BASE} --image ${CMAKE_CURRENT_SOURCE_DIR}/data/image/000000126107.jpg
  STDERR "^qiao: unsupported: model base writes no captions")
cli_expect(NAME cli.caption.not_a_picture RC 1
  ARGS caption --model ${QIAO_BASE} --image ${PROJECT_SOURCE_DIR}/CMakeLists.txt
  STDERR "^qiao: format error: .*CMakeLists\\.txt: not a recognized image format")
cli_expect(NAME cli.caption.bad_lang RC 2 ARGS caption --model x --image y --lang fr STDERR "--lang is zh or en")
cli_expect(NAME cli.caption.beam_and_sample RC 2 ARGS caption --model x --image y --beam 4 --sample
  STDERR "exclude each other")
cli_expect(NAME cli.caption.beam_zero RC 2 ARGS caption --model x --image y --beam 0 STDERR "--beam needs an integer")
cli_expect(NAME cli.train_caption.needs_data RC 2 ARGS train caption --out x.safetensors
  STDERR "--data, --out and --init")
cli_expect(NAME cli.eval_caption.embedding_model RC 1
  ARGS eval caption --model ${QIAO_BASE} --data ${CMAKE_CURRENT_SOURCE_DIR}/data --no-baseline
  STDERR "writes no captions")

# qiao caption --video: the videos are made at test time from two real
# photos (tests/cli/make_videos.cmake), the model is tests/caption_api.cmake's
# tiny caption model. What it writes: tests/cli/caption_video.cmake.
set(QIAO_CLI_VIDEOS ${CMAKE_CURRENT_BINARY_DIR}/caption-videos)
add_test(NAME cli.caption_video.make
  COMMAND ${CMAKE_COMMAND} -DDIR=${QIAO_CLI_VIDEOS} -DPHOTO_A=${CMAKE_CURRENT_SOURCE_DIR}/data/image/000000126107.jpg
          -DPHOTO_B=${CMAKE_CURRENT_SOURCE_DIR}/data/image/000000205401.jpg
          -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/make_videos.cmake)
set_tests_properties(cli.caption_video.make PROPERTIES FIXTURES_SETUP caption_videos LABELS cli TIMEOUT 120)
foreach(case scenes lines moving damaged)
  add_test(NAME cli.caption_video.${case}
    COMMAND ${CMAKE_COMMAND} -DPROG=$<TARGET_FILE:qiao_cli> -DMODEL=${QIAO_CAPTION_FILES}/caption.safetensors
            -DVIDEOS=${QIAO_CLI_VIDEOS} -DCASE=${case} -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/caption_video.cmake)
  set_tests_properties(cli.caption_video.${case} PROPERTIES FIXTURES_REQUIRED "caption_files;caption_videos"
    LABELS cli TIMEOUT 120)
endforeach()

# Bad input: a clear message and exit code 1, never a crash or a hang.
set(cap_model ${QIAO_CAPTION_FILES}/caption.safetensors)
function(caption_video_expect name rc regex)
  cli_expect(NAME cli.caption_video.${name} RC ${rc} ARGS caption --model ${ARGN} STDERR "${regex}")
  set_tests_properties(cli.caption_video.${name} PROPERTIES
    FIXTURES_REQUIRED "cli_files;caption_files;caption_videos")
endfunction()
caption_video_expect(not_a_video 1 "^qiao: format error: .*CMakeLists\\.txt: not a readable image or video"
  ${cap_model} --video ${PROJECT_SOURCE_DIR}/CMakeLists.txt)
caption_video_expect(empty 1 "^qiao: format error: .*empty\\.mp4: empty \\(0 bytes\\), not a video"
  ${cap_model} --video ${QIAO_CLI_VIDEOS}/empty.mp4)
caption_video_expect(zero_frames 1 "^qiao: format error: .*zero\\.avi: no decodable video frame"
  ${cap_model} --video ${QIAO_CLI_VIDEOS}/zero.avi --scenes)
caption_video_expect(truncated_mp4 1 "^qiao: format error: .*trunc\\.mp4: not a readable image or video"
  ${cap_model} --video ${QIAO_CLI_VIDEOS}/trunc.mp4)
caption_video_expect(missing 1 "^qiao: i/o error: .*no-such-video\\.mp4"
  ${cap_model} --video ${QIAO_CLI_VIDEOS}/no-such-video.mp4)
caption_video_expect(max_frames 1 "^qiao: too large: .*two\\.mp4: 4\\.000 s at 2 fps is over max_frames = 3"
  ${cap_model} --video ${QIAO_CLI_VIDEOS}/two.mp4 --fps 2 --max-frames 3)
# the model is checked before the video is opened
caption_video_expect(embedding_model 1
  "^qiao: unsupported: qiao_caption_video: model base writes no captions: it has no decoder"
  ${QIAO_BASE} --video ${QIAO_CLI_VIDEOS}/no-such-video.mp4)
# usage errors, before any work
foreach(fps 0 -1 1e9 nan abc)
  cli_expect(NAME cli.caption_video.fps_${fps} RC 2 ARGS caption --model x --video y --fps ${fps}
    STDERR "--fps needs a number of frames a second in \\(0, 1000\\], got '${fps}'")
endforeach()
foreach(t 1.5 -0.1)
  cli_expect(NAME cli.caption_video.threshold_${t} RC 2 ARGS caption --model x --video y --scenes --scene-threshold ${t}
    STDERR "--scene-threshold needs a number in \\[0, 1\\], got '${t}'")
endforeach()
cli_expect(NAME cli.caption_video.threshold_without_scenes RC 2
  ARGS caption --model x --video y --scene-threshold 0.2 STDERR "--scene-threshold needs --scenes")
cli_expect(NAME cli.caption_video.options_without_video RC 2 ARGS caption --model x --image y --srt z.srt
  STDERR "need --video")
cli_expect(NAME cli.caption_video.image_and_video RC 2 ARGS caption --model x --image y --video z
  STDERR "one of --image and --video")

# qiao graft: the tiny caption fixture's base and caption models were made
# with different picture towers, so the graft is refused, and done with
# --force (grafting onto the same tower: test_caption_train's graft case).
cli_expect(NAME cli.graft.other_tower RC 1
  ARGS graft --model ${QIAO_CAPTION_FILES}/base.safetensors --decoder-from ${QIAO_CAPTION_FILES}/caption.safetensors
       --out ${QIAO_CAPTION_FILES}/x.safetensors
  STDERR "^qiao: invalid argument: .*decoder was trained on another picture tower: image\\.")
cli_expect(NAME cli.graft.forced RC 0
  ARGS graft --model ${QIAO_CAPTION_FILES}/base.safetensors --decoder-from ${QIAO_CAPTION_FILES}/caption.safetensors
       --out ${QIAO_CAPTION_FILES}/grafted.safetensors --force
  STDOUT "grafted\\.safetensors: .* with the caption decoder of .* \\([0-9]+ parameters\\)")
cli_expect(NAME cli.graft.no_decoder RC 1
  ARGS graft --model ${QIAO_CAPTION_FILES}/caption.safetensors --decoder-from ${QIAO_CAPTION_FILES}/base.safetensors
       --out ${QIAO_CAPTION_FILES}/x.safetensors
  STDERR "^qiao: unsupported: .* has no caption decoder to take")
cli_expect(NAME cli.graft.usage RC 2 ARGS graft --model x STDERR "usage: qiao graft")
set_tests_properties(cli.graft.other_tower cli.graft.forced cli.graft.no_decoder PROPERTIES
  FIXTURES_REQUIRED "cli_files;caption_files")

# The shipped VQA and caption model on scenes it never saw (tests/cli/shipped_vqa.cmake).
add_test(NAME cli.shipped_vqa
  COMMAND ${CMAKE_COMMAND} -DPROG=$<TARGET_FILE:qiao_cli> -DMODEL=${PROJECT_SOURCE_DIR}/models/qiao-vqa.safetensors
          -DDIR=${CMAKE_CURRENT_BINARY_DIR}/shipped-vqa -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/shipped_vqa.cmake)
set_tests_properties(cli.shipped_vqa PROPERTIES LABELS "cli;model" TIMEOUT 300)
