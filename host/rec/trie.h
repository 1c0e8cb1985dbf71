// The catalogue trie: a prefix tree over the token sequences of the catalogue's
// completions (e.g. the tokens of `"Title"\n`, closing quote and newline
// included), used to constrain generation so that every output is exactly one
// catalogue item. Stored flat (CSR) so a device backend can copy it as is:
//
//   node 0 = root; the children of node i are the edges
//   e in [child_start[i], child_start[i+1]), sorted by child_tok[e] (strictly
//   ascending), leading to node child_node[e]. Nodes are numbered breadth first,
//   so child_node[e] == e + 1 (kept explicit anyway). item[i] = the catalogue
//   index whose sequence ends at node i, or -1.
//
// Items are catalogue indices 0..n_items-1 (the caller maps them to its ids).
// A terminal node may have children (an item whose sequence is a strict prefix
// of another's); see docs/recommend.md for how generation handles it.
#ifndef SPREC_TRIE_H
#define SPREC_TRIE_H

#include "tokenizer/tokenizer.h"

typedef struct {
    int n_nodes, n_edges, n_items;
    int max_depth;               // longest item sequence
    int n_prefix_items;          // items whose terminal node has children
    int *child_start;            // [n_nodes + 1]
    int *child_tok;              // [n_edges]
    int *child_node;             // [n_edges]
    int *item;                   // [n_nodes]  item ending here, -1 if none
    int *item_node;              // [n_items]  terminal node of each item
    int *item_len;               // [n_items]  its sequence length (= the node's depth)
} Trie;

// Builds the trie of n_items sequences seqs[i][0..lens[i]) (lens[i] >= 1, ids
// >= 0). Two items with the same sequence: one-line error naming both (by
// names[i] when names != NULL, always by index), exit 1.
void trie_build(Trie *t, const int *const *seqs, const int *lens, int n_items, const char *const *names);
void trie_free(Trie *t);

// The tokenization convention for completions: the completion text alone, no
// BOS / special tokens (tokenizer_encode(text, add_special = 0)). Training data
// must build its completion tokens the same way (prompt ids ++ these ids).
// Returns the count; *ids malloc'd.
int trie_tokenize_completion(const Tokenizer *tok, const char *text, int **ids);
// Tokenizes n completion texts with trie_tokenize_completion and builds the
// trie (duplicates are reported with the texts).
void trie_build_texts(Trie *t, const Tokenizer *tok, const char *const *texts, int n);

// The child of node by token, or -1 (binary search).
int trie_child(const Trie *t, int node, int tok);
// The node reached by prefix[0..n) from the root, or -1 if it leaves the trie.
int trie_walk(const Trie *t, const int *prefix, int n);
// The tokens allowed after prefix: writes up to cap ids (ascending) and returns
// how many may follow (0 at a leaf); -1 if the prefix is not in the trie.
// *item_out (may be NULL) = the item the prefix completes, or -1.
int trie_allowed(const Trie *t, const int *prefix, int n, int *out_ids, int cap, int *item_out);
// The item whose sequence is exactly prefix[0..n), or -1.
int trie_item(const Trie *t, const int *prefix, int n);

// Hooks for generate() (host/gen/generate.h), ctx = the Trie. The generated tokens
// are the completion so far (the prompt's last token is the prompt's).
// allowed: the trie's children (0 at a leaf or off the trie: the sequence ends).
int trie_gen_allowed(void *ctx, int seq, const int *generated, int n_generated, int *out_ids, int cap);
// The same as a slice (GenOpts.allowed_slice, with allowed_table = child_tok,
// allowed_table_len = n_edges): the node's edges [child_start[node], ..+k).
int trie_gen_allowed_slice(void *ctx, int seq, const int *generated, int n_generated, int *start);
// stop: 1 once the output is a complete item with no longer continuation (a
// leaf), so a beam ends on the step that completes it (as an EOS would). A
// terminal node with children does not stop: generate() cannot both end and
// continue one hypothesis; recommend.c handles such items (docs/recommend.md).
int trie_gen_stop(void *ctx, int seq, const int *generated, int n_generated);

#endif
