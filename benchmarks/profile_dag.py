"""Where a real Airflow run of the nightly DAG spends its time: each task, and Airflow itself.

    python -m benchmarks.profile_dag [--data-dir data/ml-latest-small] [--conf JSON] [--record]

In a fresh AIRFLOW_HOME (SQLite) and a fresh local storage root: replay the data set as daily
drops, ``airflow db migrate`` (one-off, reported apart), then ``airflow dags test
recsys_nightly`` for the day after the last drop. Task durations come from Airflow's own
metadata DB (task_instance); "Airflow overhead" is the run's wall time minus the sum of its
task durations: process start-up, DAG parsing, the run loop, XCom and state writes between tasks.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd

from benchmarks.common import REPO, record, write_json

BIN = Path(sys.executable).parent


def env_for(home: Path, storage: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RECSYS_", "AWS_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        RECSYS_CONFIG_DIR=str(REPO / "configs"),
        RECSYS_STORAGE_URL=str(storage),
        RECSYS_PROGRESS="0",
        PYTHONPATH=str(REPO),
    )
    return env


def timed(cmd: list[str], env: dict[str, str], log: Path) -> float:
    t = time.perf_counter()
    with open(log, "a") as f:
        proc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed (exit {proc.returncode}); see {log}")
    return seconds


def task_durations(db: Path, dag_id: str) -> list[tuple[str, float]]:
    """(task, seconds) in start order; mapped tasks are summed over their map indexes."""
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT task_id, MIN(start_date), SUM(duration), COUNT(*) FROM task_instance "
            "WHERE dag_id = ? AND duration IS NOT NULL GROUP BY task_id ORDER BY MIN(start_date)",
            (dag_id,),
        ).fetchall()
    return [(t if n == 1 else f"{t} (×{n} mapped)", float(d)) for t, _, d, n in rows]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(REPO / "data" / "ml-latest-small"))
    p.add_argument("--conf", type=json.loads, default={}, help="DAG run conf (JSON)")
    p.add_argument("--workdir", help="keep the Airflow home and storage here (default: temp)")
    p.add_argument("--record", action="store_true")
    p.add_argument("--json", help="also write the results here (for the plots)")
    args = p.parse_args(argv)
    from recsys.data.sources.movielens import load_movielens

    work = Path(args.workdir or tempfile.mkdtemp(prefix="recsys-profile-"))
    home, storage, log = work / "airflow", work / "data", work / "run.log"
    home.mkdir(parents=True, exist_ok=True)
    env = env_for(home, storage)
    last = pd.to_datetime(
        load_movielens(args.data_dir).interactions["TIMESTAMP"].max(), unit="s", utc=True
    ).date()
    run_date = str(last + timedelta(days=1))
    replay_s = timed(
        [str(BIN / "recsys"), "replay", "--source", "movielens", "--data-dir", args.data_dir]
        + ["--dataset-group", "movielens", "--until", str(last), "--days", "30"],
        env,
        log,
    )
    migrate_s = timed([str(BIN / "airflow"), "db", "migrate"], env, log)
    cmd = [str(BIN / "airflow"), "dags", "test", "recsys_nightly", run_date]
    wall = timed(cmd + ["-c", json.dumps(args.conf)], env, log)
    tasks = task_durations(home / "airflow.db", "recsys_nightly")
    busy = sum(d for _, d in tasks)
    lines = [
        f"Data: `{args.data_dir}` replayed as daily drops up to {last}; run date {run_date}; "
        f"conf `{json.dumps(args.conf)}`; Airflow on SQLite, `airflow dags test` "
        "(tasks in one process, one after another).",
        "",
        "| step | seconds | share of the run |",
        "|---|---|---|",
    ]
    lines += [f"| task `{t}` | {d:.1f} | {100 * d / wall:.0f}% |" for t, d in tasks]
    lines += [
        f"| Airflow overhead (wall − tasks) | {wall - busy:.1f} | {100 * (wall - busy) / wall:.0f}% |",
        f"| **`airflow dags test` wall time** | **{wall:.1f}** | 100% |",
        f"| (one-off, not in the run) `airflow db migrate` | {migrate_s:.1f} | |",
        f"| (before the run) replay into landing/ | {replay_s:.1f} | |",
    ]
    text = "\n".join(lines)
    print(text)
    write_json(
        args.json,
        "profile_dag",
        {
            "stages": [{"stage": t, "seconds": d, "note": ""} for t, d in tasks]
            + [{"stage": "Airflow overhead", "seconds": wall - busy, "note": ""}],
            "wall_s": wall,
            "migrate_s": migrate_s,
        },
    )
    if args.record:
        record("Nightly DAG under Airflow, task by task", "benchmarks.profile_dag", argv, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
