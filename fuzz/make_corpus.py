#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora, fuzz/corpus/<target>/: a few small valid files per reader.

    /usr/bin/python3 fuzz/make_corpus.py [path/to/stretch]      (default build/stretch)

Model files (safetensors, config.json, GGUF, llama2.c) come from tiny models trained for one step with the stretch
binary and exported with it; tokenizer, R database and command-line seeds are written here with the standard
library only (GPT-2 and llama2.c vocabularies are cut down from ../shared/data when present). Deterministic for a
given stretch binary; the whole corpus stays far under 2 MB.
"""
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus")
STRETCH = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "stretch"))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def stretch(*args):
    subprocess.run([STRETCH, *args], check=True, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})


# ------------------------------------------------------------------------------------------- models via stretch
def models(tmp):
    text = os.path.join(tmp, "t.txt")
    with open(text, "w") as f:
        f.write("It is a truth universally acknowledged, that a single man in possession of a good fortune, "
                "must be in want of a wife.\n" * 8)
    tiny = ["--layers", "1", "--width", "8", "--heads", "2", "--mlp", "16", "--length", "8", "--batch", "1",
            "--steps", "1", "--eval-interval", "0", "--valid-fraction", "0.1", "--quiet", "--threads", "1",
            "--cache-dir", os.path.join(tmp, "cache"), "--text", text]
    runs = {
        "gpt_alibi": [],
        "gpt_learned_untied": ["--position", "learned", "--untied"],
        "gpt_t5_window": ["--position", "t5", "--attn-window", "4", "--logn", "full", "--positions", "shifted:16"],
        "gpt_sinusoidal_sqrt": ["--position", "sinusoidal", "--embed-scale", "sqrt", "--no-bias"],
        "llama_rope": ["--arch", "llama", "--position", "rope", "--kv-heads", "1"],
        "llama_rope_yarn": ["--arch", "llama", "--position", "rope", "--rope-scaling", "yarn:4"],
    }
    for name, extra in runs.items():
        out = os.path.join(tmp, name)
        stretch("train", "--out", out, *tiny, *extra)
        ck = os.path.join(out, "checkpoints", read(os.path.join(out, "checkpoints", "latest")).decode().strip())
        put("checkpoint", name + ".json", read(os.path.join(ck, "config.json")))
        if name in ("gpt_alibi", "llama_rope"):
            put("safetensors", name + ".safetensors", read(os.path.join(ck, "model.safetensors")))
    for name, typ in [("gpt_alibi", "f32"), ("gpt_learned_untied", "f16"), ("gpt_sinusoidal_sqrt", "bf16"),
                      ("llama_rope", "q8_0"), ("llama_rope_yarn", "f32")]:
        g = os.path.join(tmp, name + ".gguf")
        stretch("export", "gguf", os.path.join(tmp, name), "--out", g, "--type", typ)
        put("gguf", f"{name}_{typ}.gguf", read(g))
    b = os.path.join(tmp, "llama.bin")
    stretch("export", "llama2c", os.path.join(tmp, "llama_rope"), "--out", b)
    put("llama2c", "llama_rope.bin", read(b))


# ----------------------------------------------------------------------------------------------- safetensors
def safetensors_file(tensors, metadata=None):
    header, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def safetensors_seeds():
    put("safetensors", "dtypes.safetensors", safetensors_file({
        "f32": ("F32", [2, 3], struct.pack("<6f", 1, -2, 3.5, 0, 1e-3, 7)),
        "f64": ("F64", [2], struct.pack("<2d", 1.25, -8)),
        "f16": ("F16", [4], struct.pack("<4H", 0x3C00, 0xC000, 0x7C00, 0x0001)),
        "bf16": ("BF16", [1, 2], struct.pack("<2H", 0x3F80, 0xC120)),
        "i64": ("I64", [3], struct.pack("<3q", 1, -1, 2**31 - 1)),
        "i32": ("I32", [2, 1], struct.pack("<2i", 7, -7)),
        "i16": ("I16", [1], struct.pack("<h", -3)),
        "i8": ("I8", [2], struct.pack("<2b", 1, -1)),
        "u8": ("U8", [2], b"\x00\xff"),
        "bool": ("BOOL", [2], b"\x00\x01"),
        "scalar": ("F32", [], struct.pack("<f", 3)),
        "empty": ("F32", [0, 4], b""),
    }, {"format": "pt", "note": "fuzz seed"}))
    src = os.path.join(ROOT, "tests", "io", "data", "python_written.safetensors")
    if os.path.exists(src):
        put("safetensors", "python_written.safetensors", read(src))


# ------------------------------------------------------------------------------------------------ llama2.c
def llama2c_seeds():
    def model(dim, hidden, layers, heads, kv, vocab, seq, shared):
        hs = dim // heads
        counts = [vocab * dim, layers * dim, layers * dim * dim, layers * kv * hs * dim, layers * kv * hs * dim,
                  layers * dim * dim, layers * dim, layers * hidden * dim, layers * dim * hidden,
                  layers * hidden * dim, dim, seq * hs // 2, seq * hs // 2] + ([] if shared else [vocab * dim])
        n = sum(counts)
        floats = struct.pack(f"<{n}f", *[((i * 37) % 101 - 50) / 100.0 for i in range(n)])
        return struct.pack("<7i", dim, hidden, layers, heads, kv, vocab if shared else -vocab, seq) + floats
    put("llama2c", "tiny_shared.bin", model(8, 12, 1, 2, 1, 6, 4, True))
    put("llama2c", "tiny_unshared.bin", model(4, 6, 2, 1, 1, 3, 2, False))


# --------------------------------------------------------------------------------------- llama2.c tokenizer
def llama2c_tokenizer_file(pieces, scores, max_len=None):
    max_len = max_len or max(1, max(len(p) for p in pieces))
    out = struct.pack("<i", max_len)
    for p, s in zip(pieces, scores):
        out += struct.pack("<fi", s, len(p)) + p
    return out


def tokenizer_llama2c_seeds():
    pieces = [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + [b"<0x%02X>" % b for b in range(256)]
    pieces += [b" ", b"a", b"b", b" a", b"ab", b" ab", b"\xc3\xa9", b"e"]
    scores = [0.0] * 259 + [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0, -8.0]
    put("tokenizer_llama2c", "tiny.bin", struct.pack("<H", len(pieces)) + llama2c_tokenizer_file(pieces, scores))
    tok = os.path.join(SHARED, "llama2c", "tok512.bin")
    if os.path.exists(tok):
        put("tokenizer_llama2c", "tok512.bin", struct.pack("<H", 512) + read(tok))


# ------------------------------------------------------------------------------------------ GPT-2 tokenizer
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def gpt2_pair(encoder, merges):
    enc = json.dumps(encoder, ensure_ascii=False).encode()
    bpe = ("#version: 0.2\n" + "".join(m + "\n" for m in merges)).encode()
    return struct.pack("<I", len(enc)) + enc + bpe


def tokenizer_gpt2_seeds():
    alphabet = [bytes_to_unicode()[b] for b in range(256)]
    vocab_bpe = os.path.join(SHARED, "gpt2-bpe", "vocab.bpe")
    for name, n in [("first_merges", 300), ("few_merges", 12)]:
        tokens = list(alphabet)
        merges = []
        if os.path.exists(vocab_bpe):
            lines = read(vocab_bpe).decode().split("\n")[1:]
            for line in lines[:n]:
                a, b = line.split(" ")
                merges.append(line)
                for t in (a, b, a + b):
                    if t not in tokens:
                        tokens.append(t)
        else:
            for a, b in [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n")][:n]:
                merges.append(a + " " + b)
                tokens.append(a + b)
        encoder = {t: i for i, t in enumerate(tokens)}
        encoder["<|endoftext|>"] = len(tokens)
        put("tokenizer_gpt2", name + ".bin", gpt2_pair(encoder, merges))


# ------------------------------------------------------------------------------ Hugging Face tokenizer.json
def hf_pair(tokenizer, config=None):
    tok = json.dumps(tokenizer, ensure_ascii=False).encode()
    cfg = json.dumps(config, ensure_ascii=False).encode() if config is not None else b""
    return struct.pack("<I", len(tok)) + tok + cfg


def hf_added(content, id_, **kw):
    d = dict(id=id_, content=content, single_word=False, lstrip=False, rstrip=False, normalized=False, special=True)
    d.update(kw)
    return d


def hf_bpe(vocab, merges, **kw):
    d = dict(type="BPE", dropout=None, unk_token=None, continuing_subword_prefix=None, end_of_word_suffix=None,
             fuse_unk=False, byte_fallback=False, ignore_merges=False, vocab=vocab, merges=merges)
    d.update(kw)
    return d


def hf_tokenizer(model, added=(), normalizer=None, pre=None, post=None, decoder=None):
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": list(added), "normalizer": normalizer,
            "pre_tokenizer": pre, "post_processor": post, "decoder": decoder, "model": model}


def tokenizer_hf_seeds():
    """Small tokenizer.json files in the forms of GPT-2, LLaMA 3, LLaMA 2 and a mix of the other components."""
    alphabet = [bytes_to_unicode()[b] for b in range(256)]
    byte_vocab = {c: i for i, c in enumerate(alphabet)}
    merges = [["\u0120", "t"], ["h", "e"], ["\u0120t", "he"], ["i", "n"]]
    vocab = dict(byte_vocab)
    for a, b in merges:
        vocab[a + b] = len(vocab)
    n = len(vocab)
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    put("tokenizer_hf", "gpt2.bin", hf_pair(
        hf_tokenizer(hf_bpe(vocab, [a + " " + b for a, b in merges]), [hf_added("<|endoftext|>", n)], pre=byte_level,
                     decoder={"type": "ByteLevel"}),
        {"eos_token": "<|endoftext|>", "add_bos_token": False}))
    llama3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
              r"\s*[\r\n]+|\s+(?!\S)|\s+")
    template = lambda name, id_: {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": name, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {name: {"id": name, "ids": [id_], "tokens": [name]}}}
    put("tokenizer_hf", "llama3.bin", hf_pair(
        hf_tokenizer(hf_bpe(vocab, merges, ignore_merges=True),
                     [hf_added("<|begin_of_text|>", n), hf_added("<|eot_id|>", n + 1)],
                     pre={"type": "Sequence", "pretokenizers": [
                         {"type": "Split", "pattern": {"Regex": llama3}, "behavior": "Isolated", "invert": False},
                         dict(byte_level, use_regex=False)]},
                     post={"type": "Sequence", "processors": [{"type": "ByteLevel"}, template("<|begin_of_text|>", n)]},
                     decoder={"type": "ByteLevel"}),
        {"bos_token": "<|begin_of_text|>", "eos_token": {"content": "<|eot_id|>"}}))
    sp = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        sp["<0x%02X>" % b] = 3 + b
    for piece in ["\u2581", "a", "b", "c", "\u2581a", "ab", "\u2581ab", "\u00e9"]:
        sp[piece] = len(sp)
    put("tokenizer_hf", "llama2.bin", hf_pair(
        hf_tokenizer(hf_bpe(sp, ["a b", "\u2581 a", "\u2581 ab", "\u2581a b"], unk_token="<unk>", fuse_unk=True,
                            byte_fallback=True),
                     [hf_added("<unk>", 0), hf_added("<s>", 1), hf_added("</s>", 2)],
                     normalizer={"type": "Sequence", "normalizers": [
                         {"type": "Prepend", "prepend": "\u2581"},
                         {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
                     post=template("<s>", 1),
                     decoder={"type": "Sequence", "decoders": [
                         {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "ByteFallback"},
                         {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}),
        {"add_bos_token": True, "bos_token": "<s>", "eos_token": "</s>"}))
    put("tokenizer_hf", "mixed.bin", hf_pair(
        hf_tokenizer(hf_bpe(sp, [["a", "b"], ["\u2581", "a"]], unk_token="<unk>"),
                     [hf_added("<unk>", 0), hf_added("<s>", 1), hf_added("</s>", 2),
                      hf_added("<mask>", len(sp), lstrip=True, rstrip=True),
                      hf_added("Ab", len(sp) + 1, single_word=True, normalized=True, special=False)],
                     normalizer={"type": "Sequence", "normalizers": [
                         {"type": "NFKC"}, {"type": "Lowercase"},
                         {"type": "Replace", "pattern": {"Regex": "\\s{2,}"}, "content": " "}, {"type": "NFD"}]},
                     pre={"type": "Sequence", "pretokenizers": [
                         {"type": "Digits", "individual_digits": True},
                         {"type": "Split", "pattern": {"Regex": "[aeiou]+"}, "behavior": "Contiguous", "invert": True},
                         {"type": "Split", "pattern": {"String": "-"}, "behavior": "MergedWithPrevious", "invert": False},
                         {"type": "Split", "pattern": {"Regex": "x*"}, "behavior": "MergedWithNext", "invert": False},
                         {"type": "Split", "pattern": {"String": "."}, "behavior": "Removed", "invert": False},
                         {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True}]},
                     post={"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 1]},
                     decoder={"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True}),
        {"eos_token": "</s>"}))


# ------------------------------------------------------------------------------------------- R database
def xdr(version=2):
    out = b"X\n" + struct.pack(">iii", version, 0x040300, 0x020300)
    if version == 3:
        out += struct.pack(">i", 5) + b"UTF-8"
    return out


def charsxp(s, levels=64):
    b = s.encode("latin-1" if levels == 4 else "utf-8")
    return struct.pack(">ii", 9 | (levels << 12), len(b)) + b


def strsxp(items, attr=b""):
    out = struct.pack(">ii", 16 | ((1 << 9) if attr else 0), len(items))
    for s in items:
        out += struct.pack(">ii", 9, -1) if s is None else charsxp(s)  # None: NA_character_
    return out + attr


def intsxp(values):
    return struct.pack(">ii", 13, len(values)) + b"".join(struct.pack(">i", v) for v in values)


def lglsxp(values):
    return struct.pack(">ii", 10, len(values)) + b"".join(struct.pack(">i", v) for v in values)


def names_attr(names):
    # pairlist (tag = symbol "names") whose CAR is a character vector, then NILVALUE
    return struct.pack(">i", 2 | (1 << 10)) + struct.pack(">i", 1) + charsxp("names") + strsxp(names) + struct.pack(">i", 254)


def named_list(pairs):
    out = struct.pack(">ii", 19 | (1 << 9), len(pairs))
    for _, v in pairs:
        out += v
    return out + names_attr([k for k, _ in pairs])


def rdata_seed(compressed, rdx_mode, extra_types=False):
    novels = ["sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion"]
    db, variables = b"", []
    for i, n in enumerate(novels):
        lines = [f"{n.upper()}", "", f"Chapter {i + 1}", "caf\u00e9 d\u00e9j\u00e0 vu" if i == 0 else "It is a truth"]
        if i == 1:
            lines.append(None)  # NA_character_
        payload = xdr(3 if i % 2 else 2) + strsxp(lines)
        if compressed == 0:
            rec = payload
        elif compressed == 1:
            rec = struct.pack(">I", len(payload)) + zlib.compress(payload)
        else:  # 2/3: type byte, '0' stored or '1' zlib
            rec = struct.pack(">I", len(payload)) + (b"0" + payload if i % 2 else b"1" + zlib.compress(payload))
        variables.append((n, intsxp([len(db), len(rec)])))
        db += rec
    if extra_types:  # a non-character variable (skipped) stored as a double offset pair
        payload = xdr() + intsxp([1, 2, 3])
        rec = struct.pack(">I", len(payload)) + zlib.compress(payload) if compressed == 1 else payload
        variables.append(("numbers", struct.pack(">ii", 14, 2) + struct.pack(">dd", len(db), len(rec))))
        db += rec
    index = xdr() + named_list([("variables", named_list(variables)), ("references", named_list([])),
                                ("compressed", lglsxp([compressed]) if compressed == 1 else intsxp([compressed]))])
    if rdx_mode == "gzip":
        rdx = gzip.compress(index, mtime=0)
    elif rdx_mode == "zlib":
        rdx = struct.pack(">I", len(index)) + zlib.compress(index)
    else:
        rdx = index
    return struct.pack("<I", len(rdx)) + rdx + db


def rdata_seeds():
    put("rdata", "zlib_gzip_index.bin", rdata_seed(1, "gzip", extra_types=True))
    put("rdata", "stored_plain_index.bin", rdata_seed(0, "plain"))
    put("rdata", "typed_zlib_index.bin", rdata_seed(3, "zlib"))


# -------------------------------------------------------------------------------------------------- cli
def cli_seeds():
    lines = [
        "train --text a.txt --out runs/a --position alibi --length 256 --steps 2000",
        "train --text a.txt b.txt --out r --arch llama --position rope --kv-heads 2 --rope-scaling yarn:4 "
        "--attn-window 64 --logn beyond --positions randomized:4096 --tokenizer gpt2 --bpe-dir bpe --untied "
        "--embed-scale sqrt --doc-sep \\n\\n --resume",
        "finetune runs/s260 --text train.txt --doc-sep \\n\\n --length 2048 --rope-scaling linear:4 --steps 200 "
        "--batch 4 --lr 3e-4 --out runs/s260-pi4",
        "eval runs/a runs/b --text valid.txt --up-to 16x --plot curve.png",
        "eval runs/a --text valid.txt --lengths 256,1024 --protocol sliding --stride 64 --json r.json "
        "--rope-scaling dynamic-ntk:2 --positions modulo:512",
        "generate runs/s260 --prompt Once --n 200 --temperature 0.8 --top-p 0.95 --seed 1 --ctx 512",
        "import llama2c stories260K.bin --tokenizer tok512.bin --out runs/s260",
        "import gguf m.gguf --out runs/g",
        "export gguf runs/s260-pi4 --out m.gguf --type q8_0",
        "export llama2c runs/s260 --out model.bin",
        "corpus janeausten --out austen.txt",
        "--version",
        "train --help",
    ]
    for i, line in enumerate(lines):
        put("cli", f"args{i:02d}", "\0".join(line.split(" ")).encode())


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    safetensors_seeds()
    llama2c_seeds()
    tokenizer_llama2c_seeds()
    tokenizer_gpt2_seeds()
    tokenizer_hf_seeds()
    rdata_seeds()
    cli_seeds()
    put("gguf", "small.gguf", read(os.path.join(ROOT, "tests", "fixtures", "gguf", "small.gguf")))
    with tempfile.TemporaryDirectory() as tmp:
        models(tmp)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"fuzz/corpus: {total} bytes")


if __name__ == "__main__":
    main()
