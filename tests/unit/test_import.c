// sprec import / export against committed fixtures (tests/ref/make_import_fixtures.py):
// Hugging Face folders (fp32, sharded Qwen2, bf16 with llama3 rope) -> import ->
// `sprec dump` logits vs transformers; a tiny GGUF with every supported tensor
// type -> dequantised values bit-identical to the gguf package's; the Q/K
// unpermutation; export -> re-import round trips; and bad input through the CLI.
// Imports, exports and tokenize of the fixtures run under the sanitized binary
// (SPREC_CHECKED): a good file must be as clean under ASan/UBSan as a bad one.
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "tests.h"
#include "io/checkpoint.h"
#include "model/device.h"
#include "io/gguf.h"
#include "base/h5io.h"
#include "io/safetensors.h"

#define FIX "tests/ref/import"
#define TMP "build/test-tmp/import"

static void write_bytes(const char *path, const void *data, size_t n);

// rope_freqs.weight of a GGUF file into out (head_dim/2 values); returns their count.
static int gguf_rope_freqs(const char *path, float *out) {
    Gguf g;
    gguf_open(&g, path);
    const GgufTensor *t = gguf_find_tensor(&g, "rope_freqs.weight");
    assert_non_null(t);
    assert_true(t->ne[0] <= ROPE_MAX_PAIRS);
    gguf_dequantize(&g, t, out);
    const int n = (int)t->ne[0];
    gguf_close(&g);
    return n;
}

// Loads a checkpoint into a CPU model (caller frees with model_free).
static void load(Model *m, const char *path) {
    ModelConfig c;
    checkpoint_read_config(path, &c);
    model_create(m, &c, backend_select("cpu"));
    checkpoint_load(path, m, NULL, NULL);
}

// `sprec dump` of checkpoint ckpt on FIX/<name>/batch.h5 vs transformers' FIX/<name>/expected.h5:
// relative error over the valid positions (padding is free in the dump contract).
static double dump_rel_err(const char *ckpt, const char *name) {
    char cmd[2048], out[512], path[512], bpath[512];
    snprintf(out, sizeof out, TMP "/%s.dump.h5", name);
    snprintf(bpath, sizeof bpath, FIX "/%s/batch.h5", name);
    snprintf(cmd, sizeof cmd, "build/sprec dump --model %s --batch %s -o %s", ckpt, bpath, out);
    run_ok(cmd);
    snprintf(path, sizeof path, FIX "/%s/expected.h5", name);
    hid_t a = h5_open_read(out), b = h5_open_read(path), bt = h5_open_read(bpath);
    long d1[3] = {-1, -1, -1}, d2[3] = {-1, -1, -1}, dl[1] = {-1};
    float *ours = h5_read_f32(a, out, "logits", 3, d1), *ref = h5_read_f32(b, path, "logits", 3, d2);
    int *len = h5_read_i32(bt, bpath, "lengths", 1, dl);
    assert_memory_equal(d1, d2, sizeof d1);
    double num = 0, den = 0;
    for (long i = 0; i < d1[0]; i++)
        for (long t = 0; t < len[i]; t++)
            for (long v = 0; v < d1[2]; v++) {
                size_t j = ((size_t)i * d1[1] + t) * d1[2] + v;
                num += ((double)ours[j] - ref[j]) * ((double)ours[j] - ref[j]);
                den += (double)ref[j] * ref[j];
            }
    free(ours); free(ref); free(len);
    h5_close(a); h5_close(b); h5_close(bt);
    return sqrt(num / den);
}

static void test_import_hf_logits(void **state) {
    (void)state;
    const char *cases[] = {"llama_fp32", "qwen2_sharded", "llama_bf16_rope"};
    run_ok("mkdir -p " TMP);
    for (int k = 0; k < 3; k++) {
        char cmd[2048], ckpt[512], path[512];
        snprintf(ckpt, sizeof ckpt, TMP "/%s.h5", cases[k]);
        snprintf(cmd, sizeof cmd, SPREC_CHECKED " import " FIX "/%s/hf -o %s", cases[k], ckpt);
        run_ok(cmd);
        double rel = dump_rel_err(ckpt, cases[k]);
        print_message("  import %-16s logits rel err %.2e\n", cases[k], rel);
        assert_true(rel < 1e-4);
        // the tokenizer files travel verbatim
        Model m;
        load(&m, ckpt);
        snprintf(path, sizeof path, FIX "/%s/hf/tokenizer.json", cases[k]);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        char *text = malloc(m.tokenizer_json_len + 2);
        size_t n = fread(text, 1, m.tokenizer_json_len + 1, f);
        fclose(f);
        assert_non_null(m.tokenizer_json);
        assert_non_null(m.tokenizer_config_json);
        assert_int_equal(n, m.tokenizer_json_len);
        assert_memory_equal(text, m.tokenizer_json, n);
        assert_int_equal(m.tokenizer_json[n], 0);
        free(text);
        model_free(&m);
    }
}

