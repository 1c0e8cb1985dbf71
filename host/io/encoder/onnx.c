// ONNX reader (onnx.h): a bounds-checked protobuf walk over the fields of
// ModelProto -> GraphProto -> NodeProto / TensorProto / AttributeProto that
// sprec reads; unknown fields are skipped by their wire type.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "onnx.h"
#include "base/fileio.h"
#include "kernels/errors.h"

// A view of protobuf bytes [p, end) inside the file, for error messages.
typedef struct {
    const unsigned char *p, *end;
    const char *path;
} Pb;

static uint64_t varint(Pb *b) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (b->p >= b->end) fail("%s: malformed ONNX file (a number runs past its message)", b->path);
        const unsigned char c = *b->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) return v;
    }
    fail("%s: malformed ONNX file (a number longer than 10 bytes)", b->path);
}

// The next field: its number and wire type; for a length-delimited one also its bytes.
static int next_field(Pb *b, int *wire, Pb *sub) {
    const uint64_t key = varint(b);
    *wire = (int)(key & 7);
    if (*wire == 2) {
        const uint64_t n = varint(b);
        if (n > (uint64_t)(b->end - b->p)) fail("%s: malformed ONNX file (a field of %llu bytes runs past the end: "
                                                "truncated?)", b->path, (unsigned long long)n);
        *sub = (Pb){b->p, b->p + n, b->path};
        b->p += n;
    }
    return (int)(key >> 3);
}

static void skip(Pb *b, int wire) {
    size_t n = 0;
    switch (wire) {
    case 0: varint(b); return;
    case 1: n = 8; break;
    case 2: return;   // next_field consumed it
    case 5: n = 4; break;
    default: fail("%s: malformed ONNX file (wire type %d)", b->path, wire);
    }
    if (n > (size_t)(b->end - b->p)) fail("%s: malformed ONNX file (truncated)", b->path);
    b->p += n;
}

static uint32_t fixed32(Pb *b) {
    if (b->end - b->p < 4) fail("%s: malformed ONNX file (truncated)", b->path);
    uint32_t v;
    memcpy(&v, b->p, 4);   // little-endian host (x86-64, aarch64)
    b->p += 4;
    return v;
}

static void *grow(void *p, size_t bytes) {
    void *q = realloc(p, bytes);
    if (!q) fail("out of memory reading an ONNX file");
    return q;
}

static char *str(const Pb *s) {
    const size_t n = (size_t)(s->end - s->p);
    char *out = xmalloc(n + 1);
    memcpy(out, s->p, n);
    out[n] = '\0';
    return out;
}

static void push_str(char ***v, int *n, char *s) {
    *v = grow(*v, (size_t)(*n + 1) * sizeof(char *));
    (*v)[(*n)++] = s;
}

