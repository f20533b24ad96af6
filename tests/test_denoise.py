"""Denoising equations (Eqs. 6-11) on small hand-computed cases, kNN back ends, Denoiser state."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from glode.denoise import (
    DenoiseOptions,
    Denoiser,
    NeighbourBank,
    beta_schedule,
    build_bank,
    class_thresholds,
    denoising_directions,
    ema_prototypes,
    global_scores,
    local_scores,
    merge_directions,
    update_pseudo_labels,
)

O, PER, LOC = 0, 1, 2


def sequential_ema(prototypes, z, labels, alpha):
    """The paper's Eq. 6 span by span (no normalisation in between), then L2 per touched class."""
    phi = prototypes.double().clone()
    touched = set()
    for vector, label in zip(z.double(), labels.tolist()):
        phi[label] = alpha * phi[label] + (1 - alpha) * vector
        touched.add(label)
    for label in touched:
        phi[label] = phi[label] / phi[label].norm()
    return phi.float()


# -- Eq. 6 -------------------------------------------------------------------------------------


def test_ema_equals_sequential_loop_from_zeros_and_after():
    torch.manual_seed(0)
    prototypes = torch.zeros(3, 4)
    z = F.normalize(torch.randn(6, 4), dim=1)
    labels = torch.tensor([O, PER, O, PER, PER, O])  # LOC receives nothing
    first = ema_prototypes(prototypes, z, labels, alpha=0.9)
    assert torch.allclose(first, sequential_ema(prototypes, z, labels, 0.9), atol=1e-6)
    assert torch.equal(first[LOC], torch.zeros(4))  # no span: unchanged (still zero)
    # first update from zeros = direction of the recency-weighted sum ((1-alpha) cancels)
    expected_per = F.normalize(0.81 * z[1] + 0.9 * z[3] + 1.0 * z[4], dim=0)
    assert torch.allclose(first[PER], expected_per, atol=1e-6)

    z2 = F.normalize(torch.randn(5, 4), dim=1)
    labels2 = torch.tensor([LOC, O, LOC, LOC, O])  # PER receives nothing this time
    second = ema_prototypes(first, z2, labels2, alpha=0.9)
    assert torch.allclose(second, sequential_ema(first, z2, labels2, 0.9), atol=1e-6)
    assert torch.equal(second[PER], first[PER])


def test_ema_long_batch_and_padding_ignored():
    torch.manual_seed(1)
    prototypes = F.normalize(torch.randn(3, 8), dim=1)
    z = F.normalize(torch.randn(500, 8), dim=1)
    labels = torch.randint(0, 3, (500,))
    expected = sequential_ema(prototypes, z, labels, 0.99)
    padded = ema_prototypes(prototypes, torch.cat([z, torch.randn(3, 8)]), torch.cat([labels, torch.tensor([-1, -1, -1])]), 0.99)
    assert torch.allclose(padded, expected, atol=1e-6)


# -- global score, Eq. 7 ----------------------------------------------------------------------


def test_global_scores_are_cosines():
    z = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), dim=1)
    prototypes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    scores = global_scores(z, prototypes)
    s = 1 / math.sqrt(2)
    assert torch.allclose(scores, torch.tensor([[1.0, 0.0, 0.0], [s, s, 0.0]]))


def test_thresholds_are_class_means_and_empty_class_is_inf():
    scores = torch.tensor(
        [[0.9, 0.1, 0.0], [0.7, 0.2, 0.1], [0.2, 0.6, 0.2], [0.3, 0.4, 0.3], [0.1, 0.8, 0.1], [0.5, 0.3, 0.2]]
    )
    pseudo = torch.tensor([O, O, PER, PER, PER, O])
    thresholds = class_thresholds(scores, pseudo, 3)
    assert torch.allclose(thresholds[:2], torch.tensor([(0.9 + 0.7 + 0.5) / 3, (0.6 + 0.4 + 0.8) / 3]))
    assert math.isinf(thresholds[LOC].item()) and thresholds[LOC] > 0


# -- Eq. 8 ------------------------------------------------------------------------------------


THRESHOLDS = torch.tensor([0.6, 0.5, 0.4])
SCORES = torch.tensor(
    [
        [0.2, 0.7, 0.5],  # top PER (say wrong), LOC also passes -> both directions
        [0.5, 0.3, 0.1],  # top O under its threshold -> O still a direction
        [0.3, 0.45, 0.35],  # top PER under threshold, nothing passes
        [0.7, 0.2, 0.45],  # top O passes, LOC passes too
    ]
)


