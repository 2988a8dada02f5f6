"""Evaluate a solution version with Personalize's protocol and store ``metrics.json``.

The recipe is trained again, with the same config and seed, on the split's training part; the
held-out users' input (oldest 90%) is their history, their newest 10% the truth.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recsys.config import SolutionConfig
from recsys.evaluation.metrics import KS, evaluate_recommendations
from recsys.evaluation.splits import personalize_split
from recsys.ids import utcnow_iso
from recsys.inference.topk import recommend_blocks
from recsys.logs import get_logger
from recsys.recipes import TrainingOptions, get_recipe
from recsys.storage import Storage
from recsys.training import load_training_data, read_version, version_prefix

log = get_logger(__name__)


def evaluate_solution_version(
    storage: Storage, solution: str, version_id: str, holdout_seed: int = 42
) -> dict[str, Any]:
    version = read_version(storage, solution, version_id)
    key = f"{version_prefix(solution, version_id)}/metrics.json"
    if storage.exists(key):
        return storage.read_json(key)
    cfg = SolutionConfig.from_dict(version["solution_config"])
    data = load_training_data(storage, cfg, version["snapshot_id"])
    train, holdout = personalize_split(data, seed=holdout_seed)
    recipe = get_recipe(cfg.recipe)(**cfg.hyperparameters)
    recipe.fit(train, TrainingOptions(seed=version["seed"]))
    histories = train.user_histories()
    held_hist = [histories[u] for u in holdout.users]
    depth = max(KS)
    recs = np.full((len(holdout.users), depth), -1, dtype=np.int64)
    for start, idx, _ in recommend_blocks(recipe, holdout.users, held_hist, depth):
        recs[start : start + len(idx)] = idx
    metrics = evaluate_recommendations(recs, holdout.truth, train.n_items)
    result = {
        "version_id": version_id,
        "solution": solution,
        "protocol": "personalize: 10% of users held out, newest 10% of their interactions",
        "holdout_users": int(len(holdout.users)),
        "holdout_seed": holdout_seed,
        "metrics": metrics,
        "evaluated_at": utcnow_iso(),
    }
    storage.write_json(key, result)
    log.info("evaluated solution version", version_id=version_id, **metrics)
    return result
