// The subcommands of build/sprec; each parses its own arguments.
#ifndef SPREC_COMMANDS_H
#define SPREC_COMMANDS_H

#include "io/config.h"

int cmd_init(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_dump(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_toydata(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_prepare(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_embed(int argc, char **argv);

// Shared by the commands that read a config: loads CONFIG (first non-flag
// argument) and applies --section.key=value overrides. Flags the command
// handles itself are left in place; any other "--x" is an error.
// known_flags: NULL-terminated; a name ending in '=' takes a value.
void cli_load_config(Config *cfg, int argc, char **argv, const char *cmd,
                     const char *const *known_flags, char **config_path);
const char *cli_flag_value(int argc, char **argv, const char *flag);   // "--flag V" or "--flag=V"
int cli_has_flag(int argc, char **argv, const char *flag);

#endif
