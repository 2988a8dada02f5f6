"""Issue 18, case 1: no name a user types reaches outside the storage root or configs/."""

from __future__ import annotations

import json
import re

import pytest

from recsys.cli import main
from recsys.errors import ConfigError
from recsys.names import NAME_JSON_PATTERN, check_name, is_name
from tests.conftest import REPO, in_airflow_process

GOOD = ["movielens", "movielens-up", "a", "A_1.b-2", "20240105T000000-1a2b3c4d", "x" * 128]
BAD = [
    "",
    "..",
    ".",
    "../x",
    "../../outside/x",
    "a/b",
    "a\\b",
    "/etc",
    ".hidden",
    "-rf",
    "a..b",
    "x" * 129,
    "a b",
    "a\x00",
    "caf\u00e9",
    None,
    3,
]


@pytest.mark.parametrize("name", GOOD)
def test_valid_names_pass(name):
    assert check_name(name) == name
    assert re.search(NAME_JSON_PATTERN, name)  # the DAG forms' pattern agrees


@pytest.mark.parametrize("name", BAD)
def test_invalid_names_are_config_errors(name):
    assert not is_name(name)
    with pytest.raises(ConfigError, match="invalid campaign"):
        check_name(name, "campaign")
    if isinstance(name, str):
        assert not re.search(NAME_JSON_PATTERN, name)


@pytest.fixture
def outside(tmp_path):
    """A storage root, and a campaign JSON beside it (outside the root)."""
    store = tmp_path / "root" / "store"
    store.mkdir(parents=True)
    target = tmp_path / "outside"
    target.mkdir()
    (target / "x.json").write_text(json.dumps({"secret": "outside the root"}))
    return store, target


@pytest.mark.parametrize(
    "argv",
    [
        ["campaign", "status", "../../outside/x"],
        ["campaign", "history", "../../outside/x"],
        ["campaign", "rollback", "../../outside/x"],
        ["campaign", "rollback", "movielens", "--to", "../../x"],
        ["deploy", "--campaign", "../../outside/camp", "--version-id", "v", "--date", "2024-01-02"],
        ["deploy", "--campaign", "movielens", "--version-id", "../v", "--date", "2024-01-02"],
        ["batch", "--campaign", "../../outside/camp", "--date", "2024-01-02"],
        ["import", "--dataset-group", "../ml", "--date", "2024-01-02"],
        ["validate", "--dataset-group", "movielens", "--snapshot", "../../x"],
        ["train", "--solution", "../solutions/x", "--snapshot", "s", "--date", "2024-01-02"],
        ["evaluate", "--campaign", "movielens", "--version-id", "a/b"],
        ["evaluate", "--campaign", "../x", "--version-id", "v"],
        [
            "train",
            "--solution",
            "movielens-up",
            "--snapshot",
            "s",
            "--date",
            "2024-01-02",
            "--campaign",
            "../x",
        ],  # fmt: skip
        ["report", "--campaign", "/etc/passwd"],
    ],
)
def test_cli_refuses_names_that_are_paths(argv, outside, capsys):
    store, target = outside
    code = main(["--storage", str(store), *argv])
    out = capsys.readouterr()
    assert code == 2
    assert out.out == ""  # nothing printed: in particular not the outside file
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and "invalid" in lines[0] and "Traceback" not in out.err
    assert sorted(p.name for p in target.iterdir()) == ["x.json"]  # nothing written outside
    assert not (store.parent / "outside").exists()


