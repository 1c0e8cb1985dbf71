// TensorBoard event files, written without TensorFlow or a protobuf library:
// a file of TFRecords (uint64 length, masked CRC-32C of the length, the
// bytes, masked CRC-32C of the bytes), each holding one serialized
// tensorflow.Event. The first event carries file_version "brain.Event:2";
// the others a step, a wall time and a Summary of scalar simple_values, which
// `tensorboard --logdir` and tensorboard.backend.event_processing read.
#ifndef SPREC_TENSORBOARD_H
#define SPREC_TENSORBOARD_H

#include <stddef.h>
#include <stdint.h>

typedef struct TbWriter TbWriter;

// Creates dir and a new dir/events.out.tfevents.SECONDS.HOST.PID in it (one
// file per process, as TensorFlow names them), with the file_version event.
// Cannot create: one-line error naming the path, exit 1.
TbWriter *tb_open(const char *dir);
// One event at `step`: the n scalars tags[i] = values[i] (as float, which is
// what simple_value holds); flushed, so a crash loses nothing written.
void tb_scalars(TbWriter *w, long step, const char *const *tags, const double *values, int n);
void tb_close(TbWriter *w);

// The encoders, for tests: CRC-32C (Castagnoli), and one TFRecord of an event
// (file_version when tags is NULL) appended to *buf (malloc'd, grown; *len updated).
uint32_t crc32c(const void *p, size_t n);
void tb_encode_event(unsigned char **buf, size_t *len, double wall_time, long step, const char *const *tags,
                     const double *values, int n);

#endif
