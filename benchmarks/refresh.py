"""What the 2-hourly update's targeted batch refresh costs, against the nightly's full batch.

    python -m benchmarks.refresh --data-dir data/ml-latest-small [--train-minutes 0.5] [--record]

The shipped ``movielens`` campaign (refresh on), in a temporary storage root: the data set is
replayed as daily drops; the nightly runs as of ``--days-before-end`` days before the data's
last day (training capped at ``--train-minutes``; the model's quality does not matter here),
then the update as of ``--update-days`` later adds those days' new items (a revision) and refreshes the
changed users' lines. Printed: the nightly batch's seconds (every user) and the update's steps
(import + validation, the revision, its gate and deploy, the refresh), the users refreshed and
the new items.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd

from benchmarks.common import record

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(REPO / "data" / "ml-latest-small"))
    p.add_argument("--days-before-end", type=int, default=20)
    p.add_argument("--train-minutes", type=float, default=0.5)
    p.add_argument(
        "--update-days", type=int, default=1, help="days of drops the update brings in at once"
    )
    p.add_argument("--record", action="store_true")
    args = p.parse_args(argv)
    os.environ.setdefault("RECSYS_PROGRESS", "0")
    work = Path(tempfile.mkdtemp(prefix="recsys-refresh-"))
    configs = work / "configs"
    shutil.copytree(REPO / "configs", configs)
    sol = configs / "solutions" / "movielens-up.yaml"
    sol.write_text(
        sol.read_text().replace(
            "max_training_minutes: 5", f"max_training_minutes: {args.train_minutes}"
        )
    )
    os.environ["RECSYS_CONFIG_DIR"] = str(configs)
    from recsys import pipeline
    from recsys.data.sources.movielens import load_movielens
    from recsys.data.sources.replay import replay
    from recsys.storage import Storage

    try:
        storage = Storage(str(work / "store"))
        raw = load_movielens(args.data_dir)
        last = pd.to_datetime(raw.interactions["TIMESTAMP"].max(), unit="s", utc=True).date()
        replay(storage, raw, "movielens", last, days=60)
        day = last - timedelta(days=args.days_before_end)
        nightly = f"{day + timedelta(days=1)}T00:00:00+00:00"
        t = time.perf_counter()
        imp = pipeline.import_datasets("movielens", nightly, "FULL", storage)
        val = pipeline.validate("movielens", imp["snapshot_id"], "movielens-up", storage)
        ver = pipeline.train("movielens-up", imp["snapshot_id"], nightly, storage=storage)
        pipeline.evaluate("movielens-up", ver["version_id"], storage)
        pipeline.promote_version(
            "movielens", ver["version_id"], nightly, val["passed"], "force", storage
        )
        t_batch = time.perf_counter()
        full = pipeline.batch("movielens", nightly, storage=storage)
        s_batch = time.perf_counter() - t_batch
        s_nightly = time.perf_counter() - t
        # the update of the next day (its drop: new items and interactions)
        update = f"{day + timedelta(days=1 + args.update_days)}T00:00:00+00:00"
        steps: dict[str, float] = {}
        t = time.perf_counter()
        check = pipeline.check_update("movielens", update, storage)
        if not check["new"]:
            print(f"nothing new for the update as of {update}: {check['reason']}")
            return 1
        imp2 = pipeline.import_datasets("movielens", update, "INCREMENTAL", storage)
        pipeline.validate("movielens", imp2["snapshot_id"], "movielens-up", storage)
        steps["import + validate"] = time.perf_counter() - t
        t = time.perf_counter()
        rev = pipeline.update_items("movielens", imp2["snapshot_id"], update, storage)
        steps["revision (add items)"] = time.perf_counter() - t
        t = time.perf_counter()
        dep = pipeline.deploy_update(
            "movielens", rev["version_id"], rev["revision_id"], update, storage
        )
        steps["gate + deploy"] = time.perf_counter() - t
        t = time.perf_counter()
        out = pipeline.refresh_update_batch("movielens", update, storage)
        steps["targeted refresh"] = time.perf_counter() - t
        latest = storage.read_json("batch/movielens/latest.json")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        f"Data: `{args.data_dir}`, replayed; nightly as of {nightly} (training capped at "
        f"{args.train_minutes:g} min; {s_nightly:.0f} s in all), update as of {update}: "
        f"{rev['new_items']['added']} new items ({rev['new_items']['from_neighbours']} by "
        f"metadata neighbours, method {rev['new_items'].get('method')}), revision deployed: "
        f"{dep['deployed']}.",
        "",
        "| step | seconds | notes |",
        "|---|---:|---|",
        f"| nightly batch, every user | {s_batch:.2f} | {full['users']} users |",
    ]
    for name, secs in steps.items():
        note = ""
        if name == "targeted refresh":
            note = (
                f"refreshed {out.get('users_refreshed', 0)} of {out.get('users_scored', 0)} "
                f"users, {out.get('users_added', 0)} added; latest moved: "
                f"{out.get('latest_moved')} (now {latest['batch_id']})"
                if out["refreshed"]
                else f"skipped: {out['reason']}"
            )
        lines.append(f"| {name} | {secs:.2f} | {note} |")
    text = "\n".join(lines)
    print(text)
    if args.record:
        record(
            "The update's targeted refresh (on by default): cost",
            "benchmarks.refresh",
            argv,
            text,
            "Other engineers' jobs were running (timings are upper bounds).",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
