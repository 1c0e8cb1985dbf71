// sprec init CONFIG.ini -o CKPT.h5: a randomly initialised model.
#include <string.h>
#include "commands.h"
#include "io/checkpoint.h"
#include "model/device.h"
#include "kernels/errors.h"

int cmd_init(int argc, char **argv) {
    if (cli_has_flag(argc, argv, "--help")) {
        printf("usage: sprec init CONFIG.ini -o CKPT.h5 [--section.key=value ...]\n"
               "Writes a model with the [model] section's shape, weights drawn from\n"
               "N(0, model.init_std) with model.seed (norms 1, biases 0).\n\nconfig keys:\n");
        config_print_help(stdout);
        return 0;
    }
    static const char *const flags[] = {"-o=", "--device=", NULL};
    Config cfg;
    char *path;
    cli_load_config(&cfg, argc, argv, "init", flags, &path);
    const char *out = cli_flag_value(argc, argv, "-o");
    if (!out) fail("sprec init: missing -o CKPT.h5");
    Model m;
    model_create(&m, &cfg.model, backend_select(cfg.run.device));
    model_init_random(&m, cfg.init_seed, cfg.init_std);
    checkpoint_save(out, &m, NULL, NULL);
    printf("init: %s (%zu parameters, %d tensors)\n", out, m.numel, m.n_params);
    model_free(&m);
    return 0;
}
