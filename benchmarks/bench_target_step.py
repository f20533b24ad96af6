"""Cost of one target-training step on typical batches: frozen+cached lower layers, and the denoiser's share.

    .venv/bin/python benchmarks/bench_target_step.py                  # e5-small, 8 + 8 sentences, 3 rounds
    .venv/bin/python benchmarks/bench_target_step.py --batch-size 32 --repeats 5 --precision bf16

One step is `glode.train_target.training_step` itself (forward of the source and the target batch
with projections; L_src; the Denoiser's observe + refine, timed by the step's own
`refine_batch`; L_tgt; MLM on a masked copy of the target batch; backward of L_T / 4) plus a
quarter of the clip + AdamW update (glode.training.optimizer_update: one update per
grad_accumulation = 4 steps). The batches are the ones training draws: the seeded
`LengthBucketBatchSampler` orders train-target uses (--seed) over the English train file (source,
gold spans) and the Spanish one (target, spans <= 4 words, soft random pseudo labels);
--batch-size sentences each (training: 8); of each sampler's first pass the full batch of
median padded length (--pick mean: the one nearest the pass's mean padded length).

Variants (word embeddings frozen in all; --train-word-embeddings trains them in (a)):

  (a) all 12 encoder layers trained;
  (b) the bottom 8 frozen and their output computed once (SpanModel.encode_bottom, eval mode,
      outside the timed region; fed through SpanCollator's `frozen_hidden`, frozen_depth=8),
      the top 4 trained (--top-layers); the MLM pass still runs all 12 layers;

each with the MLM softmax over the whole 250k vocabulary and over the corpus vocabulary
(glode.vocab.corpus_piece_ids of the Spanish train words). All four models are built in this
process and stepped round-robin: --warmup untimed rounds, then --repeats timed rounds; medians.
The denoiser is in its fully-ready state in every variant (epoch 2 of 8, so labels are updated):
prototypes, global and local thresholds, a bank of --bank-size random unit vectors in 128-d
(~10% entity labels), K = --k (300), faiss on the CPU.

Printed: per variant forward+backward, AdamW/4, the step, the denoiser's time and share of the
step, and (b)/(a) with the same vocabulary (issue targets: (b)/(a) <= 0.4; denoiser <= 5% of
a step). Then, as before, the denoiser's parts for variant (a)/full vocab: observe (Eq. 6),
global scores, kNN search, local scores (Eq. 9), directions + merge + update (Eqs. 8, 10, 11),
Denoiser.refine as a whole, the index build (once per epoch) and the torch kNN back end.
bf16 autocast with --precision bf16 (default auto: fp32 on the CPU, bf16 on CUDA).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from timing import fmt, timed
from typical import (
    CLASSES,
    SOURCE_ORDER,
    TARGET_ORDER,
    attach_frozen_hidden,
    batch_items,
    load_line,
    machine_lines,
    read_train,
    resolve_backbone,
    typical_batches,
)

from glode.batching import SpanCollator, move_batch
from glode.denoise import (
    DenoiseOptions,
    Denoiser,
    NeighbourBank,
    class_thresholds,
    denoising_directions,
    local_scores,
    merge_directions,
    update_pseudo_labels,
)
from glode.device import seed_everything, select_device, use_bf16
from glode.model import SpanModel, load_tokenizer
from glode.train_target import (
    EpochTally,
    TargetRun,
    TargetTrainingOptions,
    training_step,
)
from glode.tokenizer import special_token_ids
from glode.training import (
    CorpusVocabulary,
    UpdateLog,
    build_optimizer,
    build_scheduler,
    optimizer_update,
    stream_generator,
)
from glode.vocab import corpus_piece_ids

TARGET_RATIO, TARGET_SHARE = 0.4, 0.05
EPOCH, NUM_EPOCHS = 2, 8  # labels are updated from epoch 2 (DenoiseOptions.update_start_epoch)


class Variant:
    """One model with its optimizer, ready denoiser and batches; `step()` times one step."""

    def __init__(self, key: str, cached: bool, vocab_ids: np.ndarray | None, data: dict, args, device: torch.device):
        self.key, self.cached, self.corpus = key, cached, vocab_ids is not None
        self.label = f"({key}) {f'top {args.top_layers} trained, bottom cached' if cached else 'all layers trained'}, {'corpus' if self.corpus else 'full'} vocab"
        seed_everything(args.seed)
        tokenizer = data["tokenizer"]
        self.model = SpanModel.from_backbone(data["backbone"], CLASSES)
        self.model.freeze_encoder_parts(freeze_word_embeddings=cached or not args.train_word_embeddings, train_top_layers=args.top_layers if cached else 0)
        self.model.to(device).train()
        depth = self.model.frozen_depth() if cached else 0
        src_items = [dict(it) for it in data["src_items"]]
        tgt_items = [dict(it) for it in data["tgt_items"]]
        if depth:
            attach_frozen_hidden(self.model, src_items, depth, tokenizer.pad_token_id, device)
            attach_frozen_hidden(self.model, tgt_items, depth, tokenizer.pad_token_id, device)
        collate = SpanCollator(tokenizer.pad_token_id, self.model.config.subword_width_buckets)
        self.src_batch, self.tgt_batch = collate(src_items), collate(tgt_items)  # CPU batches, as the loaders give them
        optimizer, params = build_optimizer(self.model, 1e-5, (0.9, 0.98), 1e-8, 0.01)
        vocabulary = CorpusVocabulary(vocab_ids, self.model.get_input_embeddings().num_embeddings, device) if self.corpus else None
        self.opts = TargetTrainingOptions(batch_size=args.batch_size, num_epochs=NUM_EPOCHS, seed=args.seed, precision=args.precision,
                                          freeze_word_embeddings=True, train_top_layers=args.top_layers if cached else 0, cache_frozen_layers=cached)
        self.labels0 = data["labels0"]
        denoiser, self.index_build_s = self.ready_denoiser(data, args, depth, device)
        generators = {"masks": stream_generator(args.seed, 2), "supcon": stream_generator(args.seed, 3), "bank": stream_generator(args.seed, 4)}
        self.run = TargetRun(self.model, optimizer, params, build_scheduler(optimizer, 0, 10**6), denoiser, generators, vocabulary, depth,
                             None, None, 1, 1, 0)
        self.tally = EpochTally(len(CLASSES), UpdateLog(None, 1, "bench", progress=False))
        self.specials, self.mask_id, self.device = special_token_ids(tokenizer), tokenizer.mask_token_id, device
        self.trainable_m = sum(p.numel() for p in params) / 1e6
        self.depth = depth
        self.times: dict[str, list[float]] = {"fb": [], "update": [], "denoise": [], "changed": []}

    def ready_denoiser(self, data: dict, args, depth: int, device: torch.device) -> tuple[Denoiser, float]:
        """Prototypes, thresholds and bank set, as after two epochs (thresholds from this model's
        eval-mode projections of the two batches)."""
        src, tgt = move_batch(self.src_batch, device), move_batch(self.tgt_batch, device)
        self.model.eval()
        with torch.no_grad():
            z_s = self.model(**src, return_projections=True, frozen_depth=depth).projections.float()
            z_t = self.model(**tgt, return_projections=True, frozen_depth=depth).projections.float()
        self.model.train()
        p_t = torch.from_numpy(self.labels0[self.tgt_batch["span_rows"].numpy()]).to(device)
        cfg = DenoiseOptions(k=args.k)
        denoiser = Denoiser(len(CLASSES), self.model.config.projection_dim, cfg, device=device)
        denoiser.observe(torch.cat([z_s, z_t]), torch.cat([src["labels"], p_t.argmax(1)]))
        denoiser.bank = NeighbourBank(data["bank_z"].to(device), data["bank_y"].to(device))
        start = time.perf_counter()
        denoiser.bank.search(z_t[:1], args.k)  # builds the faiss index (once per epoch in training)
        index_build = time.perf_counter() - start
        y_t = p_t.argmax(1)
        denoiser.global_thresholds = class_thresholds(denoiser.global_scores(z_t), y_t, len(CLASSES))
        denoiser.local_thresholds = class_thresholds(denoiser.local_scores(z_t), y_t, len(CLASSES)) * cfg.local_threshold_factor
        self.z_s, self.z_t, self.p_t = z_s, z_t, p_t
        return denoiser, index_build

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def step(self, record: bool) -> None:
        labels = self.labels0.copy()  # every round refines the same labels
        self.tally.denoise_seconds, self.tally.changed = 0.0, 0
        self.sync()
        start = time.perf_counter()
        training_step(self.run, self.src_batch, self.tgt_batch, labels, EPOCH, self.opts, self.tally, self.specials, self.mask_id, self.opts.grad_accumulation, self.device)
        self.sync()
        fb = time.perf_counter() - start
        start = time.perf_counter()
        optimizer_update(self.run.optimizer, self.run.scheduler, self.run.params, self.opts.grad_clip)
        self.sync()
        update = time.perf_counter() - start
        self.tally.projections = {key: [] for key in self.tally.projections}  # what end_epoch would use; not needed here
        if record:
            for key, value in (("fb", fb), ("update", update), ("denoise", self.tally.denoise_seconds), ("changed", self.tally.changed)):
                self.times[key].append(value)

    def step_times(self) -> list[float]:
        return [fb + up / self.opts.grad_accumulation for fb, up in zip(self.times["fb"], self.times["update"])]


def prepare(args, backbone: str, device: torch.device) -> tuple[dict, list[str]]:
    tokenizer = load_tokenizer(backbone)
    en, es = read_train("en"), read_train("es")
    src_choice = typical_batches(en, tokenizer, args.batch_size, args.seed, SOURCE_ORDER, pick=args.pick)
    tgt_choice = typical_batches(es, tokenizer, args.batch_size, args.seed, TARGET_ORDER, pick=args.pick)
    src_items, src_spans = batch_items(en, src_choice.indices[0], tokenizer, labeled=True)
    tgt_items, tgt_spans = batch_items(es, tgt_choice.indices[0], tokenizer, labeled=False)
    vocab_ids = corpus_piece_ids(es["tokens"].tolist(), tokenizer)
    gen = torch.Generator().manual_seed(0)
    labels0 = F.softmax(2 * torch.randn(len(tgt_spans), len(CLASSES), generator=gen), dim=1).numpy().astype(np.float32)
    bank_z = F.normalize(torch.randn(args.bank_size, 128, generator=gen), dim=1)
    is_entity = torch.rand(args.bank_size, generator=gen) < 0.1
    bank_y = torch.where(is_entity, torch.randint(1, len(CLASSES), (args.bank_size,), generator=gen), torch.zeros(args.bank_size, dtype=torch.long))
    data = {"backbone": backbone, "tokenizer": tokenizer, "src_items": src_items, "tgt_items": tgt_items, "labels0": labels0, "bank_z": bank_z, "bank_y": bank_y, "vocab_ids": vocab_ids}
    lines = [
        f"source batch: {args.batch_size} English train sentences, {len(src_spans)} spans, {src_choice.describe()}",
        f"target batch: {args.batch_size} Spanish train sentences, {len(tgt_spans)} spans, {tgt_choice.describe()}",
        f"corpus vocabulary: {len(vocab_ids)} of {len(tokenizer)} pieces (Spanish train words + specials)",
    ]
    return data, lines


def denoiser_parts(v: Variant, args) -> None:
    """The old per-part table, on variant v's projections and ready denoiser."""
    denoiser, device = v.run.denoiser, v.device
    z_s, z_t, p_t = v.z_s, v.z_t, v.p_t
    y_s = v.src_batch["labels"].to(device)
    g = denoiser.global_scores(z_t)
    loc = denoiser.local_scores(z_t)
    neighbour_labels = denoiser.bank.neighbour_labels(z_t, args.k)

    def directions_merge_update():
        d_g = denoising_directions(g, denoiser.global_thresholds)
        d_l = denoising_directions(loc, denoiser.local_thresholds)
        return update_pseudo_labels(p_t, merge_directions(d_g, d_l), 0.9)

    z_step, y_step = torch.cat([z_s, z_t]), torch.cat([y_s, p_t.argmax(1)])
    torch_bank = NeighbourBank(denoiser.bank.embeddings, denoiser.bank.labels, backend="torch")
    parts = [
        ("observe: EMA prototypes (Eq. 6)", lambda: denoiser.observe(z_step, y_step)),
        ("global scores", lambda: denoiser.global_scores(z_t)),
        (f"kNN search k={args.k}, bank {args.bank_size} x 128", lambda: denoiser.bank.search(z_t, args.k)),
        ("local scores from labels (Eq. 9)", lambda: local_scores(neighbour_labels, len(CLASSES))),
        ("directions + merge + update (8, 10, 11)", directions_merge_update),
        ("Denoiser.refine (all of the above)", lambda: denoiser.refine(z_t, p_t, EPOCH, NUM_EPOCHS)),
        ("  kNN search, torch backend (matmul + topk)", lambda: torch_bank.search(z_t, args.k)),
    ]
    print(f"\ndenoiser parts, variant ({v.key}) ({z_t.shape[0]} target spans, kNN backend '{denoiser.bank._resolved_backend()}'); median (min) of {args.repeats} after one warm-up:")
    for name, fn in parts:
        print(f"  {name:<46} {fmt(timed(fn, device, args.repeats))}")
    print(f"  {'index build (first search after a rebuild)':<46} {v.index_build_s * 1e3:10.2f} ms  (once per epoch)")