// Bit-exact: our dequantisation does ggml's operations in ggml's order (fp32,
// no fused multiply-add under -std=c11), as gguf.quants does in numpy.
static void test_import_gguf_dequant_exact(void **state) {
    (void)state;
    Gguf g;
    gguf_open(&g, FIX "/tiny.gguf");
    hid_t e = h5_open_read(FIX "/gguf_expected.h5");
    int types_seen = 0;
    for (int i = 0; i < g.n_t; i++) {
        const GgufTensor *t = &g.t[i];
        char name[256];
        snprintf(name, sizeof name, "raw/%s", t->name);
        long dims[2] = {-1, -1};
        int rank = t->n_dims;
        float *want = h5_read_f32(e, "gguf_expected.h5", name, rank, dims);
        size_t n = (size_t)t->ne[0] * t->ne[1];
        float *got = malloc(n * sizeof(float));
        gguf_dequantize(&g, t, got);
        size_t bad = 0;
        for (size_t j = 0; j < n; j++) bad += memcmp(&got[j], &want[j], 4) != 0;
        if (bad) print_message("  %s (%s): %zu of %zu values differ\n", t->name, gguf_type_name(t->type), bad, n);
        assert_int_equal(bad, 0);
        types_seen |= 1 << (t->type == GGML_BF16 ? 15 : t->type);
        if (strstr(t->name, "attn_q") || strstr(t->name, "attn_k")) {   // llama.cpp's Q/K permutation undone
            const int heads = (int)t->ne[1] / 32;   // head_dim 32 in the fixture
            gguf_unpermute_rows(got, heads, 32, (int)t->ne[0]);
            const char *hf = strstr(t->name, "attn_q") ? "hf/model.layers.0.self_attn.q_proj.weight"
                                                        : "hf/model.layers.0.self_attn.k_proj.weight";
            float *want_hf = h5_read_f32(e, "gguf_expected.h5", hf, 2, (long[2]){-1, -1});
            assert_memory_equal(got, want_hf, n * sizeof(float));
            free(want_hf);
        }
        free(got); free(want);
    }
    // F32, F16, Q4_0, Q4_1, Q8_0, Q4_K, Q6_K, BF16 all present
    assert_int_equal(types_seen, (1 << 0) | (1 << 1) | (1 << 2) | (1 << 3) | (1 << 8) | (1 << 12) | (1 << 14) | (1 << 15));
    h5_close(e);
    gguf_close(&g);
}

// Every metadata value type parses (info prints them), general.alignment = 64
// places the data, and the tensors read back as the gguf package wrote them.
static void test_import_gguf_metadata(void **state) {
    (void)state;
    char out[16384];
    assert_int_equal(run_capture("build/sprec info " FIX "/meta.gguf", out, sizeof out), 0);
    const char *want[] = {"alignment 64, 17 metadata entries, 2 tensors", "u8   200", "i8   -5", "u16  60000",
                          "i16  -30000", "u32  4000000000", "i32  -2000000000", "f32  0.25", "bool 1",
                          "str  \"h\xc3\xa9llo\"", "u64  1099511627777", "i64  -1099511627776", "f64  2.5",
                          "arr[i32, 3] [1, 2, 3]", "arr[str, 2] [\"a\", \"bc\"]", "arr[arr, 2]", "Q8_0   [2,64]"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (!strstr(out, want[i])) print_message("missing '%s' in:\n%s\n", want[i], out);
        assert_non_null(strstr(out, want[i]));
    }
    Gguf g;
    gguf_open(&g, FIX "/meta.gguf");
    assert_int_equal(g.alignment, 64);
    hid_t e = h5_open_read(FIX "/gguf_expected.h5");
    const char *names[] = {"a", "b"};
    for (int i = 0; i < 2; i++) {
        const GgufTensor *t = gguf_find_tensor(&g, names[i]);
        assert_non_null(t);
        assert_int_equal((size_t)(t->data - (const unsigned char *)g.map) % 64, 0);
        char name[32];
        snprintf(name, sizeof name, "meta/%s", names[i]);
        long dims[2] = {-1, -1};
        float *ref = h5_read_f32(e, "gguf_expected.h5", name, t->n_dims, dims), got[128];
        gguf_dequantize(&g, t, got);
        assert_memory_equal(got, ref, (size_t)(t->ne[0] * t->ne[1]) * sizeof(float));
        free(ref);
    }
    h5_close(e);
    gguf_close(&g);
}

