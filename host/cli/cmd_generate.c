// sprec generate --model CKPT.h5 (--prompt TEXT | --prompts FILE | --prompt-ids "1 2 3") [...]
// Text generation from a checkpoint: greedy, sampling or beam search over a
// batch of prompts with a KV cache (host/gen/generate.c). A single prompt streams
// its tokens as they come; a batch prints each sequence when it finishes, one
// line each: "INDEX<TAB>TEXT" (newlines and backslashes escaped); beams print
// "INDEX<TAB>RANK<TAB>SCORE<TAB>TEXT" for every hypothesis.
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <limits.h>
#include "commands.h"
#include "io/checkpoint.h"
#include "model/lora.h"
#include "model/device.h"
#include "gen/generate.h"
#include "tokenizer/tokenizer.h"
#include "kernels/errors.h"

static void usage(void) {
    printf("usage: sprec generate --model CKPT.h5 (--prompt TEXT | --prompts FILE | --prompt-ids \"1 2 3\")\n"
           "         [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]\n"
           "         [--beams W] [--length-alpha A] [--stop STR] [--eos-id ID] [--ids] [--no-bos]\n"
           "         [--batch-size N] [--device cpu|cpu-bf16|cuda] [--threads N]\n"
           "  --prompts FILE    one prompt per line, generated in batches of --batch-size (default 16)\n"
           "  --prompt-ids      token ids, for models without a tokenizer\n"
           "  --max-new-tokens  default 64;  --temperature 0 (default) = greedy\n"
           "  --top-k 0 / --top-p 1 = off;  --seed: same seed, same tokens\n"
           "  --beams W         beam search, prints the W best hypotheses with their scores\n"
           "                    (the sampling flags do not apply to beams)\n"
           "  --length-alpha A  beam score = log-prob / length^A (default 0)\n"
           "  --stop STR        stop when the decoded output contains STR (needs a tokenizer)\n"
           "  --eos-id ID       end-of-sequence id (default: the tokenizer's EOS)\n"
           "  --ids             print token ids instead of text;  --no-bos: do not add BOS\n");
}

// "1 2 3" -> ids (malloc'd); every id in [0, V)
static int parse_ids(const char *s, int V, int **ids) {
    int n = 0, cap = 16;
    *ids = xmalloc((size_t)cap * sizeof(int));
    for (const char *p = s;;) {
        while (*p == ' ' || *p == ',' || *p == '\t') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || (*end && *end != ' ' && *end != ',' && *end != '\t'))
            fail("sprec generate: --prompt-ids '%s' is not a list of integers", s);
        if (v < 0 || v >= V) fail("sprec generate: --prompt-ids: id %ld outside the vocabulary [0, %d)", v, V);
        if (n == cap) { cap *= 2; *ids = realloc(*ids, (size_t)cap * sizeof(int)); if (!*ids) fail("out of memory"); }
        (*ids)[n++] = (int)v;
        p = end;
    }
    if (n == 0) fail("sprec generate: --prompt-ids is empty");
    return n;
}

typedef struct {
    const Tokenizer *tok;
    int ids, stream;             // print ids; stream a single prompt
    size_t printed;              // bytes of the streamed text already printed
    int first;                   // index of the current batch's first prompt
    const char *stop;            // stop string or NULL
} Out;

static char *render(const Out *o, const int *t, int n, size_t *len) {
    if (o->ids || !o->tok) {
        size_t cap = (size_t)n * 12 + 1, k = 0;
        char *s = xmalloc(cap);
        s[0] = 0;
        for (int i = 0; i < n; i++) k += (size_t)snprintf(s + k, cap - k, i ? " %d" : "%d", t[i]);
        if (len) *len = k;
        return s;
    }
    return tokenizer_decode(o->tok, t, n, 1, len);
}

// length of s[0..n) without a trailing incomplete UTF-8 sequence
static size_t utf8_complete(const char *s, size_t n) {
    size_t i = n;
    while (i > 0 && i > n - 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) i--;
    if (i == 0) return n;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return n - (i - 1) >= want ? n : i - 1;
}

