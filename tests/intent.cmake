# Intent corpora: the converters on the real corpora in /work/shared/datasets
# (counts against their SOURCE.txt, every span text[start:end] == value), the
# hand-written e-commerce set, and malformed inputs that must name file:line.
qiao_test(NAME test_intent SOURCES unit/test_intent.c
  CASES clinc150 banking77 xsid crosswoz ecommerce bad_input
  LABELS intent TIMEOUT 60)
target_link_libraries(test_intent PRIVATE qiao_datasets)
