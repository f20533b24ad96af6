"""The torch kNN back end's ways on a GPU: query-chunk size, sorted or not, two-stage top-k, half
precision; times and agreement with the current setting. Not a test.

    python benchmarks/bench_knn_chunks.py                                   # CUDA, glode's sizes
    python benchmarks/bench_knn_chunks.py --device cpu --bank 5000 --queries 200 300 --k 50 --repeats 2

glode's denoiser searches, every step, the batch's target spans (2,000-4,300 for 32 sentences)
against a bank of up to ~100k span projections (D = 128, unit vectors), k = 300, exact inner
product (Eq. 9 counts the labels of the k neighbours). `NeighbourBank._torch_search` does one
matmul + `torch.topk` per chunk of queries. Variants, each on a random and a clustered bank
(50 centres + noise; queries drawn near bank entries):

  chunk 2^N, sorted / unsorted   one topk per chunk of 2^N / M queries (glode: 2^25 on CPU, 2^28 on CUDA)
  two-stage                      topk of each column block, then topk of the candidates (exact)
  fp16 / bf16 similarities       the matmul and topk in half precision (not exact: ranks move)
  matmul only                    the fp32 similarities alone, the floor of an exact fp32 search

Agreement is with the 2^25-chunk, sorted fp32 search: the share of queries whose neighbour label
counts (what Eq. 9 uses) are equal, and whose neighbour index sets are equal. Times are medians of
--repeats after 3 warm-ups (CUDA events on CUDA, perf_counter on the CPU).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

NUM_CLASSES = 5


def chunked_search(q, bank, k, chunk_elements, sorted_=True, dtype=None):
    rows = max(1, chunk_elements // bank.shape[0])
    bank_t = bank.T if dtype is None else bank.T.to(dtype)
    values, indices = [], []
    for start in range(0, q.shape[0], rows):
        block = q[start : start + rows] if dtype is None else q[start : start + rows].to(dtype)
        top = torch.topk(block @ bank_t, k, dim=1, sorted=sorted_)
        values.append(top.values.float())
        indices.append(top.indices)
    return torch.cat(values), torch.cat(indices)


def two_stage_search(q, bank, k, chunk_elements, columns):
    rows = max(1, chunk_elements // bank.shape[0])
    values, indices = [], []
    for start in range(0, q.shape[0], rows):
        sims = q[start : start + rows] @ bank.T
        cand_v, cand_i = [], []
        for j, block in enumerate(sims.split(columns, dim=1)):
            top = torch.topk(block, min(k, block.shape[1]), dim=1, sorted=False)
            cand_v.append(top.values)
            cand_i.append(top.indices + j * columns)
        cand_v, cand_i = torch.cat(cand_v, 1), torch.cat(cand_i, 1)
        top = torch.topk(cand_v, k, dim=1)
        values.append(top.values)
        indices.append(cand_i.gather(1, top.indices))
    return torch.cat(values), torch.cat(indices)


def median_ms(fn, device, repeats):
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(begin.elapsed_time(end))
        else:
            begin = time.perf_counter()
            fn()
            times.append((time.perf_counter() - begin) * 1000)
    return statistics.median(times)


def banks(m, dim, device, gen):
    random_bank = F.normalize(torch.randn(m, dim, generator=gen), dim=1)
    centres = F.normalize(torch.randn(50, dim, generator=gen), dim=1)
    noise = 1.2 * torch.randn(m, dim, generator=gen) / dim**0.5
    clustered = F.normalize(centres[torch.randint(0, 50, (m,), generator=gen)] + noise, dim=1)
    return {"random": random_bank.to(device), "clustered": clustered.to(device)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bank", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=300)
    parser.add_argument("--queries", type=int, nargs="+", default=[2000, 4236], help="queries per search (a step's target spans)")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"{name}, torch {torch.__version__}; bank {args.bank} x {args.dim}, k = {args.k}; medians of {args.repeats}")
    labels = torch.randint(0, NUM_CLASSES, (args.bank,), generator=gen).to(device)

    def label_counts(indices):
        return F.one_hot(labels[indices], NUM_CLASSES).sum(1)

    big = 1 << 28
    for bank_name, bank in banks(args.bank, args.dim, device, gen).items():
        for n in args.queries:
            if bank_name == "random":
                q = F.normalize(torch.randn(n, args.dim, generator=gen), dim=1).to(device)
            else:
                q = bank[torch.randint(0, args.bank, (n,), generator=gen).to(device)]
            ref_v, ref_i = chunked_search(q, bank, args.k, 1 << 25)
            ref_counts, ref_sets = label_counts(ref_i), ref_i.sort(1).values
            variants = {
                "chunk 2^25, sorted (CPU default)": lambda: chunked_search(q, bank, args.k, 1 << 25),
                "chunk 2^25, unsorted": lambda: chunked_search(q, bank, args.k, 1 << 25, False),
                "chunk 2^27, sorted": lambda: chunked_search(q, bank, args.k, 1 << 27),
                "chunk 2^28, sorted (CUDA default)": lambda: chunked_search(q, bank, args.k, big),
                "chunk 2^28, unsorted": lambda: chunked_search(q, bank, args.k, big, False),
                "two-stage, 8 column blocks": lambda: two_stage_search(q, bank, args.k, big, -(-args.bank // 8)),
                "two-stage, 4 column blocks": lambda: two_stage_search(q, bank, args.k, big, -(-args.bank // 4)),
                "fp16 similarities, unsorted": lambda: chunked_search(q, bank, args.k, big, False, torch.float16),
                "bf16 similarities, unsorted": lambda: chunked_search(q, bank, args.k, big, False, torch.bfloat16),
                "matmul only (fp32)": lambda: [q[s : s + big // args.bank] @ bank.T for s in range(0, n, big // args.bank)],
            }
            for variant, fn in variants.items():
                ms = median_ms(fn, device, args.repeats)
                result = fn()
                agreement = ""
                if isinstance(result, tuple):
                    counts = (label_counts(result[1]) == ref_counts).all(1).float().mean().item()
                    sets = (result[1].sort(1).values == ref_sets).all(1).float().mean().item()
                    agreement = f"label counts equal {counts:.4f}, index sets equal {sets:.4f}"
                print(f"{bank_name:9s} {n:5d} queries  {variant:34s} {ms:8.2f} ms  {agreement}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
