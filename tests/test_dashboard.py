"""The data behind the Airflow UI's Recsys view: live version, history, metrics, freshness."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from recsys import dashboard, pipeline
from recsys.campaigns import campaign_state, rollback
from recsys.ids import as_utc
from recsys.inference.batch import latest_key
from tests.test_pipeline import CAMPAIGN, after


def test_never_deployed_campaigns_are_listed_not_errors(local_storage):
    view = dashboard.overview(local_storage)
    names = [c["campaign"] for c in view["campaigns"]]
    # Every configured campaign shows up, none is deployed yet.
    assert {"movielens", "synthetic"} <= set(names)
    assert all(not c["deployed"] and c["batch"] is None for c in view["campaigns"])
    assert "Never deployed" in dashboard.render_html(view)


def test_campaign_view_after_two_nights_and_a_rollback(local_storage, landed):
    first = pipeline.run_nightly(CAMPAIGN, f"{landed}T00:00:00+00:00", storage=local_storage)
    # the next night sees one more day: what users did that day is its holdout
    second = pipeline.run_nightly(
        CAMPAIGN, after(landed), storage=local_storage, deploy_mode="force"
    )
    v1, v2 = first["version"]["version_id"], second["version"]["version_id"]
    assert v1 != v2
    rollback(local_storage, CAMPAIGN, v1, request_id="manual-1")

    view = dashboard.campaign_view(local_storage, CAMPAIGN)
    state = campaign_state(local_storage, CAMPAIGN)
    assert view["deployed"] and view["solution"] == "synthetic-popularity"
    assert view["live"]["version_id"] == v1 == state["live"]["version_id"]
    assert view["live"]["rolled_back_from"] == v2
    assert view["live"]["recipe"] == "popularity-count"
    assert view["live"]["metrics"]["precision_at_25"] == first["metrics"]["precision_at_25"]
    # History newest first: the rollback, the forced second deploy, the first deploy.
    assert [h["version_id"] for h in view["history"]] == [v1, v2, v1]
    assert view["history"][0]["reason"] == "rollback"
    # The metrics series: both versions oldest first, the live one marked.
    assert [v["version_id"] for v in view["versions"]] == [v1, v2]
    assert [v["live"] for v in view["versions"]] == [True, False]
    assert view["versions"][1]["metrics"]["coverage"] == second["metrics"]["coverage"]
    # The live version's evaluation side by side (popularity-count: challenger and baseline),
    # the training's stop, and the latest gate decision, in the data and on the page.
    ev = view["live"]["evaluation"]
    assert set(ev["arms"]) == {"challenger", "baseline"}  # v1 was the first deployment
    nd = ev["arms"]["challenger"]["metrics"]["normalized_discounted_cumulative_gain_at_10"]
    assert nd["low"] <= nd["mean"] <= nd["high"] and nd["n"] == ev["n"] > 0
    assert view["live"]["training"]["stop_reason"] == "closed_form"
    assert view["decision"]["version_id"] == v2 and view["decision"]["mode"] == "force"
    page = dashboard.render_html(dashboard.overview(local_storage))
    assert "Evaluation when trained" in page and "Latest gate decision" in page
    assert "HR@10: share of users" in page
    # The batch: the pointer's batch (the second night's: the rollback itself made none).
    latest = local_storage.read_json(latest_key(CAMPAIGN))
    batch = view["batch"]
    assert batch["batch_id"] == latest["batch_id"] and batch["complete"]
    assert batch["users"] == local_storage.read_json(latest["manifest"])["users"] > 0
    assert batch["errors"] == 0 and not batch["stale"] and batch["age_hours"] < 1


def test_freshness_turns_stale_after_the_threshold(local_storage, landed):
    pipeline.run_nightly(CAMPAIGN, after(landed), storage=local_storage)
    updated = as_utc(local_storage.read_json(latest_key(CAMPAIGN))["updated_at"])
    fresh = dashboard.batch_freshness(
        local_storage, CAMPAIGN, stale_after_hours=30, now=updated + timedelta(hours=29)
    )
    stale = dashboard.batch_freshness(
        local_storage, CAMPAIGN, stale_after_hours=30, now=updated + timedelta(hours=31)
    )
    assert not fresh["stale"] and fresh["age_hours"] == 29
    assert stale["stale"] and stale["age_hours"] == 31
    assert dashboard.batch_freshness(local_storage, "movielens") is None


def test_html_page_shows_live_version_chart_and_escapes(local_storage, landed):
    out = pipeline.run_nightly(CAMPAIGN, after(landed), storage=local_storage)
    vid = out["version"]["version_id"]
    page = dashboard.render_html(dashboard.overview(local_storage, now=datetime.now(UTC)))
    assert f"<code class='live-version'>{vid}</code>" in page
    # One polyline per charted metric that the version has, and a point per version.
    assert len(re.findall(r"<polyline class='series'", page)) == len(dashboard.CHART_METRICS)
    assert "fresh:" in page and "stale:" not in page
    assert "<script" not in page  # a static page: nothing runs in the Airflow UI's frame
    # Values from storage are escaped, never markup.
    view = {"storage": "<b>x</b>", "generated_at": "now", "campaigns": []}
    assert "<b>x</b>" not in dashboard.render_html(view)


def test_chart_skips_missing_and_nan_metrics():
    versions = [
        {"version_id": "a", "logical_date": "2024-01-01", "live": False, "metrics": None},
        {
            "version_id": "b",
            "logical_date": "2024-01-02",
            "live": True,
            "metrics": dashboard._finite({"precision_at_25": float("nan"), "coverage": 0.5}),
        },
    ]
    assert versions[1]["metrics"] == {"precision_at_25": None, "coverage": 0.5}
    svg = dashboard.metrics_chart_svg(versions)
    assert svg.count("<polyline") == 1 and "data-metric='coverage'" in svg
    assert "No evaluated version" in dashboard.metrics_chart_svg(versions[:1])