// TensorProto: dims 1, data_type 2, float_data 4, int64_data 7, name 8,
// raw_data 9, data_location 14 (external data is not read).
static void read_tensor(Pb b, OnnxTensor *t) {
    memset(t, 0, sizeof *t);
    Pb raw = {0}, fdata = {0}, idata = {0};
    int have_raw = 0, external = 0, nf = 0, ni = 0;
    float single_f[1] = {0};
    long long single_i[1] = {0};
    while (b.p < b.end) {
        int wire;
        Pb sub;
        const int f = next_field(&b, &wire, &sub);
        if (f == 1 && wire == 0) {
            if (t->rank == 8) fail("%s: ONNX tensor of rank above 8", b.path);
            t->dims[t->rank++] = (long)varint(&b);
        } else if (f == 1 && wire == 2) {
            while (sub.p < sub.end) {
                if (t->rank == 8) fail("%s: ONNX tensor of rank above 8", b.path);
                t->dims[t->rank++] = (long)varint(&sub);
            }
        } else if (f == 2 && wire == 0) t->dtype = (int)varint(&b);
        else if (f == 4 && wire == 2) fdata = sub, nf = -1;
        else if (f == 4 && wire == 5) { uint32_t u = fixed32(&b); memcpy(single_f, &u, 4); nf = 1; }
        else if (f == 7 && wire == 2) idata = sub, ni = -1;
        else if (f == 7 && wire == 0) { single_i[0] = (long long)varint(&b); ni = 1; }
        else if (f == 8 && wire == 2) { free(t->name); t->name = str(&sub); }
        else if (f == 9 && wire == 2) raw = sub, have_raw = 1;
        else if (f == 14 && wire == 0) external = varint(&b) == 1;
        else skip(&b, wire);
    }
    if (!t->name) t->name = xcalloc(1, 1);
    t->numel = 1;
    for (int r = 0; r < t->rank; r++) {
        if (t->dims[r] < 0 || (t->dims[r] && t->numel > SIZE_MAX / 8 / (size_t)t->dims[r]))
            fail("%s: ONNX tensor '%s' has a bad shape", b.path, t->name);
        t->numel *= (size_t)t->dims[r];
    }
    if (t->dtype != ONNX_FLOAT && t->dtype != ONNX_INT64) return;   // not read
    if (external) fail("%s: tensor '%s' keeps its data in an external file (not supported: export the model as "
                       "one .onnx file)", b.path, t->name);
    const size_t es = t->dtype == ONNX_FLOAT ? 4 : 8;
    void *dst = xmalloc(t->numel ? t->numel * es : 1);
    if (have_raw) {
        if ((size_t)(raw.end - raw.p) != t->numel * es)
            fail("%s: ONNX tensor '%s' holds %zu bytes of data for %zu values", b.path, t->name,
                 (size_t)(raw.end - raw.p), t->numel);
        memcpy(dst, raw.p, t->numel * es);
    } else if (t->dtype == ONNX_FLOAT && nf) {
        size_t got = 0;
        if (nf == 1) memcpy(dst, single_f, 4), got = 1;
        else
            for (; fdata.p < fdata.end && got < t->numel; got++) {
                const uint32_t u = fixed32(&fdata);
                memcpy((char *)dst + got * 4, &u, 4);
            }
        if (got != t->numel) fail("%s: ONNX tensor '%s' holds %zu of its %zu values", b.path, t->name, got, t->numel);
    } else if (t->dtype == ONNX_INT64 && ni) {
        size_t got = 0;
        if (ni == 1) ((long long *)dst)[0] = single_i[0], got = 1;
        else
            for (; idata.p < idata.end && got < t->numel; got++) ((long long *)dst)[got] = (long long)varint(&idata);
        if (got != t->numel) fail("%s: ONNX tensor '%s' holds %zu of its %zu values", b.path, t->name, got, t->numel);
    } else if (t->numel) {
        fail("%s: ONNX tensor '%s' has no data", b.path, t->name);
    }
    if (t->dtype == ONNX_FLOAT) t->f = dst;
    else t->i = dst;
}

static void tensor_free(OnnxTensor *t) { free(t->name); free(t->f); free(t->i); }

// AttributeProto: name 1, f 2, t 5 (others skipped)
static void read_attribute(Pb b, OnnxNode *n) {
    char *name = NULL;
    float f = 0.0f;
    int has_f = 0;
    OnnxTensor t;
    int has_t = 0;
    while (b.p < b.end) {
        int wire;
        Pb sub;
        const int fld = next_field(&b, &wire, &sub);
        if (fld == 1 && wire == 2) { free(name); name = str(&sub); }
        else if (fld == 2 && wire == 5) { uint32_t u = fixed32(&b); memcpy(&f, &u, 4); has_f = 1; }
        else if (fld == 5 && wire == 2) { if (has_t) tensor_free(&t); read_tensor(sub, &t); has_t = 1; }
        else skip(&b, wire);
    }
    if (name && has_f && strcmp(name, "epsilon") == 0) n->has_epsilon = 1, n->epsilon = f;
    if (has_t) {
        if (name && strcmp(name, "value") == 0 && !n->has_value) n->value = t, n->has_value = 1;
        else tensor_free(&t);
    }
    free(name);
}

