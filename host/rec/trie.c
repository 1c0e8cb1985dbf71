// The catalogue trie (see trie.h): built as a linked tree, then flattened
// breadth first into CSR arrays with sorted children.
#include <stdlib.h>
#include <string.h>
#include "trie.h"
#include "kernels/errors.h"

typedef struct { int tok, first, next, item, depth; } TmpNode;   // first child / next sibling

static int tmp_cmp_tok(const void *a, const void *b, void *nodes_) {
    const TmpNode *nodes = nodes_;
    const int ta = nodes[*(const int *)a].tok, tb = nodes[*(const int *)b].tok;
    return (ta > tb) - (ta < tb);
}

// names in error messages: one line, control characters escaped, truncated
static const char *esc(const char *s, char *buf, size_t cap) {
    size_t k = 0;
    for (; *s && k + 8 < cap; s++) {
        const unsigned char ch = (unsigned char)*s;
        if (ch == '\n') { buf[k++] = '\\'; buf[k++] = 'n'; }
        else if (ch == '\\') { buf[k++] = '\\'; buf[k++] = '\\'; }
        else if (ch < 0x20 || ch == 0x7f) k += (size_t)snprintf(buf + k, cap - k, "\\x%02x", ch);
        else buf[k++] = (char)ch;
    }
    if (*s) { memcpy(buf + k, "...", 3); k += 3; }
    buf[k] = 0;
    return buf;
}

void trie_build(Trie *t, const int *const *seqs, const int *lens, int n_items, const char *const *names) {
    memset(t, 0, sizeof *t);
    if (n_items < 1) fail("catalogue trie: the catalogue is empty");
    size_t cap = 1024, n = 1;
    TmpNode *nodes = xmalloc(cap * sizeof(TmpNode));
    nodes[0] = (TmpNode){-1, -1, -1, -1, 0};
    for (int i = 0; i < n_items; i++) {
        if (lens[i] < 1) {
            char e1[128];
            if (names) fail("catalogue trie: item %d (%s) has an empty token sequence", i, esc(names[i], e1, sizeof e1));
            fail("catalogue trie: item %d has an empty token sequence", i);
        }
        int cur = 0;
        for (int s = 0; s < lens[i]; s++) {
            const int tok = seqs[i][s];
            if (tok < 0) fail("catalogue trie: item %d has a negative token id %d", i, tok);
            int c = nodes[cur].first;
            while (c >= 0 && nodes[c].tok != tok) c = nodes[c].next;
            if (c < 0) {
                if (n == cap) nodes = realloc(nodes, (cap *= 2) * sizeof(TmpNode));
                check(nodes, "out of memory");
                c = (int)n++;
                nodes[c] = (TmpNode){tok, -1, nodes[cur].first, -1, nodes[cur].depth + 1};
                nodes[cur].first = c;
            }
            cur = c;
        }
        if (nodes[cur].item >= 0) {
            const int j = nodes[cur].item;
            char e1[128], e2[128];
            if (names)
                fail("catalogue trie: items %d (%s) and %d (%s) have the same token sequence; two catalogue "
                     "entries would be the same completion", j, esc(names[j], e1, sizeof e1), i,
                     esc(names[i], e2, sizeof e2));
            fail("catalogue trie: items %d and %d have the same token sequence (%d tokens); two catalogue entries "
                 "would be the same completion", j, i, lens[i]);
        }
        nodes[cur].item = i;
    }
    // breadth-first numbering: order[k] = the temp node that becomes node k
    int *order = xmalloc(n * sizeof(int)), head = 0, tail = 1;
    order[0] = 0;
    t->n_nodes = (int)n;
    t->n_edges = (int)n - 1;
    t->n_items = n_items;
    t->child_start = xmalloc((n + 1) * sizeof(int));
    t->child_tok = xmalloc(n * sizeof(int));
    t->child_node = xmalloc(n * sizeof(int));
    t->item = xmalloc(n * sizeof(int));
    t->item_node = xmalloc((size_t)n_items * sizeof(int));
    t->item_len = xmalloc((size_t)n_items * sizeof(int));
    while (head < tail) {
        const int k = head++, tn = order[k];
        t->child_start[k] = tail - 1;
        const int first = tail;
        for (int c = nodes[tn].first; c >= 0; c = nodes[c].next) order[tail++] = c;
        qsort_r(order + first, (size_t)(tail - first), sizeof(int), tmp_cmp_tok, nodes);
        for (int e = first; e < tail; e++) {
            t->child_tok[e - 1] = nodes[order[e]].tok;
            t->child_node[e - 1] = e;
        }
        t->item[k] = nodes[tn].item;
        if (nodes[tn].item >= 0) {
            t->item_node[nodes[tn].item] = k;
            t->item_len[nodes[tn].item] = nodes[tn].depth;
            if (tail > first) t->n_prefix_items++;
            if (nodes[tn].depth > t->max_depth) t->max_depth = nodes[tn].depth;
        }
    }
    check(tail == (int)n, "trie: %d of %zu nodes reached", tail, n);
    t->child_start[n] = (int)n - 1;
    free(order);
    free(nodes);
}

