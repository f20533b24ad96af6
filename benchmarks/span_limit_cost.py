"""What a longer span limit costs a target epoch: candidate spans per sentence, the epoch's time
and the process's peak memory, at limit 4 and at a longer one, side by side.

    .venv/bin/python benchmarks/span_limit_cost.py --targets wikiann/ar wikiann/hi wikiann/zh conll/es \
        --limits wikiann=12 conll=4 --sentences 480 --repeats 2

Per target: a seeded sample of --sentences source (en) and target train sentences (`glode
prepare`, the target's tags hidden as in the workflow), their spans at both limits (`glode
spans`), the corpus MLM vocabulary (`glode vocab`), and initial pseudo labels: the distributions
that --labeller (a limit-4 source model; default the study's mlm-hi or mlm-es, seed 1) gives every
span of <= 4 words, and for the longer spans a fixed near-O distribution (p_O 0.98), since a
limit-4 model cannot score them. The labels change no cost but the denoiser's bank size, which
follows the entity spans.

Then, per limit, target epochs 0 and 1 (`glode train-target`, a fresh process each) at the
study's settings (encoder_layers 8, top 6 trained, batch 16, corpus MLM vocabulary, the backbone's
weights), and epoch 2 from epoch 1's state --repeats times: the first epoch in which the denoiser
refines every batch (its bank and thresholds exist from the ends of epochs 0 and 1), as in epochs
2-4 of a run. The limits alternate. Printed per limit: epoch 0's time (one run; no denoiser),
and for epoch 2 the medians of its wall time (the process, start-up included), of its updates
alone (the train log: 16 sentences / sentences_per_s per update), of the denoiser's seconds
(denoise_s), of the peak RSS, and their ratios to limit 4.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TYPES = {"conll": ["PER", "LOC", "ORG", "MISC"], "wikiann": ["PER", "LOC", "ORG"]}
LABELLER = {"wikiann": "results/source/wikiann/mlm-hi/seed1/model", "conll": "results/source/conll/mlm-es/seed1/model"}
STUDY_FLAGS = ["--num-epochs", "5", "--batch-size", "16", "--grad-accumulation", "1", "--lr", "1e-4", "--head-lr", "1e-3",
               "--warmup-steps", "50", "--freeze-word-embeddings", "true", "--train-top-layers", "6", "--encoder-layers", "8",
               "--device", "auto", "--precision", "bf16", "--update-start-epoch", "2"]
# runs one glode stage in this process and appends its peak RSS (KiB) to the file in argv[1]
WRAPPER = ("import resource, sys\nfrom glode.cli import main\nrc = main(sys.argv[2:])\n"
           "open(sys.argv[1], 'a').write(f'{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n')\nsys.exit(rc)")


def glode(*args: str, rss_file: Path | None = None) -> None:
    cmd = [sys.executable, "-c", WRAPPER, str(rss_file or "/dev/null"), *args]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"failed: glode {' '.join(args)}\n{result.stderr[-3000:]}")


def initial_labels(labeller: Path, sentences: Path, spans4: Path, spans_long: Path, out4: Path, out_long: Path, work: Path) -> None:
    """The labeller's distributions on the limit-4 spans, and near-O ones for the longer spans."""
    from glode.io import read_parquet_metadata, write_parquet

    glode("pseudo-label", "--model", str(labeller), "--sentences", str(sentences), "--spans", str(spans4), "--out", str(out4))
    short = pd.read_parquet(out4)
    meta = read_parquet_metadata(out4)
    long_spans = pd.read_parquet(spans_long, columns=["sent_id", "start", "end"])
    merged = long_spans.merge(short, on=["sent_id", "start", "end"], how="left")
    classes = meta["classes"]
    fill = {f"p_{c}": (0.98 if c == "O" else 0.02 / (len(classes) - 1)) for c in classes}
    for column, value in fill.items():
        merged[column] = merged[column].fillna(value).astype(np.float32)
    words = pd.read_parquet(sentences, columns=["sent_id", "tokens"]).set_index("sent_id")["tokens"]
    missing = merged["text"].isna()
    merged.loc[missing, "text"] = [" ".join(words[s][a : b + 1]) for s, a, b in merged.loc[missing, ["sent_id", "start", "end"]].itertuples(index=False)]
    probs = merged[[f"p_{c}" for c in classes]].to_numpy()
    merged["label"] = np.asarray(classes)[probs.argmax(axis=1)]
    merged["prob"] = probs.max(axis=1).astype(np.float32)
    write_parquet(merged[short.columns], out_long, metadata=meta)


