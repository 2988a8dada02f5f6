"""What exploration costs and what it buys, on what the campaign serves.

    python -m benchmarks.exploration --data-dir data/ml-latest-small [--budget-s 90] [--record]

Leave-one-out (BENCHMARKS.md protocol 1, without the 5-core filter, which would drop exactly the
rare items exploration is about): each user's last interaction is held out, user-personalization
(the shipped ``movielens-up`` hyperparameters, a short time budget) trains on the rest, and the
held-out users' requests are answered by :class:`recsys.inference.batch.BatchServer`, the
batch serving code, with the shipped campaign config at each ``exploration_weight``. As of the
last training interaction, so "young" means first seen in the last ``exploration_item_age_cut_off``
days. Printed per weight:

* served NDCG@10 of the held-out item (and its ratio to weight 0);
* cold share: the share of served top-``num_results`` slots holding a cold item (young and
  little data, :mod:`recsys.inference.exploration`);
* rare at #1: the largest share of users for whom one item with <= 2 interactions is #1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import machine, record
from recsys.config import CampaignConfig, SolutionConfig
from recsys.data.dataset import Dataset
from recsys.data.sources.movielens import load_movielens
from recsys.evaluation.loo import leave_one_out
from recsys.inference import topk
from recsys.inference.batch import BatchServer, Request
from recsys.inference.exploration import item_exploration_scores
from recsys.recipes import TrainingOptions, get_recipe
from recsys.schema import DatasetGroup

REPO = Path(__file__).resolve().parent.parent
WEIGHTS = (0.0, 0.1, 0.3, 0.6, 1.0)


def serve(recipe, data: Dataset, campaign: CampaignConfig, weight: float, as_of: str, users):
    """Served item lists (model item indices) for ``users`` (indices into ``data``)."""
    serving = {**campaign.serving_config(), "exploration_weight": weight}
    spec = {
        "serving": serving,
        "num_results": campaign.num_results,
        "logical_date": as_of,
        "seed": 0,
    }
    server = BatchServer(recipe, data, spec)
    ids = data.user_ids[users].astype(str)
    lines = server.answer([Request({"userId": u}, u, None, {}) for u in ids])
    index = pd.Index(np.asarray(recipe.item_ids).astype(str))

    return [index.get_indexer(json.loads(line)["output"]["recommendedItems"]) for line in lines]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(REPO / "data" / "ml-latest-small"))
    p.add_argument("--format", default=None)
    p.add_argument("--campaign", default="movielens")
    p.add_argument("--budget-s", type=float, default=90.0, help="training time budget")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--pool-factors",
        nargs="*",
        type=int,
        default=[topk.EXPLORATION_POOL_FACTOR],
        help="candidate pool sizes to compare (x num_results; the shipped value by default)",
    )
    p.add_argument("--record", action="store_true", help="append the table to BENCHMARKS.md")
    args = p.parse_args(argv)
    os.environ.setdefault("RECSYS_PROGRESS", "0")
    raw = load_movielens(args.data_dir, args.format)
    schema = DatasetGroup.load("movielens").schemas["items"]
    data = Dataset(raw.interactions, raw.items, None, None, schema)
    split = leave_one_out(data)
    train = split.train_val
    campaign = CampaignConfig.load(args.campaign)
    solution = SolutionConfig.load(campaign.solution)
    started = time.perf_counter()
    recipe = get_recipe(solution.recipe)(**solution.hyperparameters).fit(
        train, TrainingOptions(seed=args.seed, time_budget_s=args.budget_s)
    )
    train_s = time.perf_counter() - started
    as_of_ts = float(train.interactions["TIMESTAMP"].max())
    as_of = pd.Timestamp(as_of_ts, unit="s", tz="UTC").isoformat()
    # held-out targets as model item indices; users by their index in the training snapshot
    to_model = pd.Index(np.asarray(recipe.item_ids).astype(str))
    target = to_model.get_indexer(data.item_ids[split.test].astype(str))
    users = pd.Index(train.user_ids.astype(str)).get_indexer(data.user_ids[split.users].astype(str))
    cold_idx, _ = item_exploration_scores(
        recipe.item_ids, train, as_of_ts, campaign.exploration_item_age_cut_off
    )
    is_cold = np.zeros(len(recipe.item_ids), bool)
    is_cold[cold_idx] = True
    counts = np.bincount(
        to_model.get_indexer(train.interactions["ITEM_ID"].astype(str)),
        minlength=len(recipe.item_ids),
    )
    rare = counts <= 2
    rows = []
    for factor in args.pool_factors:
        topk.EXPLORATION_POOL_FACTOR = factor
        base = None
        for w in WEIGHTS:
            lists = serve(recipe, train, campaign, w, as_of, users)
            ndcg = np.array(
                [
                    1.0 / np.log2(2 + int(np.flatnonzero(lst[:10] == t)[0]))
                    if t in lst[:10]
                    else 0.0
                    for lst, t in zip(lists, target, strict=True)
                ]
            ).mean()
            served = np.concatenate(lists)
            firsts = np.array([lst[0] for lst in lists])
            rare_first = firsts[rare[firsts]]
            top_rare = np.bincount(rare_first).max() / len(lists) if len(rare_first) else 0.0
            base = ndcg if base is None else base
            pool = max(factor * campaign.num_results, topk.EXPLORATION_POOL_MIN)
            rows.append((pool, w, ndcg, ndcg / base, is_cold[served].mean(), top_rare))
    header = (
        f"Data: `{args.data_dir}`, leave-one-out without 5-core: {len(users)} test users, "
        f"{len(recipe.item_ids)} items, {int(is_cold.sum())} cold as of the last training "
        f"interaction ({campaign.exploration_item_age_cut_off:g}-day cut-off); "
        f"{solution.recipe} ({solution.name} hyperparameters) trained {train_s:.0f} s "
        f"(budget {args.budget_s:g} s), served top {campaign.num_results} by BatchServer with "
        f"campaign `{args.campaign}`."
    )
    table = [
        "| candidate pool | exploration_weight | served NDCG@10 | vs weight 0 | cold share of "
        f"top {campaign.num_results} | most users with one rare item (<= 2 interactions) at #1 |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for pool, w, ndcg, ratio, cold_share, top_rare in rows:
        table.append(
            f"| {pool} | {w:g} | {ndcg:.4f} | {ratio:.1%} | {cold_share:.2%} | {top_rare:.2%} |"
        )
    text = header + "\n\n" + "\n".join(table)
    print(text)
    print(f"\n{machine()}", file=sys.stderr)
    if args.record:
        record(
            "Exploration: served NDCG@10 and cold share by exploration_weight",
            "benchmarks.exploration",
            argv,
            text,
            "MovieLens-1M is not available on this machine: ml-latest-small only.",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
