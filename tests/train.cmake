# Contrastive training (models/train/train.c) on 16 generated scenes with spoken
# long captions and the tiny config: exact resume, thread independence, a
# learning check and error handling; frozen towers; a warm restart of the
# schedule; clips run in chunks of similar length
# give the whole batch's embeddings and gradients.
qiao_test(NAME test_train SOURCES unit/test_train.c
  CASES resume_exact threads learns errors freeze restart chunks LABELS train TIMEOUT 300)
target_link_libraries(test_train PRIVATE qiao_datasets)
# The trainer (models/train/trainer.c) with a second objective, a linear
# probe on a frozen encoder: it learns, a stopped run resumes to the same
# bits, the CSV has the objective's columns and plots (apps/qiao/plot.c,
# compiled in; cairo comes with qiao_datasets), frozen tensors stay, bad
# configs and checkpoints are clear errors.
qiao_test(NAME test_trainer SOURCES unit/test_trainer.c ../apps/qiao/plot.c
  CASES learns resume_exact csv frozen errors LABELS train TIMEOUT 120)
target_link_libraries(test_trainer PRIVATE qiao_datasets)
