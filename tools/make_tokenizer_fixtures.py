#!/usr/bin/env python3
"""Writes the tokenizer and chat-template fixtures under tests/fixtures/ (deterministic).

    python3 tools/make_tokenizer_fixtures.py [models/SmolLM2-135M-Instruct.Q4_1.gguf]

Truth comes from the PyPI packages, never from our C code:
  tokenizer_smollm2.tsv   one line per corpus string (>= 2,000): the UTF-8 input (hex), the
                          ids of Hugging Face `tokenizers` for the default model (rebuilt from
                          its GGUF by tools/hf_tokenizer_from_gguf.py; encode without
                          post-processing, added tokens matched), HF decode(ids) (hex, or "="
                          when equal to the input), and the byte offsets where the pieces end
                          for the SmolLM2 pre-tokenizer and for the GPT-2, Llama-3 and Qwen2
                          split regexes (HF Split(Regex), i.e. Oniguruma; cross-checked
                          against the Python `regex` module's findall).
  tokenizer_spm.json      a tiny SentencePiece-style BPE (byte fallback, Llama-2 normalizer
                          and decoder) trained with `tokenizers`; tokenizer_spm_meta.json is
                          the same model with a Metaspace pre-tokenizer/decoder instead;
  tokenizer_spm.gguf      the same vocabulary as GGUF (tokenizer.ggml.model = "llama",
                          score = -rank of the merge that makes a piece);
  tokenizer_spm.tsv       input (hex), ids and decode (hex or "=") for both json variants.
  chat_templates.json     real template texts and jinja2 renderings of message lists.
"""
import json
import os
import random
import sys
import unicodedata

import gguf
import jinja2
import regex
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from tokenizers import processors, trainers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_tokenizer_from_gguf as hfg  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")

GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

# ----------------------------------------------------------------------------------------
# Corpus
# ----------------------------------------------------------------------------------------
PROSE = [
    "The quick brown fox jumps over the lazy dog.",
    "It's a truth universally acknowledged, that a single man in possession of a good "
    "fortune, must be in want of a wife.",
    "I'LL be there at 10:30am; they're sure you'VE seen it. We'd better go, didn't we?",
    "Hello, world! How are you doing today?  Fine, thanks.",
    "In 1969, Apollo 11 landed on the Moon; 600,000,000 people watched.",
    "Email me at john.doe@example.com or visit https://example.org/path?q=1&r=2#frag.",
    "SHOUTING IN ALL CAPS DOESN'T HELP, DOES IT?",
    "naïve café résumé coöperate façade jalapeño",
    "Prices: $3.99, €4,50, £2.00, ¥500 and 12% off!!!",
    "\"Quoted\" 'single' `backtick` «guillemets» „Gänsefüßchen“",
]
CODE = [
    "int main(int argc, char **argv) {\n    printf(\"%d\\n\", argc);\n    return 0;\n}\n",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "for (size_t i = 0; i < n; i++) { sum += a[i] * b[i]; }",
    "{\"name\": \"cserve\", \"version\": [0, 1, 0], \"ok\": true, \"x\": null}",
    "    \t// indented comment with tabs\r\n\tif (x != y) return -1;\r\n",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;",
    "<html><body><div class=\"a\">Hi &amp; bye</div></body></html>",
    "x = [i**2 for i in range(10) if i % 2 == 0]  # squares",
    "#include <stdio.h>\n#define MAX(a, b) ((a) > (b) ? (a) : (b))\n",
    "const f = async (x) => { await g(x?.y ?? 0); };",
]
SCRIPTS = [
    "日本語のテキストです。東京は大きな都市です。",
    "中文文本测试，北京是中国的首都。",
    "한국어 텍스트입니다. 서울은 큰 도시입니다.",
    "Русский текст: Москва — столица России.",
    "النص العربي: القاهرة عاصمة مصر.",
    "हिन्दी पाठ: नई दिल्ली भारत की राजधानी है।",
    "ข้อความภาษาไทย กรุงเทพมหานครเป็นเมืองหลวง",
    "טקסט בעברית: ירושלים היא עיר.",
    "Ελληνικό κείμενο: Η Αθήνα είναι πρωτεύουσα.",
    "Tiếng Việt có dấu: Hà Nội là thủ đô.",
    "Türkçe metin: İstanbul büyük bir şehirdir.",
    "Ქართული ტექსტი და Հայերեն տեքստ",
]
EMOJI = [
    "🤗", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷🇯🇵🇺🇸", "❤️", "😀😃😄😁", "🧑🏿‍🚀 to the 🌕!",
    "I ❤️ 🍕 and 🍣", "☃︎ vs ☃️", "🫠🫡🫶", "1️⃣2️⃣3️⃣", "👩🏻‍💻 coding", "🏴󠁧󠁢󠁳󠁣󠁴󠁿 Scotland",
]
COMBINING = [
    "e\u0301", "a\u0308\u0304", "Z\u0335\u0321\u031b\u0327a\u0336\u0328l\u0337g\u0338o",
    "n\u0303o", "\u0915\u094d\u0937", "\u1100\u1161\u11a8", "q\u0307\u0323",
]
SPECIALS = [
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start", "im_start|>", "<|im_end|", "<|endoftext|>", "foo<|endoftext|>bar",
    "word<|endoftext|>word<|im_end|><|im_end|>", "<<|im_start|>>", "<|<|im_end|>|>",
    "< |im_start| >", "<|IM_START|>", "<repo_name>cserve<file_sep>main.c", "<filename>x.py",
    "<jupyter_code>print(1)<jupyter_output>1<empty_output>", "<gh_stars>100",
    "</s><s>[INST] hi [/INST]", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>",
    "<|im_start|><|im_start|><|im_start|>", "text <|im_start|> spaced <|im_end|> ",
]


