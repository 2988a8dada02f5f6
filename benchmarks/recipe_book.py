"""The recipe book against popularity on ml-latest-small, each with the metric Personalize
reports for it (a few minutes of CPU):

    python -m benchmarks.recipe_book [--data-dir data/ml-latest-small] [--up-seconds 60] [--record]

* **similar-items** (related items): each user's second-to-last item is the query, the last
  is the truth; everything but the last trains. Personalize's metrics on the top 25 related
  items (query excluded): NDCG@10/25, precision@10, MRR@25, coverage. Also the *cold query*
  case: 20% of the query items lose every training interaction (their metadata stays), and
  only users whose query is one of them are scored. Lists shorter than 25 are filled with
  popular items (the same fallback for every recipe).
* **trending-now**: rolling time splits, every 30 days over the last two years: train on
  everything up to the cut, the truth is what each user rated in the next 30 days; top 25
  without the user's seen items; Personalize's metrics pooled over (cut, user).
* **item-affinity** (segments): each user's newest 20% of interactions are held out; for
  each of the 500 items with the most held-out users, the segment is the top 1% of users
  (users who already had the item left out). Personalize's user-segmentation metrics, as
  defined here: ``hits_at_1_percent`` = held-out users of the item inside its segment,
  averaged over items; ``recall_at_1_percent`` = that count / the item's held-out users.
  popularity-count gives every user the same score (its segment is the first users in
  snapshot order, i.e. arbitrary); "most active users" ranks users by training interactions.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np

from benchmarks.common import REPO, record
from recsys.config import SolutionConfig
from recsys.data.dataset import Dataset
from recsys.data.sources.movielens import load_movielens
from recsys.evaluation.loo import leave_one_out
from recsys.evaluation.metrics import evaluate_recommendations
from recsys.inference.segments import user_affinity
from recsys.recipes import TrainingOptions, get_recipe
from recsys.schema import DatasetGroup

DEPTH = 25
DAY = 86_400
RELATED_METRICS = (
    "normalized_discounted_cumulative_gain_at_10",
    "normalized_discounted_cumulative_gain_at_25",
    "precision_at_10",
    "mean_reciprocal_rank_at_25",
    "coverage",
)
SHORT = {
    "normalized_discounted_cumulative_gain_at_10": "NDCG@10",
    "normalized_discounted_cumulative_gain_at_25": "NDCG@25",
    "precision_at_10": "P@10",
    "precision_at_25": "P@25",
    "mean_reciprocal_rank_at_25": "MRR@25",
    "coverage": "coverage",
}


#: The shipped configuration (configs/solutions/movielens-similar-items.yaml).
SIMILAR = SolutionConfig.load("movielens-similar-items").hyperparameters


def fit(name: str, data: Dataset, seconds: float | None = None, **hp):
    started = time.perf_counter()
    rec = get_recipe(name)(**hp).fit(data, TrainingOptions(time_budget_s=seconds))
    return rec, time.perf_counter() - started


def _fill(items: list[int], popular: np.ndarray, banned: set[int]) -> list[int]:
    out = [i for i in items if i not in banned][:DEPTH]
    for p in popular:
        if len(out) >= DEPTH:
            break
        if p not in banned and p not in out:
            out.append(int(p))
    return out


def related_lists(rec, queries: np.ndarray, popular: np.ndarray) -> np.ndarray:
    from recsys.recipes.similar_items import SimilarItems

    rows = []
    for q in queries:
        if rec is None:  # popularity
            items: list[int] = []
        else:
            idx, _ = SimilarItems.related(rec, int(q), DEPTH + 1)
            items = idx.tolist()
        rows.append(_fill(items, popular, {int(q)}))
    return np.array(rows, dtype=np.int64)


def bench_related(data: Dataset, seed: int) -> list[tuple[str, str, dict, float]]:
    split = leave_one_out(data)
    train = split.train_val
    popular = np.argsort(-np.bincount(train.item_codes, minlength=train.n_items), kind="stable")
    truth = [np.array([t]) for t in split.test]
    out = []
    models = {"popularity-count": (None, 0.0)}
    models["sims"] = fit("sims", train)
    models["similar-items"] = fit("similar-items", train, **SIMILAR)
    for name, (rec, sec) in models.items():
        m = evaluate_recommendations(related_lists(rec, split.valid, popular), truth, data.n_items)
        out.append(("all queries", name, m, sec))
    # cold queries: 20% of the query items lose every training interaction
    rng = np.random.default_rng(seed)
    distinct = np.unique(split.valid)
    cold = rng.choice(distinct, size=len(distinct) // 5, replace=False)
    keep = ~np.isin(train.item_codes, cold)
    cold_train = train.subset(keep)
    pop_cold = np.argsort(
        -np.bincount(cold_train.item_codes, minlength=train.n_items), kind="stable"
    )
    users = np.isin(split.valid, cold) & ~np.isin(split.test, cold)
    truth_c = [np.array([t]) for t in split.test[users]]
    models = {"popularity-count": (None, 0.0)}
    models["sims"] = fit("sims", cold_train)
    models["similar-items"] = fit("similar-items", cold_train, **SIMILAR)
    for name, (rec, sec) in models.items():
        lists = related_lists(rec, split.valid[users], pop_cold)
        m = evaluate_recommendations(lists, truth_c, data.n_items)
        out.append((f"cold queries ({int(users.sum())} users)", name, m, sec))
    return out


def bench_trending(data: Dataset, windows: list[str]) -> list[tuple[str, str, dict, float]]:
    ts = data.interactions["TIMESTAMP"].to_numpy()
    end = int(ts.max())
    cuts = [end - k * 30 * DAY for k in range(1, 25)]
    names = ["popularity-count", *[f"trending-now ({w})" for w in windows]]
    recs: dict[str, list[np.ndarray]] = {n: [] for n in names}
    truths: list[np.ndarray] = []
    seconds = dict.fromkeys(names, 0.0)
    for cut in cuts:
        train = data.subset(ts <= cut)
        test = (ts > cut) & (ts <= cut + 30 * DAY)
        if not test.any():
            continue
        hist = train.user_histories()
        test_users = np.unique(data.user_codes[test])
        models = {"popularity-count": fit("popularity-count", train)}
        for w in windows:
            models[f"trending-now ({w})"] = fit("trending-now", train, trend_discovery_frequency=w)
        for u in test_users:
            truths.append(np.unique(data.item_codes[test & (data.user_codes == u)]))
        for name, (rec, sec) in models.items():
            seconds[name] += sec
            base = rec.score(np.array([-1]), [np.zeros(0, np.int64)])[0].astype(np.float64)
            order = np.lexsort((np.arange(len(base)), -base))
            for u in test_users:
                seen = set(hist[u].tolist())
                recs[name].append(
                    np.array([i for i in order[: DEPTH + len(seen)] if i not in seen][:DEPTH])
                )
    out = []
    for name in names:
        m = evaluate_recommendations(np.vstack(recs[name]), truths, data.n_items)
        label = f"{len(cuts)} monthly cuts, {len(truths)} (cut, user) rows"
        out.append((label, name, m, seconds[name]))
    return out


def newest_fraction_split(data: Dataset, fraction: float) -> tuple[Dataset, np.ndarray]:
    """Mask of each user's newest ``fraction`` of interactions (at least one, users with 2+)."""
    codes = data.user_codes
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=data.n_users)
    ends = np.cumsum(counts)
    from_end = np.empty(len(codes), np.int64)
    from_end[order] = ends[codes[order]] - 1 - np.arange(len(codes))
    held = np.maximum(1, np.floor(counts * fraction)).astype(np.int64)
    test = (counts[codes] >= 2) & (from_end < held[codes])
    return data.subset(~test), test


