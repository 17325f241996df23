# Visual question answering (models/vqa.c): the fusion config section and
# fused heads, a tiny three-tower VQA model gradient-checked end to end
# (heads, fuser, towers), frozen towers, absent inputs, save and load.
qiao_test(NAME test_vqa SOURCES unit/test_vqa.c
  CASES config gradients absent_and_save unsupported
  LABELS model TIMEOUT 120)
