"""trending-now: growth over the latest window against the previous one, on data whose answer
is known; recomputed by the 2-hourly update and served to every user."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from recsys import pipeline
from recsys.data.dataset import Dataset
from recsys.errors import ConfigError
from recsys.inference.batch import latest_key
from recsys.recipes import TrainingOptions, TrendingNow, load_model
from recsys.recipes.trending import window_seconds
from recsys.storage import Storage
from recsys.training import revision_prefix
from tests.conftest import REPO
from tests.test_pipeline import after, read_batch

DAY = 86_400
END = 1_700_000_000  # the newest interaction


def known_answer_data() -> Dataset:
    """Windows of one day ending at END: latest = (END - 1d, END], previous = (END - 2d, END - 1d].

    A: 10 → 20 (growth 10/15); B: 0 → 6 (6/5); C: 30 → 30 (0, latest 30); D: 20 → 5
    (-15/25); E: only old interactions (0, latest 0); F: 4 interactions exactly at END - 1d
    (the boundary: previous window) and none after (-4/9).
    """
    rows = []

    def add(item, n, lo, hi):
        for k, t in enumerate(np.linspace(lo, hi, n)):
            rows.append((f"u{item}{k}", item, int(t)))

    add("A", 10, END - 2 * DAY + 60, END - DAY - 60)
    add("A", 20, END - DAY + 60, END - 60)
    add("B", 6, END - DAY + 60, END - 60)
    add("C", 30, END - 2 * DAY + 60, END - DAY - 60)
    add("C", 30, END - DAY + 60, END)
    add("D", 20, END - 2 * DAY + 60, END - DAY - 60)
    add("D", 5, END - DAY + 60, END - 60)
    add("E", 50, END - 30 * DAY, END - 3 * DAY)
    add("F", 4, END - DAY, END - DAY)
    df = pd.DataFrame(rows, columns=["USER_ID", "ITEM_ID", "TIMESTAMP"])
    df["EVENT_TYPE"] = "click"
    return Dataset(df)


def ranking(rec: TrendingNow) -> list[str]:
    s = rec.score(np.array([-1]), [np.zeros(0, np.int64)])[0]
    return [str(rec.item_ids[i]) for i in np.lexsort((np.arange(len(s)), -s))]


def test_known_answer_growth_ranking_and_boundary():
    data = known_answer_data()
    rec = TrendingNow(growth_smoothing=5.0).fit(data, TrainingOptions())
    assert ranking(rec) == ["B", "A", "C", "E", "F", "D"]
    idx = {str(i): k for k, i in enumerate(rec.item_ids)}
    assert rec.latest[idx["A"]] == 20 and rec.previous[idx["A"]] == 10
    assert rec.latest[idx["F"]] == 0 and rec.previous[idx["F"]] == 4  # on the boundary
    np.testing.assert_allclose(rec.item_scores[idx["B"]], 6 / 5 + 1e-6 * 6 / 30, rtol=1e-6)
    np.testing.assert_allclose(rec.item_scores[idx["D"]], -15 / 25 + 1e-6 * 5 / 30, rtol=1e-6)
    # C and E both grow 0: C's 30 latest interactions put it first
    assert rec.item_scores[idx["C"]] > rec.item_scores[idx["E"]]
    # every user gets the same list
    s = rec.score(np.array([0, 5, -1]), [np.array([0]), np.zeros(0, np.int64), np.array([1])])
    assert (s == s[0]).all()


def test_smaller_smoothing_favours_relative_growth_of_small_items():
    data = known_answer_data()
    # s = 100: A (10/110 = 0.09) beats B (6/100 = 0.06); s = 5: B (1.2) beats A (0.67)
    assert ranking(TrendingNow(growth_smoothing=100.0).fit(data, TrainingOptions()))[:2] == [
        "A",
        "B",
    ]


def test_window_width_changes_the_answer():
    # A week window: A..D and F fall in the latest week; E's old interactions now count
    data = known_answer_data()
    rec = TrendingNow(trend_discovery_frequency="7 days").fit(data, TrainingOptions())
    idx = {str(i): k for k, i in enumerate(rec.item_ids)}
    assert rec.latest[idx["C"]] == 60 and rec.previous[idx["C"]] == 0
    e = data.interactions.loc[data.interactions["ITEM_ID"] == "E", "TIMESTAMP"]
    week = 7 * DAY
    assert rec.latest[idx["E"]] == ((e > END - week) & (e <= END)).sum() > 0
    assert rec.previous[idx["E"]] == ((e > END - 2 * week) & (e <= END - week)).sum() > 0
    assert ranking(rec)[0] == "C"  # 0 → 60 with the wider window


@pytest.mark.parametrize("bad", ["", "1 week", "0 hours", "-1 day", "soon"])
def test_bad_frequency_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="trend_discovery_frequency"):
        TrendingNow(trend_discovery_frequency=bad)
    assert window_seconds("30 minutes") == 1800 and window_seconds("3 hours") == 3 * 3600


def test_artifact_round_trip(tmp_path):
    rec = TrendingNow().fit(known_answer_data(), TrainingOptions())
    storage = Storage(str(tmp_path))
    rec.save(storage, "m")
    loaded, meta = load_model(storage, "m")
    assert ranking(loaded) == ranking(rec) and meta["state"]["window_end"] == END


@pytest.fixture
def trending_campaign(tmp_path, monkeypatch):
    root = tmp_path / "configs"
    shutil.copytree(REPO / "configs", root)
    (root / "solutions" / "synthetic-trending.yaml").write_text(
        "dataset_group: synthetic\nrecipe: trending-now\n"
        "hyperparameters: {trend_discovery_frequency: 1 hour}\n"
    )
    (root / "campaigns" / "synthetic-trending.yaml").write_text(
        "solution: synthetic-trending\nconfig:\n  num_results: 5\n  exploration_weight: 0\n"
    )
    monkeypatch.setenv("RECSYS_CONFIG_DIR", str(root))
    return "synthetic-trending"


def test_the_update_recomputes_the_trend_and_batches_serve_it(
    local_storage, landed, synthetic_data, trending_campaign
):
    date = after(landed)
    imp = pipeline.import_datasets("synthetic", date, storage=local_storage)
    ver = pipeline.train(trending_campaign, imp["snapshot_id"], date, storage=local_storage)
    pipeline.deploy_campaign(trending_campaign, ver["version_id"], date, storage=local_storage)
    # two hours later: a burst on one old item and on a brand-new item, after every
    # interaction of the nightly snapshot
    start = int(datetime.fromisoformat(date).timestamp())
    burst = synthetic_data.interactions["ITEM_ID"].value_counts().index[-1]  # the least popular
    users = list(dict.fromkeys(synthetic_data.interactions["USER_ID"]))
    lines = ["USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,EVENT_VALUE,IMPRESSION"]
    lines += [f"{users[k]},{burst},{start + 60 * k},click,1.0," for k in range(12)]
    lines += [f"{users[k]},fresh1,{start + 60 * k + 30},click,1.0," for k in range(6)]
    local_storage.write_text("landing/synthetic/interactions/burst.csv", "\n".join(lines) + "\n")
    local_storage.write_text(
        "landing/synthetic/items/fresh.csv",
        f"ITEM_ID,GENRES,PRICE,CREATION_TIMESTAMP,TITLE\nfresh1,g1,1.0,{start},Fresh Thing\n",
    )
    when = (datetime.fromisoformat(date) + timedelta(hours=2)).isoformat()
    out = pipeline.run_update(trending_campaign, when, storage=local_storage)
    assert out["deploy"]["deployed"]
    rev = out["revision"]
    prefix = revision_prefix("synthetic-trending", rev["version_id"], rev["revision_id"])
    revision = local_storage.read_json(f"{prefix}/revision.json")
    assert revision["refreshed"]["trending"][:2] == [burst, "fresh1"]
    model, _ = load_model(local_storage, prefix)
    assert ranking(model)[:2] == [burst, "fresh1"]
    # served like popularity: a user who had neither gets both first; a new user too
    pipeline.batch(trending_campaign, when, storage=local_storage)
    latest = latest_key(trending_campaign)
    _, served = read_batch(local_storage, local_storage.read_json(latest)["manifest"])
    by_user = {x["input"]["userId"]: x["output"]["recommendedItems"] for x in served}
    fresh_user = next(u for u in by_user if u not in users[:12])
    assert by_user[fresh_user][:2] == [burst, "fresh1"]
    assert burst not in by_user[users[0]] and "fresh1" not in by_user[users[0]]  # seen
    body = json.dumps({"userId": "never-seen-before"}) + "\n"
    local_storage.write_bytes("batch-inputs/new.jsonl", body.encode())
    job = pipeline.batch(
        trending_campaign, when, storage=local_storage, input_key="batch-inputs/new.jsonl"
    )
    assert job["kind"] != "campaign" and not job["latest_moved"]  # an ad-hoc job: own prefix
    prefix = f"batch-jobs/{trending_campaign}/{job['batch_id']}"
    _, (line,) = read_batch(local_storage, f"{prefix}/manifest.json")
    assert line["output"]["recommendedItems"][:2] == [burst, "fresh1"]
