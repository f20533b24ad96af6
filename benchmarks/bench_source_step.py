"""Cost of one source-training step on typical batches: glode's speed levers vs a plain token classifier.

    .venv/bin/python benchmarks/bench_source_step.py                 # e5-small, 3 timed rounds
    .venv/bin/python benchmarks/bench_source_step.py --repeats 5 --batches 3 --variants t a e

The batches are the ones training draws: `glode.batching.LengthBucketBatchSampler` (shuffle=True,
seeded as train-source seeds it, --seed) over the English train file (span batch) and over the
Spanish one (MLM batch), --batch-size 32 sentences each; of the sampler's first pass the full
batch of median padded length (--pick mean: the one nearest the pass's mean padded length;
--batches N: N such batches, one step on each per round, reported per step). The printed header
gives the chosen and the pass's padded lengths.

One glode step = span forward on the English batch + span cross-entropy (Eq. 1), MLM (Eq. 2) on
a masked copy of the Spanish batch (glode.training.masked_lm_step), L = L_src + 1e-3 * L_mlm
(Eq. 3), backward, clip + AdamW update (glode.training.optimizer_update). Word embeddings (and so
the tied MLM decoder) frozen everywhere. Variants:

  (a) as the paper: MLM softmax over the whole 250k vocabulary, fp32, all 12 layers trained;
  (b) (a) + MLM over the corpus vocabulary (glode.vocab.corpus_piece_ids of the Spanish train words);
  (c) (a) + bf16 autocast (glode.device.autocast(device, "bf16"); needs a CPU with native bf16);
  (d) (a) + only the top 4 layers trained (--top-layers), the bottom 8 frozen: their output for the span batch
      is computed once (SpanModel.encode_bottom, eval mode, outside the timed region) and fed
      through SpanCollator's `frozen_hidden`; the MLM pass still runs all 12 layers;
  (e) (b) + (c) + (d);
  (f) (b) + (d), fp32: (e) without bf16, to show what bf16 adds on top;
  (t) two `AutoModelForTokenClassification` fine-tune steps of the same backbone, one on the
      English batch and one on the Spanish batch (BIO tags on each word's first subword; word
      embeddings frozen; the same AdamW settings, clip and update; fp32).

Side by side: each variant lives in its own worker process (so its peak resident memory,
ru_maxrss, is its own; it includes ~0.5 GB of imports, also printed), and the parent runs the
steps round-robin (one variant at a time, order rotated every round): --warmup untimed rounds,
then --repeats timed rounds. Reported: median (and min) ms per step, and each glode variant's
ratio to (t) -- the ratio of the medians and the median of the per-round ratios (robust to load
drifting during the run). The issue's target: one source step <= 1.25 x two token-classifier steps.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

VARIANTS = {  # name: (label, corpus vocabulary, bf16, top layers trained (0 = all))
    "t": ("2 token-classifier steps (en + es), fp32", None, None, None),
    "a": ("glode as the paper: full vocab, fp32, 12 layers", False, False, 0),
    "b": ("(a) + corpus vocabulary", True, False, 0),
    "c": ("(a) + bf16 autocast", False, True, 0),
    "d": ("(a) + top layers trained, bottom cached", False, False, 4),
    "e": ("(a) + corpus vocab + bf16 + top/cached", True, True, 4),
    "f": ("(a) + corpus vocab + top/cached, fp32", True, False, 4),
}
TARGET_RATIO = 1.25
_MARK = "@@bench@@ "  # prefix of the worker's protocol lines on stdout


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- worker: one variant, steps on request ----------------------------------------------------


def say(kind: str, payload) -> None:
    sys.stdout.write(f"{_MARK}{kind} {json.dumps(payload)}\n")
    sys.stdout.flush()


def build_glode(spec: dict, use_vocab: bool, bf16: bool, top: int):
    import numpy as np
    from typical import CLASSES, attach_frozen_hidden

    from glode.batching import SpanCollator, move_batch
    from glode.device import autocast, seed_everything, select_device, use_bf16
    from glode.model import SpanModel, load_tokenizer
    from glode.objectives import source_objective, span_cross_entropy
    from glode.training import (
        CorpusVocabulary,
        build_optimizer,
        build_scheduler,
        masked_lm_step,
        optimizer_update,
        stream_generator,
    )
    from glode.tokenizer import special_token_ids

    seed_everything(spec["seed"])
    device = select_device(spec["device"])
    tokenizer = load_tokenizer(spec["backbone"])
    model = SpanModel.from_backbone(spec["backbone"], CLASSES)
    model.freeze_encoder_parts(freeze_word_embeddings=True, train_top_layers=top)
    model.to(device).train()
    depth = model.frozen_depth() if top else 0
    collate = SpanCollator(tokenizer.pad_token_id, model.config.subword_width_buckets)
    span_items, mlm_items = spec_items(spec, tokenizer)
    if depth:
        for items in span_items:
            attach_frozen_hidden(model, items, depth, tokenizer.pad_token_id, device)
    span_batches = [move_batch(collate(items), device) for items in span_items]
    mlm_batches = [collate(items) for items in mlm_items]  # masked_lm_step moves them itself
    optimizer, params = build_optimizer(model, 1e-5, (0.9, 0.98), 1e-8, 0.01)
    scheduler = build_scheduler(optimizer, 0, 10**6)
    vocabulary = CorpusVocabulary(np.load(spec["vocab"]), model.get_input_embeddings().num_embeddings, device) if use_vocab else None
    precision = "bf16" if bf16 else "fp32"
    masks, specials = stream_generator(spec["seed"], 2), special_token_ids(tokenizer)

    def step(i: int) -> None:
        batch = span_batches[i]
        with autocast(device, precision):
            out = model(**batch, frozen_depth=depth)
        loss_src = span_cross_entropy(out.logits, batch["labels"], batch["span_sentence"], batch["input_ids"].shape[0])  # Eq. 1
        loss_mlm = masked_lm_step(model, mlm_batches[i], tokenizer.mask_token_id, specials, 0.25, "masked", masks, device, vocabulary, precision)  # Eq. 2
        source_objective(loss_src, loss_mlm, 1e-3).backward()  # Eq. 3
        optimizer_update(optimizer, scheduler, params, 1.0)

    info = {"trainable_m": sum(p.numel() for p in params) / 1e6, "frozen_depth": depth, "layers": model.encoder.config.num_hidden_layers, "mlm_pieces": None if vocabulary is None else len(vocabulary.ids),
            "bf16": bool(bf16 and use_bf16(device, "bf16"))}
    return step, device, info


def build_token_classifier(spec: dict):
    import torch
    from transformers import AutoModelForTokenClassification
    from typical import ENTITY_TYPES

    from glode.batching import SpanCollator, move_batch
    from glode.device import seed_everything, select_device
    from glode.model import load_tokenizer
    from glode.training import build_scheduler, optimizer_update

    seed_everything(spec["seed"])
    device = select_device(spec["device"])
    tokenizer = load_tokenizer(spec["backbone"])
    bio = ["O"] + [f"{p}-{t}" for t in ENTITY_TYPES for p in "BI"]
    label_id = {t: i for i, t in enumerate(bio)}
    model = AutoModelForTokenClassification.from_pretrained(spec["backbone"], num_labels=len(bio))
    model.get_input_embeddings().weight.requires_grad_(False)
    model.to(device).train()
    collate = SpanCollator(tokenizer.pad_token_id)
    span_items, mlm_items = spec_items(spec, tokenizer)

    def tagged(items, sentences):
        """The same padded ids as glode's batch; labels on each word's first subword."""
        batch = collate(items)
        labels = torch.full(batch["input_ids"].shape, -100, dtype=torch.long)
        encoded = tokenizer([s["tokens"] for s in sentences], is_split_into_words=True, truncation=True, max_length=128)
        for row, s in enumerate(sentences):
            seen = set()
            for pos, word in enumerate(encoded.word_ids(row)):
                if word is not None and word not in seen:
                    seen.add(word)
                    labels[row, pos] = label_id[s["tags"][word]]
        return move_batch({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "labels": labels}, device)

    batches = [(tagged(en, en_s), tagged(es, es_s)) for en, es, en_s, es_s in zip(span_items, mlm_items, spec["en"], spec["es"])]
    decay = [p for n, p in model.named_parameters() if p.requires_grad and not (n.endswith("bias") or "layernorm" in n.lower() or "layer_norm" in n.lower())]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and (n.endswith("bias") or "layernorm" in n.lower() or "layer_norm" in n.lower())]
    groups = [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=1e-5, betas=(0.9, 0.98), eps=1e-8)
    scheduler = build_scheduler(optimizer, 0, 10**6)
    params = decay + no_decay

    def step(i: int) -> None:
        for batch in batches[i]:  # two fine-tune steps: English, then Spanish
            model(**batch).loss.backward()
            optimizer_update(optimizer, scheduler, params, 1.0)

    return step, device, {"trainable_m": sum(p.numel() for p in params) / 1e6, "frozen_depth": 0, "layers": model.config.num_hidden_layers, "mlm_pieces": None, "bf16": False}


def spec_items(spec: dict, tokenizer):
    """Per chosen batch: (English span items with gold labels, Spanish items with spans)."""
    import pandas as pd
    from typical import batch_items

    def items(sentences, labeled):
        frame = pd.DataFrame(sentences)
        return batch_items(frame, list(range(len(frame))), tokenizer, labeled)[0]

    return [items(s, True) for s in spec["en"]], [items(s, False) for s in spec["es"]]


def worker(variant: str, spec_path: str) -> int:
    """Protocol (stdout lines prefixed with _MARK): READY {info}, then per `step` line on stdin
    TIME {seconds}, and on `exit` RESULT {peak memory}."""
    import torch

    rss_imports = rss_mb()
    spec = json.loads(Path(spec_path).read_text())
    _, use_vocab, bf16, top = VARIANTS[variant]
    step, device, info = build_token_classifier(spec) if variant == "t" else build_glode(spec, use_vocab, bf16, spec["top_layers"] if top else 0)
    say("READY", info)
    n_batches, i = len(spec["en"]), 0
    for line in sys.stdin:
        if line.strip() == "exit":
            break
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(n_batches):  # one step on each chosen batch; reported per step
            step(i % n_batches)
            i += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        say("TIME", (time.perf_counter() - start) / n_batches)
    say("RESULT", {"rss_after_imports_mb": rss_imports, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    return 0


class Worker:
    def __init__(self, variant: str, spec_path: str):
        env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "TQDM_DISABLE": "1"}
        self.variant = variant
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", variant, "--spec", spec_path], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, bufsize=1)

    def read(self, kind: str):
        for line in self.proc.stdout:
            if line.startswith(_MARK):
                got, payload = line[len(_MARK):].split(" ", 1)
                if got != kind:
                    raise RuntimeError(f"worker {self.variant}: expected {kind}, got {got}")
                return json.loads(payload)
        raise RuntimeError(f"worker {self.variant} exited with code {self.proc.wait()} (its stderr is above)")

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()


# -- parent --------------------------------------------------------------------------------------


def prepare_spec(args, backbone: str, tmp: Path) -> tuple[dict, list[str]]:
    """Choose the typical batches, build the corpus vocabulary; write what the workers need."""
    import numpy as np
    from typical import SOURCE_ORDER, TARGET_ORDER, read_train, typical_batches

    from glode.model import load_tokenizer
    from glode.vocab import corpus_piece_ids

    tokenizer = load_tokenizer(backbone)
    en, es = read_train("en"), read_train("es")
    en_choice = typical_batches(en, tokenizer, args.batch_size, args.seed, SOURCE_ORDER, args.batches, args.pick)
    es_choice = typical_batches(es, tokenizer, args.batch_size, args.seed, TARGET_ORDER, args.batches, args.pick)
    vocab = corpus_piece_ids(es["tokens"].tolist(), tokenizer)
    np.save(tmp / "vocab.npy", vocab)

    def rows(frame, idx):
        return [{"sent_id": int(r.sent_id), "line": int(r.line), "tokens": list(r.tokens), "tags": list(r.tags)} for r in frame.iloc[idx].itertuples()]

    spec = {"backbone": backbone, "device": args.device, "seed": args.seed, "top_layers": args.top_layers, "vocab": str(tmp / "vocab.npy"),
            "en": [rows(en, idx) for idx in en_choice.indices], "es": [rows(es, idx) for idx in es_choice.indices]}
    lines = [
        f"span batch: {args.batch_size} English train sentences, {en_choice.describe()}",
        f"MLM batch:  {args.batch_size} Spanish train sentences, {es_choice.describe()}",
        f"corpus vocabulary: {len(vocab)} of {len(tokenizer)} pieces ({100 * len(vocab) / len(tokenizer):.1f}%, Spanish train words + specials)",
    ]
    return spec, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default=None, help="HF encoder directory (default: resources/multilingual-e5-small if built, else a tiny random BERT)")
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per span batch and per MLM batch")
    parser.add_argument("--batches", type=int, default=1, help="typical batches per language: the N full batches of median padded length")
    parser.add_argument("--pick", choices=("median", "mean"), default="median", help="which batches are typical: median padded length, or nearest the mean")
    parser.add_argument("--top-layers", type=int, default=4, help="layers trained in (d) and (e); the ones below are frozen and cached")
    parser.add_argument("--seed", type=int, default=1, help="the training seed whose sampler order is replayed (train-source default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (one step of every variant each)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (AdamW state, oneDNN kernels)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), help="which variants (t is needed for the ratios)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    parser.add_argument("--worker", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.spec)

    from typical import load_line, machine_lines, resolve_backbone

    started = time.perf_counter()
    print("\n".join(machine_lines()), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        backbone = resolve_backbone(args.backbone, Path(tmp))
        spec, lines = prepare_spec(args, backbone, Path(tmp))
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        print(f"backbone: {backbone}; word embeddings frozen; device {args.device}; seed {args.seed}; {args.warmup} warm-up + {args.repeats} timed rounds", flush=True)
        print("\n".join(lines), flush=True)
        workers = []
        try:
            for v in args.variants:  # started one after another: each loads a model
                workers.append(Worker(v, str(spec_path)))
                workers[-1].info = workers[-1].read("READY")
            times: dict[str, list[float]] = {v: [] for v in args.variants}
            for r in range(args.warmup + args.repeats):
                shift = r % len(workers)
                for w in workers[shift:] + workers[:shift]:
                    w.send("step")
                    t = w.read("TIME")
                    if r >= args.warmup:
                        times[w.variant].append(t)
            for w in workers:
                w.send("exit")
                w.memory = w.read("RESULT")
                w.proc.wait()
        finally:
            for w in workers:
                if w.proc.poll() is None:
                    w.proc.kill()
    print(load_line("at end"))
    report(args, workers, times)
    print(f"(benchmark wall time {time.perf_counter() - started:.0f} s)")
    return 0


def report(args, workers, times: dict[str, list[float]]) -> None:
    base = times.get("t")
    print(f"\n{'variant':<52}{'ms/step':>9}{'min':>8}{'x (t)':>7}{'paired':>8}{'layers trained/cached':>22}{'train M':>9}{'MLM pieces':>11}{'peak RSS MB':>12}")
    best = None
    for w in workers:
        ts = times[w.variant]
        med = statistics.median(ts)
        ratio = paired = "-"
        if base and w.variant != "t":
            r = med / statistics.median(base)
            p = statistics.median(a / b for a, b in zip(ts, base))
            ratio, paired = f"{r:.2f}", f"{p:.2f}"
            best = min(best or (r, w.variant), (r, w.variant))
        label = f"({w.variant}) {VARIANTS[w.variant][0]}"
        bf16_note = " [bf16 unavailable: ran fp32]" if VARIANTS[w.variant][2] and not w.info["bf16"] else ""
        layers = f"{w.info['layers'] - w.info['frozen_depth']}/{w.info['frozen_depth']}"
        pieces = w.info["mlm_pieces"] or ("250k" if w.variant != "t" else "-")
        print(f"{label + bf16_note:<52}{med * 1e3:>9.0f}{min(ts) * 1e3:>8.0f}{ratio:>7}{paired:>8}{layers:>22}{w.info['trainable_m']:>9.1f}{pieces!s:>11}{w.memory['peak_rss_mb']:>12.0f}")
    print("x (t): median step / median of (t); paired: median over rounds of step / (t) in the same round. "
          f"Peak RSS includes ~{statistics.median(w.memory['rss_after_imports_mb'] for w in workers):.0f} MB of imports.")
    print("per-round ms: " + "; ".join(f"{v}: {' '.join(f'{t * 1e3:.0f}' for t in ts)}" for v, ts in times.items()))
    if best is not None:
        verdict = "MET" if best[0] <= TARGET_RATIO else "NOT met"
        print(f"issue target: one source step <= {TARGET_RATIO} x two token-classifier steps: fastest glode variant ({best[1]}) {best[0]:.2f}x -> {verdict}")


if __name__ == "__main__":
    raise SystemExit(main())