static void test_import_gguf(void **state) {
    (void)state;
    static const char *const MAP[][2] = {
        {"model.embed_tokens.weight", "token_embd.weight"}, {"model.layers.0.input_layernorm.weight", "blk.0.attn_norm.weight"},
        {"model.layers.0.self_attn.v_proj.weight", "blk.0.attn_v.weight"},
        {"model.layers.0.self_attn.o_proj.weight", "blk.0.attn_output.weight"},
        {"model.layers.0.post_attention_layernorm.weight", "blk.0.ffn_norm.weight"},
        {"model.layers.0.mlp.gate_proj.weight", "blk.0.ffn_gate.weight"}, {"model.layers.0.mlp.up_proj.weight", "blk.0.ffn_up.weight"},
        {"model.layers.0.mlp.down_proj.weight", "blk.0.ffn_down.weight"}, {"model.norm.weight", "output_norm.weight"},
        {"lm_head.weight", "output.weight"},
        {"model.layers.0.self_attn.q_proj.weight", NULL}, {"model.layers.0.self_attn.k_proj.weight", NULL},
    };
    run_ok("mkdir -p " TMP " && " SPREC_CHECKED " import " FIX "/tiny.gguf -o " TMP "/tiny.h5");
    Model m;
    load(&m, TMP "/tiny.h5");
    assert_int_equal(m.cfg.head_dim, 32);
    assert_int_equal(m.cfg.tie_embeddings, 0);
    assert_int_equal(m.n_params, 12);
    hid_t e = h5_open_read(FIX "/gguf_expected.h5");
    for (int i = 0; i < 12; i++) {
        const ParamInfo *p = param_find(m.table, m.n_params, MAP[i][0]);
        assert_non_null(p);
        char name[256];
        snprintf(name, sizeof name, MAP[i][1] ? "raw/%s" : "hf/%s", MAP[i][1] ? MAP[i][1] : MAP[i][0]);
        long dims[2] = {-1, -1};
        float *want = h5_read_f32(e, "gguf_expected.h5", name, p->rank, dims);
        assert_memory_equal(m.params + p->offset, want, p->numel * sizeof(float));
        free(want);
    }
    h5_close(e);
    // tokenizer rebuilt from tokenizer.ggml.*: a BPE tokenizer.json with the 300 tokens
    assert_non_null(m.tokenizer_json);
    assert_non_null(strstr(m.tokenizer_json, "\"type\":\"BPE\""));
    assert_non_null(strstr(m.tokenizer_json, "\"<|im_start|>\":1"));
    assert_non_null(strstr(m.tokenizer_config_json, "\"eos_token\":\t\"<|im_end|>\""));
    size_t len;
    char *tj = gguf_tokenizer_json(FIX "/tiny.gguf", &len);
    assert_int_equal(len, m.tokenizer_json_len);
    assert_memory_equal(tj, m.tokenizer_json, len);
    free(tj);
    model_free(&m);
}

// A SentencePiece GGUF (no merges in the file): the merges derived from tokens
// and scores equal, in order, the ones transformers derives for the same file.
static void test_import_gguf_spm_tokenizer(void **state) {
    (void)state;
    size_t len;
    char *ours = gguf_tokenizer_json(FIX "/spm.gguf", &len);
    FILE *f = fopen(FIX "/spm_expected.json", "rb");
    assert_non_null(f);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    cJSON *a = cJSON_Parse(ours), *b = cJSON_Parse(text);
    assert_non_null(a);
    assert_non_null(b);
    cJSON *model = cJSON_GetObjectItem(a, "model");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(model, "byte_fallback")));
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "pre_tokenizer"), "type")->valuestring, "Metaspace");
    cJSON *ma = cJSON_GetObjectItem(model, "merges"), *mb = cJSON_GetObjectItem(b, "merges");
    assert_true(cJSON_GetArraySize(mb) > 10);
    assert_int_equal(cJSON_GetArraySize(ma), cJSON_GetArraySize(mb));
    for (int i = 0; i < cJSON_GetArraySize(mb); i++)
        for (int k = 0; k < 2; k++)
            assert_string_equal(cJSON_GetArrayItem(cJSON_GetArrayItem(ma, i), k)->valuestring,
                                cJSON_GetArrayItem(cJSON_GetArrayItem(mb, i), k)->valuestring);
    cJSON_Delete(a);
    cJSON_Delete(b);
    free(ours);
    // and the whole model imports, tokenizer included (tied: the file has no output.weight)
    run_ok("mkdir -p " TMP " && " SPREC_CHECKED " import " FIX "/spm.gguf -o " TMP "/spm.h5");
    // the tokenizer rebuilt from the GGUF, straight from the file and from the checkpoint: the same ids
    char from_gguf[4096], from_h5[4096];
    assert_int_equal(run_capture("printf 'hello world\\n' | " SPREC_CHECKED " tokenize --model " FIX "/spm.gguf",
                                 from_gguf, sizeof from_gguf), 0);
    assert_int_equal(run_capture("printf 'hello world\\n' | " SPREC_CHECKED " tokenize --model " TMP "/spm.h5",
                                 from_h5, sizeof from_h5), 0);
    assert_string_equal(from_gguf, from_h5);
}

