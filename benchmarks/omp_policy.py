"""OpenMP wait policy: training speed with spinning (ACTIVE) against sleeping (PASSIVE) workers,
on idle cores and with another process competing for one core.

    python -m benchmarks.omp_policy [--steps 40] [--record]

Each cell is a fresh process (the policy is read when torch loads libgomp) that trains
user-personalization on the ml-latest-small leave-one-out training part for ``--steps``
batches and reports seconds per batch. "busy" starts a pure-Python busy loop on the side for
the cell's duration: the situation of an Airflow worker running two tasks, or a training task
beside the scheduler. recsys sets PASSIVE unless the environment says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from benchmarks.common import REPO, record, write_json

CHILD = """
import os, sys, time, json
os.environ["RECSYS_PROGRESS"] = "0"
from benchmarks.quality import UP_DEFAULTS
from recsys.data.dataset import Dataset
from recsys.data.sources.movielens import load_movielens
from recsys.evaluation.loo import five_core, leave_one_out
from recsys.recipes import TrainingOptions, UserPersonalization
import recsys.recipes.user_personalization.training as training
import torch

steps = int(sys.argv[1])
from benchmarks.common import REPO
raw = load_movielens(str(REPO / "data" / "ml-latest-small"))
data = leave_one_out(five_core(Dataset(raw.interactions, raw.items))).train_val
rec = UserPersonalization(**{**UP_DEFAULTS, "epochs": 1, "validation_users": 0})
seen = {"n": 0, "t": None}

class Enough(Exception):
    pass

orig = training.batch_tensors

def counted(windows, device):
    if seen["n"] == 5:
        seen["t"] = time.perf_counter()  # after 5 warm-up batches
    if seen["n"] == steps + 5:
        raise Enough
    seen["n"] += 1
    return orig(windows, device)

training.batch_tensors = counted
try:
    rec.fit(data, TrainingOptions(seed=0))
except Enough:
    pass
print(json.dumps({"s_per_batch": (time.perf_counter() - seen["t"]) / steps,
                  "policy": os.environ.get("OMP_WAIT_POLICY"), "threads": torch.get_num_threads()}))
"""

BUSY = "import time\nend = time.time() + 3600\nwhile time.time() < end: pass\n"


def cell(policy: str, busy: bool, steps: int) -> dict:
    env = {**os.environ, "OMP_WAIT_POLICY": policy, "PYTHONPATH": str(REPO)}
    side = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
    try:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(steps)],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            check=True,
        ).stdout
    finally:
        if side is not None:
            side.kill()
            side.wait()
    return {"policy": policy, "busy": busy, **json.loads(out.strip().splitlines()[-1])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40, help="timed batches per cell")
    p.add_argument("--record", action="store_true")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    load_before = os.getloadavg()[0]
    rows = []
    for busy in (False, True):
        for policy in ("ACTIVE", "PASSIVE"):
            rows.append(cell(policy, busy, args.steps))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    lines = [
        f"user-personalization on ml-latest-small (settings of benchmarks.quality, batch 32), "
        f"{args.steps} timed batches per cell after 5 warm-up ones, torch threads = "
        f"{rows[0]['threads']}; load average {load_before:.1f} before the run.",
        "",
        "| other load | OMP_WAIT_POLICY | ms per batch | vs PASSIVE |",
        "|---|---|---|---|",
    ]
    for r in rows:
        ref = next(x for x in rows if x["busy"] == r["busy"] and x["policy"] == "PASSIVE")
        lines.append(
            f"| {'one busy process' if r['busy'] else 'none'} | {r['policy']} | "
            f"{1000 * r['s_per_batch']:.1f} | {r['s_per_batch'] / ref['s_per_batch']:.2f}× |"
        )
    text = "\n".join(lines)
    print(text)
    write_json(args.json, "omp_policy", {"rows": rows, "at": time.time()})
    if args.record:
        record("OpenMP wait policy", "benchmarks.omp_policy", argv, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
