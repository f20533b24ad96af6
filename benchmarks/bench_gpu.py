"""GPU kit: glode's target training step on an XLM-R-large-shaped span model, and the kNN search.

    .venv/bin/python benchmarks/bench_gpu.py                          # XLM-R-large shape, CUDA if there is one
    .venv/bin/python benchmarks/bench_gpu.py --shape tiny --device cpu --repeats 1 --bank 2000 --queries 50
    .venv/bin/python benchmarks/bench_gpu.py --peak-tflops 756 --json  # e.g. an H100 PCIe; one JSON line too

Training step. A `SpanModel` whose encoder is XLM-R shaped (`--shape large`: 24 layers, hidden 1024,
16 heads, FFN 4096, vocabulary 250002; `base`: 12/768/12/3072; `tiny`: 2/64/4/256 for a CPU),
randomly initialised (no weights, no download), with the real offline XLM-R tokenizer. One step is
what `glode train-target`'s `training_step` does without the denoiser (glode/train_target.py):

    source batch forward -> L_src (Eq. 1, gold labels)
    target batch forward -> L_tgt (Eq. 4, soft pseudo labels: random, softmax of 2 * N(0, 1) logits)
    MLM on a masked copy of the target batch (glode.training.masked_lm_step, Eq. 2, r_m = 0.25)
    L_T = L_src + L_tgt + 1e-3 * L_mlm (Eq. 5), backward, then the AdamW update with gradient
    clipping (glode.training.build_optimizer / optimizer_update).

One update per step: --batch-size sentences per side (default 32, the paper's batch per update).
Source = the first --batch-size sentences of ../shared/datasets/conll/en/train.txt (gold spans of
<= 4 words), target = the next --batch-size sentences (their tags unused). The MLM masks are drawn
from the same seed every step, so every step does the same work. bf16 autocast on CUDA, fp32 on the
CPU (glode.device.autocast, as in training). --warmup untimed steps, then --repeats timed steps
(CUDA synchronised); the median is reported.

Tokens/s = real (non-pad) subword tokens of the three encoder passes (source, target, MLM) per
second of the median step.

Model FLOPs per step, analytic (the usual 6 N T + attention estimate, counted on real tokens only,
so padding is overhead, not utilisation):

    for each encoder pass (source, target, MLM), over its sentences of n_i real tokens:
        6 * N_enc * sum_i n_i  +  12 * L * d * sum_i n_i^2
    plus, for the MLM head at the m masked tokens:
        6 * m * (d * V + d * d)                   (decoder tied to the word embeddings + dense transform)

N_enc = the encoder's non-embedding parameters (transformer layers; no word/position embeddings),
L = layers, d = hidden size, V = vocabulary. 6 = 2 (forward) + 4 (backward: gradients of activations
and of weights); everything in the encoder trains here, so the full 6 applies to every pass (a
frozen layer would still cost ~4 for the gradient of its activations). The attention term is
forward 2 * 2 * n^2 * d per layer (QK^T and AV) times 3 for forward + backward. Left out as
negligible: embeddings lookups, LayerNorms, softmax, the span heads (a [2d + 250] x 5 classifier per
span) and the projection. MFU = (FLOPs per step / median step time) / peak, with the peak from
--peak-tflops or the GPU's name (dense bf16: H100 SXM 989, H100 NVL 835, H100 PCIe 756, H200 989,
A100 312 TFLOP/s); "n/a" on the CPU.

kNN. A `NeighbourBank` of --bank random unit vectors in 128-d (labels random), --queries random unit
queries, k = --k (300): ms per search of the "torch" backend (matmul + top-k) on the device and, when
faiss has GPU support and the device is CUDA, of the "faiss" backend (GpuIndexFlatIP); on the CPU,
of faiss' IndexFlatIP too. Each result is compared with the CPU faiss search (`compare_neighbours`):
scores allclose (and equal to the inner products of the returned indices' vectors), index-set
overlap per row, and agreement up to ties at the k-th place.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from glode.batching import SpanCollator, build_items, move_batch  # noqa: E402
from glode.denoise import NeighbourBank, _faiss_has_gpu  # noqa: E402
from glode.device import autocast, make_generator, seed_everything, select_device, use_bf16  # noqa: E402
from glode.model import SpanModel, SpanModelConfig  # noqa: E402
from glode.objectives import mask_tokens, soft_span_cross_entropy, span_cross_entropy, target_objective  # noqa: E402
from glode.tokenizer import special_token_ids  # noqa: E402
from glode.training import build_optimizer, build_scheduler, masked_lm_step, optimizer_update  # noqa: E402

from timing import timed  # noqa: E402  (benchmarks/timing.py)

DATA = PROJECT_ROOT.parent / "shared" / "datasets" / "conll" / "en" / "train.txt"
ENTITY_TYPES = ["PER", "LOC", "ORG", "MISC"]
CLASSES = ["O", *ENTITY_TYPES]
MASK_RATE = 0.25
MLM_WEIGHT = 1e-3
MAX_SEQ_LEN = 128
MAX_SPAN_LEN = 4

# (layers, hidden, heads, intermediate)
SHAPES = {
    "tiny": (2, 64, 4, 256),
    "base": (12, 768, 12, 3072),
    "large": (24, 1024, 16, 4096),
}

# dense bf16 peak TFLOP/s by GPU name (first matching substring wins: the specific H100s first)
PEAK_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H200", 989.0),
    ("H100", 989.0),  # SXM ("NVIDIA H100 80GB HBM3")
    ("A100", 312.0),
)


# -- model and data ------------------------------------------------------------------------------


def encoder_config(shape: str, vocab_size: int = 250002) -> dict:
    """An XLM-R-shaped encoder config dict (as SpanModelConfig stores it)."""
    from transformers import XLMRobertaConfig

    layers, hidden, heads, intermediate = SHAPES[shape]
    config = XLMRobertaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        layer_norm_eps=1e-5,
    )
    return config.to_dict()


def build_model(shape: str, vocab_size: int = 250002) -> SpanModel:
    """A randomly initialised span model over an XLM-R-shaped encoder (on the CPU, training mode)."""
    config = SpanModelConfig(encoder_config=encoder_config(shape, vocab_size), classes=CLASSES, max_span_len=MAX_SPAN_LEN)
    return SpanModel(config).train()


def non_embedding_params(model: SpanModel) -> int:
    """N_enc: the encoder's parameters outside its embeddings module (the transformer layers)."""
    return sum(p.numel() for name, p in model.encoder.named_parameters() if not name.startswith("embeddings."))


