"""Personalize's protocol, per user: user-personalization against popularity-count, paired.

    python -m benchmarks.personalize_protocol [--data-dir DIR] [--seeds 42,7] [--hp JSON] [--record]

The nightly's metrics (``benchmarks.pipeline``) are means over the held-out users (10% of
them: 61 on ml-latest-small), with no idea of their spread. This trains both recipes on the
same Personalize split (the solution config of the ``movielens-up`` solution, seed 42) for
each hold-out seed, computes NDCG@10 per held-out user and reports the mean difference with
a paired bootstrap 95% interval (5,000 resamples of the users).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from benchmarks.common import REPO, record, write_json
from recsys.config import SolutionConfig
from recsys.data.dataset import Dataset
from recsys.data.sources.movielens import load_movielens
from recsys.evaluation.splits import personalize_split
from recsys.inference.topk import recommend_blocks
from recsys.recipes import TrainingOptions, get_recipe
from recsys.schema import DatasetGroup


def ndcg10_per_user(recs: np.ndarray, truth: list[np.ndarray]) -> np.ndarray:
    """Personalize's NDCG@10 (binary relevance, ideal DCG of min(10, |truth|) hits) per user."""
    disc = 1.0 / np.log2(np.arange(2, 12))
    out = np.empty(len(truth))
    for i, (r, t) in enumerate(zip(recs, truth, strict=True)):
        hits = np.isin(r[:10], t) & (r[:10] >= 0)
        out[i] = (hits * disc).sum() / disc[: min(10, len(np.unique(t)))].sum()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(REPO / "data" / "ml-latest-small"))
    p.add_argument("--format", default=None, help="latest | 1m | 100k (default: detect)")
    p.add_argument("--solution", default="movielens-up")
    p.add_argument("--seeds", default="42,7", help="hold-out seeds (42 is the nightly's)")
    p.add_argument("--hp", type=json.loads, default={}, help="hyperparameter overrides (JSON)")
    p.add_argument("--record", action="store_true")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    os.environ.setdefault("RECSYS_PROGRESS", "0")
    raw = load_movielens(args.data_dir, args.format)
    schema = DatasetGroup.load("movielens").schemas["items"]
    data = Dataset(raw.interactions, raw.items, None, None, schema)
    cfg = SolutionConfig.load(args.solution)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        train, hold = personalize_split(data, seed=seed)
        histories = train.user_histories()
        held = [histories[u] for u in hold.users]
        per_user = {}
        for name, hp in (
            ("popularity-count", {}),
            (cfg.recipe, {**cfg.hyperparameters, **args.hp}),
        ):
            rec = get_recipe(name)(**hp).fit(train, TrainingOptions(seed=42))
            recs = np.full((len(hold.users), 25), -1, dtype=np.int64)
            for start, idx, _ in recommend_blocks(rec, hold.users, held, 25):
                recs[start : start + len(idx)] = idx
            per_user[name] = ndcg10_per_user(recs, hold.truth)
        diff = per_user[cfg.recipe] - per_user["popularity-count"]
        rng = np.random.default_rng(0)
        boot = np.array([diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(5000)])
        rows.append(
            {
                "seed": seed,
                "users": len(diff),
                "truth_median": float(np.median([len(t) for t in hold.truth])),
                "popularity": float(per_user["popularity-count"].mean()),
                "model": float(per_user[cfg.recipe].mean()),
                "diff": float(diff.mean()),
                "ci": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
                "wins": int((diff > 0).sum()),
                "losses": int((diff < 0).sum()),
            }
        )
        print(rows[-1], flush=True)
    lines = [
        f"Data: `{args.data_dir}`; solution `{args.solution}` ({cfg.recipe}); paired bootstrap "
        "over held-out users",
        "",
        f"| hold-out seed | users (median truth items) | popularity NDCG@10 | {cfg.recipe} "
        "NDCG@10 | difference [95% CI] | users better / worse |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['users']} ({r['truth_median']:g}) | {r['popularity']:.4f} | "
            f"{r['model']:.4f} | {r['diff']:+.4f} [{r['ci'][0]:+.4f}, {r['ci'][1]:+.4f}] | "
            f"{r['wins']} / {r['losses']} |"
        )
    text = "\n".join(lines)
    print(text)
    write_json(args.json, "personalize_protocol", {"rows": rows})
    if args.record:
        record(
            "Personalize protocol, paired per user", "benchmarks.personalize_protocol", argv, text
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
