#!/usr/bin/env python3
"""Write a tiny llama-architecture GGUF model with random weights for end-to-end tests.

The model has 2 layers and a hidden size of 64, so llama-server loads it in well under a second and generates
about a thousand tokens per second on one CPU thread. Its output is meaningless but deterministic at temperature 0.
The tokenizer (vocabulary, scores, token types, special token ids) is copied from a vocab-only GGUF such as
llama.cpp's `models/ggml-vocab-llama-spm.gguf`, so prompts are tokenized for real; `<|im_start|>` and `<|im_end|>`
are appended as control tokens (`<|im_end|>` is the end-of-turn token) and the SentencePiece dummy-prefix space
is turned off. A ChatML chat template with Hermes-style
`<tool_call>` tags is embedded, so `/v1/chat/completions` (and tool calls with `--jinja`) work.

Random weights never produce a tool call on their own. To get a deterministic one (the ids are for the llama-spm
vocab: <|im_end|> = 32001, <tool_call> = 32002, </tool_call> = 32003), send `"tool_choice": "required"`,
`"logit_bias": {"32002": 100, "32003": 50, "32001": 150}` and a tool whose arguments are fully determined by its
schema (e.g. a string with a one-value `enum`): the tool-call grammar forces the JSON, the biases make the model
open the call at once and end the turn after one call (`finish_reason: "tool_calls"`).

With `--fim` the Qwen-style fill-in-the-middle tokens `<|fim_prefix|>`, `<|fim_suffix|>` and `<|fim_middle|>` are
appended too (after the tool-call tags, so the ids above stay) and named in the file, so llama-server serves `/infill`
for the model; without them it answers that the model does not support infill.

With `--embedding` the file says `llama.pooling_type = mean` so llama-server serves `/v1/embeddings` when started
with `--embeddings` (no `--pooling` needed).

The same seed and vocab file always produce a byte-identical file.

Needs the `gguf` and `numpy` packages.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

import gguf

ARCH = "llama"

# ChatML with an optional tools block (the Hermes/Qwen `<tools>` / `<tool_call>` convention), so that llama-server's
# template analysis recognises tool calling. `add_generation_prompt` opens the assistant turn.
CHAT_TEMPLATE = """\
{%- if tools %}
{{- '<|im_start|>system\\n' }}
{%- if messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}
{{- '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n' }}
{{- 'You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}
{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}
{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within ' }}
{{- '<tool_call></tool_call> XML tags:\\n<tool_call>{"name": <function-name>, "arguments": <args-json-object>}' }}
{{- '</tool_call><|im_end|>\\n' }}
{%- elif messages[0].role == 'system' %}
{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
{%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}
{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
{%- elif message.role == 'assistant' %}
{{- '<|im_start|>assistant' }}
{%- if message.tool_calls %}
{%- for tool_call in message.tool_calls %}
{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}
{{- '\\n<tool_call>{"name": "' + tool_call.name + '", "arguments": ' }}
{%- if tool_call.arguments is string %}{{- tool_call.arguments }}{%- else %}{{- tool_call.arguments | tojson }}{%- endif %}
{{- '}</tool_call>' }}
{%- endfor %}
{%- elif message.content %}{{- '\\n' + message.content }}
{%- endif %}
{{- '<|im_end|>\\n' }}
{%- elif message.role == 'tool' %}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}
{{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}
"""

# Tokenizer metadata copied verbatim from the vocab file (when present there).
TOKENIZER_KEYS = [
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.scores",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.add_eos_token",
    # tokenizer.ggml.add_space_prefix is always written as false, see copy_tokenizer.
]


# Control tokens appended to the vocabulary so the ChatML markers are single special tokens, as in real ChatML
# models. (As plain text, an SPM tokenizer splits "<|im_start|>" into pieces and prepends a space to the first
# one, which breaks llama-server's tool-call grammar: it replays the generation prompt into the grammar.)
CHATML_TOKENS = ["<|im_start|>", "<|im_end|>"]
# Tool-call tags as single user-defined tokens (as in Qwen's vocabulary), so a client can make the model call a
# tool with `logit_bias` on the `<tool_call>` token id.
TOOL_CALL_TOKENS = ["<tool_call>", "</tool_call>"]
# Fill-in-the-middle control tokens (Qwen's names), with `--fim`: prefix, suffix, middle.
FIM_TOKENS = ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"]


def copy_tokenizer(writer: gguf.GGUFWriter, vocab_path: str, fim: bool) -> int:
    """Copies the tokenizer of `vocab_path` into `writer`, plus CHATML_TOKENS, TOOL_CALL_TOKENS and (with `fim`)
    FIM_TOKENS; returns the vocabulary size."""
    reader = gguf.GGUFReader(vocab_path)
    fields = {}
    for key in TOKENIZER_KEYS:
        field = reader.get_field(key)
        if field is not None:
            fields[key] = (field.types[0], field.types[-1], field.contents())
    if "tokenizer.ggml.tokens" not in fields:
        sys.exit(f"{vocab_path}: no tokenizer.ggml.tokens array")
    tokens = fields["tokenizer.ggml.tokens"][2]
    extra = [t for t in CHATML_TOKENS + TOOL_CALL_TOKENS + (FIM_TOKENS if fim else []) if t not in tokens]
    n_vocab = len(tokens) + len(extra)
    appended = {
        "tokenizer.ggml.tokens": extra,
        "tokenizer.ggml.scores": [0.0] * len(extra),
        "tokenizer.ggml.token_type": [
            int(gguf.TokenType.CONTROL if t in CHATML_TOKENS + FIM_TOKENS else gguf.TokenType.USER_DEFINED)
            for t in extra
        ],
    }
    for key, (vtype, sub_type, value) in fields.items():
        if vtype == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(key, list(value) + appended.get(key, []), vtype, sub_type=sub_type)
        else:
            writer.add_key_value(key, value, vtype)
    all_tokens = list(tokens) + extra
    # No SentencePiece dummy-prefix space before text that follows a special token ("<|im_start|>assistant" must
    # not become "<|im_start|> assistant", again for the tool-call grammar).
    writer.add_add_space_prefix(False)
    # End of turn: generation also stops when the model emits <|im_end|>.
    writer.add_eot_token_id(all_tokens.index("<|im_end|>"))
    if fim:
        keys = [gguf.Keys.Tokenizer.FIM_PRE_ID, gguf.Keys.Tokenizer.FIM_SUF_ID, gguf.Keys.Tokenizer.FIM_MID_ID]
        for key, token in zip(keys, FIM_TOKENS):
            writer.add_uint32(key, all_tokens.index(token))
    return n_vocab


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("output", help="path of the .gguf file to write")
    ap.add_argument("--vocab", required=True, help="vocab-only GGUF to take the tokenizer from "
                    "(e.g. vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    ap.add_argument("--name", default=None, help="general.name (default: derived from the output file name)")
    ap.add_argument("--embedding", action="store_true", help="mark the model for mean-pooled embeddings")
    ap.add_argument("--fim", action="store_true", help="add fill-in-the-middle tokens (llama-server's /infill)")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ff", type=int, default=256, help="feed-forward size")
    ap.add_argument("--ctx", type=int, default=4096, help="trained context length written to the file")
    args = ap.parse_args()

    if args.hidden % args.heads:
        sys.exit("--hidden must be a multiple of --heads")
    head_dim = args.hidden // args.heads
    name = args.name or os.path.splitext(os.path.basename(args.output))[0]
    rng = np.random.default_rng(args.seed)

    tmp = args.output + ".tmp"
    writer = gguf.GGUFWriter(tmp, ARCH)
    writer.add_name(name)
    writer.add_type("model")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(args.ctx)
    writer.add_embedding_length(args.hidden)
    writer.add_block_count(args.layers)
    writer.add_feed_forward_length(args.ff)
    writer.add_head_count(args.heads)
    writer.add_head_count_kv(args.heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    if args.embedding:
        writer.add_pooling_type(gguf.PoolingType.MEAN)

    n_vocab = copy_tokenizer(writer, args.vocab, args.fim)
    writer.add_vocab_size(n_vocab)
    writer.add_chat_template(CHAT_TEMPLATE)

    def rand(*shape: int, scale: float) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    # numpy shapes are (rows, cols) = ggml's (ne[1], ne[0]).
    d, ff = args.hidden, args.ff
    writer.add_tensor("token_embd.weight", rand(n_vocab, d, scale=1.0))
    for i in range(args.layers):
        p = f"blk.{i}."
        writer.add_tensor(p + "attn_norm.weight", np.ones(d, dtype=np.float32))
        for t in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(p + t + ".weight", rand(d, d, scale=d ** -0.5))
        writer.add_tensor(p + "ffn_norm.weight", np.ones(d, dtype=np.float32))
        writer.add_tensor(p + "ffn_gate.weight", rand(ff, d, scale=d ** -0.5))
        writer.add_tensor(p + "ffn_up.weight", rand(ff, d, scale=d ** -0.5))
        writer.add_tensor(p + "ffn_down.weight", rand(d, ff, scale=ff ** -0.5))
    writer.add_tensor("output_norm.weight", np.ones(d, dtype=np.float32))
    writer.add_tensor("output.weight", rand(n_vocab, d, scale=d ** -0.5))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, args.output)
    print(f"wrote {args.output} ({os.path.getsize(args.output)} bytes, vocab {n_vocab}, seed {args.seed}"
          f"{', embedding' if args.embedding else ''})")


if __name__ == "__main__":
    main()
