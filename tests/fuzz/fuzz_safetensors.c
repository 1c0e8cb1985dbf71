// safetensors: open the input and convert every (not too large) tensor of a supported dtype to fp32 (what an
// import does; an unsupported dtype is the caller's error to report).
#include <stdlib.h>
#include "fuzz.h"
#include "io/safetensors.h"

static void run(const char *path, const uint8_t *data, size_t size) {
    (void)data; (void)size;
    SafeTensors st;
    st_open(&st, path);
    for (int i = 0; i < st.n; i++) {
        if (st.t[i].dtype != ST_F32 && st.t[i].dtype != ST_F16 && st.t[i].dtype != ST_BF16) continue;
        size_t numel = 1;
        for (int r = 0; r < st.t[i].rank; r++) numel *= (size_t)st.t[i].shape[r];
        if (numel > (1u << 20)) continue;   // (memory, not parsing)
        float *dst = malloc(numel ? numel * sizeof *dst : 1);
        st_to_f32(&st.t[i], dst);
        free(dst);
    }
    st_close(&st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_run(data, size, run);
    return 0;
}