def test_directions_multiple():
    d = denoising_directions(SCORES, THRESHOLDS, multiple=True)
    expected = torch.tensor([[0, 1, 1], [1, 0, 0], [0, 0, 0], [1, 0, 1]], dtype=torch.float32)
    assert torch.equal(d, expected)


def test_true_class_below_top_becomes_a_direction():
    # a span pseudo-labelled / most similar to PER, whose true class LOC passes its threshold
    d = denoising_directions(torch.tensor([[0.1, 0.8, 0.45]]), THRESHOLDS)
    assert d[0, LOC] == 1


def test_directions_single_top_only():
    d = denoising_directions(SCORES, THRESHOLDS, multiple=False)
    expected = torch.tensor([[0, 1, 0], [1, 0, 0], [0, 0, 0], [1, 0, 0]], dtype=torch.float32)
    assert torch.equal(d, expected)


def test_inf_threshold_never_passes_but_top_o_does():
    d = denoising_directions(torch.tensor([[0.9, 0.1, 0.8]]), torch.tensor([math.inf, 0.0, math.inf]))
    assert torch.equal(d, torch.tensor([[1.0, 1.0, 0.0]]))


# -- Eq. 9 and the bank -----------------------------------------------------------------------


def test_local_scores_hand_case():
    neighbours = torch.tensor([[0, 0, 1, 2], [2, 2, 2, 2]])
    assert torch.allclose(local_scores(neighbours, 3), torch.tensor([[0.5, 0.25, 0.25], [0.0, 0.0, 1.0]]))


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_local_scores_match_bruteforce_numpy_knn(backend):
    rng = np.random.default_rng(0)
    bank_z = rng.normal(size=(200, 16)).astype(np.float32)
    bank_z /= np.linalg.norm(bank_z, axis=1, keepdims=True)
    bank_y = rng.integers(0, 3, size=200)
    queries = rng.normal(size=(20, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    k = 7
    nearest = np.argsort(-(queries @ bank_z.T), axis=1, kind="stable")[:, :k]
    expected = np.stack([np.bincount(bank_y[row], minlength=3) / k for row in nearest])

    bank = NeighbourBank(torch.from_numpy(bank_z), torch.from_numpy(bank_y), backend=backend)
    got = local_scores(bank.neighbour_labels(torch.from_numpy(queries), k), 3)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)


def test_faiss_and_torch_search_agree_and_k_is_clamped():
    torch.manual_seed(2)
    z = torch.randn(300, 32)
    labels = torch.randint(0, 3, (300,))
    q = F.normalize(torch.randn(50, 32), dim=1)
    by_faiss = NeighbourBank(z, labels, backend="faiss").search(q, 20)
    by_torch = NeighbourBank(z, labels, backend="torch", chunk_elements=300 * 7).search(q, 20)  # 7-query chunks
    assert torch.equal(by_faiss[1], by_torch[1])
    assert torch.allclose(by_faiss[0], by_torch[0], atol=1e-5)
    scores, indices = NeighbourBank(z[:5], labels[:5]).search(q, 300)
    assert scores.shape == indices.shape == (50, 5)
    assert set(indices[0].tolist()) == set(range(5))


def test_build_bank_keeps_entities_and_seeded_o_fraction():
    labels = torch.tensor([0] * 100 + [1, 2, 1])
    z = torch.randn(103, 8)
    bank = build_bank(z, labels, o_fraction=0.1, generator=torch.Generator().manual_seed(5))
    again = build_bank(z, labels, o_fraction=0.1, generator=torch.Generator().manual_seed(5))
    assert len(bank) == 13 and int((bank.labels > 0).sum()) == 3
    assert torch.equal(bank.embeddings, again.embeddings)
    assert torch.allclose(bank.embeddings.norm(dim=1), torch.ones(13))


# -- Eqs. 10, 11 and beta ---------------------------------------------------------------------


def test_merge_hand_computed():
    d_g = torch.tensor([[0.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    d_l = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    # each normalised: [0, .5, .5] + [0, 0, 1] = [0, .5, 1.5] -> /2
    assert torch.allclose(merge_directions(d_g, d_l, True), torch.tensor([[0, 0.25, 0.75], [0, 0, 0], [1, 0, 0]]))
    # literal paper: [0, 1, 2] -> /3
    assert torch.allclose(merge_directions(d_g, d_l, False), torch.tensor([[0, 1 / 3, 2 / 3], [0, 0, 0], [1, 0, 0]]))


def test_update_hand_computed_and_zero_u_row_unchanged():
    p = torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.25, 0.25]])
    u = torch.tensor([[0.0, 0.25, 0.75], [0.0, 0.0, 0.0]])
    new = update_pseudo_labels(p, u, beta=0.8)
    # 0.8*[.1,.6,.3] + 0.2*[0,.25,.75] = [.08, .53, .39] (sums to 1)
    assert torch.allclose(new[0], torch.tensor([0.08, 0.53, 0.39]))
    assert torch.equal(new[1], p[1])


def test_beta_schedule_endpoints():
    assert beta_schedule(0, 5) == pytest.approx(0.95)
    assert beta_schedule(4, 5) == 0.80
    assert beta_schedule(2, 5) == pytest.approx(0.875)
    assert beta_schedule(0, 1) == 0.80
    assert beta_schedule(7, 8, start=0.9, end=0.5) == 0.5


# -- Denoiser ---------------------------------------------------------------------------------


def _toy_epoch(seed: int, n_target: int = 60, n_source: int = 40, dim: int = 8):
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(3, dim, generator=g), dim=1)
    y_t = torch.randint(0, 3, (n_target,), generator=g)
    y_s = torch.randint(0, 3, (n_source,), generator=g)
    z_t = F.normalize(centres[y_t] + 0.5 * torch.randn(n_target, dim, generator=g), dim=1)
    z_s = F.normalize(centres[y_s] + 0.5 * torch.randn(n_source, dim, generator=g), dim=1)
    noisy = torch.where(torch.rand(n_target, generator=g) < 0.3, torch.randint(0, 3, (n_target,), generator=g), y_t)
    p_t = F.normalize(F.one_hot(noisy, 3).float() + 0.1, p=1, dim=1)
    return z_t, p_t, z_s, y_s


