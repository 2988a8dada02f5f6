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
from typing import Any

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


def cold_split(
    data: Dataset,
    t_quantile: float,
    t2_quantile: float,
    max_events: int,
    seed: int,
    max_val_events: int | None = None,
):
    """Train before T, update window (T, T2], test after T2; validation = window events.

    Returns a dict: ``before_t`` / ``upto_t2`` datasets, ``catalogue`` (every item seen by T2),
    ``new_items`` (first seen in the window), ``is_new`` per catalogue item, ``test`` and
    ``val`` event sets (histories, targets). Validation events are the window's own events
    (T, T2]: disjoint from the test events, and what the update could be tuned on at T2.
    """
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
    # history of each event: the user's earlier events (stable time order), T2 catalogue
    users = inter["USER_ID"].astype(str).to_numpy()
    all_codes = index_of(catalogue, inter["ITEM_ID"])
    by_user: dict[str, list[int]] = {}
    pos_in_user = np.empty(len(inter), dtype=np.int64)
    for r in range(len(inter)):
        lst = by_user.setdefault(users[r], [])
        pos_in_user[r] = len(lst)
        lst.append(all_codes[r])
    rng = np.random.default_rng(seed)

    def events(rows, limit):
        if len(rows) > limit:
            rows = np.sort(rng.choice(rows, limit, replace=False))
        hists = []
        for r in rows:
            h = np.asarray(by_user[users[r]][: pos_in_user[r]], dtype=np.int64)
            hists.append(h[h >= 0])
        return hists, all_codes[rows]

    test = events(np.flatnonzero((ts > T2) & (all_codes >= 0)), max_events)
    val = events(
        np.flatnonzero((ts > T) & (ts <= T2) & (all_codes >= 0)), max_val_events or max_events
    )
    is_new = np.isin(np.asarray(catalogue).astype(str), new_items)
    window_counts = (
        inter[(ts > T) & (ts <= T2)]["ITEM_ID"].astype(str).value_counts().reindex(new_items)
    )
    return {
        "before_t": before_t,
        "upto_t2": upto_t2,
        "catalogue": catalogue,
        "new_items": new_items,
        "is_new": is_new,
        "test": test,
        "val": val,
        "T": T,
        "T2": T2,
        "window_events_per_new_item": window_counts.fillna(0).to_numpy(),
    }


def evaluate(recipe, catalogue, events, is_new) -> dict[str, Any]:
    """Per-event metrics on all events and flags for those whose target is a new item."""
    hists, targets = events
    to_model = index_of(recipe.item_ids, catalogue)  # catalogue → model (-1: unscorable)
    present = to_model >= 0
    acc: dict[str, list] = {}
    new_in_top = []
    for b in range(0, len(targets), 512):
        hb = hists[b : b + 512]
        model_h = [to_model[h] for h in hb]
        s = recipe.score(np.full(len(hb), -1), model_h)
        full = np.full((len(hb), len(catalogue)), -np.inf, dtype=np.float64)
        full[:, present] = s[:, to_model[present]]
        m = rank_metrics(full, targets[b : b + 512], hb, ks=(10, 100))
        for k, v in m.items():
            acc.setdefault(k, []).append(v)
        for r, h in enumerate(hb):  # how many new items does each top 10 hold?
            full[r, h] = -np.inf
        top = np.argpartition(-full, 10, axis=1)[:, :10]
        new_in_top.append(is_new[top].sum(axis=1))
    per = {k: np.concatenate(v) for k, v in acc.items()}
    per["new in top10"] = np.concatenate(new_in_top).astype(np.float64)
    per["is_new"] = is_new[targets]
    return per


def summary(per: dict[str, np.ndarray]) -> dict[str, float]:
    new = per["is_new"]
    out = {}
    for k in ("NDCG@10", "HR@10", "HR@100"):
        out[f"all {k}"] = float(per[k].mean())
        out[f"old {k}"] = float(per[k][~new].mean())
        out[f"new {k}"] = float(per[k][new].mean()) if new.any() else float("nan")
    out["new in top10"] = float(per["new in top10"].mean())
    out["new events"] = int(new.sum())
    return out


