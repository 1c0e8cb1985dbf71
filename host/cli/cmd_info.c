// sprec info CKPT.h5
#include <string.h>
#include "commands.h"
#include "io/checkpoint.h"
#include "io/gguf.h"
#include "kernels/errors.h"

int cmd_info(int argc, char **argv) {
    if (argc != 2 || strcmp(argv[1], "--help") == 0) {
        printf("usage: sprec info CKPT.h5|FILE.gguf\nPrints the model config, tensors and training state of a checkpoint\n(or the metadata, tensor list and tensor type mix of a GGUF file).\n");
        return argc == 2 ? 0 : 2;
    }
    size_t n = strlen(argv[1]);
    if (n >= 5 && strcmp(argv[1] + n - 5, ".gguf") == 0) gguf_info(argv[1], stdout);
    else checkpoint_info(argv[1], stdout);
    return 0;
}