static void on_token(void *ctx, int seq, const int *gen, int n) {
    Out *o = ctx;
    (void)seq;
    if (!o->stream) return;
    size_t len;
    char *s = render(o, gen, n, &len);
    size_t upto = o->ids || !o->tok ? len : utf8_complete(s, len);
    if (upto > o->printed) { fwrite(s + o->printed, 1, upto - o->printed, stdout); o->printed = upto; fflush(stdout); }
    free(s);
}

static void print_escaped(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n') fputs("\\n", stdout);
        else if (s[i] == '\\') fputs("\\\\", stdout);
        else putchar(s[i]);
    }
}

static void on_finish(void *ctx, int seq, const GenHyp *h) {
    Out *o = ctx;
    size_t len;
    char *s = render(o, h->tokens, h->n, &len);
    if (o->stream) {
        if (len > o->printed) fwrite(s + o->printed, 1, len - o->printed, stdout);
        putchar('\n');
    } else {
        printf("%d\t", o->first + seq);
        print_escaped(s, len);
        putchar('\n');
    }
    fflush(stdout);
    free(s);
}

static int stop_string(void *ctx, int seq, const int *gen, int n) {
    Out *o = ctx;
    (void)seq;
    char *s = tokenizer_decode(o->tok, gen, n, 0, NULL);
    int hit = strstr(s, o->stop) != NULL;
    free(s);
    return hit;
}

