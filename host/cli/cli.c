// Argument helpers shared by the subcommands.
#include <string.h>
#include "commands.h"
#include "kernels/errors.h"

// Matches "--flag" exactly or "--flag=..." ; returns the value part or "" / NULL.
static const char *match_flag(const char *arg, const char *name) {
    size_t n = strlen(name);
    if (strncmp(arg, name, n) != 0) return NULL;
    if (arg[n] == 0) return "";
    if (arg[n] == '=') return arg + n + 1;
    return NULL;
}

const char *cli_flag_value(int argc, char **argv, const char *flag) {
    for (int i = 1; i < argc; i++) {
        const char *v = match_flag(argv[i], flag);
        if (!v) continue;
        if (*v) return v;
        if (i + 1 < argc) return argv[i + 1];
        fail("option %s needs a value", flag);
    }
    return NULL;
}

int cli_has_flag(int argc, char **argv, const char *flag) {
    for (int i = 1; i < argc; i++) if (match_flag(argv[i], flag)) return 1;
    return 0;
}

void cli_load_config(Config *cfg, int argc, char **argv, const char *cmd,
                     const char *const *known_flags, char **config_path) {
    config_defaults(cfg);
    *config_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') {
            if (*config_path) fail("sprec %s: more than one config file given ('%s' and '%s')", cmd, *config_path, a);
            *config_path = argv[i];
            continue;
        }
        int known = 0;
        for (const char *const *k = known_flags; k && *k; k++) {
            size_t n = strlen(*k);
            int takes_value = (*k)[n - 1] == '=';
            if (strncmp(a, *k, takes_value ? n - 1 : n) != 0) continue;
            const char rest = a[takes_value ? n - 1 : n];
            if (rest == 0) { known = 1; if (takes_value) i++; break; }
            if (rest == '=' ) { known = 1; break; }
        }
        if (known) continue;
        const char *eq = strchr(a, '='), *dot = strchr(a, '.');
        if (strncmp(a, "--", 2) != 0 || !eq || !dot || dot > eq) fail("sprec %s: unknown option '%s' (see sprec %s --help)", cmd, a, cmd);
    }
    if (!*config_path) fail("sprec %s: no config file given (usage: sprec %s CONFIG.ini ...)", cmd, cmd);
    config_load(cfg, *config_path);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *eq = strchr(a, '='), *dot = strchr(a, '.');
        if (strncmp(a, "--", 2) == 0 && eq && dot && dot < eq) config_override(cfg, a + 2);
    }
    const char *device = cli_flag_value(argc, argv, "--device");
    if (device) {
        char kv[64];
        snprintf(kv, sizeof kv, "run.device=%.40s", device);
        config_override(cfg, kv);
    }
    config_validate(cfg, *config_path);
}
