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
message(STATUS "installed package works with find_package and pkg-config")
