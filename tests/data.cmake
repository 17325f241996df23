# The shapes manifest reader and the training loader (models/data/data.c):
# manifest fields and signatures, malformed lines, batch determinism, epoch
# coverage, row contents, the threaded loader's order, stop and errors. Each
# case generates 24 scenes with spoken long captions (espeak-ng, ~2 s).
qiao_test(NAME test_data SOURCES unit/test_data.c
  CASES manifest malformed batch_determinism epoch_cover batch_content loader_order loader_stop missing_file
  LABELS data TIMEOUT 120)
target_link_libraries(test_data PRIVATE qiao_datasets)
