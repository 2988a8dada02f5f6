"""Training user-personalization as the catalogue grows: time, throughput and memory.

    python -m benchmarks.train_scale [--sizes 10k,100k,1M] [--minutes 3] [--hp JSON] [--record]

For each size N: a synthetic catalogue of N items with metadata (genres, price, title), N
users and 10·N interactions (``recsys.data.sources.synthetic``), trained with the recipe's
own switch between full softmax (N ≤ ``full_softmax_max_items``) and sampled softmax with
logQ correction above it, under a time budget. Each size runs in its own process so its
peak memory (VmHWM) is its own. Reports training targets per second, the time a full
epoch takes at that rate, validation NDCG@10 reached in the budget, and peak memory.
``--modes full,sampled`` forces both losses at every size (to place the switch). A size may
also be a shape ``USERSxITEMSxINTERACTIONS``: ``6040x3706x1000209`` is MovieLens-1M's, for the
issue's speed target (a 1M-interaction data set), e.g. with the MovieLens solution's settings
``--hp '{"bptt": 200, "batch_size": 32, "use_metadata": false}'``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from benchmarks.common import REPO, peak_rss_mib, record, write_json

HP = {
    "hidden_dimension": 64,
    "bptt": 50,
    "recency_mask": False,
    "num_layers": 2,
    "dropout": 0.2,
    "batch_size": 128,
    "learning_rate": 2e-3,
    "use_metadata": True,
    "max_user_history_length_percentile": 1.0,
    "validation_users": 2000,
    "num_negatives": 2048,
}


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("km")) * scale)


def rss_gib() -> float:
    return peak_rss_mib() / 1024


def shape(text: str) -> tuple[int, int, int]:
    """(users, items, interactions) from ``N`` (N, N, 10·N) or ``UxIxN``."""
    if "x" in text:
        users, items, interactions = (parse_size(x) for x in text.split("x"))
        return users, items, interactions
    n = parse_size(text)
    return n, n, 10 * n


def one(spec: str, minutes: float, mode: str, overrides: dict) -> dict:
    """Generate, prepare and train one size in this process; returns the measurements."""

    from recsys.data.dataset import Dataset
    from recsys.data.sources.synthetic import generate
    from recsys.recipes import TrainingOptions, UserPersonalization
    from recsys.schema import DatasetGroup

    n_users, n_items, n_interactions = shape(spec)
    out: dict = {"items": n_items, "users": n_users, "mode": mode, "hp": overrides}
    t = time.perf_counter()
    raw = generate(
        n_users=n_users,
        n_items=n_items,
        n_interactions=n_interactions,
        impressions=False,
        seed=0,
    )
    out["generate_s"] = time.perf_counter() - t
    t = time.perf_counter()
    schema = DatasetGroup.load("synthetic").schemas["items"]
    data = Dataset(raw.interactions, raw.items, item_schema=schema)
    del raw
    hist = data.user_histories()
    out["interactions"] = len(data.interactions)
    out["targets_per_epoch"] = int(sum(max(len(h) - 1, 0) for h in hist))
    del hist
    out["prepare_s"] = time.perf_counter() - t
    out["rss_data_gib"] = rss_gib()
    limit = {"auto": None, "full": 10**12, "sampled": 0}[mode]
    hp = {**HP, **overrides, "max_training_minutes": minutes, "epochs": 1000}
    if limit is not None:
        hp["full_softmax_max_items"] = limit
    rec = UserPersonalization(**hp)
    t = time.perf_counter()
    rec.fit(data, TrainingOptions(seed=0))
    out["fit_s"] = time.perf_counter() - t
    out["validation_s"] = rec.validation_seconds
    out["step_s"] = rec.step_seconds
    out["sampled"] = bool(rec.model.n_items > int(rec.hyperparameters["full_softmax_max_items"]))
    out["targets_trained"] = int(rec.tokens_trained)
    out["epochs"] = rec.epochs_trained
    out["val_ndcg10"] = rec.best_validation
    out["rss_peak_gib"] = rss_gib()
    out["params_mib"] = sum(p.numel() for p in rec.model.parameters()) * 4 / 2**20
    out["parameters"] = int(sum(p.numel() for p in rec.model.parameters()))
    return out


def table(rows: list[dict], minutes: float, overrides: dict) -> str:
    lines = [
        f"Synthetic data (`recsys.data.sources.synthetic`); settings {json.dumps(HP)}, "
        f"overridden by {json.dumps(overrides)}; budget {minutes:g} min of training per size "
        "(validation included); one process per size.",
        "",
        "| users × items, interactions | loss | targets/s | epoch (s, at that rate) | epochs run | val NDCG@10 | "
        "set-up / training / validation (s) | generate + prepare (s) | parameters | "
        "peak RSS (GiB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rate = r["targets_trained"] / max(r["step_s"], 1e-9)
        loss = "sampled (logQ)" if r["sampled"] else "full softmax"
        lines.append(
            f"| {r.get('users', r['items']):,} × {r['items']:,}, {r['interactions']:,} | {loss} | {rate:,.0f} | {r['targets_per_epoch'] / rate:,.0f} | "
            f"{r['epochs']} | {r['val_ndcg10']:.4f} | "
            f"{r['fit_s'] - r['step_s'] - r['validation_s']:.0f} / {r['step_s']:.0f} / "
            f"{r['validation_s']:.0f} | "
            f"{r['generate_s']:.0f} + {r['prepare_s']:.0f} | {r['parameters'] / 1e6:.1f}M | "
            f"{r['rss_peak_gib']:.2f} (data {r['rss_data_gib']:.2f}) |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10k,100k,1M", help="N or UxIxN, comma-separated")
    p.add_argument("--hp", type=json.loads, default={}, help="recipe overrides (JSON)")
    p.add_argument("--minutes", type=float, default=3.0, help="training budget per size")
    p.add_argument("--modes", default="auto", help="auto, or a list of full,sampled")
    p.add_argument("--record", action="store_true", help="append the table to docs/BENCHMARKS.md")
    p.add_argument("--json", help="also write the results here (for the plots)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    os.environ.setdefault("RECSYS_PROGRESS", "0")
    if args.one:
        print(json.dumps(one(args.one, args.minutes, args.modes, args.hp)))
        return 0
    rows = []
    for size in args.sizes.split(","):
        for mode in args.modes.split(","):
            cmd = [sys.executable, "-m", "benchmarks.train_scale", "--one", size]
            cmd += ["--minutes", str(args.minutes), "--modes", mode, "--hp", json.dumps(args.hp)]
            # the child's epoch logs go straight to stderr; its last stdout line is the result
            res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO)
            if res.returncode != 0:
                return res.returncode
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), file=sys.stderr)
    text = table(rows, args.minutes, args.hp)
    print(text)
    write_json(args.json, "train_scale", {"minutes": args.minutes, "rows": rows})
    if args.record:
        record("Training at scale", "benchmarks.train_scale", argv, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
