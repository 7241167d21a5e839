#!/usr/bin/env python3
"""Write tests/fixtures/hf_tokenizer/: small Hugging Face tokenizers and the ids PyPI's `tokenizers` gives them.

The C++ test tests/io/test_hf_tokenizer.cpp (HfTokenizerFixture.*) loads every tokenizer folder with
stretch::load_hf_tokenizer and requires, for every test string, the same ids as `tokenizers` (encode with
add_special_tokens=False), BOS prepended exactly as add_special_tokens=True does for a subset, and decode() equal to
`tokenizers`' decode(ids, skip_special_tokens=False) wherever that is free of U+FFFD.

Nothing is downloaded: each tokenizer is a BPE model trained here with `tokenizers`' BpeTrainer on a deterministic
multi-script text (the word lists below, sampled by random.Random(SEED)), then given the pipeline of a real model
family:

    gpt2        ByteLevel pre-tokenizer (GPT-2's regex), ByteLevel decoder, <|endoftext|>
    llama3      Split(LLaMA 3's regex) + ByteLevel(use_regex=false), ignore_merges, <|begin_of_text|> template
    qwen2       NFC normalizer, Split(Qwen2's regex) + ByteLevel(use_regex=false), ChatML tokens, a normalized
                non-special added token; EOS only in generation_config.json
    llama2      SentencePiece-style BPE (LLaMA 2 / TinyLlama / Mistral v0.1): byte_fallback, fuse_unk, normalizer
                Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer, decoder Replace / ByteFallback / Fuse / Strip,
                <unk> <s> </s> at ids 0..2 and <0x00>..<0xFF> at 3..258, "<s> $A" template
    llama2_metaspace  the same model with Metaspace(prepend_scheme "first", split false) instead of the normalizer
                (transformers' legacy=false form), a Metaspace decoder, and added tokens with lstrip / rstrip /
                single_word
    lower_nfkd  NFKD + Lowercase + Replace(Regex) normalizer; Digits + Split(String, merged_with_previous) +
                ByteLevel(add_prefix_space) pre-tokenizers; RobertaProcessing
    split_modes NFKC + Prepend normalizer; Split with every behavior (removed, merged_with_next, contiguous,
                isolated+invert), Digits(contiguous), Metaspace(always, split); BertProcessing

Each folder holds tokenizer.json, tokenizer_config.json (and generation_config.json for qwen2). cases.json holds
the test strings (>= 2,000: scripts, combining marks, whitespace runs, digits, emoji with ZWJ, code,
contractions, added-token text inside words) and, per tokenizer, the ids, the ids with special tokens for every
SPECIAL_EVERY-th string, the decoded text where it differs from the string, and the expected BOS / EOS ids.

Regenerate (from the repository root; needs only `tokenizers`, CPU, a few seconds):

    pip install tokenizers
    python3 tools/make_hf_tokenizer_fixture.py                 # writes tests/fixtures/hf_tokenizer/
    python3 tools/make_hf_tokenizer_fixture.py --out DIR

The output is deterministic for a given `tokenizers` version (fixed seed, single-threaded training, sorted JSON
keys). Written with tokenizers 0.23.3.
"""

import argparse
import json
import os
import pathlib
import random
import sys

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # deterministic training
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import tokenizers  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
SEED = 20240611
SPECIAL_EVERY = 10

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                  r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                 r"\s*[\r\n]+|\s+(?!\S)|\s+")

WORDS = {
    "en": ("the of and to in is was for that with as on by at from his her they we you it this be are were not "
           "have had has but which one all their there when who will would can could about into more time only "
           "people year years first new other some these two may after most also made over many where such "
           "through before being same between under while city world house school water night story children "
           "little girl boy happy played ran found small big friend friends garden tree dog cat bird sun moon "
           "rain walked looked said asked wanted decided together always never every because something nothing "
           "Tokenizer tokenization BPE merges vocabulary Hugging Face transformers model language context length "
           "extrapolation attention position rotary ALiBi training evaluation perplexity").split(),
    "fr": "le la les des une est était avec pour dans qui très été café naïve élève garçon français où déjà".split(),
    "de": "der die das und ist nicht mit für über Straße Mädchen schön größer Grüße Äpfel Öl Übung".split(),
    "es": "el la los que con para niño señor año corazón canción mañana pequeño".split(),
    "ru": "и в не на что он это как по но они мы русский текст привет мир Москва".split(),
    "el": "και το να της είναι Ελληνικά γλώσσα καλημέρα κόσμε".split(),
    "ar": "في من على إلى أن هذا العربية مرحبا بالعالم كتاب".split(),
    "he": "של את על עם זה שלום עולם עברית".split(),
    "hi": "और के है में की यह हिन्दी नमस्ते दुनिया भाषा".split(),
    "zh": "的 一 是 不 了 人 我 在 有 他 这 中文 文本 你好 世界 语言 模型".split(),
    "ja": "の に は を た が で て と し れ さ 日本語 こんにちは 世界 カタカナ ひらがな".split(),
    "ko": "이 그 저 한국어 텍스트 안녕하세요 세계 사람".split(),
    "th": "ภาษาไทย สวัสดี ชาวโลก".split(),
    "emoji": ["😀", "👍", "👍🏽", "🎉", "❤️", "🇫🇷", "👨‍👩‍👧‍👦", "🏳️‍🌈", "1️⃣", "🤖"],
}

