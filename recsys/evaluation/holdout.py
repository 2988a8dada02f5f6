"""The nightly's one holdout: what every deploy decision is measured on.

Personalize holds out 10% of users (61 on ml-latest-small): too few to tell
user-personalization from popularity-count apart (docs/BENCHMARKS.md). So every eligible user
(at least 2 interactions) is held out, in one of two groups drawn at random (seeded):

* **Personalize's protocol**: 10% of them, whose newest 10% of interactions (at least one) are
  the truth, exactly as Personalize defines it; reported under that name;
* **the decision holdout**: the other 90%, whose newest interaction is the truth (next-item
  prediction, the research protocol's truth): nine times Personalize's users, and the truth a
  sequential model is asked for. The gate decides on it.

Both groups' truth is left out of the one training part. On large data the groups are
capped (``MAX_DECISION_USERS``, ``MAX_PERSONALIZE_USERS``; a seeded sample), so the evaluation
stays a few seconds and the intervals' memory bounded. When a live version (the champion) exists,
only truth the champion has **not** trained on counts: every truth interaction must be newer
than the champion's training data (``cutoff``, its newest TIMESTAMP). Otherwise the champion
would be scored on interactions it learned as targets, and would look better than any
challenger trained without them. So on a nightly the holdout is "what users did since the live
version was trained", which the challenger has not seen either: one holdout, three models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.data.dataset import Dataset

TRUTH_FRACTION = 0.1
PERSONALIZE_FRACTION = 0.1
#: At most this many decision users (a seeded sample of the eligible): 20,000 users decide
#: differences of a fraction of a percent, and the evaluation serves them three times; the
#: rest keep their newest interaction in the training part.
MAX_DECISION_USERS = 20_000
#: At most this many of Personalize's users (10% of the eligible up to this).
MAX_PERSONALIZE_USERS = 5_000


@dataclass
class DecisionHoldout:
    """Held-out users (dataset user indices), their truth (dataset item indices)."""

    users: np.ndarray
    truth: list[np.ndarray]
    #: True for the users of Personalize's protocol (a seeded 10% of ``users``; truth: newest
    #: 10%); the others are the decision holdout (truth: the newest interaction)
    personalize: np.ndarray
    #: the champion's newest training TIMESTAMP the truth had to be newer than (None: no
    #: champion)
    cutoff: float | None
    seed: int

    def describe(self) -> dict:
        decision = ~self.personalize
        return {
            "definition": "every user with >= 2 interactions: 90% have their newest interaction "
            "held out (the decision holdout), 10% their newest 10% (Personalize's protocol)"
            + ("; only truth newer than the live version's training data" if self.cutoff else ""),
            "users": int(decision.sum()),
            "truth_interactions": int(sum(len(t) for t in self.truth)),
            "personalize_users": int(self.personalize.sum()),
            "cutoff_timestamp": self.cutoff,
            "seed": self.seed,
        }


def data_cutoff(data: Dataset) -> float | None:
    """The newest TIMESTAMP a model trained on ``data`` has seen (None: no interactions)."""
    if len(data.interactions) == 0:
        return None
    return float(data.interactions["TIMESTAMP"].max())


def decision_split(
    data: Dataset,
    cutoff: float | None = None,
    seed: int = 42,
    truth_fraction: float = TRUTH_FRACTION,
    personalize_fraction: float = PERSONALIZE_FRACTION,
) -> tuple[Dataset, DecisionHoldout]:
    """``(training part, holdout)``: the training part is ``data`` without the truth rows
    (same catalogue and users, so a model trained on it has the full vocabularies)."""
    user_codes = data.user_codes
    counts = np.bincount(user_codes, minlength=data.n_users)
    # rank of each interaction within its user's (time-sorted, stable) history
    order = np.argsort(user_codes, kind="stable")
    sorted_users = user_codes[order]
    starts = np.searchsorted(sorted_users, np.arange(data.n_users))
    rank = np.empty(len(user_codes), dtype=np.int64)
    rank[order] = np.arange(len(user_codes)) - starts[sorted_users]
    eligible_all = np.flatnonzero(counts >= 2)
    rng = np.random.default_rng(seed)
    n_p = max(1, int(round(personalize_fraction * len(eligible_all)))) if len(eligible_all) else 0
    n_p = min(n_p, MAX_PERSONALIZE_USERS)
    drawn = rng.permutation(eligible_all)
    in_p = np.zeros(data.n_users, dtype=bool)
    in_p[drawn[:n_p]] = True
    capped = np.zeros(data.n_users, dtype=bool)  # eligible users in neither group
    capped[drawn[n_p + MAX_DECISION_USERS :]] = True
    n_truth = np.where(in_p, np.maximum(1, np.floor(truth_fraction * counts).astype(np.int64)), 1)
    eligible = (counts >= 2) & ~capped
    is_truth_row = rank >= counts[user_codes] - n_truth[user_codes]
    if cutoff is not None:
        ts = data.interactions["TIMESTAMP"].to_numpy(dtype=np.float64)
        # a user counts only if every truth row is newer than the champion's data
        seen = np.zeros(data.n_users, dtype=bool)
        np.logical_or.at(seen, user_codes[is_truth_row], ts[is_truth_row] <= cutoff)
        eligible &= ~seen
    held = np.flatnonzero(eligible)
    test_mask = eligible[user_codes] & is_truth_row
    rows = np.flatnonzero(test_mask)
    rows = rows[np.argsort(user_codes[rows], kind="stable")]
    bounds = np.searchsorted(user_codes[rows], np.append(held, data.n_users)) if len(held) else []
    item_codes = data.item_codes
    truth = [item_codes[rows[bounds[i] : bounds[i + 1]]] for i in range(len(held))]
    holdout = DecisionHoldout(held, truth, in_p[held], cutoff, seed)
    return data.subset(~test_mask), holdout
