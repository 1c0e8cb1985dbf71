// sprec eval CONFIG.ini [--model CKPT] [--split test|valid] [-o DIR] [--iteration N]
// Ranks every row of a split of [data] dataset with catalogue-constrained beam
// search (or, with [eval] mode = unconstrained, greedy text grounded to the
// catalogue by L2 distance of hidden states) and reports NDCG, HR, DivRatio, ORRatio, MGU, DGU (docs/eval.md):
// OUT/topk-SPLIT.jsonl (one line per row), one line appended to
// OUT/metrics.jsonl, and the table on stdout.
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "commands.h"
#include "io/checkpoint.h"
#include "model/lora.h"
#include "model/device.h"
#include "rec/recdata.h"
#include "rec/evaluate.h"
#include "base/atomic_write.h"
#include "base/dist/dist.h"
#include "base/fileio.h"
#include "kernels/errors.h"

#define MAX_KS 16


int cmd_eval(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        printf("usage: sprec eval CONFIG.ini [--model CKPT.h5] [--split test|valid] [-o DIR] [--iteration N]\n"
               "         [--device cpu|cpu-bf16|cuda] [--section.key=value ...]\n"
               "Ranks every row of a split of [data] dataset (prepared with the model's tokenizer) by\n"
               "catalogue-constrained beam search ([eval] mode = unconstrained: one greedy title per row, items\n"
               "ranked by L2 distance of mean-pooled hidden states, catalogue embeddings cached in the dataset\n"
               "file; [eval] mode = paper: the SPRec paper's protocol, greedy text embedded by the sentence encoder\n"
               "[eval] encoder) and computes NDCG, HR, DivRatio, ORRatio, MGU and DGU at each K (docs/eval.md). Writes\n"
               "DIR/topk-SPLIT.jsonl (one line per row), appends one line to DIR/metrics.jsonl (label [eval]\n"
               "label, iteration N or null) and prints the table.\n"
               "  --model    overrides [eval] model;  --split overrides [eval] split;  -o overrides [eval] out_dir\n\n"
               "keys ([eval] section; all keys: docs/config.md):\n");
        char line[512];
        FILE *mem = fmemopen(NULL, 1 << 16, "w+");
        check(mem != NULL, "fmemopen failed");
        config_print_help(mem);
        rewind(mem);
        while (fgets(line, sizeof line, mem)) if (strstr(line, "[eval] ")) fputs(line, stdout);
        fclose(mem);
        return 0;
    }
    const char *config_path = NULL, *model_path = NULL, *split = NULL, *out_dir = NULL, *device = NULL;
    int iteration = -1;   // metrics.jsonl's iteration: null
    const CliFlag flags[] = {ARG_OPERAND("CONFIG.ini", &config_path), ARG_PATH("--model", &model_path, CLI_OPTIONAL),
                             ARG_STR("--split", &split), ARG_PATH("-o", &out_dir, CLI_OPTIONAL),
                             ARG_INT("--iteration", &iteration, 0, INT_MAX), ARG_STR("--device", &device), ARG_END};
    Config cfg;
    cli_load_config(&cfg, "eval", argc, argv, flags);
    if (!model_path) model_path = cfg.eval.model;
    if (!*model_path) fail("sprec eval: no model (set [eval] model or give --model CKPT.h5)");
    if (!split) split = cfg.eval.split;
    if (strcmp(split, "test") && strcmp(split, "valid"))
        fail("sprec eval: --split '%s': must be test or valid", split);
    if (!out_dir) out_dir = *cfg.eval.out_dir ? cfg.eval.out_dir : cfg.run.out_dir;
    if (!*out_dir) fail("sprec eval: no output folder (set [eval] out_dir or [run] out_dir, or give -o DIR)");
    int ks[MAX_KS];
    char err[256];
    const int n_ks = evaluate_parse_ks(cfg.eval.ks, ks, MAX_KS, err, sizeof err);
    if (!n_ks) fail("%s: [eval] ks: %s", config_path, err);
    if (!*cfg.data.dataset) fail("sprec eval: no dataset (set [data] dataset)");

    RecData d;
    recdata_load(&d, cfg.data.dataset);
    for (int i = 0; i < n_ks; i++) metrics_check_k(ks[i], d.n_items);   // before the model is loaded
    if (!d.tokenized)
        fail("%s was prepared without a tokenizer: prepare it with [data] tokenizer = the model's checkpoint to "
             "evaluate", cfg.data.dataset);

    const Backend *be = device_open(cfg.run.device, cfg.run.threads);
    config_check_ranks(&cfg);   // under several ranks: the same config everywhere; rank 0 alone writes
    const int root = dist_is_root(dist_world());
    dist_check_backend(dist_world(), be);
    ModelConfig mc;
    checkpoint_read_config(model_path, &mc);
    Model m;
    model_create(&m, &mc, be);
    checkpoint_load(model_path, &m, NULL, NULL);
    // LoRA adapters stay unmerged: decoding runs them as the trainers' evaluation does, so this
    // gives the metrics a SPRec run logged for the same checkpoint

    char topk_path[4096], metrics_path[4096], cfg_out[4096];
    snprintf(topk_path, sizeof topk_path, "%s/topk-%s.jsonl", out_dir, split);
    snprintf(metrics_path, sizeof metrics_path, "%s/metrics.jsonl", out_dir);
    snprintf(cfg_out, sizeof cfg_out, "%s/eval-config.ini", out_dir);
    if (root) {
        make_dirs(out_dir);
        AtomicFile *cfg_file = atomic_begin(cfg_out, NULL);
        config_write(&cfg, atomic_fopen(cfg_file, "w"));
        atomic_commit(cfg_file);
    }

    const RecSplit *sp = &d.split[strcmp(split, "test") == 0 ? SPLIT_TEST : SPLIT_VALID];
    const int n_rows = cfg.eval.max_rows > 0 && cfg.eval.max_rows < sp->n ? cfg.eval.max_rows : sp->n;
    int max_k = 0;
    for (int i = 0; i < n_ks; i++) if (ks[i] > max_k) max_k = ks[i];
    char how[64];
    if (cfg.eval.mode == EVAL_UNCONSTRAINED) snprintf(how, sizeof how, "unconstrained (greedy + L2 grounding)");
    else if (cfg.eval.mode == EVAL_PAPER) snprintf(how, sizeof how, "paper (greedy + sentence encoder + L2)");
    else snprintf(how, sizeof how, "beams %d", cfg.eval.beams > max_k ? cfg.eval.beams : max_k);
    if (root)
        fprintf(stderr, "eval: %s on %s split '%s' (%d of %d rows, %d items) | K = %s | %s | model %s\n",
                model_path, cfg.data.dataset, split, n_rows, sp->n, d.n_items, cfg.eval.ks, how,
                m.lora ? "with LoRA adapters" : "as is");

    AtomicFile *topk = root ? atomic_begin(topk_path, NULL) : NULL;
    Metrics met[MAX_KS];
    evaluate_split_mode(&m, &d, split, ks, n_ks, cfg.eval.beams, cfg.eval.batch, cfg.eval.max_rows, cfg.eval.mode,
                        cfg.data.dataset, &(PaperOpts){cfg.eval.encoder, cfg.data.tokenizer},
                        topk ? atomic_fopen(topk, "w") : NULL, met);
    if (!root) {   // the other ranks took their share of the rows; rank 0 writes
        model_free(&m);
        recdata_free(&d);
        return 0;
    }
    atomic_commit(topk);

    // the line is appended by replacing the file with its old lines plus the new one: a failed write (a full
    // disk) leaves metrics.jsonl as it was, or absent, never empty or with a partial line
    size_t old_len = 0;
    char *old = read_file_text_if_exists(metrics_path, &old_len);
    AtomicFile *metrics_file = atomic_begin(metrics_path, NULL);
    FILE *mf = atomic_fopen(metrics_file, "w");
    if (old) fwrite(old, 1, old_len, mf);
    free(old);
    metrics_write_jsonl(mf, cfg.eval.label, iteration, met, n_ks);
    atomic_commit(metrics_file);

    metrics_print_table(stdout, cfg.eval.label, met, n_ks);
    printf("eval: wrote %s, appended to %s\n", topk_path, metrics_path);
    model_free(&m);
    recdata_free(&d);
    return 0;
}
