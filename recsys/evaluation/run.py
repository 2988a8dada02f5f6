"""Champion, challenger and baseline on one holdout: the evidence every deploy decision uses.

The nightly trains once (:func:`recsys.training.train_solution_version`): on the training part
of today's decision holdout (:mod:`recsys.evaluation.holdout`), kept as ``evaluated/``, then
brought to the whole snapshot. This module scores, on that holdout and **as the campaign
serves** (the batch code: exploration, filters, seen items out, cold-start answers):

* the **challenger**: the new version's ``evaluated/`` model, with the campaign file's
  serving config (what would be served if it is deployed);
* the **champion**: the live version or revision, with the serving config it is live with;
* the **baseline**: popularity-count fitted on the same training part, served like the
  challenger.

Each gets Personalize's metric names plus ``hit_rate_at_10``, with n and a 95% bootstrap
interval over users; the paired per-user differences challenger − champion and
challenger − baseline get theirs, on the decision holdout (each user's newest interaction);
Personalize's own protocol (10% of users, their newest 10%) is reported by name beside it. Written once to ``metrics.json`` (``metrics`` keeps the
challenger's values under Personalize's names, as before).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from recsys.campaigns import campaign_key
from recsys.config import CampaignConfig, SolutionConfig
from recsys.data.dataset import Dataset
from recsys.evaluation.holdout import DecisionHoldout, data_cutoff, decision_split
from recsys.evaluation.intervals import bootstrap_counts, intervals, paired
from recsys.evaluation.metrics import METRIC_NAMES, coverage, per_user_metrics
from recsys.ids import utcnow_iso
from recsys.logs import get_logger
from recsys.recipes import TrainingOptions, get_recipe, load_model
from recsys.recipes.base import Recipe
from recsys.storage import Storage
from recsys.training import evaluated_prefix, metrics_key, model_prefix, read_version

log = get_logger(__name__)

#: the per-user metrics reported for every arm (coverage is a catalogue figure: no interval)
ARM_METRICS = (*[m for m in METRIC_NAMES if m != "coverage"], "hit_rate_at_10")
#: what each number means, for reports and the UI
METRIC_MEANINGS = {
    "normalized_discounted_cumulative_gain_at_10": "NDCG@10: how high the held-out items sit in "
    "the top 10 (1 = all at the top, 0 = none in the top 10)",
    "hit_rate_at_10": "HR@10: share of users with at least one held-out item in their top 10",
    "precision_at_10": "precision@10: held-out items among the top 10, divided by 10",
    "mean_reciprocal_rank_at_25": "MRR@25: 1 / rank of the first held-out item in the top 25",
    "coverage": "coverage: distinct items recommended to the held-out users / catalogue",
}
SERVE_BLOCK = 2048


def champion_of(storage: Storage, campaign: CampaignConfig) -> dict[str, Any] | None:
    """The live deployment as the evaluation needs it: which model, served how, and the
    newest TIMESTAMP it trained on (``cutoff``). None when nothing is live."""
    key = campaign_key(campaign.name)
    if not storage.exists(key):
        return None
    live = storage.read_json(key)["live"]
    version = read_version(storage, live["solution"], live["version_id"])
    cutoff = version.get("data_cutoff")
    if cutoff is None:  # versions from before data_cutoff was recorded
        solution = SolutionConfig.from_dict(version["solution_config"])
        cutoff = data_cutoff(_evaluation_data(storage, solution, version["snapshot_id"]))
    return {
        "solution": live["solution"],
        "version_id": live["version_id"],
        "revision": live.get("revision"),
        "recipe": version["recipe"],
        "cutoff": cutoff,
    }


def _evaluation_data(storage: Storage, solution: SolutionConfig, snapshot_id: str) -> Dataset:
    """The snapshot as training saw it (event filters applied), IMPRESSION kept so that
    exploration is served as in the batch."""
    data = Dataset.load(storage, solution.dataset_group, snapshot_id)
    return data.filter_events(solution.event_types, solution.event_value_threshold)


def served_lists(
    recipe: Recipe, data: Dataset, users: np.ndarray, serving: dict[str, Any], logical_date: str
) -> np.ndarray:
    """What the batch would serve ``users`` (dataset indices) with ``data`` as the snapshot:
    (users × num_results) dataset item indices, -1 padded. Runs the batch's own server."""
    from recsys.inference.batch import BatchServer, parse_request

    k = int(serving.get("num_results", 25))
    spec = {"serving": serving, "num_results": k, "logical_date": logical_date, "seed": 0}
    server = BatchServer(recipe, data, spec)
    item_index = pd.Index(data.item_ids.astype(str))
    out = np.full((len(users), k), -1, dtype=np.int64)
    ids = data.user_ids[users].astype(str)
    for b0 in range(0, len(users), SERVE_BLOCK):
        reqs = [parse_request(json.dumps({"userId": u})) for u in ids[b0 : b0 + SERVE_BLOCK]]
        for r, line in enumerate(server.answer(reqs)):
            rec = json.loads(line)
            items = (rec.get("output") or {}).get("recommendedItems") or []
            idx = item_index.get_indexer(pd.Index(items, dtype=object))
            out[b0 + r, : len(idx)] = idx
    return out