// Every block type sprec dequantises, on random blocks whose scale fields take
// extreme values (0, -0, +-65504, subnormals, +-inf, NaN) and random float16
// bit patterns of any exponent: bit-identical to gguf.quants.dequantize.
static void test_import_gguf_quants_exact(void **state) {
    (void)state;
    static const char *const TYPES[] = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"};
    Gguf g;
    gguf_open(&g, FIX "/quants.gguf");
    hid_t e = h5_open_read(FIX "/quants_expected.h5");
    for (size_t k = 0; k < sizeof TYPES / sizeof TYPES[0]; k++) {
        const GgufTensor *t = gguf_find_tensor(&g, TYPES[k]);
        assert_non_null(t);
        assert_string_equal(gguf_type_name(t->type), TYPES[k]);
        long dims[2] = {-1, -1};
        float *want = h5_read_f32(e, "quants_expected.h5", TYPES[k], 2, dims);
        const size_t n = (size_t)t->ne[0] * t->ne[1];
        assert_int_equal((size_t)(dims[0] * dims[1]), n);
        float *got = malloc(n * sizeof(float));
        gguf_dequantize(&g, t, got);
        size_t bad = 0, special = 0;
        for (size_t j = 0; j < n; j++) {
            bad += memcmp(&got[j], &want[j], 4) != 0;
            special += !isfinite(want[j]) || want[j] == 0;
        }
        print_message("  %-5s %6zu values (%zu zero/inf/NaN): %zu differ from gguf.quants\n", TYPES[k], n, special, bad);
        assert_int_equal(bad, 0);
        free(got); free(want);
    }
    h5_close(e);
    gguf_close(&g);
}

// A Q4_K_M-style Llama 3 file (Q4_K + Q5_K + Q6_K + F32 norms, tied, rope_freqs)
// imported, run, generated from and exported as a user would.
static void test_import_gguf_llama3_q4km(void **state) {
    (void)state;
    const char *ckpt = TMP "/l3.h5";
    run_ok("mkdir -p " TMP " && rm -rf " TMP "/l3exp " TMP "/l3.h5 && " SPREC_CHECKED " import " FIX
           "/llama3_q4km.gguf -o " TMP "/l3.h5");
    // the file's rope_freqs are the rope, as given; export turns them into the llama3 curve they follow
    ModelConfig c;
    float ff[ROPE_MAX_PAIRS];
    checkpoint_read_config(ckpt, &c);
    assert_int_equal(c.rope_scaling, ROPE_FREQS);
    assert_int_equal(gguf_rope_freqs(FIX "/llama3_q4km.gguf", ff), c.head_dim / 2);
    assert_memory_equal(c.rope_freqs, ff, sizeof(float) * (size_t)(c.head_dim / 2));
    assert_int_equal(c.rope_original_max_pos, 64);
    assert_int_equal(c.tie_embeddings, 1);
    double rel = dump_rel_err(ckpt, "llama3_q4km");   // (0.98 with the scaling dropped: the rope matters here)
    print_message("  import llama3_q4km.gguf (rope_freqs)  logits rel err vs transformers %.2e\n", rel);
    assert_true(rel < 1e-4);
    // greedy generation stops on the file's eos where transformers' generate() stops
    char *gj = read_text_file(FIX "/llama3_q4km/generate.json", NULL);
    cJSON *gen = cJSON_Parse(gj);
    assert_non_null(gen);
    char prompt[1024] = "", want[1024] = "", cmd[2048], out[4096];
    const cJSON *x;
    cJSON_ArrayForEach(x, cJSON_GetObjectItem(gen, "prompt"))
        snprintf(prompt + strlen(prompt), sizeof prompt - strlen(prompt), "%s%d", *prompt ? " " : "", x->valueint);
    cJSON_ArrayForEach(x, cJSON_GetObjectItem(gen, "generated"))
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d", *want ? " " : "", x->valueint);
    snprintf(cmd, sizeof cmd, "build/sprec generate --model %s --prompt-ids '%s' --ids --max-new-tokens %d", ckpt,
             prompt, cJSON_GetObjectItem(gen, "max_new_tokens")->valueint);
    assert_int_equal(run_capture(cmd, out, sizeof out), 0);
    out[strcspn(out, "\n")] = 0;
    assert_string_equal(out, want);
    // export: config.json and generation_config.json carry the ids, tokenizer_config.json the chat template
    run_ok(SPREC_CHECKED " export " TMP "/l3.h5 -o " TMP "/l3exp && " SPREC_CHECKED " import " TMP "/l3exp -o " TMP "/l3re.h5");
    cJSON *cfg = cJSON_Parse(read_text_file(TMP "/l3exp/config.json", NULL)),
          *gcfg = cJSON_Parse(read_text_file(TMP "/l3exp/generation_config.json", NULL)),
          *hf = cJSON_Parse(read_text_file(FIX "/llama3_q4km/hf/config.json", NULL)),
          *tcfg = cJSON_Parse(read_text_file(TMP "/l3exp/tokenizer_config.json", NULL));
    const char *ids[] = {"bos_token_id", "eos_token_id", "pad_token_id"};
    const int want_ids[] = {1, cJSON_GetObjectItem(gen, "eos")->valueint, 0};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cJSON_GetObjectItem(cfg, ids[i])->valueint, want_ids[i]);
        assert_int_equal(cJSON_GetObjectItem(gcfg, ids[i])->valueint, want_ids[i]);
    }
    const char *rope_keys[] = {"rope_theta", "factor", "low_freq_factor", "high_freq_factor",
                               "original_max_position_embeddings"};
    for (int i = 0; i < 5; i++)
        assert_true(cJSON_GetObjectItem(cJSON_GetObjectItem(cfg, "rope_parameters"), rope_keys[i])->valuedouble ==
                    cJSON_GetObjectItem(cJSON_GetObjectItem(hf, "rope_parameters"), rope_keys[i])->valuedouble);
    assert_non_null(strstr(cJSON_GetObjectItem(tcfg, "chat_template")->valuestring, "<|im_start|>assistant"));
    // and the exported folder imports back to the same weights
    Model a, b;
    load(&a, ckpt);
    load(&b, TMP "/l3re.h5");
    assert_int_equal(a.numel, b.numel);
    assert_memory_equal(a.params, b.params, a.numel * sizeof(float));
    model_free(&a); model_free(&b);
    cJSON_Delete(cfg); cJSON_Delete(gcfg); cJSON_Delete(hf); cJSON_Delete(tcfg); cJSON_Delete(gen);
    free(gj);
}

