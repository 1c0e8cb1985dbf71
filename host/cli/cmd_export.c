// sprec export CKPT.h5 -o DIR [--dtype fp32|bf16]: a folder Hugging Face
// transformers loads with AutoModelForCausalLM.from_pretrained(DIR):
// config.json, model.safetensors and, when the checkpoint carries a tokenizer,
// tokenizer.json / tokenizer_config.json and generation_config.json (bos/eos/pad
// ids). Written into DIR.tmp and renamed, so an interrupted export never leaves
// a half folder under DIR (base/atomic_write.h).
// A LoRA checkpoint is exported merged: W += (alpha/r) B A (model_merge_lora).
#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "commands.h"
#include "base/atomic_write.h"
#include "io/checkpoint.h"
#include "model/device.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "kernels/errors.h"
#include "model/lora.h"
#include "tokenizer/tokenizer.h"

static const char *const FILES[] = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                                    "tokenizer_config.json"};

// 1 when path is a directory with entries, 0 when empty, -1 when absent.
static int dir_state(const char *path) {
    DIR *d = opendir(path);
    if (!d) {
        struct stat sb;
        if (stat(path, &sb) == 0) fail("'%s' exists and is not a directory", path);
        return -1;
    }
    struct dirent *e;
    int any = 0;
    while ((e = readdir(d))) any |= strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return any;
}

// dir/name = text (not synced here: the atomic commit syncs every file of the folder)
static void write_text(const char *dir, const char *name, const char *text, size_t len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) fail("cannot create '%s': %s", path, strerror(errno));
    errno = 0;
    if (fwrite(text, 1, len, f) != len || fclose(f)) fail("cannot write '%s': %s", path, errno ? strerror(errno) : "write error (disk full?)");
}

// bos/eos as sprec's tokenizer resolves them (so an exported model stops where
// sprec generate stops); pad from tokenizer_config.json's pad_token.
static HfTokenIds special_ids(const Model *m, const char *ckpt) {
    HfTokenIds ids = {-1, -1, -1};
    if (!m->tokenizer_json) return ids;
    Tokenizer *t = tokenizer_from_json(m->tokenizer_json, m->tokenizer_json_len, m->tokenizer_config_json,
                                       m->tokenizer_config_json_len, ckpt);
    ids.bos = tokenizer_bos_id(t);
    ids.eos = tokenizer_eos_id(t);
    cJSON *cfg = m->tokenizer_config_json ? cJSON_ParseWithLength(m->tokenizer_config_json, m->tokenizer_config_json_len)
                                          : NULL;
    const cJSON *pad = cJSON_GetObjectItemCaseSensitive(cfg, "pad_token");
    if (cJSON_IsObject(pad)) pad = cJSON_GetObjectItemCaseSensitive(pad, "content");
    if (cJSON_IsString(pad)) ids.pad = tokenizer_token_id(t, pad->valuestring);
    cJSON_Delete(cfg);
    tokenizer_free(t);
    return ids;
}

