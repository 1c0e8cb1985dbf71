// sprec tokenize --model CKPT.h5|tokenizer.json|vocab.txt|FILE.gguf [--decode] [--special] [--skip-special]
// One line of text in, one line of space-separated ids out (DESIGN.md); with
// --decode, one line of ids in, the text out.
#include <stdio.h>
#include <string.h>
#include "commands.h"
#include "io/checkpoint.h"
#include "model/device.h"
#include "io/gguf.h"
#include "base/fileio.h"
#include "tokenizer/tokenizer.h"
#include "kernels/errors.h"

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}


// tokenizer.json or a BERT vocab.txt, with tokenizer_config.json from the same folder when there is one
static Tokenizer *load(const char *path) {
    size_t len = 0, clen = 0;
    char *json = NULL, *cfg = NULL;
    if (ends_with(path, ".gguf")) {
        Gguf g;   // gguf.c rebuilds tokenizer.json / tokenizer_config.json from tokenizer.ggml.*
        gguf_open(&g, path);
        json = gguf_tokenizer_json_of(&g, &len);
        cfg = gguf_tokenizer_config_json_of(&g, &clen);
        gguf_close(&g);
    } else if (ends_with(path, ".h5")) {
        ModelConfig mc;
        checkpoint_read_config(path, &mc);
        Model m;
        model_create(&m, &mc, backend_select("cpu"));
        checkpoint_load(path, &m, NULL, NULL);
        if (!m.tokenizer_json) fail("%s has no tokenizer", path);
        json = xmalloc(m.tokenizer_json_len + 1);
        memcpy(json, m.tokenizer_json, m.tokenizer_json_len);
        len = m.tokenizer_json_len;
        if (m.tokenizer_config_json) {
            cfg = xmalloc(m.tokenizer_config_json_len + 1);
            memcpy(cfg, m.tokenizer_config_json, m.tokenizer_config_json_len);
            clen = m.tokenizer_config_json_len;
        }
        model_free(&m);
    } else {
        json = read_file_text(path, &len);
        char dir[4096];
        const char *slash = strrchr(path, '/');
        snprintf(dir, sizeof dir, "%.*stokenizer_config.json", slash ? (int)(slash - path + 1) : 0, path);
        cfg = read_file_text_if_exists(dir, &clen);
        if (ends_with(path, ".txt")) {   // vocab.txt: the tokenizer.json transformers would make of it
            char *vj = tokenizer_json_from_vocab_txt(json, len, cfg, clen, path, &len);
            free(json);
            json = vj;
        }
    }
    Tokenizer *t = tokenizer_from_json(json, len, cfg, clen, path);
    free(json);
    free(cfg);
    return t;
}

int cmd_tokenize(int argc, char **argv) {
    if (cli_has_flag(argc, argv, "--help")) {
        printf("usage: sprec tokenize --model CKPT.h5|tokenizer.json|vocab.txt|FILE.gguf [--special] [--decode [--skip-special]]\n"
               "Reads lines on stdin. Encode: prints one line of space-separated token ids per line\n"
               "(--special: add BOS/EOS as the tokenizer's post-processor or tokenizer_config.json says;\n"
               "special tokens written in the text are always recognised). --decode: reads lines of ids\n"
               "and prints the text (--skip-special drops special tokens).\n");
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--model")) i++;
        else if (strncmp(a, "--model=", 8) && strcmp(a, "--decode") && strcmp(a, "--special") && strcmp(a, "--skip-special"))
            fail("sprec tokenize: unknown argument '%s' (see sprec tokenize --help)", a);
    }
    const char *path = cli_flag_value(argc, argv, "--model");
    if (!path) fail("sprec tokenize: needs --model CKPT.h5|tokenizer.json|vocab.txt|FILE.gguf");
    const int decode = cli_has_flag(argc, argv, "--decode"), special = cli_has_flag(argc, argv, "--special");
    const int skip = cli_has_flag(argc, argv, "--skip-special");
    Tokenizer *t = load(path);
    static char obuf[1 << 16];
    setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int *ids = NULL, idcap = 0;
    long lineno = 0;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        if (n > 0 && line[n - 1] == '\n') line[--n] = 0;
        if (decode) {
            int k = 0;
            for (char *s = line, *e;; s = e) {
                while (*s == ' ' || *s == '\t' || *s == '\r') s++;
                if (!*s) break;
                long v = strtol(s, &e, 10);
                if (e == s || v < 0 || v > 1L << 30) fail("stdin line %ld: '%s' is not a token id", lineno, s);
                if (v >= tokenizer_vocab_size(t))
                    fail("stdin line %ld: token id %ld is outside the vocabulary (size %d)", lineno, v, tokenizer_vocab_size(t));
                if (k == idcap) ids = realloc(ids, (size_t)(idcap = idcap ? 2 * idcap : 256) * sizeof(int));
                if (!ids) fail("out of memory");
                ids[k++] = (int)v;
            }
            size_t len;
            char *text = tokenizer_decode(t, ids, k, skip, &len);
            fwrite(text, 1, len, stdout);
            putchar('\n');
            free(text);
        } else {
            int *out, k = tokenizer_encode(t, line, (size_t)n, special, &out);
            for (int i = 0; i < k; i++) printf(i ? " %d" : "%d", out[i]);
            putchar('\n');
            free(out);
        }
    }
    free(line);
    free(ids);
    tokenizer_free(t);
    if (fflush(stdout) != 0) fail("cannot write to stdout");
    return 0;
}