def fit_cached(hp, data, seed, cache: str | None, name: str):
    """Train, or load the model a previous run with the same --cache saved (iteration aid).

    Returns (recipe, info): info has training seconds, epochs and whether early stopping
    (patience) ended the training rather than the time cap.
    """
    from recsys.recipes import load_model

    store = Storage(cache) if cache else None
    key = f"{name}-{digest(hp, seed)}"
    if store is not None and store.exists(f"{key}/model.json"):
        rec, meta = load_model(store, key)
        return rec, meta["train_info"]
    t = time.perf_counter()
    best = {"epoch": 0, "score": -1.0}

    def on_epoch(recipe, epoch, elapsed):
        pass

    rec = UserPersonalization(**hp).fit(data, TrainingOptions(seed=seed, on_epoch=on_epoch))
    seconds = time.perf_counter() - t
    cap = 60.0 * float(hp.get("max_training_minutes") or float("inf"))
    info = {
        "seconds": round(seconds, 1),
        "epochs": int(rec.epochs_trained),
        "early_stopped": bool(rec.epochs_trained < int(hp["epochs"]) and seconds < cap - 1.0),
        "best_validation_ndcg10": rec.best_validation,
        "load": os.getloadavg()[0],
    }
    del best
    if store is not None:
        rec.save(store, key, extra={"train_info": info})
    return rec, info


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


#: The options of the update before this benchmark tuned them (k=10, floor 0.3, similarity
#: weights, norm rescale, no bias offset): row (c) of the first protocol-3 run.
FIRST_OPTIONS = {"k": 10, "min_similarity": 0.3, "weighting": "similarity", "bias_offset": 0.0}


def option_grid() -> list[dict[str, Any]]:
    """Neighbour-init settings compared on the validation events (the window (T, T2])."""
    grid = []
    for k, weighting in (
        (3, "similarity"),
        (10, "similarity"),
        (30, "similarity"),
        (10, "softmax"),
    ):
        for offset in (0.0, -0.5, -1.0, -2.0, -4.0):
            grid.append(
                {"k": k, "min_similarity": 0.3, "weighting": weighting, "bias_offset": offset}
            )
    grid.append({**FIRST_OPTIONS, "preserve_norm": False})
    return grid


def _name(opts: dict[str, Any]) -> str:
    return json.dumps(opts, sort_keys=True)


