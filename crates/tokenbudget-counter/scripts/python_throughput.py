#!/usr/bin/env python3
"""Python tiktoken's counting throughput on the same inputs as benches/benches/counter.rs.

Prints one line per encoding and category: `python-tiktoken <encoding> <category> <MB/s>`.
Each input is the category's corpus files joined and cut to 256 KiB, as in the bench; the
time is the best of several `len(enc.encode_ordinary(text))` runs. Exits 3 with a message when
tiktoken is not installed. Runs offline like reference_counts.py (TIKTOKEN_CACHE_DIR, or the
rank files of the tiktoken-rs crate).
"""

import glob
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

CATEGORIES = ["prose", "code", "json", "nonlatin"]
LIMIT = 256 * 1024


def category_text(corpus, category):
    parts = []
    for path in sorted(glob.glob(os.path.join(corpus, category, "*"))):
        with open(path, encoding="utf-8", newline="") as f:
            parts.append(f.read())
    data = "\n".join(parts).encode()[:LIMIT]
    return data.decode("utf-8", errors="ignore")


def main():
    try:
        import tiktoken  # noqa: F401
    except ImportError:
        print("python tiktoken is not installed (pip install tiktoken); skipping", file=sys.stderr)
        sys.exit(3)
    from reference_counts import CORPUS, offline_cache

    offline_cache()
    import tiktoken

    for name in ["cl100k_base", "o200k_base"]:
        enc = tiktoken.get_encoding(name)
        for category in CATEGORIES:
            text = category_text(CORPUS, category)
            size = len(text.encode())
            enc.encode_ordinary(text)  # warm up
            best = float("inf")
            deadline = time.perf_counter() + 2.0
            runs = 0
            while runs < 3 or time.perf_counter() < deadline:
                start = time.perf_counter()
                len(enc.encode_ordinary(text))
                best = min(best, time.perf_counter() - start)
                runs += 1
            print(f"python-tiktoken {name} {category} {size / best / 1e6:.1f}")


if __name__ == "__main__":
    main()