def first_sentences(n: int, skip: int = 0, path: Path = DATA):
    import pandas as pd

    from glode.conll import read_conll

    parsed = read_conll(path, ENTITY_TYPES)
    chosen = parsed.sentences[skip : skip + n]
    if len(chosen) < n:
        raise SystemExit(f"{path} has only {len(parsed.sentences)} sentences, {skip + n} needed")
    return pd.DataFrame([{"sent_id": skip + i, "line": s.line, "tokens": s.tokens, "tags": s.tags} for i, s in enumerate(chosen)])


def build_batches(tokenizer, batch_size: int) -> tuple[dict, dict]:
    """(source batch with gold labels, target batch without) on the CPU, from real sentences."""
    from glode.spans import build_span_table

    src = first_sentences(batch_size)
    tgt = first_sentences(batch_size, skip=batch_size).drop(columns=["tags"])
    src_spans, _ = build_span_table(src, tokenizer, MAX_SPAN_LEN, MAX_SEQ_LEN)
    tgt_spans, _ = build_span_table(tgt, tokenizer, MAX_SPAN_LEN, MAX_SEQ_LEN)
    collate = SpanCollator(tokenizer.pad_token_id)
    source = collate(build_items(src, tokenizer, MAX_SEQ_LEN, src_spans, CLASSES, max_span_len=MAX_SPAN_LEN))
    target = collate(build_items(tgt, tokenizer, MAX_SEQ_LEN, tgt_spans, max_span_len=MAX_SPAN_LEN))
    return source, target