def ws_cases(rng):
    out = []
    units = [" ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000", "\u2003", "\x0b", "\x0c",
             "\u0085", "\u2028", "\x1c"]
    for n in (1, 2, 3, 4, 7, 8, 15, 16, 31, 50, 64, 100, 257):
        for u in (" ", "\t", "\n", "\r\n"):
            out.append(u * n)
            out.append("a" + u * n + "b")
            out.append(u * n + "word")
    for _ in range(150):
        k = rng.randint(1, 80)
        core = "".join(rng.choice(units) for _ in range(k))
        pre = rng.choice(["", "x", "Hello", "1", "?", "日本"])
        post = rng.choice(["", "y", " world", "2", "!", "😀", "\n"])
        out.append(pre + core + post)
    return out


def digit_cases(rng):
    out = []
    for n in range(1, 41):
        out.append("".join(rng.choice("0123456789") for _ in range(n)))
    for _ in range(120):
        a = rng.randint(0, 10 ** rng.randint(1, 15))
        fmt = rng.choice(["{}", " {}", "x{}", "{:,}", "{}.{}", "v{}.{}", "-{}", "({})", "#{}"])
        out.append(fmt.format(a, rng.randint(0, 999)))
    out += ["٣٤٥ arabic digits", "१२३ devanagari", "Ⅻ roman ½ ¾ ² ³ ⁴", "①②③", "１２３ fullwidth",
            "3.14159265358979", "1e-10", "0x7fffffff", "2024-01-15T10:30:00Z", "+1 (555) 123-4567"]
    return out


def contraction_cases():
    out = []
    for c in ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Re", "'rE",
              "'VE", "'M", "'LL", "'Ll", "'D", "'ſ", "'x", "'", "''", "'''s"]:
        out += ["it" + c, "It" + c + " fine", c, c + "abc", " " + c, "1" + c, "\n" + c + "\n"]
    out += ["don't", "DON'T", "y'all", "rock'n'roll", "O'Neil's", "'tis", "they'd've",
            "I'm", "I'M", "we'LL", "she's 'sure'"]
    return out