int cmd_export(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        printf("usage: sprec export CKPT.h5 -o DIR [--dtype fp32|bf16]\n"
               "Writes DIR/config.json (LlamaForCausalLM, or Qwen2ForCausalLM with q/k/v bias),\n"
               "DIR/model.safetensors (fp32 by default; bf16 rounds to nearest even) and the checkpoint's\n"
               "tokenizer.json / tokenizer_config.json, with its bos/eos/pad ids in config.json and\n"
               "generation_config.json. LoRA adapters in the checkpoint are merged into the weights.\n"
               "Per-frequency rope factors (a GGUF's rope_freqs) are written as the llama3 rope_scaling\n"
               "that gives them; factors no llama3 curve gives cannot be exported (config.json has no such form).\n"
               "DIR must not exist or be empty.\n");
        return 0;
    }
    const char *ckpt = NULL, *dir = NULL, *dtype = "fp32";
    const CliFlag flags[] = {ARG_OPERAND("CKPT.h5", &ckpt), ARG_PATH("-o DIR", &dir, CLI_REQUIRED),
                             ARG_STR("--dtype", &dtype), ARG_END};
    cli_parse("export", argc, argv, flags);
    if (strcmp(dtype, "fp32") && strcmp(dtype, "bf16")) fail("sprec export: --dtype must be fp32 or bf16 (got '%s')", dtype);
    const int bf16 = !strcmp(dtype, "bf16");
    const int state = dir_state(dir);
    if (state == 1) fail("'%s' exists and is not empty; refusing to overwrite it", dir);

    ModelConfig c, hc;
    checkpoint_read_config(ckpt, &c);
    hf_config_for_export(&c, &hc, ckpt);   // refuses a rope config.json cannot express, before any write
    Model m;
    model_create(&m, &c, backend_select("cpu"));
    checkpoint_load(ckpt, &m, NULL, NULL);
    const int merged = m.lora != NULL;
    if (merged) model_merge_lora(&m);   // the exported weights are the adapted model

    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", dir) >= sizeof tmp - 64) fail("path too long: '%s'", dir);
    if (dir_state(tmp) >= 0) {   // a stale DIR.tmp from an interrupted export: remove what we write there
        for (size_t i = 0; i < sizeof FILES / sizeof FILES[0]; i++) {
            char p[4200];
            snprintf(p, sizeof p, "%s/%s", tmp, FILES[i]);
            unlink(p);
        }
        if (rmdir(tmp) != 0) fail("cannot remove the stale '%s': %s", tmp, strerror(errno));
    }
    AtomicFile *out = atomic_begin_dir(dir);   // creates tmp, DIR.tmp

    const HfTokenIds ids = special_ids(&m, ckpt);
    char *cfg = hf_config_write(&hc, bf16 ? "bfloat16" : "float32", &ids);
    write_text(tmp, "config.json", cfg, strlen(cfg));
    free(cfg);
    if (ids.bos >= 0 || ids.eos >= 0 || ids.pad >= 0) {
        char *gen = hf_generation_config_write(&ids);
        write_text(tmp, "generation_config.json", gen, strlen(gen));
        free(gen);
    }
    const char **names = xmalloc((size_t)m.n_params * sizeof *names);
    int *ranks = xmalloc((size_t)m.n_params * sizeof *ranks);
    long (*shapes)[2] = xmalloc((size_t)m.n_params * sizeof *shapes);
    float **data = xmalloc((size_t)m.n_params * sizeof *data);
    for (int i = 0; i < m.n_params; i++) {
        const ParamInfo *p = &m.table[i];
        names[i] = p->name;
        ranks[i] = p->rank;
        shapes[i][0] = p->shape[0];
        shapes[i][1] = p->shape[1];
        data[i] = xmalloc(p->numel * sizeof(float));
        m.be->download(data[i], m.params + p->offset, p->numel * sizeof(float));
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    st_write(path, m.n_params, names, ranks, (const long (*)[2])shapes, (const float *const *)data, bf16);
    for (int i = 0; i < m.n_params; i++) free(data[i]);
    free(data); free(names); free(ranks); free(shapes);
    if (m.tokenizer_json) write_text(tmp, "tokenizer.json", m.tokenizer_json, m.tokenizer_json_len);
    if (m.tokenizer_config_json)
        write_text(tmp, "tokenizer_config.json", m.tokenizer_config_json, m.tokenizer_config_json_len);

    if (state == 0 && rmdir(dir) != 0) fail("cannot replace the empty '%s': %s", dir, strerror(errno));
    atomic_commit(out);
    printf("export: %s -> %s (%s, %d tensors, tokenizer %s%s)\n", ckpt, dir, dtype, m.n_params,
           m.tokenizer_json ? "included" : "none", merged ? ", LoRA merged" : "");
    model_free(&m);
    return 0;
}
