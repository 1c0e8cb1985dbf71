// The commands' argument parser: one walk over argv against the command's
// table of flags (commands.h), and the config loading of the commands that
// take a CONFIG.ini.
#include <limits.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "commands.h"
#include "kernels/errors.h"

// The flag itself: a row's name up to the first space ("-o OUT.h5" -> "-o").
static size_t flag_len(const char *name) { return strcspn(name, " "); }

static const CliFlag *find_flag(const CliFlag *flags, const char *a, size_t len) {
    for (const CliFlag *f = flags; f->name; f++)
        if (f->kind != CLI_OPERAND && flag_len(f->name) == len && !strncmp(f->name, a, len)) return f;
    return NULL;
}

// "--section.key=value": a config override (the dot before the '=').
static int is_override(const char *a) {
    const char *eq = strchr(a, '='), *dot = strchr(a, '.');
    return !strncmp(a, "--", 2) && eq && dot && dot < eq;
}

// "must be ..., got 'v'" for a whole number outside [lo, hi]; hi >= CLI_BIG reads "no upper bound"
// unless v is above it.
static void bad_int(const char *cmd, const CliFlag *f, const char *v, int above) {
    const int n = (int)flag_len(f->name);
    if (f->hi < CLI_BIG)
        fail("sprec %s: %.*s must be an integer in [%.0f, %.0f], got '%s'", cmd, n, f->name, f->lo, f->hi, v);
    if (above) fail("sprec %s: %.*s must be at most %.0f, got '%s'", cmd, n, f->name, f->hi, v);
    if (f->lo == 1) fail("sprec %s: %.*s must be a positive integer, got '%s'", cmd, n, f->name, v);
    fail("sprec %s: %.*s must be an integer >= %.0f, got '%s'", cmd, n, f->name, f->lo, v);
}

static long long parse_int(const char *cmd, const CliFlag *f, const char *v) {
    char *end;
    const long long x = strtoll(v, &end, 10);   // out of range: LLONG_MIN / LLONG_MAX, refused below
    // the bounds are whole numbers a double holds exactly (|bound| <= 2^62), so the comparison is exact
    if (!*v || *end || x < (long long)f->lo) bad_int(cmd, f, v, 0);
    if (x > (long long)f->hi) bad_int(cmd, f, v, 1);
    return x;
}

static double parse_double(const char *cmd, const CliFlag *f, const char *v) {
    char *end;
    const double x = strtod(v, &end);   // out of range: +-HUGE_VAL, refused by the bounds
    const int n = (int)flag_len(f->name);
    if (f->kind == CLI_FRACTION) {
        if (!*v || *end || !(x > 0 && x <= 1)) fail("sprec %s: %.*s must be in (0, 1], got '%s'", cmd, n, f->name, v);
    } else if (!*v || *end || !(x >= f->lo && x <= f->hi)) {
        fail("sprec %s: %.*s must be a number in [%g, %g], got '%s'", cmd, n, f->name, f->lo, f->hi, v);
    }
    return x;
}

static void store(const char *cmd, const CliFlag *f, const char *v) {
    switch (f->kind) {
    case CLI_PATH:
        if (!*v) fail("sprec %s: %.*s is empty (it names a file)", cmd, (int)flag_len(f->name), f->name);
        // fall through
    case CLI_STR: *(const char **)f->to = v; break;
    case CLI_INT: *(int *)f->to = (int)parse_int(cmd, f, v); break;
    case CLI_U64: *(uint64_t *)f->to = (uint64_t)parse_int(cmd, f, v); break;
    case CLI_DOUBLE:
    case CLI_FRACTION: *(double *)f->to = parse_double(cmd, f, v); break;
    case CLI_SWITCH:
    case CLI_OPERAND: check(0, "store: %s takes no value", f->name);
    }
}

// The walk; override[i] = 1 marks argv[i] as a config override (NULL: the command takes none).
static void parse(const char *cmd, int argc, char **argv, const CliFlag *flags, unsigned char *override) {
    const CliFlag *operand = NULL;
    int n_flags = 0;
    for (const CliFlag *f = flags; f->name; f++, n_flags++) if (f->kind == CLI_OPERAND) operand = f;
    check(n_flags <= 64, "cli: %s has more than 64 flags", cmd);
    unsigned char seen[64] = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') {
            if (!operand) fail("sprec %s: unexpected argument '%s' (see sprec %s --help)", cmd, a, cmd);
            const char **to = operand->to;
            if (seen[operand - flags])
                fail("sprec %s: unexpected argument '%s' (%s is '%s')", cmd, a, operand->name, *to);
            seen[operand - flags] = 1;
            *to = a;
            continue;
        }
        if (override && is_override(a)) { override[i] = 1; continue; }
        const size_t len = strcspn(a, "=");
        const CliFlag *f = find_flag(flags, a, len);
        if (!f && override && strchr(a, '.') && !a[len])
            fail("sprec %s: '%s': a config override takes its value after '=' (--section.key=value)", cmd, a);
        if (!f) fail("sprec %s: unknown flag '%.*s' (see sprec %s --help)", cmd, (int)len, a, cmd);
        if (seen[f - flags]++) fail("sprec %s: %.*s given twice", cmd, (int)len, a);
        if (f->kind == CLI_SWITCH) {
            if (a[len]) fail("sprec %s: %.*s takes no value", cmd, (int)len, a);
            *(int *)f->to = 1;
        } else if (a[len]) {
            store(cmd, f, a + len + 1);
        } else {   // the next argument, whatever it starts with ("--eos-id -1", "--prompt -x")
            if (i + 1 >= argc) fail("sprec %s: %s needs a value", cmd, a);
            store(cmd, f, argv[++i]);
        }
    }
    for (const CliFlag *f = flags; f->name; f++)
        if (f->required && !seen[f - flags]) fail("sprec %s: missing %s (see sprec %s --help)", cmd, f->name, cmd);
}

void cli_parse(const char *cmd, int argc, char **argv, const CliFlag *flags) { parse(cmd, argc, argv, flags, NULL); }

int cli_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++) if (!strcmp(argv[i], "--help")) return 1;
    return 0;
}

void cli_load_config(Config *cfg, const char *cmd, int argc, char **argv, const CliFlag *flags) {
    unsigned char *override = xcalloc((size_t)argc, 1);
    parse(cmd, argc, argv, flags, override);
    const char *path = NULL, *device = NULL;
    for (const CliFlag *f = flags; f->name; f++) {
        if (f->kind == CLI_OPERAND) path = *(const char **)f->to;
        if (f->kind == CLI_STR && !strcmp(f->name, "--device")) device = *(const char **)f->to;
    }
    check(path != NULL, "cli_load_config: %s's table has no required CONFIG operand", cmd);
    config_defaults(cfg);
    config_load(cfg, path);
    for (int i = 1; i < argc; i++) if (override[i]) config_override(cfg, argv[i] + 2);
    free(override);
    if (device) {   // --device X is run.device=X, after the overrides
        char kv[64];
        snprintf(kv, sizeof kv, "run.device=%.40s", device);
        config_override(cfg, kv);
    }
    config_validate(cfg, path);
}
