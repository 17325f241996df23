# Every path-taking function given a named pipe, a folder, /dev/zero,
# /dev/null and a link to a pipe: a clear QIAO_ERR_IO naming what the path
# is, never a hang (each call runs in a child under an alarm).
qiao_test(NAME test_special_files SOURCES unit/test_special_files.c
  CASES media_files model_and_tokenizer_files embedding_files dataset_manifest
  LABELS unit io TIMEOUT 120)
target_link_libraries(test_special_files PRIVATE qiao_datasets)
