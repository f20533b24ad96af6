"""Cost of one source-training step: glode's span model vs a plain token classifier.

One step = forward + backward + AdamW update on one batch of 32 real English CoNLL sentences
(the first 32 of ../shared/datasets/conll/en/train.txt), padded to the batch's longest
sentence:

* glode: span model on every candidate span (<= 4 words) with span cross-entropy (Eq. 1), plus
  the MLM loss (Eq. 2) on a masked copy of the same 32 sentences (in training the MLM batch is
  a different, target-language batch; the cost is the same), L = L_src + 1e-3 * L_mlm (Eq. 3);
* token classifier: `AutoModelForTokenClassification` (BIO tags on each word's first subword).

Both use the same backbone (default resources/multilingual-e5-small when built, else a tiny
random BERT with the real tokenizer), the same AdamW settings, bf16 autocast on CUDA, fp32 on
the CPU. Each variant runs in its own fresh process so that its peak memory is its own: CPU peak
resident set size (resource.getrusage ru_maxrss, which includes the ~0.5 GB of Python + torch +
transformers; the RSS after imports is printed too), CUDA torch.cuda.max_memory_allocated.
Throughput is 32 / median step time over --repeats steps after one warm-up step.

Usage: .venv/bin/python benchmarks/bench_source_step.py [--backbone DIR] [--repeats 3]
       [--freeze-word-embeddings] [--device auto|cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))
DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "datasets" / "conll" / "en" / "train.txt"
DEFAULT_BACKBONE = PROJECT_ROOT / "resources" / "multilingual-e5-small"
ENTITY_TYPES = ["PER", "LOC", "ORG", "MISC"]


def rss_mb() -> float:
    """Current resident set size in MB (Linux /proc), else the peak."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def first_sentences(path: Path, n: int):
    import pandas as pd

    from glode.conll import read_conll

    parsed = read_conll(path, ENTITY_TYPES)
    rows = [{"sent_id": i, "line": s.line, "tokens": s.tokens, "tags": s.tags} for i, s in enumerate(parsed.sentences[:n])]
    return pd.DataFrame(rows)


