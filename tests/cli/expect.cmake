# Runs one command and checks its exit code and output, for CLI tests that
# must check a message as well as a failure (WILL_FAIL checks neither).
#
#   cmake -DPROG=<exe> -DARGS="a|b|c" -DEXPECT_RC=<n>
#         [-DEXPECT_STDOUT=<regex>] [-DEXPECT_STDERR=<regex>]
#         [-DJSON_KEY=<key|path> -DJSON_VALUE=<value>] -P expect.cmake
#
# ARGS uses | between arguments because ; would be split by add_test.
cmake_minimum_required(VERSION 3.25)
string(REPLACE "|" ";" args "${ARGS}")
execute_process(COMMAND ${PROG} ${args} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(report "command: ${PROG} ${args}\nexit code: ${rc}\nstdout:\n${out}\nstderr:\n${err}")
if(NOT rc STREQUAL "${EXPECT_RC}")
  message(FATAL_ERROR "expected exit code ${EXPECT_RC}\n${report}")
endif()
if(DEFINED EXPECT_STDOUT AND NOT out MATCHES "${EXPECT_STDOUT}")
  message(FATAL_ERROR "stdout does not match '${EXPECT_STDOUT}'\n${report}")
endif()
if(DEFINED EXPECT_STDERR AND NOT err MATCHES "${EXPECT_STDERR}")
  message(FATAL_ERROR "stderr does not match '${EXPECT_STDERR}'\n${report}")
endif()
if(DEFINED JSON_KEY)
  # string(JSON) parses the whole document, so this also proves it is JSON.
  string(REPLACE "|" ";" key "${JSON_KEY}")
  string(JSON got ERROR_VARIABLE jerr GET "${out}" ${key})
  if(jerr)
    message(FATAL_ERROR "stdout is not JSON with '${JSON_KEY}': ${jerr}\n${report}")
  endif()
  if(NOT got STREQUAL "${JSON_VALUE}")
    message(FATAL_ERROR "JSON ${JSON_KEY} is '${got}', expected '${JSON_VALUE}'\n${report}")
  endif()
endif()
message(STATUS "ok: ${PROG} ${args} -> ${rc}")