CODE = [
    "def f(x):\n    return x ** 2\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
    "if (a != b && c >= d) { return -1; }",
    '{"key": "value", "list": [1, 2, 3], "nested": {"a": null}}',
    "<div class=\"main\"><p>Hello</p></div>",
    "https://example.com/path/to/page?query=1&x=%20#frag",
    "user.name+tag@example.org",
    "/usr/local/bin/python3 -m pip install --upgrade tokenizers",
    "SELECT * FROM users WHERE id = 42 AND name LIKE '%bob%';",
    "x = [i*i for i in range(10) if i % 2 == 0]",
    "std::vector<std::int32_t> ids = tok.encode(text);",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); }",
    "    indented    code\t\twith\ttabs",
    "a_b-c.d:e;f|g\\h",
]

FRAGMENTS = [
    # contractions (case matters for GPT-2's regex, not LLaMA 3's)
    "I'm", "don't", "they'll", "we've", "she'd", "you're", "it's", "IT'S", "DON'T", "We'Ll", "'S", "''", "'x",
    "rock'n'roll", "o'clock", "it\u2019s", "'s'", "'ſ", "'\u212a",
    # combining marks and compatibility characters
    "e\u0301", "cafe\u0301", "a\u0308\u0301", "n\u0303", "A\u030a", "\u00c5", "\u212b", "\ufb01le", "\uff21\uff22\uff23\uff11\uff12",
    "x\u00b2", "\u216b", "\u2460", "\u1100\u1161\u11a8", "\u0915\u094d\u0937", "Z\u0351\u0352\u0353\u0354", "\u0130stanbul",
    "\u03a3\u039f\u03a6\u039f\u03a3", "stra\u00dfe", "\u1e9e", "\u0149", "\u01c5",
    # whitespace
    " ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r\n\r\n", "\r", " \n ", "\u00a0", "\u3000", "\u2028",
    "\u2029", "\u180e", "\u200b", "\ufeff", "\u0085", "\u2003", "\u202f", "\u205f", "\x0b", "\x0c", "\x1c",
    # digits
    "0", "7", "42", "123", "1234", "12345", "123456", "1234567", "12345678901234567890", "3.14159", "1,000,000",
    "2024-01-01", "0x1F", "42nd", "\u0663\u0664\u0665", "\u0967\u0968\u0969", "\uff19\uff18", "\u00bd", "10\u00b3",
    # punctuation
    "...", "!!!", "???", "?!", "--", "\u2014", "\u2013", "\u201cquoted\u201d", "\u00abguillemets\u00bb", "(", ")", "[]",
    "{}", "@", "#", "$5", "\u20ac10", "100%", "&amp;", "*", "~", "^_^", ":-)", "\u2026",
    # odd code points
    "\u2581", "\u2581\u2581x", "\ufffd", "\ue000", "\U0001d400", "\U00020000", "\u0000", "\x7f", "\u00ad", "\u200d",
    "\u2060", "\U000e0041",
]

ADDED_TEXT = [
    "foo<|endoftext|>bar", "<|endoftext|>", "x <|endoftext|> y", "<|endoftext|><|endoftext|>",
    "<s>hello</s>", "<s>", "</s>", "a<s>b", " <s> ", "<s><s>", "hello<s>world", "<unk>", "x</s>y", "</s> ",
    "<|im_start|>user\nHi<|im_end|>\n", "<|im_start|>", "a<|im_end|>b", "<|begin_of_text|>Hi", "<|eot_id|>",
    "<|start_header_id|>system<|end_header_id|>\n\nYou are", "<|reserved_special_token_0|>x",
    "a <mask> b", "a<mask>b", "a   <mask>   b", "<mask>", " <mask>", "[SW] x", "a[SW]b", "a [SW] b", "[SW]",
    "x[SW]", "[SW]y", "\u00e9clair", "e\u0301clair", "un \u00e9clair", "<pad>", "[CLS] x [SEP]", "<|endoftext",
    "<s", "s>", "<|im_start|><|im_start|>", "\u00c9CLAIR", "dog\u2581house", "foo <|endoftext|>",
]