def punct_cases(rng):
    out = ["...", "!!!???", "-->", "<=>", "::", "&&||", "/*", "*/", "@#$%^&*()", "---===+++",
           "…", "——", "¿¡", "«»", "「」『』", "。、", "?!\n\n", "!\r\n", ".\n\n\nNext",
           "a.b,c;d:e", "(a)[b]{c}<d>", "~`|\\", " .", " ...\n", "-\n-\n-"]
    for _ in range(60):
        out.append("".join(rng.choice("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ \n") for _ in
                           range(rng.randint(1, 30))))
    return out


def assigned_codepoints():
    cps = []
    for cp in range(0x20, 0x30000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        cat = unicodedata.category(chr(cp))
        if cat in ("Cn", "Cs", "Co"):
            continue
        cps.append(cp)
    return cps


def random_unicode(rng, cps, n):
    out = []
    blocks = [(0x20, 0x7F), (0xA0, 0x250), (0x370, 0x530), (0x590, 0x700), (0x900, 0xE00),
              (0x1100, 0x1200), (0x2000, 0x2BFF), (0x3000, 0x30FF), (0x4E00, 0x4F00),
              (0xAC00, 0xAD00), (0x1F300, 0x1FAFF), (0x10000, 0x10200)]
    for i in range(n):
        k = rng.randint(1, 24)
        if i % 3 == 0:
            s = "".join(chr(rng.choice(cps)) for _ in range(k))
        else:
            lo, hi = rng.choice(blocks)
            chars = []
            while len(chars) < k:
                cp = rng.randint(lo, hi - 1)
                if unicodedata.category(chr(cp)) not in ("Cn", "Cs", "Co"):
                    chars.append(chr(cp))
                if rng.random() < 0.2:
                    chars.append(" ")
            s = "".join(chars)
        out.append(s)
    return out


def ascii_soup(rng, n):
    printable = [chr(c) for c in range(0x20, 0x7F)] + ["\n", "\t"]
    return ["".join(rng.choice(printable) for _ in range(rng.randint(1, 60))) for _ in range(n)]


def mixed(rng, parts, n):
    out = []
    for _ in range(n):
        k = rng.randint(2, 5)
        out.append(rng.choice(["", " ", "\n"]).join(rng.choice(parts) for _ in range(k)))
    return out


def corpus():
    rng = random.Random(20240601)
    cps = assigned_codepoints()
    c = ["", " ", "a", "\n", "\x00", "\x04", "\x7f", "\u00ad", "\t", "é", "€", "𝔘", "\ufeff"]
    c += [chr(b) for b in range(0x00, 0x80)]  # every single ASCII byte
    c += PROSE + CODE + SCRIPTS + EMOJI + COMBINING + SPECIALS
    c += ws_cases(rng) + digit_cases(rng) + contraction_cases() + punct_cases(rng)
    c += random_unicode(rng, cps, 450) + ascii_soup(rng, 300)
    c += mixed(rng, PROSE + CODE + SCRIPTS + EMOJI + SPECIALS + COMBINING, 420)
    c += ["a" * 1000, "ab" * 300, " " * 300 + "x", "日" * 200, "😀" * 100,
          "aGVsbG8gd29ybGQ=" * 40, "x" + "\n" * 120 + "y"]
    seen, out = set(), []
    for s in c:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


# ----------------------------------------------------------------------------------------
# SmolLM2 parity and split fixtures
# ----------------------------------------------------------------------------------------
def byte_ends(s, spans):
    """Char-offset spans -> byte offsets where pieces end."""
    ends = []
    for _, (a, b) in spans:
        ends.append(len(s[:b].encode("utf-8")))
    return ends


def split_ends(pattern, s):
    sp = pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False)
    hf = byte_ends(s, sp.pre_tokenize_str(s))
    ends, pos = [], 0
    for m in regex.findall(pattern, s):
        pos += len(m.encode("utf-8"))
        ends.append(pos)
    return hf, ends


