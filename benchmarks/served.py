"""Served quality (protocol 4 of ../shared/docs/BENCHMARKS.md): what downstream jobs get.

    python -m benchmarks.served --data-dir data/ml-latest-small [--format 1m] [--hp JSON]
        [--exploration-weight W] [--record]

Leave-one-out: each user's newest interaction (stable time order) is held out; everything
else is landed as the nightly's data. The shipped nightly stages then run in-process (import,
validate, train, deploy, batch for all users) with the shipped campaign and config, and the
batch output's ``recommendedItems`` (as served: exploration, filters, seen items out) are
scored against each user's held-out item: HR@10, NDCG@10 over every user with at least two
interactions. It prints the nightly's wall time per stage too, so one command gives "nightly
wall time and served quality". The deploy is direct (no gate): this measures what a version
serves, whatever the gate would say. Only public stage functions are used, so the same
command measures an older checkout for a before/after.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from datetime import timedelta

import numpy as np
import pandas as pd

from benchmarks.common import REPO, machine, record, write_json
from recsys import pipeline
from recsys.config import CampaignConfig
from recsys.data.sources.movielens import load_movielens
from recsys.data.sources.replay import replay
from recsys.storage import Storage


def leave_last_out(interactions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(everything but each user's newest interaction, the newest ones) for users with >= 2."""
    df = interactions.sort_values("TIMESTAMP", kind="stable").reset_index(drop=True)
    counts = df.groupby("USER_ID", observed=True)["USER_ID"].transform("size")
    last = df.groupby("USER_ID", observed=True).cumcount(ascending=False) == 0
    test = last & (counts >= 2)
    return df[~test], df[test]


def score(lines: list[dict], test: pd.DataFrame, k: int = 10) -> dict[str, float]:
    truth = dict(zip(test["USER_ID"].astype(str), test["ITEM_ID"].astype(str), strict=True))
    hits, gains = [], []
    for rec in lines:
        user = str(rec["input"]["userId"])
        if user not in truth:
            continue
        items = ((rec.get("output") or {}).get("recommendedItems") or [])[:k]
        rank = items.index(truth[user]) if truth[user] in items else -1
        hits.append(rank >= 0)
        gains.append(1.0 / np.log2(rank + 2) if rank >= 0 else 0.0)
    return {
        "users": len(hits),
        "hr_at_10": float(np.mean(hits)),
        "ndcg_at_10": float(np.mean(gains)),
    }


def run(data_dir: str, fmt: str | None, hp: dict, weight: float | None, campaign: str) -> dict:
    root = tempfile.mkdtemp(prefix="recsys-served-")
    storage = Storage(root)
    data = load_movielens(data_dir, fmt)
    train_part, test = leave_last_out(data.interactions)
    landed = dataclasses.replace(data, interactions=train_part)
    last = pd.to_datetime(train_part["TIMESTAMP"].max(), unit="s", utc=True).date()
    date = f"{last + timedelta(days=1)}T00:00:00+00:00"
    replay(storage, landed, "movielens", last)
    camp = CampaignConfig.load(campaign)
    stages: list[tuple[str, float]] = []

    def stage(name, fn):
        t = time.perf_counter()
        out = fn()
        stages.append((name, time.perf_counter() - t))
        return out

    imp = stage("import", lambda: pipeline.import_datasets("movielens", date, storage=storage))
    stage("validate", lambda: pipeline.validate("movielens", imp["snapshot_id"], None, storage))
    overrides = {"hyperparameters": hp} if hp else None
    ver = stage(
        "train",
        lambda: pipeline.train(
            camp.solution, imp["snapshot_id"], date, "FULL", overrides, storage=storage
        ),
    )
    stage(
        "deploy",
        lambda: pipeline.deploy_campaign(campaign, ver["version_id"], date, storage=storage),
    )
    if weight is not None:  # serve with another exploration weight (the campaign file's by default)
        state = storage.read_json(f"campaigns/{campaign}.json")
        state["live"]["config"]["exploration_weight"] = weight
        storage.write_json(f"campaigns/{campaign}.json", state)
    out = stage("batch", lambda: pipeline.batch(campaign, date, storage=storage))
    manifest = storage.read_json(f"batch/{campaign}/{out['batch_id']}/manifest.json")
    lines = []
    for part in manifest["parts"]:
        lines += [json.loads(x) for x in storage.read_text(part["key"]).splitlines()]
    version = storage.read_json(
        f"solutions/{camp.solution}/versions/{ver['version_id']}/version.json"
    )
    return {
        "stages": stages,
        "served": score(lines, test),
        "training": version.get("training") or {"seconds": version.get("training_seconds")},
        "weight": weight if weight is not None else camp.exploration_weight,
    }


def table(res: dict, data_dir: str) -> str:
    s = res["served"]
    t = res["training"]
    total = sum(sec for _, sec in res["stages"])
    out = [
        f"Data: `{data_dir}`; exploration_weight {res['weight']}",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {name} | {sec:.1f} |" for name, sec in res["stages"]],
        f"| **nightly total** | **{total:.1f}** |",
        "",
        "| served (leave-one-out, batch output) | value |",
        "|---|---|",
        f"| users | {s['users']} |",
        f"| HR@10 | {s['hr_at_10']:.4f} |",
        f"| NDCG@10 | {s['ndcg_at_10']:.4f} |",
        f"| training stop | {t.get('stop_reason', '—')} after {t.get('epochs', '—')} epochs "
        f"(still rising: {t.get('validation_still_rising', '—')}) |",
    ]
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO / "data" / "ml-latest-small"))
    parser.add_argument("--format", default=None, help="MovieLens format (latest, 1m, 100k)")
    parser.add_argument("--campaign", default="movielens")
    parser.add_argument("--hp", type=json.loads, default={}, help="hyperparameter overrides")
    parser.add_argument("--exploration-weight", type=float, default=None)
    parser.add_argument("--record", action="store_true", help="append to docs/BENCHMARKS.md")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    os.environ.setdefault("RECSYS_PROGRESS", "0")
    res = run(args.data_dir, args.format, args.hp, args.exploration_weight, args.campaign)
    text = table(res, args.data_dir)
    print(f"{text}\n\nMachine: {machine()}")
    write_json(args.json, "served", res)
    if args.record:
        record("Served quality (protocol 4)", "benchmarks.served", argv, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
