// The set-up shared by the trainers (train_run.h).
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/types.h>
#include <unistd.h>
#include <cJSON.h>
#include "train_run.h"
#include "train.h"
#include "base/atomic_write.h"
#include "base/dist/dist.h"
#include "base/fault.h"
#include "io/checkpoint.h"
#include "base/fileio.h"
#include "base/h5io.h"
#include "kernels/errors.h"
#include "base/rng.h"
#include "model/device.h"
#include "io/tensorboard.h"
#include "base/progress.h"

// rank 0 writes the run folder's files; the other ranks compute and write nothing
static int root(void) { return dist_is_root(dist_world()); }

// SIGUSR1 (SLURM's --signal before a time limit): noted here, acted on at the
// next point where every rank agrees (train_signal_stop)
static volatile sig_atomic_t usr1_got;
static int stopped_on_signal;
static void on_usr1(int sig) { (void)sig; usr1_got = 1; }

int train_signal_stop(void) {
    double got = usr1_got;
    dist_sum_host(dist_world(), &got, 1);   // a rank may get it a step later than another: any of them counts
    if (got > 0) stopped_on_signal = 1;
    return got > 0;
}

int train_exit_status(void) {
    if (!stopped_on_signal) return 0;
    dist_finish();   // every rank stopped at the same point: end MPI cleanly, not by a failed rank's abort
    return TRAIN_EXIT_RESUMABLE;
}

const Backend *train_start(const Config *cfg) {
    // SA_RESTART: a read, write or wait the signal interrupts goes on
    struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    const Backend *be = device_open(cfg->run.device, cfg->run.threads);
    config_check_ranks(cfg);
    dist_check_backend(dist_world(), be);
    fault_init();
    return be;
}

LoraConfig train_lora_config(const Config *cfg) {
    LoraConfig lc = {.rank = cfg->lora.rank, .alpha = cfg->lora.alpha, .dropout = cfg->lora.dropout,
                     .seed = cfg->lora.seed};
    if (cfg->lora.enabled) {
        char err[128];
        if (lora_parse_targets(cfg->lora.targets, &lc.targets, err, sizeof err) != 0)
            fail("[lora] targets = %s: %s", cfg->lora.targets, err);
        lora_config_validate(&lc, "[lora]");
    }
    return lc;
}

// Takes the advisory lock OUT/.lock (flock, exclusive, not waiting) and writes
// this process's pid into it; the descriptor stays open, so the lock is held
// until the process ends, however it ends (the kernel drops it even after
// SIGKILL; a stale file with a dead pid locks nothing). Held by another process:
// one line naming the folder and the pid the holder wrote.
static void lock_run_dir(const char *out_dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/.lock", out_dir);
    const int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) fail("cannot open %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK) fail("cannot lock %s: %s", path, strerror(errno));
        char pid[32] = {0};
        const ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        fail("%s is in use by another run (pid %s holds %s); wait for it to end or choose another run.out_dir", out_dir,
             pid[0] ? pid : "unknown", path);
    }
    char pid[32];
    const int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len)
        fail("cannot write %s: %s", path, strerror(errno));
}

void train_prepare_run_dir(const char *out_dir, int resume, char *ckpt_path, size_t cap) {
    if (root()) {
        make_dirs(out_dir);
        lock_run_dir(out_dir);
    }
    snprintf(ckpt_path, cap, "%s/checkpoint.h5", out_dir);
    if (resume && !file_exists(ckpt_path)) fail("--resume: no checkpoint at %s", ckpt_path);
    if (!resume && file_exists(ckpt_path))
        fail("%s already holds a checkpoint; pass --resume to continue it or choose another run.out_dir", out_dir);
}

