# Visual question answering (models/vqa.c): the fusion config section and
# fused heads, a tiny three-tower VQA model gradient-checked end to end
# (heads, fuser, towers), frozen towers, absent inputs, save and load.
qiao_test(NAME test_vqa SOURCES unit/test_vqa.c
  CASES config gradients gradients_places memo memo_fill absent_and_save unsupported
  LABELS model TIMEOUT 120)

# The public VQA API (sdk/api/vqa_api.c) on a tiny VQA model written at test
# time: typed, spoken and both, in Chinese and English; every bad input the
# issue names; four threads with a session each give the same bits.
qiao_test(NAME test_vqa_api SOURCES unit/test_vqa_api.c
  CASES ask bad_input threads
  LABELS api TIMEOUT 120)

# libFuzzer target for the question path (fuzz/fuzz_vqa_question.c): the
# API, the VQA runtime and the fuser compiled in with the fuzzer's
# instrumentation, the towers and the tokenizer linked from the library.
qiao_fuzz(NAME fuzz_vqa_question SOURCES ${PROJECT_SOURCE_DIR}/sdk/api/vqa_api.c ${PROJECT_SOURCE_DIR}/models/vqa.c
  ${PROJECT_SOURCE_DIR}/models/picture.c ${PROJECT_SOURCE_DIR}/fusion/fuser.c ${PROJECT_SOURCE_DIR}/fusion/cross.c ${PROJECT_SOURCE_DIR}/fusion/weighting.c
  LIBS qiao_static PkgConfig::CJSON LABELS api
  DEFINES QIAO_FUZZ_TOKENIZER="${CMAKE_CURRENT_SOURCE_DIR}/data/tokenizer/tok-test.safetensors"
          QIAO_FUZZ_TINY_CONFIG="${PROJECT_SOURCE_DIR}/models/configs/tiny.json")

# The VQA objective (models/answering/train.c) on a tiny model: the dense
# object loss on the picture's tokens learns and resumes, frozen towers stay
# as loaded, a model without the cell heads and bad recipe values fail.
qiao_test(NAME test_vqa_train SOURCES unit/test_vqa_train.c
  CASES cells_learn_and_resume places_learn recipes errors grows LABELS train TIMEOUT 300)
target_link_libraries(test_vqa_train PRIVATE qiao_datasets)
