"""HPO: Personalize-style ranges, one Optuna study shared by parallel workers (SQLite and the
PostgreSQL server), resume after a killed trial, the best trial's model as the version."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pytest

from recsys import hpo, pipeline
from recsys.errors import ConfigError
from recsys.recipes import load_model
from recsys.training import version_prefix
from tests.conftest import REPO
from tests.test_pipeline import after

SOLUTION = "synthetic-sims-hpo"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}

HPO_YAML = """
dataset_group: synthetic
recipe: sims
hyperparameters: {{min_cointeraction_count: 3}}
perform_hpo: true
hpo_config:
  hpo_objective: {{type: Maximize, metric_name: validation_ndcg_at_10}}
  hpo_resource_config: {{max_number_of_training_jobs: {trials}, max_parallel_training_jobs: 2}}
  trial_heartbeat_seconds: 1
  algorithm_hyper_parameter_ranges:
    integer_hyper_parameter_ranges:
      - {{name: min_cointeraction_count, min_value: 1, max_value: 6}}
    continuous_hyper_parameter_ranges:
      - {{name: popularity_discount_factor, min_value: 0.0, max_value: 1.0}}
    categorical_hyper_parameter_ranges:
      - {{name: max_neighbours, values: [20, 200]}}
"""


@pytest.fixture
def configs(tmp_path, monkeypatch):
    root = tmp_path / "configs"
    shutil.copytree(REPO / "configs", root)
    monkeypatch.setenv("RECSYS_CONFIG_DIR", str(root))

    def write(trials: int = 5) -> str:
        (root / "solutions" / f"{SOLUTION}.yaml").write_text(HPO_YAML.format(trials=trials))
        return str(root)

    write()
    return write


@pytest.fixture
def snapshot(local_storage, landed):
    date = after(landed)
    return date, pipeline.import_datasets("synthetic", date, storage=local_storage)["snapshot_id"]


def parse(ranges: dict, **extra):
    return hpo.HpoConfig.from_dict(
        {"algorithm_hyper_parameter_ranges": ranges, **extra}, "sims", "hpo_config"
    )


def test_config_ranges_and_their_errors():
    cfg = parse(
        {
            "integer_hyper_parameter_ranges": [{"name": "bptt", "min_value": 10, "max_value": 50}],
            "continuous_hyper_parameter_ranges": [
                {
                    "name": "popularity_discount_factor",
                    "min_value": 0.01,
                    "max_value": 1,
                    "scaling": "Logarithmic",
                }
            ],
            "categorical_hyper_parameter_ranges": [{"name": "max_neighbours", "values": [5, 9]}],
        },
        hpo_resource_config={"max_number_of_training_jobs": 4, "max_parallel_training_jobs": 4},
    )
    assert [(r.name, r.kind) for r in cfg.ranges] == [
        ("bptt", "integer"),
        ("popularity_discount_factor", "continuous"),
        ("max_neighbours", "categorical"),
    ]
    assert cfg.ranges[1].log and cfg.max_trials == cfg.max_parallel == 4
    bad = [
        (
            {"integer_hyper_parameter_ranges": [{"name": "nope", "min_value": 1, "max_value": 2}]},
            {},
            "no hyperparameter 'nope'",
        ),
        (
            {"integer_hyper_parameter_ranges": [{"name": "bptt", "min_value": 5, "max_value": 5}]},
            {},
            "min_value must be < max_value",
        ),
        (
            {
                "integer_hyper_parameter_ranges": [
                    {"name": "bptt", "min_value": 1.5, "max_value": 5}
                ]
            },
            {},
            "must be an integer",
        ),
        (
            {
                "continuous_hyper_parameter_ranges": [
                    {
                        "name": "popularity_discount_factor",
                        "min_value": 0,
                        "max_value": 1,
                        "scaling": "logarithmic",
                    }
                ]
            },
            {},
            "min_value > 0",
        ),
        (
            {"categorical_hyper_parameter_ranges": [{"name": "bptt", "values": []}]},
            {},
            "non-empty values",
        ),
        ({"weird_hyper_parameter_ranges": []}, {}, "unknown key"),
        ({}, {}, "at least one range"),
        (
            {"categorical_hyper_parameter_ranges": [{"name": "bptt", "values": [1]}]},
            {"hpo_objective": {"metric_name": "accuracy"}},
            "unknown metric 'accuracy'",
        ),
        (
            {"categorical_hyper_parameter_ranges": [{"name": "bptt", "values": [1]}]},
            {
                "hpo_resource_config": {
                    "max_number_of_training_jobs": 2,
                    "max_parallel_training_jobs": 3,
                }
            },
            "max_parallel",
        ),
        (
            {"categorical_hyper_parameter_ranges": [{"name": "bptt", "values": [1]}]},
            {"surprise": 1},
            "unknown keys",
        ),
    ]
    for ranges, extra, message in bad:
        with pytest.raises(ConfigError, match=message):
            parse(ranges, **extra)


def test_holdout_newest_and_the_objective_on_a_known_case():
    import pandas as pd

    from recsys.data.dataset import Dataset
    from recsys.recipes import Sims, TrainingOptions

    pairs = [(f"u{i}", x, t) for i in range(4) for t, x in enumerate(("a", "b"))]
    pairs += [("v", "a", 10)]  # one interaction: not held out
    df = pd.DataFrame(pairs, columns=["USER_ID", "ITEM_ID", "TIMESTAMP"])
    df["EVENT_TYPE"] = "click"
    split = hpo.holdout_newest(Dataset(df))
    data = split.train
    assert len(split.users) == 4 and set(data.item_ids[split.targets]) == {"b"}
    assert len(data.interactions) == 5  # 4 users keep "a", v keeps its only interaction
    # popularity-like sims with no co-occurrence: "b" (no training interaction) ranks after
    # "a" is excluded; with 2 items, the held-out item is first: NDCG@10 = 1
    rec = Sims(min_cointeraction_count=1).fit(data, TrainingOptions())
    assert hpo.validation_ndcg_at_10(rec, split) == pytest.approx(1.0)


def test_sqlite_study_best_trial_becomes_the_version(local_storage, snapshot, configs):
    date, sid = snapshot
    out = hpo.run_hpo(local_storage, SOLUTION, sid, date)
    version = local_storage.read_json(f"{version_prefix(SOLUTION, out['version_id'])}/version.json")
    info = version["hpo"]
    assert info["database"].startswith("sqlite:///")
    assert len(info["trials"]) == 5 and info["failed_trials"] == 0
    values = [t["value"] for t in info["trials"]]
    assert info["best_value"] == max(values)
    baseline = info["trials"][0]
    assert baseline["params"] == {
        "min_cointeraction_count": 3,  # the solution's own value
        "popularity_discount_factor": 0.5,  # the recipe default
        "max_neighbours": 200,
    }
    assert info["gain_over_baseline"] == pytest.approx(info["best_value"] - baseline["value"])
    # the version's model is the best trial's, and scores what the study recorded
    model, meta = load_model(local_storage, version_prefix(SOLUTION, out["version_id"]))
    assert info["best_hyperparameters"] == version["solution_config"]["hyperparameters"]
    for k, v in info["best_hyperparameters"].items():
        assert model.hyperparameters[k] == meta["hyperparameters"][k] == v
    from recsys.config import SolutionConfig
    from recsys.training import load_training_data

    data = load_training_data(local_storage, SolutionConfig.load(SOLUTION), sid)
    assert hpo.validation_ndcg_at_10(model, hpo.holdout_newest(data)) == pytest.approx(
        info["best_value"]
    )
    # a rerun reuses the version and trains nothing
    again = hpo.run_hpo(local_storage, SOLUTION, sid, date)
    assert again["version_id"] == out["version_id"]
    assert (
        local_storage.read_json(f"{version_prefix(SOLUTION, out['version_id'])}/version.json")[
            "created_at"
        ]
        == version["created_at"]
    )


@pytest.fixture
def pg_url():
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(connect_timeout=3, **PG)
    except psycopg2.OperationalError as exc:  # pragma: no cover - no server here
        pytest.skip(f"no PostgreSQL at {PG['host']}:{PG['port']}: {exc}")
    admin.autocommit = True
    name = f"recsys_hpo_{uuid.uuid4().hex[:10]}"
    admin.cursor().execute(f"CREATE DATABASE {name}")
    yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


WORKER = """
import json, os, sys
from recsys import hpo
from recsys.storage import Storage
root, sid, date, url, worker, kill = sys.argv[1:7]
if kill == "1":
    def die(*args):
        os._exit(9)  # killed mid-trial: no exception, no cleanup, the trial stays RUNNING
    hpo.module_train_trial = die
