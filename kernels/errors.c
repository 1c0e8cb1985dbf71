// error_exit (errors.h): the one-line error of fail() and check(). The message is formatted first, then
// written with its control characters escaped, because it quotes what users give us (file names, config
// values, tokens) and a raw \r, \v or \n there would garble or split the one line that scripts rely on.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include "errors.h"

// Appends byte c to out[n..] (room for 4 more bytes), escaped if it is a control character; returns the new length.
static size_t put_escaped(char *out, size_t n, unsigned char c) {
    static const char named[] = {['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't', ['\v'] = 'v', ['\f'] = 'f'};
    if (c >= 0x20 && c != 0x7f) { out[n] = (char)c; return n + 1; }
    if (c < sizeof named && named[c]) return n + (size_t)sprintf(out + n, "\\%c", named[c]);
    return n + (size_t)sprintf(out + n, "\\x%02x", c);
}

void error_exit(int status, const char *head, const char *fmt, ...) {
    char msg[4096], line[4 * sizeof msg + 1024];   // a longer message is cut (an error line needs no more)
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t n = (size_t)snprintf(line, sizeof line - 4 * sizeof msg, "sprec: %s", head);
    if (n >= sizeof line - 4 * sizeof msg) n = sizeof line - 4 * sizeof msg - 1;   // (a head cut short)
    for (const char *p = msg; *p; p++) n = put_escaped(line, n, (unsigned char)*p);
    line[n++] = '\n';
    fwrite(line, 1, n, stderr);
    exit(status);
}
