"""Quality benchmark: leave-one-out (research protocol) on any MovieLens-format directory.

    python -m benchmarks.quality --data-dir data/ml-latest-small [--models ...] [--record]

Compares in one run popularity-count, sims, user-personalization and an outside baseline a
user might pick instead (EASE, closed form, λ tuned on the validation item), with training time
per model and, for user-personalization, test NDCG@10 against training time (--checkpoints).
user-personalization trains with the shipped configs/solutions/movielens-up.yaml settings, --hp
(JSON) overriding them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import scipy.sparse as sp

from benchmarks.common import REPO, record, write_json
from recsys.config import SolutionConfig
from recsys.data.dataset import Dataset
from recsys.data.sources.movielens import load_movielens
from recsys.evaluation.loo import five_core, leave_one_out, rank_metrics
from recsys.recipes import TrainingOptions, get_recipe
from recsys.schema import DatasetGroup

#: The settings we ship for MovieLens-like data, read from configs/solutions/movielens-up.yaml
#: itself, so this benchmark measures what a user gets (its time cap included).
UP_DEFAULTS: dict = dict(SolutionConfig.load("movielens-up").hyperparameters)


def evaluate_per_user(score_fn, histories, targets, users) -> dict[str, np.ndarray]:
    acc: dict[str, list] = {}
    for b in range(0, len(users), 512):
        u = users[b : b + 512]
        hist = [histories[x] for x in u]
        m = rank_metrics(score_fn(u, hist), targets[b : b + 512], hist)
        for k, v in m.items():
            acc.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in acc.items()}


def evaluate(score_fn, histories, targets, users) -> dict[str, float]:
    return {
        k: float(v.mean())
        for k, v in evaluate_per_user(score_fn, histories, targets, users).items()
    }


def read_subset(path: str, user_ids: np.ndarray, users: np.ndarray) -> np.ndarray:
    """Mask over the test users of those whose USER_ID is listed in ``path`` (one per line)."""
    try:
        with open(path, encoding="utf-8") as f:
            listed = {line.strip() for line in f if line.strip()}
    except OSError as e:
        raise SystemExit(f"--subset {path}: {e.strerror}") from None
    mask = np.array([str(user_ids[u]) in listed for u in users])
    if not mask.any() or mask.all():
        raise SystemExit(
            f"--subset {path}: {int(mask.sum())} of {len(users)} test users listed; "
            "a subset must split them"
        )
    return mask


def ease_fit(train: Dataset, lam: float) -> np.ndarray:
    X = train.user_item_matrix()
    X.data[:] = 1
    G = (X.T @ X).toarray().astype(np.float64)
    G[np.diag_indices_from(G)] += lam
    P = np.linalg.inv(G)
    B = -P / np.diag(P)
    B[np.diag_indices_from(B)] = 0
    return B.astype(np.float32)


def ease_scorer(B: np.ndarray, n_items: int):
    def score(users, hist):
        rows = np.repeat(np.arange(len(hist)), [len(h) for h in hist])
        cols = np.concatenate(hist) if hist else np.zeros(0, int)
        H = sp.csr_matrix(
            (np.ones(len(rows), np.float32), (rows, cols)), shape=(len(hist), n_items)
        )
        return np.asarray(H @ B)

    return score


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(REPO / "data" / "ml-latest-small"))
    p.add_argument("--format", default=None, help="latest | 1m | 100k (default: detect)")
    p.add_argument("--models", default="popularity-count,sims,ease,user-personalization")
    p.add_argument("--hp", type=json.loads, default={}, help="user-personalization overrides")
    # the curve: NDCG@10 after 10, 20, 40, 60 minutes of training (early stopping on the
    # validation item ends small data sets sooner; later marks are then not reached)
    p.add_argument(
        "--budget-min",
        type=float,
        default=None,
        help="user-personalization time cap (default: the shipped max_training_minutes)",
    )
    p.add_argument(
        "--checkpoints", default="10,20,40,60", help="minutes at which to report test NDCG"
    )
    p.add_argument(
        "--subset",
        help="file of USER_IDs, one per line: NDCG@10 is also reported for them and the rest "
        "(e.g. the MovieLens-1M users whose second-to-last item the rebuild lacks)",
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--record", action="store_true")
    p.add_argument("--json", help="also write the results here (for the plots)")
    args = p.parse_args(argv)
    os.environ.setdefault("RECSYS_PROGRESS", "0")

    raw = load_movielens(args.data_dir, args.format)
    data = five_core(
        Dataset(
            raw.interactions, raw.items, None, None, DatasetGroup.load("movielens").schemas["items"]
        )
    )
    split = leave_one_out(data)
    n_items = data.n_items
    hist_train = split.train.user_histories()
    hist_full = split.train_val.user_histories()
    header = (
        f"Data: `{args.data_dir}` after 5-core: {data.n_users} users, {n_items} items, "
        f"{len(data.interactions):,} interactions; {len(split.users)} test users"
    )
    print(header, flush=True)
    subset = None if args.subset is None else read_subset(args.subset, data.user_ids, split.users)
    rows, curve = [], []

    def test_metrics(fn) -> dict[str, float]:
        per_user = evaluate_per_user(fn, hist_full, split.test, split.users)
        m = {k: float(v.mean()) for k, v in per_user.items()}
        if subset is not None:
            m["NDCG@10 listed"] = float(per_user["NDCG@10"][subset].mean())
            m["NDCG@10 rest"] = float(per_user["NDCG@10"][~subset].mean())
        return m

    def report(name, fn, seconds, note=""):
        m = test_metrics(fn)
        rows.append((name, m, seconds, note))
        print(
            f"{name}: NDCG@10 {m['NDCG@10']:.4f} HR@10 {m['HR@10']:.4f} ({seconds:.1f}s) {note}",
            flush=True,
        )

    for name in args.models.split(","):
        if name == "popularity-count":
            t = time.perf_counter()
            rec = get_recipe(name)().fit(split.train_val, TrainingOptions(seed=args.seed))
            report(name, rec.score, time.perf_counter() - t)
        elif name == "sims":
            best = None
            for alpha in (0.25, 0.5, 0.75):
                rec = get_recipe(name)(popularity_discount_factor=alpha, min_cointeraction_count=1)
                rec.fit(split.train, TrainingOptions())
                v = evaluate(rec.score, hist_train, split.valid, split.users)["NDCG@10"]
                best = max(best or (v, alpha), (v, alpha))
            t = time.perf_counter()
            rec = get_recipe(name)(popularity_discount_factor=best[1], min_cointeraction_count=1)
            rec.fit(split.train_val, TrainingOptions())
            report(name, rec.score, time.perf_counter() - t, f"α={best[1]} (tuned on validation)")
        elif name == "ease":
            best = None
            for lam in (10.0, 50.0, 200.0, 500.0):
                B = ease_fit(split.train, lam)
                v = evaluate(ease_scorer(B, n_items), hist_train, split.valid, split.users)[
                    "NDCG@10"
                ]
                best = max(best or (v, lam), (v, lam))
            t = time.perf_counter()
            B = ease_fit(split.train_val, best[1])
            report(
                "EASE (outside baseline)",
                ease_scorer(B, n_items),
                time.perf_counter() - t,
                f"λ={best[1]:g} (tuned on validation)",
            )
        elif name == "user-personalization":
            hp = {**UP_DEFAULTS, **args.hp}
            marks = sorted(float(x) * 60 for x in args.checkpoints.split(",") if x)
            eval_time = [0.0]

            def on_epoch(recipe, epoch, elapsed, marks=marks, eval_time=eval_time):
                train_s = elapsed  # the recipe's clock leaves out these evaluations
                while marks and train_s >= marks[0]:
                    t0 = time.perf_counter()
                    m = test_metrics(recipe.score)
                    curve.append((marks.pop(0) / 60, epoch, train_s, m))
                    print(
                        f"  after {curve[-1][0]:g} min (epoch {epoch}): NDCG@10 {m['NDCG@10']:.4f}",
                        flush=True,
                    )
                    eval_time[0] += time.perf_counter() - t0

            t = time.perf_counter()
            rec = get_recipe(name)(**hp)
            rec.fit(
                split.train_val,
                TrainingOptions(
                    seed=args.seed,
                    time_budget_s=None if args.budget_min is None else args.budget_min * 60,
                    on_epoch=on_epoch,
                ),
            )
            seconds = time.perf_counter() - t - eval_time[0]
            report(
                name,
                rec.score,
                seconds,
                f"{rec.epochs_trained} epochs ({rec.stop.get('stop_reason')}), "
                f"best val NDCG@10 {rec.best_validation:.4f} at epoch {rec.stop.get('best_epoch')}",
            )
        else:
            raise SystemExit(f"unknown model {name}")

    # with --subset, NDCG@10 of the listed test users and of the rest, side by side
    sub_head = "" if subset is None else " NDCG@10 listed | NDCG@10 rest |"
    sub_rule = "" if subset is None else "---|---|"

    def sub_cells(m) -> str:
        return "" if subset is None else f" {m['NDCG@10 listed']:.4f} | {m['NDCG@10 rest']:.4f} |"

    if subset is not None:
        header += (
            f"; --subset `{args.subset}` lists {int(subset.sum())} of them, "
            f"the rest are {int((~subset).sum())}"
        )
    lines = [
        header,
        "",
        f"| model | HR@10 | NDCG@10 | HR@20 | NDCG@20 |{sub_head} train s | notes |",
        f"|---|---|---|---|---|{sub_rule}---|---|",
    ]
    for name, m, s, note in rows:
        lines.append(
            f"| {name} | {m['HR@10']:.4f} | {m['NDCG@10']:.4f} | {m['HR@20']:.4f} | "
            f"{m['NDCG@20']:.4f} |{sub_cells(m)} {s:.1f} | {note} |"
        )
    if curve:
        lines += [
            "",
            "user-personalization, test quality against training time:",
            "",
            f"| training time | epoch | NDCG@10 | HR@10 |{sub_head}",
            f"|---|---|---|---|{sub_rule}",
        ]
        lines += [
            f"| {mk:g} min | {ep} | {m['NDCG@10']:.4f} | {m['HR@10']:.4f} |{sub_cells(m)}"
            for mk, ep, _, m in curve
        ]
    text = "\n".join(lines)
    print(text)
    write_json(
        args.json,
        "quality",
        {
            "data": header,
            "models": [{"model": n, **m, "seconds": sec, "note": note} for n, m, sec, note in rows],
            "curve": [{"minutes": mk, "epoch": ep, "train_s": ts, **m} for mk, ep, ts, m in curve],
        },
    )
    if args.record:
        record("Quality, leave-one-out", "benchmarks.quality", argv, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
