"""Cost of prediction: glode's span predictions vs one token-classifier forward pass, same file.

Predicting a file means, for glode, the class distribution of every candidate span (<= 4 words)
of every sentence (`glode.pseudo_label.predict_spans`: inference mode, length-bucketed batches,
one encoder pass per sentence, span gather + classifier + softmax); for a plain
`AutoModelForTokenClassification`, one forward pass over the same sentences in the same
batches. The issue's target: glode <= 2x the token classifier. Both models are built on the same
backbone (default: the offline multilingual-e5-small, all 12 layers; the span heads are
untrained, which does not change the cost), run in this one process with the same thread count,
interleaved over --repeats rounds; medians are reported. `--precision bf16` runs both under CPU
bf16 autocast.

Usage: .venv/bin/python benchmarks/bench_predict.py [--file wikiann/en/test.txt] [--sentences 10000]
       [--batch-size 64] [--repeats 3] [--precision auto|bf16|fp32] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))
DATA_ROOT = PROJECT_ROOT.parent / "shared" / "datasets"
DEFAULT_BACKBONE = PROJECT_ROOT / "resources" / "multilingual-e5-small"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", default="wikiann/en/test.txt", help="benchmark file under ../shared/datasets")
    parser.add_argument("--entity-types", nargs="+", default=["PER", "LOC", "ORG"])
    parser.add_argument("--sentences", type=int, default=10000, help="the first N sentences of the file")
    parser.add_argument("--backbone", default=str(DEFAULT_BACKBONE))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args(argv)

    import pandas as pd
    import torch
    from transformers import AutoModelForTokenClassification

    from glode.batching import build_items, make_loader
    from glode.conll import read_conll
    from glode.device import autocast, describe_device
    from glode.model import SpanModel, load_tokenizer
    from glode.pseudo_label import predict_spans
    from glode.spans import build_span_table

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    parsed = read_conll(DATA_ROOT / args.file, args.entity_types)
    rows = [{"sent_id": i, "line": s.line, "tokens": s.tokens} for i, s in enumerate(parsed.sentences[: args.sentences])]
    sentences = pd.DataFrame(rows)
    tokenizer = load_tokenizer(args.backbone)
    spans, _ = build_span_table(sentences, tokenizer, 4, 128)
    items = build_items(sentences, tokenizer, 128, spans)
    classes = ["O", *args.entity_types]
    torch.manual_seed(0)
    span_model = SpanModel.from_backbone(args.backbone, classes).eval()
    token_model = AutoModelForTokenClassification.from_pretrained(args.backbone, num_labels=2 * len(args.entity_types) + 1).eval()
    loader, _ = make_loader(items, args.batch_size, tokenizer.pad_token_id, shuffle=False)

    def glode_predict():
        predict_spans(span_model, items, len(spans), args.batch_size, device, pad_token_id=tokenizer.pad_token_id, precision=args.precision)

    @torch.inference_mode()
    def token_forward():
        for batch in loader:
            with autocast(device, args.precision):
                token_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float().softmax(-1)

    times: dict[str, list[float]] = {"glode": [], "token": []}
    for _ in range(args.repeats):
        for name, fn in (("token", token_forward), ("glode", glode_predict)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(values) for name, values in times.items()}
    subwords = sum(len(it["input_ids"]) for it in items)
    print(f"python {platform.python_version()}  torch {torch.__version__}  {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    print(f"device: {describe_device(device, args.precision)}")
    print(f"file: {args.file}, {len(items)} sentences, {subwords} subwords, {len(spans)} spans; batch {args.batch_size}; {args.repeats} interleaved rounds")
    print(f"token classifier forward : {med['token']:8.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times['token'])})")
    print(f"glode span predictions   : {med['glode']:8.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times['glode'])})")
    print(f"ratio glode / token      : {med['glode'] / med['token']:8.2f}  (target <= 2)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
