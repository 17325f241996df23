# The shapes manifest reader and the training loader (models/data/data.c):
# manifest fields and signatures, malformed lines, batch determinism, epoch
# coverage, row contents, the threaded loader's order, stop and errors. Each
# case generates 24 scenes with spoken long captions (espeak-ng, ~2 s).
qiao_test(NAME test_data SOURCES unit/test_data.c
  CASES manifest malformed batch_determinism epoch_cover batch_content loader_order loader_stop missing_file
    place_groups
  LABELS data TIMEOUT 120)
target_link_libraries(test_data PRIVATE qiao_datasets)

# The VQA questions reader and loader (models/data/vqa.c, vqa_manifest.c):
# questions against the generator, determinism across threads, resume,
# absent rows through the encoders, degradations and their statistics, the
# evaluation walk, malformed manifests and missing files. Each case
# generates 5 scenes with --speech-questions (espeak-ng, ~60 WAVs).
qiao_test(NAME test_vqa_data SOURCES unit/test_vqa_data.c
  CASES manifest determinism resume absent degrade eval_cover errors cells
  LABELS data TIMEOUT 180)
target_link_libraries(test_vqa_data PRIVATE qiao_datasets)

# The loaders' ring on its own (models/data/ring.c): batches in index order
# for any thread count and prefetch, the evaluation end, the lowest failing
# index re-raised, the batch still held, stopping while workers wait.
qiao_test(NAME test_ring SOURCES unit/test_ring.c
  CASES order error held stop bad_params
  LABELS data TIMEOUT 60)