const char *train_create_model(const Config *cfg, const Backend *be, const LoraConfig *lc, const char *ckpt_path,
                               int resume, Model *m) {
    ModelConfig mc = cfg->model;
    const char *source = resume ? ckpt_path : cfg->train.init[0] ? cfg->train.init : NULL;
    if (source) checkpoint_read_config(source, &mc);
    model_create(m, &mc, be);
    // a plain checkpoint then keeps these fresh adapters; a LoRA checkpoint's
    // adapters are continued (checkpoint_load requires its config to equal [lora])
    if (cfg->lora.enabled) model_enable_lora(m, lc);
    return source;
}

void train_check_resume_lora(const char *ckpt_path, int lora_enabled) {
    hid_t f = h5_open_read(ckpt_path);
    const int has_lora = h5_exists(f, "lora");
    h5_close(f);
    if (has_lora && !lora_enabled)
        fail("%s holds LoRA adapters but [lora] enabled = false; resume with the run's own config.ini", ckpt_path);
    if (!has_lora && lora_enabled)
        fail("%s is a full fine-tuning run but [lora] enabled = true; resume with the run's own config.ini", ckpt_path);
}

void train_load_start(const Config *cfg, const char *source, const char *stage, Model *m, AdamW *opt) {
    if (!source) {
        model_init_random(m, cfg->init_seed, cfg->init_std);
    } else {
        checkpoint_load(source, m, NULL, NULL);
        if (m->lora && !cfg->lora.enabled) {   // full fine-tuning of a LoRA run: start from the merged model
            model_merge_lora(m);
            printf("%s: %s has LoRA adapters: merged into the base weights, training all weights\n", stage, source);
        }
    }
    train_optimizer(cfg, m, opt);
}

void train_optimizer(const Config *cfg, Model *m, AdamW *opt) {
    adamw_create_zero(opt, m, cfg->train.beta1, cfg->train.beta2, cfg->train.eps, cfg->train.weight_decay,
                      cfg->train.grad_clip, cfg->train.decay_norms, cfg->train.zero);
}

static void write_config(const Config *cfg, const char *path, const char *header) {
    AtomicFile *a = atomic_begin(path, NULL);
    FILE *f = atomic_fopen(a, "w");
    if (header) fprintf(f, "%s\n", header);
    config_write(cfg, f);
    atomic_commit(a);
}

void train_record_config(const Config *cfg, int resume) {
    if (!root()) return;
    char path[CONFIG_PATH_MAX + 16], ckpt[CONFIG_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/config.ini", cfg->run.out_dir);
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.h5", cfg->run.out_dir);
    char *now = config_text(cfg, 1, NULL);
    checkpoint_set_settings(now);   // every checkpoint of the run records them
    free(now);
    if (!resume) { write_config(cfg, path, NULL); return; }
    // the settings the run was started with: the checkpoint's record, else (a checkpoint from before the
    // records) config.ini
    char *recorded = checkpoint_read_settings(ckpt);
    const int has_ini = file_exists(path);
    if (!recorded && !has_ini) {
        printf("resume: %s is missing, so the settings cannot be compared; it is written now\n", path);
        write_config(cfg, path, NULL);
        return;
    }
    Config was;
    config_defaults(&was);
    if (recorded) config_load_text(&was, recorded, ckpt);
    else config_load(&was, path);
    const char *source = recorded ? ckpt : path;
    free(recorded);
    config_resolve(&was);
    char diff[2048];
    const int n = config_diff(&was, cfg, diff, sizeof diff);
    if (n && resume != TRAIN_RESUME_ACCEPT)
        fail("--resume: %d setting%s differ%s from the run's %s: %s; resume with the run's own config.ini, or pass "
             "--accept-changes to continue with the new values", n, n > 1 ? "s" : "", n > 1 ? "" : "s", source, diff);
    // a deleted config.ini comes back with the run's own settings
    if (!has_ini) write_config(n ? &was : cfg, path, n ? "; the run's settings as its checkpoint records them" : NULL);
    if (n == 0) return;
    // accepted: the run's config.ini stays as it was; the settings it continues with go beside it
    char next[CONFIG_PATH_MAX + 32], header[2200];
    for (int k = 1;; k++) {
        snprintf(next, sizeof next, "%s/config-resume-%d.ini", cfg->run.out_dir, k);
        if (!file_exists(next)) break;
    }
    snprintf(header, sizeof header, "; resumed with --accept-changes; %d setting%s changed from config.ini: %s", n,
             n > 1 ? "s" : "", diff);
    write_config(cfg, next, header);
    printf("resume: continuing with %d changed setting%s (--accept-changes): %s; the run's config.ini is kept, the "
           "settings now are in %s\n", n, n > 1 ? "s" : "", diff, next);
}

void train_filter_log(const char *path, int (*keep)(const char *line, size_t len, const void *arg), const void *arg) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    AtomicFile *a = atomic_begin(path, NULL);
    FILE *o = atomic_fopen(a, "w");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0)
        if (keep(line, (size_t)len, arg)) fputs(line, o);
    free(line);
    fclose(f);
    atomic_commit(a);
}

