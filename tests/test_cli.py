"""The command line: every stage has --help, results are JSON, exit codes mean something."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta

import pandas as pd
import pytest

from recsys.cli import build_parser, main
from recsys.data.sources.replay import replay

SUBCOMMANDS = [
    "import",
    "validate",
    "train",
    "evaluate",
    "deploy",
    "batch",
    "run",
    "replay",
    "convert",
    "report",
    "filter",
]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: recsys {command}" in capsys.readouterr().out


def test_entry_point_runs_as_module():
    out = subprocess.run(
        [sys.executable, "-m", "recsys", "campaign", "status", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "usage: recsys campaign status" in out.stdout


def test_stages_from_the_command_line(tmp_path, synthetic_data, capsys):
    store = str(tmp_path / "store")
    last = pd.to_datetime(synthetic_data.interactions["TIMESTAMP"].max(), unit="s").date()
    from recsys.storage import Storage

    replay(Storage(store), synthetic_data, "synthetic", last)
    date = str(last + timedelta(days=1))

    def run(*argv):
        code = main(["--storage", store, *argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, _ = run("import", "--dataset-group", "synthetic", "--date", date)
    assert code == 0
    snap = json.loads(out)["snapshot_id"]
    assert run("validate", "--dataset-group", "synthetic", "--snapshot", snap)[0] == 0
    code, out, _ = run(
        "train", "--solution", "synthetic-popularity", "--snapshot", snap, "--date", date
    )
    version = json.loads(out)["version_id"]
    code, out, _ = run("evaluate", "--campaign", "synthetic", "--version-id", version)
    assert 0 <= json.loads(out)["metrics"]["precision_at_5"] <= 1
    assert run("deploy", "--campaign", "synthetic", "--version-id", version, "--date", date)[0] == 0
    code, out, _ = run("batch", "--campaign", "synthetic", "--date", date)
    assert code == 0 and json.loads(out)["users"] == 120
    code, out, _ = run("campaign", "history", "synthetic")
    assert [h["version_id"] for h in json.loads(out)] == [version]
    code, out, _ = run("report", "--campaign", "synthetic")
    assert code == 0 and f"live version {version}" in out

    # Batch from a local JSON-lines file, with a job-level filter and a bad line.
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"userId": "u1"}\n{"user": 1}\n{"userId": "nobody"}\n')
    code, out, _ = run(
        "batch", "--campaign", "synthetic", "--date", date, "--input", str(inp),
        "--filter", "EXCLUDE ItemID WHERE Items.PRICE > $MAX", "--filter-values",
        '{"MAX": "30"}', "--shards", "2",
    )  # fmt: skip
    done = json.loads(out)
    assert code == 0 and done["users"] == 3 and done["errors"] == 1

    # A second version deployed by hand, then rolled back from the command line.
    code, out, _ = run(
        "train", "--solution", "synthetic-popularity", "--snapshot", snap, "--date", date,
        "--seed", "9",
    )  # fmt: skip
    other = json.loads(out)["version_id"]
    assert run("deploy", "--campaign", "synthetic", "--version-id", other, "--date", date)[0] == 0
    code, out, _ = run("campaign", "rollback", "synthetic")
    assert code == 0 and json.loads(out)["live"]["version_id"] == version
    code, _, err = run("campaign", "rollback", "synthetic", "--to", "v-nope")
    assert code == 4 and "not an earlier deployment" in err


def test_exit_codes(tmp_path, capsys):
    store = str(tmp_path / "empty")
    assert main(["--storage", store, "batch", "--campaign", "nope", "--date", "2024-01-02"]) == 2
    assert "no campaigns config named 'nope'" in capsys.readouterr().err
    assert main(["--storage", store, "campaign", "status", "synthetic"]) == 4  # never deployed
    code = main(
        ["--storage", store, "import", "--dataset-group", "synthetic", "--date", "2024-01-02"]
    )
    assert code == 3  # no data
    assert "no interactions files visible" in capsys.readouterr().err
    assert main(["filter", "check", "EXCLUDE ItemID WHERE Items.PRICE >> 1"]) == 2
    assert "at position 34" in capsys.readouterr().err
    assert main(["filter", "check", "INCLUDE ItemID WHERE Items.GENRES IN ($G)"]) == 0
    assert '"params": [\n        "G"\n      ]' in capsys.readouterr().out