def bench_segments(data: Dataset, up_seconds: float) -> list[tuple[str, str, dict, float]]:
    train, test = newest_fraction_split(data, 0.2)
    t_users, t_items = data.user_codes[test], data.item_codes[test]
    held = np.bincount(t_items, minlength=data.n_items)
    items = np.argsort(-held, kind="stable")[:500]
    items = items[held[items] > 0]
    hist = train.user_histories()
    n_cand = sum(1 for h in hist if len(h))
    k = max(1, math.ceil(0.01 * n_cand))
    truth = {int(i): set(t_users[t_items == i].tolist()) for i in items}
    out = []

    def score(label, segments, seconds):
        hits = np.array([len(set(s) & truth[int(i)]) for i, s in zip(items, segments, strict=True)])
        sizes = np.array([len(truth[int(i)]) for i in items])
        m = {
            "hits_at_1_percent": float(hits.mean()),
            "recall_at_1_percent": float((hits / sizes).mean()),
        }
        out.append((f"{len(items)} items, segments of {k} users", label, m, seconds))

    index = {u: r for r, u in enumerate(data.user_ids)}
    models = {
        "popularity-count": fit("popularity-count", train),
        "sims": fit("sims", train),
        f"item-affinity ({up_seconds:.0f} s budget)": fit(
            "item-affinity", train, up_seconds, max_training_minutes=up_seconds / 60
        ),
    }
    for name, (rec, sec) in models.items():
        users, idx, _ = user_affinity(rec, train, items, k, exclude_seen=True)
        segs = [[index[users[j]] for j in row if j >= 0] for row in idx]
        score(name, segs, sec)
    activity = np.array([len(h) for h in hist])
    ranked = np.argsort(-activity, kind="stable")
    seen_by = [set() for _ in range(data.n_items)]
    for u, h in enumerate(hist):
        for i in h:
            seen_by[int(i)].add(u)
    segs = [
        [int(u) for u in ranked if u not in seen_by[int(i)] and activity[u] > 0][:k] for i in items
    ]
    score("most active users", segs, 0.0)
    return out


