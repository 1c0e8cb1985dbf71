// GGUF: open the input, read the model config and the tokenizer metadata, dequantize its smaller tensors.
#include <stdlib.h>
#include "fuzz.h"
#include "io/gguf.h"

static void run(const char *path, const uint8_t *data, size_t size) {
    (void)data; (void)size;
    Gguf g;
    gguf_open(&g, path);
    for (int i = 0; i < g.n_t; i++) {
        const GgufTensor *t = &g.t[i];
        const uint64_t numel = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        if (numel > (1u << 20)) continue;   // (memory, not parsing)
        float *dst = malloc(numel ? numel * sizeof *dst : 1);
        gguf_dequantize(&g, t, dst);
        free(dst);
    }
    size_t len;
    free(gguf_tokenizer_json_of(&g, &len));
    free(gguf_tokenizer_config_json_of(&g, &len));
    ModelConfig c;
    char arch[64];
    gguf_model_config(&g, &c, arch, sizeof arch);
    gguf_close(&g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_run(data, size, run);
    return 0;
}
