// Whole-file reads for the text formats (JSON, CSV, config files).
#ifndef SPREC_FILEIO_H
#define SPREC_FILEIO_H

#include <stddef.h>

// The whole file, NUL-terminated (*len may be NULL); a missing file is a one-line error.
char *read_file_text(const char *path, size_t *len);
// Same, but NULL when the file cannot be opened (optional companions such as tokenizer_config.json).
char *read_file_text_if_exists(const char *path, size_t *len);

// mkdir -p (one-line error when a level cannot be created).
void make_dirs(const char *path);
int file_exists(const char *path);

#endif
