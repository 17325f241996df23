# fusion/: the cross-modal block and the fuser (gradient checks of every
# parameter and input, masks, 1-vs-2-thread bits) and modality weighting.
qiao_test(NAME test_fusion SOURCES unit/test_fusion.c
  CASES xblock_gradcheck xblock_masks xblock_threads fuser_gradcheck_learned fuser_gradcheck_fixed
        fuser_weights fuser_threads stats places
  LABELS gradcheck)

# fusion/decoder: the caption decoder (gradient checks tied and untied, the KV
# cache against the full forward and under beam reordering, threads, bad arguments).
qiao_test(NAME test_decoder SOURCES unit/test_decoder.c
  CASES decoder_gradcheck_tied decoder_gradcheck_untied decoder_cache_matches_forward decoder_cache_reorder
        decoder_threads decoder_bad_args
  LABELS gradcheck)
