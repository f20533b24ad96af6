"""Cost of the denoising inside one target-training step, next to the model's own step; not a test.

    .venv/bin/python benchmarks/bench_target_step.py                 # CPU, and CUDA when there is one
    .venv/bin/python benchmarks/bench_target_step.py --devices cpu --bank-size 200000

One step of `glode train-target` (glode/train_target.py) on real sentences: the first
--batch-size sentences of the CoNLL German train file as the target batch (spans <= 4 words, soft
random pseudo labels) and of the English one as the source batch (gold spans), on the backbone
(resources/multilingual-e5-small when built, else a tiny random BERT with the real tokenizer):

* model: forward of both batches with projections, L_src + L_tgt + 1e-3 * L_mlm (MLM on a masked
  copy of the target batch) and backward -- every step; the AdamW update -- every
  grad_accumulation (4) steps, so a quarter of it belongs to each step;
* denoising, with the Denoiser in its fully-ready state (prototypes, global and local thresholds,
  a bank of --bank-size random unit vectors in 128-d, ~10% entity labels, K = 300): observe
  (Eq. 6), global scores, kNN search, local scores (Eq. 9), directions + merge + update
  (Eqs. 8, 10, 11), and `Denoiser.refine` as a whole; the search index build (once per epoch,
  on the first search after the bank is rebuilt) is shown apart.

Figures are the median (and min) of --repeats runs (default 1) after one warm-up; CUDA runs are synchronised.
bf16 autocast on CUDA, fp32 on the CPU, as in training.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from glode.batching import SpanCollator, build_items, move_batch  # noqa: E402
from glode.denoise import DenoiseOptions, Denoiser, NeighbourBank, class_thresholds, denoising_directions, local_scores, merge_directions, update_pseudo_labels  # noqa: E402
from glode.device import autocast, make_generator, seed_everything  # noqa: E402
from glode.model import SpanModel, load_tokenizer  # noqa: E402
from glode.objectives import soft_span_cross_entropy, span_cross_entropy  # noqa: E402
from glode.testing import build_tiny_backbone  # noqa: E402
from glode.training import build_optimizer, masked_lm_step, special_token_ids  # noqa: E402

from timing import fmt, timed  # noqa: E402  (benchmarks/timing.py: the script's folder is on sys.path)

DATA = PROJECT_ROOT.parent / "shared" / "datasets" / "conll"
DEFAULT_BACKBONE = PROJECT_ROOT / "resources" / "multilingual-e5-small"
ENTITY_TYPES = ["PER", "LOC", "ORG", "MISC"]
CLASSES = ["O", *ENTITY_TYPES]


def first_sentences(lang: str, n: int):
    import pandas as pd

    from glode.conll import read_conll

    parsed = read_conll(DATA / lang / "train.txt", ENTITY_TYPES)
    return pd.DataFrame([{"sent_id": i, "line": s.line, "tokens": s.tokens, "tags": s.tags} for i, s in enumerate(parsed.sentences[:n])])


def machine() -> str:
    import faiss

    lines = [
        f"python {platform.python_version()}  torch {torch.__version__}  faiss {faiss.__version__} (faiss GPUs: "
        f"{faiss.get_num_gpus() if hasattr(faiss, 'get_num_gpus') else 0}, OpenMP threads {faiss.omp_get_max_threads()})",
        f"CPU: {os.cpu_count()} cores visible, {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'} usable, "
        f"torch threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}, load average {os.getloadavg()}",
        f"{platform.platform()}",
    ]
    if torch.cuda.is_available():
        lines.append(f"CUDA: {torch.cuda.get_device_name(0)}")
    return "\n".join(lines)


def bench_device(device: torch.device, backbone: str, args) -> None:
    seed_everything(0)
    from glode.spans import build_span_table

    tokenizer = load_tokenizer(backbone)
    src_sentences, tgt_sentences = first_sentences("en", args.batch_size), first_sentences("de", args.batch_size)
    src_spans, _ = build_span_table(src_sentences, tokenizer, 4, 128)
    tgt_spans, _ = build_span_table(tgt_sentences.drop(columns=["tags"]), tokenizer, 4, 128)
    collate = SpanCollator(tokenizer.pad_token_id)
    src_batch = move_batch(collate(build_items(src_sentences, tokenizer, 128, src_spans, CLASSES)), device)
    tgt_cpu = collate(build_items(tgt_sentences.drop(columns=["tags"]), tokenizer, 128, tgt_spans))
    tgt_batch = move_batch(tgt_cpu, device)
    n_spans = int(tgt_batch["span_start"].shape[0])
    gen = torch.Generator().manual_seed(0)
    p_t = F.softmax(2 * torch.randn(n_spans, len(CLASSES), generator=gen), dim=1).to(device)

    model = SpanModel.from_backbone(backbone, CLASSES)
    if args.freeze_word_embeddings:
        model.freeze_encoder_parts(freeze_word_embeddings=True)
    model.to(device).train()
    optimizer, params = build_optimizer(model, 1e-5, (0.9, 0.98), 1e-8, 0.01)
    masks, specials = make_generator(0, 2), special_token_ids(tokenizer)

    projections = {}

    def forward_backward():
        with autocast(device):
            out_s = model(**src_batch, return_projections=True)
            out_t = model(**tgt_batch, return_projections=True)
        loss = span_cross_entropy(out_s.logits, src_batch["labels"], src_batch["span_sentence"], args.batch_size)
        loss = loss + soft_span_cross_entropy(out_t.logits, p_t, tgt_batch["span_sentence"], args.batch_size)
        loss = loss + 1e-3 * masked_lm_step(model, tgt_cpu, tokenizer.mask_token_id, specials, 0.25, "masked", masks, device)
        loss.backward()
        projections.update(z_s=out_s.projections.detach(), z_t=out_t.projections.detach())

    def update():
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)  # keep (zero) gradients: every timed update does the full work

    model_step = timed(forward_backward, device, args.repeats)
    adamw = timed(update, device, args.repeats)  # the warm-up call allocates the AdamW state
    z_s, z_t = projections["z_s"], projections["z_t"]

    # the denoiser, fully ready: prototypes, thresholds, bank of random unit vectors
    cfg = DenoiseOptions(k=args.k, update_start_epoch=0)
    denoiser = Denoiser(len(CLASSES), 128, cfg, device=device)
    bank_z = F.normalize(torch.randn(args.bank_size, 128, generator=gen), dim=1)
    is_entity = torch.rand(args.bank_size, generator=gen) < 0.1
    bank_y = torch.where(is_entity, torch.randint(1, len(CLASSES), (args.bank_size,), generator=gen), torch.zeros(args.bank_size, dtype=torch.long))
    y_s = src_batch["labels"]
    denoiser.observe(torch.cat([z_s, z_t]), torch.cat([y_s, p_t.argmax(1)]))
    denoiser.bank = NeighbourBank(bank_z.to(device), bank_y.to(device))
    first_search = time.perf_counter()
    denoiser.bank.search(z_t[:1], args.k)  # builds the faiss index (once per epoch in training)
    index_build = time.perf_counter() - first_search
    g = denoiser.global_scores(z_t)
    loc = denoiser.local_scores(z_t)
    denoiser.global_thresholds = class_thresholds(g, p_t.argmax(1), len(CLASSES))
    denoiser.local_thresholds = class_thresholds(loc, p_t.argmax(1), len(CLASSES)) * cfg.local_threshold_factor
    neighbour_labels = denoiser.bank.neighbour_labels(z_t, args.k)

    def directions_merge_update():
        d_g = denoising_directions(g, denoiser.global_thresholds)
        d_l = denoising_directions(loc, denoiser.local_thresholds)
        return update_pseudo_labels(p_t, merge_directions(d_g, d_l), 0.9)

    z_step, y_step = torch.cat([z_s, z_t]), torch.cat([y_s, p_t.argmax(1)])
    steps = [
        ("observe: EMA prototypes (Eq. 6)", lambda: denoiser.observe(z_step, y_step)),
        ("global scores", lambda: denoiser.global_scores(z_t)),
        (f"kNN search k={args.k}, bank {args.bank_size} x 128", lambda: denoiser.bank.search(z_t, args.k)),
        ("local scores from labels (Eq. 9)", lambda: local_scores(neighbour_labels, len(CLASSES))),
        ("directions + merge + update (8, 10, 11)", directions_merge_update),
        ("Denoiser.refine (all of the above)", lambda: denoiser.refine(z_t, p_t, 2, 5)),
    ]
    print(f"\n== {device} ({'bf16 autocast' if device.type == 'cuda' else 'fp32'}); batch: {args.batch_size} + {args.batch_size} sentences, "
          f"{int(src_batch['span_start'].shape[0])} source / {n_spans} target spans, {int(tgt_batch['input_ids'].shape[1])} subwords padded; "
          f"kNN backend '{denoiser.bank._resolved_backend()}'")
    print(f"  {'model forward + backward (per step)':<46} {fmt(model_step)}")
    print(f"  {'AdamW update + clip (per 4 steps)':<46} {fmt(adamw)}   -> {adamw[0] / 4 * 1e3:.2f} ms per step")
    refine = None
    for name, fn in steps:
        result = timed(fn, device, args.repeats)
        refine = result
        print(f"  {name:<46} {fmt(result)}")
    observe = timed(lambda: denoiser.observe(z_step, y_step), device, args.repeats)
    denoise_per_step = observe[0] + refine[0]
    model_per_step = model_step[0] + adamw[0] / 4
    print(f"  {'index build (first search after a rebuild)':<46} {index_build * 1e3:10.2f} ms  (once per epoch)")
    if device.type == "cpu":  # the same search by the other routes (Denoiser's CPU default is plain faiss)
        import faiss

        torch_bank = NeighbourBank(denoiser.bank.embeddings, denoiser.bank.labels, backend="torch")
        print(f"  {'  kNN search, torch backend (matmul + topk)':<46} {fmt(timed(lambda: torch_bank.search(z_t, args.k), device, args.repeats))}")
        saved = faiss.cvar.distance_compute_blas_threshold
        faiss.cvar.distance_compute_blas_threshold = 20  # faiss 1.15's default sends < 128k queries to non-BLAS loops
        try:
            print(f"  {'  kNN search, faiss, BLAS threshold 20':<46} {fmt(timed(lambda: denoiser.bank.search(z_t, args.k), device, args.repeats))}"
                  f"   (default threshold {saved})")
        finally:
            faiss.cvar.distance_compute_blas_threshold = saved
    print(f"  denoising per step (observe + refine) = {denoise_per_step * 1e3:.2f} ms = {100 * denoise_per_step / model_per_step:.1f}% of the model's "
          f"{model_per_step * 1e3:.1f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default=None, help="HF encoder directory (default: resources/multilingual-e5-small if built, else a tiny random BERT)")
    parser.add_argument("--devices", nargs="*", default=None, help="default: cpu, and cuda when available")
    parser.add_argument("--batch-size", type=int, default=8, help="sentences per source batch and per target batch (training: 8)")
    parser.add_argument("--bank-size", type=int, default=100_000)
    parser.add_argument("--k", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=1, help="timed runs after one warm-up (1 keeps the CPU run near 2 min; use 3 on a quiet machine)")
    parser.add_argument("--freeze-word-embeddings", action="store_true", help="the CPU demo setting")
    args = parser.parse_args(argv)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        backbone = args.backbone or (str(DEFAULT_BACKBONE) if (DEFAULT_BACKBONE / "config.json").exists() else str(build_tiny_backbone(Path(tmp) / "tiny")))
        print(f"backbone: {backbone}; word embeddings {'frozen' if args.freeze_word_embeddings else 'trained'}; repeats {args.repeats}")
        for name in devices:
            bench_device(torch.device(name), backbone, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