// The type mix in `sprec info`; IQ types refused by name; rope_freqs that
// disagree with rope.scaling.factor (warning); the llama3 curve fitted to
// rope_freqs (export), or none for factors off any curve.
static void test_import_gguf_types_and_rope(void **state) {
    (void)state;
    char out[16384];
    assert_int_equal(run_capture("build/sprec info " FIX "/llama3_q4km.gguf", out, sizeof out), 0);
    assert_non_null(strstr(out, "F32 x6 (0.0 MiB), Q4_K x10 (0.5 MiB), Q5_K x2 (0.1 MiB), Q6_K x3 (0.2 MiB)"));
    assert_int_equal(run_capture("build/sprec info " FIX "/iq.gguf", out, sizeof out), 0);
    assert_non_null(strstr(out, "not importable: IQ2_XXS"));
    assert_non_null(strstr(out, "not importable: IQ4_XS"));
    expect_error(SPREC_CHECKED " import " FIX "/iq.gguf -o " TMP "/iq.h5", "iq.gguf", "IQ4_XS, IQ2_XXS");
    // rope.scaling.factor 8 vs factors made with 32: a warning naming the worst pair, then the file's
    // factors are used (this file stops at its missing layers)
    run_capture(SPREC_CHECKED " import " FIX "/rope_meta.gguf -o " TMP "/rm.h5", out, sizeof out);
    assert_non_null(strstr(out, "sprec: warning: " FIX "/rope_meta.gguf: rope_freqs.weight differs from the Llama-3 "
                                "curve of its metadata (rope.scaling.factor 8"));
    assert_non_null(strstr(out, "largest at pair 6, 32 in the file vs 8"));
    assert_non_null(strstr(out, "missing tensor for 'model.layers.0.input_layernorm.weight'"));
    // a factor that divides no frequency (here -1, in a copy of rope_bad.gguf): one line naming the pair
    size_t len;
    char *bytes = read_text_file(FIX "/rope_bad.gguf", &len);
    Gguf gb;
    gguf_open(&gb, FIX "/rope_bad.gguf");
    const size_t off = (size_t)(gguf_find_tensor(&gb, "rope_freqs.weight")->data - (const unsigned char *)gb.map);
    gguf_close(&gb);
    const float neg = -1;
    memcpy(bytes + off + 3 * sizeof(float), &neg, sizeof neg);
    write_bytes(TMP "/rope_neg.gguf", bytes, len);
    free(bytes);
    expect_error(SPREC_CHECKED " import " TMP "/rope_neg.gguf -o " TMP "/rn.h5", "rope_neg.gguf",
                 "rope_freqs.weight[3] = -1 (factors must be finite and > 0)");
    // rope_freqs alone, as llama.cpp writes Llama 3.1 8B and Llama 3.2 1B/3B: run as given, and the curve an
    // export writes is their config.json's; factors off any curve (rope_bad) fit none
    const char *files[] = {FIX "/rope_llama31.gguf", FIX "/rope_llama32.gguf", FIX "/rope_bad.gguf"};
    const float factor[] = {8, 32};
    const int head_dim[] = {128, 64, 64};
    for (int i = 0; i < 3; i++) {
        Gguf g;
        ModelConfig c, fit;
        char arch[16];
        float ff[ROPE_MAX_PAIRS];
        int at;
        double worst;
        gguf_open(&g, files[i]);
        gguf_model_config(&g, &c, arch, sizeof arch);
        gguf_close(&g);
        assert_int_equal(c.head_dim, head_dim[i]);
        assert_int_equal(c.rope_scaling, ROPE_FREQS);
        gguf_rope_freqs(files[i], ff);
        assert_memory_equal(c.rope_freqs, ff, sizeof(float) * (size_t)(c.head_dim / 2));
        const int ok = rope_fit_llama3(&c, &fit, &at, &worst);
        if (i == 2) {   // every third factor 2.5: pair 19 is the farthest off
            assert_int_equal(ok, 0);
            assert_int_equal(at, 19);
            assert_true(worst > 1);
            continue;
        }
        assert_int_equal(ok, 1);
        assert_int_equal(fit.rope_scaling, ROPE_LLAMA3);
        assert_true(fit.rope_factor == factor[i] && fit.rope_low_freq_factor == 1.0f &&
                    fit.rope_high_freq_factor == 4.0f);
        assert_int_equal(fit.rope_original_max_pos, 8192);
        assert_true(worst <= 1e-5);
    }
}

