"""Cold-item benchmark (BENCHMARKS.md protocol 3): the 2-hourly update's value, and its speed.

    python -m benchmarks.cold_items --data-dir data/ml-latest-small [--budget-min 3] [--record]

Time line: train on every interaction before T; the update window (T, T2] brings items first
seen in it ("new items"); evaluate on the interactions after T2 whose item is known at T2. Each
test event is ranked over the whole T2 catalogue given the user's history up to it (window
events included, as the live model would see them; the user's earlier items excluded; expected
rank over ties). Models, all user-personalization with metadata (genres + title):

  (a) no update: the model trained before T; new items cannot be scored (ranked last);
  (b) random init: (a) + new items with random id embeddings (the training init) and bias 0;
  (c) neighbour init: (a) + new items from their metadata neighbours (``Recipe.add_items``);
  (d) full retraining on everything up to T2 (the upper bound; same budget).

Speed: ``add_items`` of N new items into a model of M items (random weights, synthetic
genres/titles; hidden_dimension 149, Personalize's default) and the revision's save.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.pipeline import machine
from benchmarks.quality import UP_DEFAULTS
from recsys.data.dataset import Dataset
from recsys.data.sources.movielens import load_movielens
from recsys.evaluation.loo import rank_metrics
from recsys.ids import digest
from recsys.recipes import TrainingOptions, UserPersonalization
from recsys.recipes.cold import NewItemOptions
from recsys.recipes.features import encode_features, fit_features
from recsys.schema import DatasetGroup, Field, Schema
from recsys.storage import Storage

REPO = Path(__file__).resolve().parent.parent


def index_of(vocabulary, ids) -> np.ndarray:
    return pd.Index(np.asarray(vocabulary).astype(str)).get_indexer(np.asarray(ids).astype(str))


def cold_split(data: Dataset, t_quantile: float, t2_quantile: float, max_events: int, seed: int):
    inter = data.interactions
    ts = inter["TIMESTAMP"].to_numpy()
    T, T2 = np.quantile(ts, [t_quantile, t2_quantile])
    first_seen = inter.groupby("ITEM_ID")["TIMESTAMP"].min()
    old_items = first_seen.index[first_seen <= T].astype(str)
    known_t2 = first_seen.index[first_seen <= T2].astype(str)
    new_items = np.array(sorted(set(known_t2) - set(old_items)), dtype=object)
    items = data.items

    def upto(cut, catalogue):
        df = inter[ts <= cut]
        its = items[items["ITEM_ID"].astype(str).isin(catalogue)] if items is not None else None
        return Dataset(df, its, None, None, data.item_schema)

    before_t, upto_t2 = upto(T, old_items), upto(T2, known_t2)
    catalogue = upto_t2.item_ids  # the T2 catalogue (every item seen by T2)
    # test events: after T2, item known at T2
    codes = index_of(catalogue, inter["ITEM_ID"])
    test = np.flatnonzero((ts > T2) & (codes >= 0))
    rng = np.random.default_rng(seed)
    if len(test) > max_events:
        test = np.sort(rng.choice(test, max_events, replace=False))
    # history of each test event: the user's earlier events (stable time order), T2 catalogue
    users = inter["USER_ID"].astype(str).to_numpy()
    all_codes = index_of(catalogue, inter["ITEM_ID"])
    by_user: dict[str, list[int]] = {}
    pos_in_user = np.empty(len(inter), dtype=np.int64)
    for r in range(len(inter)):
        lst = by_user.setdefault(users[r], [])
        pos_in_user[r] = len(lst)
        lst.append(all_codes[r])
    hists, targets = [], []
    for r in test:
        h = np.asarray(by_user[users[r]][: pos_in_user[r]], dtype=np.int64)
        hists.append(h[h >= 0])
        targets.append(all_codes[r])
    is_new = np.isin(np.asarray(catalogue).astype(str), new_items)
    return before_t, upto_t2, catalogue, hists, np.array(targets), is_new, (T, T2), new_items


def evaluate(recipe, catalogue, hists, targets, is_new) -> dict[str, float]:
    """Metrics on all test events and on those whose target is a new item."""
    to_model = index_of(recipe.item_ids, catalogue)  # catalogue → model (-1: unscorable)
    present = to_model >= 0
    acc: dict[str, list] = {}
    for b in range(0, len(targets), 512):
        hb = hists[b : b + 512]
        model_h = [to_model[h] for h in hb]
        s = recipe.score(np.full(len(hb), -1), model_h)
        full = np.full((len(hb), len(catalogue)), -np.inf, dtype=np.float64)
        full[:, present] = s[:, to_model[present]]
        m = rank_metrics(full, targets[b : b + 512], hb)
        for k, v in m.items():
            acc.setdefault(k, []).append(v)
    m = {k: np.concatenate(v) for k, v in acc.items()}
    new = is_new[targets]
    out = {}
    for k in ("NDCG@10", "HR@10"):
        out[f"all {k}"] = float(m[k].mean())
        out[f"new {k}"] = float(m[k][new].mean()) if new.any() else float("nan")
    out["new events"] = int(new.sum())
    return out


def fit_cached(hp, data, seed, cache: str | None, name: str):
    """Train, or load the model a previous run with the same --cache saved (iteration aid)."""
    from recsys.recipes import load_model

    store = Storage(cache) if cache else None
    key = f"{name}-{digest(hp, seed)}"
    if store is not None and store.exists(f"{key}/model.json"):
        rec, meta = load_model(store, key)
        return rec, float(meta["train_seconds"])
    t = time.perf_counter()
    rec = UserPersonalization(**hp).fit(data, TrainingOptions(seed=seed))
    seconds = time.perf_counter() - t
    if store is not None:
        rec.save(store, key, extra={"train_seconds": seconds})
    return rec, seconds


def with_new_items(base_state, hp, new_ids, items, mode: str, seed: int, options=None):
    """A copy of the before-T model with new items added by ``mode`` (neighbours / random)."""
    rec = UserPersonalization(**hp)
    rec.item_ids, rec.user_ids = base_state["item_ids"], base_state["user_ids"]
    rec.load_state(base_state["tensors"], base_state["state"])
    t = time.perf_counter()
    report = rec.add_items(new_ids, items, options or NewItemOptions())
    seconds = time.perf_counter() - t
    if mode == "random":
        g = torch.Generator().manual_seed(seed)
        n_new, dim = len(new_ids), rec.model.dim
        with torch.no_grad():
            rec.model.item_emb.weight[-n_new:] = torch.randn(n_new, dim, generator=g) * dim**-0.5
            rec.model.item_bias[-n_new:] = 0.0
    return rec, report, seconds


def quality(args) -> list[str]:
    raw = load_movielens(args.data_dir, args.format)
    data = Dataset(
        raw.interactions, raw.items, None, None, DatasetGroup.load("movielens").schemas["items"]
    )
    before_t, upto_t2, catalogue, hists, targets, is_new, (T, T2), new_ids = cold_split(
        data, args.t, args.t2, args.max_events, args.seed
    )
    day = lambda x: time.strftime("%Y-%m-%d", time.gmtime(x))  # noqa: E731
    header = (
        f"Data: `{args.data_dir}`, {len(data.interactions):,} interactions. T = {day(T)} "
        f"(quantile {args.t}), T2 = {day(T2)} (quantile {args.t2}): train on "
        f"{len(before_t.interactions):,} interactions / {before_t.n_items} items; {len(new_ids)} "
        f"new items first seen in (T, T2]; {len(targets)} test events after T2 "
        f"({int(is_new[targets].sum())} on new items)."
    )
    print(header, flush=True)
    hp = {**UP_DEFAULTS, "use_metadata": True, "max_training_minutes": args.budget_min, **args.hp}
    rows = []
    base, train_s = fit_cached(hp, before_t, args.seed, args.cache, "before-T")
    print(f"trained before T: {train_s:.0f}s, {base.epochs_trained} epochs", flush=True)
    state = {
        "item_ids": base.item_ids,
        "user_ids": base.user_ids,
        "tensors": base.tensors(),
        "state": base.state_config(),
    }
    items_t2 = upto_t2.items
    rows.append(("(a) no update", evaluate(base, catalogue, hists, targets, is_new), "—"))
    print(rows[-1], flush=True)
    variants = [("(b) random init", "random", None), ("(c) neighbour init", "neighbours", None)]
    if args.ablation:
        variants.append(
            (
                "(c') neighbour init, no norm rescale",
                "neighbours",
                NewItemOptions(preserve_norm=False),
            )
        )
    for label, mode, opts in variants:
        rec, report, secs = with_new_items(state, hp, new_ids, items_t2, mode, args.seed, opts)
        note = f"{secs:.2f}s to add {len(new_ids)} items"
        if mode == "neighbours":
            note += f"; {report['from_neighbours']} by neighbours, {report['fallback']} prior"
        rows.append((label, evaluate(rec, catalogue, hists, targets, is_new), note))
        print(rows[-1], flush=True)
    full, full_s = fit_cached(hp, upto_t2, args.seed, args.cache, "upto-T2")
    rows.append(
        (
            "(d) full retraining to T2",
            evaluate(full, catalogue, hists, targets, is_new),
            f"{full_s:.0f}s training, {full.epochs_trained} epochs",
        )
    )
    print(rows[-1], flush=True)
    lines = [
        header,
        "",
        f"user-personalization with metadata, hyperparameters {hp}; each training capped at "
        f"{args.budget_min:g} min (before T: {train_s:.0f}s, {base.epochs_trained} epochs).",
        "",
        "| model | NDCG@10 all | HR@10 all | NDCG@10 new items | HR@10 new items | notes |",
        "|---|---|---|---|---|---|",
    ]
    for name, m, note in rows:
        lines.append(
            f"| {name} | {m['all NDCG@10']:.4f} | {m['all HR@10']:.4f} | "
            f"{m['new NDCG@10']:.4f} | {m['new HR@10']:.4f} | {note} |"
        )
    return lines


def speed(args) -> list[str]:
    """Seconds to add N new items to a model of M items (weights random: speed only)."""
    lines = [
        "| model items M | new items N | add_items s | revision save s |",
        "|---|---|---|---|",
    ]
    rng = np.random.default_rng(0)
    schema = Schema(
        "items",
        (
            Field("ITEM_ID", "string"),
            Field("GENRES", "string", nullable=True, categorical=True),
            Field("TITLE", "string", nullable=True, textual=True),
        ),
    )
    words = [f"w{i}" for i in range(5000)]

    def catalogue(ids):
        return pd.DataFrame(
            {
                "ITEM_ID": ids,
                "GENRES": [
                    "|".join(f"g{g}" for g in rng.choice(50, 2, replace=False)) for _ in ids
                ],
                "TITLE": [" ".join(rng.choice(words, 4)) for _ in ids],
            }
        )

    for m_items, n_new in [(int(x.split(":")[0]), int(x.split(":")[1])) for x in args.speed]:
        ids = np.array([f"i{i}" for i in range(m_items)], dtype=object)
        items = catalogue(ids)
        rec = UserPersonalization(use_metadata=True, precision="fp32")
        rec.item_ids, rec.user_ids = ids, np.array(["u0"], dtype=object)
        rec.feature_config = fit_features(items, ids, schema)
        rec.features = encode_features(items, ids, rec.feature_config)
        rec.popularity = np.full(m_items, 1.0 / m_items, np.float32)
        rec.model = rec._build(m_items, rec.features)
        rec.model.eval()
        new = np.array([f"n{i}" for i in range(n_new)], dtype=object)
        t = time.perf_counter()
        report = rec.add_items(new, catalogue(new), NewItemOptions())
        add_s = time.perf_counter() - t
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            rec.save(Storage(tmp), "rev")
            save_s = time.perf_counter() - t
        assert report["added"] == n_new
        lines.append(f"| {m_items:,} | {n_new:,} | {add_s:.2f} | {save_s:.2f} |")
        print(lines[-1], flush=True)
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(REPO / "data" / "ml-latest-small"))
    p.add_argument("--format", default=None)
    p.add_argument("--t", type=float, default=0.8, help="T as a quantile of timestamps")
    p.add_argument("--t2", type=float, default=0.9, help="T2 (the update) as a quantile")
    p.add_argument("--budget-min", type=float, default=3.0, help="cap per training (minutes)")
    p.add_argument("--max-events", type=int, default=10_000)
    p.add_argument("--hp", type=json.loads, default={})
    p.add_argument("--speed", nargs="*", default=["100000:1000", "100000:10000"])
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--cache", default=None, help="directory to save/reuse trained models")
    p.add_argument("--ablation", action="store_true", help="also (c) without norm rescale")
    p.add_argument("--record", action="store_true")
    args = p.parse_args(argv)
    os.environ.setdefault("RECSYS_PROGRESS", "0")
    text = []
    if not args.skip_quality:
        text += quality(args) + [""]
    if args.speed:
        text += ["Speed of the update (adding N new items to a model of M items):", ""]
        text += speed(args)
    out = "\n".join(text)
    print(out)
    if args.record:
        cmd = "python -m benchmarks.cold_items " + " ".join(sys.argv[1:])
        with open(REPO / "docs" / "BENCHMARKS.md", "a", encoding="utf-8") as f:
            f.write(
                f"\n### Cold items and the 2-hourly update (protocol 3), "
                f"{time.strftime('%Y-%m-%d', time.gmtime())}\n\n"
                f"Command: `{cmd}`  \nMachine: {machine()} (shared with another engineer's "
                f"jobs during the run: timings are upper bounds)\n\n{out}\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
