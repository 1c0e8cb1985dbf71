// sprec info CKPT.h5
#include <string.h>
#include "commands.h"
#include "io/checkpoint.h"
#include "io/gguf.h"
#include "kernels/errors.h"

int cmd_info(int argc, char **argv) {
    if (argc == 1 || cli_wants_help(argc, argv)) {
        printf("usage: sprec info CKPT.h5|FILE.gguf\nPrints the model config, tensors and training state of a checkpoint\n(or the metadata, tensor list and tensor type mix of a GGUF file).\n");
        return argc == 1 ? 2 : 0;
    }
    const char *path = NULL;
    const CliFlag flags[] = {ARG_OPERAND("CKPT.h5|FILE.gguf", &path), ARG_END};
    cli_parse("info", argc, argv, flags);
    size_t n = strlen(path);
    if (n >= 5 && strcmp(path + n - 5, ".gguf") == 0) gguf_info(path, stdout);
    else checkpoint_info(path, stdout);
    return 0;
}
