/* The qiao command line: one binary, one subcommand per verb. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} command;

static int cmd_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("qiao %s (header %s)\n", qiao_version(), QIAO_VERSION_STRING);
    return 0;
}

static const command commands[] = {
    {"version", cmd_version, "print the library version"},
    {"info", cmd_info, "FILE.safetensors: list tensors, dtypes, parameter count, metadata"},
    {"demo", cmd_demo, "[--model M] [--work DIR]: index sample pictures and speech, answer typed and spoken queries"},
    {"selfcheck", cmd_selfcheck, "train the built-in sequence classifier and report held-out accuracy"},
    {"tokenizer", cmd_tokenizer, "train --input CORPUS --vocab-size N --out TOK.safetensors: train a tokenizer"},
    {"tokenize", cmd_tokenize, "--tokenizer FILE [--json] TEXT: show pieces, char ids, tags, offsets"},
    {"image", cmd_image, "FILE [--size S] [--letterbox] [--patch P] -o OUT.npy | --info FILE: decode, preprocess"},
    {"mel", cmd_mel, "FILE -o OUT.npy: log-mel features of an audio file; --info FILE: its format"},
    {"dataset", cmd_dataset, "shapes|intent: generate the synthetic world, convert intent corpora"},
    {"train", cmd_train, "--config C.json --tokenizer T --data DIR --out M.safetensors [--resume CKPT]: train; vqa; caption"},
    {"eval", cmd_eval, "retrieval|digits|vqa|caption --model M --data DIR [--json]: recall@k, accuracy, BLEU"},
    {"embed", cmd_embed, "--model M (--text T | --image F | --audio F) [-o out.npy] [--threads N]: one embedding"},
    {"search", cmd_search, "index --model M --out INDEX PATH... | query --index INDEX --text T: search"},
    {"vqa", cmd_vqa, "--model VQA --image F (--question T | --question-audio F) [--top 3] [--json]: answer"},
    {"caption", cmd_caption, "--model CAP --image F | --video F [--scenes] [--srt S]: describe a picture or a video"},
    {"intent", cmd_intent, "train --init M --data TRAIN.jsonl --out BOT | eval | predict: intent classifier"},
    {"chat", cmd_chat, "--bot BOT.yml [--store F] [--json] | --test STORIES.yml: talk to a customer-service bot"},
    {"serve", cmd_serve, "--tokens FILE [--bot BOT.yml] [--embed-model M] ...: the authenticated HTTP service"},
    {"quantize", cmd_quantize, "--model M --out M8 [--precision int8|bf16]: store GEMM weights int8 (or bf16)"},
    {"graft", cmd_graft, "--model VQA --decoder-from CAP --out M: one file that answers and writes captions"},
    {"prune-vocab", cmd_prune, "--model M --keep CORPUS... --out M2: keep the pieces CORPUS and Chinese/English use"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: qiao <command> [args]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) return cmd_version(0, NULL);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "qiao: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
