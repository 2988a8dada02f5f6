"""Nightly pipeline benchmark: wall time of each stage and the metrics, on a MovieLens directory.

    python -m benchmarks.pipeline --data-dir data/ml-latest-small [--storage DIR] [--hp JSON] [--record]

Replays the data set as landing drops into a fresh storage root (a temp dir unless --storage),
runs import → validate → train → evaluate → deploy → batch in-process (no Airflow: its own
overhead is measured separately by the DAG runs), prints a Markdown table and, with --record,
appends it with the command and machine to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import timedelta

import pandas as pd

from benchmarks.common import REPO, machine, record, write_json  # noqa: F401 (re-exported)
from recsys import pipeline
from recsys.config import CampaignConfig
from recsys.data.sources.movielens import load_movielens
from recsys.data.sources.replay import replay
from recsys.storage import Storage


def run(
    data_dir: str,
    storage_url: str | None,
    campaign: str = "movielens",
    recipe: str | None = None,
    hyperparameters: dict | None = None,
) -> tuple[list[tuple[str, float, str]], dict]:
    root = storage_url or tempfile.mkdtemp(prefix="recsys-bench-")
    storage = Storage(root)
    t0 = time.perf_counter()
    data = load_movielens(data_dir)
    load_s = time.perf_counter() - t0
    last = pd.to_datetime(data.interactions["TIMESTAMP"].max(), unit="s", utc=True).date()
    date = f"{last + timedelta(days=1)}T00:00:00+00:00"
    rows: list[tuple[str, float, str]] = [("load MovieLens files", load_s, "")]

    def stage(name: str, fn, detail=lambda r: ""):
        t = time.perf_counter()
        result = fn()
        rows.append((name, time.perf_counter() - t, detail(result)))
        return result

    stage(
        "replay into landing/",
        lambda: replay(storage, data, "movielens", last),
        lambda r: f"{sum(r['files'].values())} files",
    )
    imp = stage(
        "import (FULL)",
        lambda: pipeline.import_datasets("movielens", date, storage=storage),
        lambda r: f"{r['rows']['interactions']:,} interactions",
    )
    solution = CampaignConfig.load(campaign).solution
    overrides = {"recipe": recipe, "hyperparameters": hyperparameters or {}}
    overrides = {k: v for k, v in overrides.items() if v} or None
    stage("validate", lambda: pipeline.validate("movielens", imp["snapshot_id"], solution, storage))
    ver = stage(
        "train",
        lambda: pipeline.train(
            solution,
            imp["snapshot_id"],
            date,
            "FULL",
            overrides,
            storage=storage,
            campaign=campaign,
        ),
        lambda r: f"{r['recipe']}, stopped by {(r.get('training') or {}).get('stop_reason')}",
    )
    ev = stage(
        "evaluate (challenger, champion, popularity served on one holdout)",
        lambda: pipeline.evaluate(campaign, ver["version_id"], storage),
        lambda r: f"{r['holdout_users']} users",
    )
    gate = stage(
        "deploy (gate)",
        lambda: pipeline.promote_version(campaign, ver["version_id"], date, True, "auto", storage),
        lambda r: ("deployed" if r["deployed"] else "not deployed") + f": {r['reason'][:80]}",
    )
    if not gate["deployed"]:  # measure the batch all the same
        pipeline.deploy_campaign(campaign, ver["version_id"], date, force=True, storage=storage)
    stage(
        "batch (all users, top 25)",
        lambda: pipeline.batch(campaign, date, ver["version_id"], storage=storage),
        lambda r: f"{r['users']:,} users",
    )
    return rows, ev["metrics"]


def table(rows, metrics, data_dir: str) -> str:
    total = sum(s for name, s, _ in rows if not name.startswith("load"))
    out = [f"Data: `{data_dir}`", "", "| stage | seconds | share | notes |", "|---|---|---|---|"]
    for name, s, note in rows:
        share = "" if name.startswith("load") else f"{100 * s / total:.0f}%"
        out.append(f"| {name} | {s:.3f} | {share} | {note} |")
    out.append(f"| **pipeline total** (replay → batch) | **{total:.3f}** | | |")
    out += ["", "| metric (decision holdout, served) | value |", "|---|---|"]
    out += [f"| {k} | {v:.4f} |" for k, v in (metrics or {}).items()]
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO / "data" / "ml-latest-small"))
    parser.add_argument("--storage", help="storage root (default: a new temp dir)")
    parser.add_argument("--recipe", help="override the campaign solution's recipe")
    parser.add_argument(
        "--hp", type=json.loads, default={}, help="hyperparameter overrides (JSON) for the solution"
    )
    parser.add_argument("--record", action="store_true", help="append to docs/BENCHMARKS.md")
    parser.add_argument("--json", help="also write the results here (for the plots)")
    args = parser.parse_args(argv)
    os.environ.setdefault("RECSYS_PROGRESS", "0")
    rows, metrics = run(args.data_dir, args.storage, recipe=args.recipe, hyperparameters=args.hp)
    text = table(rows, metrics, args.data_dir)
    print(text)
    write_json(
        args.json,
        "pipeline",
        {"stages": [{"stage": n, "seconds": s, "note": d} for n, s, d in rows], "metrics": metrics},
    )
    if args.record:
        record("Nightly pipeline", "benchmarks.pipeline", argv, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
