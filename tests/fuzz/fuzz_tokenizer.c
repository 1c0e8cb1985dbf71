// tokenizer.json (Hugging Face): build a tokenizer from the input, then encode and decode a fixed text with it.
#include <stdlib.h>
#include "fuzz.h"
#include "tokenizer/tokenizer.h"

static void run(const char *path, const uint8_t *data, size_t size) {
    (void)path;
    Tokenizer *t = tokenizer_from_json((const char *)data, size, NULL, 0, "fuzz tokenizer.json");
    static const char text[] = "Hello world! <|endoftext|> caf\xc3\xa9 \xff\xfe 12345";
    int *ids = NULL;
    const int n = tokenizer_encode(t, text, sizeof text - 1, 1, &ids);
    free(tokenizer_decode(t, ids, n, 0, NULL));
    free(ids);
    tokenizer_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_run(data, size, run);
    return 0;
}
