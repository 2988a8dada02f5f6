"""Item-keyed batch jobs: related items (similar-items) and user segments (item affinity),
in Personalize's formats, with error lines, cold items, reruns and the latest pointer."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from recsys import pipeline
from recsys.config import CampaignConfig
from recsys.data.dataset import Dataset
from recsys.errors import ConfigError, DataError, NotFoundError
from recsys.inference.item_jobs import job_root, run_item_job
from recsys.inference.segments import user_affinity
from recsys.recipes import load_model
from recsys.training import version_prefix
from tests.conftest import REPO
from tests.test_pipeline import after


@pytest.fixture
def configs(tmp_path, monkeypatch):
    """The repository's configs plus two synthetic solutions and campaigns for these jobs."""
    root = tmp_path / "configs"
    shutil.copytree(REPO / "configs", root)
    for name, recipe in (("similar", "similar-items"), ("pop", "popularity-count")):
        (root / "solutions" / f"synthetic-{name}.yaml").write_text(
            f"dataset_group: synthetic\nrecipe: {recipe}\nhyperparameters: {{}}\n"
        )
        (root / "campaigns" / f"synthetic-{name}.yaml").write_text(
            f"solution: synthetic-{name}\nconfig:\n  num_results: 5\n"
            + (
                "item_jobs:\n  related-items: {num_results: 3}\n  segments: {num_results: 4}\n"
                if name == "similar"
                else ""
            )
        )
    monkeypatch.setenv("RECSYS_CONFIG_DIR", str(root))
    return root


def deployed(storage, landed, name):
    date = after(landed)
    imp = pipeline.import_datasets("synthetic", date, storage=storage)
    ver = pipeline.train(f"synthetic-{name}", imp["snapshot_id"], date, storage=storage)
    pipeline.deploy_campaign(f"synthetic-{name}", ver["version_id"], date, storage=storage)
    return date, ver["version_id"], imp["snapshot_id"]


def lines_of(storage, manifest):
    body = storage.read_text(manifest["parts"][0]["key"])
    return [json.loads(x) for x in body.splitlines()]


def test_related_items_format_errors_cold_items_and_rerun(
    local_storage, landed, synthetic_data, configs
):
    date, vid, _ = deployed(local_storage, landed, "similar")
    seen = set(synthetic_data.interactions["ITEM_ID"])
    cold = [i for i in synthetic_data.items["ITEM_ID"] if i not in seen]
    warm = sorted(seen)[0]
    inputs = [
        {"itemId": warm},
        "{broken",
        {"itemId": 5},
        {"itemId": "no-such-item"},
        *({"itemId": c} for c in cold[:3]),
    ]
    body = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in inputs) + "\n\n"
    local_storage.write_bytes("batch-inputs/items.jsonl", body.encode())
    camp = CampaignConfig.load("synthetic-similar")
    manifest = run_item_job(
        local_storage, camp, "related-items", date, input_key="batch-inputs/items.jsonl"
    )
    out = lines_of(local_storage, manifest)
    assert len(out) == len(inputs) and manifest["items"] == len(inputs)
    assert manifest["errors"] == 3
    first = out[0]
    assert first["input"] == {"itemId": warm} and first["error"] is None
    assert set(first["output"]) == {"recommendedItems", "scores"}
    recs, scores = first["output"]["recommendedItems"], first["output"]["scores"]
    assert 0 < len(recs) <= 5 and warm not in recs and scores == sorted(scores, reverse=True)
    assert out[1]["output"] is None and "not valid JSON" in out[1]["error"]
    assert "itemId must be" in out[2]["error"]
    assert "'no-such-item' is not in the model" in out[3]["error"]
    assert cold, "the synthetic catalogue has items without interactions"
    meta = synthetic_data.items.set_index("ITEM_ID")
    tokens = {
        i: set(str(g).split("|")) | set(str(t).lower().split())
        for i, g, t in zip(meta.index, meta["GENRES"], meta["TITLE"], strict=True)
    }
    for line, c in zip(out[4:], cold[:3], strict=True):
        # a cold item's neighbours come from its metadata: each shares a genre or title word
        assert line["error"] is None and line["output"]["recommendedItems"]
        for other in line["output"]["recommendedItems"]:
            assert tokens[other] & tokens[c]
    latest = local_storage.read_json(
        f"{job_root('related-items', 'synthetic-similar')}/latest.json"
    )
    assert latest["job_id"] == manifest["job_id"] and latest["version_id"] == vid
    again = run_item_job(
        local_storage, camp, "related-items", date, input_key="batch-inputs/items.jsonl"
    )
    assert again["job_id"] == manifest["job_id"] and again["created_at"] == manifest["created_at"]