def corpus(rng):
    """About 6,000 lines of mixed text for training."""
    langs = list(WORDS)
    weights = [40 if k == "en" else 3 for k in langs]
    lines = []
    for _ in range(6000):
        lang = rng.choices(langs, weights)[0]
        words = WORDS[lang]
        n = rng.randint(3, 14)
        sep = "" if lang in ("zh", "ja") else " "
        ws = [rng.choice(words) for _ in range(n)]
        if lang == "en" and rng.random() < 0.3:
            ws[0] = ws[0].capitalize()
        line = sep.join(ws)
        r = rng.random()
        if r < 0.2:
            line += rng.choice([".", "!", "?", ",", ";", ":"])
        elif r < 0.3:
            line += " " + str(rng.randint(0, 10 ** rng.randint(1, 6)))
        elif r < 0.35:
            line = rng.choice(CODE)
        elif r < 0.4:
            line += " " + rng.choice(["I'm", "don't", "it's", "they'll", "we've"])
        lines.append(line)
    return lines


def test_strings(rng):
    out = ["", "Hello world", "Hello, world! How are you?", " leading space", "trailing space ", "  two leading",
           "The quick brown fox jumps over the lazy dog.", "\n\n\n", "    ", "a\tb\r\nc"]
    out += CODE + FRAGMENTS + ADDED_TEXT
    for words in WORDS.values():
        out.append(" ".join(words[:12]))
    pools = [FRAGMENTS, ADDED_TEXT, CODE] + [WORDS[k] for k in WORDS]
    seps = [" ", "", "  ", "\n", "\t", "\u00a0", "\u3000", "\r\n", " \n", "   "]
    while len(out) < 2200:
        k = rng.randint(1, 8)
        parts = []
        for _ in range(k):
            pool = rng.choice(pools) if rng.random() < 0.6 else WORDS["en"]
            parts.append(rng.choice(pool))
            parts.append(rng.choice(seps) if rng.random() < 0.4 else " ")
        s = "".join(parts)
        r = rng.random()
        if r < 0.1:
            s = s.strip()
        elif r < 0.15:
            s = " " + s
        elif r < 0.2:
            s = s.upper()
        out.append(s)
    for _ in range(5):  # a few long strings
        out.append(" ".join(rng.choice(WORDS["en"] + FRAGMENTS) for _ in range(120)))
    out.append("=" * 300)
    out.append(" " * 50 + "x" + "\n" * 20)
    out.append("1" * 64)
    return out


def train(lines, normalizer, pre_tokenizer, vocab_size, initial_alphabet=(), limit_alphabet=None):
    """A BPE model trained on `lines`. limit_alphabet keeps the most frequent characters (ties by code point) by
    dropping the others from the training text (BpeTrainer's own limit_alphabet breaks ties in hash order, which
    changes from run to run); the dropped ones then reach the model only through byte fallback or unk."""
    if limit_alphabet is not None:
        counts = {}
        for line in lines:
            for c in line:
                counts[c] = counts.get(c, 0) + 1
        keep = set(sorted(counts, key=lambda c: (-counts[c], c))[:limit_alphabet]) | {" "}
        lines = ["".join(c for c in line if c in keep) for line in lines]
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                                        initial_alphabet=list(initial_alphabet)))
    return tok


def byte_level_tok(lines, vocab_size, normalizer, pre_tokenizer):
    return train(lines, normalizer, pre_tokenizer, vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())


def sp_model_json(lines):
    """A SentencePiece-style BPE vocabulary: <unk> <s> </s>, the 256 byte tokens, then the trained pieces."""
    tok = train(lines, None, pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True),
                1200, limit_alphabet=120)
    model = json.loads(tok.to_str())["model"]
    trained = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = 3 + b
    for piece, _ in trained:
        if piece not in vocab:
            vocab[piece] = len(vocab)
    model.update(vocab=vocab, byte_fallback=True, fuse_unk=True, unk_token="<unk>", ignore_merges=False)
    return model


