"""Training throughput of user-personalization: seconds per epoch, fp32 against bf16 autocast.

    python -m benchmarks.train_speed [--data-dir DIR] [--epochs 3] [--record]

Same data (5-core leave-one-out training part), same model settings as benchmarks.quality;
the two precisions alternate epoch by epoch (ABAB...) so background load hits both alike.
Reports interactions per second per epoch (training targets / epoch time).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from benchmarks.common import REPO, record, write_json
from benchmarks.quality import UP_DEFAULTS
from recsys.data.dataset import Dataset
from recsys.data.sources.movielens import load_movielens
from recsys.evaluation.loo import five_core, leave_one_out
from recsys.recipes import TrainingOptions, UserPersonalization


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(REPO / "data" / "ml-latest-small"))
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per precision")
    p.add_argument("--record", action="store_true")
    p.add_argument("--json", help="also write the results here (for the plots)")
    args = p.parse_args(argv)
    os.environ.setdefault("RECSYS_PROGRESS", "0")
    raw = load_movielens(args.data_dir)
    data = leave_one_out(five_core(Dataset(raw.interactions, raw.items))).train_val
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(args.epochs):
        for precision in ("fp32", "bf16"):
            hp = {**UP_DEFAULTS, "precision": precision, "epochs": 1, "validation_users": 0}
            t = time.perf_counter()
            UserPersonalization(**hp).fit(data, TrainingOptions(seed=1))
            times[precision].append(time.perf_counter() - t)
    n = len(data.interactions)
    lines = [
        f"Data: `{args.data_dir}` (5-core, leave-one-out training part: {n:,} interactions); "
        f"settings of benchmarks.quality; best and median of {args.epochs} single-epoch fits",
        "",
        "| precision | best s/epoch | median s/epoch | interactions/s (best) |",
        "|---|---|---|---|",
    ]
    for k, v in times.items():
        lines.append(f"| {k} | {min(v):.2f} | {np.median(v):.2f} | {n / min(v):,.0f} |")
    text = "\n".join(lines)
    print(text)
    write_json(args.json, "train_speed", {"interactions": n, "seconds": times})
    if args.record:
        record("Training speed, fp32 vs bf16", "benchmarks.train_speed", argv, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
