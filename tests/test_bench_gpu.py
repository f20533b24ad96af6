"""benchmarks/bench_gpu.py: its kNN comparison, a tiny CPU run, and (on CUDA) the XLM-R-large run.

The plain "torch backend = faiss on a CPU bank" check is tests/test_denoise.py's
test_faiss_and_torch_search_agree_and_k_is_clamped; here the benchmark's own comparison is tested.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from glode.denoise import NeighbourBank

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = PROJECT_ROOT / "benchmarks" / "bench_gpu.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_compare_neighbours_torch_vs_faiss_agree(bench):
    z, q = _unit(500, 32, 0), _unit(40, 32, 1)
    labels = torch.zeros(500, dtype=torch.long)
    reference = NeighbourBank(z, labels, backend="faiss").search(q, 25)
    candidate = NeighbourBank(z, labels, backend="torch", chunk_elements=500 * 7).search(q, 25)
    result = bench.compare_neighbours(reference, candidate)
    assert result["agree"] and result["scores_close"]
    assert result["index_overlap"] == 1.0 and result["rows_identical"] == 1.0
    assert result["max_score_diff"] < 1e-5


def test_compare_neighbours_accepts_ties_and_rejects_wrong_neighbours(bench):
    n, k = 200, 5
    base = _unit(n, 16, 2)
    z = torch.cat([base, base])  # every vector twice: entry j and j + n always tie
    q = _unit(30, 16, 3)
    reference = NeighbourBank(z, torch.zeros(2 * n, dtype=torch.long), backend="faiss").search(q, k)
    scores, indices = reference
    # k odd: the k-th place holds one of a tied pair; the other twin is an equally right answer
    twin = indices.clone()
    twin[:, -1] = (indices[:, -1] + n) % (2 * n)
    assert not bool((twin[:, -1:] == indices[:, :-1]).any())  # the twin really is outside the reference set
    tied = bench.compare_neighbours(reference, (scores, twin))
    assert tied["agree"] and tied["scores_close"]
    assert tied["rows_identical"] == 0.0
    assert tied["index_overlap"] == pytest.approx((k - 1) / k)

    # the k-th neighbour replaced by the bank entry farthest from each query
    far = (q @ z.T).argmin(dim=1)
    wrong = indices.clone()
    wrong[:, -1] = far
    with_true_scores = scores.clone()
    with_true_scores[:, -1] = (q * z[far]).sum(dim=1)
    assert not bench.compare_neighbours(reference, (with_true_scores, wrong))["agree"]
    assert not bench.compare_neighbours(reference, (with_true_scores, wrong))["scores_close"]
    # ... and with the reference's scores copied: the scores match, the index sets do not, which
    # only the true scores of the returned indices reveal
    copied = bench.compare_neighbours(reference, (scores, wrong), queries=q, bank=z)
    assert copied["scores_close"] and copied["scores_consistent"] is False and not copied["agree"]
    assert bench.compare_neighbours(reference, (scores, twin), queries=q, bank=z)["agree"]


def test_flops_formula_by_hand(bench):
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    # 6 N (3 + 2) + 12 L d (9 + 4)
    assert bench.pass_flops(mask, n_params=100, layers=2, hidden=8) == 6 * 100 * 5 + 12 * 2 * 8 * 13
    assert bench.mlm_head_flops(3, hidden=8, vocab=50) == 6 * 3 * (8 * 50 + 64)
    assert bench.default_peak_tflops("NVIDIA H100 80GB HBM3") == 989
    assert bench.default_peak_tflops("NVIDIA H200") == 989
    assert bench.default_peak_tflops("NVIDIA A100-SXM4-80GB") == 312
    assert bench.default_peak_tflops("Tesla T4") is None


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in the output:\n{text}"
    return float(match.group(1))


def test_tiny_cpu_run_prints_positive_figures(bench, capsys):
    assert bench.main(["--shape", "tiny", "--device", "cpu", "--repeats", "1", "--warmup", "1", "--bank", "2000", "--queries", "50", "--json"]) == 0
    out = capsys.readouterr().out
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["dtype"] == "fp32"
    step = figures["step"]
    for key in ("step_ms_median", "tokens_per_s", "flops_per_step", "achieved_tflops", "tokens_per_step", "masked_tokens"):
        assert step[key] > 0, key
    assert step["tokens_per_step"] == step["tokens_source"] + 2 * step["tokens_target"]
    assert step["mfu"] is None and math.isfinite(step["loss"])
    assert _number(r"step time .*?([\d.]+) ms", out) > 0
    assert _number(r"tokens/s .*?\)\s+([\d.]+)", out) > 0
    assert _number(r"achieved\s+([\d.]+) TFLOP/s", out) > 0
    assert re.search(r"MFU\s+n/a", out)
    backends = figures["knn"]["backends"]
    assert set(backends) == {"torch on cpu", "faiss on cpu"}
    for name, result in backends.items():
        assert result["ms_per_search"] > 0, name
        assert result["agree"] and result["scores_consistent"] and result["index_overlap"] == 1.0, name
    assert _number(r"torch on cpu\s+([\d.]+) ms per search", out) > 0


@pytest.mark.gpu
def test_large_shape_on_cuda_has_a_plausible_mfu(bench, capsys):
    if bench.default_peak_tflops(torch.cuda.get_device_name(0)) is None:
        pytest.skip(f"no default bf16 peak for {torch.cuda.get_device_name(0)}")
    assert bench.main(["--shape", "large", "--device", "cuda", "--repeats", "1", "--warmup", "1", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["dtype"] == "bf16 autocast"
    step = figures["step"]
    assert step["params_non_embedding"] == 302_309_376  # XLM-R large's 24 layers
    assert 0 < step["mfu"] < 1
    assert step["tokens_per_s"] > 0 and math.isfinite(step["loss"])
    for name, result in figures["knn"]["backends"].items():
        assert result["ms_per_search"] > 0, name
        assert result["scores_close"] and result["index_overlap"] > 0.99, name


def test_knn_chunks_benchmark_runs_on_the_cpu_and_exact_ways_agree(capsys):
    """benchmarks/bench_knn_chunks.py at toy size: every exact way (chunk sizes, unsorted,
    two-stage) finds the reference's neighbours on both banks."""
    spec = importlib.util.spec_from_file_location("bench_knn_chunks", PROJECT_ROOT / "benchmarks" / "bench_knn_chunks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--device", "cpu", "--bank", "600", "--queries", "30", "--k", "20", "--repeats", "1"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if " queries " in line]
    assert len(lines) == 2 * 10  # two banks x ten ways
    exact = [line for line in lines if "chunk" in line or "two-stage" in line]
    assert len(exact) == 2 * 7 and all("label counts equal 1.0000, index sets equal 1.0000" in line for line in exact)