// rope_freqs that follow no llama3 curve (rope_custom.gguf): imported as given (with the warning against the
// metadata's curve), logits equal to transformers with inv_freq divided by the factors; the checkpoint keeps
// them (version 2, re-saved and reloaded unchanged); export refuses, writing nothing. Checkpoints without
// rope_freqs are still version 1 without the table.
static void test_import_gguf_rope_custom(void **state) {
    (void)state;
    const char *ckpt = TMP "/rc.h5";
    char out[8192];
    run_ok("mkdir -p " TMP " && rm -rf " TMP "/rc.h5 " TMP "/rcexp");
    assert_int_equal(run_capture(SPREC_CHECKED " import " FIX "/rope_custom.gguf -o " TMP "/rc.h5", out, sizeof out), 0);
    assert_non_null(strstr(out, "sprec: warning: " FIX "/rope_custom.gguf: rope_freqs.weight differs from the Llama-3 "
                                "curve of its metadata (rope.scaling.factor 8"));
    assert_non_null(strstr(out, "using the file's factors"));
    ModelConfig c;
    float ff[ROPE_MAX_PAIRS];
    checkpoint_read_config(ckpt, &c);
    assert_int_equal(c.rope_scaling, ROPE_FREQS);
    assert_int_equal(gguf_rope_freqs(FIX "/rope_custom.gguf", ff), c.head_dim / 2);
    assert_memory_equal(c.rope_freqs, ff, sizeof(float) * (size_t)(c.head_dim / 2));
    double rel = dump_rel_err(ckpt, "rope_custom");
    print_message("  import rope_custom.gguf (factors off any llama3 curve)  logits rel err vs transformers %.2e\n",
                  rel);
    assert_true(rel < 1e-4);
    // the checkpoint round trip keeps the table; the file says version 2, so an older sprec refuses it by version
    Model m, m2;
    load(&m, ckpt);
    checkpoint_save(TMP "/rc2.h5", &m, NULL, NULL);
    load(&m2, TMP "/rc2.h5");   // checkpoint_load compares the whole config, rope_freqs included
    assert_memory_equal(m2.cfg.rope_freqs, ff, sizeof(float) * (size_t)(c.head_dim / 2));
    assert_memory_equal(m.params, m2.params, m.numel * sizeof(float));
    model_free(&m2);
    model_free(&m);
    run_ok("build/sprec import " FIX "/llama_fp32/hf -o " TMP "/plain.h5 > /dev/null");
    hid_t f = h5_open_read(ckpt), g = h5_open_read(TMP "/plain.h5");
    assert_int_equal(h5_attr_read_i64(f, ckpt, "version"), 2);
    assert_int_equal(h5_attr_read_i64(g, "plain.h5", "version"), 1);
    assert_false(h5_exists(g, "config/rope_freqs"));
    h5_close(f); h5_close(g);
    // rope_scaling and the table must agree (a file edited by another tool): one line each way
    const char *edit[][3] = {{TMP "/rc2.h5", "llama3", "/config/rope_freqs is present but rope_scaling = 'llama3'"},
                             {TMP "/plain.h5", "freqs", "rope_scaling = 'freqs' but /config/rope_freqs is missing"}};
    for (int i = 0; i < 2; i++) {
        hid_t w = h5_open_rw(edit[i][0]), cg = h5_group(w, "config");
        h5_attr_write_str(cg, "rope_scaling", edit[i][1]);
        h5_group_close(cg);
        h5_close(w);
        snprintf(out, sizeof out, "build/sprec info %s", edit[i][0]);
        expect_error(out, strrchr(edit[i][0], '/') + 1, edit[i][2]);
    }
    assert_int_equal(run_capture("build/sprec info " TMP "/rc.h5", out, sizeof out), 0);
    assert_non_null(strstr(out, "rope_scaling             freqs"));
    assert_non_null(strstr(out, "rope_freqs"));
    // config.json cannot hold them: one line, exit 1, no folder
    expect_error(SPREC_CHECKED " export " TMP "/rc.h5 -o " TMP "/rcexp", "rc.h5: cannot export",
                 "follow no Llama-3 curve");
    assert_int_equal(run_capture("ls " TMP "/rcexp " TMP "/rcexp.tmp", out, sizeof out) != 0, 1);
}