def _run_epochs(denoiser: Denoiser, epochs: range, num_epochs: int):
    out = []
    for epoch in epochs:
        z_t, p_t, z_s, y_s = _toy_epoch(epoch)
        denoiser.observe(torch.cat([z_s, z_t]), torch.cat([y_s, p_t.argmax(1)]))
        p_new, info = denoiser.refine(z_t, p_t, epoch, num_epochs)
        denoiser.end_epoch(z_t, p_new.argmax(1), z_s, y_s, generator=torch.Generator().manual_seed(epoch))
        out.append((p_new, info))
    return out


def test_denoiser_timing_and_updates():
    config = DenoiseOptions(k=10, bank_o_fraction=0.5)
    denoiser = Denoiser(3, dim=8, config=config)
    results = _run_epochs(denoiser, range(4), 4)
    assert [info["ready"] for _, info in results] == [False, False, True, True]
    assert results[1][1]["local_scores"] is not None  # neighbour scores from epoch 1
    assert results[2][1]["updated"] > 0 and results[2][1]["beta"] == pytest.approx(0.85)
    assert torch.allclose(results[3][0].sum(1), torch.ones(60))


@pytest.mark.parametrize("use_global,use_local", [(True, False), (False, True), (False, False)])
def test_denoiser_single_level_and_disabled(use_global, use_local):
    config = DenoiseOptions(k=10, use_global=use_global, use_local=use_local)
    denoiser = Denoiser(3, dim=8, config=config)
    results = _run_epochs(denoiser, range(3), 3)
    p_new, info = results[2]
    z_t, p_t, _, _ = _toy_epoch(2)
    if not (use_global or use_local):
        assert torch.equal(p_new, p_t) and info["updated"] == 0
        return
    assert info["ready"] and info["updated"] > 0
    assert (denoiser.bank is None) == (not use_local)


def test_denoiser_state_dict_round_trip(tmp_path):
    config = DenoiseOptions(k=10, bank_o_fraction=0.5)
    first = Denoiser(3, dim=8, config=config)
    _run_epochs(first, range(2), 4)
    torch.save(first.state_dict(), tmp_path / "denoiser.pt")
    resumed = Denoiser(3, dim=8, config=config)
    resumed.load_state_dict(torch.load(tmp_path / "denoiser.pt"))
    for key, value in first.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    a = _run_epochs(first, range(2, 4), 4)
    b = _run_epochs(resumed, range(2, 4), 4)
    for (pa, _), (pb, _) in zip(a, b):
        assert torch.equal(pa, pb)


def test_fresh_denoiser_state_has_only_prototypes():
    state = Denoiser(3, dim=8).state_dict()
    assert set(state) == {"prototypes"}
    other = Denoiser(3, dim=8)
    other.load_state_dict(state)
    assert other.bank is None and other.global_thresholds is None


