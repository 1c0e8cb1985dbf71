// The backend registry (kernels/backend.h, kernels/registry.c): every name
// resolves to its backend or fails with its one-line message, the config
// accepts exactly the registry's names, and what each CPU backend supports.
#include <stdio.h>
#include <string.h>
#include "tests.h"
#include "io/config.h"
#include "kernels/backend.h"

// In a forked child (a failing lookup exits): "NAME\n" on stderr when found.
static void select_child(void *name) { fprintf(stderr, "%s\n", backend_select((const char *)name)->name); }

static void test_registry_every_name(void **state) {
    (void)state;
    char err[4096], want[128];
    assert_int_equal(N_BACKENDS, 4);
    for (int i = 0; i < N_BACKENDS; i++) {
        const BackendEntry *e = &BACKENDS[i];
        for (int j = 0; j < i; j++) assert_string_not_equal(e->name, BACKENDS[j].name);
        assert_true(e->get && e->about && *e->about && !strchr(e->about, '\n'));
        const int rc = run_forked(select_child, (void *)e->name, err, sizeof err);
        if (strcmp(e->name, "cuda") == 0 && rc != 0) {
            // built without nvcc (kernels/cpu/no_cuda.c), or no GPU here: one line saying so
            assert_int_equal(rc, 1);
            const int without = strcmp(err, "sprec: error: device 'cuda' is not available: this sprec was built "
                                             "without the CUDA backend (nvcc was not found when it was built)\n") == 0;
            const int no_gpu = strncmp(err, "sprec: error: device 'cuda': no usable GPU (", 44) == 0 &&
                               strchr(err, '\n') == err + strlen(err) - 1;
            if (!without && !no_gpu) print_message("cuda: %s", err);
            assert_true(without || no_gpu);
            if (without) assert_null(e->get());   // the stand-in; (a real one would exit here without a GPU)
            continue;
        }
        snprintf(want, sizeof want, "%s\n", e->name);
        assert_int_equal(rc, 0);
        assert_string_equal(err, want);
    }
}

static void test_registry_unknown(void **state) {
    (void)state;
    char err[4096];
    const char *bad[] = {"tpu", "", "CPU", "cpu ", "cuda0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char want[256];
        snprintf(want, sizeof want, "sprec: error: unknown device '%s' (expected cpu, cpu-checked, cpu-bf16 or cuda)\n",
                 bad[i]);
        assert_int_equal(run_forked(select_child, (void *)bad[i], err, sizeof err), 1);
        assert_string_equal(err, want);
    }
}

// [run] device takes exactly the registry's names, listed in the same order.
static void test_registry_config_names(void **state) {
    (void)state;
    char names[256] = "", *help = NULL, arg[64];
    size_t len = 0;
    for (int i = 0; i < N_BACKENDS; i++) {
        strcat(names, i ? "|" : "(");
        strcat(names, BACKENDS[i].name);
        Config c;
        config_defaults(&c);
        snprintf(arg, sizeof arg, "run.device=%s", BACKENDS[i].name);
        assert_int_equal(config_override(&c, arg), 1);
        assert_string_equal(c.run.device, BACKENDS[i].name);
    }
    strcat(names, ")");
    FILE *f = open_memstream(&help, &len);
    config_print_help(f);
    fclose(f);
    const char *line = strstr(help, "[run] device = ");
    assert_non_null(line);
    const char *end = strchr(line, '\n');
    const char *found = strstr(line, names);
    if (!found || found > end) print_message("config help: %.*s\nregistry: %s\n", (int)(end - line), line, names);
    assert_true(found && found < end);
    free(help);
}

static void test_registry_cpu_capabilities(void **state) {
    (void)state;
    const char *cpus[] = {"cpu", "cpu-checked", "cpu-bf16"};
    for (int i = 0; i < 3; i++) {
        const Backend *be = backend_select(cpus[i]);
        assert_string_equal(be->name, cpus[i]);
        assert_true(backend_supports(be, BACKEND_KV_DECODE));
        assert_true(backend_supports(be, BACKEND_DEVICE_PICK));
        assert_false(backend_supports(be, BACKEND_MEM_STATS));   // host memory: the process RSS is the measure
    }
    assert_int_equal(backend_select("cpu")->act_bytes, 4);
    assert_int_equal(backend_select("cpu-checked")->act_bytes, 4);
    assert_int_equal(backend_select("cpu-bf16")->act_bytes, 2);
}

// A backend without a group supports nothing of it; one with part of a group is a bug (internal error, exit 2).
static void half_kv_child(void *arg) {
    (void)arg;
    Backend be = *backend_cpu();
    be.name = "half";
    be.kv_gather = NULL;
    backend_supports(&be, BACKEND_KV_DECODE);
}

static void test_registry_partial_group(void **state) {
    (void)state;
    Backend none = *backend_cpu();
    none.kv_alloc = NULL; none.rope_at_fwd = NULL; none.kv_write = NULL; none.attention_cached_fwd = NULL;
    none.kv_gather = NULL; none.gather_rows = NULL; none.logits_lse_topk = NULL; none.gather_cols = NULL;
    assert_false(backend_supports(&none, BACKEND_KV_DECODE));
    assert_false(backend_supports(&none, BACKEND_DEVICE_PICK));
    char err[4096];
    assert_int_equal(run_forked(half_kv_child, NULL, err, sizeof err), 2);
    assert_non_null(strstr(err, "backend 'half' has 5 of the 6 KV-cache decoding ops"));
}

DEFINE_TEST_GROUP(test_registry, cmocka_unit_test(test_registry_every_name), cmocka_unit_test(test_registry_unknown),
                  cmocka_unit_test(test_registry_config_names), cmocka_unit_test(test_registry_cpu_capabilities),
                  cmocka_unit_test(test_registry_partial_group))