void trie_free(Trie *t) {
    free(t->child_start); free(t->child_tok); free(t->child_node); free(t->item);
    free(t->item_node); free(t->item_len);
    memset(t, 0, sizeof *t);
}

int trie_tokenize_completion(const Tokenizer *tok, const char *text, int **ids) {
    return tokenizer_encode(tok, text, strlen(text), 0, ids);
}

void trie_build_texts(Trie *t, const Tokenizer *tok, const char *const *texts, int n) {
    int **seqs = xcalloc((size_t)(n > 0 ? n : 1), sizeof(int *)), *lens = xcalloc((size_t)(n > 0 ? n : 1), sizeof(int));
    for (int i = 0; i < n; i++) lens[i] = trie_tokenize_completion(tok, texts[i], &seqs[i]);
    trie_build(t, (const int *const *)seqs, lens, n, texts);
    for (int i = 0; i < n; i++) free(seqs[i]);
    free(seqs); free(lens);
}

int trie_child(const Trie *t, int node, int tok) {
    int lo = t->child_start[node], hi = t->child_start[node + 1] - 1;
    while (lo <= hi) {
        const int mid = (lo + hi) >> 1, v = t->child_tok[mid];
        if (v == tok) return t->child_node[mid];
        if (v < tok) lo = mid + 1; else hi = mid - 1;
    }
    return -1;
}

int trie_walk(const Trie *t, const int *prefix, int n) {
    int node = 0;
    for (int i = 0; i < n && node >= 0; i++) node = trie_child(t, node, prefix[i]);
    return node;
}

int trie_allowed(const Trie *t, const int *prefix, int n, int *out_ids, int cap, int *item_out) {
    const int node = trie_walk(t, prefix, n);
    if (item_out) *item_out = node >= 0 ? t->item[node] : -1;
    if (node < 0) return -1;
    const int s = t->child_start[node], k = t->child_start[node + 1] - s;
    if (out_ids) memcpy(out_ids, t->child_tok + s, (size_t)(k < cap ? k : cap) * sizeof(int));
    return k;
}

int trie_item(const Trie *t, const int *prefix, int n) {
    const int node = trie_walk(t, prefix, n);
    return node >= 0 ? t->item[node] : -1;
}

int trie_gen_allowed(void *ctx, int seq, const int *generated, int n_generated, int *out_ids, int cap) {
    (void)seq;
    const int k = trie_allowed(ctx, generated, n_generated, out_ids, cap, NULL);
    return k < 0 ? 0 : k;
}

int trie_gen_allowed_slice(void *ctx, int seq, const int *generated, int n_generated, int *start) {
    (void)seq;
    const Trie *t = ctx;
    const int node = trie_walk(t, generated, n_generated);
    if (node < 0) return 0;
    *start = t->child_start[node];
    return t->child_start[node + 1] - *start;
}

int trie_gen_stop(void *ctx, int seq, const int *generated, int n_generated) {
    (void)seq;
    const Trie *t = ctx;
    const int node = trie_walk(t, generated, n_generated);
    return node >= 0 && t->item[node] >= 0 && t->child_start[node + 1] == t->child_start[node];
}
