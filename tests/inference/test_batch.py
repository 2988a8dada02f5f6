"""Batch jobs: Personalize input/output, error lines, cold start, ranking, filters,
exploration, sharding, and crashes between the parts and the ``latest`` pointer."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from recsys import pipeline
from recsys.config import CampaignConfig
from recsys.errors import FilterError, StorageError
from recsys.inference import batch as batch_jobs
from recsys.inference.batch import latest_key, parse_request
from tests.test_pipeline import CAMPAIGN, after, read_batch

DAY = 86_400


@pytest.fixture
def live(local_storage, landed):
    out = pipeline.run_nightly(CAMPAIGN, after(landed), storage=local_storage)
    return {"date": after(landed), "version_id": out["version"]["version_id"], **out}


def lines_of(storage, manifest):
    return read_batch(storage, f"{manifest['prefix']}/manifest.json")[1]


def run(storage, live, cfg=None, **options):
    cfg = cfg or CampaignConfig.load(CAMPAIGN)
    return batch_jobs.run_batch(
        storage, cfg, live["date"], version_id=live["version_id"], **options
    )


def campaign(**serving):
    """A campaign on the synthetic solution that is not deployed: served with this config."""
    return CampaignConfig.from_dict(
        {"name": "test-batch", "solution": "synthetic-popularity", "num_results": 10, **serving}
    )


def test_input_lines_errors_cold_start_and_ranking(local_storage, live, synthetic_data):
    seen = synthetic_data.interactions.groupby("USER_ID")["ITEM_ID"].apply(set)
    known = next(iter(seen.index))
    lines = [
        json.dumps({"userId": known}),
        "{not json",
        json.dumps(["u1"]),
        json.dumps({"userId": ""}),
        json.dumps({"userId": "x" * 300}),
        json.dumps({"userId": "brand-new-user"}),
        json.dumps({"userId": known, "itemList": "i1"}),
        json.dumps({"userId": known, "filterValues": {"G": 5}}),
        "",  # blank lines are skipped
        json.dumps({"userId": known, "itemList": ["nope", "i3", "i1", "i3"]}),
    ]
    local_storage.write_text("inputs/users.jsonl", "\n".join(lines) + "\n")
    manifest = run(
        local_storage, live, campaign(exploration_weight=0), input_key="inputs/users.jsonl"
    )
    out = lines_of(local_storage, manifest)
    assert len(out) == 9 and manifest["users"] == 9 and manifest["errors"] == 6
    assert [set(o) for o in out] == [{"input", "output", "error"}] * 9
    assert [o["error"] is None for o in out] == [
        True,
        False,
        False,
        False,
        False,
        True,
        False,
        False,
        True,
    ]
    assert out[1]["input"] == "{not json" and "not valid JSON" in out[1]["error"]
    assert "userId" in out[3]["error"] and "userId" in out[4]["error"]
    assert "itemList" in out[6]["error"] and "filterValues.G" in out[7]["error"]
    assert all(o["output"] is None for o in out if o["error"])
    first = out[0]["output"]
    assert len(first["recommendedItems"]) == 10
    assert not set(first["recommendedItems"]) & seen[known]
    # Unknown user: the cold-start answer, popularity (nothing seen to exclude).
    pop = synthetic_data.interactions["ITEM_ID"].value_counts()
    cold = out[5]["output"]["recommendedItems"]
    assert out[5]["error"] is None and len(cold) == 10
    assert cold[0] == pop.index[0] and manifest["cold_start"] == 1
    # Ranking: the given items re-ordered by score (duplicates once), unknown items last,
    # unscored; the known items' scores are normalised over the list (they sum to 1).
    ranked = out[8]["output"]
    assert ranked["recommendedItems"][-1] == "nope" and ranked["scores"][-1] is None
    assert sorted(ranked["recommendedItems"][:2]) == ["i1", "i3"]
    assert ranked["scores"][0] >= ranked["scores"][1] > 0
    assert sum(ranked["scores"][:2]) == pytest.approx(1.0, abs=1e-6)
    # Recommendations: scores in [0, 1], descending, normalised over the whole catalogue.
    for o in (first, out[5]["output"]):
        sc = o["scores"]
        assert all(0 <= x <= 1 for x in sc) and sc == sorted(sc, reverse=True)
        assert 0 < sum(sc) <= 1 + 1e-6
    # the cold-start answer over the whole catalogue: each item's share of the interactions
    shares = pop / pop.sum()
    np.testing.assert_allclose(out[5]["output"]["scores"], shares.to_numpy()[:10], atol=1e-6)


def test_parse_request_defaults_and_overrides():
    r = parse_request('{"userId": "u", "filterValues": {"A": "\\"x\\""}}', {"A": ["y"], "B": ["z"]})
    assert r.error is None and r.filter_values == {"A": ["x"], "B": ["z"]}


def test_filters_change_outputs_as_specified(local_storage, live, synthetic_data):
    items = synthetic_data.items.set_index("ITEM_ID")
    cheap = run(local_storage, live, campaign(filter="EXCLUDE ItemID WHERE Items.PRICE > 20"))
    recs = [i for o in lines_of(local_storage, cheap) for i in o["output"]["recommendedItems"]]
    assert recs and (items.loc[recs, "PRICE"] <= 20).all()

    genre = synthetic_data.items["GENRES"].str.split("|").explode().value_counts().index[0]
    local_storage.write_text(
        "inputs/g.jsonl",
        json.dumps({"userId": "u1", "filterValues": {"GENRE": f'"{genre}"'}})
        + "\n"
        + json.dumps({"userId": "u1"})
        + "\n",
    )
    by_genre = run(
        local_storage,
        live,
        campaign(filter="INCLUDE ItemID WHERE Items.GENRES IN ($GENRE)", exploration_weight=0),
        input_key="inputs/g.jsonl",
    )
    with_param, without = (
        o["output"]["recommendedItems"] for o in lines_of(local_storage, by_genre)
    )
    assert all(genre in items.loc[i, "GENRES"].split("|") for i in with_param)
    assert not all(
        genre in items.loc[i, "GENRES"].split("|") for i in without
    )  # no value: no filter

    # INCLUDE by the user's own purchases (seen items kept for this campaign).
    purchased = (
        synthetic_data.interactions.query("EVENT_TYPE == 'purchase'")
        .groupby("USER_ID")["ITEM_ID"]
        .apply(set)
    )
    again = run(
        local_storage,
        live,
        campaign(
            filter='INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase")',
            exclude_seen=False,
        ),
    )
    for o in lines_of(local_storage, again):
        got = set(o["output"]["recommendedItems"])
        assert got <= purchased.get(o["input"]["userId"], set())
        assert len(got) == min(10, len(purchased.get(o["input"]["userId"], set())))


def test_filter_on_unknown_field_is_refused(local_storage, live):
    with pytest.raises(FilterError, match="Items has no field COLOR"):
        run(local_storage, live, campaign(filter='EXCLUDE ItemID WHERE Items.COLOR IN ("red")'))


def test_exploration_weight_changes_the_share_of_cold_items(local_storage, live, synthetic_data):
    from recsys.inference.exploration import COLD_EVIDENCE

    as_of = pd.Timestamp(live["date"]).timestamp()
    created = synthetic_data.items.set_index("ITEM_ID")["CREATION_TIMESTAMP"]
    counts = synthetic_data.interactions["ITEM_ID"].value_counts()
    young = created[as_of - created < 30 * DAY].index
    cold = {i for i in young if counts.get(i, 0) < COLD_EVIDENCE}
    assert cold and set(young) - cold  # some young items have data: age alone is not cold

    def served(weight):
        m = run(local_storage, live, campaign(exploration_weight=weight))
        return [o["output"] for o in lines_of(local_storage, m)], m

    def share(outs):
        recs = [i for o in outs for i in o["recommendedItems"]]
        return np.mean([i in cold for i in recs])

    (o0, m0), (o5, _), (o1, _) = served(0.0), served(0.5), served(1.0)
    assert share(o0) < share(o5) < share(o1) <= 0.5  # at most half a list explores
    for outs in (o5, o1):
        # the first position stays the model's own: the same item as without exploration
        assert [o["recommendedItems"][0] for o in outs] == [o["recommendedItems"][0] for o in o0]
        for o in outs:  # scores stay descending in [0, 1], summing to at most 1
            sc = o["scores"]
            assert sc == sorted(sc, reverse=True) and all(0 <= x <= 1 for x in sc)
            assert sum(sc) <= 1 + 1e-6
    # young items with plenty of data get no exposure beyond what relevance gives them
    warm_young = set(young) - cold
    for a, b in zip(o0, o1, strict=True):
        assert set(b["recommendedItems"]) & warm_young <= set(a["recommendedItems"]) & warm_young
    again, m0b = served(0.0)
    assert m0b["batch_id"] == m0["batch_id"]  # same inputs, same batch (reused)


def test_shards_give_the_same_lines_as_one_job(local_storage, live):
    one = lines_of(local_storage, run(local_storage, live, num_results=5))
    three = run(local_storage, live, num_results=5, shards=3)
    assert len(three["parts"]) == 3 and three["shards"] == 3
    assert lines_of(local_storage, three) == one


def test_crash_between_parts_and_pointer_keeps_latest(local_storage, live, monkeypatch):
    before = local_storage.read_bytes(latest_key(CAMPAIGN))
    spec = pipeline.plan_batch(CAMPAIGN, "2031-01-01", shards=3, storage=local_storage)
    for shard in (0, 2):
        pipeline.batch_shard(spec, shard, local_storage)
    # A shard missing: finalize refuses (retryable), nothing moves.
    with pytest.raises(StorageError, match=r"shards \[1\] are not complete"):
        pipeline.finalize_batch(spec, local_storage)
    pipeline.batch_shard(spec, 1, local_storage)
    # Killed after manifest and _SUCCESS, before the pointer.
    original = local_storage.write_pointer

    def killed(key, obj):
        raise RuntimeError("killed before the latest pointer")

    monkeypatch.setattr(local_storage, "write_pointer", killed)
    with pytest.raises(RuntimeError, match="killed before"):
        pipeline.finalize_batch(spec, local_storage)
    assert local_storage.read_bytes(latest_key(CAMPAIGN)) == before
    assert not local_storage.exists("locks/batch-latest-synthetic.lock")
    monkeypatch.setattr(local_storage, "write_pointer", original)
    # The retry reuses shards and manifest and moves the pointer.
    files = set(local_storage.find(spec["prefix"]))
    done = pipeline.finalize_batch(spec, local_storage)
    assert set(local_storage.find(spec["prefix"])) == files
    assert local_storage.read_json(latest_key(CAMPAIGN))["batch_id"] == done["batch_id"]
