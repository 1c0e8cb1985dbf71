#!/usr/bin/env python3
"""Fixtures for the sentence encoder (tests/unit/test_encoder.c). Writes tests/ref/encoder/:

  bert/           a tiny random BertModel saved as a sentence-transformers folder would hold it: config.json,
                  model.safetensors, tokenizer.json (+ tokenizer_config.json) of a WordPiece vocabulary trained
                  here (BERT normaliser: lower case, accents stripped; [CLS] $A [SEP]), sentence_bert_config.json
                  (max_seq_length 24, so long texts are truncated)
  bert.onnx       the same weights exported to ONNX with mean pooling (torch.onnx, TorchScript exporter), as the
                  MiniLM export on PyPI is made: named biases / norms / embeddings, anonymous MatMul matrices
  expected.json   texts (empty, long, non-ASCII, the synthetic world's titles); ids: the HF tokenizers encoding
                  with sentence-transformers' truncation; st: sentence-transformers' embedding (Transformer +
                  mean Pooling, fp32) of the folder; ort: onnxruntime's output of bert.onnx on the same ids

  python3 tests/ref/make_encoder_fixtures.py      # torch, transformers, sentence-transformers, onnx, onnxruntime

The real models are checked by tests/ref/check_minilm.py (not in CI: they are downloads).
"""
import json
import os
import re
import shutil

import numpy as np
import onnxruntime as ort
import torch
from safetensors.torch import save_file
from sentence_transformers import SentenceTransformer, models
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
from tokenizers.models import WordPiece
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "encoder")
ROOT = os.path.dirname(os.path.dirname(HERE))
MAX_SEQ = 24


def synthetic_words():
    """The words of the synthetic world's titles (host/rec/prepare/prepare_synthetic.c)."""
    src = open(os.path.join(ROOT, "host/rec/prepare/prepare_synthetic.c")).read()
    words = []
    for name in ("ADJ", "NOUN"):
        body = re.search(r"static const char \*%s\[\] = \{(.*?)\};" % name, src, re.S).group(1)
        words += re.findall(r'"([^"]*)"', body)
    return words


def texts():
    adj, noun = synthetic_words()[:30], synthetic_words()[30:]
    t = ["", " ", "The Silver River", "the silver river", "THE SILVER RIVER!", "Harry Potter and the "
         "Philosopher's Stone (Harry Potter, #1)", "Amélie", "Crème brûlée à la carte", "東京物語",
         "Ｆｕｌｌｗｉｄｔｈ", "naïve café", "emoji 😀 title", "tab\tand  spaces", "a-b_c.d,e;f:g",
         "unknownword xyzzyplugh", "\"quoted\" title", "1984", "The Lord of the Rings: The Fellowship of the Ring",
         " ".join(["word"] * 40), " ".join(adj + noun)]   # the last two: longer than max_seq_length
    t += ["The %s %s" % (adj[i % 30], noun[(7 * i) % 30]) for i in range(30)]
    return t


def make_tokenizer(corpus):
    tok = Tokenizer(WordPiece(unk_token="[UNK]", continuing_subword_prefix="##", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials,
                                                              continuing_subword_prefix="##"))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    return tok


class MeanPooled(torch.nn.Module):
    """BertModel + mean pooling over the attention mask, as sentence-transformers' Pooling."""

    def __init__(self, bert):
        super().__init__()
        self.auto_model = bert

    def forward(self, input_ids, attention_mask):
        h = self.auto_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)


def main():
    torch.manual_seed(0)
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(os.path.join(OUT, "bert"))
    t = texts()
    corpus = t[2:] + synthetic_words() + ["the of and a to in is it that for on with as"] * 3
    tok = make_tokenizer(corpus)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                   pad_token="[PAD]", mask_token="[MASK]", model_max_length=512)
    fast.save_pretrained(os.path.join(OUT, "bert"))
    cfg = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=40, type_vocab_size=2, layer_norm_eps=1e-12,
                     hidden_act="gelu", attn_implementation="eager")
    bert = BertModel(cfg, add_pooling_layer=False).eval()
    with torch.no_grad():   # larger than the default init, so every op matters in the output
        for name, p in bert.named_parameters():
            if "LayerNorm.weight" in name:
                p.copy_(1 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))
    cfg.save_pretrained(os.path.join(OUT, "bert"))
    save_file({k: v.contiguous() for k, v in bert.state_dict().items()}, os.path.join(OUT, "bert/model.safetensors"))
    json.dump({"max_seq_length": MAX_SEQ, "do_lower_case": False},
              open(os.path.join(OUT, "bert/sentence_bert_config.json"), "w"))

    # oracle 1: sentence-transformers on the folder
    st = SentenceTransformer(modules=[models.Transformer(os.path.join(OUT, "bert"), max_seq_length=MAX_SEQ),
                                      models.Pooling(32, "mean")], device="cpu")
    st_emb = st.encode(t, batch_size=8, convert_to_numpy=True)
    ids = [st.tokenize([x])["input_ids"][0].tolist() for x in t]
    tok.enable_truncation(MAX_SEQ)
    assert ids == [e.ids for e in tok.encode_batch(t)], "sentence-transformers and tokenizers disagree"

    # oracle 2: onnxruntime on the ONNX export of the same weights
    wrapped = MeanPooled(bert).eval()
    dummy = (torch.tensor([ids[2]]), torch.ones(1, len(ids[2]), dtype=torch.long))
    torch.onnx.export(wrapped, dummy, os.path.join(OUT, "bert.onnx"), input_names=["input_ids", "attention_mask"],
                      output_names=["pooled"], dynamic_axes={"input_ids": {0: "b", 1: "t"},
                                                             "attention_mask": {0: "b", 1: "t"}},
                      opset_version=17, dynamo=False)
    sess = ort.InferenceSession(os.path.join(OUT, "bert.onnx"))
    ort_emb = [sess.run(["pooled"], {"input_ids": np.array([i], dtype=np.int64),
                                     "attention_mask": np.ones((1, len(i)), dtype=np.int64)})[0][0] for i in ids]
    json.dump({"max_seq_length": MAX_SEQ, "texts": t, "ids": ids,
               "st": [[float("%.9g" % v) for v in e] for e in st_emb],
               "ort": [[float("%.9g" % v) for v in e] for e in ort_emb]},
              open(os.path.join(OUT, "expected.json"), "w"), ensure_ascii=False, indent=0)
    gap = max(np.abs(np.array(ort_emb) - st_emb).max(), 0)
    print("wrote %s: %d texts, vocab %d, onnxruntime vs sentence-transformers max |diff| %.2e"
          % (OUT, len(t), tok.get_vocab_size(), gap))


if __name__ == "__main__":
    main()
