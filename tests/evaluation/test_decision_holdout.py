"""The decision holdout: every eligible user's newest interaction (Personalize's 10% of users:
their newest 10%), only what the champion has not trained on."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.data.dataset import Dataset
from recsys.evaluation.holdout import data_cutoff, decision_split


def data(n_users=300, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        n = int(rng.integers(1, 40))
        ts = np.sort(rng.integers(0, 1000, n))
        rows += [(f"u{u}", f"i{rng.integers(50)}", int(t)) for t in ts]
    df = pd.DataFrame(rows, columns=["USER_ID", "ITEM_ID", "TIMESTAMP"])
    df["EVENT_TYPE"] = "click"
    return Dataset(df)


def test_every_eligible_user_gives_their_newest_tenth():
    d = data()
    train, holdout = decision_split(d, seed=1)
    counts = np.bincount(d.user_codes, minlength=d.n_users)
    assert list(holdout.users) == list(np.flatnonzero(counts >= 2))
    hist = d.user_histories()
    for u, truth, p in zip(holdout.users, holdout.truth, holdout.personalize, strict=True):
        # Personalize's users: their newest 10%; the decision holdout: the newest one
        k = max(1, int(np.floor(0.1 * counts[u]))) if p else 1
        assert list(truth) == list(hist[u][-k:])
    assert any(len(t) > 1 for t in np.array(holdout.truth, dtype=object)[holdout.personalize])
    # the training part is the rest, with the same vocabularies
    assert len(train.interactions) == len(d.interactions) - sum(len(t) for t in holdout.truth)
    assert list(train.item_ids) == list(d.item_ids) and list(train.user_ids) == list(d.user_ids)
    # Personalize's 10% of users, seeded
    assert holdout.personalize.sum() == round(0.1 * len(holdout.users))
    _, again = decision_split(d, seed=1)
    assert (again.personalize == holdout.personalize).all()


def test_with_a_champion_only_truth_newer_than_its_data_counts():
    d = data()
    cutoff = 700.0
    train, holdout = decision_split(d, cutoff=cutoff, seed=1)
    ts = d.interactions["TIMESTAMP"].to_numpy()
    _, everyone = decision_split(d, seed=1)
    assert 0 < len(holdout.users) < len(everyone.users)
    # each kept user's truth rows are all newer than the cutoff; each dropped user had one older
    newest = {u: t for u, t in zip(everyone.users, everyone.truth, strict=True)}
    kept = set(holdout.users.tolist())
    codes = d.user_codes
    for u, truth in newest.items():
        rows = np.flatnonzero(codes == u)[-len(truth) :]
        assert (u in kept) == bool((ts[rows] > cutoff).all())
    # users whose truth was seen stay whole in the training part
    assert len(train.interactions) == len(d.interactions) - sum(len(t) for t in holdout.truth)
    assert data_cutoff(d) == float(ts.max())
    _, none = decision_split(d, cutoff=float(ts.max()), seed=1)
    assert len(none.users) == 0 and none.personalize.sum() == 0


def test_large_data_is_capped_and_the_rest_stays_in_training(monkeypatch):
    import recsys.evaluation.holdout as holdout_module

    monkeypatch.setattr(holdout_module, "MAX_DECISION_USERS", 40)
    monkeypatch.setattr(holdout_module, "MAX_PERSONALIZE_USERS", 5)
    d = data()
    train, holdout = decision_split(d, seed=1)
    assert (~holdout.personalize).sum() == 40 and holdout.personalize.sum() == 5
    assert len(train.interactions) == len(d.interactions) - sum(len(t) for t in holdout.truth)
