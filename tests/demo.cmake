# `qiao demo` (apps/qiao/cmd_demo.c) and `qiao selfcheck`, run as a user would.
#
# The demo runs on the tiny random model that test_embed_api writes, so its
# rankings are random; what is checked is that it runs to the end from an
# empty work folder and again on the one it left, and that its report is
# true to itself: every query shows three ranked items with non-increasing
# scores, a check mark sits on exactly the items of the query's own scene
# (read back from the samples' manifest), the "first appears at rank R" note
# is there exactly when no top-3 item is right, and the summary counts the
# queries whose first item is right. The first run also gets the shipped VQA
# and caption model: its part must show both captions and the scene's
# questions, each marked right exactly when its answer is the manifest's,
# and a count that agrees; the rerun gets none and says so.
#
# This file is also the checking script: ctest runs it with cmake -P.

if(CMAKE_SCRIPT_MODE_FILE)
  # ---- script mode: -DPROG=qiao -DMODEL=M -DVQA=V -DWORK=DIR -DRERUN=0|1 ---------
  cmake_minimum_required(VERSION 3.25)
  execute_process(COMMAND ${PROG} demo --model ${MODEL} --vqa-model ${VQA} --work ${WORK} --threads 2
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(report "command: ${PROG} demo --model ${MODEL} --vqa-model ${VQA} --work ${WORK}\nexit code: ${rc}\nstdout:\n${out}\nstderr:\n${err}")
  function(fail msg)
    message(FATAL_ERROR "${msg}\n${report}")
  endfunction()
  if(NOT rc STREQUAL "0")
    fail("expected exit code 0")
  endif()
  foreach(step "\\[1/4\\] model " "\\[2/4\\] samples: 24 scenes" "\\[3/4\\] index: 24 pictures and 48 recordings"
               "\\[4/4\\] queries" "next:" "qiao search query --index" "qiao eval retrieval --model")
    if(NOT out MATCHES "${step}")
      fail("stdout lacks '${step}'")
    endif()
  endforeach()
  if(RERUN)
    # Samples and embeddings are reused, not made again.
    if(NOT out MATCHES "already there" OR NOT out MATCHES "\\(0 embedded, 72 unchanged")
      fail("a rerun should reuse the samples and every embedding")
    endif()
  elseif(NOT out MATCHES "\\(72 embedded, 0 unchanged")
    fail("a first run should embed all 72 files")
  endif()

  # The samples: 24 scenes, a picture and two recordings each.
  file(GLOB pngs ${WORK}/samples/images/*.png)
  file(GLOB wavs ${WORK}/samples/speech/*.wav)
  list(LENGTH pngs n_png)
  list(LENGTH wavs n_wav)
  if(NOT n_png EQUAL 24 OR NOT n_wav EQUAL 48 OR NOT EXISTS ${WORK}/index.safetensors)
    fail("expected 24 pictures, 48 recordings and an index under ${WORK} (found ${n_png}, ${n_wav})")
  endif()
  file(STRINGS ${WORK}/samples/manifest.jsonl manifest ENCODING UTF-8)

  # "images/000012.png" -> "000012"
  function(scene_of path var)
    if(NOT path MATCHES "(images|speech)/([0-9]+)[._]")
      set(${var} "" PARENT_SCOPE)
    else()
      set(${var} ${CMAKE_MATCH_2} PARENT_SCOPE)
    endif()
  endfunction()

  # Walk the queries. A ';' would split a line in two list items: none is expected, but make sure.
  string(REPLACE ";" "," out_lines "${out}")
  string(REGEX MATCHALL "[^\n]*\n" lines "${out_lines}")
  set(scene "")
  set(n_queries 0)
  set(n_first 0)
  set(n_ranked 3)
  set(prev_score "")
  set(right_in_top 0)
  set(noted 0)
  set(CHECK "✓")
  # closes the query before a new one (or the summary) starts
  macro(end_query)
    if(NOT scene STREQUAL "")
      if(NOT n_ranked EQUAL 3)
        fail("query for scene ${scene} shows ${n_ranked} ranked items, not 3")
      endif()
      if(right_in_top AND noted)
        fail("query for scene ${scene}: the right item is in the top 3, yet a rank note follows")
      endif()
      if(NOT right_in_top AND NOT noted)
        fail("query for scene ${scene}: no right item in the top 3 and no note of its rank")
      endif()
    endif()
  endmacro()
  foreach(line IN LISTS lines)
    string(REGEX REPLACE "\n$" "" line "${line}")
    set(new_scene "")
    if(line MATCHES "^  typed, (Chinese|English): \"(.*)\"$")
      set(lang zh)
      if(CMAKE_MATCH_1 STREQUAL "English")
        set(lang en)
      endif()
      set(text "${CMAKE_MATCH_2}")
      foreach(m IN LISTS manifest)
        string(JSON cap GET "${m}" captions ${lang} 0)
        string(REPLACE ";" "," cap "${cap}")
        if(cap STREQUAL text)
          string(JSON img GET "${m}" image)
          scene_of("${img}" new_scene)
        endif()
      endforeach()
      if(new_scene STREQUAL "")
        fail("the typed query '${text}' is not a ${lang} long caption of the manifest")
      endif()
    elseif(line MATCHES "^  spoken, (Chinese|English): (speech/[0-9]+_cap_(zh|en)_0\\.wav)$")
      scene_of("${CMAKE_MATCH_2}" new_scene)
    elseif(line MATCHES "^  picture: (images/[0-9]+\\.png) -> spoken captions$")
      scene_of("${CMAKE_MATCH_1}" new_scene)
    elseif(line MATCHES "^    ([1-9]) (${CHECK}| ) +(-?[0-9]+\\.[0-9]+)  (.+)$")
      set(rank ${CMAKE_MATCH_1})
      set(mark "${CMAKE_MATCH_2}")
      set(score ${CMAKE_MATCH_3})
      scene_of("${CMAKE_MATCH_4}" item_scene)
      if(scene STREQUAL "")
        fail("a ranked line outside any query: ${line}")
      endif()
      math(EXPR want "${n_ranked} + 1")
      if(NOT rank EQUAL want)
        fail("query for scene ${scene}: rank ${rank} where ${want} was expected")
      endif()
      set(n_ranked ${rank})
      if(NOT prev_score STREQUAL "" AND score GREATER prev_score)
        fail("query for scene ${scene}: scores go up (${prev_score} then ${score})")
      endif()
      set(prev_score ${score})
      set(is_right 0)
      if(item_scene STREQUAL scene)
        set(is_right 1)
        set(right_in_top 1)
      endif()
      if(is_right AND NOT mark STREQUAL CHECK)
        fail("query for scene ${scene}: ${line} is the right scene but has no check mark")
      endif()
      if(NOT is_right AND mark STREQUAL CHECK)
        fail("query for scene ${scene}: ${line} has a check mark but is another scene")
      endif()
      if(rank EQUAL 1 AND is_right)
        math(EXPR n_first "${n_first} + 1")
      endif()
    elseif(line MATCHES "^      \\(the right scene first appears at rank ([0-9]+) of ([0-9]+)\\)$")
      if(CMAKE_MATCH_1 LESS_EQUAL 3 OR CMAKE_MATCH_1 GREATER CMAKE_MATCH_2)
        fail("bad rank note: ${line}")
      endif()
      set(noted 1)
    elseif(line MATCHES "^([0-9]+) of ([0-9]+) queries found the right scene first")
      end_query()
      set(scene "")
      if(NOT CMAKE_MATCH_1 EQUAL n_first OR NOT CMAKE_MATCH_2 EQUAL n_queries)
        fail("the summary says ${CMAKE_MATCH_1} of ${CMAKE_MATCH_2}; the rankings shown give ${n_first} of ${n_queries}")
      endif()
      set(summary 1)
    endif()
    if(NOT new_scene STREQUAL "")
      end_query()
      set(scene ${new_scene})
      math(EXPR n_queries "${n_queries} + 1")
      set(n_ranked 0)
      set(prev_score "")
      set(right_in_top 0)
      set(noted 0)
    endif()
  endforeach()
  if(NOT summary OR NOT n_queries EQUAL 7)
    fail("expected 7 queries (4 typed, 2 spoken, 1 picture) and a summary; found ${n_queries}")
  endif()
  message(STATUS "ok: ${n_queries} queries, ${n_first} right first, marks consistent")

  # The VQA and caption part.
  if(NOT EXISTS ${VQA})
    if(NOT out MATCHES "\\(no [^\n]*: train it with scripts/train-vqa\\.sh")
      fail("without a VQA model the demo should say how to get one")
    endif()
    return()
  endif()
  string(FIND "${out}" "[5/5] " at)
  if(at LESS 0)
    fail("no [5/5] part with the VQA model ${VQA}")
  endif()
  string(SUBSTRING "${out}" ${at} -1 part)
  string(REPLACE ";" "," part "${part}") # a list separator otherwise: "; the scene says" reads ", the ..."
  string(REPLACE "\n" ";" plines "${part}")
  set(n_asked 0)
  set(n_marked 0)
  set(n_captions 0)
  set(told "")
  foreach(line ${plines})
    if(line MATCHES "^  caption, (Chinese|English): .+")
      math(EXPR n_captions "${n_captions} + 1")
    elseif(line MATCHES "^  (✓|✗| ) (count|attribute|exist|spatial|compare) +.+ -> .+ \\(([01]\\.[0-9][0-9])\\)(, the scene says .+)?$")
      math(EXPR n_asked "${n_asked} + 1")
      if(CMAKE_MATCH_1 STREQUAL "✓")
        math(EXPR n_marked "${n_marked} + 1")
        if(NOT CMAKE_MATCH_4 STREQUAL "")
          fail("a right answer should not say what the scene says: ${line}")
        endif()
      elseif(CMAKE_MATCH_4 STREQUAL "")
        fail("a wrong answer should say what the scene says: ${line}")
      endif()
    elseif(line MATCHES "^  ([0-9]+) of ([0-9]+) answers right")
      set(told "${CMAKE_MATCH_1}/${CMAKE_MATCH_2}")
    endif()
  endforeach()
  if(NOT n_captions EQUAL 2 OR n_asked LESS 6 OR NOT told STREQUAL "${n_marked}/${n_asked}")
    fail("the VQA part shows ${n_captions} captions, ${n_asked} questions, ${n_marked} marked right; it says ${told}")
  endif()
  message(STATUS "ok: VQA part, ${n_marked} of ${n_asked} answers right, both captions")
  return()
endif()

# ---- registration (included by tests/CMakeLists.txt, after cli.cmake) ----------
set(QIAO_DEMO_FILES ${CMAKE_CURRENT_BINARY_DIR}/demo-files)
set(QIAO_DEMO_MODEL ${QIAO_DEMO_FILES}/tiny.safetensors)
file(MAKE_DIRECTORY ${QIAO_DEMO_FILES})
add_test(NAME cli.demo.setup COMMAND ${CMAKE_COMMAND} -E rm -rf ${QIAO_DEMO_FILES}/work)
add_test(NAME cli.demo.make_model COMMAND test_embed_api --write-model ${QIAO_DEMO_MODEL})
set_tests_properties(cli.demo.setup cli.demo.make_model PROPERTIES FIXTURES_SETUP demo_files LABELS "cli;demo")

# From an empty work folder: generates the samples, embeds everything.
add_test(NAME cli.demo.run
  COMMAND ${CMAKE_COMMAND} -DPROG=$<TARGET_FILE:qiao_cli> -DMODEL=${QIAO_DEMO_MODEL}
          -DVQA=${PROJECT_SOURCE_DIR}/models/qiao-vqa.safetensors
          -DWORK=${QIAO_DEMO_FILES}/work -DRERUN=0 -P ${CMAKE_CURRENT_LIST_FILE})
set_tests_properties(cli.demo.run PROPERTIES FIXTURES_REQUIRED demo_files FIXTURES_SETUP demo_ran
  LABELS "cli;demo" TIMEOUT 120)
# Again on what it left: reuses samples and embeddings, same report.
add_test(NAME cli.demo.rerun
  COMMAND ${CMAKE_COMMAND} -DPROG=$<TARGET_FILE:qiao_cli> -DMODEL=${QIAO_DEMO_MODEL}
          -DVQA=${QIAO_DEMO_FILES}/no-vqa.safetensors
          -DWORK=${QIAO_DEMO_FILES}/work -DRERUN=1 -P ${CMAKE_CURRENT_LIST_FILE})
set_tests_properties(cli.demo.rerun PROPERTIES FIXTURES_REQUIRED "demo_files;demo_ran" LABELS "cli;demo" TIMEOUT 60)

# Failures: a missing model names the file and how to get one; a file that is
# not a model is the loader's format error; usage errors exit 2.
cli_expect(NAME cli.demo.missing_model RC 1
  ARGS demo --model ${QIAO_DEMO_FILES}/none.safetensors --work ${QIAO_DEMO_FILES}/unused
  STDERR "^qiao demo: model .*none\\.safetensors: No such file or directory.*scripts/train-base\\.sh")
cli_expect(NAME cli.demo.not_a_model RC 1
  ARGS demo --model ${QIAO_CLI_FILES}/model.safetensors --work ${QIAO_DEMO_FILES}/unused
  STDERR "^qiao: format error: .*model\\.safetensors")
cli_expect(NAME cli.demo.bad_option RC 2 ARGS demo --fast STDERR "unknown option.*usage: qiao demo")
cli_expect(NAME cli.demo.bad_threads RC 2 ARGS demo --threads many STDERR "--threads needs an integer")
set_property(TEST cli.demo.missing_model cli.demo.not_a_model cli.demo.bad_option cli.demo.bad_threads
  APPEND PROPERTY LABELS demo)

# The former demo: trains the built-in classifier well above chance (1/8).
cli_expect(NAME cli.selfcheck RC 0 ARGS selfcheck --threads 1 --out ${QIAO_DEMO_FILES}/selfcheck.safetensors
  STDOUT "held-out accuracy 0\\.[5-9][0-9]* \\(chance 0\\.1250\\).*model written to .*selfcheck\\.safetensors: 38 tensors")
cli_expect(NAME cli.selfcheck.bad_option RC 2 ARGS selfcheck --fast STDERR "usage: qiao selfcheck")
set_property(TEST cli.selfcheck cli.selfcheck.bad_option APPEND PROPERTY LABELS demo)
# One thread: ~10 s alone in Release (~65 s with sanitizers), and no second
# worker spinning against other tests for the cores.
set_tests_properties(cli.selfcheck PROPERTIES TIMEOUT 240)