def write_smollm(gguf_path, strings):
    tok, _ = hfg.build(gguf_path)
    pre = tok.pre_tokenizer
    mismatch = 0
    path = os.path.join(FIX, "tokenizer_smollm2.tsv")
    with open(path, "w", encoding="ascii") as f:
        f.write("# input_hex\tids\tdecoded_hex_or_=\tsmollm_ends\tgpt2_ends\tllama3_ends\t"
                "qwen2_ends (tools/make_tokenizer_fixtures.py)\n")
        for s in strings:
            ids = tok.encode(s, add_special_tokens=False).ids
            dec = tok.decode(ids, skip_special_tokens=False)
            dec_col = "=" if dec == s else dec.encode("utf-8").hex()
            cols = [s.encode("utf-8").hex(), " ".join(map(str, ids)), dec_col]
            # SmolLM2 split, on text with the added tokens taken out (as the encoder sees it).
            cols.append(" ".join(map(str, byte_ends(s, pre.pre_tokenize_str(s)))))
            for pat in (GPT2_PATTERN, hfg.LLAMA3_PATTERN, hfg.QWEN2_PATTERN):
                hf, rx = split_ends(pat, s)
                if hf != rx:
                    mismatch += 1
                    print(f"note: HF Split and regex.findall differ on {s!r}", file=sys.stderr)
                cols.append(" ".join(map(str, hf)))
            f.write("\t".join(cols) + "\n")
    print(f"{path}: {len(strings)} strings ({os.path.getsize(path)} bytes), "
          f"{mismatch} HF/regex split disagreements")


# ----------------------------------------------------------------------------------------
# Tiny SentencePiece-style BPE
# ----------------------------------------------------------------------------------------
SPM_TRAIN = "\n".join(PROSE + SCRIPTS[:4] + [
    "Once upon a time there was a little tokenizer that wanted to merge every pair it saw.",
    "It learned that the most frequent pairs are merged first, and rare ones later on.",
    "Spaces become the lower one eighth block, and bytes it has never seen fall back.",
    "Byte fallback means that any character can be encoded, even emoji and rare scripts.",
    "She sells sea shells by the sea shore; the shells she sells are surely sea shells.",
    "Peter Piper picked a peck of pickled peppers. How many pickled peppers did he pick?",
] * 3)

SPM_SPECIALS = ["<unk>", "<s>", "</s>"]


def train_spm():
    base = Tokenizer(models.BPE(unk_token="<unk>"))
    base.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPM_SPECIALS,
                                  show_progress=False)
    base.train_from_iterator(SPM_TRAIN.split("\n"), trainer)
    trained = json.loads(base.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m)
              for m in trained["merges"]]
    # Llama-2 layout: specials, then the 256 byte tokens, then the learned pieces.
    vocab = {t: i for i, t in enumerate(SPM_SPECIALS)}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for t, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1]):
        if t not in vocab:
            vocab[t] = len(vocab)
    return vocab, merges


def spm_tokenizer(vocab, merges, metaspace):
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True,
                               byte_fallback=True))
    # Llama-2: Prepend + Replace normalizer; newer Mistral/Llama files: a Metaspace
    # pre-tokenizer (prepend_scheme "first", no split). Both use the same decoder.
    if metaspace:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first",
                                                     split=False)
    else:
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"),
                                               normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    tok.add_special_tokens(SPM_SPECIALS)
    return tok


def write_spm_gguf(vocab, merges, path):
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    rank_of = {}
    for r, (a, b) in enumerate(merges):
        rank_of.setdefault(a + b, r)
    scores, types = [], []
    for t in tokens:
        scores.append(-float(rank_of[t]) if t in rank_of else 0.0)
        if t in SPM_SPECIALS:
            types.append(2 if t == "<unk>" else 3)
        elif t.startswith("<0x") and len(t) == 6:
            types.append(6)
        else:
            types.append(1)
    w = gguf.GGUFWriter(path, "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_space_prefix(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_spm(strings):
    vocab, merges = train_spm()
    tok = spm_tokenizer(vocab, merges, metaspace=False)
    meta = spm_tokenizer(vocab, merges, metaspace=True)
    tok.save(os.path.join(FIX, "tokenizer_spm.json"))
    meta.save(os.path.join(FIX, "tokenizer_spm_meta.json"))
    write_spm_gguf(vocab, merges, os.path.join(FIX, "tokenizer_spm.gguf"))
    path = os.path.join(FIX, "tokenizer_spm.tsv")
    with open(path, "w", encoding="ascii") as f:
        f.write("# input_hex\tids\tdecoded_hex_or_=\tmeta_ids\tmeta_decoded_hex_or_=\n")
        for s in strings:
            cols = [s.encode("utf-8").hex()]
            for t in (tok, meta):
                ids = t.encode(s, add_special_tokens=False).ids
                dec = t.decode(ids, skip_special_tokens=False)
                cols += [" ".join(map(str, ids)), "=" if dec == s else dec.encode("utf-8").hex()]
            f.write("\t".join(cols) + "\n")
    print(f"{path}: {len(strings)} strings, vocab {len(vocab)}, {len(merges)} merges")


# ----------------------------------------------------------------------------------------
# Chat templates
# ----------------------------------------------------------------------------------------
QWEN2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% endif %}")
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}"
    "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}{% if (message['role'] == 'user') != "
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}")
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant "
    "roles are supported!') }}{% endif %}{% endfor %}")

