# Installs the build tree into a scratch prefix, then builds and runs a tiny
# consumer against it twice: with find_package(qiao) and with pkg-config.
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
set(PREFIX ${WORK_DIR}/prefix)

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
endfunction()

run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${PREFIX})
foreach(f include/qiao.h lib/libqiao.so lib/libqiao.a lib/pkgconfig/qiao.pc lib/cmake/qiao/qiaoConfig.cmake)
  if(NOT EXISTS ${PREFIX}/${f})
    message(FATAL_ERROR "install is missing ${f}")
  endif()
endforeach()

# CMake package.
run(${CMAKE_COMMAND} -S ${SRC_DIR}/consumer -B ${WORK_DIR}/cmake-build -DCMAKE_PREFIX_PATH=${PREFIX}
    -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/cmake-build)
run(${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${PREFIX}/lib ${WORK_DIR}/cmake-build/consumer)

# pkg-config.
execute_process(COMMAND ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${PREFIX}/lib/pkgconfig
                pkg-config --cflags --libs qiao
                OUTPUT_VARIABLE flags OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config cannot find qiao")
endif()
separate_arguments(flags UNIX_COMMAND "${flags}")
run(${CC} -std=c99 -Wall -Werror ${SRC_DIR}/consumer/consumer.c -o ${WORK_DIR}/consumer-pc ${flags})
run(${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${PREFIX}/lib ${WORK_DIR}/consumer-pc)
# The newcomer example (docs/examples), built both ways its README gives,
# and run on a model when one is passed (the test model of tests/embed_cli.cmake).
if(EXAMPLES_DIR)
  run(${CMAKE_COMMAND} -S ${EXAMPLES_DIR} -B ${WORK_DIR}/examples-build -DCMAKE_PREFIX_PATH=${PREFIX}
      -DCMAKE_BUILD_TYPE=Release)
  run(${CMAKE_COMMAND} --build ${WORK_DIR}/examples-build)
  run(${CC} -std=c99 -pedantic -Wall -Wextra -Werror ${EXAMPLES_DIR}/embed.c -o ${WORK_DIR}/embed-pc ${flags})
  if(EXAMPLE_MODEL)
    foreach(exe ${WORK_DIR}/examples-build/embed ${WORK_DIR}/embed-pc)
      execute_process(COMMAND ${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${PREFIX}/lib
                      ${exe} ${EXAMPLE_MODEL} "一只猫在沙发上睡觉" ${EXAMPLE_IMAGE}
                      RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
      if(NOT rc EQUAL 0 OR NOT out MATCHES "cosine\\(text, image\\) = -?[01]\\.[0-9][0-9][0-9][0-9]")
        message(FATAL_ERROR "example ${exe} failed (${rc}):\n${out}\n${err}")
      endif()
      message(STATUS "example: ${out}")
    endforeach()
  endif()
endif()
message(STATUS "installed package works with find_package and pkg-config")