// SFT / DPO: the lines whose "step" is at most the checkpoint's; a line cut
// short by a crash (no newline) goes too
static int step_at_most(const char *line, size_t len, const void *arg) {
    const char *q = strstr(line, "\"step\": ");
    return q && line[len - 1] == '\n' && atol(q + strlen("\"step\": ")) <= *(const long *)arg;
}

FILE *train_open_log(const Config *cfg, const char *name, int resume, long keep_step) {
    if (!root()) return NULL;
    char path[CONFIG_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", cfg->run.out_dir, name);
    if (resume && keep_step >= 0) train_filter_log(path, step_at_most, &keep_step);
    return log_open(path, resume);
}

// The writer, and the previous step of the loop that logged last (for the rates)
struct TrainTb { TbWriter *w; const char *name; double t; long tokens; };

TrainTb *train_open_tb(const Config *cfg) {
    if (!root() || !cfg->run.tensorboard) return NULL;
    char dir[CONFIG_PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/tensorboard", cfg->run.out_dir);
    TrainTb *tb = xcalloc(1, sizeof *tb);
    tb->w = tb_open(dir);
    return tb;
}

#define TB_MAX_SCALARS 64
void train_tb_json(TrainTb *tb, const char *prefix, long step, const char *json) {
    if (!tb) return;
    cJSON *o = cJSON_Parse(json), *e;
    char *tags[TB_MAX_SCALARS];
    double v[TB_MAX_SCALARS];
    int n = 0;
    cJSON_ArrayForEach(e, o) {
        if (!cJSON_IsNumber(e) || !strcmp(e->string, "step") || !strcmp(e->string, "iteration") || n == TB_MAX_SCALARS) continue;
        const size_t len = strlen(prefix) + strlen(e->string) + 2;
        tags[n] = xmalloc(len);
        snprintf(tags[n], len, "%s/%s", prefix, e->string);
        v[n++] = e->valuedouble;
    }
    cJSON_Delete(o);
    tb_scalars(tb->w, step, (const char *const *)tags, v, n);
    for (int i = 0; i < n; i++) free(tags[i]);
}

void train_tb_close(TrainTb *tb) {
    if (!tb) return;
    tb_close(tb->w);
    free(tb);
}

// NAME/steps_per_s and NAME/tokens_per_s over the time since the loop's
// previous step (none for a loop's first step: the time before it was not training)
static void tb_rates(TrainTb *tb, const TrainLoop *l) {
    const double t = now_seconds();
    const long tokens = l->tokens ? *l->tokens : 0;
    if (tb->name == l->name && t > tb->t) {
        char a[96], b[96];
        snprintf(a, sizeof a, "%s/steps_per_s", l->name);
        snprintf(b, sizeof b, "%s/tokens_per_s", l->name);
        const char *tags[2] = {a, b};
        const double v[2] = {1.0 / (t - tb->t), (double)(tokens - tb->tokens) / (t - tb->t)};
        tb_scalars(tb->w, l->st->step, tags, v, l->tokens ? 2 : 1);
    }
    tb->name = l->name;
    tb->t = t;
    tb->tokens = tokens;
}

const char *train_begin(const Config *cfg, const Backend *be, const LoraConfig *lc, const char *ckpt_path,
                        int resume, const char *stage, uint64_t seed, const char *seed_key, Model *m, AdamW *opt,
                        TrainState *st) {
    const char *source = train_create_model(cfg, be, lc, ckpt_path, resume, m);
    if (resume) train_check_resume_lora(ckpt_path, cfg->lora.enabled);
    memset(st, 0, sizeof *st);
    snprintf(st->stage, sizeof st->stage, "%s", stage);
    // the generator state is recorded, so a resume with another seed (another
    // data order) is caught
    Rng seeded;
    rng_seed(&seeded, seed);
    memcpy(st->rng, seeded.s, sizeof st->rng);
    if (resume) {
        train_optimizer(cfg, m, opt);   // ZeRO-1: the load fills this rank's shards
        const int has_opt = checkpoint_load(ckpt_path, m, opt, st);
        if (strcmp(st->stage, stage) != 0)
            fail("%s holds a '%s' run, not a '%s' one: resume it with the method that made it (its config.ini), or "
                 "choose another run.out_dir", ckpt_path, st->stage, stage);
        if (!has_opt) fail("%s has no optimizer state; cannot resume", ckpt_path);
        if (memcmp(st->rng, seeded.s, sizeof st->rng) != 0)
            fail("%s is not a '%s' run with this %s (a seed mismatch); resume with the run's own config.ini",
                 ckpt_path, stage, seed_key);
    } else {
        train_load_start(cfg, source, stage, m, opt);
    }
    return source;
}

int train_loop_last(const TrainLoop *l) {
    return l->st->step == l->total || l->st->step == l->stop_at;
}

// the loop's checkpoint of st->step (rank 0 writes it)
static void loop_checkpoint(const TrainLoop *l) {
    checkpoint_save(l->ckpt_path, l->m, l->opt, l->st);   // every rank: ZeRO-1's shards stream to rank 0
}

int train_loop_step(const TrainLoop *l, const char *fmt, ...) {
    const long step = l->st->step;
    if (l->log) {
        va_list ap;
        va_start(ap, fmt);
        vfprintf(l->log, fmt, ap);
        va_end(ap);
        fputc('\n', l->log);
        log_flush(l->log);   // (a full disk: one line naming the log, at the step that met it)
    }
    if (l->tb) {
        char line[4096];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        train_tb_json(l->tb, l->name, step, line);
        tb_rates(l->tb, l);
    }
    const int last = train_loop_last(l);
    const int saved = l->ckpt_path && (last || (l->ckpt_every > 0 && step % l->ckpt_every == 0));
    if (saved) loop_checkpoint(l);
    fault_point(l->name, step);
    // SIGUSR1 on any rank: the checkpoint of this step, and stop (a last step ends the run anyway); the SPRec
    // loop's stages (no ckpt_path) stop at their stage checkpoints instead (train_sprec.c)
    if (l->ckpt_path && !last && train_signal_stop()) {
        if (!saved) loop_checkpoint(l);
        printf("%s: SIGUSR1 at step %ld: checkpoint written, stopping; --resume continues\n", l->name, step);
        return 1;
    }
    if (step != l->stop_at) return 0;
    printf("%s: stopped at step %d as asked (--stop-at)\n", l->name, l->stop_at);
    return 1;
}

void train_loop_end(const TrainLoop *l) {
    log_close(l->log);
    train_tb_close(l->tb);
    if (l->m->lora) lora_set_train(l->m, 0, 0);
    printf("%s: checkpoint %s (step %ld, loss %.4f)\n", l->name, l->ckpt_path, l->st->step, l->st->last_loss);
}
