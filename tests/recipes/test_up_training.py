"""The training loop of user-personalization (recipes/user_personalization/training.py): the
learning-rate schedule as applied step by step, weight averaging, which weights are kept,
determinism per seed, and the sampled loss equal to the full one when it samples everything."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recsys.errors import ConfigError
from recsys.recipes import TrainingOptions, UserPersonalization
from recsys.recipes.losses import full_softmax_loss
from recsys.recipes.sampling import sampled_softmax_loss
from recsys.recipes.user_personalization import training
from recsys.recipes.user_personalization.training import LearningRate, WeightAverage, drop_items
from tests.recipes.test_user_personalization import SMALL, cycle_data


def test_learning_rate_warms_up_linearly_then_follows_a_cosine_to_its_floor():
    s = LearningRate(warmup_steps=10, decay="cosine", min_ratio=0.1)
    assert s.factor(1, 0.0) == pytest.approx(0.1)  # step 1 of 10
    assert s.factor(5, 0.0) == pytest.approx(0.5)
    assert s.factor(10, 0.0) == pytest.approx(1.0)
    assert s.factor(100, 0.5) == pytest.approx(0.1 + 0.9 * 0.5)
    assert s.factor(100, 1.0) == pytest.approx(0.1)
    assert s.factor(100, 7.0) == pytest.approx(0.1)  # past the horizon: stays at the floor
    flat = LearningRate(warmup_steps=0, decay="none", min_ratio=0.0)
    assert flat.factor(1, 0.0) == flat.factor(10_000, 0.99) == 1.0


def record_adamw_lrs(monkeypatch) -> list[float]:
    """The learning rate of every AdamW step, as the optimiser saw it."""
    seen: list[float] = []
    step = torch.optim.AdamW.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    return seen


def test_training_applies_warm_up_and_cosine_step_by_step(monkeypatch):
    lrs = record_adamw_lrs(monkeypatch)
    hp = {**SMALL, "epochs": 20, "batch_size": 16, "learning_rate": 0.01, "warmup_steps": 4}
    rec = UserPersonalization(**hp, lr_decay="cosine", min_lr_ratio=0.05)
    rec.fit(cycle_data(n_users=80, length=8), TrainingOptions(seed=0))
    steps = len(lrs)
    assert steps >= 80  # 80 users in batches of 16 over 20 epochs
    # warm-up: step k of 4 runs at k/4 of the rate (the cosine has barely started)
    for k in range(1, 5):
        assert lrs[k - 1] == pytest.approx(0.01 * k / 4, rel=0.01)
    after = np.array(lrs[4:])
    assert (np.diff(after) <= 1e-12).all()  # then it only falls
    assert after[-1] < 0.01 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 0.9)))
    assert rec.training_report()["final_learning_rate"] == pytest.approx(lrs[-1])


def test_constant_schedule_keeps_the_rate(monkeypatch):
    lrs = record_adamw_lrs(monkeypatch)
    UserPersonalization(**{**SMALL, "epochs": 2, "learning_rate": 0.003}).fit(
        cycle_data(n_users=80, length=8), TrainingOptions(seed=0)
    )
    assert lrs and set(lrs) == {0.003}


def test_weight_average_is_the_exponential_average_and_swaps_back():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    avg = WeightAverage(model, decay=0.9)
    expected = [p.detach().clone() for p in model.parameters()]
    for t in range(1, 30):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        avg.update()
        d = min(0.9, (1 + t) / (10 + t))
        params = model.parameters()
        expected = [d * e + (1 - d) * p.detach() for e, p in zip(expected, params, strict=True)]
    for s, e in zip(avg.shadow, expected, strict=True):
        torch.testing.assert_close(s, e)
    raw = [p.detach().clone() for p in model.parameters()]
    avg.swap()
    for p, e in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.detach(), e)
    avg.swap()
    for p, r in zip(model.parameters(), raw, strict=True):
        assert torch.equal(p.detach(), r)


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_the_kept_weights_are_the_best_validation_epochs(ema):
    """Checkpoint choice: whatever the last epoch did, the model keeps the weights of the
    epoch with the best validation NDCG (the averaged weights when averaging is on: those are
    what was validated)."""
    data = cycle_data(n_users=120, length=8)
    per_epoch: dict[int, dict[str, np.ndarray]] = {}

    def snapshot(recipe, epoch, elapsed):
        per_epoch[epoch] = {k: v.copy() for k, v in recipe.tensors().items()}

    # a high constant learning rate on a tiny model: the curve rises, then wobbles
    hp = {**SMALL, "epochs": 12, "patience": 12, "learning_rate": 0.05, "ema_decay": ema}
    rec = UserPersonalization(**hp).fit(data, TrainingOptions(seed=5, on_epoch=snapshot))
    report = rec.training_report()
    best = report["best_epoch"]
    assert report["validation_curve"][best - 1] == max(report["validation_curve"])
    kept = rec.tensors()
    for k, v in per_epoch[best].items():
        np.testing.assert_array_equal(kept[k], v, err_msg=k)
    if best != 12:
        assert not np.array_equal(
            kept["model.item_emb.weight"], per_epoch[12]["model.item_emb.weight"]
        )
    # validation agrees: the kept model scores what the curve says
    assert rec.best_validation == pytest.approx(max(report["validation_curve"]))


def test_averaged_weights_differ_from_the_raw_ones():
    data = cycle_data(n_users=80, length=8)
    hp = {**SMALL, "epochs": 3, "validation_users": 0}
    raw = UserPersonalization(**hp).fit(data, TrainingOptions(seed=2))
    avg = UserPersonalization(**hp, ema_decay=0.99).fit(data, TrainingOptions(seed=2))
    a, b = raw.tensors()["model.item_emb.weight"], avg.tensors()["model.item_emb.weight"]
    assert a.shape == b.shape and not np.allclose(a, b)


def test_training_is_deterministic_per_seed_with_schedule_and_average():
    data = cycle_data(n_users=80, length=8)
    hp = {**SMALL, "epochs": 3, "dropout": 0.3, "warmup_steps": 3, "lr_decay": "cosine"}
    hp["ema_decay"] = 0.9

    def weights(seed):
        rec = UserPersonalization(**hp).fit(data, TrainingOptions(seed=seed))
        return rec.tensors(), rec.training_report()["validation_curve"]

    (one, c1), (two, c2), (other, _) = weights(7), weights(7), weights(8)
    assert c1 == c2
    for k in one:
        np.testing.assert_array_equal(one[k], two[k], err_msg=k)
    assert not np.array_equal(one["model.item_emb.weight"], other["model.item_emb.weight"])


@pytest.mark.parametrize(
    "bad, words",
    [
        ({"lr_decay": "linear"}, "lr_decay must be none or cosine, not 'linear'"),
        ({"warmup_steps": -1}, "warmup_steps must be a whole number >= 0"),
        ({"warmup_steps": 2.5}, "warmup_steps must be a whole number >= 0"),
        ({"min_lr_ratio": 1.5}, "min_lr_ratio must be in [0, 1]"),
        ({"ema_decay": 1.0}, "ema_decay must be in [0, 1)"),
        ({"ema_decay": "high"}, "ema_decay must be a number, not 'high'"),
        ({"min_lr_ratio": None}, "min_lr_ratio must be a number, not None"),
        ({"item_drop": 1.0}, "item_drop must be in [0, 1)"),
        ({"item_drop": -0.1}, "item_drop must be in [0, 1)"),
    ],
)
def test_schedule_settings_are_checked_when_the_recipe_is_made(bad, words):
    with pytest.raises(ConfigError, match="user-personalization") as err:
        UserPersonalization(**bad)
    assert words in str(err.value)


def test_sampled_softmax_over_every_item_is_the_full_softmax():
    """Loss equivalence: with every item as a negative and a uniform proposal, the logQ
    correction shifts every logit equally and the accidental hit (the target among the
    negatives) is masked, so the sampled loss and its gradients are the full softmax's."""
    torch.manual_seed(0)
    n, v, d = 9, 13, 5
    h1 = torch.randn(n, d, requires_grad=True)
    z1 = torch.randn(v, d, requires_grad=True)
    b1 = torch.randn(v, requires_grad=True)
    t = torch.randint(0, v, (n,))
    w = torch.rand(n) + 0.5
    h2, z2, b2 = (x.detach().clone().requires_grad_() for x in (h1, z1, b1))
    log_q = torch.full((v,), -math.log(v))
    sampled = sampled_softmax_loss(h1, t, z1, b1, torch.arange(v), log_q, w)
    full = full_softmax_loss(h2, z2, b2, t, w)
    torch.testing.assert_close(sampled, full)
    sampled.backward()
    full.backward()
    for a, b in ((h1, h2), (z1, z2), (b1, b2)):
        torch.testing.assert_close(a.grad, b.grad)


