// config INI: load the input over the defaults, resolve and validate it as `sprec train` does.
#include "fuzz.h"
#include "io/config.h"

static void run(const char *path, const uint8_t *data, size_t size) {
    (void)data; (void)size;
    static Config c;   // (large)
    config_defaults(&c);
    config_load(&c, path);
    config_resolve(&c);
    config_validate(&c, path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_run(data, size, run);
    return 0;
}