def _arm(
    name: str,
    recs: np.ndarray,
    holdout: DecisionHoldout,
    counts: np.ndarray,
    counts_p: np.ndarray,
    n_items: int,
    **about: Any,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    p = holdout.personalize
    everyone = per_user_metrics(recs, holdout.truth)
    per_user = {m: v[~p] for m, v in everyone.items()}
    whole = intervals(per_user, counts)
    part = intervals({m: v[p] for m, v in everyone.items()}, counts_p)
    arm = {
        "role": name,
        **about,
        "n": int((~p).sum()),
        "metrics": {m: whole[m].to_dict() for m in ARM_METRICS},
        "coverage": coverage(recs[~p], n_items),
        "personalize_protocol": {
            "n": int(p.sum()),
            "metrics": {m: part[m].to_dict() for m in ARM_METRICS},
            "coverage": coverage(recs[p], n_items),
        },
    }
    return arm, per_user


def evaluate_solution_version(
    storage: Storage, campaign: CampaignConfig, version_id: str, seed: int = 0
) -> dict[str, Any]:
    """Score challenger, champion and baseline on the version's holdout (once: a rerun reads
    the stored result)."""
    key = metrics_key(campaign.solution, version_id)
    if storage.exists(key):
        return storage.read_json(key)
    version = read_version(storage, campaign.solution, version_id)
    solution = SolutionConfig.from_dict(version["solution_config"])
    data = _evaluation_data(storage, solution, version["snapshot_id"])
    plan = version.get("holdout") or {}
    cutoff = plan.get("cutoff_timestamp")
    train_part, holdout = decision_split(data, cutoff=cutoff, seed=int(plan.get("seed", 42)))
    logical_date = version["logical_date"]
    result: dict[str, Any] = {
        "version_id": version_id,
        "solution": campaign.solution,
        "campaign": campaign.name,
        "protocol": "decision holdout: " + holdout.describe()["definition"],
        "holdout": holdout.describe(),
        "meanings": METRIC_MEANINGS,
        "evaluated_at": utcnow_iso(),
    }
    eprefix = evaluated_prefix(campaign.solution, version_id)
    has_model = storage.exists(f"{eprefix}/model.json")
    if not (~holdout.personalize).any() or not has_model:
        reason = (
            "no eligible held-out users"
            if has_model or not (~holdout.personalize).any()
            else "the version has no evaluated model (not trained by the nightly's one "
            "training, e.g. an HPO trial's model)"
        )
        result.update(metrics=None, arms={}, paired={}, reason=reason)
        if not storage.write_json_once(key, result):  # another run wrote it first: theirs
            return storage.read_json(key)
        log.warning("nothing to evaluate on", version_id=version_id, cutoff=cutoff)
        return result
    counts = bootstrap_counts(int((~holdout.personalize).sum()), seed=seed)
    counts_p = bootstrap_counts(int(holdout.personalize.sum()), seed=seed + 1)
    n_items = data.n_items
    serving = {**campaign.serving_config(), "num_results": campaign.num_results}

    challenger, _ = load_model(storage, eprefix)
    recs = served_lists(challenger, train_part, holdout.users, serving, logical_date)
    arms: dict[str, Any] = {}
    per_user: dict[str, dict[str, np.ndarray]] = {}
    arms["challenger"], per_user["challenger"] = _arm(
        "challenger",
        recs,
        holdout,
        counts,
        counts_p,
        n_items,
        version_id=version_id,
        recipe=version["recipe"],
    )

    baseline = get_recipe("popularity-count")().fit(train_part, TrainingOptions(seed=0))
    recs = served_lists(baseline, train_part, holdout.users, serving, logical_date)
    arms["baseline"], per_user["baseline"] = _arm(
        "baseline", recs, holdout, counts, counts_p, n_items, recipe="popularity-count"
    )

    champ = (plan.get("champion") or None) and _live_champion(storage, campaign, plan)
    if champ is not None:
        model, live_serving = champ
        recs = served_lists(model, train_part, holdout.users, live_serving, logical_date)
        arms["champion"], per_user["champion"] = _arm(
            "champion", recs, holdout, counts, counts_p, n_items, **plan["champion"]
        )

    pairs = {}
    for other in ("champion", "baseline"):
        if other in per_user:
            diff = paired(per_user["challenger"], per_user[other], counts)
            pairs[f"challenger_minus_{other}"] = {m: diff[m].to_dict() for m in ARM_METRICS}
    result.update(
        metrics={
            **{m: arms["challenger"]["metrics"][m]["mean"] for m in ARM_METRICS},
            "coverage": arms["challenger"]["coverage"],
        },
        arms=arms,
        paired=pairs,
    )
    if not storage.write_json_once(key, result):  # written once: another run's stands
        return storage.read_json(key)
    log.info(
        "evaluated challenger, champion and baseline on one holdout",
        version_id=version_id,
        users=len(holdout.users),
        **{
            f"{role}_ndcg10": a["metrics"]["normalized_discounted_cumulative_gain_at_10"]["mean"]
            for role, a in arms.items()
        },
    )
    return result


def _live_champion(
    storage: Storage, campaign: CampaignConfig, plan: dict[str, Any]
) -> tuple[Recipe, dict[str, Any]] | None:
    """The champion recorded when the version trained, loaded with the serving config it is
    deployed with (from the campaign's history)."""
    ref = plan["champion"]
    prefix = model_prefix(ref["solution"], ref["version_id"], ref.get("revision"))
    model, _ = load_model(storage, prefix)
    serving = campaign.serving_config()
    key = campaign_key(campaign.name)
    if storage.exists(key):
        for entry in storage.read_json(key)["history"]:
            if (entry["version_id"], entry.get("revision")) == (
                ref["version_id"],
                ref.get("revision"),
            ):
                serving = {**serving, **(entry.get("config") or {})}
    serving.setdefault("num_results", campaign.num_results)
    return model, serving
