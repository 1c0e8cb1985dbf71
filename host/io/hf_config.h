// Hugging Face config.json <-> ModelConfig for the Llama family (Llama,
// Qwen2, Mistral without sliding window, SmolLM...). Anything the engine
// cannot run exactly (other architectures, biases on o_proj/MLP, sliding
// window, rope types other than default/llama3, non-SiLU) is an error.
#ifndef SPREC_HF_CONFIG_H
#define SPREC_HF_CONFIG_H

#include "model/model.h"

// Parses config.json text; `path` names the file in messages.
void hf_config_parse(const char *text, const char *path, ModelConfig *c);
// Special token ids an exported model carries (-1: none).
typedef struct { int bos, eos, pad; } HfTokenIds;
// The config an export writes for c: a model running per-frequency rope factors
// (ROPE_FREQS) as the llama3 curve that gives every factor within 1e-5 relative
// (config.json has no per-frequency form); factors no such curve gives are an
// error naming `path` (the checkpoint). Other configs are copied.
void hf_config_for_export(const ModelConfig *c, ModelConfig *out, const char *path);
// config.json text for an exported model (malloc'd): LlamaForCausalLM, or
// Qwen2ForCausalLM when qkv_bias. dtype: "float32" or "bfloat16". ids: the
// bos/eos/pad_token_id written (those >= 0).
char *hf_config_write(const ModelConfig *c, const char *dtype, const HfTokenIds *ids);
// generation_config.json text (malloc'd) with the same ids, so transformers'
// generate() stops on the token sprec generate stops on.
char *hf_generation_config_write(const HfTokenIds *ids);
// Defaults for the llama3 rope fields when a model has no scaling (Llama 3.1's
// values, as tests/ref/make_fixtures.py writes them).
void hf_config_rope_defaults(ModelConfig *c);

#endif
