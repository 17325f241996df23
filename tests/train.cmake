# Contrastive training (models/train/train.c) on 16 generated scenes with spoken
# long captions and the tiny config: exact resume, thread independence, a
# learning check and error handling; frozen towers; a warm restart of the
# schedule; clips run in chunks of similar length
# give the whole batch's embeddings and gradients.
qiao_test(NAME test_train SOURCES unit/test_train.c
  CASES resume_exact threads learns errors freeze restart chunks LABELS train TIMEOUT 300)
target_link_libraries(test_train PRIVATE qiao_datasets)