def mean_se(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    se = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")
    return float(v.mean()), se


def quality(args) -> list[str]:
    raw = load_movielens(args.data_dir, args.format)
    data = Dataset(
        raw.interactions, raw.items, None, None, DatasetGroup.load("movielens").schemas["items"]
    )
    hp = {**UP_DEFAULTS, "use_metadata": True, "max_training_minutes": args.budget_min, **args.hp}
    day = lambda x: time.strftime("%Y-%m-%d", time.gmtime(x))  # noqa: E731
    splits = [tuple(float(x) for x in s.split(":")) for s in args.splits]
    header, runs = [], []
    grid = option_grid()
    for t, t2 in splits:
        sp = cold_split(data, t, t2, args.max_events, 0, args.max_val_events)
        n_new_test = int(sp["is_new"][sp["test"][1]].sum())
        n_new_val = int(sp["is_new"][sp["val"][1]].sum())
        w = sp["window_events_per_new_item"]
        header.append(
            f"* T = {day(sp['T'])} (quantile {t:g}), T2 = {day(sp['T2'])} (quantile {t2:g}): "
            f"train on {len(sp['before_t'].interactions):,} interactions / "
            f"{sp['before_t'].n_items:,} items; {len(sp['new_items'])} new items first seen in "
            f"(T, T2] with {int(w.sum()):,} window events (median {np.median(w):g} per item); "
            f"validation: {len(sp['val'][1]):,} window events ({n_new_val} on new items); "
            f"test: {len(sp['test'][1]):,} events after T2 ({n_new_test} on new items)."
        )
        print(header[-1], flush=True)
        for seed in args.seeds:
            base, base_info = fit_cached(hp, sp["before_t"], seed, args.cache, f"before-T{t:g}")
            print(f"  seed {seed}: before T {base_info}", flush=True)
            full, full_info = fit_cached(hp, sp["upto_t2"], seed, args.cache, f"upto-T2-{t2:g}")
            print(f"  seed {seed}: up to T2 {full_info}", flush=True)
            if args.train_only:
                continue
            state = {
                "item_ids": base.item_ids,
                "user_ids": base.user_ids,
                "tensors": base.tensors(),
                "state": base.state_config(),
            }
            items_t2 = sp["upto_t2"].items
            run = {"split": (t, t2), "seed": seed, "val": {}, "test": {}, "info": {}}
            run["info"] = {"before": base_info, "full": full_info}
            saved = (
                Path(args.cache)
                / f"eval-{t:g}-{t2:g}-{seed}-{digest(hp, grid, args.max_events, args.max_val_events)}.json"
                if args.cache
                else None
            )
            cat, is_new = sp["catalogue"], sp["is_new"]

            def ev(rec, which, cat=cat, sp=sp, is_new=is_new):
                return summary(evaluate(rec, cat, sp[which], is_new))

            if saved is not None and saved.exists():
                run.update(json.loads(saved.read_text()))
                run["split"] = tuple(run["split"])
            else:
                evaluate_run(run, ev, state, hp, sp, items_t2, seed, grid, base, full)
                if saved is not None:
                    saved.write_text(json.dumps({k: run[k] for k in ("val", "test", "info")}))
            run["test_of"] = lambda o, state=state, sp=sp, seed=seed: summary(
                evaluate(
                    with_new_items(
                        state, hp, sp["new_items"], sp["upto_t2"].items, "neighbours", seed, o
                    )[0],
                    sp["catalogue"],
                    sp["test"],
                    sp["is_new"],
                )
            )
            runs.append(run)
            print(
                f"  seed {seed}: val (c first) {run['val'][_name(FIRST_OPTIONS)]}",
                flush=True,
            )
    if args.train_only:
        return header
    return report_lines(args, hp, header, runs, grid)


def evaluate_run(run, ev, state, hp, sp, items_t2, seed, grid, base, full) -> None:
    """Validation grid and test rows of one (split, seed): summaries into ``run``."""
    run["test"]["(a) no update"] = ev(base, "test")
    run["val"]["(a) no update"] = ev(base, "val")
    rec, _, secs = with_new_items(state, hp, sp["new_items"], items_t2, "random", seed)
    run["test"]["(b) random init"] = ev(rec, "test")
    run["val"]["(b) random init"] = ev(rec, "val")
    for opts in grid:
        o = NewItemOptions.from_dict(opts)
        rec, report, secs = with_new_items(
            state, hp, sp["new_items"], items_t2, "neighbours", seed, o
        )
        run["val"][_name(opts)] = ev(rec, "val")
        if opts == FIRST_OPTIONS:
            run["test"][_name(opts)] = ev(rec, "test")
            run["info"]["add"] = {
                "seconds": round(secs, 2),
                "from_neighbours": report["from_neighbours"],
                "fallback": report["fallback"],
            }
    run["test"]["(d) full retraining"] = ev(full, "test")


def report_lines(args, hp, header, runs, grid) -> list[str]:
    # Choose the neighbour-init settings on the validation events only: the highest NDCG@10
    # on *all* validation events (new items gained against old items displaced), mean over
    # every split and seed.
    def val_score(opts):
        return np.mean([r["val"][_name(opts)]["all NDCG@10"] for r in runs])

    best = max(grid, key=val_score)
    for r in runs:  # the test set sees the chosen settings only
        if _name(best) not in r["test"]:
            r["test"][_name(best)] = r["test_of"](NewItemOptions.from_dict(best))
    lines = header + [
        "",
        f"user-personalization with metadata (`use_metadata: true`), hyperparameters {hp}; "
        f"seeds {args.seeds}; every model trained until early stopping (patience "
        f"{hp['patience']}) or the {args.budget_min:g}-minute cap, see the training line.",
        "",
        "Validation (the window's events; all splits and seeds): NDCG@10 on all events / on "
        "new-item events for the neighbour-init settings (k, weighting, bias offset; floor 0.3,"
        " norm rescale):",
        "",
        "| k | weighting | bias offset | val NDCG@10 all | val NDCG@10 new | new items in top 10 |",
        "|---|---|---|---|---|---|",
    ]
    for label in ("(a) no update", "(b) random init"):
        s = [r["val"][label] for r in runs]
        lines.append(
            f"| {label} | | | {np.mean([x['all NDCG@10'] for x in s]):.4f} | "
            f"{np.mean([x['new NDCG@10'] for x in s]):.4f} | "
            f"{np.mean([x['new in top10'] for x in s]):.2f} |"
        )
    for opts in grid:
        s = [r["val"][_name(opts)] for r in runs]
        extra = "" if opts.get("preserve_norm", True) else " (no norm rescale)"
        mark = " **chosen**" if opts == best else ""
        lines.append(
            f"| {opts['k']} | {opts['weighting']}{extra} | {opts['bias_offset']:g}{mark} | "
            f"{np.mean([x['all NDCG@10'] for x in s]):.4f} | "
            f"{np.mean([x['new NDCG@10'] for x in s]):.4f} | "
            f"{np.mean([x['new in top10'] for x in s]):.2f} |"
        )
    rows = [
        ("(a) no update", "(a) no update"),
        ("(b) random init", "(b) random init"),
        ("(c) neighbour init, first settings " + _short(FIRST_OPTIONS), _name(FIRST_OPTIONS)),
        ("(c) neighbour init, chosen on validation " + _short(best), _name(best)),
        ("(d) full retraining to T2", "(d) full retraining"),
    ]
    cols = ["all NDCG@10", "all HR@10", "old NDCG@10", "new NDCG@10", "new HR@10", "new HR@100"]
    lines += [
        "",
        f"Test (events after T2), mean ± se over {len(runs)} runs (splits × seeds); "
        "'old'/'new': events whose item is old/new:",
        "",
        "| model | " + " | ".join(cols) + " | new items in top 10 |",
        "|---" * (len(cols) + 2) + "|",
    ]
    for label, key in rows:
        s = [r["test"][key] for r in runs]
        cells = []
        for c in cols:
            m, se = mean_se([x[c] for x in s])
            cells.append(f"{m:.4f} ± {se:.4f}")
        lines.append(
            f"| {label} | "
            + " | ".join(cells)
            + f" | {np.mean([x['new in top10'] for x in s]):.2f} |"
        )
    lines += ["", "Per run (test NDCG@10 on new-item events; training):", ""]
    lines += ["| split | seed | (a) | (b) | (c) first | (c) chosen | (d) | training |"]
    lines += ["|---|---|---|---|---|---|---|---|"]
    for r in runs:

        def g(key, r=r):
            return r["test"][key]["new NDCG@10"]

        bi, fi = r["info"]["before"], r["info"]["full"]
        lines.append(
            f"| {r['split'][0]:g}:{r['split'][1]:g} | {r['seed']} | {g('(a) no update'):.4f} | "
            f"{g('(b) random init'):.4f} | {g(_name(FIRST_OPTIONS)):.4f} | {g(_name(best)):.4f} | "
            f"{g('(d) full retraining'):.4f} | before T: {bi['epochs']} epochs {bi['seconds']:.0f}s"
            f"{' (early stop)' if bi['early_stopped'] else ' (cap)'}; to T2: {fi['epochs']} "
            f"epochs {fi['seconds']:.0f}s{' (early stop)' if fi['early_stopped'] else ' (cap)'} |"
        )
    return lines


def _short(opts: dict[str, Any]) -> str:
    return f"(k={opts['k']}, {opts['weighting']}, bias offset {opts['bias_offset']:g})"


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
    p.add_argument(
        "--splits",
        nargs="*",
        default=["0.7:0.8", "0.8:0.9"],
        help="T:T2 as quantiles of the timestamps (one split per pair)",
    )
    p.add_argument("--seeds", nargs="*", type=int, default=[1, 2, 3])
    p.add_argument("--budget-min", type=float, default=20.0, help="cap per training (minutes)")
    p.add_argument("--max-events", type=int, default=10_000, help="test events per split")
    p.add_argument("--max-val-events", type=int, default=3_000, help="validation events")
    p.add_argument("--hp", type=json.loads, default={})
    p.add_argument("--speed", nargs="*", default=["100000:1000", "100000:10000"])
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--train-only", action="store_true", help="only fill the --cache")
    p.add_argument("--cache", default=None, help="directory to save/reuse trained models")
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
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        with open(REPO / "docs" / "BENCHMARKS.md", "a", encoding="utf-8") as f:
            f.write(
                f"\n### Cold items and the 2-hourly update (protocol 3), several seeds, "
                f"{time.strftime('%Y-%m-%d', time.gmtime())}\n\n"
                f"Command: `{cmd}`  \nMachine: {machine()}, shared with other engineers' jobs "
                f"(load average at the end {load}; timings are upper bounds)\n\n{out}\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
