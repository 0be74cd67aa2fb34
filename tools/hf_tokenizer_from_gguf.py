#!/usr/bin/env python3
"""Rebuild a model's Hugging Face tokenizer from the tokenizer.ggml.* metadata of its GGUF.

For the byte-level BPE families (tokenizer.ggml.model == "gpt2") this reproduces the real
tokenizer.json: a BPE model over the vocabulary and merges, the pre-tokenizer the GGUF's
tokenizer.ggml.pre names (SmolLM2 / StarCoder: Digits(individual_digits) then ByteLevel),
a ByteLevel decoder, and every control token (token_type 3) as a special added token.

Interface (kept stable; tools/gguf_to_hf.py imports it):

    build(gguf_path) -> (tokenizers.Tokenizer, tokenizer_config: dict)

Command line:

    python3 tools/hf_tokenizer_from_gguf.py model.gguf out_dir/
    # writes out_dir/tokenizer.json and out_dir/tokenizer_config.json
"""
import json
import os
import sys

import gguf
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
from tokenizers import processors

TOKEN_TYPE_CONTROL = 3
TOKEN_TYPE_USER_DEFINED = 4

# The split regexes of the families we support, as Hugging Face writes them in tokenizer.json.
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def _field_str(r, key):
    f = r.fields.get(key)
    if f is None:
        return None
    return bytes(f.parts[f.data[0]]).decode("utf-8")


def _field_scalar(r, key):
    f = r.fields.get(key)
    if f is None:
        return None
    return f.parts[f.data[0]][0].item()


def _field_str_array(r, key):
    f = r.fields.get(key)
    if f is None:
        return None
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]


def _field_num_array(r, key):
    f = r.fields.get(key)
    if f is None:
        return None
    return [f.parts[i][0].item() for i in f.data]


def _pre_tokenizer(pre):
    """The pre-tokenizer of a GGUF tokenizer.ggml.pre name."""
    bytelevel = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True,
                                         use_regex=True)
    if pre in ("smollm", "starcoder", "refact"):
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), bytelevel])
    if pre in ("llama-bpe", "llama3", "smaug-bpe"):
        pattern = LLAMA3_PATTERN
    elif pre in ("qwen2",):
        pattern = QWEN2_PATTERN
    else:  # "gpt-2", "default" and anything unknown: the ByteLevel regex itself
        return bytelevel
    split = pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False)
    return pre_tokenizers.Sequence([
        split, pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True,
                                        use_regex=False)])


def build(gguf_path):
    """Returns (tokenizers.Tokenizer, tokenizer_config dict) for a byte-level BPE GGUF."""
    r = gguf.GGUFReader(gguf_path)
    model = _field_str(r, "tokenizer.ggml.model")
    if model != "gpt2":
        raise ValueError(f"{gguf_path}: tokenizer.ggml.model={model!r}, only 'gpt2' (byte-level"
                         " BPE) is rebuilt by this tool")
    tokens = _field_str_array(r, "tokenizer.ggml.tokens")
    types = _field_num_array(r, "tokenizer.ggml.token_type") or [1] * len(tokens)
    merges = _field_str_array(r, "tokenizer.ggml.merges") or []
    pre = _field_str(r, "tokenizer.ggml.pre") or "default"

    vocab = {t: i for i, t in enumerate(tokens)}
    merge_pairs = [tuple(m.split(" ", 1)) for m in merges]
    bpe = models.BPE(vocab=vocab, merges=merge_pairs, fuse_unk=False, byte_fallback=False)
    tok = Tokenizer(bpe)
    tok.normalizer = None
    tok.pre_tokenizer = _pre_tokenizer(pre)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)

    added = []
    for i, (t, ty) in enumerate(zip(tokens, types)):
        if ty in (TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED):
            added.append(AddedToken(t, special=(ty == TOKEN_TYPE_CONTROL), normalized=False,
                                    lstrip=False, rstrip=False, single_word=False))
    # add_special_tokens keeps the ids: each of these strings is already in the vocabulary.
    tok.add_special_tokens([a for a in added if a.special])
    tok.add_tokens([a for a in added if not a.special])

    def name(key):
        i = _field_scalar(r, key)
        return tokens[i] if i is not None and 0 <= i < len(tokens) else None

    config = {
        "add_bos_token": bool(_field_scalar(r, "tokenizer.ggml.add_bos_token") or False),
        "add_eos_token": bool(_field_scalar(r, "tokenizer.ggml.add_eos_token") or False),
        "add_prefix_space": False,
        "bos_token": name("tokenizer.ggml.bos_token_id"),
        "eos_token": name("tokenizer.ggml.eos_token_id"),
        "unk_token": name("tokenizer.ggml.unknown_token_id"),
        "pad_token": name("tokenizer.ggml.padding_token_id"),
        "additional_special_tokens": [t for t, ty in zip(tokens, types)
                                      if ty == TOKEN_TYPE_CONTROL],
        "clean_up_tokenization_spaces": False,
        "model_max_length": 8192,
        "tokenizer_class": "GPT2Tokenizer",
        "vocab_size": len(tokens),
    }
    tmpl = _field_str(r, "tokenizer.chat_template")
    if tmpl is not None:
        config["chat_template"] = tmpl
    config = {k: v for k, v in config.items() if v is not None}
    return tok, config


def write(gguf_path, out_dir):
    """Writes out_dir/tokenizer.json and out_dir/tokenizer_config.json."""
    tok, config = build(gguf_path)
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
        f.write("\n")


def main(argv):
    if len(argv) != 3:
        print(f"usage: {argv[0]} model.gguf out_dir", file=sys.stderr)
        return 2
    write(argv[1], argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