// NodeProto: input 1, output 2, name 3, op_type 4, attribute 5
static void read_node(Pb b, OnnxNode *n) {
    memset(n, 0, sizeof *n);
    while (b.p < b.end) {
        int wire;
        Pb sub;
        const int f = next_field(&b, &wire, &sub);
        if (f == 1 && wire == 2) push_str(&n->in, &n->n_in, str(&sub));
        else if (f == 2 && wire == 2) push_str(&n->out, &n->n_out, str(&sub));
        else if (f == 3 && wire == 2) { free(n->name); n->name = str(&sub); }
        else if (f == 4 && wire == 2) { free(n->op); n->op = str(&sub); }
        else if (f == 5 && wire == 2) read_attribute(sub, n);
        else skip(&b, wire);
    }
    if (!n->op) n->op = xcalloc(1, 1);
    if (!n->name) n->name = xcalloc(1, 1);
}

// ValueInfoProto: name 1
static char *value_info_name(Pb b) {
    char *name = NULL;
    while (b.p < b.end) {
        int wire;
        Pb sub;
        const int f = next_field(&b, &wire, &sub);
        if (f == 1 && wire == 2) { free(name); name = str(&sub); }
        else skip(&b, wire);
    }
    return name ? name : xcalloc(1, 1);
}

// GraphProto: node 1, initializer 5, output 12
static void read_graph(Pb b, OnnxModel *m) {
    while (b.p < b.end) {
        int wire;
        Pb sub;
        const int f = next_field(&b, &wire, &sub);
        if (f == 1 && wire == 2) {
            m->nodes = grow(m->nodes, (size_t)(m->n_nodes + 1) * sizeof(OnnxNode));
            read_node(sub, &m->nodes[m->n_nodes++]);
        } else if (f == 5 && wire == 2) {
            m->inits = grow(m->inits, (size_t)(m->n_inits + 1) * sizeof(OnnxTensor));
            read_tensor(sub, &m->inits[m->n_inits++]);
        } else if (f == 12 && wire == 2) {
            push_str(&m->outputs, &m->n_outputs, value_info_name(sub));
        } else skip(&b, wire);
    }
}

void onnx_load(OnnxModel *m, const char *path) {
    memset(m, 0, sizeof *m);
    m->path = path;
    size_t len;
    char *bytes = read_file_text(path, &len);
    Pb b = {(const unsigned char *)bytes, (const unsigned char *)bytes + len, path};
    int graphs = 0;
    while (b.p < b.end) {   // ModelProto: graph 7
        int wire;
        Pb sub;
        const int f = next_field(&b, &wire, &sub);
        if (f == 7 && wire == 2) { read_graph(sub, m); graphs++; }
        else skip(&b, wire);
    }
    free(bytes);
    if (graphs != 1 || m->n_nodes == 0) fail("%s: not an ONNX model (no graph with nodes)", path);
}

void onnx_free(OnnxModel *m) {
    for (int i = 0; i < m->n_inits; i++) tensor_free(&m->inits[i]);
    for (int i = 0; i < m->n_nodes; i++) {
        OnnxNode *n = &m->nodes[i];
        for (int j = 0; j < n->n_in; j++) free(n->in[j]);
        for (int j = 0; j < n->n_out; j++) free(n->out[j]);
        free(n->in); free(n->out); free(n->op); free(n->name);
        if (n->has_value) tensor_free(&n->value);
    }
    for (int i = 0; i < m->n_outputs; i++) free(m->outputs[i]);
    free(m->inits); free(m->nodes); free(m->outputs);
    memset(m, 0, sizeof *m);
}

const OnnxTensor *onnx_initializer(const OnnxModel *m, const char *name) {
    for (int i = 0; i < m->n_inits; i++) if (strcmp(m->inits[i].name, name) == 0) return &m->inits[i];
    return NULL;
}

const OnnxNode *onnx_producer(const OnnxModel *m, const char *value) {
    for (int i = 0; i < m->n_nodes; i++)
        for (int j = 0; j < m->nodes[i].n_out; j++)
            if (strcmp(m->nodes[i].out[j], value) == 0) return &m->nodes[i];
    return NULL;
}

const OnnxNode *onnx_consumer(const OnnxModel *m, const char *value, int k) {
    for (int i = 0; i < m->n_nodes; i++)
        for (int j = 0; j < m->nodes[i].n_in; j++)
            if (strcmp(m->nodes[i].in[j], value) == 0) {
                if (k-- == 0) return &m->nodes[i];
                break;
            }
    return NULL;
}
