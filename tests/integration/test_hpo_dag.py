"""The HPO DAG in a real Airflow (`airflow dags test`): mapped trial tasks sharing one Optuna
study in PostgreSQL, the best trial's model as the solution version, and the param that
turns it off."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from recsys import pipeline
from recsys.training import version_prefix
from tests import test_hpo
from tests.conftest import REPO
from tests.integration import test_nightly_dag as nightly
from tests.test_hpo import HPO_YAML, SOLUTION
from tests.test_pipeline import after

pytestmark = pytest.mark.integration
airflow_home = nightly.airflow_home  # the module-scoped migrated Airflow home
pg_url = test_hpo.pg_url  # a fresh PostgreSQL database per test


def run_dag(home, date, conf, **env):
    proc = subprocess.run(
        [str(nightly.BIN / "airflow"), "dags", "test", "recsys_hpo", date, "-c", json.dumps(conf)],
        env={**nightly._airflow_env(home), **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_hpo_dag_runs_mapped_trials_into_one_study(
    airflow_home,
    local_storage,
    landed,
    pg_url,
    tmp_path,  # noqa: F811
):
    configs = tmp_path / "configs"
    shutil.copytree(REPO / "configs", configs)
    (configs / "solutions" / f"{SOLUTION}.yaml").write_text(HPO_YAML.format(trials=4))
    (configs / "campaigns" / "synthetic-hpo.yaml").write_text(f"solution: {SOLUTION}\n")
    date = after(landed)
    imp = pipeline.import_datasets("synthetic", date, storage=local_storage)
    pipeline.validate("synthetic", imp["snapshot_id"], storage=local_storage)
    env = {
        "RECSYS_STORAGE_URL": local_storage.uri(""),
        "RECSYS_CONFIG_DIR": str(configs),
        "RECSYS_HPO_DATABASE_URL": pg_url,
    }
    rc, out = run_dag(airflow_home, date[:10], {"campaign": "synthetic-hpo", "as_of": date}, **env)
    assert rc == 0 and "state=success" in out, out[-4000:]
    versions = local_storage.list(f"solutions/{SOLUTION}/versions")
    assert len(versions) == 1
    version = local_storage.read_json(f"{version_prefix(SOLUTION, versions[0])}/version.json")
    info = version["hpo"]
    assert version["snapshot_id"] == imp["snapshot_id"] and len(info["trials"]) == 4
    assert "postgresql" in info["database"] and "@" in info["database"]
    assert info["best_value"] == max(t["value"] for t in info["trials"])
    assert {t["worker"] for t in info["trials"]} <= {0, 1}
    # off by the param: the plan task skips, nothing new is written
    files = local_storage.find("")
    rc, out = run_dag(
        airflow_home,
        date[:10],
        {"campaign": "synthetic-hpo", "as_of": date, "perform_hpo": False},
        **env,
    )
    assert rc == 0 and "perform_hpo is off" in out, out[-4000:]
    assert local_storage.find("") == files
