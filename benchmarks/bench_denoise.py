"""Time each denoising step (glode/denoise.py) at the paper's sizes; not a test.

    .venv/bin/python benchmarks/bench_denoise.py            # CPU, or CUDA when available
    .venv/bin/python benchmarks/bench_denoise.py --device cpu --sizes 10000 100000

Random unit vectors stand in for span projections (D = 128, K = 300, 5 classes, ~10% entity
labels); kNN cost does not depend on the values. Each figure is the median (and min) of
`--repeats` runs after one warm-up (`--sweep-repeats` for the bank-size sweep). On CPU the end-of-epoch local-score search over all target
spans is timed on a subset and scaled linearly (flat search is linear in the number of queries),
and the bank-size sweep runs faiss only (`--backends faiss torch` adds the torch matmul path).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import fmt, timed  # noqa: E402  (benchmarks/timing.py: the script's folder is on sys.path)

from glode.denoise import (  # noqa: E402
    DenoiseOptions,
    Denoiser,
    NeighbourBank,
    build_bank,
    class_thresholds,
    denoising_directions,
    ema_prototypes,
    global_scores,
    local_scores,
    merge_directions,
    update_pseudo_labels,
)

NUM_CLASSES = 5  # CoNLL: O PER LOC ORG MISC


def random_spans(n: int, dim: int, device: torch.device, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    z = F.normalize(torch.randn(n, dim, generator=generator), dim=1)
    is_entity = torch.rand(n, generator=generator) < 0.1
    labels = torch.where(is_entity, torch.randint(1, NUM_CLASSES, (n,), generator=generator), torch.zeros(n, dtype=torch.long))
    return z.to(device), labels.to(device)


def machine(device: torch.device) -> str:
    import faiss

    lines = [
        f"python {platform.python_version()}  torch {torch.__version__}  faiss {faiss.__version__} "
        f"(faiss GPUs: {faiss.get_num_gpus() if hasattr(faiss, 'get_num_gpus') else 0}, "
        f"OpenMP threads {faiss.omp_get_max_threads()})",
        f"CPU: {os.cpu_count()} cores visible, torch threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}",
        f"device: {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=300)
    parser.add_argument("--bank-size", type=int, default=100_000)
    parser.add_argument("--batch-spans", type=int, default=32 * 60, help="target spans per step (32 sentences x ~60 spans)")
    parser.add_argument("--epoch-spans", type=int, default=200_000, help="spans seen per epoch (source + target), end of epoch")
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 50_000, 100_000, 200_000, 400_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sweep-repeats", type=int, default=2, help="repeats per bank size in the kNN sweep")
    parser.add_argument("--threshold-search-spans", type=int, default=None,
                        help="target spans actually searched for the end-of-epoch local thresholds (default: all on CUDA, 2k on CPU)")
    parser.add_argument("--backends", nargs="*", default=None, choices=["faiss", "torch"],
                        help="kNN back ends for the bank-size sweep (default: faiss on CPU, faiss and torch on CUDA)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    print(machine(device))
    print(f"D={args.dim} K={args.k} classes={NUM_CLASSES} bank={args.bank_size} batch={args.batch_spans} target spans, "
          f"epoch={args.epoch_spans} spans, repeats={args.repeats}\n")

    # --- one training step ----------------------------------------------------------------
    cfg = DenoiseOptions(k=args.k)
    bank_z, bank_y = random_spans(args.bank_size, args.dim, device, gen)
    bank = NeighbourBank(bank_z, bank_y)
    z_src, y_src = random_spans(args.batch_spans, args.dim, device, gen)
    z_tgt, y_tgt = random_spans(args.batch_spans, args.dim, device, gen)
    p_tgt = F.softmax(torch.randn(args.batch_spans, NUM_CLASSES, generator=gen), dim=1).to(device)
    prototypes = F.normalize(torch.randn(NUM_CLASSES, args.dim, generator=gen), dim=1).to(device)
    z_step, y_step = torch.cat([z_src, z_tgt]), torch.cat([y_src, y_tgt])
    g_scores = global_scores(z_tgt, prototypes)
    thresholds = class_thresholds(g_scores, p_tgt.argmax(1), NUM_CLASSES)
    neighbour_labels = bank.neighbour_labels(z_tgt, args.k)
    l_scores = local_scores(neighbour_labels, NUM_CLASSES)
    l_thresholds = class_thresholds(l_scores, p_tgt.argmax(1), NUM_CLASSES) * 0.9

    def directions_merge_update():
        d_g = denoising_directions(g_scores, thresholds)
        d_l = denoising_directions(l_scores, l_thresholds)
        return update_pseudo_labels(p_tgt, merge_directions(d_g, d_l), 0.9)

    denoiser = Denoiser(NUM_CLASSES, args.dim, cfg, device=device)
    denoiser.prototypes, denoiser.bank = prototypes.clone(), bank
    denoiser.global_thresholds, denoiser.local_thresholds = thresholds, l_thresholds

    print(f"per training step ({args.batch_spans} target spans; EMA over {2 * args.batch_spans} source+target spans), "
          f"kNN backend '{bank._resolved_backend()}':")
    steps = [
        ("EMA prototypes (Eq. 6)", lambda: ema_prototypes(prototypes, z_step, y_step, 0.99)),
        ("global scores", lambda: global_scores(z_tgt, prototypes)),
        (f"kNN search k={args.k}, bank {args.bank_size}", lambda: bank.search(z_tgt, args.k)),
        ("local scores from labels (Eq. 9)", lambda: local_scores(neighbour_labels, NUM_CLASSES)),
        ("directions + merge + update (8, 10, 11)", directions_merge_update),
        ("Denoiser.refine (all of the above)", lambda: denoiser.refine(z_tgt, p_tgt, 3, 5)),
    ]
    for name, fn in steps:
        print(f"  {name:<42} {fmt(timed(fn, device, args.repeats))}")

    # --- end of epoch ---------------------------------------------------------------------
    n_source = args.epoch_spans // 4
    n_target = args.epoch_spans - n_source
    ep_src, ep_src_y = random_spans(n_source, args.dim, device, gen)
    ep_tgt, ep_tgt_y = random_spans(n_target, args.dim, device, gen)
    all_z, all_y = torch.cat([ep_src, ep_tgt]), torch.cat([ep_src_y, ep_tgt_y])
    searched = args.threshold_search_spans or (n_target if device.type == "cuda" else min(n_target, 2_000))
    ep_local = F.softmax(torch.randn(n_target, NUM_CLASSES, generator=gen), dim=1).to(device)
    print(f"\nend of epoch ({n_source} source + {n_target} target spans):")
    rebuild = timed(lambda: build_bank(all_z, all_y, 0.03, torch.Generator().manual_seed(1)), device, args.repeats)
    new_bank = build_bank(all_z, all_y, 0.03, torch.Generator().manual_seed(1))
    print(f"  {'bank rebuild (-> ' + str(len(new_bank)) + ' spans)':<42} {fmt(rebuild)}")
    print(f"  {'global thresholds (scores + Eq. 7)':<42} "
          f"{fmt(timed(lambda: class_thresholds(global_scores(ep_tgt, prototypes), ep_tgt_y, NUM_CLASSES), device, args.repeats))}")
    print(f"  {'local thresholds from given scores (Eq. 7)':<42} "
          f"{fmt(timed(lambda: class_thresholds(ep_local, ep_tgt_y, NUM_CLASSES), device, args.repeats))}")
    search = timed(lambda: bank.neighbour_labels(ep_tgt[:searched], args.k), device, 1)
    scale = n_target / searched
    label = f"local-score search {searched} spans, bank {args.bank_size}"
    print(f"  {label:<42} {fmt(search)}" + (f"  -> x{scale:.0f} = {search[0] * scale:.1f} s for all {n_target}" if scale > 1 else ""))
    if scale == 1:
        both = timed(lambda: denoiser.end_epoch(ep_tgt, ep_tgt_y, ep_src, ep_src_y, torch.Generator().manual_seed(1)), device, 1)
        print(f"  {'Denoiser.end_epoch (all of the above)':<42} {fmt(both)}")

    # --- kNN vs bank size -----------------------------------------------------------------
    print(f"\nkNN search time vs bank size ({args.batch_spans} queries, k={args.k}):")
    backends = args.backends or (["faiss", "torch"] if device.type == "cuda" else ["faiss"])
    print(f"  {'bank':>8}  " + "  ".join(f"{b:>30}" for b in backends))
    big_z, big_y = random_spans(max(args.sizes), args.dim, device, gen)
    for size in args.sizes:
        cells = []
        for backend in backends:
            sized = NeighbourBank(big_z[:size], big_y[:size], backend=backend)
            cells.append(fmt(timed(lambda: sized.search(z_tgt, args.k), device, args.sweep_repeats)))
        print(f"  {size:>8}  " + "  ".join(f"{c:>30}" for c in cells))
    if device.type == "cuda":
        print("  (on CUDA, 'faiss' is GpuIndexFlatIP when faiss has GPU support, else faiss on CPU with copies)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
