"""What raising `spans.max_span_len` buys and costs, per target test file.

For each limit: the share of gold entities no candidate span can reach (always missed) and the
number of candidate spans (what the span classifier, the target loss and the denoiser's kNN
queries scale with; the encoder pass per sentence does not change). Reads the benchmark files
through the manifest, like `glode prepare`.

    python benchmarks/span_limit.py --data-root ../shared/datasets --limits 4 6 8
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from glode.conll import read_conll
from glode.manifest import find_entry, read_manifest
from glode.model import load_tokenizer
from glode.spans import build_span_table

TARGETS = [("conll", "de", ["PER", "LOC", "ORG", "MISC"]), ("conll", "es", ["PER", "LOC", "ORG", "MISC"]), ("wikiann", "ar", ["PER", "LOC", "ORG"]),
           ("wikiann", "hi", ["PER", "LOC", "ORG"]), ("wikiann", "zh", ["PER", "LOC", "ORG"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--backbone", default="resources/multilingual-e5-small")
    parser.add_argument("--limits", type=int, nargs="+", default=[4, 6, 8])
    args = parser.parse_args()
    tokenizer = load_tokenizer(args.backbone)
    entries = read_manifest(args.data_root / "MANIFEST.tsv")
    print("| target (test) | max_span_len | unreachable gold entities | candidate spans | spans vs limit 4 | enumeration s |")
    print("|---|---:|---:|---:|---:|---:|")
    for dataset, lang, types in TARGETS:
        entry = find_entry(entries, dataset, lang, "test")
        parsed = read_conll(args.data_root / entry.path, types, encoding=entry.encoding, scheme=entry.scheme)
        sentences = pd.DataFrame({"sent_id": range(len(parsed.sentences)), "tokens": [s.tokens for s in parsed.sentences], "tags": [s.tags for s in parsed.sentences]})
        base = None
        for limit in args.limits:
            start = time.perf_counter()
            table, stats = build_span_table(sentences, tokenizer, max_span_len=limit)
            seconds = time.perf_counter() - start
            base = base or len(table)
            missed = stats["unreachable_too_long"] + stats["unreachable_truncated"]
            print(f"| {dataset}/{lang} | {limit} | {100 * missed / stats['gold_entities']:.1f}% ({missed:,} of {stats['gold_entities']:,}) | {len(table):,} | {len(table) / base:.2f}x | {seconds:.1f} |")


if __name__ == "__main__":
    main()
