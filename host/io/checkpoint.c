// Checkpoints: the layout is documented in docs/checkpoint.md. Saving goes to
// PATH.PID-N.tmp and is renamed over PATH only after the data is on disk
// (base/atomic_write.h); loading
// checks that the file holds exactly the model's tensors with the model's shapes.
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "checkpoint.h"
#include "base/atomic_write.h"
#include "base/dist/dist.h"
#include "base/fault.h"
#include "base/h5io.h"
#include "kernels/errors.h"
#include "model/lora.h"

#define CKPT_FORMAT "sprec-checkpoint"
#define CKPT_VERSION 2   // the newest version read; written only for rope_freqs (docs/checkpoint.md)

// ModelConfig <-> /config attributes, one row per field, so save, load,
// compare and info cannot drift apart. rope_scaling is a string and
// rope_freqs a dataset, done apart.
typedef struct { const char *name; int is_float; size_t off; } CfgField;
#define CI(f) { #f, 0, offsetof(ModelConfig, f) }
#define CF(f) { #f, 1, offsetof(ModelConfig, f) }
static const CfgField CFG[] = {
    CI(vocab_size), CI(dim), CI(n_layers), CI(n_heads), CI(n_kv_heads), CI(head_dim), CI(ffn_dim),
    CI(max_seq_len), CI(tie_embeddings), CI(qkv_bias), CI(rope_original_max_pos),
    CF(rope_theta), CF(rms_eps), CF(rope_factor), CF(rope_low_freq_factor), CF(rope_high_freq_factor),
};
#define N_CFG ((int)(sizeof CFG / sizeof CFG[0]))
static const char *ROPE_SCALING[] = {"none", "llama3", "freqs"};   // ROPE_NONE, ROPE_LLAMA3, ROPE_FREQS
static const char *rope_name(int v) { return v >= ROPE_NONE && v <= ROPE_FREQS ? ROPE_SCALING[v] : "(invalid)"; }

static int *cfg_int(ModelConfig *c, const CfgField *f) { return (int *)((char *)c + f->off); }
static float *cfg_float(ModelConfig *c, const CfgField *f) { return (float *)((char *)c + f->off); }

// ---- saving -----------------------------------------------------------------

static void write_config(hid_t f, const ModelConfig *c) {
    hid_t g = h5_group(f, "config");
    ModelConfig cc = *c;
    for (int i = 0; i < N_CFG; i++) {
        if (CFG[i].is_float) h5_attr_write_f64(g, CFG[i].name, *cfg_float(&cc, &CFG[i]));
        else h5_attr_write_i64(g, CFG[i].name, *cfg_int(&cc, &CFG[i]));
    }
    check(c->rope_scaling >= ROPE_NONE && c->rope_scaling <= ROPE_FREQS, "bad rope_scaling %d", c->rope_scaling);
    h5_attr_write_str(g, "rope_scaling", rope_name(c->rope_scaling));
    if (c->rope_scaling == ROPE_FREQS) h5_write_f32(g, "rope_freqs", 1, (long[1]){c->head_dim / 2}, c->rope_freqs);
    h5_group_close(g);
}

// A flat device buffer laid out like a parameter table (params, adapters or a
// moment) of which this rank holds elements [lo, hi) (ZeRO-1's shard; whole: 0, n).
typedef struct { float *data; size_t lo, hi, n; } Flat;

static Flat whole_flat(float *data, size_t n) { return (Flat){data, 0, n, n}; }

// The trainable master (m->params, or the adapters'): o's shard while a ZeRO-1 optimizer holds it
static Flat trainable_master(const Model *m, const AdamW *o) {
    const size_t n = m->lora ? m->lora->numel : m->numel;
    if (o && o->master) return (Flat){o->master, o->lo, o->hi, n};
    check(model_trainable_master(m) != NULL, "internal: a checkpoint of sharded master weights without their optimizer");
    return whole_flat(model_trainable_master(m), n);
}

static Flat moment_flat(const AdamW *o, float *data) { return (Flat){data, o->lo, o->hi, o->numel}; }

