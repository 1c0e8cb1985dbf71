// sprec tokenize --model CKPT.h5|tokenizer.json|vocab.txt|FILE.gguf [--decode] [--special] [--skip-special]
// One line of text in, one line of space-separated ids out (DESIGN.md); with
// --decode, one line of ids in, the text out.
#include <stdio.h>
#include <string.h>
#include "commands.h"
#include "rec/recdata.h"   // recdata_tokenizer: the one loader of a tokenizer from any file sprec reads
#include "tokenizer/tokenizer.h"
#include "kernels/errors.h"

int cmd_tokenize(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        printf("usage: sprec tokenize --model CKPT.h5|tokenizer.json|vocab.txt|FILE.gguf [--special] [--decode [--skip-special]]\n"
               "Reads lines on stdin. Encode: prints one line of space-separated token ids per line\n"
               "(--special: add BOS/EOS as the tokenizer's post-processor or tokenizer_config.json says;\n"
               "special tokens written in the text are always recognised). --decode: reads lines of ids\n"
               "and prints the text (--skip-special drops special tokens).\n");
        return 0;
    }
    const char *path = NULL;
    int decode = 0, special = 0, skip = 0;
    const CliFlag flags[] = {ARG_PATH("--model CKPT.h5|tokenizer.json|vocab.txt|FILE.gguf", &path, CLI_REQUIRED),
                             ARG_SWITCH("--decode", &decode), ARG_SWITCH("--special", &special),
                             ARG_SWITCH("--skip-special", &skip), ARG_END};
    cli_parse("tokenize", argc, argv, flags);
    Tokenizer *t = recdata_tokenizer(path);
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
