"""The item-jobs DAG in a real Airflow (`airflow dags test`): the campaign file's related-items
and segments jobs on its live version, and a skip for a campaign without them."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from recsys import pipeline
from recsys.inference.item_jobs import job_root
from tests.conftest import REPO
from tests.integration import test_nightly_dag as nightly
from tests.test_pipeline import after

pytestmark = pytest.mark.integration
airflow_home = nightly.airflow_home  # the module-scoped migrated Airflow home


def test_item_jobs_dag_runs_the_configured_jobs(
    airflow_home, local_storage, landed, tmp_path, monkeypatch
):
    configs = tmp_path / "configs"
    shutil.copytree(REPO / "configs", configs)
    (configs / "solutions" / "syn-similar.yaml").write_text(
        "dataset_group: synthetic\nrecipe: similar-items\nhyperparameters: {}\n"
    )
    (configs / "campaigns" / "syn-similar.yaml").write_text(
        "solution: syn-similar\nitem_jobs:\n  related-items: {num_results: 4}\n"
        "  segments: {num_results: 3}\n"
    )
    env = {"RECSYS_CONFIG_DIR": str(configs), "RECSYS_STORAGE_URL": local_storage.uri("")}
    monkeypatch.setenv("RECSYS_CONFIG_DIR", str(configs))
    date = after(landed)
    imp = pipeline.import_datasets("synthetic", date, storage=local_storage)
    ver = pipeline.train("syn-similar", imp["snapshot_id"], date, storage=local_storage)
    pipeline.deploy_campaign("syn-similar", ver["version_id"], date, storage=local_storage)

    def run(campaign):
        proc = subprocess.run(
            [
                str(nightly.BIN / "airflow"),
                "dags",
                "test",
                "recsys_item_jobs",
                date[:10],
                "-c",
                json.dumps({"campaign": campaign, "as_of": date}),
            ],
            env={**nightly._airflow_env(airflow_home), **env},
            capture_output=True,
            text=True,
            timeout=600,
        )
        return proc.returncode, proc.stdout + proc.stderr

    rc, out = run("syn-similar")
    assert rc == 0 and "state=success" in out, out[-4000:]
    for kind, field, n in (("related-items", "recommendedItems", 4), ("segments", "usersList", 3)):
        latest = local_storage.read_json(f"{job_root(kind, 'syn-similar')}/latest.json")
        assert latest["version_id"] == ver["version_id"]
        manifest = local_storage.read_json(latest["manifest"])
        lines = local_storage.read_text(manifest["parts"][0]["key"]).splitlines()
        assert manifest["items"] == len(lines) > 0 and manifest["errors"] == 0
        assert len(json.loads(lines[0])["output"][field]) == n
    rc, out = run("synthetic")  # no item_jobs: skipped, the run succeeds
    assert rc == 0 and "has no item_jobs" in out, out[-4000:]
