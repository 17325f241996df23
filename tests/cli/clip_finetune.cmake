# An imported CLIP fine-tuned by the generic trainer (issue 17): `qiao train
# --init` on the converted tiny random CLIPModel (tests/data/hf/clip) over
# shapes pictures and captions, text-image only (the model has no audio
# tower). The contrastive loss must fall: the mean of the last ten steps'
# losses below the first ten's by a margin a frozen or broken backward
# cannot reach (the first steps sit at chance, ln 16). Then the fine-tuned
# file loads as a clip model and embeds text and a picture.
# Run as: cmake -DPROG=qiao -DMODEL=... -DDATA=... -DOUT=... -P clip_finetune.cmake
function(fail msg)
  message(FATAL_ERROR "clip_finetune: ${msg}")
endfunction()

file(REMOVE_RECURSE ${OUT})
file(MAKE_DIRECTORY ${OUT})
execute_process(COMMAND ${PROG} train --init ${MODEL} --data ${DATA} --steps 80 --batch 16 --lr 1e-3 --warmup 5
                        --threads 2 --quiet --out ${OUT}/tuned.safetensors
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  fail("qiao train exited ${rc}: ${err}")
endif()
file(STRINGS ${OUT}/tuned.csv lines)
list(LENGTH lines n)
if(NOT n EQUAL 81)
  fail("expected a header and 80 steps in tuned.csv, found ${n} lines")
endif()
# column 4 is the loss; CMake has no floats, so sum in millinats
set(first 0)
set(last 0)
foreach(i RANGE 1 80)
  list(GET lines ${i} row)
  string(REPLACE "," ";" cols "${row}")
  list(GET cols 3 loss)
  string(REGEX MATCH "^([0-9]+)\\.([0-9][0-9][0-9])" m "${loss}")
  if(NOT m)
    fail("step ${i}: loss '${loss}' is not a number")
  endif()
  math(EXPR milli "${CMAKE_MATCH_1} * 1000 + ${CMAKE_MATCH_2}")
  if(i LESS_EQUAL 10)
    math(EXPR first "${first} + ${milli}")
  elseif(i GREATER 70)
    math(EXPR last "${last} + ${milli}")
  endif()
endforeach()
math(EXPR drop "(${first} - ${last}) / 10")
message(STATUS "mean loss of steps 1-10: ${first}/10 mN, of steps 71-80: ${last}/10 mN, drop ${drop} mN")
if(drop LESS 150)
  fail("the loss fell by ${drop} millinats, not the 150 a working fine-tune gives")
endif()
execute_process(COMMAND ${PROG} info ${OUT}/tuned.safetensors RESULT_VARIABLE rc OUTPUT_VARIABLE info)
if(NOT rc EQUAL 0 OR NOT info MATCHES "text +arch=clip" OR NOT info MATCHES "image +arch=clip")
  fail("qiao info of the fine-tuned model: rc ${rc}\n${info}")
endif()
file(GLOB pictures ${DATA}/images/*.png)
list(GET pictures 0 picture)
foreach(what "--text;a red circle" "--image;${picture}")
  execute_process(COMMAND ${PROG} embed --model ${OUT}/tuned.safetensors ${what}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE emb ERROR_VARIABLE err)
  if(NOT rc EQUAL 0 OR NOT emb MATCHES "norm 1\\.0000")
    fail("qiao embed ${what} with the fine-tuned model exited ${rc}: ${emb}${err}")
  endif()
endforeach()
message(STATUS "ok")
