// Sentence-encoder checkpoints (docs/import.md "Sentence encoders"): an HDF5
// file with format "sprec-encoder", the config as root attributes, the fp32
// weights under /params by their BertModel names, and /tokenizer/tokenizer.json.
// Made by `sprec import` from an ONNX export of a sentence-transformers model
// (paraphrase-MiniLM-L3-v2) or a Hugging Face / sentence-transformers folder
// (all-MiniLM-L6-v2: config.json with model_type bert, model.safetensors).
#ifndef SPREC_ENCODER_FILE_H
#define SPREC_ENCODER_FILE_H

#include "model/encoder.h"

#define ENCODER_FORMAT "sprec-encoder"

// 1 when path is an HDF5 file whose format attribute is ENCODER_FORMAT.
int encoder_file_is(const char *path);
// Written atomically (base/atomic_write.h). source: where it came from (an attribute).
void encoder_save(const char *path, const Encoder *e, const char *source);
// Config, weights and tokenizer into e (host only: then encoder_to_device).
void encoder_load(const char *path, Encoder *e);

// An ONNX export (onnx.h): the named initializers (embeddings, biases, norms;
// any prefix before "embeddings." / "encoder.layer." is dropped), the anonymous
// MatMul matrices found by following the graph to the bias Add after them
// (stored transposed, as nn.Linear's [out, in]), the head count from the
// layer-0 key Reshape, the LayerNorm epsilon from its node. The tokenizer comes
// from tokenizer_json_path (ONNX files carry none); max_tokens is the sentence
// model's max_seq_length.
void encoder_import_onnx(Encoder *e, const char *onnx_path, const char *tokenizer_json_path, int max_tokens);
// 1 when dir/config.json exists and says model_type "bert".
int encoder_hf_folder_is(const char *dir);
// A folder with config.json (model_type bert), model.safetensors, tokenizer.json
// and, optional, sentence_bert_config.json (max_seq_length; else max_tokens).
void encoder_import_hf(Encoder *e, const char *dir, int max_tokens);

#endif
