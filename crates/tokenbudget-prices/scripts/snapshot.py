#!/usr/bin/env python3
"""Takes the embedded price snapshot from LiteLLM's model_prices_and_context_window.json.

    python3 scripts/snapshot.py CURRENT.json [RETIRED.json ...] > data/litellm-snapshot.json

CURRENT is the file of the newest LiteLLM release; each RETIRED file is an older release's,
from which only the entries CURRENT no longer has are kept (retired models that old logs and
ledgers still name). Kept: entries whose litellm_provider is `anthropic` or `openai` and whose
mode is `chat` or `responses`, whole and with every number's text as LiteLLM wrote it (the
crate parses that text exactly, so it must not go through a float here).
"""

import json
import sys

PROVIDERS = {"anthropic", "openai"}
MODES = {"chat", "responses"}


class Raw(str):
    """A JSON number kept as its source text."""


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f, parse_float=Raw, parse_int=Raw)


def wanted(entry):
    return (
        isinstance(entry, dict)
        and entry.get("litellm_provider") in PROVIDERS
        and entry.get("mode") in MODES
    )


def dump(value, indent):
    pad = " " * indent
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [
            f'{pad}    {json.dumps(k)}: {dump(v, indent + 4)}' for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list):
        if not value:
            return "[]"
        items = [f"{pad}    {dump(v, indent + 4)}" for v in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(value, ensure_ascii=False)


def main(current, *retired):
    entries = {k: v for k, v in load(current).items() if wanted(v)}
    for path in retired:
        for k, v in load(path).items():
            if k not in entries and wanted(v):
                entries[k] = v
    print(dump(dict(sorted(entries.items())), 0))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(*sys.argv[1:])
