# The CPU kernels' thread pool (sdk/backend/cpu/threads.c): coverage and
# libgomp's static partition, nesting, many callers at once, worker teardown
# at thread exit, the serial fallback, a fork's child, and kernels' bits
# for 1-4 threads.
# Linked with OpenMP only to compare the partition with libgomp's own.
qiao_test(NAME test_threads SOURCES unit/test_threads.c
  CASES each_index_once_static serial_when_asked every_part_once nested_runs_serially kernels_match_serial
        concurrent_callers workers_joined_at_thread_exit creation_failure_runs_serially
        fork_child_runs_regions
  LABELS core)
target_link_libraries(test_threads PRIVATE OpenMP::OpenMP_C)
