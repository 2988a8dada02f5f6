"""Issue 18, case 5 (and config bounds of case 6): every failure ends in its documented exit
code with one line: S3 unreachable 5, a malformed artifact 6, a bad config 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recsys.cli import main
from recsys.errors import ArtifactError, ConfigError
from recsys.recipes import PopularityCount, TrainingOptions, load_model
from recsys.storage import Storage
from tests.conftest import REPO, weed_server
from tests.recipes.test_popularity import make_data

PREFIX = "solutions/pop/versions/v1"


def _cli(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "recsys", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
        cwd=REPO,
    )


def test_s3_stopped_exits_5_with_one_line(tmp_path):
    with weed_server(tmp_path / "weed") as server:
        Storage(
            "s3://recsys-test/exit5",
            {
                "key": server["key"],
                "secret": server["secret"],
                "client_kwargs": {"endpoint_url": server["endpoint"], "region_name": "us-east-1"},
            },
        ).write_json("campaigns/synthetic.json", {"campaign": "synthetic", "live": None})
        env = {
            "RECSYS_STORAGE_URL": "s3://recsys-test/exit5",
            "RECSYS_S3_ENDPOINT_URL": server["endpoint"],
            "AWS_ACCESS_KEY_ID": server["key"],
            "AWS_SECRET_ACCESS_KEY": server["secret"],
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_MAX_ATTEMPTS": "1",
        }
        up = _cli(env, "campaign", "status", "synthetic")
        assert up.returncode == 0, up.stderr
        assert json.loads(up.stdout)["campaign"] == "synthetic"
        server["stop"]()
        down = _cli(env, "campaign", "status", "synthetic")
    assert down.returncode == 5, down.stderr
    lines = down.stderr.strip().splitlines()
    assert len(lines) == 1, down.stderr
    assert lines[0].startswith("recsys: error: ") and "unreachable" in lines[0]
    assert "Traceback" not in down.stderr and down.stdout == ""


def _saved(tmp_path: Path) -> Storage:
    storage = Storage(str(tmp_path / "store"))
    PopularityCount().fit(make_data(), TrainingOptions()).save(storage, PREFIX)
    return storage


def test_malformed_safetensors_with_matching_checksum_is_an_artifact_error(tmp_path):
    storage = _saved(tmp_path)
    garbage = b"\xff" * 64
    model_json = storage.read_json(f"{PREFIX}/model.json")
    storage.write_bytes(f"{PREFIX}/model.safetensors", garbage)
    import hashlib

    model_json["files"]["model.safetensors"] = hashlib.sha256(garbage).hexdigest()
    storage.write_json(f"{PREFIX}/model.json", model_json)
    with pytest.raises(ArtifactError, match="not a valid safetensors file") as info:
        load_model(storage, PREFIX)
    assert info.value.exit_code == 6


@pytest.mark.parametrize(
    "body, match",
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"format_version": 1, "recipe": "popularity-count", "files": 3}', "'files'"),
        (
            b'{"format_version": 1, "recipe": "nope", "hyperparameters": {}, "files": {}}',
            "lacks",
        ),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_invalid_model_json_is_an_artifact_error(tmp_path, body, match):
    storage = _saved(tmp_path)
    storage.write_bytes(f"{PREFIX}/model.json", body)
    with pytest.raises(ArtifactError, match=match) as info:
        load_model(storage, PREFIX)
    assert info.value.exit_code == 6


def test_unknown_recipe_in_model_json_is_an_artifact_error(tmp_path):
    storage = _saved(tmp_path)
    model_json = storage.read_json(f"{PREFIX}/model.json")
    model_json["recipe"] = "no-such-recipe"
    storage.write_json(f"{PREFIX}/model.json", model_json)
    with pytest.raises(ArtifactError, match="unknown recipe"):
        load_model(storage, PREFIX)


def test_model_json_naming_files_outside_the_root_is_refused(tmp_path):
    storage = _saved(tmp_path)
    model_json = storage.read_json(f"{PREFIX}/model.json")
    model_json["files"]["../../../../../etc/passwd"] = "0" * 64
    storage.write_json(f"{PREFIX}/model.json", model_json)
    with pytest.raises(ConfigError, match="leaves the storage root"):
        load_model(storage, PREFIX)


BAD_CONFIGS = {
    "lots": (b"solution: synthetic-popularity\nconfig:\n  num_results: lots\n", "'num_results'"),
    "listcfg": (b"solution: synthetic-popularity\nconfig: [1, 2]\n", "'config' must be a mapping"),
    "badutf8": (b"solution: synthetic-popularity\n# caf\xe9\n", "not UTF-8"),
    "dup": (
        b"solution: synthetic-popularity\nconfig:\n  num_results: 5\n  num_results: 7\n",
        "duplicate key 'num_results'",
    ),
    "laughs": (
        b'solution: synthetic-popularity\na: &a ["lol","lol","lol","lol","lol","lol","lol"]\n'
        b"b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
        b"config:\n  filter: *c\n",
        "YAML aliases",
    ),
    "huge": (b"solution: synthetic-popularity\n" + b"# " + b"x" * (2 << 20) + b"\n", "larger"),
    "boolnum": (b"solution: synthetic-popularity\nconfig:\n  num_results: true\n", "integer"),
    "filtertype": (b"solution: synthetic-popularity\nconfig:\n  filter: [1]\n", "'filter'"),
    "nosolution": (b"config: {}\n", "missing key 'solution'"),
    "pathsolution": (b"solution: ../../x\n", "invalid solution name"),
}


@pytest.fixture
def bad_configs(tmp_path, monkeypatch):
    configs = tmp_path / "configs"
    (configs / "campaigns").mkdir(parents=True)
    for name, (body, _) in BAD_CONFIGS.items():
        (configs / "campaigns" / f"{name}.yaml").write_bytes(body)
    (configs / "campaigns" / "dupjson.json").write_text(
        '{"solution": "synthetic-popularity", "solution": "x"}'
    )
    monkeypatch.setenv("RECSYS_CONFIG_DIR", str(configs))
    return configs


@pytest.mark.parametrize("name", [*BAD_CONFIGS, "dupjson"])
def test_bad_campaign_configs_exit_2_with_one_line(name, bad_configs, tmp_path, capsys):
    match = BAD_CONFIGS[name][1] if name in BAD_CONFIGS else "duplicate key 'solution'"
    code = main(
        ["--storage", str(tmp_path / "s"), "batch", "--campaign", name, "--date", "2024-01-02"]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and match in lines[0] and name in lines[0], err


def test_unknown_config_keys_are_reported(tmp_path, monkeypatch, caplog):
    from recsys.config import CampaignConfig

    configs = tmp_path / "configs"
    (configs / "campaigns").mkdir(parents=True)
    (configs / "campaigns" / "typo.yaml").write_text(
        "solution: synthetic-popularity\nsolutoin: x\nconfig:\n  num_result: 5\n"
    )
    monkeypatch.setenv("RECSYS_CONFIG_DIR", str(configs))
    with caplog.at_level("WARNING"):
        cfg = CampaignConfig.load("typo")
    assert cfg.num_results == 25
    text = caplog.text
    assert "unknown keys ['solutoin']" in text and "unknown keys ['num_result']" in text


@pytest.mark.parametrize("value", ["0", "501", "-1", "lots"])
def test_num_results_out_of_range_is_a_usage_error(value, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["batch", "--campaign", "synthetic", "--date", "2024-01-02", "--num-results", value])
    assert exit_.value.code == 2
    assert "--num-results" in capsys.readouterr().err


def test_repository_configs_still_load():
    from recsys.config import CampaignConfig, SolutionConfig
    from recsys.schema import DatasetGroup

    configs = REPO / "configs"
    for path in (configs / "campaigns").glob("*.yaml"):
        CampaignConfig.load(path.stem)
    for path in (configs / "solutions").glob("*.yaml"):
        SolutionConfig.load(path.stem)
    for path in (configs / "dataset_groups").glob("*.yaml"):
        DatasetGroup.load(path.stem)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["deploy", "--campaign", "synthetic", "--version-id", "v", "--date", "nope"], "ISO date"),
        (
            [
                "train",
                "--solution",
                "s",
                "--snapshot",
                "x",
                "--date",
                "2024-01-02",
                "--hyperparameters",
                "[1, 2]",
            ],
            "expected a JSON object",
        ),
        (
            ["batch", "--campaign", "c", "--date", "2024-01-02", "--filter-values", "{bad"],
            "not valid JSON",
        ),
    ],
)
def test_bad_option_values_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