out = hpo.run_trials(Storage(root), {solution!r}, sid, date, int(worker), url)
print("RESULT " + json.dumps(out))
"""


def worker(root, sid, date, url, n, kill=False, config_dir=None):
    code = textwrap.dedent(WORKER.format(solution=SOLUTION))
    env = {**__import__("os").environ, "RECSYS_CONFIG_DIR": config_dir, "RECSYS_PROGRESS": "0"}
    return subprocess.Popen(
        [sys.executable, "-c", code, root, sid, date, url, str(n), "1" if kill else "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(REPO),
    )


def result(proc) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def _study(url, date, sid):
    import optuna

    from recsys.config import SolutionConfig

    name = hpo.study_name(SolutionConfig.load(SOLUTION), hpo.load_hpo(SOLUTION), sid, date)
    return optuna.load_study(study_name=name, storage=url)


def test_two_workers_in_parallel_share_one_postgres_study(local_storage, snapshot, configs, pg_url):
    date, sid = snapshot
    config_dir = configs(trials=8)
    plan = hpo.plan_hpo(local_storage, SOLUTION, sid, date, pg_url)
    assert plan["workers"] == [0, 1] and plan["max_trials"] == 8
    root = local_storage.uri("")
    procs = [worker(root, sid, date, pg_url, n, config_dir=config_dir) for n in (0, 1)]
    outs = [result(p) for p in procs]
    from optuna.trial import TrialState

    trials = _study(pg_url, date, sid).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert 8 <= len(complete) <= 9  # both may start the last one at once
    assert {t.user_attrs["worker"] for t in complete} == {0, 1}  # both did work
    # workers draw different points (one sampler seed each)
    assert len({json.dumps(t.params, sort_keys=True) for t in complete}) == len(complete)
    assert sorted(n for o in outs for n in o["trials"]) == sorted(t.number for t in complete)
    for t in complete:  # every trial's model is in storage, before it was reported
        assert local_storage.exists(f"{t.user_attrs['model_prefix']}/model.json")
    version = hpo.finalize_hpo(local_storage, SOLUTION, sid, date, pg_url)
    assert version["hpo"]["best_value"] == max(t.value for t in complete)
    assert "postgresql" in version["hpo"]["database"]


def test_a_killed_trial_is_failed_and_retried_by_the_next_worker(
    local_storage, snapshot, configs, pg_url
):
    date, sid = snapshot
    config_dir = configs(trials=3)
    hpo.plan_hpo(local_storage, SOLUTION, sid, date, pg_url)
    root = local_storage.uri("")
    killed = worker(root, sid, date, pg_url, 0, kill=True, config_dir=config_dir)
    killed.communicate(timeout=120)
    assert killed.returncode == 9
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    (stale,) = _study(pg_url, date, sid).get_trials()
    assert stale.state == TrialState.RUNNING  # nobody said it died
    out = result(worker(root, sid, date, pg_url, 1, config_dir=config_dir))
    trials = _study(pg_url, date, sid).get_trials()
    states = [t.state for t in trials]
    assert states.count(TrialState.FAIL) == 1 and states.count(TrialState.COMPLETE) == 3
    retried = [
        t
        for t in trials
        if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == stale.number
    ]
    assert len(retried) == 1 and retried[0].params == stale.params  # same point, resumed
    assert retried[0].state == TrialState.COMPLETE and retried[0].number in out["trials"]
    version = hpo.finalize_hpo(local_storage, SOLUTION, sid, date, pg_url)
    assert version["hpo"]["failed_trials"] == 1 and len(version["hpo"]["trials"]) == 3
    assert np.isfinite(version["hpo"]["best_value"])


def test_perform_hpo_off_and_non_local_storage_without_a_database(local_storage, snapshot):
    date, sid = snapshot
    with pytest.raises(ConfigError, match="perform_hpo is not true"):
        hpo.plan_hpo(local_storage, "synthetic-popularity", sid, date)
    from recsys.storage import Storage

    s3 = Storage.__new__(Storage)
    s3.protocol = "s3"
    with pytest.raises(ConfigError, match="RECSYS_HPO_DATABASE_URL"):
        hpo.database_url(s3)


def test_cli_hpo_steps(local_storage, snapshot, configs, capsys):
    from recsys.cli import main

    date, sid = snapshot
    configs(trials=3)
    base = ["--storage", local_storage.uri(""), "hpo", "--solution", SOLUTION]
    base += ["--snapshot", sid, "--date", date]
    assert main([*base, "--step", "plan"]) == 0
    assert json.loads(capsys.readouterr().out)["max_trials"] == 3
    assert main([*base, "--step", "trials", "--worker", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["complete"] == 3 and out["worker"] == 1 and len(out["trials"]) == 3
    assert main(base) == 0  # run: the plan and trials are done; it finalizes
    out = json.loads(capsys.readouterr().out)
    assert out["hpo"]["best_trial"] in range(3) and out["version_id"]
    # a solution without perform_hpo: exit 2 and one line
    bad = ["--storage", local_storage.uri(""), "hpo", "--solution", "synthetic-popularity"]
    assert main([*bad, "--snapshot", sid, "--date", date]) == 2
    assert "perform_hpo is not true" in capsys.readouterr().err