// Writes flat as named tensors under group name, staging each tensor through host;
// a sharded flat is gathered to rank 0 tensor by tensor (every rank calls this,
// rank 0 alone writes: f is H5I_INVALID_HID on the others).
static void save_table(hid_t f, const char *name, const Backend *be, const ParamInfo *table, int count, Flat flat,
                       float *host) {
    const int sharded = flat.hi - flat.lo < flat.n, root = f != H5I_INVALID_HID;
    if (!sharded && !root) return;
    hid_t g = root ? h5_group(f, name) : H5I_INVALID_HID;
    for (int i = 0; i < count; i++) {
        const ParamInfo *p = &table[i];
        long dims[MAX_PARAM_RANK];
        for (int r = 0; r < p->rank; r++) dims[r] = p->shape[r];
        if (sharded) dist_gather_shards(dist_world(), be, flat.data, flat.n, p->offset, p->offset + p->numel, host);
        else be->download(host, flat.data + p->offset, p->numel * sizeof(float));
        if (root) h5_write_f32(g, p->name, p->rank, dims, host);
    }
    if (root) h5_group_close(g);
}

static void save_tensors(hid_t f, const char *name, const Model *m, Flat flat, float *host) {
    save_table(f, name, m->be, m->table, m->n_params, flat, host);
}

// /lora: the adapter config as attributes (see docs/checkpoint.md)
static void write_lora_config(hid_t f, const LoraConfig *c) {
    char targets[64];
    hid_t g = h5_group(f, "lora");
    h5_attr_write_i64(g, "rank", c->rank);
    h5_attr_write_f64(g, "alpha", c->alpha);
    h5_attr_write_f64(g, "dropout", c->dropout);
    lora_targets_str(c->targets, targets, sizeof targets);
    h5_attr_write_str(g, "targets", targets);
    h5_attr_write_u64v(g, "seed", &c->seed, 1);
    h5_group_close(g);
}


// ---- tokenizer text ---------------------------------------------------------

// 1 MiB chunks of text, as checkpoints have always been written (a real tokenizer.json is larger)
#define TEXT_CHUNK ((size_t)1 << 20)

// tokenizer/<name>: a file's text, bytes verbatim (h5_write_bytes); NULL when absent.
static char *read_text(hid_t f, const char *path, const char *name, size_t *len) {
    char full[128];
    snprintf(full, sizeof full, "tokenizer/%s", name);
    return h5_read_bytes(f, path, full, len);
}

// ---- the run's settings -----------------------------------------------------

static char *run_settings;   // checkpoint_set_settings's text, NULL until a training run sets it

void checkpoint_set_settings(const char *ini_text) {
    free(run_settings);
    run_settings = NULL;
    if (!ini_text) return;
    run_settings = xmalloc(strlen(ini_text) + 1);
    strcpy(run_settings, ini_text);
}