static void test_import_qk_permute_roundtrip(void **state) {
    (void)state;
    enum { H = 3, D = 8, COLS = 5, N = H * D * COLS };
    float w[N], orig[N];
    for (int i = 0; i < N; i++) orig[i] = w[i] = (float)i;
    gguf_permute_rows(w, H, D, COLS);
    // GGUF row h*D + 2i + s holds HF row h*D + s*D/2 + i: row 1 of the GGUF is HF row D/2
    assert_true(w[1 * COLS] == orig[(D / 2) * COLS]);
    assert_true(memcmp(w, orig, sizeof w) != 0);
    gguf_unpermute_rows(w, H, D, COLS);
    assert_memory_equal(w, orig, sizeof w);
}

static void test_import_export_roundtrip(void **state) {
    (void)state;
    const char *cases[] = {"llama_fp32", "qwen2_sharded"};
    for (int k = 0; k < 2; k++) {
        char cmd[4096], a[512], b[512], c[512];
        snprintf(a, sizeof a, TMP "/%s.h5", cases[k]);
        snprintf(b, sizeof b, TMP "/%s.re32.h5", cases[k]);
        snprintf(c, sizeof c, TMP "/%s.re16.h5", cases[k]);
        snprintf(cmd, sizeof cmd, "rm -rf " TMP "/exp32 " TMP "/exp16 && " SPREC_CHECKED " import " FIX "/%s/hf -o %s && "
                 SPREC_CHECKED " export %s -o " TMP "/exp32 && " SPREC_CHECKED " import " TMP "/exp32 -o %s && "
                 SPREC_CHECKED " export %s -o " TMP "/exp16 --dtype bf16 && " SPREC_CHECKED " import " TMP "/exp16 -o %s",
                 cases[k], a, a, b, a, c);
        run_ok(cmd);
        Model ma, mb, mc;
        load(&ma, a); load(&mb, b); load(&mc, c);
        assert_int_equal(ma.numel, mb.numel);
        for (int i = 0; i < ma.n_params; i++) {
            const ParamInfo *p = &ma.table[i];
            assert_memory_equal(ma.params + p->offset, mb.params + p->offset, p->numel * sizeof(float));
            for (size_t j = 0; j < p->numel; j++)   // bf16: round to nearest even, nothing else
                assert_true(mc.params[p->offset + j] == bf16_to_f32(f32_to_bf16(ma.params[p->offset + j])));
        }
        assert_int_equal(ma.tokenizer_json_len, mb.tokenizer_json_len);
        assert_memory_equal(ma.tokenizer_json, mb.tokenizer_json, ma.tokenizer_json_len);
        assert_memory_equal(ma.tokenizer_config_json, mc.tokenizer_config_json, ma.tokenizer_config_json_len);
        model_free(&ma); model_free(&mb); model_free(&mc);
    }
    // never over an existing folder with files in it
    char out[4096];
    assert_int_equal(run_capture("build/sprec export " TMP "/llama_fp32.h5 -o " TMP "/exp32", out, sizeof out), 1);
    assert_non_null(strstr(out, "not empty"));
}

// ---- bad input -------------------------------------------------------------------

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

// A safetensors file from a header text and n data bytes (zeros).
static void write_st(const char *path, const char *header, size_t n, long long claimed_len) {
    size_t hl = strlen(header);
    unsigned char *buf = calloc(8 + hl + n + 1, 1);
    unsigned long long len = claimed_len >= 0 ? (unsigned long long)claimed_len : hl;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(len >> (8 * i));
    memcpy(buf + 8, header, hl);
    write_bytes(path, buf, 8 + hl + n);
    free(buf);
}