# -- FLOPs ---------------------------------------------------------------------------------------


def pass_flops(attention_mask: torch.Tensor, n_params: int, layers: int, hidden: int) -> float:
    """Forward + backward FLOPs of one encoder pass over real tokens: 6 N sum n_i + 12 L d sum n_i^2."""
    lengths = attention_mask.sum(dim=1).double()
    return 6.0 * n_params * float(lengths.sum()) + 12.0 * layers * hidden * float((lengths**2).sum())


def mlm_head_flops(masked: int, hidden: int, vocab: int) -> float:
    """Forward + backward FLOPs of the MLM head at the masked tokens: decoder d x V and dense d x d."""
    return 6.0 * masked * (hidden * vocab + hidden * hidden)


def step_flops(source: dict, target: dict, masked: int, n_params: int, layers: int, hidden: int, vocab: int) -> dict[str, float]:
    """The analytic FLOPs of one training step, by part (see the module docstring)."""
    parts = {
        "source": pass_flops(source["attention_mask"], n_params, layers, hidden),
        "target": pass_flops(target["attention_mask"], n_params, layers, hidden),
        "mlm_encoder": pass_flops(target["attention_mask"], n_params, layers, hidden),
        "mlm_head": mlm_head_flops(masked, hidden, vocab),
    }
    parts["total"] = sum(parts.values())
    return parts


def default_peak_tflops(device_name: str) -> float | None:
    for key, peak in PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return peak
    return None


# -- kNN comparison ------------------------------------------------------------------------------


def compare_neighbours(
    reference: tuple[torch.Tensor, torch.Tensor],
    candidate: tuple[torch.Tensor, torch.Tensor],
    atol: float = 1e-4,
    queries: torch.Tensor | None = None,
    bank: torch.Tensor | None = None,
) -> dict:
    """How a kNN result (scores [N, k], indices [N, k], best first) matches a reference one.

    * max_score_diff, scores_close: the score rows, element by element (tolerance `atol`);
    * index_overlap: mean over rows of |candidate set & reference set| / k;
    * rows_identical: fraction of rows whose index sets are equal;
    * scores_consistent (with `queries` [N, D] and `bank` [M, D]): the candidate's scores are the
      inner products of its indices' bank vectors (None without them: its scores are trusted);
    * agree: scores close (and consistent), and every index that one result has and the other
      lacks scores within `atol` of the reference's k-th score (a tie at the boundary, where
      either pick is right).
    """
    ref_scores, ref_idx = (t.detach().cpu() for t in reference)
    scores, idx = (t.detach().cpu() for t in candidate)
    if ref_idx.shape != idx.shape:
        raise ValueError(f"shapes differ: reference {tuple(ref_idx.shape)}, candidate {tuple(idx.shape)}")
    n, k = idx.shape
    if n == 0 or k == 0:
        return {"max_score_diff": 0.0, "scores_close": True, "index_overlap": 1.0, "rows_identical": 1.0, "scores_consistent": None, "agree": True}
    ref_scores, scores = ref_scores.float(), scores.float()
    diff = (ref_scores - scores).abs().max().item()
    scores_close = bool(torch.allclose(scores, ref_scores, atol=atol, rtol=0.0))
    consistent = None
    if queries is not None and bank is not None:  # the true scores of the candidate's indices
        q, b = queries.detach().cpu().double(), bank.detach().cpu().double()
        true = torch.cat([torch.einsum("nd,nkd->nk", q[i : i + 256], b[idx[i : i + 256]]) for i in range(0, n, 256)]).float()
        consistent = bool(torch.allclose(true, scores, atol=atol, rtol=0.0))
        scores = true

    def members(values: torch.Tensor, of: torch.Tensor) -> torch.Tensor:  # values[i, j] in of[i, :]
        sorted_of = of.sort(dim=1).values
        pos = torch.searchsorted(sorted_of, values.contiguous()).clamp(max=k - 1)
        return sorted_of.gather(1, pos) == values

    cand_in_ref = members(idx, ref_idx)
    ref_in_cand = members(ref_idx, idx)
    kth = ref_scores[:, -1:]
    # the extras on either side must be ties with the k-th reference score
    cand_extras_ok = bool((cand_in_ref | (scores >= kth - atol)).all())
    ref_extras_ok = bool((ref_in_cand | (ref_scores <= kth + atol)).all())
    overlap = cand_in_ref.float().sum(dim=1) / k
    return {
        "max_score_diff": diff,
        "scores_close": scores_close,
        "index_overlap": overlap.mean().item(),
        "rows_identical": (overlap == 1).float().mean().item(),
        "scores_consistent": consistent,
        "agree": scores_close and consistent is not False and cand_extras_ok and ref_extras_ok,
    }