def test_drop_items_keeps_order_weights_and_two_items_at_least():
    rng = np.random.default_rng(0)
    h = np.arange(1000) * 3
    w = np.arange(1000, dtype=np.float32) / 7
    seqs = [(h, w), (np.array([5, 6, 7]), None)]
    assert drop_items(seqs, 0.0, rng) is seqs  # off: nothing drawn, nothing copied
    (h2, w2), (short, none) = drop_items(seqs, 0.3, rng)
    assert 600 < len(h2) < 800  # about 70% kept
    assert (np.diff(h2) > 0).all() and np.isin(h2, h).all()  # a subsequence, in order
    np.testing.assert_allclose(w2, h2 / 3 / 7, rtol=1e-6)  # each weight stays with its item
    assert none is None and len(short) >= 2
    tiny = [(np.array([1, 2]), None)] * 50
    assert all(len(x) == 2 for x, _ in drop_items(tiny, 0.9, rng))


def test_item_drop_trains_on_fresh_gapped_sequences_and_validates_on_whole_ones(monkeypatch):
    seen, validated = [], []
    windows, validate = training.windows, training.validate

    def spy_windows(seqs, *a, **k):
        seen.append([tuple(h) for h, _ in seqs])
        return windows(seqs, *a, **k)

    def spy_validate(recipe, users, histories):
        validated.append([tuple(histories[u]) for u in users])
        return validate(recipe, users, histories)

    monkeypatch.setattr(training, "windows", spy_windows)
    monkeypatch.setattr(training, "validate", spy_validate)
    data = cycle_data(n_users=60, length=12)
    hp = {**SMALL, "epochs": 3, "patience": 3, "validation_users": 10}
    UserPersonalization(**hp, item_drop=0.0).fit(data, TrainingOptions(seed=1))
    whole, whole_val = seen[0], validated[0]
    assert seen == [whole] * 3
    seen.clear(), validated.clear()
    UserPersonalization(**hp, item_drop=0.25).fit(data, TrainingOptions(seed=1))
    assert len(seen) == 3 and seen[0] != seen[1] != seen[2]  # a fresh draw every epoch
    for epoch in seen:
        assert len(epoch) == len(whole)
        assert sum(map(len, epoch)) < 0.9 * sum(map(len, whole))
        for cut, full in zip(epoch, whole, strict=True):
            assert set(cut) <= set(full) and len(cut) >= 2
    assert validated == [whole_val] * 3  # validation histories are never cut
