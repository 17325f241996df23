/* qiao dataset <shapes|intent|corpus|fsdd> ...: the data generators and
 * converters in datasets/. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* Each generator's command lives in its own file (cmd_dataset_shapes.c,
 * cmd_dataset_intent.c). */
int cmd_dataset_shapes(int argc, char **argv);
int cmd_dataset_intent(int argc, char **argv);
int cmd_dataset_corpus(int argc, char **argv);
int cmd_dataset_fsdd(int argc, char **argv);

int cmd_dataset(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "shapes")) return cmd_dataset_shapes(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "intent")) return cmd_dataset_intent(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "corpus")) return cmd_dataset_corpus(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "fsdd")) return cmd_dataset_fsdd(argc - 1, argv + 1);
    fprintf(stderr,
            "usage: qiao dataset shapes --n N --seed S --out DIR [--speech | --speech-long | --speech-questions]\n"
            "                           [--langs zh,en] [--size 64]\n"
            "                           [--split train|val|test|cogent] [--jobs J]\n"
            "       qiao dataset intent ...   (qiao dataset intent --help)\n"
            "       qiao dataset corpus --out CORPUS.txt (SHAPES_DIR | FILE.jsonl)...   (tokenizer corpus)\n"
            "       qiao dataset fsdd --src FSDD_DIR --out DIR [--holdout-speaker NAME|none]   (spoken digits)\n");
    return 2;
}