# -- the benchmark -------------------------------------------------------------------------------


def machine() -> str:
    lines = [
        f"python {platform.python_version()}  torch {torch.__version__}",
        (f"CPU: {os.cpu_count()} cores visible, {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'} usable, "
         f"torch threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}, load average {os.getloadavg()}"),
        platform.platform(),
    ]
    try:
        import faiss

        lines[0] += f"  faiss {faiss.__version__} (faiss GPUs: {faiss.get_num_gpus() if hasattr(faiss, 'get_num_gpus') else 0})"
    except ImportError:
        lines[0] += "  faiss: not installed"
    if torch.cuda.is_available():
        lines.append(f"CUDA {torch.version.cuda}: {torch.cuda.get_device_name(0)}")
    return "\n".join(lines)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_training_step(device: torch.device, args) -> dict:
    from glode.tokenizer import load_offline_tokenizer

    seed_everything(args.seed)
    tokenizer = load_offline_tokenizer()
    vocab = 250002
    if len(tokenizer) > vocab:
        raise SystemExit(f"the tokenizer has {len(tokenizer)} pieces, more than the model's {vocab}")
    source_cpu, target_cpu = build_batches(tokenizer, args.batch_size)
    n_spans_s, n_spans_t = int(source_cpu["span_start"].shape[0]), int(target_cpu["span_start"].shape[0])
    generator = torch.Generator().manual_seed(args.seed)
    p_t = F.softmax(2 * torch.randn(n_spans_t, len(CLASSES), generator=generator), dim=1).to(device)

    started = time.perf_counter()
    model = build_model(args.shape, vocab).to(device).train()
    build_s = time.perf_counter() - started
    enc = model.encoder.config
    layers, hidden = enc.num_hidden_layers, enc.hidden_size
    n_params = non_embedding_params(model)
    n_total = sum(p.numel() for p in model.parameters())
    optimizer, params = build_optimizer(model, 1e-5, (0.9, 0.98), 1e-8, 0.01)
    scheduler = build_scheduler(optimizer, 0, 10**6)
    specials, mask_token_id = special_token_ids(tokenizer), tokenizer.mask_token_id
    masks = make_generator(args.seed, 2)
    mask_seed = masks.initial_seed()
    # the masks of every step (drawn from the same seed each time): count them for the FLOPs
    _, mask = mask_tokens(target_cpu["input_ids"], target_cpu["attention_mask"], mask_token_id, specials, MASK_RATE, torch.Generator().manual_seed(mask_seed))
    n_masked = int(mask.sum())

    source, target = move_batch(source_cpu, device), move_batch(target_cpu, device)
    n_sentences_s, n_sentences_t = int(source["input_ids"].shape[0]), int(target["input_ids"].shape[0])
    losses: dict[str, float] = {}

    def step() -> None:  # glode.train_target.training_step without the denoiser, then the update
        masks.manual_seed(mask_seed)
        with autocast(device):
            out_s = model(**source)
            out_t = model(**target)
        loss_src = span_cross_entropy(out_s.logits, source["labels"], source["span_sentence"], n_sentences_s)  # Eq. 1
        loss_tgt = soft_span_cross_entropy(out_t.logits, p_t, target["span_sentence"], n_sentences_t)  # Eq. 4
        loss_mlm = masked_lm_step(model, target_cpu, mask_token_id, specials, MASK_RATE, "masked", masks, device)  # Eq. 2
        loss = target_objective(loss_src, loss_tgt, loss_mlm, MLM_WEIGHT)  # Eq. 5
        loss.backward()
        optimizer_update(optimizer, scheduler, params, 1.0)
        losses["loss"] = loss.detach()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(args.warmup):
        step()
    sync(device)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    loss_value = float(losses["loss"])
    if not math.isfinite(loss_value):
        raise RuntimeError(f"non-finite training loss {loss_value}")

    tokens_s, tokens_t = int(source["attention_mask"].sum()), int(target["attention_mask"].sum())
    tokens = tokens_s + 2 * tokens_t  # source, target and the MLM pass over the target sentences
    flops = step_flops(source_cpu, target_cpu, n_masked, n_params, layers, hidden, vocab)
    achieved = flops["total"] / median
    return {
        "shape": args.shape,
        "layers": layers,
        "hidden": hidden,
        "params_total": n_total,
        "params_non_embedding": n_params,
        "build_s": build_s,
        "batch_size": args.batch_size,
        "tokens_source": tokens_s,
        "tokens_target": tokens_t,
        "padded_source": list(source["input_ids"].shape),
        "padded_target": list(target["input_ids"].shape),
        "spans_source": n_spans_s,
        "spans_target": n_spans_t,
        "masked_tokens": n_masked,
        "tokens_per_step": tokens,
        "step_ms_median": median * 1e3,
        "step_ms_min": min(times) * 1e3,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "tokens_per_s": tokens / median,
        "flops_per_step": flops["total"],
        "flops_parts": {k: v for k, v in flops.items() if k != "total"},
        "achieved_tflops": achieved / 1e12,
        "loss": loss_value,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }


