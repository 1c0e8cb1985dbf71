// sprec embed --model ENC.h5 [--ids] [--device cpu] [--threads N]
// Lines of text in (stdin), one JSON array of floats out per line: the sentence
// encoder's mean-pooled embedding (docs/eval.md "The sentence encoder"). With
// --ids each line is already the encoder's token ids ([CLS] ... [SEP]).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "commands.h"
#include "io/encoder/encoder_file.h"
#include "model/device.h"
#include "base/progress.h"
#include "kernels/errors.h"

#define EMBED_CHUNK 4096   // lines embedded per round (memory stays bounded on a long stream)

// "101 2023 102" -> ids; a one-line error for anything else.
static int parse_ids(const char *line, long lineno, int **ids) {
    int n = 0, cap = 16;
    *ids = xmalloc((size_t)cap * sizeof(int));
    for (const char *s = line;;) {
        char *e;
        while (*s == ' ' || *s == '\t' || *s == '\r') s++;
        if (!*s) break;
        const long v = strtol(s, &e, 10);
        if (e == s || v < 0 || v > 1L << 30) fail("stdin line %ld: '%s' is not a token id", lineno, s);
        if (n == cap) {
            *ids = realloc(*ids, (size_t)(cap *= 2) * sizeof(int));
            if (!*ids) fail("out of memory");
        }
        (*ids)[n++] = (int)v;
        s = e;
    }
    if (n == 0) fail("stdin line %ld: no token ids (an embedding needs at least [CLS] [SEP])", lineno);
    return n;
}

static void embed_chunk(Encoder *e, char **lines, int n, int ids_mode, long first_line, float *out) {
    int **ids = xmalloc((size_t)n * sizeof(int *)), *lens = xmalloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++)
        lens[i] = ids_mode ? parse_ids(lines[i], first_line + i, &ids[i])
                           : encoder_tokenize(e, lines[i], strlen(lines[i]), &ids[i]);
    encoder_embed_ids(e, (const int *const *)ids, lens, n, out);
    for (int i = 0; i < n; i++) free(ids[i]);
    free(ids); free(lens);
}

int cmd_embed(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        printf("usage: sprec embed --model ENC.h5 [--ids] [--device cpu] [--threads N]\n"
               "Reads lines on stdin and prints one JSON array of floats (%%.9g) per line: the sentence\n"
               "encoder's embedding (mean over the [CLS] ... [SEP] tokens of the last hidden state, no\n"
               "normalisation). ENC.h5 comes from sprec import (a sentence-encoder ONNX file or BERT folder).\n"
               "--ids: each line holds the token ids themselves. The time per 1,000 lines goes to stderr.\n");
        return 0;
    }
    const char *path = NULL, *dev = "cpu";
    int ids_mode = 0, threads = 0;   // 0: OpenMP's default
    const CliFlag flags[] = {ARG_PATH("--model ENC.h5", &path, CLI_REQUIRED), ARG_SWITCH("--ids", &ids_mode),
                             ARG_STR("--device", &dev), ARG_INT("--threads", &threads, 1, 4096), ARG_END};
    cli_parse("embed", argc, argv, flags);
    Encoder e;
    encoder_load(path, &e);
    encoder_to_device(&e, device_open(dev, threads));
    const int C = e.cfg.dim;
    char **lines = xmalloc(EMBED_CHUNK * sizeof(char *));
    float *out = xmalloc((size_t)EMBED_CHUNK * C * sizeof(float));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    int n = 0;
    double t_embed = 0.0;
    for (int done = 0; !done;) {
        done = (len = getline(&line, &cap, stdin)) < 0;
        if (!done) {
            lineno++;
            if (len > 0 && line[len - 1] == '\n') line[--len] = 0;
            if (!(lines[n++] = strdup(line))) fail("out of memory");
        }
        if (n == EMBED_CHUNK || (done && n)) {
            const double t0 = now_seconds();
            embed_chunk(&e, lines, n, ids_mode, lineno - n + 1, out);
            t_embed += now_seconds() - t0;
            for (int i = 0; i < n; i++) {
                putchar('[');
                for (int c = 0; c < C; c++) printf(c ? ", %.9g" : "%.9g", out[(size_t)i * C + c]);
                puts("]");
                free(lines[i]);
            }
            n = 0;
        }
    }
    free(line); free(lines); free(out);
    if (fflush(stdout) != 0 || ferror(stdout)) fail("cannot write to stdout");
    if (lineno)
        fprintf(stderr, "embed: %ld lines in %.2f s (%.1f ms per 1,000 lines, %s)\n", lineno, t_embed,
                1e6 * t_embed / (double)lineno, e.be->name);
    encoder_free(&e);
    return 0;
}
