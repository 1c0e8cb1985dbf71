// The subcommands of build/sprec; each lists its arguments in a table for cli_parse.
#ifndef SPREC_COMMANDS_H
#define SPREC_COMMANDS_H

#include <stdint.h>
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

// ---- a command's arguments (cli.c) ----
// Each command lists its arguments in a table (ARG_* rows, then ARG_END) and hands argv to
// cli_parse once: every value lands where its row says, or the command ends
// with one line "sprec CMD: ..." and exit 1 (an unknown flag, a value missing
// or malformed or out of range, a flag given twice, a stray argument, a
// required one missing). A value is "--flag V" or "--flag=V"; a value flag takes
// the next argument whatever it starts with ("--eos-id -1"). A variable keeps
// its initial value, the default, when its flag is not given.
typedef enum {
    CLI_SWITCH,     // no value: *(int *)to = 1
    CLI_STR,        // *(const char **)to = the value
    CLI_PATH,       // as CLI_STR, never empty
    CLI_INT,        // *(int *)to, a whole number in [lo, hi]
    CLI_U64,        // *(uint64_t *)to, a whole number in [lo, hi] (seeds)
    CLI_DOUBLE,     // *(double *)to, a number in [lo, hi]
    CLI_FRACTION,   // *(double *)to, a number in (0, 1]
    CLI_OPERAND,    // the one argument that is not a flag: *(const char **)to
} CliKind;

typedef struct {
    const char *name;   // the flag as the usage writes it ("--steps", "-o OUT.h5"); an operand's name ("CONFIG.ini")
    CliKind kind;
    void *to;
    double lo, hi;      // CLI_INT, CLI_U64, CLI_DOUBLE: the accepted range (whole bounds, |bound| <= 2^62)
    int required;
} CliFlag;
#define CLI_BIG (1 << 30)   // hi of a whole number with no bound of its own ("a positive integer")
enum { CLI_OPTIONAL, CLI_REQUIRED };

// The rows of a table; each checks its variable's type against its kind.
#define CLI_TO(T, p) (1 ? (p) : (T *)0)
#define ARG_OPERAND(name, p)          {name, CLI_OPERAND, CLI_TO(const char *, p), 0, 0, CLI_REQUIRED}
#define ARG_SWITCH(name, p)           {name, CLI_SWITCH, CLI_TO(int, p), 0, 0, CLI_OPTIONAL}
#define ARG_STR(name, p)              {name, CLI_STR, CLI_TO(const char *, p), 0, 0, CLI_OPTIONAL}
#define ARG_PATH(name, p, required)   {name, CLI_PATH, CLI_TO(const char *, p), 0, 0, required}
#define ARG_INT(name, p, lo, hi)      {name, CLI_INT, CLI_TO(int, p), lo, hi, CLI_OPTIONAL}
#define ARG_U64(name, p, lo, hi)      {name, CLI_U64, CLI_TO(uint64_t, p), lo, hi, CLI_OPTIONAL}
#define ARG_DOUBLE(name, p, lo, hi)   {name, CLI_DOUBLE, CLI_TO(double, p), lo, hi, CLI_OPTIONAL}
#define ARG_FRACTION(name, p)         {name, CLI_FRACTION, CLI_TO(double, p), 0, 1, CLI_OPTIONAL}
#define ARG_END                       {NULL, CLI_SWITCH, NULL, 0, 0, CLI_OPTIONAL}

void cli_parse(const char *cmd, int argc, char **argv, const CliFlag *flags);
// 1 when an argument is "--help" (checked first: the command prints its usage).
int cli_wants_help(int argc, char **argv);
// cli_parse for the commands that read a config, then the config: the table's
// operand (required) is CONFIG.ini; "--section.key=value" arguments override
// its keys (io/config.h, in order), then the table's "--device" row, if any,
// sets run.device; the result is validated.
void cli_load_config(Config *cfg, const char *cmd, int argc, char **argv, const CliFlag *flags);

#endif