def prepare_target(dataset: str, lang: str, limits: list[int], n: int, backbone: str, labeller: Path, work: Path) -> dict:
    types = TYPES[dataset]
    common = ["--data-root", "../shared/datasets", "--dataset", dataset, "--split", "train", "--entity-types", *types, "--max-sentences", str(n), "--sample-seed", "0"]
    glode("prepare", *common, "--lang", "en", "--role", "source", "--out", str(work / "en.parquet"))
    glode("prepare", *common, "--lang", lang, "--role", "target", "--out", str(work / "xx.parquet"), "--gold-out", str(work / "xx.gold.parquet"))
    glode("vocab", "--sentences", str(work / "xx.parquet"), "--tokenizer", backbone, "--out", str(work / "vocab.json"))
    spans_per_sentence = {}
    for limit in limits:
        for name in ("en", "xx"):
            glode("spans", "--sentences", str(work / f"{name}.parquet"), "--tokenizer", backbone, "--max-span-len", str(limit),
                  "--out", str(work / f"{name}.{limit}.spans.parquet"), "--stats-out", str(work / f"{name}.{limit}.stats.json"))
        stats = json.loads((work / f"xx.{limit}.stats.json").read_text())
        spans_per_sentence[limit] = stats["spans"] / stats["sentences"]
    initial_labels(labeller, work / "xx.parquet", work / "xx.4.spans.parquet", work / f"xx.{max(limits)}.spans.parquet",
                   work / "labels.4.parquet", work / f"labels.{max(limits)}.parquet", work)
    return spans_per_sentence


def one_epoch(limit: int, backbone: str, work: Path, epoch: int, run: str, state_in: Path | None, labels_in: Path) -> dict:
    """One target epoch at `limit`, written under run{limit}.{run}; its time, updates, denoiser, RSS."""
    out = work / f"run{limit}.{run}"
    rss = work / f"rss{limit}.{run}.txt"
    resume = ["--state-in", str(state_in)] if state_in is not None else []
    started = time.perf_counter()
    glode("train-target", "--epoch", str(epoch), *resume, "--source-sentences", str(work / "en.parquet"), "--source-spans", str(work / f"en.{limit}.spans.parquet"),
          "--target-sentences", str(work / "xx.parquet"), "--target-spans", str(work / f"xx.{limit}.spans.parquet"),
          "--labels-in", str(labels_in), "--backbone", backbone, "--mlm-vocab", str(work / "vocab.json"),
          "--state-out", str(out / "state"), "--labels-out", str(out / "labels.parquet"), "--train-log", str(out / "log.jsonl"),
          *STUDY_FLAGS, rss_file=rss)
    seconds = time.perf_counter() - started
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    # the updates alone, without start-up and the epoch's end (16 target sentences per update)
    loop = sum(16 / r["sentences_per_s"] for r in log if r.get("sentences_per_s"))
    return {"seconds": seconds, "loop_s": loop, "denoise_s": sum(r.get("denoise_s") or 0 for r in log), "rss_gib": int(rss.read_text().split()[-1]) / 2**20,
            "out": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", default=["wikiann/ar", "wikiann/hi", "wikiann/zh", "conll/es"])
    parser.add_argument("--limits", nargs="+", default=["wikiann=12", "conll=4"], help="DATASET=LIMIT: the longer limit per dataset")
    parser.add_argument("--sentences", type=int, default=480, help="source and target train sentences per epoch")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--backbone", default="resources/multilingual-e5-small")
    args = parser.parse_args()
    longer = {item.split("=")[0]: int(item.split("=")[1]) for item in args.limits}
    print(f"# {args.sentences} source + {args.sentences} target sentences; epochs 0 and 1 once per limit, epoch 2 {args.repeats} times per limit, alternating")
    print("| target | limit | spans per sentence | epoch 0 s | epoch 2 s (median; runs) | updates s | denoiser s | peak RSS GiB | epoch 2 vs 4 | updates vs 4 | denoiser vs 4 | spans vs 4 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for target in args.targets:
        dataset, lang = target.split("/")
        limits = sorted({4, longer.get(dataset, 4)})
        with tempfile.TemporaryDirectory(prefix=f"span-cost-{lang}-") as tmp:
            work = Path(tmp)
            per_sentence = prepare_target(dataset, lang, limits, args.sentences, args.backbone, ROOT / LABELLER[dataset], work)
            first, second = {}, {}
            for limit in limits:
                first[limit] = one_epoch(limit, args.backbone, work, 0, "e0", None, work / f"labels.{limit}.parquet")
            for limit in reversed(limits):
                second[limit] = one_epoch(limit, args.backbone, work, 1, "e1", first[limit]["out"] / "state", first[limit]["out"] / "labels.parquet")
            runs = {limit: [] for limit in limits}
            for repeat in range(args.repeats):
                for limit in limits if repeat % 2 == 0 else reversed(limits):
                    runs[limit].append(one_epoch(limit, args.backbone, work, 2, f"e2.{repeat}", second[limit]["out"] / "state", second[limit]["out"] / "labels.parquet"))
            keys = ("seconds", "loop_s", "denoise_s", "rss_gib")
            base = {key: statistics.median(r[key] for r in runs[4]) for key in keys}
            for limit in limits:
                med = {key: statistics.median(r[key] for r in runs[limit]) for key in keys}
                each = ", ".join(f"{r['seconds']:.0f}" for r in runs[limit])
                print(f"| {target} | {limit} | {per_sentence[limit]:.1f} | {first[limit]['seconds']:.0f} | {med['seconds']:.0f} ({each}) | "
                      f"{med['loop_s']:.0f} | {med['denoise_s']:.1f} | {med['rss_gib']:.2f} | {med['seconds'] / base['seconds']:.2f}x | "
                      f"{med['loop_s'] / base['loop_s']:.2f}x | {med['denoise_s'] / max(base['denoise_s'], 1e-9):.2f}x | {per_sentence[limit] / per_sentence[4]:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
