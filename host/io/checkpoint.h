// HDF5 checkpoints (layout in docs/checkpoint.md): model config as attributes,
// parameters under Hugging Face names, optional AdamW moments and training
// state. Written to PATH.PID-N.tmp, flushed, then renamed, so a crash never leaves a
// half-written file under the real name. Every dataset carries a Fletcher-32
// checksum and the file a whole-file checksum (base/filesum.h) verified before
// HDF5 parses it, so corruption is detected on load.
#ifndef SPREC_CHECKPOINT_H
#define SPREC_CHECKPOINT_H

#include <stdint.h>
#include <stdio.h>
#include "model/model.h"
#include "model/optimizer.h"

typedef struct {
    long step;                   // optimizer steps done
    uint64_t rng[4];             // xoshiro256** state of the data order
    long epoch, epoch_pos;       // data cursor: epoch and rows consumed in it
    double last_loss;
    char stage[32];              // e.g. "sft" (free text, shown by info)
} TrainState;

// Rank 0 alone writes (the call returns at once on the others). With a ZeRO-1
// optimizer sharded over several ranks it is a collective: every rank calls it and
// the shards (moments, and the master it holds) stream to rank 0 tensor by tensor,
// so rank 0 holds one tensor of them at a time; the file is the same as without ZeRO.
void checkpoint_save(const char *path, const Model *m, const AdamW *opt, const TrainState *st);
// The settings that determine the training run (config_write_settings's INI text): every checkpoint this
// process saves with a TrainState from now on records them (/state/settings), for --resume to compare.
void checkpoint_set_settings(const char *ini_text);
// The settings a checkpoint records (malloc'd, NUL-terminated), NULL when it has none (not a training run's,
// or written before checkpoints recorded them).
char *checkpoint_read_settings(const char *path);
// Reads only the config (to create the model before loading).
void checkpoint_read_config(const char *path, ModelConfig *c);
// Loads parameters into an already created model of the same config; when opt/st
// are non-NULL and present in the file, loads them too (opt: step and moments,
// not the hyperparameters; st is left untouched when the file has no /state).
// A ZeRO-1 opt: every rank reads the file and keeps its shards of the moments and
// of the master opt holds (then a collective: the compute copy is all-gathered).
// Returns 1 if optimizer state was present, 0 otherwise.
int checkpoint_load(const char *path, Model *m, AdamW *opt, TrainState *st);
// Prints a human summary (config, tensors, state) of a checkpoint.
void checkpoint_info(const char *path, FILE *out);

#endif
