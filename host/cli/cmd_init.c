// sprec init CONFIG.ini -o CKPT.h5: a randomly initialised model.
#include <string.h>
#include "commands.h"
#include "io/checkpoint.h"
#include "model/device.h"
#include "kernels/errors.h"

int cmd_init(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        printf("usage: sprec init CONFIG.ini -o CKPT.h5 [--section.key=value ...]\n"
               "Writes a model with the [model] section's shape, weights drawn from\n"
               "N(0, model.init_std) with model.seed (norms 1, biases 0).\n\nconfig keys:\n");
        config_print_help(stdout);
        return 0;
    }
    const char *config = NULL, *out = NULL, *device = NULL;
    const CliFlag flags[] = {ARG_OPERAND("CONFIG.ini", &config),
                             ARG_PATH("-o CKPT.h5", &out, CLI_REQUIRED), ARG_STR("--device", &device), ARG_END};
    Config cfg;
    cli_load_config(&cfg, "init", argc, argv, flags);
    Model m;
    model_create(&m, &cfg.model, backend_select(cfg.run.device));
    model_init_random(&m, cfg.init_seed, cfg.init_std);
    checkpoint_save(out, &m, NULL, NULL);
    printf("init: %s (%zu parameters, %d tensors)\n", out, m.numel, m.n_params);
    model_free(&m);
    return 0;
}
