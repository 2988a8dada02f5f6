"""Why training stopped (early stop, budget, epochs), the validation curve, and one training
a night: fit on the holdout's training part, then continue on the whole snapshot."""

from __future__ import annotations

import numpy as np

from recsys.config import SolutionConfig
from recsys.recipes import TrainingOptions, UserPersonalization
from recsys.training import evaluated_prefix, train_solution_version
from tests.recipes.test_user_personalization import SMALL, cycle_data


def fit(epochs, **hp):
    rec = UserPersonalization(**{**SMALL, "epochs": epochs, **hp})
    rec.fit(cycle_data(n_users=80, length=8), TrainingOptions(seed=3))
    return rec.training_report()


def test_the_epoch_limit_stops_a_rising_curve():
    report = fit(3)
    assert report["stop_reason"] == "epochs" and report["epochs"] == 3
    assert len(report["validation_curve"]) == 3
    assert report["best_validation_ndcg10"] == max(report["validation_curve"])
    # the cycle is learnt fast: the best epoch is the last or the one before: still rising
    assert report["validation_still_rising"] is (report["best_epoch"] >= 2)


def test_early_stopping_when_validation_stops_improving():
    # learning rate 0: validation never moves, so patience 2 ends it after epoch 3
    report = fit(50, learning_rate=0.0, patience=2)
    assert report["stop_reason"] == "early_stop"
    assert report["epochs"] == 3 and report["best_epoch"] == 1
    assert report["validation_still_rising"] is False


def test_the_budget_stops_training_and_says_so():
    rec = UserPersonalization(**{**SMALL, "epochs": 500})
    rec.fit(cycle_data(n_users=80, length=8), TrainingOptions(seed=3, time_budget_s=0.3))
    report = rec.training_report()
    assert report["stop_reason"] == "budget" and report["epochs"] < 500
    assert report["budget_s"] == 0.3


def test_refit_continues_from_the_best_weights_for_final_epochs():
    data = cycle_data(n_users=80, length=8)
    rec = UserPersonalization(**{**SMALL, "epochs": 4, "final_epochs": 2})
    rec.fit(data, TrainingOptions(seed=3))
    before = {k: v.copy() for k, v in rec.tensors().items()}
    first = rec.training_report()
    rec.refit(data, TrainingOptions(seed=3))
    after = rec.training_report()
    assert after["final_epochs"] == 2
    assert after["stop_reason"] == first["stop_reason"]  # the fit's own stop is kept
    changed = [k for k in before if not np.array_equal(before[k], rec.tensors()[k])]
    assert "model.item_emb.weight" in changed  # it trained on, from those weights


def test_one_training_a_night(local_storage, landed, monkeypatch):
    """The version trains once on the training part (snapshot minus holdout) and is then
    refitted once on the snapshot; the evaluation scores the saved part-model, no retraining."""
    from recsys import pipeline

    fits, refits = [], []
    orig_fit, orig_refit = UserPersonalization.fit, UserPersonalization.refit

    def spy_fit(self, data, options):
        fits.append(len(data.interactions))
        return orig_fit(self, data, options)

    def spy_refit(self, data, options):
        refits.append(len(data.interactions))
        return orig_refit(self, data, options)

    monkeypatch.setattr(UserPersonalization, "fit", spy_fit)
    monkeypatch.setattr(UserPersonalization, "refit", spy_refit)
    date = f"{landed}T00:00:00+00:00"
    imp = pipeline.import_datasets("synthetic", date, storage=local_storage)
    sol = SolutionConfig.load(
        "synthetic-popularity",
        {
            "recipe": "user-personalization",
            "hyperparameters": {**SMALL, "epochs": 2, "final_epochs": 1},
        },
    )
    version = train_solution_version(local_storage, sol, imp["snapshot_id"], date)
    assert len(fits) == 1 and len(refits) == 1
    holdout = version["holdout"]
    assert fits[0] == refits[0] - holdout["truth_interactions"]  # the part, then the whole
    assert version["training"]["stop_reason"] == "epochs"
    assert version["final_training"]["final_epochs"] == 1
    assert local_storage.exists(f"{evaluated_prefix(sol.name, version['version_id'])}/model.json")
    from recsys.config import CampaignConfig
    from recsys.evaluation.run import evaluate_solution_version

    evaluation = evaluate_solution_version(
        local_storage, CampaignConfig.load("synthetic"), version["version_id"]
    )
    assert len(fits) == 1 and len(refits) == 1  # scoring trained nothing more
    assert evaluation["arms"]["challenger"]["n"] == holdout["users"]


def test_by_default_the_served_model_is_the_evaluated_one():
    data = cycle_data(n_users=80, length=8)
    rec = UserPersonalization(**{**SMALL, "epochs": 3})
    rec.fit(data, TrainingOptions(seed=3))
    before = {k: v.copy() for k, v in rec.tensors().items()}
    rec.refit(data, TrainingOptions(seed=3))
    assert rec.training_report()["final_epochs"] == 0
    assert all(np.array_equal(before[k], v) for k, v in rec.tensors().items())