def bench_knn(device: torch.device, args) -> dict:
    gen = torch.Generator().manual_seed(args.seed)
    bank_z = F.normalize(torch.randn(args.bank, 128, generator=gen), dim=1)
    bank_y = torch.randint(0, len(CLASSES), (args.bank,), generator=gen)
    queries = F.normalize(torch.randn(args.queries, 128, generator=gen), dim=1)
    reference_bank = NeighbourBank(bank_z, bank_y, backend="faiss")
    reference = reference_bank.search(queries, args.k)
    k = reference[1].shape[1]
    results: dict[str, dict] = {}

    def measure(name: str, bank: NeighbourBank, q: torch.Tensor, target: torch.device) -> None:
        first = time.perf_counter()
        bank.search(q[:1], k)  # builds a faiss index (once per epoch in training)
        sync(target)
        build_ms = (time.perf_counter() - first) * 1e3
        med, low = timed(lambda: bank.search(q, k), target, args.repeats)
        result = bank.search(q, k)
        sync(target)
        compared = compare_neighbours(reference, result, args.atol, queries=queries, bank=bank_z)
        results[name] = {"ms_per_search": med * 1e3, "ms_min": low * 1e3, "first_search_ms": build_ms, **compared}

    q_dev = queries.to(device)
    measure(f"torch on {device.type}", NeighbourBank(bank_z.to(device), bank_y.to(device), backend="torch"), q_dev, device)
    if device.type == "cuda" and _faiss_has_gpu():
        measure("faiss on cuda", NeighbourBank(bank_z.to(device), bank_y.to(device), backend="faiss"), q_dev, device)
    if device.type == "cpu":
        measure("faiss on cpu", reference_bank, queries, device)
    return {"bank": args.bank, "queries": args.queries, "k": k, "dim": 128, "faiss_gpu": _faiss_has_gpu(), "backends": results}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="large", help="encoder shape (default: large, XLM-R large)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per source batch and per target batch (default 32)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (AdamW state, CUDA kernels)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps (and timed searches); the median is reported")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak (default: by GPU name; required on other GPUs)")
    parser.add_argument("--bank", type=int, default=100_000, help="kNN bank size (128-d unit vectors)")
    parser.add_argument("--queries", type=int, default=2000, help="kNN queries per search")
    parser.add_argument("--k", type=int, default=300, help="neighbours per query")
    parser.add_argument("--atol", type=float, default=1e-4, help="score tolerance of the kNN comparison")
    parser.add_argument("--skip-knn", action="store_true", help="time the training step only")
    parser.add_argument("--skip-step", action="store_true", help="time the kNN search only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line (last line)")
    return parser


