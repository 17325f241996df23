# The public captioning API (sdk/api/caption_api.c) on a tiny caption model
# written at test time: Chinese and English from a decoded picture, a file,
# bytes and RGB; greedy = beam 1 = sampling at temperature 0, a seed repeats
# its sample; the streamed text grows to the result's; cancel; every bad
# input; four threads with a session each write the same captions.
#
# And the sample program qiao-caption (apps/caption) on a folder of three
# generated pictures and a text file: the JSON parses and lists the three
# pictures with a caption in each language and skips the text file, the HTML
# names each picture by a relative path that leads to it; an embedding-only
# model and usage errors are clear failures.
#
# This file is also the checking script: ctest runs it with cmake -P.

if(CMAKE_SCRIPT_MODE_FILE)
  # ---- script mode: -DPROG=qiao-caption -DFILES=DIR [-DLANG=zh|en] -------------
  cmake_minimum_required(VERSION 3.25)
  set(out_json ${FILES}/out${LANG}/captions.json)
  set(out_html ${FILES}/out${LANG}/sheet/captions.html)
  file(REMOVE_RECURSE ${FILES}/out${LANG})
  file(MAKE_DIRECTORY ${FILES}/out${LANG}/sheet)
  set(args ${FILES}/caption.safetensors ${FILES}/pictures --json ${out_json} --html ${out_html})
  set(langs zh en)
  if(LANG)
    list(APPEND args --lang ${LANG} --beam 3)
    set(langs ${LANG})
  endif()
  execute_process(COMMAND ${PROG} ${args} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(report "command: ${PROG} ${args}\nexit code: ${rc}\nstdout:\n${out}\nstderr:\n${err}")
  function(fail msg)
    message(FATAL_ERROR "${msg}\n${report}")
  endfunction()
  if(NOT rc STREQUAL "0")
    fail("expected exit code 0")
  endif()
  if(NOT EXISTS ${out_json} OR NOT EXISTS ${out_html})
    fail("no ${out_json} or ${out_html}")
  endif()
  file(READ ${out_json} json)
  string(JSON n ERROR_VARIABLE jerr LENGTH "${json}" images)
  if(jerr)
    fail("the JSON does not parse: ${jerr}\n${json}")
  endif()
  if(NOT n EQUAL 3)
    fail("expected 3 images in the JSON, found ${n}\n${json}")
  endif()
  string(JSON n_skipped LENGTH "${json}" skipped)
  string(JSON skipped GET "${json}" skipped 0 file)
  string(JSON complete GET "${json}" complete)
  if(NOT n_skipped EQUAL 1 OR NOT skipped STREQUAL "notes.txt" OR NOT complete STREQUAL "ON")
    fail("expected notes.txt skipped and complete: true\n${json}")
  endif()
  file(READ ${out_html} html)
  set(names "a red scene.png" "b-scene.png" "c&scene.png")
  set(srcs "../../pictures/a%20red%20scene.png" "../../pictures/b-scene.png" "../../pictures/c%26scene.png")
  foreach(i RANGE 2)
    list(GET names ${i} name)
    list(GET srcs ${i} src)
    string(JSON file GET "${json}" images ${i} file)
    if(NOT file STREQUAL name)
      fail("image ${i} is ${file}, expected ${name} (name order)")
    endif()
    string(JSON w GET "${json}" images ${i} width)
    if(NOT w EQUAL 64)
      fail("image ${i}: width ${w}, expected 64")
    endif()
    foreach(l ${langs})
      string(JSON text ERROR_VARIABLE jerr GET "${json}" images ${i} captions ${l} text)
      string(JSON lp GET "${json}" images ${i} captions ${l} logprob)
      if(jerr OR lp GREATER 0)
        fail("image ${i}: no ${l} caption, or a positive log-probability")
      endif()
      string(REPLACE "&" "&amp;" text_html "${text}")
      string(REPLACE "<" "&lt;" text_html "${text_html}")
      string(REPLACE ">" "&gt;" text_html "${text_html}")
      string(REPLACE "\"" "&quot;" text_html "${text_html}")
      string(REPLACE "'" "&#39;" text_html "${text_html}")
      string(FIND "${html}" "${text_html}" at)
      if(at EQUAL -1)
        fail("the HTML lacks the ${l} caption of ${name}: ${text_html}")
      endif()
    endforeach()
    string(FIND "${html}" "src=\"${src}\"" at)
    if(at EQUAL -1)
      fail("the HTML lacks <img src=\"${src}\">")
    endif()
  endforeach()
  message(STATUS "ok: 3 pictures captioned in ${langs}, 1 file skipped, the page links every picture")
  return()
endif()

# ---- registration (included by tests/CMakeLists.txt) ------------------------------
qiao_test(NAME test_caption_api SOURCES unit/test_caption_api.c
  CASES caption strategies stream_cancel bad_input threads
  LABELS api TIMEOUT 300)
target_link_libraries(test_caption_api PRIVATE qiao_datasets)

set(QIAO_CAPTION_FILES ${CMAKE_CURRENT_BINARY_DIR}/caption-files)
add_test(NAME cli.caption_app.setup COMMAND ${CMAKE_COMMAND} -E rm -rf ${QIAO_CAPTION_FILES})
add_test(NAME cli.caption_app.make_files COMMAND test_caption_api --write-fixture ${QIAO_CAPTION_FILES})
set_tests_properties(cli.caption_app.make_files PROPERTIES DEPENDS cli.caption_app.setup)
set_tests_properties(cli.caption_app.setup cli.caption_app.make_files PROPERTIES
  FIXTURES_SETUP caption_files LABELS "cli;api")

# Both languages, greedy; then English alone with three beams.
add_test(NAME cli.caption_app.both
  COMMAND ${CMAKE_COMMAND} -DPROG=$<TARGET_FILE:qiao_caption_app> -DFILES=${QIAO_CAPTION_FILES}
          -P ${CMAKE_CURRENT_SOURCE_DIR}/caption_api.cmake)
add_test(NAME cli.caption_app.en_beam
  COMMAND ${CMAKE_COMMAND} -DPROG=$<TARGET_FILE:qiao_caption_app> -DFILES=${QIAO_CAPTION_FILES} -DLANG=en
          -P ${CMAKE_CURRENT_SOURCE_DIR}/caption_api.cmake)
set_tests_properties(cli.caption_app.both cli.caption_app.en_beam PROPERTIES
  FIXTURES_REQUIRED caption_files LABELS "cli;api" TIMEOUT 120)

# Failures: an embedding-only model, a missing folder, usage errors: exit
# code and message (tests/cli/expect.cmake).
function(caption_app_expect name rc regex)
  string(REPLACE ";" "|" args "${ARGN}")
  add_test(NAME cli.caption_app.${name}
    COMMAND ${CMAKE_COMMAND} -DPROG=$<TARGET_FILE:qiao_caption_app> -DARGS=${args} -DEXPECT_RC=${rc}
            -DEXPECT_STDERR=${regex} -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/expect.cmake)
  set_tests_properties(cli.caption_app.${name} PROPERTIES FIXTURES_REQUIRED caption_files LABELS "cli;api"
    TIMEOUT 60)
endfunction()
caption_app_expect(no_decoder 1 "base\\.safetensors writes no captions"
  ${QIAO_CAPTION_FILES}/base.safetensors ${QIAO_CAPTION_FILES}/pictures --json ${QIAO_CAPTION_FILES}/x.json)
caption_app_expect(no_folder 1 "no-such-folder: No such file"
  ${QIAO_CAPTION_FILES}/caption.safetensors ${QIAO_CAPTION_FILES}/no-such-folder --json ${QIAO_CAPTION_FILES}/x.json)
caption_app_expect(no_output 2 "^usage: .*qiao-caption"
  ${QIAO_CAPTION_FILES}/caption.safetensors ${QIAO_CAPTION_FILES}/pictures)
caption_app_expect(bad_lang 2 "--lang is zh or en, not fr"
  ${QIAO_CAPTION_FILES}/caption.safetensors ${QIAO_CAPTION_FILES}/pictures --lang fr --json x.json)
caption_app_expect(bad_beam 2 "--beam needs a number of beams"
  ${QIAO_CAPTION_FILES}/caption.safetensors ${QIAO_CAPTION_FILES}/pictures --beam 0 --json x.json)

# qiao train caption --stop-after, then --resume to the end (tests/cli/stop_after.cmake).
add_test(NAME cli.train_caption.stop_after
  COMMAND ${CMAKE_COMMAND} -DPROG=$<TARGET_FILE:qiao_cli> -DBASE=${QIAO_CAPTION_FILES}/base.safetensors
          -DRECIPE=${PROJECT_SOURCE_DIR}/models/configs/caption.json -DDIR=${CMAKE_CURRENT_BINARY_DIR}/stop-after
          -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/stop_after.cmake)
set_tests_properties(cli.train_caption.stop_after PROPERTIES FIXTURES_REQUIRED caption_files LABELS cli TIMEOUT 120)

