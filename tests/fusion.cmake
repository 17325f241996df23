# fusion/: the cross-modal block and the fuser (gradient checks of every
# parameter and input, masks, 1-vs-2-thread bits) and modality weighting.
qiao_test(NAME test_fusion SOURCES unit/test_fusion.c
  CASES xblock_gradcheck xblock_masks xblock_threads fuser_gradcheck_learned fuser_gradcheck_fixed
        fuser_weights fuser_threads stats
  LABELS gradcheck)