def special(content, id_, **kw):
    d = dict(id=id_, content=content, single_word=False, lstrip=False, rstrip=False, normalized=False, special=True)
    d.update(kw)
    return d


def finish(tok_json, added):
    """tokenizer.json text with the given added tokens (their ids as given)."""
    tok_json["added_tokens"] = added
    return Tokenizer.from_str(json.dumps(tok_json))


def build(lines):
    """name -> (Tokenizer, tokenizer_config dict, generation_config dict or None, bos token or None, eos token or None)."""
    out = {}

    # GPT-2
    t = byte_level_tok(lines, 1000, None, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True))
    t.decoder = decoders.ByteLevel()
    t.post_processor = processors.ByteLevel(trim_offsets=False)
    j = json.loads(t.to_str())
    n = len(j["model"]["vocab"])
    t = finish(j, [special("<|endoftext|>", n)])
    out["gpt2"] = (t, {"tokenizer_class": "GPT2Tokenizer", "add_bos_token": False, "bos_token": "<|endoftext|>",
                       "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "model_max_length": 1024},
                   None, None, "<|endoftext|>")

    # LLaMA 3
    t = byte_level_tok(lines, 1200, None, pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)]))
    t.decoder = decoders.ByteLevel()
    j = json.loads(t.to_str())
    n = len(j["model"]["vocab"])
    j["model"]["ignore_merges"] = True
    names = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|start_header_id|>",
             "<|end_header_id|>", "<|eot_id|>"]
    j["post_processor"] = {"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        {"type": "TemplateProcessing",
         "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
         "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                  {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
         "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [n], "tokens": ["<|begin_of_text|>"]}}}]}
    t = finish(j, [special(s, n + i) for i, s in enumerate(names)])
    out["llama3"] = (t, {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
                         "eos_token": "<|end_of_text|>", "model_max_length": 131072},
                     {"bos_token_id": n, "eos_token_id": [n + 1, n + 5]}, "<|begin_of_text|>", "<|end_of_text|>")

    # Qwen2
    t = byte_level_tok(lines, 1100, normalizers.NFC(), pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)]))
    t.decoder = decoders.ByteLevel()
    t.post_processor = processors.ByteLevel(trim_offsets=False)
    j = json.loads(t.to_str())
    n = len(j["model"]["vocab"])
    added = [special("<|endoftext|>", n), special("<|im_start|>", n + 1), special("<|im_end|>", n + 2),
             special("e\u0301clair", n + 3, special=False, normalized=True)]
    t = finish(j, added)
    out["qwen2"] = (t, {"tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "pad_token": "<|endoftext|>",
                        "errors": "replace", "model_max_length": 32768},
                    {"bos_token_id": n, "eos_token_id": [n + 2, n]}, None, "<|im_end|>")

    # LLaMA 2 (SentencePiece-style BPE with byte fallback)
    model = sp_model_json(lines)
    template = {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    sp_added = [special("<unk>", 0), special("<s>", 1), special("</s>", 2)]
    j = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
         "normalizer": {"type": "Sequence", "normalizers": [
             {"type": "Prepend", "prepend": "\u2581"},
             {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
         "pre_tokenizer": None, "post_processor": template,
         "decoder": {"type": "Sequence", "decoders": [
             {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
             {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
         "model": model}
    t = finish(j, sp_added)
    sp_config = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
                 "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": False, "normalized": False,
                               "rstrip": False, "single_word": False},
                 "eos_token": {"__type": "AddedToken", "content": "</s>", "lstrip": False, "normalized": False,
                               "rstrip": False, "single_word": False},
                 "unk_token": "<unk>", "legacy": True, "model_max_length": 2048}
    out["llama2"] = (t, sp_config, None, "<s>", "</s>")

    # LLaMA 2 with Metaspace (legacy=false / Mistral form)
    n = len(model["vocab"])
    j = json.loads(json.dumps(j))
    j["normalizer"] = None
    j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False}
    j["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False},
        {"type": "ByteFallback"}, {"type": "Fuse"}]}
    added = sp_added + [special("<mask>", n, lstrip=True), special("[SW]", n + 1, single_word=True, special=False),
                        special("<pad>", n + 2, rstrip=True, special=False, normalized=True)]
    t = finish(j, added)
    out["llama2_metaspace"] = (t, dict(sp_config, legacy=False), None, "<s>", "</s>")

    # lower_nfkd: normalizer and pre-tokenizer variety, RobertaProcessing
    norm = normalizers.Sequence([normalizers.NFKD(), normalizers.Lowercase(),
                                 normalizers.Replace(Regex(r"[ \t]{2,}"), " ")])
    pre = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                   pre_tokenizers.Split("-", behavior="merged_with_previous"),
                                   pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)])
    t = byte_level_tok(lines, 900, norm, pre)
    t.decoder = decoders.ByteLevel()
    j = json.loads(t.to_str())
    n = len(j["model"]["vocab"])
    j["post_processor"] = {"type": "RobertaProcessing", "sep": ["</s>", n + 1], "cls": ["<s>", n],
                           "trim_offsets": False, "add_prefix_space": True}
    added = [special("<s>", n), special("</s>", n + 1), special("<pad>", n + 2),
             special("<mask>", n + 3, lstrip=True, rstrip=True), special("[SW]", n + 4, single_word=True, special=False),
             special("\u00c9clair", n + 5, special=False, normalized=True)]
    t = finish(j, added)
    out["lower_nfkd"] = (t, {"tokenizer_class": "RobertaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
                             "model_max_length": 512}, None, "<s>", "</s>")

    # split_modes: every Split behavior, Metaspace(always, split), BertProcessing
    norm = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace("\t", "    "), normalizers.Prepend("#")])
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex("\u200b+"), behavior="removed"),
        pre_tokenizers.Split(Regex(r"\n+"), behavior="merged_with_next"),
        pre_tokenizers.Split(Regex(r"\p{P}"), behavior="contiguous"),
        pre_tokenizers.Split(Regex(r"[aeiouAEIOU]+"), behavior="isolated", invert=True),
        pre_tokenizers.Digits(individual_digits=False),
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)])
    t = train(lines, norm, pre, 800, limit_alphabet=400)
    t.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    j = json.loads(t.to_str())
    n = len(j["model"]["vocab"])
    j["model"]["unk_token"] = "[UNK]"
    j["model"]["fuse_unk"] = False
    j["post_processor"] = {"type": "BertProcessing", "sep": ["[SEP]", n + 2], "cls": ["[CLS]", n + 1]}
    added = [special("[UNK]", n), special("[CLS]", n + 1), special("[SEP]", n + 2), special("[MASK]", n + 3)]
    j["model"]["vocab"]["[UNK]"] = n
    t = finish(j, added)
    out["split_modes"] = (t, {"tokenizer_class": "BertTokenizer", "cls_token": "[CLS]", "sep_token": "[SEP]",
                              "model_max_length": 512}, None, "[CLS]", None)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "tests" / "fixtures" / "hf_tokenizer"))
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    rng = random.Random(SEED)
    lines = corpus(rng)
    strings = test_strings(random.Random(SEED + 1))
    subset = list(range(0, len(strings), SPECIAL_EVERY))
    cases = {"tokenizers_version": tokenizers.__version__, "strings": strings, "special_subset": subset,
             "tokenizers": {}}
    for name, (tok, config, gen_config, bos, eos) in build(lines).items():
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "tokenizer.json").write_text(json.dumps(json.loads(tok.to_str()), ensure_ascii=False, sort_keys=True,
                                                     separators=(",", ":")) + "\n", encoding="utf-8")
        (d / "tokenizer_config.json").write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
        if gen_config is not None:
            (d / "generation_config.json").write_text(json.dumps(gen_config, indent=1, sort_keys=True) + "\n")
        # reload from the written file, as the C++ side does
        tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        ids = [tok.encode(s, add_special_tokens=False).ids for s in strings]
        decoded = []
        for s, i in zip(strings, ids):
            text = tok.decode(i, skip_special_tokens=False)
            decoded.append(None if text == s else text)
        cases["tokenizers"][name] = {
            "ids": ids,
            "ids_special": [tok.encode(strings[k], add_special_tokens=True).ids for k in subset],
            "decoded": decoded,
            "bos_id": tok.token_to_id(bos) if bos is not None else -1,
            "eos_id": tok.token_to_id(eos) if eos is not None else -1,
            "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        }
        lossless = sum(x is None for x in decoded)
        print(f"{name}: vocab {tok.get_vocab_size(True)}, {sum(map(len, ids))} ids, decode == text for "
              f"{lossless}/{len(strings)}", file=sys.stderr)
    (out / "cases.json").write_text(json.dumps(cases, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n",
                                    encoding="utf-8")
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({len(strings)} strings, {total / 1e6:.2f} MB)", file=sys.stderr)


if __name__ == "__main__":
    main()