def table(rows, metrics) -> str:
    head = "| case | recipe | " + " | ".join(SHORT.get(m, m) for m in metrics) + " | fit s |"
    lines = [head, "|" + "---|" * (len(metrics) + 3)]
    for case, name, m, sec in rows:
        vals = " | ".join(f"{m[x]:.4f}" for x in metrics)
        lines.append(f"| {case} | {name} | {vals} | {sec:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(REPO / "data" / "ml-latest-small"))
    p.add_argument("--up-seconds", type=float, default=60.0, help="item-affinity budget")
    p.add_argument("--windows", default="7 days,30 days", help="trending-now windows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--record", action="store_true")
    args = p.parse_args(argv)
    os.environ.setdefault("RECSYS_PROGRESS", "0")
    raw = load_movielens(args.data_dir)
    schema = DatasetGroup.load("movielens").schemas["items"]
    data = Dataset(raw.interactions, raw.items, None, None, schema)
    started = time.perf_counter()
    parts = []
    rel = bench_related(data, args.seed)
    parts.append(
        "similar-items (related items: query = a user's second-to-last item, truth = "
        "the last)\n\n" + table(rel, RELATED_METRICS)
    )
    print(parts[-1], flush=True)
    tr = bench_trending(data, [w.strip() for w in args.windows.split(",")])
    parts.append(
        "trending-now (next 30 days after each cut)\n\n"
        + table(
            tr,
            (
                "normalized_discounted_cumulative_gain_at_25",
                "precision_at_25",
                "mean_reciprocal_rank_at_25",
                "coverage",
            ),
        )
    )
    print(parts[-1], flush=True)
    seg = bench_segments(data, args.up_seconds)
    parts.append(
        "item-affinity (segments: newest 20% of each user held out)\n\n"
        + table(seg, ("hits_at_1_percent", "recall_at_1_percent"))
    )
    print(parts[-1], flush=True)
    total = time.perf_counter() - started
    text = "\n\n".join(parts) + f"\n\nTotal wall time {total:.0f} s."
    print(f"total {total:.0f} s", flush=True)
    if args.record:
        record(
            "Recipe book on ml-latest-small (issue 17)",
            "benchmarks.recipe_book",
            argv,
            text,
            note="Other jobs were running on the machine (shared, 2 cores).",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