def run_variant(variant: str, backbone: str, data: Path, n: int, repeats: int, device_spec: str, freeze_word_embeddings: bool) -> dict:
    import torch

    from glode.batching import SpanCollator, build_items, move_batch
    from glode.device import autocast, make_generator, seed_everything, select_device
    from glode.model import SpanModel, load_tokenizer
    from glode.objectives import mask_tokens, masked_lm_loss, span_cross_entropy
    from glode.spans import build_span_table

    rss_after_imports = rss_mb()
    seed_everything(0)
    device = select_device(device_spec)
    tokenizer = load_tokenizer(backbone)
    sentences = first_sentences(data, n)
    classes = ["O", *ENTITY_TYPES]
    spans, _ = build_span_table(sentences, tokenizer, 4, 128)
    batch = SpanCollator(tokenizer.pad_token_id)(build_items(sentences, tokenizer, 128, spans, classes))
    masked_ids, mask = mask_tokens(batch["input_ids"], batch["attention_mask"], tokenizer.mask_token_id, [0, 1, 2], 0.25, make_generator(0))
    batch = move_batch(batch, device)
    masked_ids, mask = masked_ids.to(device), mask.to(device)

    if variant == "glode":
        model = SpanModel.from_backbone(backbone, classes)
        if freeze_word_embeddings:
            model.freeze_encoder_parts(freeze_word_embeddings=True)
        groups = model.trainable_parameter_groups(0.01)

        def loss_fn():
            out = model(**batch)
            l_src = span_cross_entropy(out.logits, batch["labels"], batch["span_sentence"], batch["input_ids"].shape[0])
            logits = model.masked_lm_logits(masked_ids, batch["attention_mask"], mask)
            l_mlm = masked_lm_loss(logits, batch["input_ids"][mask], mask.nonzero(as_tuple=True)[0], batch["n_maskable"])
            return l_src + 1e-3 * l_mlm
    else:
        from transformers import AutoModelForTokenClassification

        bio = ["O"] + [f"{p}-{t}" for t in ENTITY_TYPES for p in "BI"]
        model = AutoModelForTokenClassification.from_pretrained(backbone, num_labels=len(bio))
        if freeze_word_embeddings:
            model.get_input_embeddings().weight.requires_grad_(False)
        label_id = {t: i for i, t in enumerate(bio)}
        labels = torch.full(batch["input_ids"].shape, -100, dtype=torch.long)
        encoded = tokenizer(sentences["tokens"].tolist(), is_split_into_words=True, truncation=True, max_length=128)
        for row, tags in enumerate(sentences["tags"]):
            seen = set()
            for pos, word in enumerate(encoded.word_ids(row)):
                if word is not None and word not in seen:
                    seen.add(word)
                    labels[row, pos] = label_id[tags[word]]
        labels = labels.to(device)
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": 0.01}]

        def loss_fn():
            return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss

    model.to(device).train()
    optimizer = torch.optim.AdamW(groups, lr=1e-5, betas=(0.9, 0.98))
    params = [p for g in groups for p in g["params"]]

    def step() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast(device):
            loss = loss_fn()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step()  # warm-up (allocates AdamW state)
    times = [step() for _ in range(repeats)]
    median = statistics.median(times)
    result = {
        "variant": variant,
        "sentences": int(batch["input_ids"].shape[0]),
        "padded_length": int(batch["input_ids"].shape[1]),
        "spans": int(batch["span_start"].shape[0]),
        "masked_tokens": int(mask.sum()),
        "trainable_params_m": sum(p.numel() for p in params) / 1e6,
        "step_s_median": median,
        "step_s_all": times,
        "sentences_per_s": batch["input_ids"].shape[0] / median,
        "rss_after_imports_mb": rss_after_imports,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if device.type == "cuda":
        result["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def machine(device_spec: str) -> dict:
    import torch
    import transformers

    from glode.device import describe_device, select_device

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "device": describe_device(select_device(device_spec)),
        "load_average": os.getloadavg(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=None, help="HF encoder directory or name (default: resources/multilingual-e5-small if built, else a tiny random BERT)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CoNLL file (default: ../shared/datasets/conll/en/train.txt)")
    parser.add_argument("--sentences", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--freeze-word-embeddings", action="store_true", help="freeze the word embeddings in both models (CPU demo setting)")
    parser.add_argument("--only", choices=("glode", "token-classification"), help=argparse.SUPPRESS)  # one variant, JSON to stdout
    args = parser.parse_args()

    if args.only:
        print(json.dumps(run_variant(args.only, args.backbone, args.data, args.sentences, args.repeats, args.device, args.freeze_word_embeddings)))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        backbone = args.backbone
        if backbone is None:
            from glode.testing import build_tiny_backbone

            backbone = str(DEFAULT_BACKBONE) if (DEFAULT_BACKBONE / "config.json").exists() else str(build_tiny_backbone(Path(tmp) / "tiny"))
        info = machine(args.device)
        print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
        print(f"backbone: {backbone}; data: {args.data} (first {args.sentences} sentences); word embeddings {'frozen' if args.freeze_word_embeddings else 'trained'}")
        results = []
        for variant in ("glode", "token-classification"):
            cmd = [sys.executable, __file__, "--only", variant, "--backbone", backbone, "--data", str(args.data), "--sentences", str(args.sentences), "--repeats", str(args.repeats), "--device", args.device]
            if args.freeze_word_embeddings:
                cmd.append("--freeze-word-embeddings")
            done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
            if done.returncode != 0:
                sys.stderr.write(done.stderr)
                return done.returncode
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"{'variant':<22}{'sent/s':>8}{'step s':>9}{'trainable M':>13}{'peak RSS MB':>13}{'RSS imports MB':>16}{'CUDA peak MB':>14}  batch")
    for r in results:
        cuda = f"{r['cuda_peak_allocated_mb']:.0f}" if "cuda_peak_allocated_mb" in r else "-"
        extra = f"{r['sentences']} x {r['padded_length']} subwords" + (f", {r['spans']} spans, {r['masked_tokens']} masked" if r["variant"] == "glode" else "")
        print(f"{r['variant']:<22}{r['sentences_per_s']:>8.2f}{r['step_s_median']:>9.3f}{r['trainable_params_m']:>13.1f}{r['peak_rss_mb']:>13.0f}{r['rss_after_imports_mb']:>16.0f}{cuda:>14}  {extra}")
    print(json.dumps({"machine": info, "backbone": backbone, "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