def test_config_loading_refuses_path_names_and_names_inside(tmp_path, monkeypatch):
    from recsys.config import CampaignConfig, SolutionConfig, load_config_file

    with pytest.raises(ConfigError, match="invalid campaign name"):
        load_config_file("campaigns", "../solutions/movielens-up")
    configs = tmp_path / "configs"
    (configs / "campaigns").mkdir(parents=True)
    (configs / "solutions").mkdir()
    (configs / "campaigns" / "evil.yaml").write_text("solution: ../../outside/sol\n")
    (configs / "solutions" / "evil.yaml").write_text(
        "dataset_group: ../../outside\nrecipe: popularity-count\n"
    )
    monkeypatch.setenv("RECSYS_CONFIG_DIR", str(configs))
    with pytest.raises(ConfigError, match="invalid solution name in campaign 'evil'"):
        CampaignConfig.load("evil")
    with pytest.raises(ConfigError, match="invalid dataset group name in solution 'evil'"):
        SolutionConfig.load("evil")


def test_key_builders_refuse_bad_names():
    from recsys.campaigns import campaign_key, decisions_prefix
    from recsys.data.imports import snapshot_prefix
    from recsys.inference.batch import batch_root
    from recsys.training import revision_prefix, version_prefix

    assert (
        version_prefix("sol", "20240101T000000-ab") == "solutions/sol/versions/20240101T000000-ab"
    )
    for build in (
        lambda: campaign_key("../x"),
        lambda: decisions_prefix("a/b"),
        lambda: snapshot_prefix("ml", "../../x"),
        lambda: snapshot_prefix("..", "s"),
        lambda: batch_root("../c"),
        lambda: version_prefix("sol", "../v"),
        lambda: revision_prefix("sol", "v", "../../r"),
    ):
        with pytest.raises(ConfigError, match="invalid"):
            build()


@pytest.mark.parametrize(
    "key", ["../x", "a/../../x", "a/..", "/etc/passwd", "a\\..\\x", "a\x00b", ".."]
)
def test_storage_refuses_keys_outside_its_root(local_storage, key):
    with pytest.raises(ConfigError, match="leaves the storage root"):
        local_storage.read_bytes(key)
    with pytest.raises(ConfigError, match="leaves the storage root"):
        local_storage.write_bytes(key, b"x")
    with pytest.raises(ConfigError, match="leaves the storage root"):
        local_storage.exists(key)


def test_s3_storage_refuses_keys_outside_its_root(s3_storage, s3_server):
    s3_storage.write_bytes("inside/a.json", b"{}")
    for key in ("../other/x", "inside/../../x", "/x"):
        with pytest.raises(ConfigError, match="leaves the storage root"):
            s3_storage.write_bytes(key, b"x")
        with pytest.raises(ConfigError, match="leaves the storage root"):
            s3_storage.read_bytes(key)
    assert s3_storage.read_bytes("inside/a.json") == b"{}"


DAG_PARAMS = """
import json, sys
sys.path.insert(0, sys.argv[1] + "/dags")
from _recsys_airflow import shared_params
import recsys_rollback
params = shared_params(campaign="c", as_of="a", batch_shards="b")
out = {}
for value in ["movielens", "../../outside/camp", "a/b", ".."]:
    try:
        params["campaign"].resolve(value)
        out[value] = "ok"
    except Exception as exc:
        out[value] = type(exc).__name__
dag = recsys_rollback.recsys_rollback()
to_version = dag.params.get_param("to_version")
for value in ["20240101T000000-ab", "../v"]:
    try:
        to_version.resolve(value)
        out["to_version " + value] = "ok"
    except Exception as exc:
        out["to_version " + value] = type(exc).__name__
import _recsys_airflow
out["pattern"] = _recsys_airflow.NAME_JSON_PATTERN
print("RESULT " + json.dumps(out))
"""


def test_dag_params_refuse_path_names(tmp_path):
    out = in_airflow_process(DAG_PARAMS, str(REPO), tmp_path=tmp_path)
    assert out["movielens"] == "ok"
    assert out["to_version 20240101T000000-ab"] == "ok"
    assert out["pattern"] == NAME_JSON_PATTERN  # the DAG files' copy of the grammar
    for bad in ("../../outside/camp", "a/b", "..", "to_version ../v"):
        assert out[bad] == "ParamValidationError", out