BOS_EOS = {"smollm2": ("<|im_start|>", "<|im_end|>"), "qwen2": ("<|endoftext|>", "<|im_end|>"),
           "llama3": ("<|begin_of_text|>", "<|eot_id|>"), "llama2": ("<s>", "</s>"),
           "mistral": ("<s>", "</s>")}


class TemplateError(Exception):
    pass


def render(text, name, messages, add_gen):
    def raise_exception(msg):
        raise TemplateError(msg)
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    bos, eos = BOS_EOS[name]
    try:
        return env.from_string(text).render(messages=messages, add_generation_prompt=add_gen,
                                            bos_token=bos, eos_token=eos)
    except TemplateError:
        return None


def chat_cases():
    M = lambda r, c: {"role": r, "content": c}  # noqa: E731
    convs = [
        [M("user", "Hello!")],
        [M("system", "You are terse."), M("user", "What is 2+2?")],
        [M("user", "Hi"), M("assistant", "Hello! How can I help?"), M("user", "Tell a joke.")],
        [M("system", "Be nice."), M("user", "  padded  \n"), M("assistant", " ok "),
         M("user", "again\t")],
        [M("user", "multi\nline\n\ncontent with <|im_end|> inside")],
        [M("user", "日本語 🤗 émoji")],
        [M("user", "")],
        [M("system", "only a system message")],
        [M("user", "a"), M("user", "b")],                 # order the [INST] family refuses
        [M("assistant", "starts with assistant")],
        [M("user", "q"), M("assistant", "a")],
        [M("system", "s"), M("user", "u"), M("assistant", "a"), M("user", "u2"),
         M("assistant", "a2")],
        [M("user", "\u00a0nbsp and ideographic space\u3000")],
    ]
    return convs


def write_chat(gguf_path):
    r = gguf.GGUFReader(gguf_path)
    f = r.fields["tokenizer.chat_template"]
    smollm = bytes(f.parts[f.data[0]]).decode("utf-8")
    templates = {"smollm2": smollm, "qwen2": QWEN2_TEMPLATE, "llama3": LLAMA3_TEMPLATE,
                 "llama2": LLAMA2_TEMPLATE, "mistral": MISTRAL_TEMPLATE}
    cases = []
    for name, text in templates.items():
        for msgs in chat_cases():
            for add_gen in (True, False):
                out = render(text, name, msgs, add_gen)
                cases.append({"template": name, "messages": msgs, "add_generation_prompt": add_gen,
                              "expected": out})
    path = os.path.join(FIX, "chat_templates.json")
    with open(path, "w", encoding="utf-8") as fp:
        json.dump({"templates": templates, "cases": cases}, fp, indent=1, ensure_ascii=False)
        fp.write("\n")
    print(f"{path}: {len(cases)} cases")


def main(argv):
    gguf_path = argv[1] if len(argv) > 1 else os.path.join(
        ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    os.makedirs(FIX, exist_ok=True)
    strings = corpus()
    write_smollm(gguf_path, strings)
    spm_strings = strings[:200] + [s for s in strings if len(s) < 80][200:500]
    write_spm(spm_strings)
    write_chat(gguf_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
