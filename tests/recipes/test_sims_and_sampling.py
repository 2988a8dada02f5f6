"""sims (co-occurrence) known answers; the alias sampler and the logQ-corrected sampled softmax."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from recsys.data.dataset import Dataset
from recsys.recipes import Sims, TrainingOptions, load_model
from recsys.recipes.sampling import AliasSampler, sampled_softmax_loss
from recsys.storage import Storage


def data_from(pairs) -> Dataset:
    df = pd.DataFrame(pairs, columns=["USER_ID", "ITEM_ID"])
    df["TIMESTAMP"] = np.arange(len(df))
    df["EVENT_TYPE"] = "click"
    return Dataset(df)


def test_sims_finds_co_occurring_items_and_filters_rare_pairs(tmp_path):
    # a and b always together (5 users); a and c together once; d alone
    pairs = [(f"u{i}", x) for i in range(5) for x in ("a", "b")] + [
        ("u9", "a"),
        ("u9", "c"),
        ("u8", "d"),
    ]
    data = data_from(pairs)
    rec = Sims(min_cointeraction_count=2).fit(data, TrainingOptions())
    idx = {i: k for k, i in enumerate(data.item_ids)}
    nb = rec.neighbours.toarray()
    assert nb[idx["a"], idx["b"]] > 0 and nb[idx["b"], idx["a"]] > 0
    assert nb[idx["a"], idx["c"]] == 0  # 1 co-interaction < min_cointeraction_count
    # a user who saw only "a" gets "b" first
    scores = rec.score(np.array([0]), [np.array([idx["a"]])])[0]
    scores[idx["a"]] = -np.inf
    assert data.item_ids[int(scores.argmax())] == "b"
    storage = Storage(str(tmp_path))
    rec.save(storage, "m")
    loaded, _ = load_model(storage, "m")
    np.testing.assert_array_equal(loaded.neighbours.toarray(), nb)


def test_popularity_discount_lowers_popular_neighbours():
    # x co-occurs 3 times with the very popular p and 3 times with the rare r
    pairs = [(f"u{i}", "x") for i in range(6)]
    pairs += [(f"u{i}", "p") for i in range(3)] + [(f"v{i}", "p") for i in range(30)]
    pairs += [(f"u{i}", "r") for i in range(3, 6)]
    data = data_from(pairs)
    idx = {i: k for k, i in enumerate(data.item_ids)}
    raw = Sims(
        popularity_discount_factor=0.0,
        min_cointeraction_count=1,
        max_user_history_length_percentile=1.0,
    ).fit(data, TrainingOptions())
    disc = Sims(
        popularity_discount_factor=1.0,
        min_cointeraction_count=1,
        max_user_history_length_percentile=1.0,
    ).fit(data, TrainingOptions())
    n_raw, n_disc = raw.neighbours.toarray(), disc.neighbours.toarray()
    assert n_raw[idx["x"], idx["p"]] == n_raw[idx["x"], idx["r"]] == 3
    assert n_disc[idx["x"], idx["r"]] > n_disc[idx["x"], idx["p"]]


def test_alias_sampler_matches_probabilities():
    probs = np.array([0.5, 0.25, 0.125, 0.0625, 0.0625])
    draws = AliasSampler(probs, seed=3).sample(200_000)
    freq = np.bincount(draws, minlength=5) / len(draws)
    np.testing.assert_allclose(freq, probs, atol=0.005)


def test_sampled_softmax_gradient_matches_full_softmax_in_expectation():
    torch.manual_seed(0)
    V, d, N = 30, 8, 16
    items = torch.randn(V, d)
    bias = torch.zeros(V)
    hidden = torch.randn(N, d, requires_grad=True)
    targets = torch.randint(0, V, (N,))
    F.cross_entropy(hidden @ items.T + bias, targets).backward()
    full = hidden.grad.clone()

    q = np.linspace(1, 5, V)
    q = q / q.sum()
    sampler = AliasSampler(q, seed=1)
    log_q = torch.as_tensor(np.log(q), dtype=torch.float32)

    def mean_grad(correct: bool, trials=300, k=200):
        acc = torch.zeros_like(full)
        lq = log_q if correct else torch.full_like(log_q, float(np.log(1.0 / V)))
        for _ in range(trials):
            h = hidden.detach().clone().requires_grad_(True)
            neg = torch.as_tensor(sampler.sample(k))
            sampled_softmax_loss(h, targets, items, bias, neg, lq).backward()
            acc += h.grad
        return acc / trials

    err_corrected = (mean_grad(True) - full).norm() / full.norm()
    err_uncorrected = (mean_grad(False) - full).norm() / full.norm()
    assert err_corrected < 0.1
    assert err_uncorrected > 2 * err_corrected  # the logQ correction is what removes the bias