void checkpoint_save(const char *path, const Model *m, const AdamW *opt, const TrainState *st) {
    const int root = dist_is_root(dist_world());
    const int sharded = opt && opt->hi - opt->lo < opt->numel;
    if (!root && !sharded) return;
    size_t biggest = 0;
    for (int i = 0; i < m->n_params; i++) if (m->table[i].numel > biggest) biggest = m->table[i].numel;
    float *host = root ? xmalloc(biggest * sizeof(float)) : NULL;   // one tensor at a time (the others only send)
    const Lora *lo = m->lora;
    AtomicFile *out = root ? atomic_begin(path, NULL) : NULL;
    hid_t f = root ? h5_create_checksummed(out->tmp) : H5I_INVALID_HID;
    if (root) {
        h5_attr_write_str(f, "format", CKPT_FORMAT);
        // version 1 unless the file needs 2, so older sprec reads every file it can run
        h5_attr_write_i64(f, "version", m->cfg.rope_scaling == ROPE_FREQS ? 2 : 1);
        write_config(f, &m->cfg);
    }
    save_tensors(f, "params", m, lo ? whole_flat(m->params, m->numel) : trainable_master(m, opt), host);
    if (root && m->tokenizer_json) {
        hid_t g = h5_group(f, "tokenizer");
        h5_write_bytes(g, "tokenizer.json", m->tokenizer_json, m->tokenizer_json_len, TEXT_CHUNK);
        if (m->tokenizer_config_json)
            h5_write_bytes(g, "tokenizer_config.json", m->tokenizer_config_json, m->tokenizer_config_json_len,
                           TEXT_CHUNK);
        h5_group_close(g);
    }
    if (lo) {
        if (root) write_lora_config(f, &lo->cfg);
        save_table(f, "lora/params", m->be, lo->table, lo->n_params, trainable_master(m, opt), host);
    }
    if (opt) {
        const size_t want = lo ? lo->numel : m->numel;
        check(opt->numel == want, "optimizer has %zu moments for %zu trainable values", opt->numel, want);
        if (root) {
            hid_t g = h5_group(f, "optim");
            h5_attr_write_i64(g, "step", opt->step);
            h5_attr_write_f64(g, "beta1", opt->beta1);
            h5_attr_write_f64(g, "beta2", opt->beta2);
            h5_attr_write_f64(g, "eps", opt->eps);
            h5_attr_write_f64(g, "weight_decay", opt->weight_decay);
            h5_attr_write_f64(g, "grad_clip", opt->grad_clip);
            h5_attr_write_i64(g, "decay_norms", opt->decay_norms);
            h5_group_close(g);
        }
        if (lo) {   // the base is frozen: moments of the adapters only
            save_table(f, "lora/optim/m", m->be, lo->table, lo->n_params, moment_flat(opt, opt->m), host);
            save_table(f, "lora/optim/v", m->be, lo->table, lo->n_params, moment_flat(opt, opt->v), host);
        } else {
            save_tensors(f, "optim/m", m, moment_flat(opt, opt->m), host);
            save_tensors(f, "optim/v", m, moment_flat(opt, opt->v), host);
        }
    }
    free(host);
    if (!root) return;
    if (st) {
        hid_t g = h5_group(f, "state");
        h5_attr_write_i64(g, "step", st->step);
        h5_attr_write_i64(g, "epoch", st->epoch);
        h5_attr_write_i64(g, "epoch_pos", st->epoch_pos);
        h5_attr_write_u64v(g, "rng", st->rng, 4);
        h5_attr_write_f64(g, "last_loss", st->last_loss);
        h5_attr_write_str(g, "stage", st->stage);
        if (run_settings) h5_write_bytes(g, "settings", run_settings, strlen(run_settings), 0);
        h5_group_close(g);
    }
    static long saves;   // this process's, for SPREC_FAULT=kill@ckpt.write:N (docs/testing.md)
    fault_point("ckpt.write", ++saves);
    h5_flush(f);
    h5_close(f);
    atomic_commit(out);
}

// ---- loading ----------------------------------------------------------------

static int read_format(hid_t f, const char *path) {
    char format[64];
    if (!h5_attr_has(f, "format")) fail("%s: not a sprec checkpoint (no 'format' attribute on /)", path);
    h5_attr_read_str(f, path, "format", format, sizeof format);
    if (strcmp(format, CKPT_FORMAT) != 0) fail("%s: not a sprec checkpoint (format is '%s')", path, format);
    int64_t version = h5_attr_read_i64(f, path, "version");
    if (version > CKPT_VERSION)
        fail("%s: checkpoint version %lld is newer than this sprec reads (%d); update sprec", path,
             (long long)version, CKPT_VERSION);
    if (version < 1) fail("%s: invalid checkpoint version %lld", path, (long long)version);
    return (int)version;
}

// Reads /config without judging the values (info shows odd files too).
static void read_config(hid_t f, const char *path, ModelConfig *c) {
    if (!h5_exists(f, "config")) fail("%s: missing group /config", path);
    hid_t g = h5_group(f, "config");
    memset(c, 0, sizeof *c);
    for (int i = 0; i < N_CFG; i++) {
        if (CFG[i].is_float) {
            double v = h5_attr_read_f64(g, path, CFG[i].name);
            if (!isfinite((float)v)) fail("%s: config attribute %s = %g is not a finite float32", path, CFG[i].name, v);
            *cfg_float(c, &CFG[i]) = (float)v;
        } else {
            int64_t v = h5_attr_read_i64(g, path, CFG[i].name);
            if (v < INT_MIN || v > INT_MAX) fail("%s: config attribute %s = %lld is out of range", path, CFG[i].name,
                                                 (long long)v);
            *cfg_int(c, &CFG[i]) = (int)v;
        }
    }
    char s[32];
    h5_attr_read_str(g, path, "rope_scaling", s, sizeof s);
    c->rope_scaling = -1;
    for (int i = ROPE_NONE; i <= ROPE_FREQS; i++) if (strcmp(s, ROPE_SCALING[i]) == 0) c->rope_scaling = i;
    if (c->rope_scaling < 0)
        fail("%s: config attribute rope_scaling = '%s' (expected 'none', 'llama3' or 'freqs')", path, s);
    const int has_freqs = h5_exists(g, "rope_freqs");
    if (c->rope_scaling == ROPE_FREQS) {
        if (c->head_dim < 2 || c->head_dim / 2 > ROPE_MAX_PAIRS)
            fail("%s: config head_dim = %d cannot have rope_freqs (2 to %d)", path, c->head_dim, 2 * ROPE_MAX_PAIRS);
        if (!has_freqs) fail("%s: rope_scaling = 'freqs' but /config/rope_freqs is missing", path);
        h5_read_f32_into(g, path, "rope_freqs", 1, (long[1]){c->head_dim / 2}, c->rope_freqs);
    } else if (has_freqs) {
        fail("%s: /config/rope_freqs is present but rope_scaling = '%s' (not 'freqs')", path, s);
    }
    h5_group_close(g);
}

