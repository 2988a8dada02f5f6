"""HPO's validation gain over the solution's own hyperparameters, within a stated budget:

    python -m benchmarks.hpo_gain [--trials 12] [--workers 2] [--record]

ml-latest-small is imported into a temporary local storage root; a sims solution with
``perform_hpo`` (three ranges: popularity discount, min co-interactions, neighbours) is tuned
by ``--workers`` processes sharing one SQLite study (``recsys hpo --step trials``), then
finalized. The objective is recsys.hpo's stand-in, ``validation_ndcg_at_10`` (each user's
newest interaction held out): a gain measured on the data HPO chose on, so optimistic.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import REPO, record

SOLUTION = """
dataset_group: movielens
recipe: sims
hyperparameters: {{}}
perform_hpo: true
hpo_config:
  hpo_objective: {{type: Maximize, metric_name: validation_ndcg_at_10}}
  hpo_resource_config: {{max_number_of_training_jobs: {trials}, max_parallel_training_jobs: {workers}}}
  algorithm_hyper_parameter_ranges:
    continuous_hyper_parameter_ranges:
      - {{name: popularity_discount_factor, min_value: 0.0, max_value: 1.0}}
    integer_hyper_parameter_ranges:
      - {{name: min_cointeraction_count, min_value: 1, max_value: 10}}
      - {{name: max_neighbours, min_value: 20, max_value: 400}}
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--record", action="store_true")
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="recsys-hpo-bench-"))
    configs = tmp / "configs"
    shutil.copytree(REPO / "configs", configs)
    (configs / "solutions" / "movielens-sims-hpo.yaml").write_text(
        SOLUTION.format(trials=args.trials, workers=args.workers)
    )
    env = {**os.environ, "RECSYS_CONFIG_DIR": str(configs), "RECSYS_PROGRESS": "0"}
    os.environ.update(RECSYS_CONFIG_DIR=str(configs), RECSYS_PROGRESS="0")
    from recsys import hpo, pipeline
    from recsys.data.sources.movielens import load_movielens
    from recsys.data.sources.replay import replay
    from recsys.storage import Storage

    storage = Storage(str(tmp / "store"))
    replay(storage, load_movielens(REPO / "data" / "ml-latest-small"), "movielens", "2018-09-24")
    date = "2018-09-25T00:00:00+00:00"
    sid = pipeline.import_datasets("movielens", date, storage=storage)["snapshot_id"]
    hpo.plan_hpo(storage, "movielens-sims-hpo", sid, date)
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "recsys", "--storage", str(tmp / "store"), "hpo"]
    cmd += ["--solution", "movielens-sims-hpo", "--snapshot", sid, "--date", date]
    procs = [
        subprocess.Popen(
            [*cmd, "--step", "trials", "--worker", str(w)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=str(REPO),
        )
        for w in range(args.workers)
    ]
    for proc in procs:
        proc.communicate()
        if proc.returncode:
            raise SystemExit(f"a trials worker failed with exit {proc.returncode}")
    seconds = time.perf_counter() - started
    info = hpo.finalize_hpo(storage, "movielens-sims-hpo", sid, date)["hpo"]
    base = next(t for t in info["trials"] if t["number"] == 0)
    lines = [
        f"Study: {len(info['trials'])} trials ({info['failed_trials']} failed) by "
        f"{args.workers} worker processes on one SQLite study, {seconds:.0f} s wall for the "
        "trials.",
        "",
        "| trial | popularity_discount_factor | min_cointeraction_count | max_neighbours | "
        "validation NDCG@10 | worker | s |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in sorted(info["trials"], key=lambda t: -t["value"]):
        pr = t["params"]
        tag = " (baseline: the defaults)" if t["number"] == 0 else ""
        tag += " (best)" if t["number"] == info["best_trial"] else ""
        lines.append(
            f"| {t['number']}{tag} | {pr['popularity_discount_factor']:.3f} | "
            f"{pr['min_cointeraction_count']} | {pr['max_neighbours']} | {t['value']:.4f} | "
            f"{t['worker']} | {t['seconds']} |"
        )
    gain = info["gain_over_baseline"]
    lines += [
        "",
        f"Gain over the defaults: {gain:+.4f} NDCG@10 ({gain / base['value']:+.1%}) "
        f"on the validation interactions HPO chose on (optimistic).",
    ]
    text = "\n".join(lines)
    print(text)
    print(json.dumps({"best": info["best_hyperparameters"]}))
    if args.record:
        record(
            "HPO's validation gain over defaults, sims on ml-latest-small (issue 17)",
            "benchmarks.hpo_gain",
            argv,
            text,
            note="Other jobs were running on the machine (shared, 2 cores).",
        )
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