def run(args) -> dict:
    """Both benchmarks; returns the figures (what --json prints)."""
    device = select_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    peak = args.peak_tflops if args.peak_tflops is not None else (default_peak_tflops(name) if device.type == "cuda" else None)
    if device.type == "cuda" and peak is None and not args.skip_step:
        raise SystemExit(f"no default peak for {name!r}: give --peak-tflops (dense bf16 TFLOP/s)")
    figures: dict = {"device": name, "dtype": "bf16 autocast" if use_bf16(device) else "fp32", "peak_tflops": peak}
    if not args.skip_step:
        step = bench_training_step(device, args)
        step["mfu"] = step["achieved_tflops"] / peak if peak else None
        figures["step"] = step
    if not args.skip_knn:
        figures["knn"] = bench_knn(device, args)
    return figures


def report(figures: dict) -> None:
    print(f"\n== device: {figures['device']}, {figures['dtype']}")
    step = figures.get("step")
    if step:
        print(f"model: XLM-R-shaped '{step['shape']}' ({step['layers']} layers, hidden {step['hidden']}), "
              f"{step['params_total'] / 1e6:.1f}M parameters, {step['params_non_embedding'] / 1e6:.1f}M non-embedding; built in {step['build_s']:.1f} s")
        print(f"batch: {step['batch_size']} + {step['batch_size']} sentences, {step['tokens_source']} + {step['tokens_target']} real tokens "
              f"(padded {step['padded_source']} / {step['padded_target']}), {step['spans_source']} / {step['spans_target']} spans, "
              f"{step['masked_tokens']} masked tokens")
        print(f"  step time (median of {step['repeats']}, after {step['warmup']} warm-up)   {step['step_ms_median']:10.2f} ms  (min {step['step_ms_min']:.2f})")
        print(f"  tokens/s (source + target + MLM passes, {step['tokens_per_step']} per step)   {step['tokens_per_s']:10.1f}")
        print(f"  model FLOPs per step (analytic)                  {step['flops_per_step'] / 1e12:10.4f} TFLOP  "
              f"({', '.join(f'{k} {v / 1e12:.4f}' for k, v in step['flops_parts'].items())})")
        print(f"  achieved                                          {step['achieved_tflops']:10.4f} TFLOP/s")
        mfu = step["mfu"]
        peak = figures["peak_tflops"]
        print(f"  MFU                                               {'n/a' if mfu is None else f'{100 * mfu:9.2f}%'}"
              f"{'' if peak is None else f'  (peak {peak:g} TFLOP/s)'}")
        if step["peak_memory_gib"] is not None:
            print(f"  peak CUDA memory                                  {step['peak_memory_gib']:10.2f} GiB")
        print(f"  last loss L_T                                     {step['loss']:10.4f}")
    knn = figures.get("knn")
    if knn:
        print(f"kNN: bank {knn['bank']} x {knn['dim']}, {knn['queries']} queries, k = {knn['k']}; faiss GPU support: {knn['faiss_gpu']}; "
              "compared with faiss IndexFlatIP on the CPU")
        for backend, r in knn["backends"].items():
            print(f"  {backend:<14} {r['ms_per_search']:10.2f} ms per search (min {r['ms_min']:.2f}; first search {r['first_search_ms']:.2f})  "
                  f"agree={r['agree']}  max |score diff| {r['max_score_diff']:.2e}  index overlap {r['index_overlap']:.4f}  "
                  f"rows identical {r['rows_identical']:.4f}  scores consistent {r['scores_consistent']}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print(machine())
    figures = run(args)
    report(figures)
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
