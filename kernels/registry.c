// The backend registry: every backend by name, and what each one supports.
// The host learns both only here, never by comparing names or testing op
// pointers itself.
#include <string.h>
#include "backend.h"
#include "errors.h"

const BackendEntry BACKENDS[] = {
    {"cpu", backend_cpu, "fp32 reference: OpenMP + OpenBLAS, the oracle every other backend is tested against"},
    {"cpu-checked", backend_cpu_checked,
     "the cpu ops with device buffers protected between ops: host code touching device memory stops (exit 3)"},
    {"cpu-bf16", backend_cpu_bf16, "the cpu ops with bf16 activation storage: the CUDA backend's numerics on any machine"},
    {"cuda", backend_cuda, "one NVIDIA GPU: bf16 storage, fp32 accumulation, cuBLASLt"},
};
const int N_BACKENDS = (int)(sizeof BACKENDS / sizeof BACKENDS[0]);

const Backend *backend_select(const char *name) {
    for (int i = 0; i < N_BACKENDS; i++) {
        if (strcmp(name, BACKENDS[i].name) != 0) continue;
        const Backend *be = BACKENDS[i].get();
        // only cuda can be missing: kernels/cpu/no_cuda.c stands in for it
        if (!be) fail("device '%s' is not available: this sprec was built without the CUDA backend "
                      "(nvcc was not found when it was built)", name);
        return be;
    }
    // "cpu, cpu-checked, cpu-bf16 or cuda"
    char names[256];
    size_t n = 0;
    for (int i = 0; i < N_BACKENDS && n < sizeof names; i++)
        n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", i == 0 ? "" : i + 1 < N_BACKENDS ? ", " : " or ",
                              BACKENDS[i].name);
    fail("unknown device '%s' (expected %s)", name, names);
}

// present ops / ops of the group; a group filled in part is a backend's bug
static int all_or_none(const Backend *be, const char *what, int present, int count) {
    check(present == 0 || present == count, "backend '%s' has %d of the %d %s ops", be->name, present, count, what);
    return present == count;
}

int backend_supports(const Backend *be, BackendCapability cap) {
    switch (cap) {
    case BACKEND_KV_DECODE:
        return all_or_none(be, "KV-cache decoding",
                           !!be->kv_alloc + !!be->rope_at_fwd + !!be->kv_write + !!be->attention_cached_fwd +
                           !!be->kv_gather + !!be->gather_rows, 6);
    case BACKEND_DEVICE_PICK:
        return all_or_none(be, "token-choosing", !!be->logits_lse_topk + !!be->gather_cols, 2);
    case BACKEND_MEM_STATS:
        return be->mem_stats != NULL;
    }
    check(0, "unknown backend capability %d", (int)cap);
    return 0;
}