static void test_import_bad_input(void **state) {
    (void)state;
    const char *D = TMP "/bad";
    char out[4096];
    assert_int_equal(run_capture("rm -rf " TMP "/bad && mkdir -p " TMP "/bad/st " TMP "/bad/arch", out, sizeof out), 0);
    (void)D;
    write_file(TMP "/bad/st/config.json", "{\"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": 4, "
               "\"hidden_size\": 4, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"intermediate_size\": 4, "
               "\"max_position_embeddings\": 8}");
    const char *imp = SPREC_CHECKED " import " TMP "/bad/st -o " TMP "/bad/x.h5";
    // truncated: the header promises 64 data bytes, the file has 10
    write_st(TMP "/bad/st/model.safetensors",
             "{\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[4,4],\"data_offsets\":[0,64]}}", 10, -1);
    expect_error(imp, "model.safetensors", "outside");
    // header length past the end of the file
    write_st(TMP "/bad/st/model.safetensors", "{}", 0, 1000000);
    expect_error(imp, "model.safetensors", "past the end");
    // file shorter than the length field
    write_bytes(TMP "/bad/st/model.safetensors", "abc", 3);
    expect_error(imp, "model.safetensors", "truncated");
    // bad JSON header
    write_st(TMP "/bad/st/model.safetensors", "{\"model.embed_tokens.weight\": [", 0, -1);
    expect_error(imp, "model.safetensors", "JSON");
    // missing tensor
    write_st(TMP "/bad/st/model.safetensors", "{}", 0, -1);
    expect_error(imp, "missing tensor", "model.embed_tokens.weight");
    // dtype mismatch (I32 where a float tensor is needed)
    write_st(TMP "/bad/st/model.safetensors",
             "{\"model.embed_tokens.weight\":{\"dtype\":\"I32\",\"shape\":[4,4],\"data_offsets\":[0,64]}}", 64, -1);
    expect_error(imp, "model.embed_tokens.weight", "dtype");
    // bytes that do not match shape x dtype
    write_st(TMP "/bad/st/model.safetensors",
             "{\"model.embed_tokens.weight\":{\"dtype\":\"F16\",\"shape\":[4,4],\"data_offsets\":[0,64]}}", 64, -1);
    expect_error(imp, "model.embed_tokens.weight", "need 32");
    // shape mismatch with config.json
    write_st(TMP "/bad/st/model.safetensors",
             "{\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[4,2],\"data_offsets\":[0,32]}}", 32, -1);
    expect_error(imp, "model.embed_tokens.weight", "config.json implies [4,4]");
    // an architecture we do not run
    write_file(TMP "/bad/arch/config.json", "{\"architectures\": [\"GPT2LMHeadModel\"]}");
    expect_error(SPREC_CHECKED " import " TMP "/bad/arch -o " TMP "/bad/x.h5", "GPT2LMHeadModel", "not supported");
    write_file(TMP "/bad/arch/config.json", "{\"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": ");
    expect_error(SPREC_CHECKED " import " TMP "/bad/arch -o " TMP "/bad/x.h5", "config.json", "JSON");

    // GGUF: bad magic, bad version, unknown tensor type, truncated metadata and data
    FILE *f = fopen(FIX "/tiny.gguf", "rb");
    assert_non_null(f);
    static unsigned char g[300000];
    size_t n = fread(g, 1, sizeof g, f);
    fclose(f);
    assert_true(n > 1000 && n < sizeof g);
    unsigned char *copy = malloc(n);
    memcpy(copy, g, n);
    copy[0] = 'X';
    write_bytes(TMP "/bad/magic.gguf", copy, n);
    expect_error(SPREC_CHECKED " import " TMP "/bad/magic.gguf -o " TMP "/bad/x.h5", "magic.gguf", "bad magic");
    memcpy(copy, g, n);
    copy[4] = 7;
    write_bytes(TMP "/bad/version.gguf", copy, n);
    expect_error(SPREC_CHECKED " import " TMP "/bad/version.gguf -o " TMP "/bad/x.h5", "version.gguf", "version 7");
    expect_error(SPREC_CHECKED " info " TMP "/bad/version.gguf", "version.gguf", "version 7");
    write_bytes(TMP "/bad/trunc_meta.gguf", g, 200);
    expect_error(SPREC_CHECKED " import " TMP "/bad/trunc_meta.gguf -o " TMP "/bad/x.h5", "trunc_meta.gguf", "truncated");
    write_bytes(TMP "/bad/trunc_data.gguf", g, n - 1000);
    expect_error(SPREC_CHECKED " import " TMP "/bad/trunc_data.gguf -o " TMP "/bad/x.h5", "trunc_data.gguf", "past the end");
    free(copy);
    // a minimal GGUF: no metadata, one tensor "x" [32] of type 99
    unsigned char tiny[96] = {'G', 'G', 'U', 'F', 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                              1, 0, 0, 0, 0, 0, 0, 0, 'x', 1, 0, 0, 0, 32, 0, 0, 0, 0, 0, 0, 0, 99, 0, 0, 0};
    write_bytes(TMP "/bad/type.gguf", tiny, sizeof tiny);
    expect_error(SPREC_CHECKED " import " TMP "/bad/type.gguf -o " TMP "/bad/x.h5", "type.gguf", "unknown tensor type 99");
    // nothing half-written was left behind
    assert_int_equal(run_capture("test ! -e " TMP "/bad/x.h5 && ! ls -A " TMP "/bad | grep -q '^x\\.h5\\..*tmp$'", out, sizeof out), 0);
}

DEFINE_TEST_GROUP(test_import, cmocka_unit_test(test_import_hf_logits), cmocka_unit_test(test_import_gguf_dequant_exact),
                  cmocka_unit_test(test_import_gguf_metadata), cmocka_unit_test(test_import_gguf_spm_tokenizer),
                  cmocka_unit_test(test_import_gguf), cmocka_unit_test(test_import_gguf_quants_exact),
                  cmocka_unit_test(test_import_gguf_llama3_q4km), cmocka_unit_test(test_import_gguf_types_and_rope),
                  cmocka_unit_test(test_import_gguf_rope_custom),
                  cmocka_unit_test(test_import_qk_permute_roundtrip),
                  cmocka_unit_test(test_import_export_roundtrip), cmocka_unit_test(test_import_bad_input))