# -- GPU ---------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_gpu_matches_cpu():
    torch.manual_seed(3)
    prototypes = F.normalize(torch.randn(3, 16), dim=1)
    z = F.normalize(torch.randn(400, 16), dim=1)
    labels = torch.randint(0, 3, (400,))
    cpu = ema_prototypes(prototypes, z, labels)
    gpu = ema_prototypes(prototypes.cuda(), z.cuda(), labels.cuda())
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-6)
    q = F.normalize(torch.randn(50, 16), dim=1)
    cpu_idx = NeighbourBank(z, labels, backend="faiss").search(q, 30)[1]
    gpu_bank = NeighbourBank(z.cuda(), labels.cuda())  # auto: faiss GPU if available, else torch
    scores, gpu_idx = gpu_bank.search(q.cuda(), 30)
    assert scores.is_cuda and torch.equal(cpu_idx, gpu_idx.cpu())


@pytest.mark.gpu
def test_gpu_torch_search_chunks_do_not_change_neighbours():
    """The CUDA default chunk (2^28 similarities: all 700 queries at once) and 64-query chunks give
    identical results, and the neighbours of CPU faiss."""
    torch.manual_seed(4)
    z = F.normalize(torch.randn(20_000, 128), dim=1)
    labels = torch.randint(0, 5, (20_000,))
    q = F.normalize(torch.randn(700, 128), dim=1)
    cpu_scores, cpu_idx = NeighbourBank(z, labels, backend="faiss").search(q, 300)
    default = NeighbourBank(z.cuda(), labels.cuda(), backend="torch")
    assert default.chunk_elements == 1 << 28
    small = NeighbourBank(z.cuda(), labels.cuda(), backend="torch", chunk_elements=20_000 * 64)  # 64-query chunks
    (scores, idx), (small_scores, small_idx) = default.search(q.cuda(), 300), small.search(q.cuda(), 300)
    assert torch.equal(idx, small_idx) and torch.equal(scores, small_scores)
    assert torch.allclose(scores.cpu(), cpu_scores, atol=1e-5)
    # cuBLAS and faiss' BLAS sum in different orders: a near-tie at the 300th place may swap
    same = [len(set(a.tolist()) & set(b.tolist())) for a, b in zip(idx.cpu(), cpu_idx)]
    assert sum(same) / (300 * len(same)) > 0.999


@pytest.mark.gpu
def test_gpu_denoiser_runs_on_device():
    config = DenoiseOptions(k=10)
    denoiser = Denoiser(3, dim=8, config=config, device="cuda")
    for epoch in range(3):
        z_t, p_t, z_s, y_s = (t.cuda() for t in _toy_epoch(epoch))
        denoiser.observe(torch.cat([z_s, z_t]), torch.cat([y_s, p_t.argmax(1)]))
        p_new, info = denoiser.refine(z_t, p_t, epoch, 3)
        denoiser.end_epoch(z_t, p_new.argmax(1), z_s, y_s, generator=torch.Generator().manual_seed(epoch))
    assert p_new.is_cuda and info["ready"] and denoiser.bank.device.type == "cuda"


def test_faiss_import_logs_no_cpu_feature_probing():
    """faiss' loader logs each build it cannot load ("Could not load library with AVX512 support
    due to: ModuleNotFoundError(...)") at INFO; importing it through `_faiss` shows none of that.
    In a fresh interpreter: in this one faiss may be imported already, and would log nothing."""
    import subprocess
    import sys

    def stderr_of(code: str) -> str:
        setup = "import logging; logging.basicConfig(level=logging.INFO, format='%(name)s: %(message)s'); "
        result = subprocess.run([sys.executable, "-c", setup + code], capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        return result.stderr

    assert "faiss.loader: Loading faiss" in stderr_of("import faiss")  # the noise this test looks for exists
    quiet = stderr_of("from glode.denoise import _faiss; faiss = _faiss(); assert faiss.IndexFlatIP(4).d == 4; "
                      "assert logging.getLogger('faiss.loader').level == logging.NOTSET")  # level restored
    assert "faiss.loader" not in quiet and "ModuleNotFoundError" not in quiet, quiet


def test_direction_agreement_hand_computed():
    from glode.denoise import direction_agreement

    d_global = torch.tensor([[1.0, 0, 0], [0, 1, 1], [0, 0, 0], [0, 1, 0], [0, 0, 0]])
    d_local = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0], [0, 0, 0]])
    # row 0: both, same set; row 1: both, different sets; row 2: local only; row 3: global only; row 4: none
    assert direction_agreement(d_global, d_local) == {"global_only": 1, "local_only": 1, "both": 2, "both_agree": 1}
