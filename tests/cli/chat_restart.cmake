# A restart of the process in the middle of a conversation: `qiao chat`
# takes the first two turns of a return request and exits; a second
# `qiao chat` on the same store goes on with the third, and the bot knows
# the order number and asks the next question; a third run on another
# store does not.
#
#   cmake -DPROG=<qiao> -DBOT=<bot.yml> -DWORK=<dir> -P chat_restart.cmake
cmake_minimum_required(VERSION 3.25)

file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
file(WRITE ${WORK}/one.txt "我要退货\n2025112800007766\n")
file(WRITE ${WORK}/two.txt "羽绒服\n")
function(chat input store)
  execute_process(COMMAND ${PROG} chat --bot ${BOT} --store ${WORK}/${store} --orders ${WORK}/orders.sqlite
    --conversation c1 --json INPUT_FILE ${WORK}/${input} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "qiao chat exited ${rc}\n${out}\n${err}")
  endif()
  set(out "${out}" PARENT_SCOPE)
endfunction()

chat(one.txt store.sqlite)
string(REGEX MATCHALL "[^\n]+" lines "${out}")
list(GET lines 1 second)
string(JSON action GET "${second}" action)
if(NOT action STREQUAL "form:return/ask:item")
  message(FATAL_ERROR "first run, second turn: action ${action}, expected form:return/ask:item\n${out}")
endif()

chat(two.txt store.sqlite)
string(JSON action GET "${out}" action)
string(JSON order GET "${out}" slots order_id)
string(JSON item GET "${out}" slots item)
if(NOT action STREQUAL "form:return/ask:reason" OR NOT order STREQUAL "2025112800007766" OR NOT item STREQUAL "羽绒服")
  message(FATAL_ERROR "after the restart: action ${action}, order ${order}, item ${item}\n${out}")
endif()

chat(two.txt other.sqlite)
string(JSON action GET "${out}" action)
if(action MATCHES "^form:return")
  message(FATAL_ERROR "a fresh store knew the conversation: ${out}")
endif()
message(STATUS "the conversation survived the restart: ${action} on a fresh store")
