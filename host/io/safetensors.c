// safetensors reader/writer (format: github.com/huggingface/safetensors, README).
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cJSON.h>
#include "safetensors.h"
#include "base/fileio.h"
#include "kernels/errors.h"

float half_to_f32(unsigned short h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) bits = sign | 0x7f800000u | (man << 13);             // inf / nan
    else if (exp) bits = sign | ((exp + 112) << 23) | (man << 13);          // normal: rebias 15 -> 127
    else if (!man) bits = sign;                                             // zero
    else {                                                                  // subnormal: normalise
        int e = -1;
        do { man <<= 1; e++; } while (!(man & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float bf16_to_f32(unsigned short h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

unsigned short f32_to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((bits >> 16) | 0x40);   // keep nan a nan
    bits += 0x7fff + ((bits >> 16) & 1);                                                    // round to nearest even
    return (unsigned short)(bits >> 16);
}

static const struct { const char *name; int size; } DTYPES[] = {{"F32", 4}, {"F16", 2}, {"BF16", 2}};

// Maps one file and appends its tensors; a problem names the file.
static void open_file(SafeTensors *st, const char *path) {
    int fi = st->n_files++;
    st->paths = realloc(st->paths, (size_t)st->n_files * sizeof *st->paths);
    st->maps = realloc(st->maps, (size_t)st->n_files * sizeof *st->maps);
    st->sizes = realloc(st->sizes, (size_t)st->n_files * sizeof *st->sizes);
    if (!st->paths || !st->maps || !st->sizes) fail("out of memory");
    st->paths[fi] = strdup(path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) fail("cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) < 0) fail("cannot stat '%s': %s", path, strerror(errno));
    size_t size = (size_t)sb.st_size;
    if (size < 8) fail("%s: truncated safetensors file (%zu bytes, no header length)", path, size);
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) fail("cannot map '%s': %s", path, strerror(errno));
    close(fd);
    st->maps[fi] = map;
    st->sizes[fi] = size;
    const unsigned char *p = map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | p[i];
    if (hlen > size - 8) fail("%s: header length %llu runs past the end of the file (%zu bytes; truncated?)", path,
                              (unsigned long long)hlen, size);
    cJSON *h = cJSON_ParseWithLength((const char *)p + 8, (size_t)hlen);
    if (!cJSON_IsObject(h)) fail("%s: safetensors header is not valid JSON (or not an object)", path);
    const unsigned char *data = p + 8 + hlen;
    size_t data_size = size - 8 - (size_t)hlen;
    for (cJSON *e = h->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) continue;
        for (const char *c = e->string; *c; c++)   // names go into one-line messages
            if ((unsigned char)*c < 0x20) fail("%s: a tensor name holds control characters (corrupt header?)", path);
        cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype"), *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
        cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
            fail("%s: header entry '%s' lacks dtype, shape or data_offsets", path, e->string);
        StTensor t = {0};
        t.dtype = -1;
        for (int i = 0; i < 3; i++) if (strcmp(dt->valuestring, DTYPES[i].name) == 0) t.dtype = i;
        t.rank = cJSON_GetArraySize(sh);
        if (t.rank > 8) fail("%s: tensor '%s' has rank %d", path, e->string, t.rank);
        double numel = 1;
        for (int i = 0; i < t.rank; i++) {
            cJSON *d = cJSON_GetArrayItem(sh, i);
            if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > 1e12)
                fail("%s: tensor '%s' has a bad shape", path, e->string);
            t.shape[i] = (long)d->valuedouble;
            numel *= (double)t.shape[i];
        }
        double b = cJSON_GetArrayItem(off, 0)->valuedouble, en = cJSON_GetArrayItem(off, 1)->valuedouble;
        if (!(b >= 0 && en >= b && en <= (double)data_size))
            fail("%s: tensor '%s' data [%.0f, %.0f) lies outside the %zu data bytes (truncated file?)", path,
                 e->string, b, en, data_size);
        t.nbytes = (size_t)(en - b);
        t.data = data + (size_t)b;
        t.file = fi;
        t.name = strdup(e->string);
        // the dtype is checked lazily: a file may carry tensors we never read (e.g. I64 buffers)
        if (t.dtype >= 0 && (double)t.nbytes != numel * DTYPES[t.dtype].size)
            fail("%s: tensor '%s' has %zu bytes, its shape and dtype %s need %.0f", path, e->string, t.nbytes,
                 dt->valuestring, numel * DTYPES[t.dtype].size);
        if (t.dtype < 0) t.dtype = 100;   // unsupported; st_to_f32 callers check
        st->t = realloc(st->t, (size_t)(st->n + 1) * sizeof *st->t);
        if (!st->t) fail("out of memory");
        st->t[st->n++] = t;
    }
    cJSON_Delete(h);
}


void st_open(SafeTensors *st, const char *path) {
    memset(st, 0, sizeof *st);
    size_t len = strlen(path);
    if (len < 11 || strcmp(path + len - 11, ".index.json") != 0) { open_file(st, path); return; }
    char *text = read_file_text(path, NULL);
    cJSON *j = cJSON_Parse(text);
    free(text);
    cJSON *map = cJSON_GetObjectItemCaseSensitive(j, "weight_map");
    if (!cJSON_IsObject(map)) fail("%s: not a JSON object with a 'weight_map'", path);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) slash[1] = 0; else dir[0] = 0;
    for (cJSON *e = map->child; e; e = e->next) {
        if (!cJSON_IsString(e) || strchr(e->valuestring, '/')) fail("%s: bad shard name for '%s'", path, e->string);
        char shard[8192];
        snprintf(shard, sizeof shard, "%s%s", dir, e->valuestring);
        int seen = 0;
        for (int i = 0; i < st->n_files; i++) seen |= strcmp(st->paths[i], shard) == 0;
        if (!seen) open_file(st, shard);
    }
    cJSON_Delete(j);
}