void checkpoint_read_config(const char *path, ModelConfig *c) {
    hid_t f = h5_open_read(path);
    read_format(f, path);
    read_config(f, path, c);
    h5_close(f);
    model_config_validate(c, path);
}

char *checkpoint_read_settings(const char *path) {
    hid_t f = h5_open_read(path);
    read_format(f, path);
    size_t len = 0;
    char *text = h5_read_bytes(f, path, "state/settings", &len);
    h5_close(f);
    if (text && memchr(text, 0, len)) fail("%s: /state/settings holds a NUL byte", path);
    return text;
}

static void shape_str(char *buf, size_t cap, int rank, const long *dims) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < rank && n < cap; i++) n += (size_t)snprintf(buf + n, cap - n, "%s%ld", i ? "," : "", dims[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

// Checks that group name holds exactly the model's tensors, with the model's
// shapes, then uploads each (this rank's part of it, for a shard) into flat.
static void load_table(hid_t f, const char *path, const char *name, const Backend *be, const ParamInfo *table,
                       int count, Flat flat, float *host) {
    if (!h5_exists(f, name)) fail("%s: missing group /%s", path, name);
    int n;
    char **names = h5_list(f, path, name, &n);
    for (int i = 0; i < n; i++)
        if (!param_find(table, count, names[i]))
            fail("%s: unexpected tensor %s/%s (not a parameter of this model)", path, name, names[i]);
    h5_list_free(names, n);

    hid_t g = h5_group(f, name);
    // all names and shapes first, so a mismatch fails before any slow read
    for (int i = 0; i < count; i++) {
        const ParamInfo *p = &table[i];
        long dims[8], want[MAX_PARAM_RANK];
        char have_s[128], want_s[128];
        if (!h5_exists(g, p->name)) fail("%s: missing tensor %s/%s", path, name, p->name);
        int rank = h5_shape(g, path, p->name, dims);
        int ok = rank == p->rank;
        for (int r = 0; r < p->rank; r++) {
            want[r] = p->shape[r];
            ok = ok && r < rank && dims[r] == want[r];
        }
        if (!ok) {
            shape_str(have_s, sizeof have_s, rank, dims);
            shape_str(want_s, sizeof want_s, p->rank, want);
            fail("%s: %s/%s has shape %s, model expects %s", path, name, p->name, have_s, want_s);
        }
    }
    for (int i = 0; i < count; i++) {
        const ParamInfo *p = &table[i];
        long dims[MAX_PARAM_RANK];
        for (int r = 0; r < p->rank; r++) dims[r] = p->shape[r];
        const size_t a = p->offset > flat.lo ? p->offset : flat.lo;
        const size_t b = p->offset + p->numel < flat.hi ? p->offset + p->numel : flat.hi;
        if (a >= b) continue;
        h5_read_f32_into(g, path, p->name, p->rank, dims, host);
        be->upload(flat.data + (a - flat.lo), host + (a - p->offset), (b - a) * sizeof(float));
    }
    h5_group_close(g);
}

static void load_tensors(hid_t f, const char *path, const char *name, const Model *m, Flat flat, float *host) {
    load_table(f, path, name, m->be, m->table, m->n_params, flat, host);
}

// Reads /lora's attributes into c (validated).
static void read_lora_config(hid_t f, const char *path, LoraConfig *c) {
    hid_t g = h5_group(f, "lora");
    char targets[128], err[160];
    memset(c, 0, sizeof *c);
    int64_t rank = h5_attr_read_i64(g, path, "rank");
    if (rank < 1 || rank > INT_MAX) fail("%s: lora rank = %lld is out of range", path, (long long)rank);
    c->rank = (int)rank;
    c->alpha = (float)h5_attr_read_f64(g, path, "alpha");
    c->dropout = (float)h5_attr_read_f64(g, path, "dropout");
    h5_attr_read_str(g, path, "targets", targets, sizeof targets);
    if (lora_parse_targets(targets, &c->targets, err, sizeof err) != 0) fail("%s: lora targets: %s", path, err);
    h5_attr_read_u64v(g, path, "seed", &c->seed, 1);
    h5_group_close(g);
    lora_config_validate(c, path);
}

// Names the first differing field of two configs, or returns 0.
static int config_diff(const ModelConfig *a, const ModelConfig *b, char *buf, size_t cap) {
    ModelConfig x = *a, y = *b;
    for (int i = 0; i < N_CFG; i++) {
        const CfgField *fl = &CFG[i];
        if (fl->is_float && *cfg_float(&x, fl) != *cfg_float(&y, fl)) {
            snprintf(buf, cap, "%s = %.9g in the file, %.9g in the model", fl->name, (double)*cfg_float(&x, fl),
                     (double)*cfg_float(&y, fl));
            return 1;
        }
        if (!fl->is_float && *cfg_int(&x, fl) != *cfg_int(&y, fl)) {
            snprintf(buf, cap, "%s = %d in the file, %d in the model", fl->name, *cfg_int(&x, fl), *cfg_int(&y, fl));
            return 1;
        }
    }
    if (x.rope_scaling != y.rope_scaling) {
        snprintf(buf, cap, "rope_scaling = %s in the file, %s in the model", rope_name(x.rope_scaling),
                 rope_name(y.rope_scaling));
        return 1;
    }
    for (int i = 0; x.rope_scaling == ROPE_FREQS && i < x.head_dim / 2; i++)
        if (x.rope_freqs[i] != y.rope_freqs[i]) {
            snprintf(buf, cap, "rope_freqs[%d] = %.9g in the file, %.9g in the model", i, (double)x.rope_freqs[i],
                     (double)y.rope_freqs[i]);
            return 1;
        }
    return 0;
}

int checkpoint_load(const char *path, Model *m, AdamW *opt, TrainState *st) {
    hid_t f = h5_open_read(path);
    read_format(f, path);
    ModelConfig c;
    char diff[256];
    read_config(f, path, &c);
    if (config_diff(&c, &m->cfg, diff, sizeof diff)) fail("%s: config mismatch: %s", path, diff);

    size_t biggest = 0;
    for (int i = 0; i < m->n_params; i++) if (m->table[i].numel > biggest) biggest = m->table[i].numel;
    float *host = xmalloc(biggest * sizeof(float));
    // (a ZeRO-1 optimizer given here holds the trainable master as shards: each rank loads its own)
    load_tensors(f, path, "params", m, m->lora ? whole_flat(m->params, m->numel) : trainable_master(m, opt), host);
    // adapters: a LoRA checkpoint enables LoRA on a model without it (export,
    // evaluation); a model with LoRA needs the same adapter config. A model
    // with LoRA loading a checkpoint without /lora keeps its fresh adapters
    // (starting LoRA training from a base model).
    const int has_lora = h5_exists(f, "lora");
    if (has_lora) {
        LoraConfig lc;
        read_lora_config(f, path, &lc);
        if (!m->lora) model_enable_lora(m, &lc);
        const LoraConfig *mc = &m->lora->cfg;
        if (mc->rank != lc.rank || mc->alpha != lc.alpha || mc->dropout != lc.dropout || mc->targets != lc.targets ||
            mc->seed != lc.seed)
            fail("%s: LoRA config mismatch: the file has rank %d alpha %g dropout %g targets 0x%x seed %llu, the model "
                 "rank %d alpha %g dropout %g targets 0x%x seed %llu", path, lc.rank, lc.alpha, lc.dropout, lc.targets,
                 (unsigned long long)lc.seed, mc->rank, mc->alpha, mc->dropout, mc->targets,
                 (unsigned long long)mc->seed);
        const Lora *lo = m->lora;
        size_t big = 0;
        for (int i = 0; i < lo->n_params; i++) if (lo->table[i].numel > big) big = lo->table[i].numel;
        if (big > biggest) { free(host); host = xmalloc(big * sizeof(float)); biggest = big; }
        load_table(f, path, "lora/params", m->be, lo->table, lo->n_params, trainable_master(m, opt), host);
    }
    if (opt) adamw_sync_compute(opt, m);   // the ops read the compute copy
    else model_sync_compute(m);
    free(m->tokenizer_json);
    free(m->tokenizer_config_json);
    m->tokenizer_json = read_text(f, path, "tokenizer.json", &m->tokenizer_json_len);
    m->tokenizer_config_json = read_text(f, path, "tokenizer_config.json", &m->tokenizer_config_json_len);

    int has_optim = h5_exists(f, "optim");
    if (has_optim && opt) {
        const Lora *lo = m->lora;
        if (lo && !has_lora)
            fail("%s: the checkpoint has full fine-tuning optimizer state but the model trains LoRA adapters", path);
        if (!lo && has_lora) fail("%s: internal: LoRA checkpoint loaded without adapters", path);
        const size_t want = lo ? lo->numel : m->numel;
        check(opt->numel == want, "optimizer has %zu moments for %zu trainable values (create it after enabling LoRA)",
              opt->numel, want);
        hid_t g = h5_group(f, "optim");
        int64_t step = h5_attr_read_i64(g, path, "step");
        if (step < 0) fail("%s: optim step = %lld is negative", path, (long long)step);
        opt->step = (long)step;
        h5_group_close(g);
        if (lo) {
            load_table(f, path, "lora/optim/m", m->be, lo->table, lo->n_params, moment_flat(opt, opt->m), host);
            load_table(f, path, "lora/optim/v", m->be, lo->table, lo->n_params, moment_flat(opt, opt->v), host);
        } else {
            load_tensors(f, path, "optim/m", m, moment_flat(opt, opt->m), host);
            load_tensors(f, path, "optim/v", m, moment_flat(opt, opt->v), host);
        }
    }
    if (st && h5_exists(f, "state")) {
        hid_t g = h5_group(f, "state");
        st->step = (long)h5_attr_read_i64(g, path, "step");
        st->epoch = (long)h5_attr_read_i64(g, path, "epoch");
        st->epoch_pos = (long)h5_attr_read_i64(g, path, "epoch_pos");
        h5_attr_read_u64v(g, path, "rng", st->rng, 4);
        st->last_loss = h5_attr_read_f64(g, path, "last_loss");
        h5_attr_read_str(g, path, "stage", st->stage, sizeof st->stage);
        h5_group_close(g);
    }
    free(host);
    h5_close(f);
    return has_optim;
}

// ---- info -------------------------------------------------------------------

// "layers.2" before "layers.10": compare digit runs as numbers.
static int natural_cmp(const void *pa, const void *pb) {
    const char *a = *(char *const *)pa, *b = *(char *const *)pb;
    while (*a && *b) {
        if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
            char *ea, *eb;
            unsigned long na = strtoul(a, &ea, 10), nb = strtoul(b, &eb, 10);
            if (na != nb) return na < nb ? -1 : 1;
            a = ea;
            b = eb;
        } else {
            if (*a != *b) return (unsigned char)*a - (unsigned char)*b;
            a++;
            b++;
        }
    }
    return (unsigned char)*a - (unsigned char)*b;
}

// Lists the tensors of a group; returns the number of elements in them.
static size_t list_tensors(hid_t f, const char *path, const char *name, FILE *out, int verbose, int *count) {
    int n;
    char **names = h5_list(f, path, name, &n);
    qsort(names, (size_t)n, sizeof *names, natural_cmp);
    hid_t g = h5_group(f, name);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        long dims[8];
        char s[160];
        int rank = h5_shape(g, path, names[i], dims);
        size_t numel = 1;
        for (int r = 0; r < rank; r++) numel *= (size_t)dims[r];
        total += numel;
        shape_str(s, sizeof s, rank, dims);
        if (verbose) fprintf(out, "  %-52s %-16s %zu\n", names[i], s, numel);
    }
    h5_group_close(g);
    h5_list_free(names, n);
    *count = n;
    return total;
}