def test_related_items_without_input_answers_the_catalogue_and_refuses_other_recipes(
    local_storage, landed, configs
):
    date, vid, _ = deployed(local_storage, landed, "similar")
    manifest = run_item_job(
        local_storage, CampaignConfig.load("synthetic-similar"), "related-items", date
    )
    recipe, _ = load_model(local_storage, version_prefix("synthetic-similar", vid))
    out = lines_of(local_storage, manifest)
    assert [x["input"]["itemId"] for x in out] == [str(i) for i in recipe.item_ids]
    date, _, _ = deployed(local_storage, landed, "pop")
    with pytest.raises(ConfigError, match="item-to-item recipe"):
        run_item_job(local_storage, CampaignConfig.load("synthetic-pop"), "related-items", date)
    with pytest.raises(DataError, match="numResults"):
        run_item_job(
            local_storage,
            CampaignConfig.load("synthetic-similar"),
            "related-items",
            date,
            num_results=501,
        )


def test_segments_rank_users_by_score_and_leave_out_users_who_had_the_item(
    local_storage, landed, synthetic_data, configs
):
    date, vid, sid = deployed(local_storage, landed, "similar")
    recipe, _ = load_model(local_storage, version_prefix("synthetic-similar", vid))
    data = Dataset.load(local_storage, "synthetic", sid)
    counts = synthetic_data.interactions["ITEM_ID"].value_counts()
    item = counts.index[len(counts) // 2]
    local_storage.write_bytes(
        "batch-inputs/seg.jsonl",
        (json.dumps({"itemId": item}) + "\n" + json.dumps({"itemId": "nope"}) + "\n").encode(),
    )
    camp = CampaignConfig.load("synthetic-similar")
    manifest = run_item_job(
        local_storage, camp, "segments", date, input_key="batch-inputs/seg.jsonl", num_results=7
    )
    out = lines_of(local_storage, manifest)
    assert out[0]["input"] == {"itemId": item} and out[0]["error"] is None
    assert list(out[0]["output"]) == ["usersList"]
    segment = out[0]["output"]["usersList"]
    assert len(segment) == 7 and len(set(segment)) == 7
    had = set(data.interactions.loc[data.interactions["ITEM_ID"] == item, "USER_ID"])
    assert not set(segment) & had
    assert "'nope' is not in the model" in out[1]["error"] and out[1]["output"] is None
    # the segment is the users with the highest scores for the item, in order (brute force)
    pos = list(recipe.item_ids).index(item)
    to_model = {str(i): k for k, i in enumerate(recipe.item_ids)}
    scores = {}
    for u, h in zip(data.user_ids, data.user_histories(), strict=True):
        hist = np.array([to_model[str(data.item_ids[i])] for i in h], dtype=np.int64)
        if len(hist) and str(u) not in had:
            scores[str(u)] = float(recipe.score(np.array([-1]), [hist])[0, pos])
    best = sorted(scores, key=lambda u: -scores[u])
    assert [scores[u] for u in segment] == [scores[u] for u in best[:7]]


def test_user_affinity_breaks_ties_by_user_order_and_keeps_seen_when_asked(
    local_storage, landed, configs
):
    date, vid, sid = deployed(local_storage, landed, "pop")
    recipe, _ = load_model(local_storage, version_prefix("synthetic-pop", vid))
    data = Dataset.load(local_storage, "synthetic", sid)
    users, idx, _ = user_affinity(recipe, data, np.array([0]), 4, exclude_seen=False)
    # popularity scores every user the same: the first four users with a history
    with_history = [u for u, h in zip(data.user_ids, data.user_histories(), strict=True) if len(h)]
    assert list(users[idx[0]]) == with_history[:4]


def test_cli_related_items_and_segments(local_storage, landed, configs, tmp_path, capsys):
    from recsys.cli import main

    root = str(local_storage.uri(""))
    date, vid, _ = deployed(local_storage, landed, "similar")
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"itemId": "i1"}) + "\n" + json.dumps({"itemId": "zzz"}) + "\n")
    for kind, field in (("related-items", "recommendedItems"), ("segments", "usersList")):
        argv = ["--storage", root, kind, "--campaign", "synthetic-similar", "--date", date]
        assert main([*argv, "--input", str(path), "--num-results", "3"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["kind"] == kind and out["version_id"] == vid
        assert out["items"] == 2 and out["errors"] == 1
        manifest = local_storage.read_json(
            f"{job_root(kind, 'synthetic-similar')}/{out['job_id']}/manifest.json"
        )
        first = lines_of(local_storage, manifest)[0]
        assert len(first["output"][field]) == 3
    # a campaign never deployed: exit 4, one line; an unknown campaign: exit 2
    argv = ["--storage", root, "segments", "--campaign", "synthetic-pop", "--date", date]
    assert main(argv) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "never been deployed" in err[0]
    argv = ["--storage", root, "related-items", "--campaign", "nope", "--date", date]
    assert main(argv) == 2


def test_softmax_logits_are_compared_as_probabilities_across_users():
    import pandas as pd

    from recsys.recipes.user_personalization import UserPersonalization

    class Logits(UserPersonalization):
        """Fixed logits: user 0's are shifted by +100 (softmax does not see a shift)."""

        def score(self, users, histories):
            table = np.array([[100.0, 105.0, 0.0], [0.0, -1.0, -50.0]], np.float32)
            return table[np.asarray(users)]

        def factors(self, users, histories):
            return None

    df = pd.DataFrame(
        {"USER_ID": ["a", "b"], "ITEM_ID": ["z", "z"], "TIMESTAMP": [1, 2], "EVENT_TYPE": "x"}
    )
    data = Dataset(df, items=pd.DataFrame({"ITEM_ID": ["i0", "i1", "z"]}))
    rec = Logits()
    rec.item_ids, rec.user_ids = data.item_ids, data.user_ids
    users, idx, val = user_affinity(rec, data, np.array([0]), 2)
    # raw logits would put user a (100) first; p(i0 | a) = 0.007 < p(i0 | b) = 0.73
    assert list(users[idx[0]]) == ["b", "a"]
    np.testing.assert_allclose(val[0][0], -np.log1p(np.exp(-1.0)), rtol=1e-5)


def test_configured_jobs_run_after_the_batch_and_bad_sections_are_refused(
    local_storage, landed, configs
):
    from recsys.inference.item_jobs import configured_jobs, run_configured

    date, vid, _ = deployed(local_storage, landed, "similar")
    assert configured_jobs("synthetic-pop") == {}
    out = run_configured(local_storage, "synthetic-similar", date)
    assert [o["kind"] for o in out] == ["related-items", "segments"]
    for o, field, n in zip(out, ("recommendedItems", "usersList"), (3, 4), strict=True):
        assert o["version_id"] == vid and o["errors"] == 0
        latest = local_storage.read_json(f"{job_root(o['kind'], 'synthetic-similar')}/latest.json")
        line = lines_of(local_storage, local_storage.read_json(latest["manifest"]))[0]
        assert len(line["output"][field]) == n
    path = configs / "campaigns" / "synthetic-similar.yaml"
    for bad, message in (
        ("item_jobs:\n  nearby: {}\n", "unknown kind 'nearby'"),
        ("item_jobs:\n  segments: {top: 3}\n", "unknown \\['top'\\]"),
        ("item_jobs:\n  segments: {input: nowhere.jsonl}\n", "not found"),
    ):
        path.write_text("solution: synthetic-similar\n" + bad)
        with pytest.raises((ConfigError, NotFoundError), match=message):
            run_configured(local_storage, "synthetic-similar", date)