void st_close(SafeTensors *st) {
    for (int i = 0; i < st->n; i++) free(st->t[i].name);
    for (int i = 0; i < st->n_files; i++) { munmap(st->maps[i], st->sizes[i]); free(st->paths[i]); }
    free(st->t); free(st->paths); free(st->maps); free(st->sizes);
    memset(st, 0, sizeof *st);
}

const StTensor *st_find(const SafeTensors *st, const char *name) {
    for (int i = 0; i < st->n; i++) if (strcmp(st->t[i].name, name) == 0) return &st->t[i];
    return NULL;
}

void st_to_f32(const StTensor *t, float *dst) {
    const unsigned char *s = t->data;   // may be unaligned: copy element by element
    size_t n = t->nbytes / (t->dtype == ST_F32 ? 4 : 2);
    for (size_t i = 0; i < n; i++) {
        if (t->dtype == ST_F32) { memcpy(&dst[i], s + 4 * i, 4); continue; }
        unsigned short h = (unsigned short)(s[2 * i] | s[2 * i + 1] << 8);
        dst[i] = t->dtype == ST_F16 ? half_to_f32(h) : bf16_to_f32(h);
    }
}

void st_write(const char *path, int n, const char *const *names, const int *ranks, const long (*shapes)[2],
              const float *const *data, int bf16) {
    const int es = bf16 ? 2 : 4;
    cJSON *h = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(h, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_AddObjectToObject(h, names[i]);
        cJSON_AddStringToObject(e, "dtype", bf16 ? "BF16" : "F32");
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        size_t numel = 1;
        for (int r = 0; r < ranks[i]; r++) { cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)shapes[i][r])); numel *= (size_t)shapes[i][r]; }
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        off += numel * es;
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
    }
    char *text = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    size_t hl = strlen(text), padded = (hl + 7) & ~(size_t)7;   // pad with spaces so the data is 8-byte aligned
    FILE *f = fopen(path, "wb");
    if (!f) fail("cannot create '%s': %s", path, strerror(errno));
    errno = 0;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(text, 1, hl, f) == hl;
    for (size_t i = hl; i < padded; i++) ok = ok && fputc(' ', f) != EOF;
    free(text);
    for (int i = 0; i < n && ok; i++) {
        size_t numel = 1;
        for (int r = 0; r < ranks[i]; r++) numel *= (size_t)shapes[i][r];
        if (!bf16) { ok = fwrite(data[i], 4, numel, f) == numel; continue; }
        for (size_t j = 0; j < numel && ok; j++) {
            unsigned short b = f32_to_bf16(data[i][j]);
            ok = fputc(b & 0xff, f) != EOF && fputc(b >> 8, f) != EOF;
        }
    }
    if (!ok || fclose(f) != 0) fail("cannot write '%s': %s", path, errno ? strerror(errno) : "write error (disk full?)");
}
