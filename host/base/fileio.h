// Whole-file reads for the text formats (JSON, CSV, config files), and the
// append-only text logs (train_log.jsonl, metrics.jsonl).
#ifndef SPREC_FILEIO_H
#define SPREC_FILEIO_H

#include <stddef.h>
#include <stdio.h>

// The whole file, NUL-terminated (*len may be NULL); a missing file is a one-line error.
char *read_file_text(const char *path, size_t *len);
// Same, but NULL when the file cannot be opened (optional companions such as tokenizer_config.json).
char *read_file_text_if_exists(const char *path, size_t *len);

// mkdir -p (one-line error when a level cannot be created).
void make_dirs(const char *path);
int file_exists(const char *path);

// A log: fopen(path, append ? "a" : "w") that remembers path, so that log_flush and log_close
// report a failed write (a full disk) as one line naming the file and the reason.
FILE *log_open(const char *path, int append);
void log_flush(FILE *f);   // the lines written so far to the OS; NULL: nothing
void log_close(FILE *f);   // flush and close; NULL: nothing

#endif
