#!/usr/bin/env python3
"""Regenerates tests/corpus/reference_counts.json with Python's tiktoken.

For every corpus file and every 4,000-character chunk of it, and for every generated
pathological input in tests/corpus/generated.json, it records the number of tokens
`tiktoken.get_encoding(name).encode_ordinary(text)` produces for cl100k_base and o200k_base
(`encode_ordinary`: special-token texts such as `<|endoftext|>` count as ordinary text).

Python tiktoken panics (regex backtracking stack overflow) on some inputs, such as a million
spaces followed by a letter. For those the count is taken from two other implementations that
must agree: (1) a chunked computation here, which splits the text with the `regex` module
using tiktoken's own pattern and BPE-encodes each piece with tiktoken's
`_encode_single_piece`, and (2) the `bpe-openai` engine, through
`cargo run --release --example engine_counts`. If they disagree the script fails.

Offline use: tiktoken reads the rank files from TIKTOKEN_CACHE_DIR, where each file is named
by the sha1 of its download URL. The tiktoken-rs crate ships the same files; the script sets
the cache up from ~/.cargo/registry/src when TIKTOKEN_CACHE_DIR is unset (tiktoken checks
their sha256 itself).

Usage:
    pip install tiktoken
    python3 scripts/reference_counts.py
"""

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CRATE = os.path.dirname(HERE)
CORPUS = os.path.join(CRATE, "tests", "corpus")
OUT = os.path.join(CORPUS, "reference_counts.json")
ENCODINGS = ["cl100k_base", "o200k_base"]
CHUNK_CHARS = 4000
URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"


def offline_cache():
    if os.environ.get("TIKTOKEN_CACHE_DIR"):
        return
    assets = glob.glob(os.path.expanduser("~/.cargo/registry/src/*/tiktoken-rs-*/assets"))
    if not assets:
        sys.exit("set TIKTOKEN_CACHE_DIR, or build the crate's tests once so tiktoken-rs is unpacked")
    cache = tempfile.mkdtemp(prefix="tiktoken-cache-")
    for name in ENCODINGS:
        key = hashlib.sha1(URL.format(name).encode()).hexdigest()
        shutil.copy(os.path.join(sorted(assets)[-1], f"{name}.tiktoken"), os.path.join(cache, key))
    os.environ["TIKTOKEN_CACHE_DIR"] = cache


def expand(spec):
    return "".join(unit * n for unit, n in spec["parts"])


def chunks(text):
    return [text[i:i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)]


class Counter:
    def __init__(self, name):
        import regex
        import tiktoken

        self.enc = tiktoken.get_encoding(name)
        self.pat = regex.compile(self.enc._pat_str)

    def tiktoken(self, text):
        """Python tiktoken's count, or None when it panics."""
        try:
            return len(self.enc.encode_ordinary(text))
        except BaseException:  # pyo3 turns the Rust panic into PanicException (a BaseException)
            return None

    def chunked(self, text):
        return sum(len(self.enc._encode_single_piece(m.group(0).encode())) for m in self.pat.finditer(text))


def engine_counts():
    out = subprocess.run(
        ["cargo", "run", "--release", "--quiet", "-p", "tokenbudget-counter", "--example", "engine_counts", "--", CORPUS],
        stdout=subprocess.PIPE, check=True, cwd=CRATE,
    ).stdout
    return json.loads(out)


def main():
    offline_cache()
    os.environ["RUST_BACKTRACE"] = "0"
    import tiktoken

    counters = {name: Counter(name) for name in ENCODINGS}
    needs_agreement = []
    files = []
    for path in sorted(glob.glob(os.path.join(CORPUS, "*", "*"))):
        rel = os.path.relpath(path, CORPUS)
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
        entry = {"path": rel, "category": rel.split("/")[0], "chars": len(text), "bytes": len(text.encode()), "source": "tiktoken"}
        for name, c in counters.items():
            n = c.tiktoken(text)
            if n is None:
                n, entry["source"] = c.chunked(text), "chunked+bpe-openai"
                needs_agreement.append(("files", rel, name, n))
            entry[name] = n
            entry[f"{name}_chunks"] = [c.tiktoken(t) for t in chunks(text)]
            if None in entry[f"{name}_chunks"]:
                sys.exit(f"tiktoken panicked on a 4,000-character chunk of {rel}")
        files.append(entry)
        print(f"{rel}: {entry['cl100k_base']} / {entry['o200k_base']} ({entry['source']})", file=sys.stderr)

    with open(os.path.join(CORPUS, "generated.json")) as f:
        specs = json.load(f)
    generated = []
    for spec in specs:
        text = expand(spec)
        entry = {"name": spec["name"], "chars": len(text), "bytes": len(text.encode()), "source": "tiktoken"}
        for name, c in counters.items():
            n = c.tiktoken(text)
            if n is None:
                n, entry["source"] = c.chunked(text), "chunked+bpe-openai"
                needs_agreement.append(("generated", spec["name"], name, n))
            entry[name] = n
        generated.append(entry)
        print(f"generated {spec['name']}: {entry['cl100k_base']} / {entry['o200k_base']} ({entry['source']})", file=sys.stderr)

    if needs_agreement:
        engine = engine_counts()
        for kind, key, name, n in needs_agreement:
            other = engine[kind][key][name]
            if other != n:
                sys.exit(f"no agreement on {kind} {key} {name}: chunked tiktoken {n}, bpe-openai {other}")
            print(f"agreed: {kind} {key} {name} = {n}", file=sys.stderr)

    doc = {
        "generator": "scripts/reference_counts.py",
        "tiktoken_version": tiktoken.__version__,
        "chunk_chars": CHUNK_CHARS,
        "files": files,
        "generated": generated,
    }
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
