// sprec info CKPT.h5
#include <string.h>
#include "commands.h"
#include "checkpoint.h"
#include "check.h"

int cmd_info(int argc, char **argv) {
    if (argc != 2 || strcmp(argv[1], "--help") == 0) {
        printf("usage: sprec info CKPT.h5\nPrints the model config, tensors and training state of a checkpoint.\n");
        return argc == 2 ? 0 : 2;
    }
    checkpoint_info(argv[1], stdout);
    return 0;
}
