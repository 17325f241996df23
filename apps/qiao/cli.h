/* apps/qiao/cli.h - subcommands of the qiao command. Each returns the
 * process exit code: 0 on success, 1 on failure (message on stderr),
 * 2 on a usage error. */
#ifndef QIAO_CLI_H
#define QIAO_CLI_H

#include <qiao.h>

int cmd_info(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_selfcheck(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_image(int argc, char **argv);
int cmd_mel(int argc, char **argv);
int cmd_dataset(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_search(int argc, char **argv);

/* Prints "qiao: <status>: <detail>" to stderr and returns 1. */
int cli_fail(qiao_status st);

#endif