int cmd_generate(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { usage(); return 0; }
    const char *model_path = NULL, *prompt = NULL, *prompts_file = NULL, *prompt_ids = NULL, *stop = NULL;
    const char *device = "cpu";
    int max_new = 64, top_k = 0, beams = 0, eos_flag = -1, threads = 0, batch = 16, print_ids = 0, no_bos = 0;
    double temperature = 0, top_p = 1, length_alpha = 0;
    uint64_t seed = 0;
    const CliFlag flags[] = {
        ARG_PATH("--model CKPT.h5", &model_path, CLI_REQUIRED), ARG_STR("--prompt", &prompt),
        ARG_PATH("--prompts", &prompts_file, CLI_OPTIONAL), ARG_STR("--prompt-ids", &prompt_ids),
        ARG_INT("--max-new-tokens", &max_new, 1, 1e9), ARG_DOUBLE("--temperature", &temperature, 0, 1e6),
        ARG_INT("--top-k", &top_k, 0, 1e9), ARG_FRACTION("--top-p", &top_p),
        ARG_U64("--seed", &seed, 0, 0x1p53), ARG_INT("--beams", &beams, 0, 1024),
        ARG_DOUBLE("--length-alpha", &length_alpha, 0, 100), ARG_STR("--stop", &stop),
        ARG_INT("--eos-id", &eos_flag, -1, INT_MAX), ARG_STR("--device", &device),
        ARG_INT("--threads", &threads, 0, 4096), ARG_INT("--batch-size", &batch, 1, 1 << 20),
        ARG_SWITCH("--ids", &print_ids), ARG_SWITCH("--no-bos", &no_bos), ARG_END};
    cli_parse("generate", argc, argv, flags);
    if (!!prompt + !!prompts_file + !!prompt_ids != 1)
        fail("sprec generate: give exactly one of --prompt, --prompts, --prompt-ids");
    GenOpts go;
    gen_opts_default(&go);
    go.max_new_tokens = max_new;
    go.temperature = (float)temperature;
    go.top_k = top_k;
    go.top_p = (float)top_p;
    go.seed = seed;
    go.beams = beams;
    go.length_alpha = (float)length_alpha;
    const Backend *be = device_open(device, threads);

    ModelConfig mc;
    checkpoint_read_config(model_path, &mc);
    Model m;
    model_create(&m, &mc, be);
    checkpoint_load(model_path, &m, NULL, NULL);
    if (m.lora) model_merge_lora(&m);   // once: cheaper than the adapter path at every decode step
    const int V = mc.vocab_size;
    Tokenizer *tok = NULL;
    if (m.tokenizer_json)
        tok = tokenizer_from_json(m.tokenizer_json, m.tokenizer_json_len, m.tokenizer_config_json,
                                  m.tokenizer_config_json_len, model_path);
    if (!tok && (prompt || prompts_file)) fail("%s has no tokenizer; use --prompt-ids", model_path);
    if (!tok && stop) fail("sprec generate: --stop needs a tokenizer, and %s has none", model_path);
    if (eos_flag >= V) fail("sprec generate: --eos-id %d outside the vocabulary [0, %d)", eos_flag, V);
    go.eos_id = eos_flag >= 0 ? eos_flag : tok ? tokenizer_eos_id(tok) : -1;

    // the prompts as token ids
    int B = 0, cap = 1, **ids = xmalloc(sizeof(int *)), *lens = xmalloc(sizeof(int));
    const int add_special = !no_bos;
    if (prompt_ids) {
        lens[0] = parse_ids(prompt_ids, V, &ids[0]);
        B = 1;
    } else if (prompt) {
        lens[0] = tokenizer_encode(tok, prompt, strlen(prompt), add_special, &ids[0]);
        B = 1;
    } else {
        FILE *f = fopen(prompts_file, "r");
        if (!f) fail("cannot open %s", prompts_file);
        char *line = NULL;
        size_t lcap = 0;
        ssize_t n;
        while ((n = getline(&line, &lcap, f)) >= 0) {
            while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
            if (n == 0) continue;
            if (B == cap) {
                cap *= 2;
                ids = realloc(ids, (size_t)cap * sizeof(int *)); lens = realloc(lens, (size_t)cap * sizeof(int));
                if (!ids || !lens) fail("out of memory reading %s", prompts_file);
            }
            lens[B] = tokenizer_encode(tok, line, (size_t)n, add_special, &ids[B]);
            B++;
        }
        free(line);
        fclose(f);
        if (B == 0) fail("%s: no prompts (one per line)", prompts_file);
    }
    for (int b = 0; b < B; b++) {
        if (lens[b] < 1) fail("sprec generate: prompt %d encodes to no tokens", b + 1);
        for (int i = 0; i < lens[b]; i++)
            if (ids[b][i] < 0 || ids[b][i] >= V)
                fail("sprec generate: the tokenizer gave id %d, outside the model's vocabulary [0, %d)", ids[b][i], V);
    }

    Out o = {.tok = tok, .ids = print_ids, .stream = B == 1 && go.beams == 0, .stop = stop};
    go.cb_ctx = &o;
    go.on_token = on_token;
    go.on_finish = on_finish;
    if (stop) { go.stop = stop_string; go.stop_ctx = &o; }
    // batches bound the KV cache (rows x positions x layers); each prompt's
    // random stream is keyed by its line number, so batching never changes tokens
    uint64_t *stream = xmalloc((size_t)B * sizeof(uint64_t));
    for (int b = 0; b < B; b++) stream[b] = (uint64_t)b;
    GenOutput *out = xcalloc((size_t)batch, sizeof(GenOutput));
    for (int b0 = 0; b0 < B; b0 += batch) {
        const int nb = B - b0 < batch ? B - b0 : batch;
        o.first = b0;
        go.stream_ids = stream + b0;
        generate(&m, (const int *const *)ids + b0, lens + b0, nb, &go, out);
        for (int b = 0; b < nb && go.beams > 0; b++)
            for (int j = 0; j < out[b].n; j++) {
                size_t len;
                char *s = render(&o, out[b].hyps[j].tokens, out[b].hyps[j].n, &len);
                printf("%d\t%d\t%.6f\t", b0 + b, j, out[b].hyps[j].score);
                print_escaped(s, len);
                putchar('\n');
                free(s);
            }
        fflush(stdout);
        gen_output_free(out, nb);
    }
    free(out);
    free(stream);
    for (int b = 0; b < B; b++) free(ids[b]);
    free(ids); free(lens);
    if (tok) tokenizer_free(tok);
    model_free(&m);
    return 0;
}