void checkpoint_info(const char *path, FILE *out) {
    hid_t f = h5_open_read(path);
    int version = read_format(f, path);
    ModelConfig c;
    read_config(f, path, &c);
    fprintf(out, "%s: %s version %d\n\nconfig:\n", path, CKPT_FORMAT, version);
    for (int i = 0; i < N_CFG; i++) {
        if (CFG[i].is_float) fprintf(out, "  %-24s %g\n", CFG[i].name, (double)*cfg_float(&c, &CFG[i]));
        else fprintf(out, "  %-24s %d\n", CFG[i].name, *cfg_int(&c, &CFG[i]));
    }
    fprintf(out, "  %-24s %s\n", "rope_scaling", rope_name(c.rope_scaling));
    if (c.rope_scaling == ROPE_FREQS) {
        fprintf(out, "  %-24s", "rope_freqs");
        for (int i = 0; i < c.head_dim / 2; i++) fprintf(out, " %g", (double)c.rope_freqs[i]);
        fprintf(out, "\n");
    }

    int n;
    size_t total = list_tensors(f, path, "params", out, 0, &n);
    fprintf(out, "\nparams: %d tensors, %zu parameters (%.2f M, %.1f MiB as float32)\n", n, total, total / 1e6,
            total * 4.0 / (1 << 20));
    list_tensors(f, path, "params", out, 1, &n);

    size_t tlen, clen;
    char *tok = read_text(f, path, "tokenizer.json", &tlen), *tcfg = read_text(f, path, "tokenizer_config.json", &clen);
    if (tok) fprintf(out, "\ntokenizer: tokenizer.json %zu bytes, tokenizer_config.json %s\n", tlen,
                     tcfg ? "present" : "absent");
    else fprintf(out, "\ntokenizer: none\n");
    free(tok);
    free(tcfg);

    if (h5_exists(f, "lora")) {
        LoraConfig lc;
        char targets[64];
        read_lora_config(f, path, &lc);
        lora_targets_str(lc.targets, targets, sizeof targets);
        size_t nl = list_tensors(f, path, "lora/params", out, 0, &n);
        fprintf(out, "\nlora: rank %d, alpha %g, dropout %g, targets %s, seed %llu; %d adapter tensors, %zu parameters "
                "(%.2f M)%s\n", lc.rank, lc.alpha, lc.dropout, targets, (unsigned long long)lc.seed, n, nl, nl / 1e6,
                h5_exists(f, "lora/optim") ? ", with AdamW moments" : "");
    }

    if (h5_exists(f, "optim")) {
        hid_t g = h5_group(f, "optim");
        fprintf(out, "\noptimizer: AdamW step %lld, beta1 %g, beta2 %g, eps %g, weight_decay %g, grad_clip %g, "
                "decay_norms %lld\n", (long long)h5_attr_read_i64(g, path, "step"), h5_attr_read_f64(g, path, "beta1"),
                h5_attr_read_f64(g, path, "beta2"), h5_attr_read_f64(g, path, "eps"),
                h5_attr_read_f64(g, path, "weight_decay"), h5_attr_read_f64(g, path, "grad_clip"),
                (long long)h5_attr_read_i64(g, path, "decay_norms"));
        h5_group_close(g);
        int nm = 0, nv = 0;
        if (h5_exists(f, "optim/m")) list_tensors(f, path, "optim/m", out, 0, &nm);
        if (h5_exists(f, "optim/v")) list_tensors(f, path, "optim/v", out, 0, &nv);
        fprintf(out, "  moments: %d m and %d v tensors\n", nm, nv);
    } else {
        fprintf(out, "\noptimizer: none (model-only checkpoint)\n");
    }
    if (h5_exists(f, "state")) {
        hid_t g = h5_group(f, "state");
        char stage[64];
        uint64_t rng[4];
        h5_attr_read_str(g, path, "stage", stage, sizeof stage);
        h5_attr_read_u64v(g, path, "rng", rng, 4);
        fprintf(out, "state: stage '%s', step %lld, epoch %lld, epoch_pos %lld, last_loss %.6g\n", stage,
                (long long)h5_attr_read_i64(g, path, "step"), (long long)h5_attr_read_i64(g, path, "epoch"),
                (long long)h5_attr_read_i64(g, path, "epoch_pos"), h5_attr_read_f64(g, path, "last_loss"));
        fprintf(out, "  rng: %016llx %016llx %016llx %016llx\n", (unsigned long long)rng[0],
                (unsigned long long)rng[1], (unsigned long long)rng[2], (unsigned long long)rng[3]);
        h5_group_close(g);
    } else {
        fprintf(out, "state: none\n");
    }
    h5_close(f);
}