def report(variants: list[Variant], args) -> None:
    print(f"\n{'variant':<50}{'fwd+bwd':>9}{'AdamW/4':>9}{'step':>8}{'denoise':>9}{'share':>7}{'x (a)':>7}{'paired':>8}{'model x (a)':>12}{'train M':>9}{'changed':>8}")
    by_key = {(v.cached, v.corpus): v for v in variants}
    verdicts, shares = [], []
    for v in variants:
        steps = v.step_times()
        step = statistics.median(steps)
        share = statistics.median(d / s for d, s in zip(v.times["denoise"], steps))
        ratio = paired = model_ratio = "-"
        base = by_key.get((False, v.corpus))
        if v.cached and base is not None:
            base_steps = base.step_times()
            r = step / statistics.median(base_steps)
            p = statistics.median(a / b for a, b in zip(steps, base_steps))
            m = statistics.median(s - d for s, d in zip(steps, v.times["denoise"])) / statistics.median(s - d for s, d in zip(base_steps, base.times["denoise"]))
            ratio, paired, model_ratio = f"{r:.2f}", f"{p:.2f}", f"{m:.2f}"
            verdicts.append(f"(b)/(a), {'corpus' if v.corpus else 'full'} vocab: {r:.2f} (paired {p:.2f}) <= {TARGET_RATIO}? {'MET' if r <= TARGET_RATIO else 'NOT met'}")
        shares.append(f"denoiser share, {v.label}: {100 * share:.1f}% <= {100 * TARGET_SHARE:.0f}%? {'MET' if share <= TARGET_SHARE else 'NOT met'}")
        ms = lambda xs: f"{statistics.median(xs) * 1e3:.0f}"
        upd4 = [u / v.opts.grad_accumulation for u in v.times["update"]]
        print(f"{v.label:<50}{ms(v.times['fb']):>9}{ms(upd4):>9}{step * 1e3:>8.0f}{ms(v.times['denoise']):>9}{100 * share:>6.1f}%{ratio:>7}{paired:>8}{model_ratio:>12}{v.trainable_m:>9.1f}"
              f"{statistics.median(v.times['changed']):>8.0f}")
    print("ms, medians over the timed rounds. step = fwd+bwd (training_step, incl. the denoiser) + AdamW/4; share = denoiser / step (median over rounds);"
          " x (a): median step / that of (a) with the same vocabulary; paired: median over rounds of the same-round ratio; model x (a): the same ratio of (step - denoiser); changed: pseudo-label argmaxes the refinement changed.")
    print("per-round step ms: " + "; ".join(f"{v.key}/{'corpus' if v.corpus else 'full'}: {' '.join(f'{s * 1e3:.0f}' for s in v.step_times())}" for v in variants))
    print("issue targets:\n  " + "\n  ".join(verdicts + shares))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default=None, help="HF encoder directory (default: resources/multilingual-e5-small if built, else a tiny random BERT)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    parser.add_argument("--batch-size", type=int, default=8, help="sentences per source batch and per target batch (training: 8)")
    parser.add_argument("--pick", choices=("median", "mean"), default="median", help="which batches are typical: median padded length, or nearest the mean")
    parser.add_argument("--top-layers", type=int, default=4, help="layers trained in (b); the ones below are frozen and cached")
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"), help="glode.device.autocast precision of every variant")
    parser.add_argument("--train-word-embeddings", action="store_true", help="train the word embeddings in (a) (default: frozen everywhere, the CPU setting)")
    parser.add_argument("--vocab", choices=("both", "full", "corpus"), default="both", help="MLM vocabulary variants to run")
    parser.add_argument("--bank-size", type=int, default=100_000)
    parser.add_argument("--k", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1, help="the training seed whose sampler order is replayed (train-target default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (one step of every variant each)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (AdamW state, faiss, oneDNN)")
    args = parser.parse_args(argv)
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    device = select_device(args.device)
    started = time.perf_counter()
    print("\n".join(machine_lines()), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        backbone = resolve_backbone(args.backbone, Path(tmp))
        data, lines = prepare(args, backbone, device)
        print(f"backbone: {backbone}; device {device}, {'bf16 autocast' if use_bf16(device, args.precision) else 'fp32'}; word embeddings "
              f"{'trained in (a)' if args.train_word_embeddings else 'frozen'}; seed {args.seed}; {args.warmup} warm-up + {args.repeats} timed rounds", flush=True)
        print("\n".join(lines), flush=True)
        vocabs = {"both": (False, True), "full": (False,), "corpus": (True,)}[args.vocab]
        variants = [Variant(key, cached, data["vocab_ids"] if corpus else None, data, args, device)
                    for key, cached in (("a", False), ("b", True)) for corpus in vocabs]
    for r in range(args.warmup + args.repeats):
        shift = r % len(variants)
        for v in variants[shift:] + variants[:shift]:
            v.step(record=r >= args.warmup)
    print(load_line("after the steps"))
    report(variants, args)
    denoiser_parts(variants[0], args)
    print(load_line("at end"))
    print(f"(benchmark wall time {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
